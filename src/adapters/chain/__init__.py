"""Chain adapter: the ERC-3643 (T-REX) client (`trex/`), the outbox worker, the mirror, reconciliation,
anchoring, chain reads (`rpc.py`), the log decoder, the chain service and the local anvil node."""
