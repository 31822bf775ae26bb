"""Read side: read-model tables, projections, the runner, queries and replay."""
