"""Pausing Python's cyclic garbage collector while a batch is built and written.

A batch (a mirror range, a group commit) allocates tens of thousands of objects that
all stay alive until it is written; each allocation burst makes the collector scan
the whole heap again, for nothing. Reference counting still frees everything at
once; cycles are collected when the pause ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused() -> Iterator[None]:
    """No cyclic collection inside the block; nested and concurrent pauses are fine (only the
    outermost one, that found the collector running, starts it again)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
