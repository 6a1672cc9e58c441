.PHONY: setup demo test bench down

setup:
	@scripts/setup.sh

demo: setup
	.venv/bin/stockledger demo

test: setup
	.venv/bin/pytest

bench: setup
	.venv/bin/python benchmarks/codec.py
	.venv/bin/stockledger stack up
	.venv/bin/python benchmarks/produce.py
	.venv/bin/python benchmarks/stock.py
	.venv/bin/python benchmarks/sales.py
	.venv/bin/python benchmarks/sink.py
	.venv/bin/python benchmarks/notify.py
	.venv/bin/python benchmarks/api.py

down:
	.venv/bin/stockledger stack down
