"""The static scene's meshes: each junction's paved area as one polygon."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from envs.sim.mesh import Material
from envs.sim.roadmap import RoadMap
from envs.sim.scene import _right, junction_mesh, road_mesh
from envs.sim.world import load_town


def inside(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Which (N, 2) points fall in any of the (T, 3, 2) triangles (edges included)."""
    a, b, c = (tris[None, :, k] for k in range(3))
    p = points[:, None, :]

    def side(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return (v[..., 0] - u[..., 0]) * (p[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (
            p[..., 0] - u[..., 0]
        )

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    tol = 1e-9
    pos = (s1 >= -tol) & (s2 >= -tol) & (s3 >= -tol)
    neg = (s1 <= tol) & (s2 <= tol) & (s3 <= tol)
    return (pos | neg).any(axis=1)  # type: ignore[no-any-return]


def lane_outline(roadmap: RoadMap, seg: int) -> np.ndarray:
    a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
    pts = roadmap.points[a : a + n, :2]
    side = _right(roadmap.yaw[a : a + n]) * (roadmap.width[a : a + n, None] / 2)
    return np.concatenate([pts - side, (pts + side)[::-1]])


@pytest.mark.parametrize("town", ["Grid01", "Multi01", "Curve01"])
def test_a_junction_surface_covers_its_lanes_and_little_else(town: str) -> None:
    roadmap = load_town(town)
    junction = roadmap.seg_junction
    for jid in np.unique(junction[junction >= 0]).tolist():
        segments = np.flatnonzero(junction == jid)
        mesh = junction_mesh(roadmap, segments)
        assert len(mesh.triangles) > 0
        assert (mesh.vertices[:, 7] == int(Material.ROAD)).all()
        xy = mesh.vertices[:, :2].astype(np.float64) * (1.0, -1.0)  # panda's frame -> CARLA's
        tris = xy[mesh.triangles]
        # Upward-facing in panda's frame, as every ground triangle.
        p = mesh.vertices[:, :3][mesh.triangles].astype(np.float64)
        assert (np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])[:, 2] > 0).all()
        # Every lane point, and points half way to its edges, lie on the surface.
        samples = []
        for seg in segments.tolist():
            a, n = int(roadmap.seg_start[seg]), int(roadmap.seg_count[seg])
            pts = roadmap.points[a : a + n, :2]
            side = _right(roadmap.yaw[a : a + n]) * (roadmap.width[a : a + n, None] / 4)
            samples += [pts, pts - side, pts + side]
        assert inside(np.concatenate(samples), tris).all()
        # Its area is the union of the lanes' areas, within the outline's tolerance.
        outlines = [lane_outline(roadmap, s) for s in segments.tolist()]
        lo = np.concatenate(outlines).min(axis=0) - 1.0
        grid = 0.02
        shape = np.ceil((np.concatenate(outlines).max(axis=0) + 1.0 - lo) / grid).astype(int)
        mask = np.zeros((shape[1], shape[0]), np.uint8)
        for outline in outlines:
            cv2.fillPoly(mask, [np.round((outline - lo) / grid).astype(np.int32)], 1)
        union = float(mask.sum()) * grid * grid
        e1, e2 = tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]
        area = float(np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]).sum()) / 2.0
        assert area == pytest.approx(union, rel=0.03)


def test_roads_are_drawn_once_per_junction_and_lane() -> None:
    roadmap = load_town("Grid01")
    mesh = road_mesh(roadmap)
    junction = roadmap.seg_junction
    surfaces = sum(
        len(junction_mesh(roadmap, np.flatnonzero(junction == j)).triangles)
        for j in np.unique(junction[junction >= 0]).tolist()
    )
    # Far fewer triangles than the overlapping strips of the junctions' lanes (960 in Grid01).
    assert surfaces < 500
    assert len(mesh.triangles) > surfaces
