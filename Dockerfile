# The stockledger CLI and workers, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
# Every transitive dependency pinned with its hash (scripts/setup.sh and CI install the same file).
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY stockledger stockledger
COPY streams streams
COPY connectors connectors
COPY api api
COPY cli cli
RUN pip install --no-cache-dir --no-deps .
ENTRYPOINT ["stockledger"]
