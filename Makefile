.PHONY: setup demo test bench down

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/stockledger demo

test: setup
	.venv/bin/pytest

bench: setup
	.venv/bin/python benchmarks/produce.py

down:
	.venv/bin/stockledger stack down
