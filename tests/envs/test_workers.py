"""Worker-process start-up settings."""

from __future__ import annotations

import os

import pytest

from envs.workers import single_threaded_blas


def test_blas_threads_set_for_children_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    with single_threaded_blas():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")  # the user's choice wins
    with single_threaded_blas():
        assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
    assert os.environ["OPENBLAS_NUM_THREADS"] == "4"
