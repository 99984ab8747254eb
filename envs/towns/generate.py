"""Generate the project's OpenDRIVE towns with scenariogeneration.

Three towns are produced:

* ``Grid01`` -- 3x3 blocks (4x4 grid nodes, 110 m apart) of two-lane roads:
  4-way junctions inside, T junctions on the border and curved L-bends in the
  corners (like CARLA's Town01/02).
* ``Multi01`` -- 3x2 blocks (4x3 grid nodes, 140 m apart) of multi-lane roads
  (two driving lanes per direction on the outer ring and the middle avenue,
  one on the cross streets) with 4-way and T junctions.
* ``Curve01`` -- a one-way roundabout joined to three T junctions by clothoid
  (spiral) roads and a large arc.

Usage::

    python -m envs.towns.generate [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

from scenariogeneration import xodr

from envs.towns._builders import (
    BROKEN_WHITE,
    DOUBLE_YELLOW,
    SOLID_WHITE,
    SOLID_YELLOW,
    Pose,
    RoadSpec,
    TownBuilder,
    clothoid_geometries,
    write_xodr,
)

logger = logging.getLogger(__name__)

DEFAULT_OUT_DIR = Path(__file__).resolve().parent

Node = tuple[int, int]
SpecFn = Callable[[Node, Node], RoadSpec]


def _junction_name(node: Node) -> str:
    """Return the junction name of a grid node."""
    return f"J{node[0]}_{node[1]}"


def _grid_corners(nx: int, ny: int) -> set[Node]:
    """Return the four corner nodes of an ``nx`` x ``ny`` grid."""
    return {(0, 0), (nx - 1, 0), (0, ny - 1), (nx - 1, ny - 1)}


def _add_straight(
    town: TownBuilder, a: Node, b: Node, spacing: float, radius: float, spec: RoadSpec
) -> None:
    """Add a straight road from junction ``a`` to neighbouring junction ``b``."""
    ux, uy = b[0] - a[0], b[1] - a[1]
    start: Pose = (a[0] * spacing + radius * ux, a[1] * spacing + radius * uy, math.atan2(uy, ux))
    road = town.add_road(start, [xodr.Line(spacing - 2.0 * radius)], spec)
    town.connect(_junction_name(a), road, "start")
    town.connect(_junction_name(b), road, "end")


def _add_bend(
    town: TownBuilder,
    corner: Node,
    nodes: tuple[Node, Node],
    dims: tuple[float, float, float],
    spec: RoadSpec,
) -> None:
    """Add an L-bend road around a grid corner between two junctions.

    Args:
        town: The town under construction.
        corner: The grid corner that gets no junction.
        nodes: The two junction nodes next to the corner (start, end).
        dims: ``(spacing, junction radius, bend radius)`` in metres.
        spec: Lane layout of the road.
    """
    spacing, radius, bend = dims
    a, b = nodes
    ux, uy = corner[0] - a[0], corner[1] - a[1]
    wx, wy = b[0] - corner[0], b[1] - corner[1]
    turn = math.copysign(1.0, ux * wy - uy * wx)
    straight = spacing - radius - bend
    start: Pose = (a[0] * spacing + radius * ux, a[1] * spacing + radius * uy, math.atan2(uy, ux))
    geometries = [
        xodr.Line(straight),
        xodr.Arc(turn / bend, angle=turn * math.pi / 2.0),
        xodr.Line(straight),
    ]
    road = town.add_road(start, geometries, spec)
    end_x, end_y, _ = road.planview.get_end_point()
    expected = (b[0] * spacing - radius * wx, b[1] * spacing - radius * wy)
    if math.dist((end_x, end_y), expected) > 1e-6:
        raise RuntimeError(f"bend at {corner} does not reach junction {b}")
    town.connect(_junction_name(a), road, "start")
    town.connect(_junction_name(b), road, "end")


def _grid_edges(nx: int, ny: int) -> list[tuple[Node, Node]]:
    """List the straight grid edges that do not touch a corner node."""
    corners = _grid_corners(nx, ny)
    edges: list[tuple[Node, Node]] = []
    for j in range(ny):
        for i in range(nx):
            for b in ((i + 1, j), (i, j + 1)):
                if b[0] < nx and b[1] < ny and (i, j) not in corners and b not in corners:
                    edges.append(((i, j), b))
    return edges


def build_grid_town(
    name: str,
    shape: tuple[int, int],
    dims: tuple[float, float, float],
    spec_for: SpecFn,
) -> xodr.OpenDrive:
    """Build a Manhattan grid with T junctions on the border and corner bends.

    Args:
        name: Town name.
        shape: Number of grid nodes ``(nx, ny)``; both must be at least 3.
        dims: ``(spacing, junction radius, bend radius)`` in metres.
        spec_for: Maps a grid edge ``(a, b)`` to its lane layout.

    Returns:
        The adjusted ``OpenDrive`` network.
    """
    nx, ny = shape
    if nx < 3 or ny < 3:
        raise ValueError("grid towns need at least 3x3 nodes")
    town = TownBuilder(name)
    for a, b in _grid_edges(nx, ny):
        _add_straight(town, a, b, dims[0], dims[1], spec_for(a, b))
    bends = {
        (0, 0): ((1, 0), (0, 1)),
        (nx - 1, 0): ((nx - 1, 1), (nx - 2, 0)),
        (nx - 1, ny - 1): ((nx - 2, ny - 1), (nx - 1, ny - 2)),
        (0, ny - 1): ((0, ny - 2), (1, ny - 1)),
    }
    for corner, nodes in bends.items():
        _add_bend(town, corner, nodes, dims, spec_for(nodes[0], corner))
    return town.build()


def build_grid01() -> xodr.OpenDrive:
    """Build ``Grid01``: two-lane roads on a 4x4 grid of 110 m blocks.

    Returns:
        The adjusted ``OpenDrive`` network.
    """
    spec = RoadSpec(1, 1, SOLID_YELLOW)
    return build_grid_town("Grid01", (4, 4), (110.0, 15.0, 25.0), lambda a, b: spec)


def _multi_spec(shape: tuple[int, int]) -> SpecFn:
    """Lane layouts of Multi01: 2+2 lanes on the ring and middle row, else 1+1."""
    nx, ny = shape
    wide = RoadSpec(2, 2, DOUBLE_YELLOW)
    narrow = RoadSpec(1, 1, SOLID_YELLOW)

    def spec_for(a: Node, b: Node) -> RoadSpec:
        on_ring_row = a[1] == b[1] and a[1] in (0, ny - 1, ny // 2)
        on_ring_col = a[0] == b[0] and a[0] in (0, nx - 1)
        return wide if on_ring_row or on_ring_col else narrow

    return spec_for


def build_multi01() -> xodr.OpenDrive:
    """Build ``Multi01``: multi-lane roads on a 4x3 grid of 140 m blocks.

    Returns:
        The adjusted ``OpenDrive`` network.
    """
    shape = (4, 3)
    return build_grid_town("Multi01", shape, (140.0, 22.0, 35.0), _multi_spec(shape))


def build_grid02() -> xodr.OpenDrive:
    """Build ``Grid02``: a 5x3 grid of 95 m blocks, the towns' held-out look.

    Two-lane roads with a broken white centre line, and a 2+2 middle row with a double yellow
    one: a town no shipped model trains on, for measuring how perception generalises.

    Returns:
        The adjusted ``OpenDrive`` network.
    """
    shape = (5, 3)
    wide = RoadSpec(2, 2, DOUBLE_YELLOW)
    narrow = RoadSpec(1, 1, BROKEN_WHITE)

    def spec_for(a: Node, b: Node) -> RoadSpec:
        return wide if a[1] == b[1] == shape[1] // 2 else narrow

    return build_grid_town("Grid02", shape, (95.0, 18.0, 30.0), spec_for)


def _polar(radius: float, angle: float) -> tuple[float, float]:
    """Return the cartesian point at ``radius`` and ``angle`` around the origin."""
    return radius * math.cos(angle), radius * math.sin(angle)


def _add_roundabout(town: TownBuilder, ring_radius: float, gap: float, spec: RoadSpec) -> None:
    """Add a one-way ring of arc roads joined by three junctions ``R0``..``R2``.

    Args:
        town: The town under construction.
        ring_radius: Radius of the ring's reference (inner) line in metres.
        gap: Arc length left free on each side of a ring junction in metres.
        spec: Lane layout of the ring roads (driving lanes on the right only).
    """
    count = 3
    half_gap = gap / ring_radius
    sweep = 2.0 * math.pi / count - 2.0 * half_gap
    for k in range(count):
        angle = 2.0 * math.pi * k / count + half_gap
        start: Pose = (*_polar(ring_radius, angle), angle + math.pi / 2.0)
        road = town.add_road(start, [xodr.Arc(1.0 / ring_radius, angle=sweep)], spec)
        town.connect(f"R{k}", road, "start")
        town.connect(f"R{(k + 1) % count}", road, "end")


def _link(
    town: TownBuilder,
    ends: tuple[tuple[str, Pose], tuple[str, Pose]],
    spec: RoadSpec,
    geometries: Sequence[object] | None = None,
) -> None:
    """Add a road between two junction ports (clothoids unless given).

    Args:
        town: The town under construction.
        ends: ``(junction, pose)`` of the start and of the end of the road; the
            poses point along the road direction.
        spec: Lane layout of the road.
        geometries: Explicit geometries; solved with G2 clothoids if ``None``.
    """
    (first, start), (second, end) = ends
    road = town.add_road(start, geometries or clothoid_geometries(start, end), spec)
    end_x, end_y, _ = road.planview.get_end_point()
    if math.dist((end_x, end_y), end[:2]) > 1e-3:
        raise RuntimeError(f"road {road.id} misses junction {second}")
    town.connect(first, road, "start")
    town.connect(second, road, "end")


def _curve01_ports(radius: float = 15.0) -> dict[str, tuple[str, Pose]]:
    """Named road ends of Curve01's T junctions (poses along the road direction).

    Args:
        radius: Distance of each port from its junction centre in metres.

    Returns:
        ``{port name: (junction name, pose)}``.
    """
    half = math.pi / 2.0
    (ex, ey), (nx_, ny_), (sx, sy) = (170.0, 30.0), (-60.0, 120.0), (-60.0, -120.0)
    return {
        "J1w": ("J1", (ex - radius, ey, 0.0)),  # entering J1 eastwards
        "J1n": ("J1", (ex, ey + radius, half)),  # leaving J1 northwards
        "J1s": ("J1", (ex, ey - radius, -half)),
        "J2s": ("J2", (nx_, ny_ - radius, half)),
        "J2e": ("J2", (nx_ + radius, ny_, math.pi)),
        "J2w": ("J2", (nx_ - radius, ny_, math.pi)),
        "J3n": ("J3", (sx, sy + radius, -half)),
        "J3e": ("J3", (sx + radius, sy, math.pi)),
        "J3w": ("J3", (sx - radius, sy, 0.0)),
    }


def build_curve01() -> xodr.OpenDrive:
    """Build ``Curve01``: a roundabout, spiral roads, an arc and three T junctions.

    Returns:
        The adjusted ``OpenDrive`` network.
    """
    town = TownBuilder("Curve01")
    _add_roundabout(town, 25.0, 12.0, RoadSpec(0, 1, SOLID_WHITE))
    two_way = RoadSpec(1, 1, SOLID_YELLOW)
    ports = _curve01_ports()
    for k, target in enumerate(("J1w", "J2s", "J3n")):
        angle = 2.0 * math.pi * k / 3.0
        _link(town, ((f"R{k}", (*_polar(45.0, angle), angle)), ports[target]), two_way)
    _link(town, (ports["J1n"], ports["J2e"]), two_way)
    _link(town, (ports["J1s"], ports["J3e"]), two_way)
    arc_radius = (ports["J2w"][1][1] - ports["J3w"][1][1]) / 2.0
    arc = xodr.Arc(1.0 / arc_radius, angle=math.pi)
    _link(town, (ports["J2w"], ports["J3w"]), two_way, [arc])
    return town.build()


TOWN_BUILDERS: dict[str, Callable[[], xodr.OpenDrive]] = {
    "Grid01": build_grid01,
    "Multi01": build_multi01,
    "Curve01": build_curve01,
    "Grid02": build_grid02,
}


def generate(out_dir: Path = DEFAULT_OUT_DIR, names: Sequence[str] | None = None) -> list[Path]:
    """Build the towns and write them as ``<name>.xodr`` files.

    Args:
        out_dir: Destination folder (created if missing).
        names: Towns to build; all of :data:`TOWN_BUILDERS` if ``None``.

    Returns:
        The written file paths.
    """
    paths: list[Path] = []
    for name in names or list(TOWN_BUILDERS):
        path = Path(out_dir) / f"{name}.xodr"
        logger.info("generating %s", name)
        write_xodr(TOWN_BUILDERS[name](), path)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(description="Generate the OpenDRIVE towns of segdrive.")
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"output folder for the .xodr files (default: {DEFAULT_OUT_DIR})",
    )
    parser.add_argument(
        "--town",
        action="append",
        choices=sorted(TOWN_BUILDERS),
        help="town to generate (repeatable; default: all towns)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    for path in generate(args.out, args.town):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
