"""HTTP API (FastAPI): commands, queries, audit, live stream, health and metrics."""
