"""Starting worker processes that each run one simulator (training envs, evaluation routes)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Processes started inside this block get one OpenBLAS thread (unless the user chose).

    A simulator worker is single-threaded by design; numpy's OpenBLAS threads only spin on the
    cores the other workers need (2 training env workers on 2 cores: 225 -> 262 steps/s). The
    variable must be in the environment when the child imports numpy, hence around the start.
    """
    saved = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        yield
    finally:
        if saved is None:
            del os.environ["OPENBLAS_NUM_THREADS"]
