"""The static scene of a town as a few large meshes: roads, markings, sidewalks, ground, props,
traffic-light poles, plus the pooled meshes of the dynamic actors.

Everything is built once per renderer from the world's map, raster and light layout, in panda3d's
frame (``mesh.to_panda``). Each shader group is one mesh; ``render_cull`` picks the triangles a
camera can see every frame and draws each group with one call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray
from panda3d.core import Triangulator

from envs.sim.labels import Label
from envs.sim.mesh import (
    Material,
    Mesh,
    boxes,
    make_vertices,
    orient,
    quad_strip_wall,
    ribbon,
    to_panda,
)
from envs.sim.props import PropLayout, place_props
from envs.sim.roadmap import RoadMap
from envs.sim.shaders import LAMP_PITCH

if TYPE_CHECKING:
    from envs.sim.world import World

FloatArray = NDArray[np.float64]
DIFFUSE = Material.DIFFUSE

ASPHALT = (0.26, 0.26, 0.28)
WHITE = (0.86, 0.86, 0.84)
YELLOW = (0.88, 0.70, 0.18)
PAVEMENT = (0.62, 0.61, 0.58)
GRASS = (0.30, 0.40, 0.18)
KERB = 0.15  # sidewalk height above the road [m]
LIFT = 0.02  # markings above the road surface [m]
_DASH, _GAP = 3.0, 6.0  # broken marking pattern [m]
JUNCTION_GRID = 0.02  # [m] cell of the grid on which a junction's lanes are merged
JUNCTION_TOLERANCE = 0.05  # [m] how far a junction's polygon may stray from its outline
# carla.LaneMarkingType -> offsets [m] of the lines from the lane edge and whether each is dashed.
_LINES: dict[int, tuple[tuple[float, bool], ...]] = {
    1: ((0.0, True),),
    2: ((0.0, False),),
    3: ((-0.12, False), (0.12, False)),
    4: ((-0.12, False), (0.12, True)),
    5: ((-0.12, True), (0.12, False)),
    6: ((-0.12, True), (0.12, True)),
}


def _right(yaw: FloatArray) -> FloatArray:
    """Right-hand unit vectors of headings in CARLA's frame."""
    return np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)


def _keep(
    xy: FloatArray, z: FloatArray, yaw: FloatArray, max_turn: float = 0.05, max_gap: float = 40.0
) -> NDArray[np.int64]:
    """Indices of a simplified polyline: points where the heading turned by ``max_turn`` [rad]
    (or the height changed by 5 cm, or ``max_gap`` metres passed) since the last kept one."""
    keep = [0]
    for i in range(1, len(xy) - 1):
        j = keep[-1]
        turn = abs((yaw[i] - yaw[j] + math.pi) % (2 * math.pi) - math.pi)
        if turn > max_turn or abs(z[i] - z[j]) > 0.05 or math.dist(xy[i], xy[j]) > max_gap:
            keep.append(i)
    keep.append(len(xy) - 1)
    return np.asarray(keep, dtype=np.int64)


def to_panda_dir(xy: FloatArray) -> FloatArray:
    """(N, 2) horizontal directions, already in panda's frame, as (N, 3)."""
    return np.column_stack([xy, np.zeros(len(xy))])


def _xyz(xy: FloatArray, z: FloatArray | float) -> FloatArray:
    return to_panda(np.column_stack([xy, np.broadcast_to(z, (len(xy),))]))


def road_mesh(roadmap: RoadMap) -> Mesh:
    """One strip per lane segment outside junctions and one surface per junction, label road."""
    parts = []
    for seg in np.flatnonzero(roadmap.seg_junction < 0).tolist():
        a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
        pts, yaw, half = (
            roadmap.points[a : a + n],
            roadmap.yaw[a : a + n],
            roadmap.width[a : a + n] / 2,
        )
        k = _keep(pts[:, :2], pts[:, 2], yaw)
        side = _right(yaw[k]) * half[k, None]
        parts.append(
            ribbon(
                _xyz(pts[k, :2] - side, pts[k, 2]),
                _xyz(pts[k, :2] + side, pts[k, 2]),
                ASPHALT,
                Label.ROAD,
                Material.ROAD,
            )
        )
    junction = roadmap.seg_junction
    for jid in np.unique(junction[junction >= 0]).tolist():
        parts.append(junction_mesh(roadmap, np.flatnonzero(junction == jid)))
    return Mesh.concat(parts)


