"""Pausing Python's cyclic garbage collector while many objects are made at once.

A batch (a group commit, a mirror range, a projection batch, a cap table of 10,000 rows)
allocates tens of thousands of objects that all stay alive until it is written; each
allocation burst makes the collector pass over the whole heap again, for nothing.
Reference counting still frees everything that is not in a cycle; cycles are
collected once the pause ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection inside the block; nested and concurrent pauses are fine (only the
    outermost one, that found the collector running, starts it again)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
