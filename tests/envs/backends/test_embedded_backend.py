"""The embedded backend's town cache."""

from __future__ import annotations

import pytest

from envs.backends.base import CameraSpec
from envs.backends.embedded import EmbeddedBackend


def test_towns_stay_loaded_up_to_the_cache_size() -> None:
    backend = EmbeddedBackend("Grid01", town_cache=2)
    backend.set_cameras({"front": CameraSpec(width=32, height=24)})
    grid = backend.world
    backend.render()
    renderer = backend.renderer
    assert renderer is not None
    closed: list[bool] = []
    close = renderer.close
    renderer.close = lambda: closed.append(True) or close()  # type: ignore[method-assign]
    backend.load_town("Multi01")
    backend.load_town("Grid01")
    assert backend.world is grid and backend.renderer is renderer
    backend.load_town("Multi01")
    backend.load_town("Curve01")  # three towns for two places: Grid01 is dropped
    assert closed == [True]
    backend.load_town("Grid01")
    assert backend.world is not grid and backend.world.map is grid.map  # maps stay cached
    backend.close()


def test_town_cache_must_hold_a_town() -> None:
    with pytest.raises(ValueError, match="town_cache"):
        EmbeddedBackend("Grid01", town_cache=0)