def junction_mesh(roadmap: RoadMap, segments: NDArray[np.int64]) -> Mesh:
    """The paved area of one junction: the union of its lanes, as one triangulated polygon.

    A junction's connecting lanes overlap and curve: drawn one strip each, a 4-way junction
    sent ~80 triangles to the rasteriser and painted most of its pixels several times. Their
    union is traced on a ``JUNCTION_GRID`` grid, grown by the simplification's tolerance (so
    that no seam opens between the junction and its roads: the polygon lies 0-2 tolerances
    outside the lanes), simplified to ``JUNCTION_TOLERANCE`` and triangulated (holes kept, such
    as a roundabout's island); heights come from the nearest lane point.
    """
    outlines, points = [], []
    for seg in segments.tolist():
        a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
        pts = roadmap.points[a : a + n]
        side = _right(roadmap.yaw[a : a + n]) * (roadmap.width[a : a + n, None] / 2)
        outlines.append(np.concatenate([pts[:, :2] - side, (pts[:, :2] + side)[::-1]]))
        points.append(pts)
    lane_points = np.concatenate(points)
    lo = np.concatenate(outlines).min(axis=0) - 1.0
    hi = np.concatenate(outlines).max(axis=0) + 1.0
    grid = max(JUNCTION_GRID, float((hi - lo).max()) / 4000.0)  # a highway junction stays small
    width, height = np.ceil((hi - lo) / grid).astype(int) + 1
    mask = np.zeros((height, width), np.uint8)
    shift = 4
    for outline in outlines:  # one call each: a single call would fill overlaps even-odd
        scaled = np.round((outline - lo) / grid * (1 << shift)).astype(np.int32)
        cv2.fillPoly(mask, [scaled], 1, shift=shift)
    tolerance = max(JUNCTION_TOLERANCE / grid, 1.0)  # [cells]
    grow = math.ceil(tolerance + 0.5)  # contours run through the centres of the edge cells
    mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return Mesh.concat([])
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    parts = []
    for i, contour in enumerate(contours):
        if links[i][3] >= 0:
            continue  # a hole, triangulated with its outer contour
        loops = [contour]
        child = links[i][2]
        while child >= 0:
            loops.append(contours[child])
            child = links[child][0]
        triangulator = Triangulator()
        for k, loop in enumerate(loops):
            simple = cv2.approxPolyDP(loop, tolerance, True).reshape(-1, 2)
            if len(simple) < 3:
                continue
            if k > 0:
                triangulator.begin_hole()
            add = triangulator.add_hole_vertex if k > 0 else triangulator.add_polygon_vertex
            for x, y in (lo + simple * grid).tolist():
                add(triangulator.add_vertex(x, y))
        triangulator.triangulate()
        count = triangulator.get_num_triangles()
        if count == 0:
            continue
        xy = np.array([(v[0], v[1]) for v in triangulator.get_vertices()])
        tris = np.array(
            [
                (
                    triangulator.get_triangle_v0(t),
                    triangulator.get_triangle_v1(t),
                    triangulator.get_triangle_v2(t),
                )
                for t in range(count)
            ],
            dtype=np.uint32,
        )
        nearest = np.argmin(
            (xy[:, None, 0] - lane_points[None, :, 0]) ** 2
            + (xy[:, None, 1] - lane_points[None, :, 1]) ** 2,
            axis=1,
        )
        pos = _xyz(xy, lane_points[nearest, 2])
        vertices = make_vertices(pos, ASPHALT, Label.ROAD, Material.ROAD)
        parts.append(Mesh(vertices, orient(pos, tris, np.array([0.0, 0.0, 1.0]))))
    return Mesh.concat(parts)


