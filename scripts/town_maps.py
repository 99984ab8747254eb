"""Draw the shipped towns from above: lanes, markings, sidewalks, lights, traffic and a route.

``python scripts/town_maps.py [--out docs/towns.png]`` writes one panel per town, side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from envs.planner import RoutePlanner
from envs.sim.raster import DRIVING, SIDEWALK
from envs.sim.world import World, WorldConfig

COLORS = {"ground": (60, 90, 60), "road": (90, 90, 90), "sidewalk": (170, 170, 170)}


def panel(town: str, size: int = 420, seed: int = 0) -> np.ndarray:
    """One town drawn at ``size`` pixels on its longer side (BGR)."""
    world = World(town, WorldConfig(vehicles=40, walkers=40))
    world.reset(seed=seed)
    for _ in range(200):
        world.tick(world.control)
    raster = world.raster
    image = np.zeros((*raster.layer.shape, 3), dtype=np.uint8)
    image[:] = COLORS["ground"]
    image[raster.layer == DRIVING] = COLORS["road"]
    image[raster.layer == SIDEWALK] = COLORS["sidewalk"]
    image[raster.marking > 0] = (230, 230, 230)
    route = RoutePlanner(world.map).plan(
        RoutePlanner(world.map).random_keypoints(np.random.default_rng(seed), 600, 900)
    )
    pts = raster.to_pixels(route.points[:, :2])
    cv2.polylines(image, [pts.astype(np.int32)], False, (0, 200, 255), max(2, int(raster.ppm)))
    for xyz in world.traffic.xyz:
        cv2.circle(
            image,
            tuple(int(v) for v in raster.to_pixels(xyz[None, :2])[0]),
            int(2.5 * raster.ppm),
            (200, 60, 40),
            -1,
        )
    for xyz in world.walkers.xyz:
        cv2.circle(
            image,
            tuple(int(v) for v in raster.to_pixels(xyz[None, :2])[0]),
            int(1.5 * raster.ppm),
            (60, 20, 220),
            -1,
        )
    states = world.lights.state
    for pole, state in zip(world.light_layout.pole, states, strict=True):
        color = {0: (0, 0, 255), 1: (0, 220, 255), 2: (0, 200, 0)}.get(int(state), (255, 255, 255))
        cv2.circle(
            image,
            tuple(int(v) for v in raster.to_pixels(pole[None, :2])[0]),
            int(2.5 * raster.ppm),
            color,
            -1,
        )
    scale = size / max(image.shape[:2])
    image = np.asarray(
        cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8
    )
    cv2.putText(image, town, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return image


def main() -> None:
    """Render every shipped town into one picture."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/towns.png", help="output PNG path")
    parser.add_argument("--size", type=int, default=420, help="panel size [px]")
    args = parser.parse_args()
    panels = [panel(t, args.size) for t in ("Grid01", "Multi01", "Curve01", "Grid02")]
    height = max(p.shape[0] for p in panels)
    padded = [
        cv2.copyMakeBorder(p, 0, height - p.shape[0], 0, 6, cv2.BORDER_CONSTANT) for p in panels
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, np.hstack(padded))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
