"""Alembic environment for the read models; run through `projections.migrate.upgrade`."""

from __future__ import annotations

from alembic import context

import projections.runner  # noqa: F401  (every view module registers its tables)
from adapters.api.keys import operational
from projections.schema import engine_for, metadata

config = context.config
connection = config.attributes.get("connection")


def run(conn: object) -> None:
    context.configure(connection=conn, target_metadata=[metadata, operational], render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    engine = engine_for(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        run(conn)
