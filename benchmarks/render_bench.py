"""Camera rendering throughput: RGB + labels + depth per frame on the embedded world.

Ticks the world (NPC vehicles and pedestrians moving) and renders one ego camera per tick,
timing the tick and the render separately. Run on one core with e.g.
``taskset -c 0 python -m benchmarks.render_bench --width 160 --height 96``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from envs.sim.camera import CameraSpec, make_renderer
from envs.sim.pipe import renderer_kind
from envs.sim.world import World, WorldConfig
from envs.types import VehicleControl


def run_render(
    width: int = 160,
    height: int = 96,
    town: str = "Grid01",
    xodr: str | None = None,
    vehicles: int = 50,
    walkers: int = 50,
    frames: int = 1000,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """Tick a world and render one camera per tick.

    Args:
        width, height: Camera image size [px].
        town: Shipped town name (ignored when ``xodr`` is given).
        xodr: Path of an OpenDRIVE file to load instead of ``town``.
        vehicles, walkers: NPC counts.
        frames: Timed frames (after 20 warm-up frames).
        seed: World and scene seed.

    Returns:
        ``frames_per_s`` (render only, RGB + labels + depth), ``ticks_per_s`` (world only),
        ``combined_per_s`` (tick + render), per-frame milliseconds, the settings, and
        ``build_s`` (renderer construction time).
    """
    world = World(Path(xodr) if xodr else town, WorldConfig(vehicles=vehicles, walkers=walkers))
    world.reset(seed=seed)
    start = time.perf_counter()
    renderer = make_renderer(world, seed=seed)
    build = time.perf_counter() - start
    spec = CameraSpec(width=width, height=height)
    control = VehicleControl(throttle=0.3)
    for _ in range(20):
        world.tick(control)
        renderer.render(world, spec)
    tick_s = render_s = 0.0
    for _ in range(frames):
        t0 = time.perf_counter()
        world.tick(control)
        t1 = time.perf_counter()
        renderer.render(world, spec)
        t2 = time.perf_counter()
        tick_s += t1 - t0
        render_s += t2 - t1
    renderer.close()
    return {
        "frames_per_s": frames / render_s,
        "ticks_per_s": frames / tick_s,
        "combined_per_s": frames / (tick_s + render_s),
        "render_ms": 1000.0 * render_s / frames,
        "tick_ms": 1000.0 * tick_s / frames,
        "width": width,
        "height": height,
        "town": xodr or town,
        "vehicles": vehicles,
        "walkers": walkers,
        "frames": frames,
        "build_s": build,
        "renderer": renderer_kind(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--town", default="Grid01")
    parser.add_argument("--xodr", default=None)
    parser.add_argument("--vehicles", type=int, default=50)
    parser.add_argument("--walkers", type=int, default=50)
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run_render(
        args.width,
        args.height,
        args.town,
        args.xodr,
        args.vehicles,
        args.walkers,
        args.frames,
        args.seed,
    )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>15}: {value:.2f}" if isinstance(value, float) else f"{key:>15}: {value}")


if __name__ == "__main__":
    main()
