"""The outside world: CLI (and, later, HTTP API, chain and workers)."""
