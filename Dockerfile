# The stockledger CLI and workers, for docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stockledger stockledger
COPY streams streams
COPY connectors connectors
COPY api api
COPY cli cli
RUN pip install --no-cache-dir .
ENTRYPOINT ["stockledger"]
