"""Generate the shipped route sets: ``routes/train.xml``, ``routes/heldout.xml`` and
``routes/weathers.yaml``.

``python scripts/make_routes.py [--seed 0] [--out routes]``. Deterministic for a seed. Routes
are random drives of 300-1,500 m (``RoutePlanner.random_keypoints``) kept only when they pass
through at least one signalised junction. Train: Grid01 and Multi01 with the train weathers
(noon and sunset presets); held-out: Curve01 plus Grid01/Multi01 routes that start and end away
from every train route, with the test weathers (night and hard rain).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from envs.planner import RoutePlanner
from envs.routes import RouteSpec, write_routes
from envs.sim.lights import LightLayout
from envs.sim.weather import Weather
from envs.sim.world import load_town

TRAIN_WEATHERS = ("ClearNoon", "CloudyNoon", "WetNoon", "ClearSunset", "CloudySunset", "WetSunset")
TEST_WEATHERS = ("ClearNight", "WetNight", "HardRainNoon", "HardRainSunset", "HardRainNight")
MIN_LENGTH, MAX_LENGTH = 300.0, 1500.0  # [m]
DISTINCT = 40.0  # [m] a held-out route must start or end this far from every train route's


def sample(
    town: str, count: int, rng: np.random.Generator, avoid: list[np.ndarray] | None = None
) -> list[np.ndarray]:
    """``count`` keypoint arrays of routes through a signalised junction, away from ``avoid``."""
    roadmap = load_town(town)
    planner = RoutePlanner(roadmap)
    lights = LightLayout(roadmap)
    found: list[np.ndarray] = []
    for _ in range(200 * count):
        if len(found) == count:
            break
        keypoints = planner.random_keypoints(rng, MIN_LENGTH, MAX_LENGTH)
        plan = planner.plan(keypoints)
        if not MIN_LENGTH <= plan.length <= MAX_LENGTH * 1.1:
            continue
        if not np.any(lights.seg_light[plan.segments] >= 0):
            continue
        ends = keypoints[[0, -1], :2]
        if any(
            np.all(np.linalg.norm(ends - other[[0, -1], :2], axis=1) < DISTINCT)
            for other in [*(avoid or []), *found]
        ):
            continue
        found.append(keypoints)
    if len(found) < count:
        raise RuntimeError(f"{town}: found only {len(found)} of {count} routes")
    return found


def routes(
    plan: list[tuple[str, int]],
    weathers: tuple[str, ...],
    rng: np.random.Generator,
    avoid: dict[str, list[np.ndarray]],
) -> list[RouteSpec]:
    """Route specs for ``(town, count)`` pairs, numbered from 0, weathers assigned in turn."""
    specs: list[RouteSpec] = []
    for town, count in plan:
        for keypoints in sample(town, count, rng, avoid.get(town)):
            weather = Weather.preset(weathers[len(specs) % len(weathers)])
            specs.append(RouteSpec(str(len(specs)), town, keypoints, ((0.0, weather),)))
    return specs


def main() -> None:
    """Write the route files and the weather lists."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", type=Path, default=Path("routes"), help="output folder")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    train = routes([("Grid01", 6), ("Multi01", 6)], TRAIN_WEATHERS, rng, {})
    avoid: dict[str, list[np.ndarray]] = {}
    for spec in train:
        avoid.setdefault(spec.town, []).append(spec.keypoints)
    heldout = routes([("Curve01", 6), ("Grid01", 3), ("Multi01", 3)], TEST_WEATHERS, rng, avoid)
    write_routes(args.out / "train.xml", train)
    write_routes(args.out / "heldout.xml", heldout)
    lines = [
        "# Weathers of the shipped route sets (preset names, envs.sim.weather).",
        "# Written by scripts/make_routes.py.",
        "train:",
    ]
    lines += [f"  - {name}" for name in TRAIN_WEATHERS] + ["test:"]
    lines += [f"  - {name}" for name in TEST_WEATHERS]
    (args.out / "weathers.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(train)} train and {len(heldout)} held-out routes to {args.out}")


if __name__ == "__main__":
    main()
