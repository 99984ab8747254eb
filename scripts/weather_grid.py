"""Render weather presets x (RGB, segmentation, depth) from Grid01 into docs/weather_grid.png.

Usage: ``python scripts/weather_grid.py [--out docs/weather_grid.png] [--width 320 --height 192]``.
The same world state is drawn under every weather, so the label and depth columns are identical
down the grid and only the RGB column changes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from envs.sim.camera import CameraSpec, make_renderer
from envs.sim.labels import labels_to_palette
from envs.sim.weather import Weather
from envs.sim.world import World
from envs.types import VehicleControl

PRESETS = (
    "ClearNoon",
    "CloudyNoon",
    "HardRainNoon",
    "ClearSunset",
    "WetCloudySunset",
    "ClearNight",
    "HardRainNight",
    "Fog",
)


def depth_to_rgb(depth: np.ndarray, far: float = 1000.0) -> np.ndarray:
    """Log-scaled depth [m] as an RGB colour map (near warm... far dark)."""
    scaled = np.clip(np.log1p(depth) / np.log1p(far), 0.0, 1.0)
    return cv2.applyColorMap((255 * (1.0 - scaled)).astype(np.uint8), cv2.COLORMAP_INFERNO)[
        ..., ::-1
    ]


def weather(name: str) -> Weather:
    """A preset by name; ``Fog`` is ClearNoon with dense fog."""
    if name == "Fog":
        return Weather.preset("CloudyNoon").replace(fog_density=80.0)
    return Weather.preset(name)


def busy_street(first_seed: int, ticks: int, tries: int = 30) -> World:
    """A world after ``ticks`` steps whose ego has traffic 8-40 m ahead (first seed that does)."""
    world = World("Grid01")
    for seed in range(first_seed, first_seed + tries):
        world.reset(seed=seed)
        for _ in range(ticks):
            world.tick(VehicleControl(throttle=0.4))
        ego = world.ego_transform()
        yaw = np.radians(ego.yaw)
        rel = world.traffic.xyz[:, :2] - (ego.x, ego.y)
        ahead = rel @ (np.cos(yaw), np.sin(yaw))
        side = rel @ (-np.sin(yaw), np.cos(yaw))
        if ((ahead > 8) & (ahead < 40) & (np.abs(side) < 6)).any():
            break
    return world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/weather_grid.png"))
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--ticks", type=int, default=60, help="ticks before the picture (traffic moves)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    world = busy_street(args.seed, args.ticks)
    renderer = make_renderer(world, seed=args.seed)
    spec = CameraSpec(width=args.width, height=args.height)
    rows = []
    for name in PRESETS:
        world.set_weather(weather(name))
        frame = renderer.render(world, spec)
        assert frame.depth is not None  # CameraSpec reads depth by default
        row = np.concatenate(
            [frame.rgb, labels_to_palette(frame.labels), depth_to_rgb(frame.depth)], axis=1
        )
        cv2.putText(
            row, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
        rows.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))
    renderer.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
