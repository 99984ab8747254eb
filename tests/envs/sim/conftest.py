"""Shared fixtures: the shipped grid town and a small town the tests build themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from envs.sim.roadmap import RoadMap
from envs.sim.world import World, WorldConfig
from envs.towns._builders import SOLID_YELLOW, RoadSpec, write_xodr
from envs.towns.generate import build_grid_town


@pytest.fixture(scope="session")
def tiny_xodr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3x3-node grid town (one 4-way junction, four T junctions) built for the tests."""
    spec = RoadSpec(1, 1, SOLID_YELLOW)
    odr = build_grid_town("Tiny", (3, 3), (80.0, 15.0, 20.0), lambda a, b: spec)
    path = tmp_path_factory.mktemp("towns") / "Tiny.xodr"
    write_xodr(odr, path)
    return path


@pytest.fixture(scope="session")
def tiny_map(tiny_xodr: Path) -> RoadMap:
    return RoadMap.from_file(tiny_xodr)


@pytest.fixture(scope="session")
def grid_map() -> RoadMap:
    from envs.sim.world import load_town

    return load_town("Grid01")


@pytest.fixture()
def quiet_world(grid_map: RoadMap) -> World:
    """Grid01 with no traffic: for tests that place actors by hand."""
    world = World(grid_map, WorldConfig(vehicles=0, walkers=0))
    world.reset(seed=0)
    return world
