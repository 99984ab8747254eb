"""Procedural buildings and trees beside the roads, placed only where the town raster is OUTSIDE.

The layout is a pure function of the raster and a seed, so every renderer of a town builds the
same city. Nothing is placed on lanes, verges or sidewalks: every footprint is rasterised and
checked against a distance transform of the non-OUTSIDE cells (a building keeps ``setback``
metres away from them), and against the footprints already placed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from envs.sim.raster import OUTSIDE, RoadRaster

FloatArray = NDArray[np.float64]

_FACADES = np.array(
    [
        [0.62, 0.58, 0.52],
        [0.55, 0.53, 0.50],
        [0.58, 0.42, 0.34],
        [0.70, 0.66, 0.58],
        [0.45, 0.47, 0.50],
        [0.66, 0.56, 0.44],
        [0.50, 0.38, 0.32],
        [0.75, 0.73, 0.70],
    ]
)


@dataclass(frozen=True)
class PropLayout:
    """Static props in CARLA's frame.

    Attributes:
        building_center: (B, 2) footprint centres [m].
        building_half: (B, 3) half width, half depth, height [m].
        building_yaw: (B,) heading of the depth axis (away from the road) [rad].
        building_color: (B, 3) facade albedo.
        tree_xy: (T, 2) trunk positions [m].
        tree_size: (T, 2) trunk height and canopy radius [m].
    """

    building_center: FloatArray
    building_half: FloatArray
    building_yaw: FloatArray
    building_color: FloatArray
    tree_xy: FloatArray
    tree_size: FloatArray


@dataclass(frozen=True)
class _Grid:
    """The padded OUTSIDE raster with its distance transform."""

    dist: NDArray[np.float32]  # metres from the nearest non-OUTSIDE cell
    grad: NDArray[np.float32]  # (H, W, 2) unit direction away from the road (x, y)
    occupied: NDArray[np.uint8]
    origin: tuple[float, float]
    ppm: float

    def to_world(self, rc: NDArray[np.int64]) -> FloatArray:
        return np.stack(
            [
                self.origin[0] + (rc[:, 1] + 0.5) / self.ppm,
                self.origin[1] + (rc[:, 0] + 0.5) / self.ppm,
            ],
            axis=1,
        )

    def to_px(self, xy: FloatArray) -> NDArray[np.float32]:
        return ((xy - np.asarray(self.origin)) * self.ppm - 0.5).astype(np.float32)


def _grid(raster: RoadRaster, pad_m: float) -> _Grid:
    pad = int(pad_m * raster.ppm)
    free = np.pad((raster.layer == OUTSIDE).astype(np.uint8), pad, constant_values=1)
    dist = cv2.distanceTransform(free, cv2.DIST_L2, 5) / np.float32(raster.ppm)
    smooth = cv2.GaussianBlur(dist, (0, 0), 2.0)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
    norm = np.maximum(np.hypot(gx, gy), 1e-6)
    origin = (raster.origin[0] - pad / raster.ppm, raster.origin[1] - pad / raster.ppm)
    return _Grid(
        dist,
        np.stack([gx / norm, gy / norm], -1),
        np.zeros(free.shape, np.uint8),
        origin,
        raster.ppm,
    )


def _rect(center: FloatArray, half_w: float, half_d: float, yaw: float) -> FloatArray:
    """(4, 2) corners of a rectangle with its depth axis along ``yaw``."""
    d = np.array([math.cos(yaw), math.sin(yaw)])
    w = np.array([-d[1], d[0]])
    return np.array(
        [center + s * half_d * d + t * half_w * w for s, t in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    )


def _fits(grid: _Grid, corners: FloatArray, clearance: float, gap: float) -> bool:
    """Whether a footprint lies ``clearance`` metres off the roads and clear of other props;
    if so it is marked occupied, grown by ``gap`` metres."""
    grow = max(1, round(gap * grid.ppm))
    px = grid.to_px(corners)
    lo = np.floor(px.min(0)).astype(int) - 1 - grow
    hi = np.ceil(px.max(0)).astype(int) + 2 + grow
    if lo.min() < 0 or hi[0] >= grid.dist.shape[1] or hi[1] >= grid.dist.shape[0]:
        return False
    mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
    cv2.fillConvexPoly(mask, np.round(px - lo).astype(np.int32), 1)
    inside = mask > 0
    window = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    if grid.dist[window][inside].min() < clearance or grid.occupied[window][inside].any():
        return False
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    grid.occupied[window] |= np.asarray(cv2.dilate(mask, kernel), dtype=np.uint8)
    return True


def _candidates(
    grid: _Grid, rng: np.random.Generator, spacing: float, lo: float, hi: float
) -> NDArray[np.int64]:
    """Shuffled jittered grid cells whose road distance is in [lo, hi] metres."""
    step = max(1, int(spacing * grid.ppm))
    rows, cols = np.mgrid[
        step // 2 : grid.dist.shape[0] : step, step // 2 : grid.dist.shape[1] : step
    ]
    rc = np.stack([rows.ravel(), cols.ravel()], 1)
    rc = np.clip(
        rc + rng.integers(-step // 3, step // 3 + 1, rc.shape), 0, np.array(grid.dist.shape) - 1
    )
    d = grid.dist[rc[:, 0], rc[:, 1]]
    rc = rc[(d >= lo) & (d <= hi)]
    return rc[rng.permutation(len(rc))]


def _buildings(
    grid: _Grid, rng: np.random.Generator, setback: float, rows: list[tuple[float, float, float]]
) -> list[tuple[float, ...]]:
    """Rows of buildings; per row: front distance from the road, max depth, max height [m]."""
    out: list[tuple[float, ...]] = []
    for front, max_depth, max_height in rows:
        for r, c in _candidates(grid, rng, 4.0, front + 4.0, front + max_depth / 2.0):
            d = float(grid.dist[r, c])
            half_d = d - front - rng.uniform(0.0, 1.0)
            if half_d < 3.0:
                continue
            half_w = rng.uniform(4.0, 11.0)
            gx, gy = grid.grad[r, c]
            yaw = math.atan2(float(gy), float(gx))
            center = grid.to_world(np.array([[r, c]]))[0]
            if not _fits(grid, _rect(center, half_w, half_d, yaw), setback, 1.0):
                continue
            height = float(
                np.clip(rng.lognormal(math.log(max_height * 0.45), 0.45), 5.0, max_height)
            )
            out.append((center[0], center[1], half_w, half_d, height, yaw))
    return out


def _trees(grid: _Grid, rng: np.random.Generator, lo: float, hi: float) -> list[tuple[float, ...]]:
    out: list[tuple[float, ...]] = []
    for r, c in _candidates(grid, rng, 6.0, lo, hi):
        radius = rng.uniform(1.2, 2.2)
        center = grid.to_world(np.array([[r, c]]))[0]
        if not _fits(grid, _rect(center, radius, radius, 0.0), 0.8, 2.0):
            continue
        out.append((center[0], center[1], rng.uniform(2.0, 4.0), radius))
    return out


def place_props(
    raster: RoadRaster, seed: int, setback: float = 4.0, pad: float = 60.0
) -> PropLayout:
    """Deterministic buildings and trees for a town.

    Args:
        raster: The town raster; props go only on its OUTSIDE cells (and beyond its edge).
        seed: Layout seed; the same raster and seed give the same props.
        setback: Smallest distance from any building to a lane, verge or sidewalk cell [m].
        pad: How far beyond the raster edge props may go [m].
    """
    rng = np.random.default_rng(seed)
    grid = _grid(raster, pad)
    near = _buildings(grid, rng, setback, [(setback, 24.0, 30.0)])
    trees = _trees(grid, rng, 1.0, setback - 0.5)
    far = _buildings(grid, rng, setback, [(setback + 26.0, 40.0, 45.0)])
    b = np.array(near + far, dtype=np.float64).reshape(-1, 6)
    t = np.array(trees, dtype=np.float64).reshape(-1, 4)
    return PropLayout(
        building_center=b[:, 0:2],
        building_half=b[:, 2:5],
        building_yaw=b[:, 5],
        building_color=_FACADES[rng.integers(0, len(_FACADES), len(b))],
        tree_xy=t[:, 0:2],
        tree_size=t[:, 2:4],
    )
