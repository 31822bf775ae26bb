"""Chain adapter: the ERC-3643 (T-REX) client, the local anvil node and the log decoder."""
