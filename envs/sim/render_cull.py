"""The static town as one draw call per material group, its visible triangles chosen per frame.

On llvmpipe every submitted triangle costs 0.1 us (off-screen or facing away) to 0.3 us (drawn),
and every draw call about 6 us, so neither panda3d's per-node culling (many nodes) nor drawing
whole groups (many triangles) is cheap. Instead each group's vertices stay in one static buffer
and its triangles are sorted into small chunks (one spatial cell, one kind of surface, one
facing); every frame a handful of vectorised numpy operations keep the chunks that

* touch the view frustum (bounding sphere against the four side planes),
* are not wholly back-facing (a cone bounding the chunk's normals), and
* are large enough to cover a fraction of a pixel at their distance (lane markings, kerbs, poles
  and trunks vanish beyond some tens of metres at 160 px wide, later at higher resolutions),

and write their triangles, nearest chunks first (so that llvmpipe's early depth test rejects what
they hide), into each group's index buffer. Culling does not depend on the weather, and the same
camera pose always gives the same triangles, so images stay deterministic.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from panda3d.core import (
    Geom,
    GeomNode,
    GeomPrimitive,
    GeomTriangles,
    NodePath,
    OmniBoundingVolume,
)

from envs.sim.labels import Label
from envs.sim.mesh import Material, Mesh, to_geom_node

LOD_PIXELS = 0.2
"""Chunks of thin surfaces are dropped where their thickness would cover less than this [px]."""
CELL = 24.0  # side of the chunks' spatial cells [m]
_BINS = 8  # azimuth bins of the normals of walls (tight cones, so effective back-face culling)
_F = np.float32
FloatArray = NDArray[np.float64]


def feature_size(mesh: Mesh) -> NDArray[np.float32]:
    """Per triangle, the smallest extent [m] of the object it belongs to (inf: always drawn).

    Thin things (markings, kerb faces, poles, traffic lights, trunks) are what a low-resolution
    camera cannot resolve far away; roads, sidewalks, terrain, buildings and canopies stay.
    """
    first = mesh.vertices[mesh.triangles[:, 2]]  # the provoking vertex carries the face's data
    label, material, nz = first[:, 6], first[:, 7], first[:, 12]
    size = np.full(len(first), np.inf, _F)
    size[label == Label.ROAD_LINE] = 0.15
    size[(label == Label.SIDEWALK) & (np.abs(nz) < 0.5)] = 0.2  # kerb faces
    size[label == Label.POLE] = 0.16
    size[label == Label.TRAFFIC_LIGHT] = 0.26
    size[(label == Label.VEGETATION) & (material == Material.DIFFUSE)] = 0.3  # trunks
    return size


def _chunk_keys(mesh: Mesh, normal: FloatArray, size: NDArray[np.float32]) -> NDArray[np.int64]:
    """Per triangle, the key of its chunk: cell, label, size class and facing."""
    pos = mesh.vertices[:, :3][mesh.triangles]
    label = mesh.vertices[mesh.triangles[:, 2], 6].astype(np.int64)
    cell = np.floor(pos.mean(axis=1)[:, :2] / CELL).astype(np.int64) + 4096
    azimuth = np.floor((np.arctan2(normal[:, 1], normal[:, 0]) / math.pi + 1.0) * _BINS / 2)
    facing = np.where(normal[:, 2] > 0.7, _BINS, np.where(normal[:, 2] < -0.7, _BINS + 1, azimuth))
    size_class = np.unique(size, return_inverse=True)[1].ravel()
    key = ((cell[:, 0] * 8192 + cell[:, 1]) * 32 + label) * 16 + size_class
    return key * 16 + facing.astype(np.int64)


@dataclass(frozen=True)
class _Chunks:
    """Per chunk: bounding sphere, normal cone, feature size and triangle range (all groups)."""

    center: NDArray[np.float32]  # (C, 3) [m, panda frame]
    radius: NDArray[np.float32]  # (C,) [m]
    axis: NDArray[np.float32]  # (C, 3) unit mean normal
    cos_t: NDArray[np.float32]  # (C,) cosine and sine of the cone's half angle
    sin_t: NDArray[np.float32]
    slack: NDArray[np.float32]  # (C,) [m] how far vertices lie in front of the centre
    size: NDArray[np.float32]  # (C,) [m] feature size (inf: any distance)
    first: NDArray[np.int64]  # (C,) first triangle in the groups' concatenated triangles
    count: NDArray[np.int64]  # (C,)
    order: NDArray[np.float32]  # (C,) group offset for the sort key


def _chunk_group(mesh: Mesh, group: int, tri_offset: int) -> tuple[_Chunks, NDArray[np.uint32]]:
    """Chunk one group's mesh; returns the chunks and its triangles in chunk order."""
    pos = mesh.vertices[:, :3][mesh.triangles]  # (T, 3, 3)
    normal = np.cross(pos[:, 1] - pos[:, 0], pos[:, 2] - pos[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    size = feature_size(mesh)
    keys = _chunk_keys(mesh, normal, size)
    order = np.argsort(keys, kind="stable")
    keys, pos, normal, size = keys[order], pos[order], normal[order], size[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    count = np.diff(np.r_[starts, len(keys)])
    center = np.add.reduceat(pos.sum(axis=1), starts) / (3 * count)[:, None]
    own = np.repeat(np.arange(len(starts)), count)
    offset = pos - center[own][:, None, :]
    radius = np.maximum.reduceat(np.linalg.norm(offset, axis=2).max(axis=1), starts)
    axis = np.add.reduceat(normal, starts)
    axis /= np.maximum(np.linalg.norm(axis, axis=1, keepdims=True), 1e-12)
    cos_t = np.minimum.reduceat(np.einsum("ij,ij->i", normal, axis[own]), starts)
    ahead = -np.einsum("tkj,tj->tk", offset, normal).min(axis=1)  # per triangle, >= 0
    chunks = _Chunks(
        center=center.astype(_F),
        radius=radius.astype(_F),
        axis=axis.astype(_F),
        # A cone wider than a hemisphere can always be seen: never culled (slack inf).
        cos_t=np.clip(cos_t, 0.0, 1.0).astype(_F),
        sin_t=np.sqrt(1.0 - np.clip(cos_t, 0.0, 1.0) ** 2).astype(_F),
        slack=np.where(cos_t > 0.0, np.maximum.reduceat(ahead, starts) + 0.01, np.inf).astype(_F),
        size=size[starts],
        first=starts + tri_offset,
        count=count,
        order=np.full(len(starts), group * 1.0e5, _F),
    )
    return chunks, mesh.triangles[order]


@dataclass(frozen=True)
class CameraPose:
    """What the culling needs of a camera, in panda's frame.

    Attributes:
        position: (x, y, z) camera centre [m].
        heading, pitch: panda's heading and pitch of the camera [deg].
        tan_half: Tangents of half the horizontal and vertical fields of view.
        focal: Focal length [px].
    """

    position: tuple[float, float, float]
    heading: float
    pitch: float
    tan_half: tuple[float, float]
    focal: float

    def basis(self) -> NDArray[np.float32]:
        """(3, 3) rows right, up, forward: panda's heading-pitch rotation."""
        h, p = math.radians(self.heading), math.radians(self.pitch)
        ch, sh, cp, sp = math.cos(h), math.sin(h), math.cos(p), math.sin(p)
        return np.array(
            [[ch, sh, 0.0], [sh * sp, -ch * sp, cp], [-sh * cp, ch * cp, sp]], np.float32
        )


class StaticScene:
    """The static groups of one renderer: static vertices, per-frame index buffers.

    Choosing the triangles takes a few hundred microseconds, so it is done for a small cell of
    camera poses (``STEP`` metres, ``TURN`` degrees of heading) with the frustum, back-face and
    distance tests widened to hold anywhere in the cell, and kept (``CACHE`` cells): consecutive
    frames mostly fall in the same cell and then cost nothing.

    Args:
        meshes: Group name -> the group's whole static mesh.
        parents: Group name -> node the group's geometry hangs under (its shader).
        to_node: Builds a group's GeomNode from its mesh (``mesh.to_geom_node`` for the shader
            renderer; the software renderer writes its own vertex columns).
    """

    STEP = 4.0  # [m]
    TURN = 4.0  # [deg]
    CACHE = 256

    def __init__(
        self,
        meshes: dict[str, Mesh],
        parents: dict[str, NodePath],
        to_node: Callable[[Mesh, str], GeomNode] = to_geom_node,
    ) -> None:
        parts, tris, self._prims = [], [], []
        self._to_node = to_node
        offset = 0
        meshes = {name: mesh for name, mesh in meshes.items() if len(mesh.triangles)}
        for group, (name, mesh) in enumerate(meshes.items()):
            chunks, ordered = _chunk_group(mesh, group, offset)
            parts.append(chunks)
            tris.append(ordered)
            offset += len(ordered)
            self._prims.append(self._attach(mesh, name, parents[name]))
        self._chunks = _Chunks(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _Chunks.__dataclass_fields__)
        )
        self._tris = np.concatenate(tris) if tris else np.zeros((0, 3), np.uint32)
        self._group_of = np.concatenate(
            [np.full(len(p.first), g, np.int64) for g, p in enumerate(parts)]
        )
        self._cache: OrderedDict[tuple[float, ...], list[bytes]] = OrderedDict()
        self._shown: tuple[float, ...] | None = None

    def _attach(self, mesh: Mesh, name: str, parent: NodePath) -> GeomPrimitive:
        """A GeomNode of the group's vertices whose triangles are rewritten every frame."""
        node: GeomNode = self._to_node(Mesh(mesh.vertices, mesh.triangles[:0]), name)
        geom = node.modify_geom(0)
        geom.set_bounds(OmniBoundingVolume())
        prim = GeomTriangles(Geom.UH_dynamic)
        prim.set_index_type(Geom.NT_uint32)
        geom.set_primitive(0, prim)
        node.set_bounds(OmniBoundingVolume())
        node.set_final(True)
        parent.attach_new_node(node)
        return geom.modify_primitive(0)

    def visible(
        self, pose: CameraPose, margin: float = 0.0, turn: float = 0.0
    ) -> NDArray[np.int64]:
        """Indices of the chunks the camera may see, grouped, nearest first within a group.

        Args:
            pose: The camera.
            margin: How far [m] the camera may be from ``pose.position``.
            turn: How far [rad] its heading may be from ``pose.heading``.
        """
        c = self._chunks
        d = c.center - np.asarray(pose.position, np.float32)
        local = d @ pose.basis().T  # (right, up, forward)
        z, r = local[:, 2], c.radius + _F(margin)
        dist = np.sqrt(np.square(d).sum(axis=1))
        keep = dist - r <= c.size * _F(pose.focal / LOD_PIXELS)
        for axis, tan in enumerate(pose.tan_half):
            half = math.atan(tan) + turn  # the side planes, turned outwards by ``turn``
            keep &= np.abs(local[:, axis]) * _F(math.cos(half)) - z * _F(math.sin(half)) <= r
        along = (d * c.axis).sum(axis=1)
        across = np.sqrt(np.maximum(dist * dist - along * along, 0.0))
        keep &= along * c.cos_t - across * c.sin_t <= c.slack + _F(margin)  # else back-facing
        ids = np.flatnonzero(keep)
        return ids[np.argsort(c.order[ids] + dist[ids] + r[ids], kind="stable")]

    def _select(self, pose: CameraPose, margin: float, turn: float) -> list[bytes]:
        """Per group, the visible triangles' vertex indices (uint32 bytes)."""
        ids = self.visible(pose, margin, turn)
        count = self._chunks.count[ids]
        ends = np.cumsum(count)
        tri = np.repeat(self._chunks.first[ids] - (ends - count), count)
        tri += np.arange(len(tri))
        indices = np.take(self._tris, tri, axis=0)
        per_group = np.bincount(self._group_of[ids], weights=count, minlength=len(self._prims))
        bounds = np.r_[0, np.cumsum(per_group.astype(np.int64))]
        return [indices[bounds[g] : bounds[g + 1]].tobytes() for g in range(len(self._prims))]

    def update(self, pose: CameraPose) -> None:
        """Write each group's triangles for the cell of camera poses ``pose`` falls in."""
        step, turn = self.STEP, self.TURN
        cell = tuple(math.floor(v / step) for v in pose.position)
        key = (*cell, math.floor(pose.heading / turn), pose.pitch, *pose.tan_half, pose.focal)
        if key == self._shown:
            return
        data = self._cache.get(key)
        if data is None:
            centre = CameraPose(
                tuple((i + 0.5) * step for i in cell),  # type: ignore[arg-type]
                (key[3] + 0.5) * turn,
                pose.pitch,
                pose.tan_half,
                pose.focal,
            )
            data = self._select(centre, step * math.sqrt(3.0) / 2.0, math.radians(turn / 2.0))
            self._cache[key] = data
            if len(self._cache) > self.CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        for prim, part in zip(self._prims, data, strict=True):
            prim.modify_vertices().modify_handle().set_data(part)
        self._shown = key
