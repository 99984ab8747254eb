"""CARLA's own towns on the embedded simulator.

CARLA's ``.xodr`` files are not shipped here (export them from a server with
``world.get_map().to_opendrive()``); point ``SEGDRIVE_CARLA_MAPS`` at a folder of them and these
tests load each one, plan a route, and run traffic on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from envs.planner import RoutePlanner
from envs.sim.world import World, WorldConfig

FOLDER = os.environ.get("SEGDRIVE_CARLA_MAPS", "")
TOWNS = sorted(Path(FOLDER).glob("*.xodr")) if FOLDER else []


@pytest.mark.skipif(not TOWNS, reason="set SEGDRIVE_CARLA_MAPS to a folder of CARLA .xodr files")
@pytest.mark.parametrize("path", TOWNS, ids=[p.stem for p in TOWNS])
def test_carla_town_loads_routes_and_runs_traffic(path: Path) -> None:
    world = World(path, WorldConfig(vehicles=50, walkers=50))
    largest = max(nx.strongly_connected_components(world.map.graph), key=len)
    assert len(largest) > 0.8 * len(world.map.seg_length)
    plan = RoutePlanner(world.map).plan(
        RoutePlanner(world.map).random_keypoints(np.random.default_rng(0), 300, 600)
    )
    assert plan.length > 250
    world.reset(seed=0)
    for _ in range(400):
        world.tick(world.control)
    assert np.isfinite(world.traffic.xyz).all()
    assert (world.traffic.speed > 0.5).any()
