"""Oriented-box contact tests, vectorised over the other actors."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class CellGrid:
    """A broad phase for fixed points: square cells, each listing the points that may lie
    within ``reach`` of any place in it (a superset; the caller tests the exact distance).

    Args:
        xy: (x, y) of each point [m]; a point's index is its position here.
        reach: The largest distance a query will ask about [m].
        cell: Side of a cell [m].
    """

    def __init__(self, xy: list[list[float]], reach: float, cell: float) -> None:
        self.cell = cell
        self._cells: dict[tuple[int, int], list[int]] = {}
        for i, (x, y) in enumerate(xy):
            for gx in range(math.floor((x - reach) / cell), math.floor((x + reach) / cell) + 1):
                for gy in range(math.floor((y - reach) / cell), math.floor((y + reach) / cell) + 1):
                    self._cells.setdefault((gx, gy), []).append(i)

    def candidates(self, x: float, y: float) -> list[int]:
        """Indices, ascending, of the points that may be within ``reach`` of (x, y)."""
        return self._cells.get((math.floor(x / self.cell), math.floor(y / self.cell)), [])


def boxes_overlap(
    center: FloatArray,
    yaw: float,
    half: tuple[float, float],
    centers: FloatArray,
    yaws: FloatArray,
    halves: FloatArray,
) -> BoolArray:
    """Separating-axis test of one oriented box against many.

    Args:
        center: (2,) centre of the first box [m].
        yaw: Its heading [rad].
        half: Its half length and half width [m].
        centers: (N, 2) centres of the other boxes [m].
        yaws: (N,) their headings [rad].
        halves: (N, 2) their half lengths and widths [m].

    Returns:
        (N,) True where the boxes intersect.
    """
    if len(centers) == 0:
        return np.zeros(0, dtype=bool)
    c0, s0 = math.cos(yaw), math.sin(yaw)
    c1, s1 = np.cos(yaws), np.sin(yaws)
    dx, dy = centers[:, 0] - center[0], centers[:, 1] - center[1]
    a, b = halves[:, 0], halves[:, 1]
    # Axis cosines between the two frames (forward f = (c, s), right r = (-s, c)).
    ff = np.abs(c0 * c1 + s0 * s1)  # |f0.f1| = |r0.r1|
    fr = np.abs(s1 * c0 - c1 * s0)  # |f0.r1| = |r0.f1|
    on_f0 = np.abs(dx * c0 + dy * s0) <= half[0] + a * ff + b * fr
    on_r0 = np.abs(-dx * s0 + dy * c0) <= half[1] + a * fr + b * ff
    on_f1 = np.abs(dx * c1 + dy * s1) <= a + half[0] * ff + half[1] * fr
    on_r1 = np.abs(-dx * s1 + dy * c1) <= b + half[0] * fr + half[1] * ff
    return on_f0 & on_r0 & on_f1 & on_r1


def circles_in_box(
    center: FloatArray,
    yaw: float,
    half: tuple[float, float],
    points: FloatArray,
    radius: FloatArray | float,
) -> BoolArray:
    """Which circles (``points`` (N, 2), ``radius``) touch an oriented box."""
    if len(points) == 0:
        return np.zeros(0, dtype=bool)
    c, s = math.cos(yaw), math.sin(yaw)
    dx, dy = points[:, 0] - center[0], points[:, 1] - center[1]
    along = np.maximum(np.abs(dx * c + dy * s) - half[0], 0.0)
    side = np.maximum(np.abs(-dx * s + dy * c) - half[1], 0.0)
    return along * along + side * side <= np.asarray(radius) ** 2


def box_corners(center: FloatArray, yaw: float, half: tuple[float, float]) -> FloatArray:
    """(4, 2) corners of an oriented box, front-left first, clockwise seen from above."""
    c, s = math.cos(yaw), math.sin(yaw)
    fx, fy, rx, ry = c * half[0], s * half[0], -s * half[1], c * half[1]
    x, y = float(center[0]), float(center[1])
    return np.array(
        [
            [x + fx - rx, y + fy - ry],
            [x + fx + rx, y + fy + ry],
            [x - fx + rx, y - fy + ry],
            [x - fx - rx, y - fy - ry],
        ]
    )
