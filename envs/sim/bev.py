"""Bird's-eye view: an ego-centred, ego-aligned semantic raster of the world (pure numpy/cv2).

The ego sits at pixel ``(row, col) = (H // 2, W // 2)`` facing up: a point ``d`` metres ahead
and ``l`` metres to the right is at ``(H // 2 - d * ppm, W // 2 + l * ppm)``. Static layers are
resampled from ``world.raster`` with one ``cv2.warpAffine`` each; actors, stop lines and the route
are drawn as polygons.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from envs.sim.lights import GREEN, RED, YELLOW
from envs.sim.raster import DRIVING, SIDEWALK

if TYPE_CHECKING:
    from envs.sim.world import World

FloatArray = NDArray[np.float64]

BEV_CHANNELS = (
    "road",
    "lane_marking",
    "sidewalk",
    "route",
    "vehicle",
    "pedestrian",
    "light_red",
    "light_yellow",
    "light_green",
    "ego",
)
"""Channel order of ``bev``."""

_COLORS = np.array(
    [
        [128, 64, 128],
        [255, 255, 255],
        [244, 35, 232],
        [60, 160, 255],
        [0, 0, 142],
        [220, 20, 60],
        [255, 0, 0],
        [255, 200, 0],
        [0, 220, 0],
        [255, 140, 0],
    ],
    dtype=np.uint8,
)


def _frame(world: World) -> tuple[FloatArray, FloatArray, FloatArray]:
    ego = world.ego_transform()
    yaw = math.radians(ego.yaw)
    return (
        np.array([ego.x, ego.y]),
        np.array([math.cos(yaw), math.sin(yaw)]),
        np.array([-math.sin(yaw), math.cos(yaw)]),
    )


def _to_px(
    xy: FloatArray,
    frame: tuple[FloatArray, FloatArray, FloatArray],
    size: tuple[int, int],
    ppm: float,
) -> NDArray[np.float64]:
    """(..., 2) world points [m] -> (..., 2) BEV (col, row) pixel coordinates."""
    origin, fwd, right = frame
    rel = xy - origin
    d, lat = rel @ fwd, rel @ right
    return np.stack([size[1] // 2 + lat * ppm, size[0] // 2 - d * ppm], axis=-1)


def _warp_static(
    world: World,
    frame: tuple[FloatArray, FloatArray, FloatArray],
    size: tuple[int, int],
    ppm: float,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """The raster's layer and marking images resampled into the ego frame."""
    (ex, ey), (c, s), _ = frame
    raster = world.raster
    p, k = raster.ppm, raster.ppm / ppm
    h2, w2 = size[0] // 2, size[1] // 2
    x0, y0 = raster.origin
    m = np.array(
        [
            [-s * k, -c * k, (ex - x0) * p - 0.5 + (c * h2 + s * w2) * k],
            [c * k, -s * k, (ey - y0) * p - 0.5 + (s * h2 - c * w2) * k],
        ]
    )
    flags = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    dsize = (size[1], size[0])
    layer = cv2.warpAffine(raster.layer, m, dsize, flags=flags, borderValue=0)
    marking = cv2.warpAffine(raster.marking, m, dsize, flags=flags, borderValue=0)
    return np.asarray(layer, np.uint8), np.asarray(marking, np.uint8)


def _boxes(xy: FloatArray, yaw: FloatArray, half_l: FloatArray, half_w: FloatArray) -> FloatArray:
    """(N, 4, 2) corners of oriented boxes in world coordinates [m]."""
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    sl = np.array([1.0, 1.0, -1.0, -1.0])[None] * half_l[:, None]
    sw = np.array([1.0, -1.0, -1.0, 1.0])[None] * half_w[:, None]
    return np.stack([xy[:, None, 0] + c * sl - s * sw, xy[:, None, 1] + s * sl + c * sw], axis=-1)


def _fill(channel: NDArray[np.uint8], polygons: NDArray[np.float64]) -> None:
    for poly in polygons:
        cv2.fillConvexPoly(
            channel, np.round(poly * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4
        )


def bev(
    world: World,
    size_px: tuple[int, int] = (192, 192),
    ppm: float = 4.0,
    route_xy: FloatArray | None = None,
) -> NDArray[np.uint8]:
    """Ego-centred semantic BEV.

    Args:
        world: The world (map raster, actors, lights, ego pose).
        size_px: Output (H, W) [px].
        ppm: Resolution [pixels per metre].
        route_xy: Optional (K, 2) route polyline in world coordinates [m].

    Returns:
        (C, H, W) uint8 masks in {0, 1}, channels as ``BEV_CHANNELS``.
    """
    h, w = size_px
    frame = _frame(world)
    out = np.zeros((len(BEV_CHANNELS), h, w), dtype=np.uint8)
    layer, marking = _warp_static(world, frame, size_px, ppm)
    out[0] = layer == DRIVING
    out[1] = marking > 0
    out[2] = layer == SIDEWALK
    if route_xy is not None and len(route_xy) >= 2:
        pts = np.round(
            _to_px(np.asarray(route_xy, np.float64)[:, :2], frame, size_px, ppm) * 16
        ).astype(np.int32)
        cv2.polylines(out[3], [pts], False, 1, thickness=max(1, round(1.5 * ppm)), shift=4)
    t = world.traffic
    _fill(
        out[4],
        _to_px(_boxes(t.xyz[:, :2], t.yaw, t.half_length, t.half_width), frame, size_px, ppm),
    )
    walkers = world.walkers
    radius = max(1, round(world.config.walker.radius * ppm))
    for col, row in _to_px(walkers.xyz[walkers.active, :2], frame, size_px, ppm):
        if -radius <= col < w + radius and -radius <= row < h + radius:
            cv2.circle(out[5], (round(col), round(row)), radius, 1, -1)
    layout, state = world.light_layout, world.lights.state
    for channel, value in ((6, RED), (7, YELLOW), (8, GREEN)):
        lines = _to_px(layout.stop_line[state == value], frame, size_px, ppm)
        for line in lines:
            p0, p1 = np.round(line * 16).astype(np.int32)
            cv2.line(out[channel], tuple(p0), tuple(p1), 1, max(1, round(0.5 * ppm)), shift=4)
    ego = world.config.ego
    _fill(
        out[9],
        _to_px(
            _boxes(
                frame[0][None],
                np.array([math.atan2(frame[1][1], frame[1][0])]),
                np.array([ego.length / 2]),
                np.array([ego.width / 2]),
            ),
            frame,
            size_px,
            ppm,
        ),
    )
    return out


def bev_to_rgb(masks: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(C, H, W) BEV masks -> (H, W, 3) uint8 picture; later channels paint over earlier ones."""
    if masks.ndim != 3 or masks.shape[0] != len(BEV_CHANNELS):
        raise ValueError(f"expected ({len(BEV_CHANNELS)}, H, W) BEV masks, got shape {masks.shape}")
    rgb = np.zeros((*masks.shape[1:], 3), dtype=np.uint8)
    for index in range(len(BEV_CHANNELS)):
        rgb[masks[index] > 0] = _COLORS[index]
    return rgb