def _line(
    xy: FloatArray,
    z: FloatArray,
    yaw: FloatArray,
    color: tuple[float, float, float],
    dashed: bool,
    width: float,
) -> Mesh:
    """A painted line along a (K, 2) polyline, solid or dashed."""
    side = _right(yaw) * (width / 2)
    if not dashed:
        k = _keep(xy, z, yaw)
        return ribbon(
            _xyz(xy[k] - side[k], z[k] + LIFT),
            _xyz(xy[k] + side[k], z[k] + LIFT),
            color,
            Label.ROAD_LINE,
            Material.MARKING,
        )
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
    starts = np.arange(_GAP / 2, arc[-1] - _DASH, _DASH + _GAP)
    dashes = []
    for s0 in starts:
        s = np.array([s0, s0 + _DASH])
        p = np.stack([np.interp(s, arc, xy[:, 0]), np.interp(s, arc, xy[:, 1])], 1)
        heading = math.atan2(p[1, 1] - p[0, 1], p[1, 0] - p[0, 0])
        off = _right(np.array([heading, heading])) * (width / 2)
        zz = np.interp(s, arc, z) + LIFT
        dashes.append(
            ribbon(_xyz(p - off, zz), _xyz(p + off, zz), color, Label.ROAD_LINE, Material.MARKING)
        )
    return Mesh.concat(dashes)


