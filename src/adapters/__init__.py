"""The outside world: the HTTP API (`api/`), the `ledger` command line (`cli/`, one module per
audience; `demo.py`, the demo scenario), the chain adapter (`chain/`: T-REX client, outbox
worker, mirror, reconciliation, anchoring), the background jobs (`worker.py`), and
`bootstrap.py`, which reads the configuration and wires them to the ledger (`services.py`:
what it hands the API)."""
