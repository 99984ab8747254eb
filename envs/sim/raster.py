"""A top-down raster of a town: drivable area, sidewalks, junctions and lane markings.

Used for off-road and layout-collision checks (is this point on a lane, on a sidewalk, or in the
buildings beyond?), for the bird's-eye view, and for plots. Pixel ``(row, col)`` covers the
world point ``x = xmin + (col + 0.5) / ppm``, ``y = ymin + (row + 0.5) / ppm``.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from envs.sim.roadmap import RoadMap

FloatArray = NDArray[np.float64]

# Cell classes of ``RoadRaster.layer``.
OUTSIDE, DRIVING, SIDEWALK, VERGE = 0, 1, 2, 3
_SHIFT = 4  # fixed-point bits for sub-pixel polygon drawing


class RoadRaster:
    """Rasterised town map.

    Attributes:
        ppm: Pixels per metre.
        origin: (xmin, ymin) of the raster [m].
        layer: (H, W) uint8 cell class (OUTSIDE, DRIVING, SIDEWALK, VERGE).
        junction: (H, W) bool, inside a junction.
        marking: (H, W) uint8 ``carla.LaneMarkingType`` value + 1 of the marking drawn there
            (0 where there is none).
    """

    def __init__(self, roadmap: RoadMap, ppm: float = 4.0, verge: float = 1.0) -> None:
        xmin, ymin, xmax, ymax = roadmap.bounds
        self.ppm = ppm
        self.origin = (xmin, ymin)
        shape = (int(np.ceil((ymax - ymin) * ppm)), int(np.ceil((xmax - xmin) * ppm)))
        self.layer = np.zeros(shape, dtype=np.uint8)
        self.junction = np.zeros(shape, dtype=bool)
        self.marking = np.zeros(shape, dtype=np.uint8)
        self._draw_lanes(roadmap)
        self._draw_sidewalks(roadmap)
        self._draw_verge(verge)
        self._draw_markings(roadmap)

    def to_pixels(self, xy: FloatArray) -> NDArray[np.int64]:
        """(N, 2) world points -> (N, 2) integer (col, row), not clipped."""
        scaled = (xy - np.asarray(self.origin)) * self.ppm
        return np.floor(scaled).astype(np.int64)

    def _poly(self, xy: FloatArray) -> NDArray[np.int32]:
        scaled = (xy - np.asarray(self.origin)) * self.ppm * (1 << _SHIFT)
        return np.round(scaled).astype(np.int32)

    @staticmethod
    def _lane_points(roadmap: RoadMap, seg: int) -> NDArray[np.int64]:
        start = int(roadmap.seg_start[seg])
        return np.arange(start, start + int(roadmap.seg_count[seg]))

    def _draw_lanes(self, roadmap: RoadMap) -> None:
        for seg in range(len(roadmap.seg_length)):
            left, right = roadmap.lane_edges(self._lane_points(roadmap, seg))
            polygon = self._poly(np.concatenate([left, right[::-1]]))
            cv2.fillPoly(self.layer, [polygon], DRIVING, lineType=cv2.LINE_8, shift=_SHIFT)
            if roadmap.seg_junction[seg] >= 0:
                mask = np.zeros(self.layer.shape, dtype=np.uint8)
                cv2.fillPoly(mask, [polygon], 1, shift=_SHIFT)
                self.junction |= mask.astype(bool)

    def _draw_sidewalks(self, roadmap: RoadMap) -> None:
        walk = np.zeros(self.layer.shape, dtype=np.uint8)
        for strip in roadmap.sidewalks:
            xy = strip.points[:, :2]
            d = np.gradient(xy, axis=0)
            right = np.stack([-d[:, 1], d[:, 0]], axis=1) / np.maximum(
                np.linalg.norm(d, axis=1, keepdims=True), 1e-9
            )
            # Half a metre of overlap towards the road closes the kerb gap.
            inner, outer = xy - right * (strip.width / 2 + 0.5), xy + right * strip.width / 2
            cv2.fillPoly(walk, [self._poly(np.concatenate([inner, outer[::-1]]))], 1, shift=_SHIFT)
        self.layer[(walk > 0) & (self.layer == OUTSIDE)] = SIDEWALK

    def _draw_verge(self, verge: float) -> None:
        """A strip of free ground beside lanes with no sidewalk (imported towns)."""
        size = max(1, round(verge * self.ppm))
        kernel = np.ones((2 * size + 1, 2 * size + 1), dtype=np.uint8)
        grown = cv2.dilate((self.layer == DRIVING).astype(np.uint8), kernel)
        self.layer[(grown > 0) & (self.layer == OUTSIDE)] = VERGE

    def _draw_markings(self, roadmap: RoadMap) -> None:
        thickness = max(1, round(0.15 * self.ppm))
        for seg in np.flatnonzero(roadmap.seg_junction < 0):
            left, right = roadmap.lane_edges(self._lane_points(roadmap, int(seg)))
            a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
            for edge, kinds in (
                (left, roadmap.left_marking[a : a + n]),
                (right, roadmap.right_marking[a : a + n]),
            ):
                pts = self._poly(edge)
                for i in range(n - 1):
                    kind = int(kinds[i])
                    if kind in (0, 10):  # Other, NONE
                        continue
                    cv2.line(
                        self.marking,
                        tuple(pts[i]),
                        tuple(pts[i + 1]),
                        kind + 1,
                        thickness,
                        shift=_SHIFT,
                    )

    def classify_point(self, x: float, y: float) -> int:
        """Cell class under one world point (scalar fast path)."""
        col = int((x - self.origin[0]) * self.ppm)
        row = int((y - self.origin[1]) * self.ppm)
        height, width = self.layer.shape
        if 0 <= row < height and 0 <= col < width:
            return int(self.layer[row, col])
        return OUTSIDE

    def classify(self, xy: FloatArray) -> NDArray[np.uint8]:
        """Cell class under each (N, 2) world point; OUTSIDE beyond the raster."""
        col = ((xy[:, 0] - self.origin[0]) * self.ppm).astype(np.int64)
        row = ((xy[:, 1] - self.origin[1]) * self.ppm).astype(np.int64)
        height, width = self.layer.shape
        inside = (col >= 0) & (row >= 0) & (col < width) & (row < height)
        return np.where(
            inside,
            self.layer[
                np.minimum(np.maximum(row, 0), height - 1),
                np.minimum(np.maximum(col, 0), width - 1),
            ],
            OUTSIDE,
        )