def marking_mesh(roadmap: RoadMap) -> Mesh:
    """Lane markings of non-junction lanes from their ``carla.LaneMarkingType``, label road line.

    A boundary shared by two lanes is reported by both; runs whose midpoints coincide are drawn
    once, so dashes of opposite lanes do not interleave.
    """
    parts, seen = [], set()
    for seg in np.flatnonzero(roadmap.seg_junction < 0):
        a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
        pts, yaw, half = (
            roadmap.points[a : a + n],
            roadmap.yaw[a : a + n],
            roadmap.width[a : a + n] / 2,
        )
        right = _right(yaw)
        for sign, kinds, colors in (
            (-1.0, roadmap.left_marking, roadmap.left_color),
            (1.0, roadmap.right_marking, roadmap.right_color),
        ):
            edge = pts[:, :2] + sign * right * half[:, None]
            kind, color = kinds[a : a + n], colors[a : a + n]
            breaks = np.flatnonzero((np.diff(kind) != 0) | (np.diff(color) != 0)) + 1
            for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, n], strict=True):
                lines = _LINES.get(int(kind[lo]))
                if lines is None or hi - lo < 2:
                    continue
                mid = edge[(lo + hi) // 2]
                key = (round(mid[0] * 2), round(mid[1] * 2), int(kind[lo]))
                if key in seen:
                    continue
                seen.add(key)
                paint = YELLOW if int(color[lo]) == 4 else WHITE
                for offset, dashed in lines:
                    xy = edge[lo:hi] + right[lo:hi] * offset
                    parts.append(
                        _line(
                            xy,
                            pts[lo:hi, 2],
                            yaw[lo:hi],
                            paint,
                            dashed,
                            0.15 if len(lines) == 1 else 0.1,
                        )
                    )
    return Mesh.concat(parts)


def sidewalk_mesh(roadmap: RoadMap) -> Mesh:
    """Raised sidewalk strips with a kerb face towards the road, label sidewalk."""
    parts = []
    for walk in roadmap.sidewalks:
        xy, z = walk.points[:, :2], walk.points[:, 2]
        d = np.gradient(xy, axis=0)
        yaw = np.arctan2(d[:, 1], d[:, 0])
        k = _keep(xy, z, yaw)
        side = _right(yaw[k]) * (walk.width / 2 + 0.02)
        inner, outer = xy[k] - side, xy[k] + side
        parts.append(
            ribbon(
                _xyz(inner, z[k] + KERB),
                _xyz(outer, z[k] + KERB),
                PAVEMENT,
                Label.SIDEWALK,
                Material.SIDEWALK,
            )
        )
        normal = to_panda(np.column_stack([side, np.zeros(len(k))]))
        parts.append(
            quad_strip_wall(
                _xyz(inner, z[k] - 0.05),
                KERB + 0.05,
                PAVEMENT,
                Label.SIDEWALK,
                Material.SIDEWALK,
                -normal,
            )
        )
    return Mesh.concat(parts)


def ground_mesh(bounds: tuple[float, float, float, float], z: float, margin: float = 600.0) -> Mesh:
    """A flat terrain quad under the whole town, ``margin`` metres beyond its bounds."""
    xmin, ymin, xmax, ymax = bounds
    corners = np.array(
        [
            [xmin - margin, ymin - margin],
            [xmax + margin, ymin - margin],
            [xmax + margin, ymax + margin],
            [xmin - margin, ymax + margin],
        ]
    )
    return ribbon(
        _xyz(corners[[0, 1]], z), _xyz(corners[[3, 2]], z), GRASS, Label.TERRAIN, Material.GRASS
    )


def props_mesh(props: PropLayout, z: float) -> Mesh:
    """Buildings (label building) and trees (trunk and canopy, label vegetation)."""
    n = len(props.building_center)
    base = _xyz(props.building_center, z - 0.5)
    half = props.building_half[:, [1, 0, 2]] * np.array([1.0, 1.0, 0.5]) + np.array([0, 0, 0.25])
    houses = boxes(
        base,
        half,
        -props.building_yaw,
        props.building_color,
        Label.BUILDING,
        Material.BUILDING,
        instance=np.arange(n, dtype=np.float64),
    )
    t = len(props.tree_xy)
    trunk_h, radius = props.tree_size[:, 0], props.tree_size[:, 1]
    trunks = boxes(
        _xyz(props.tree_xy, z),
        np.column_stack([np.full(t, 0.15), np.full(t, 0.15), trunk_h / 2]),
        0.0,
        (0.30, 0.22, 0.15),
        Label.VEGETATION,
        Material.DIFFUSE,
    )
    canopy_base = _xyz(props.tree_xy, z + trunk_h * 0.8)
    canopy = boxes(
        canopy_base,
        np.column_stack([radius, radius, radius * 1.1]),
        np.arange(t) * 0.7,
        (0.18, 0.34, 0.12),
        Label.VEGETATION,
        Material.GRASS,
    )
    return Mesh.concat([houses, trunks, canopy])


def traffic_light_mesh(
    pole: FloatArray, facing: FloatArray, reach: float = 3.5
) -> tuple[Mesh, Mesh, Mesh]:
    """Poles with an arm over the road and a housing facing the approach, the lamp faces, glows.

    Args:
        pole: (L, 3) pole feet [m, CARLA frame].
        facing: (L,) yaw the lamps face [rad, CARLA frame].
        reach: Arm length from the pole over the lanes [m].

    Returns:
        The poles, arms and housings (label pole and traffic light); one quad per light for
        its three lamps: the quad carries the light index as instance and runs its part from 0
        (bottom) to 3 (top), so the shader draws red, yellow and green and lights the live one;
        and one quad per light for the lit lamp's glow, its four corners at the bottom of the
        lamp face (part = corner index, normal = facing): the ``GLOW`` shader lifts them to the
        live lamp and spreads them into a camera-facing disc (see ``shaders``).
    """
    count = len(pole)
    if count == 0:
        return Mesh.concat([]), Mesh.concat([]), Mesh.concat([])
    yaw = -facing  # panda frame
    fwd = np.stack([np.cos(yaw), np.sin(yaw)], 1)
    # The arm reaches over the road: to the right of a lamp that faces oncoming traffic.
    arm_dir = np.stack([np.sin(yaw), -np.cos(yaw)], 1)
    foot = to_panda(pole)
    grey = (0.35, 0.36, 0.36)
    arm_mid = foot + np.column_stack([arm_dir * reach / 2, np.full(count, 5.45)])
    center = foot + np.column_stack([arm_dir * (reach - 0.4) + fwd * 0.3, np.full(count, 4.3)])
    frame = Mesh.concat(
        [
            boxes(foot, np.tile([0.12, 0.12, 2.85], (count, 1)), yaw, grey, Label.POLE, DIFFUSE),
            boxes(
                arm_mid,
                np.column_stack(
                    [np.full(count, 0.08), np.full(count, reach / 2), np.full(count, 0.08)]
                ),
                yaw,
                grey,
                Label.POLE,
                DIFFUSE,
            ),
            boxes(
                center,
                np.tile([0.18, 0.22, 0.55], (count, 1)),
                yaw,
                (0.08, 0.08, 0.07),
                Label.TRAFFIC_LIGHT,
                DIFFUSE,
            ),
        ]
    )
    face = center[:, :2] + fwd * 0.19
    side = arm_dir * 0.13
    bottom = center[:, 2] - 0.07
    top = bottom + 3.0 * LAMP_PITCH
    pos = np.stack(
        [
            np.column_stack([face - side, bottom]),
            np.column_stack([face + side, bottom]),
            np.column_stack([face + side, top]),
            np.column_stack([face - side, top]),
        ],
        1,
    ).reshape(-1, 3)
    normal = np.repeat(np.column_stack([fwd, np.zeros(count)]), 4, axis=0)
    light = np.repeat(np.arange(count, dtype=np.float64), 4)
    verts = make_vertices(
        pos,
        (0.1, 0.1, 0.1),
        Label.TRAFFIC_LIGHT,
        Material.LAMP,
        light,
        np.tile([0.0, 0.0, 3.0, 3.0], count),
        normal,
    )
    quads = (np.arange(count, dtype=np.uint32) * 4)[:, None, None] + np.array(
        [[0, 1, 2], [0, 2, 3]], np.uint32
    )
    tris = quads.reshape(-1, 3).astype(np.uint32)
    lamps = Mesh(verts, orient(pos, tris, to_panda_dir(np.repeat(fwd, 2, axis=0))))
    glow_at = np.repeat(np.column_stack([face + fwd * 0.03, bottom]), 4, axis=0)
    glow = Mesh(
        make_vertices(
            glow_at,
            (0.0, 0.0, 0.0),
            Label.TRAFFIC_LIGHT,
            Material.LAMP,
            light,
            np.tile([0.0, 1.0, 2.0, 3.0], count),
            normal,
        ),
        tris,
    )
    return frame, lamps, glow


_STATIC_CACHE: dict[tuple[int, float, int], tuple[RoadMap, dict[str, Mesh]]] = {}


def static_meshes(world: World, seed: int) -> dict[str, Mesh]:
    """The static scene of a world's town, one mesh per shader group; cached per town and seed.

    Groups: ``ground`` (terrain, roads, markings, sidewalks), ``lamp`` (traffic-light lamp faces,
    one mesh), ``glow`` (the lit lamps' glow quads, drawn apart from the culled static scene)
    and ``solid`` (buildings, trees, poles, traffic lights). Each group has its own shader
    variant, so no fragment pays for the other group's material branches.

    Args:
        world: Source of the map, raster (prop placement) and traffic-light layout.
        seed: Seed of the buildings and trees.
    """
    key = (id(world.map), world.raster.ppm, seed)
    cached = _STATIC_CACHE.get(key)
    if cached is not None and cached[0] is world.map:
        return cached[1]
    roadmap = world.map
    ground_z = float(roadmap.points[:, 2].min())
    props = place_props(world.raster, seed)
    layout = world.light_layout
    frames, lamps, glow = traffic_light_mesh(layout.pole, layout.facing)
    groups = {
        "ground": Mesh.concat(
            [
                road_mesh(roadmap),
                marking_mesh(roadmap),
                sidewalk_mesh(roadmap),
                ground_mesh(roadmap.bounds, ground_z - 0.03),
            ]
        ),
        "solid": Mesh.concat([props_mesh(props, ground_z), frames]),
        "lamp": lamps,
        "glow": glow,
    }
    _STATIC_CACHE[key] = (roadmap, groups)
    return groups
