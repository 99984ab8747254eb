"""Triangle meshes as numpy arrays, and their conversion to panda3d geometry.

Every renderable vertex carries thirteen float32 values: position (panda3d's frame, see
``to_panda``), albedo RGB in [0, 1], the semantic label id, a material id (see ``Material``),
an instance index (which actor or traffic light the vertex belongs to), a part number, and a
normal. The shader reads the label straight from the vertex, so label images are exact ids with
no filtering.

Lighting is flat and computed per vertex: OpenGL takes a ``flat`` value from a triangle's last
(provoking) vertex, so boxes are triangulated such that both triangles of a face end on one
corner that carries that face's normal. Eight shared corners per box thus still light five faces
correctly, and the fragment shader needs no derivatives or normalisation.

Geometry is built in numpy (thousands of triangles per call) and handed to panda3d once; faces
are wound counter-clockwise seen from outside (their front), so back faces can be culled.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from panda3d.core import (
    Geom,
    GeomNode,
    GeomTriangles,
    GeomVertexArrayFormat,
    GeomVertexData,
    GeomVertexFormat,
)

from envs.sim.labels import Label

FloatArray = NDArray[np.float64]
VERTEX_SIZE = 13  # floats per vertex: x y z r g b label material instance part nx ny nz


class Material(IntEnum):
    """How the shader lights a surface."""

    DIFFUSE = 0
    ROAD = 1
    MARKING = 2
    BUILDING = 3
    LAMP = 4
    VEHICLE = 5
    WALKER = 6
    SKY = 7
    GRASS = 8
    SIDEWALK = 9


@dataclass(frozen=True)
class Mesh:
    """Vertices (V, 10) float32 and triangles (T, 3) uint32."""

    vertices: NDArray[np.float32]
    triangles: NDArray[np.uint32]

    @staticmethod
    def concat(parts: list[Mesh]) -> Mesh:
        """Join meshes into one (indices renumbered)."""
        parts = [p for p in parts if len(p.triangles)]
        if not parts:
            return Mesh(np.zeros((0, VERTEX_SIZE), np.float32), np.zeros((0, 3), np.uint32))
        offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
        tris = np.concatenate(
            [p.triangles + np.uint32(o) for p, o in zip(parts, offsets, strict=True)]
        )
        return Mesh(np.concatenate([p.vertices for p in parts]), tris.astype(np.uint32))


def to_panda(xyz: FloatArray) -> FloatArray:
    """CARLA's left-handed frame (x east, y south, z up) to panda3d's right-handed one (y north)."""
    out = np.array(xyz, dtype=np.float64, copy=True)
    out[..., 1] *= -1.0
    return out


def make_vertices(
    pos: FloatArray,
    color: FloatArray | tuple[float, float, float],
    label: int,
    material: Material,
    instance: float | FloatArray = 0.0,
    part: float | FloatArray = 0.0,
    normal: FloatArray | tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> NDArray[np.float32]:
    """Pack (V, 3) positions [m, panda frame] with shared or per-vertex attributes."""
    v = np.empty((len(pos), VERTEX_SIZE), dtype=np.float32)
    v[:, 0:3] = pos
    v[:, 3:6] = color
    v[:, 6] = label
    v[:, 7] = int(material)
    v[:, 8] = instance
    v[:, 9] = part
    v[:, 10:13] = normal
    return v


def orient(pos: FloatArray, tris: NDArray[np.uint32], normal: FloatArray) -> NDArray[np.uint32]:
    """Reorder triangles so that each one's front faces along ``normal`` ((3,) or (T, 3))."""
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), np.broadcast_to(normal, a.shape)) < 0
    out = tris.copy()
    out[flip, 1], out[flip, 2] = tris[flip, 2], tris[flip, 1]
    return out


def ribbon(
    left: FloatArray,
    right: FloatArray,
    color: tuple[float, float, float],
    label: int,
    material: Material,
) -> Mesh:
    """An upward-facing strip between two (K, 3) edge polylines [m, panda frame]."""
    k = len(left)
    if k < 2:
        return Mesh.concat([])
    pos = np.empty((2 * k, 3))
    pos[0::2], pos[1::2] = left, right
    i = np.arange(k - 1, dtype=np.uint32) * 2
    tris = np.concatenate([np.stack([i, i + 1, i + 3], 1), np.stack([i, i + 3, i + 2], 1)])
    return Mesh(
        make_vertices(pos, color, label, material), orient(pos, tris, np.array([0.0, 0.0, 1.0]))
    )


