"""Vehicles, pedestrians and lamp states for the camera: pooled meshes posed by the shader.

Each actor kind is a pool of identical meshes whose instance ``i`` the vertex shader poses from
texel ``i`` of a small float texture (see ``shaders``), so a frame uploads one texture and no
geometry. On llvmpipe every submitted vertex costs about 0.1 us, so only the actors that any
camera of the frame can see are packed into the first slots (inside one of the views' wedges, or
very near, and closer than a few hundred metres where they shrink below a pixel), and the
smallest pool (a power of two) that holds them is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from panda3d.core import NodePath, OmniBoundingVolume, Texture

from envs.sim.mesh import pool, to_geom_node, vehicle_template, walker_template
from envs.sim.traffic import VEHICLE_SHAPES

if TYPE_CHECKING:
    from envs.sim.world import World
    from envs.types import Transform

EGO_HEIGHT = 1.5  # [m]
EGO_PAINT = (0.55, 0.05, 0.05)
ROWS = 8  # rows of the actor texture (see ``shaders``; a power of two)
VEHICLE_RANGE = 250.0  # [m] beyond this a car is under a pixel at 400 px wide
WALKER_RANGE = 120.0  # [m]
_NEAR = 12.0  # [m] kept whatever the direction (a long vehicle beside the camera)
_PAINT = np.array(
    [
        [0.75, 0.08, 0.08],
        [0.1, 0.2, 0.55],
        [0.85, 0.85, 0.85],
        [0.08, 0.08, 0.09],
        [0.55, 0.57, 0.6],
        [0.1, 0.35, 0.2],
        [0.85, 0.65, 0.1],
        [0.35, 0.22, 0.15],
    ],
    np.float32,
)
_SHIRTS = np.array(
    [
        [0.7, 0.15, 0.15],
        [0.15, 0.3, 0.65],
        [0.2, 0.55, 0.3],
        [0.85, 0.8, 0.7],
        [0.15, 0.15, 0.17],
        [0.9, 0.6, 0.1],
        [0.5, 0.2, 0.55],
        [0.45, 0.45, 0.48],
    ],
    np.float32,
)


@dataclass(frozen=True)
class ViewWedge:
    """Where one camera looks, for culling actors (CARLA frame).

    Attributes:
        x, y: Camera position [m].
        yaw: Viewing direction [rad].
        tan_half: Tangent of half the horizontal field of view.
    """

    x: float
    y: float
    yaw: float
    tan_half: float


def visible(
    xy: NDArray[np.floating], wedges: list[ViewWedge], reach2: NDArray[np.floating]
) -> NDArray[np.bool_]:
    """Which (N, 2) positions [m] any wedge may see within ``sqrt(reach2)`` (N,) [m].

    Positions and wedges must share one frame (CARLA's or panda's: the test is symmetric about
    the viewing direction); the wedge has a 5 m margin on each side.
    """
    keep: NDArray[np.bool_] | None = None
    for w in wedges:
        x, y = xy[:, 0] - w.x, xy[:, 1] - w.y
        c, s = math.cos(w.yaw), math.sin(w.yaw)
        ahead, left = x * c + y * s, y * c - x * s
        dist2 = x * x + y * y
        wedge = np.abs(left) < ahead * w.tan_half + 5.0
        seen = (dist2 < _NEAR * _NEAR) | ((dist2 < reach2) & wedge)
        keep = seen if keep is None else keep | seen
    return np.zeros(len(xy), dtype=bool) if keep is None else keep


def actor_looks(world: World) -> tuple[NDArray[np.float64], NDArray[np.float32]]:
    """Box size (length, width, height) [m] and paint of every vehicle, then every walker."""
    t, look = world.traffic, world.walkers.appearance
    walker_size = np.column_stack(
        [np.full(len(look), 0.32), np.full(len(look), 0.52), 1.6 + 0.08 * (look % 4)]
    )
    sizes = np.concatenate([VEHICLE_SHAPES[t.shape], walker_size])
    paints = np.concatenate([_PAINT[t.color % len(_PAINT)], _SHIRTS[look % len(_SHIRTS)]])
    return sizes, paints


def _pool_size(count: int) -> int:
    return 1 << max(3, math.ceil(math.log2(max(count, 1))))


class ActorPools:
    """The vehicle and walker pools of one renderer, and the texture that poses them.

    Args:
        vehicles, walkers: Group nodes the pools hang under (their shaders pose them).
        root: Scene root; the texture is bound there as shader input ``dyn``.
    """

    def __init__(self, vehicles: NodePath, walkers: NodePath, root: NodePath) -> None:
        self._parents = (vehicles, walkers)
        self._root = root
        self.texture = Texture("actors")
        self.texture.set_minfilter(Texture.FT_nearest)
        self.texture.set_magfilter(Texture.FT_nearest)
        self._pools: tuple[dict[int, NodePath], dict[int, NodePath]] = ({}, {})
        self._shown: list[NodePath | None] = [None, None]
        self._dyn = np.zeros((ROWS, 0, 4), np.float32)
        self._table = np.zeros((0, 3, 4), np.float32)
        self._key: tuple[bytes, bytes, bytes, bool] | None = None
        self._reach2 = np.zeros(0)

    def _show(self, kind: int, count: int) -> None:
        """Show the smallest pool of ``kind`` (0 vehicles, 1 walkers) holding ``count``."""
        size = _pool_size(count)
        node = self._pools[kind].get(size)
        if node is None:
            template = vehicle_template() if kind == 0 else walker_template()
            name = ("VEHICLE", "WALKER")[kind]
            node = self._parents[kind].attach_new_node(to_geom_node(pool(template, size), name))
            node.node().set_bounds(OmniBoundingVolume())
            node.node().set_final(True)
            self._pools[kind][size] = node
        if node is not self._shown[kind]:
            if self._shown[kind] is not None:
                self._shown[kind].stash()  # type: ignore[union-attr]
            node.unstash()
            self._shown[kind] = node

    def _texels(self, width: int) -> NDArray[np.float32]:
        """The zeroed texture array, grown (power of two) to at least ``width`` texels."""
        if self._dyn.shape[1] < width:
            self._dyn = np.zeros((ROWS, _pool_size(width), 4), np.float32)
            self.texture.setup_2d_texture(
                self._dyn.shape[1], ROWS, Texture.T_float, Texture.F_rgba32
            )
            self._root.set_shader_input("dyn", self.texture)
        else:
            self._dyn.fill(0.0)
        return self._dyn

    def _refresh(self, world: World) -> None:
        """Rebuild the actors' size and colour rows when the actors or the lights changed."""
        t, w = world.traffic, world.walkers
        key = (t.shape.tobytes(), t.color.tobytes(), w.appearance.tobytes(), world.weather.is_night)
        if key == self._key:
            return
        nt, nw = len(t.xyz), len(w.xyz)
        table = np.zeros((nt + nw, 3, 4), np.float32)  # per actor: pose, size, colour rows
        table[:, 1, :3], table[:, 2, :3] = actor_looks(world)
        table[:nt, 2, 3] = float(world.weather.is_night)  # lights on
        table[nt:, 2, 3] = 0.7 + 0.3 * ((np.arange(nw) * 0.618034) % 1.0)  # skin tone
        table[:, 1, 3] = 1.0  # visible
        self._table, self._key = table, key
        self._reach2 = np.repeat(np.square([VEHICLE_RANGE, WALKER_RANGE]), [nt, nw])

    def update(self, world: World, ego: Transform, wedges: list[ViewWedge]) -> None:
        """Pack the ego, the visible vehicles and walkers, and the lamp states."""
        self._refresh(world)
        t, w, table = world.traffic, world.walkers, self._table
        nt = len(t.xyz)
        pose = table[:, 0]
        pose[:nt, :3], pose[nt:, :3] = t.xyz, w.xyz
        np.negative(t.yaw, out=pose[:nt, 3])
        np.negative(w.yaw, out=pose[nt:, 3])
        pose[:, 1] *= -1.0  # panda's frame
        panda_wedges = [ViewWedge(v.x, -v.y, -v.yaw, v.tan_half) for v in wedges]
        keep = visible(pose[:, :2], panda_wedges, self._reach2)
        keep[nt:] &= w.active
        ids = np.flatnonzero(keep)
        n = int(np.count_nonzero(keep[:nt]))  # the vehicles among them
        m = len(ids) - n
        states = world.lights.state
        dyn = self._texels(max(n + 1, m, len(states), 1))
        dyn[0:3, 0] = (
            (ego.x, -ego.y, ego.z, -math.radians(ego.yaw)),
            (world.config.ego.length, world.config.ego.width, EGO_HEIGHT, 1.0),
            (*EGO_PAINT, float(world.weather.is_night)),
        )
        chosen = table[ids].transpose(1, 0, 2)  # (3 rows, actors, 4)
        dyn[0:3, 1 : n + 1] = chosen[:, :n]
        dyn[3:6, :m] = chosen[:, n:]
        dyn[6, : len(states), 0] = states
        self.texture.set_ram_image(dyn)
        self._show(0, n + 1)
        self._show(1, m)