def quad_strip_wall(
    bottom: FloatArray,
    height: float,
    color: tuple[float, float, float],
    label: int,
    material: Material,
    outward: FloatArray,
) -> Mesh:
    """A vertical wall ``height`` [m] tall on a (K, 3) polyline, facing ``outward`` (K, 3)."""
    top = bottom + np.array([0.0, 0.0, height])
    mesh = ribbon(bottom, top, color, label, material)
    pos = mesh.vertices[:, :3].astype(np.float64)
    k = len(bottom) - 1
    tri_normal = np.concatenate([outward[:k], outward[:k]])
    unit = outward / np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-9)
    mesh.vertices[:, 10:13] = np.repeat(unit, 2, axis=0)
    return Mesh(mesh.vertices, orient(pos, mesh.triangles, tri_normal))


_BOX_CORNERS = np.array(
    [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (0, 1)], dtype=np.float64
)
# Faces as corner quads: -x, +x, -y, +y, top, bottom.
_BOX_FACES = ((0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (1, 5, 7, 3), (0, 2, 6, 4))
_BOX_NORMALS = np.array(
    [[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64
)
# The provoking corner of each face (distinct, so each can carry its face's normal).
_BOX_PROVOKING = (0, 7, 4, 3, 5, 6)
_CORNER_NORMALS = np.zeros((8, 3))
_CORNER_NORMALS[list(_BOX_PROVOKING)] = _BOX_NORMALS
_CORNER_NORMALS[[1, 2]] = (0.0, 0.0, 1.0)  # corners that provoke no face


def box_triangles(bottom: bool = False) -> NDArray[np.uint32]:
    """(10 or 12, 3) outward-wound triangles over the 8 corners of ``box_corners``; both
    triangles of a face end on the face's provoking corner (``_BOX_PROVOKING``)."""
    count = 6 if bottom else 5
    tris, normals = [], []
    for face, p, normal in zip(_BOX_FACES[:count], _BOX_PROVOKING, _BOX_NORMALS, strict=False):
        k = face.index(p)
        q = face[k:] + face[:k]  # the quad starting at its provoking corner
        tris += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
        normals += [normal, normal]
    wound = orient(_BOX_CORNERS, np.array(tris, dtype=np.uint32), np.array(normals))
    return np.roll(wound, -1, axis=1).astype(np.uint32)  # provoking corner last


def box_corners(center: FloatArray, half: FloatArray, heading: float | FloatArray) -> FloatArray:
    """Corners of boxes standing on ``center`` (N, 3) [m], half sizes (N, 3), heading [rad].

    The heading rotates counter-clockwise about +z (panda's frame). Returns (N, 8, 3); the box
    spans ``center.z`` to ``center.z + 2 * half.z``.
    """
    center, half = np.atleast_2d(center), np.atleast_2d(half)
    heading = np.broadcast_to(np.asarray(heading, dtype=np.float64), (len(center),))
    local = _BOX_CORNERS[None] * half[:, None, :] * np.array([1.0, 1.0, 2.0])
    c, s = np.cos(heading)[:, None], np.sin(heading)[:, None]
    x = local[..., 0] * c - local[..., 1] * s
    y = local[..., 0] * s + local[..., 1] * c
    return np.stack([x, y, local[..., 2]], axis=-1) + center[:, None, :]


def boxes(
    center: FloatArray,
    half: FloatArray,
    heading: float | NDArray[Any],
    color: NDArray[Any] | tuple[float, float, float],
    label: int,
    material: Material,
    instance: float | NDArray[Any] = 0.0,
    part: float | NDArray[Any] = 0.0,
    bottom: bool = False,
) -> Mesh:
    """N boxes as one mesh (8 shared corners each; the shader derives flat normals).

    Args:
        center: (N, 3) centre of each box's base [m, panda frame].
        half: (N, 3) half extents; z is half the height [m].
        heading: Rotation about +z [rad], scalar or (N,).
        color: (3,) or (N, 3) albedo.
        label, material: Semantic id and shading.
        instance, part: Per-box values of the last two vertex fields (scalar or (N,)).
        bottom: Also close the bottom face.
    """
    corners = box_corners(center, half, heading)
    n = len(corners)
    if n == 0:
        return Mesh.concat([])
    col = np.repeat(np.broadcast_to(np.asarray(color, np.float64), (n, 3)), 8, axis=0)
    inst = np.repeat(np.broadcast_to(np.asarray(instance, np.float64), (n,)), 8)
    parts = np.repeat(np.broadcast_to(np.asarray(part, np.float64), (n,)), 8)
    yaw = np.broadcast_to(np.asarray(heading, dtype=np.float64), (n,))
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    nx, ny = _CORNER_NORMALS[None, :, 0], _CORNER_NORMALS[None, :, 1]
    normals = np.stack(
        [nx * c - ny * s, nx * s + ny * c, np.broadcast_to(_CORNER_NORMALS[None, :, 2], (n, 8))],
        axis=-1,
    )
    verts = make_vertices(
        corners.reshape(-1, 3), col, label, material, inst, parts, normals.reshape(-1, 3)
    )
    tris = box_triangles(bottom)
    offsets = (np.arange(n, dtype=np.uint32) * 8)[:, None, None]
    return Mesh(verts, (tris[None] + offsets).reshape(-1, 3).astype(np.uint32))


def vehicle_template() -> Mesh:
    """A unit car (length, width, height 1, base at z 0, front +x): body box plus cabin box."""
    body = boxes(
        np.array([[0.0, 0.0, 0.08]]),
        np.array([[0.5, 0.5, 0.24]]),
        0.0,
        (1, 1, 1),
        Label.CAR,
        Material.VEHICLE,
        part=0.0,
    )
    cabin = boxes(
        np.array([[-0.08, 0.0, 0.56]]),
        np.array([[0.27, 0.45, 0.22]]),
        0.0,
        (1, 1, 1),
        Label.CAR,
        Material.VEHICLE,
        part=1.0,
    )
    return Mesh.concat([body, cabin])


def walker_template() -> Mesh:
    """A unit pedestrian (height 1, base at z 0, facing +x): body with legs, and a head."""
    body = boxes(
        np.array([[0.0, 0.0, 0.0]]),
        np.array([[0.5, 0.5, 0.43]]),
        0.0,
        (1, 1, 1),
        Label.PEDESTRIAN,
        Material.WALKER,
        part=0.0,
    )
    head = boxes(
        np.array([[0.0, 0.0, 0.87]]),
        np.array([[0.38, 0.3, 0.065]]),
        0.0,
        (1, 1, 1),
        Label.PEDESTRIAN,
        Material.WALKER,
        part=1.0,
    )
    return Mesh.concat([body, head])


def pool(template: Mesh, count: int) -> Mesh:
    """``count`` copies of a template with instance indices 0..count-1 (posed by the shader)."""
    v = np.tile(template.vertices, (count, 1))
    v[:, 8] = np.repeat(np.arange(count, dtype=np.float32), len(template.vertices))
    offsets = (np.arange(count, dtype=np.uint32) * len(template.vertices))[:, None, None]
    return Mesh(v, (template.triangles[None] + offsets).reshape(-1, 3).astype(np.uint32))


def _vertex_format() -> GeomVertexFormat:
    array = GeomVertexArrayFormat()
    array.add_column("vertex", 3, Geom.NT_float32, Geom.C_point)
    array.add_column("albedo", 3, Geom.NT_float32, Geom.C_other)
    array.add_column("info", 4, Geom.NT_float32, Geom.C_other)
    array.add_column("normal", 3, Geom.NT_float32, Geom.C_normal)
    return GeomVertexFormat.register_format(array)


_FORMAT: GeomVertexFormat | None = None


def to_geom_node(mesh: Mesh, name: str, dynamic: bool = False) -> GeomNode:
    """One GeomNode holding the whole mesh as a single Geom (one draw call)."""
    global _FORMAT
    if _FORMAT is None:
        _FORMAT = _vertex_format()
    usage = Geom.UH_dynamic if dynamic else Geom.UH_static
    rows = np.ascontiguousarray(mesh.vertices, np.float32).tobytes()
    return geom_node(_FORMAT, rows, len(mesh.vertices), mesh.triangles, name, usage)


def geom_node(
    fmt: GeomVertexFormat,
    rows: bytes,
    count: int,
    triangles: NDArray[np.uint32],
    name: str,
    usage: Any = Geom.UH_static,
) -> GeomNode:
    """A GeomNode of ``count`` vertex rows (``rows``, laid out as ``fmt``'s one array) and
    ``triangles`` (T, 3) indices, as one Geom."""
    data = GeomVertexData(name, fmt, usage)
    data.unclean_set_num_rows(count)
    memoryview(data.modify_array(0)).cast("B")[:] = rows
    prim = GeomTriangles(usage)
    prim.set_index_type(Geom.NT_uint32)
    handle = prim.modify_vertices()
    handle.unclean_set_num_rows(triangles.size)
    memoryview(handle).cast("B")[:] = np.ascontiguousarray(triangles, np.uint32).tobytes()
    geom = Geom(data)
    geom.add_primitive(prim)
    node = GeomNode(name)
    node.add_geom(geom)
    return node
