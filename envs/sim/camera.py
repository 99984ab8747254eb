"""Headless cameras for the embedded world: RGB, semantic labels and depth from one render.

panda3d draws through OpenGL over EGL (``p3headlessgl``: Mesa's llvmpipe on a CPU, the GPU
where there is one) into offscreen buffers; no ShowBase and no window. One pass of one shader
writes colour and the label id (in alpha) and fills the depth buffer; both are read back into
numpy. The static town is built once; vehicles, pedestrians and lamp states are pooled meshes
posed from a small float texture that is rewritten every frame, so a frame costs one texture
upload, one draw per tile and two read-backs.

Frames (see ``shaders`` for the conventions): ``rgb`` (H, W, 3) uint8; ``labels`` (H, W) uint8
with CARLA's ids (``labels.Label``); ``depth`` (H, W) float32 planar depth along the optical
axis [m], like CARLA's depth camera, with the sky at ``far`` (1000 m).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray
from panda3d.core import (
    CullFaceAttrib,
    DepthTestAttrib,
    DepthWriteAttrib,
    FrameBufferProperties,
    GraphicsEngine,
    GraphicsOutput,
    GraphicsPipe,
    LVecBase2f,
    NodePath,
    OmniBoundingVolume,
    RenderAttrib,
    SamplerState,
    Shader,
    Texture,
    WindowProperties,
)

from envs.sim import scene, shaders
from envs.sim.labels import Label
from envs.sim.mesh import (
    Material,
    Mesh,
    make_vertices,
    pool,
    to_geom_node,
    vehicle_template,
    walker_template,
)
from envs.sim.pipe import headless_pipe
from envs.sim.render_weather import shader_inputs, weather_look
from envs.sim.traffic import VEHICLE_SHAPES

if TYPE_CHECKING:
    from envs.sim.weather import Weather
    from envs.sim.world import World

logger = logging.getLogger(__name__)

EGO_HEIGHT = 1.5  # [m]
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
_ROWS = 8  # rows of the actor texture (see ``shaders``; a power of two)


@dataclass(frozen=True)
class CameraSpec:
    """A camera rigidly mounted on the ego vehicle.

    Attributes:
        width, height: Image size [px].
        fov: Horizontal field of view [deg] (square pixels; the vertical one follows).
        x, y, z: Mount position relative to the vehicle's centre at ground level, in CARLA's
            frame (x forward, y right, z up) [m].
        pitch: Up-down tilt, positive looks up [deg]; ``yaw``: positive looks right [deg].
    """

    width: int = 160
    height: int = 96
    fov: float = 100.0
    x: float = 1.5
    y: float = 0.0
    z: float = 2.4
    pitch: float = 0.0
    yaw: float = 0.0

    def __post_init__(self) -> None:
        if not (1 <= self.width <= 4096 and 1 <= self.height <= 4096):
            raise ValueError(
                f"camera size must be 1..4096 px per side, got {self.width}x{self.height}"
            )
        if not 1.0 <= self.fov <= 170.0:
            raise ValueError(f"camera fov must be in [1, 170] degrees, got {self.fov}")

    @property
    def focal(self) -> float:
        """Focal length [px] of the pinhole model: ``W / (2 tan(fov / 2))``."""
        return self.width / (2.0 * math.tan(math.radians(self.fov) / 2.0))

    @property
    def vfov(self) -> float:
        """Vertical field of view [deg]."""
        return math.degrees(2.0 * math.atan(self.height / (2.0 * self.focal)))


@dataclass(frozen=True)
class CameraFrame:
    """Three aligned images from one render.

    Attributes:
        rgb: (H, W, 3) uint8 colour.
        labels: (H, W) uint8 semantic ids (CARLA >= 0.9.14).
        depth: (H, W) float32 planar depth along the optical axis [m]; sky at the far plane.
        frame: World frame number the images show.
    """

    rgb: NDArray[np.uint8]
    labels: NDArray[np.uint8]
    depth: NDArray[np.float32]
    frame: int


class _View:
    """One offscreen buffer with its camera and read-back textures."""

    def __init__(self, renderer: CameraRenderer, spec: CameraSpec, index: int) -> None:
        self.spec = spec
        props = FrameBufferProperties()
        props.set_rgba_bits(8, 8, 8, 8)
        props.set_depth_bits(24)
        props.set_multisamples(0)
        size = WindowProperties.size(spec.width, spec.height)
        gsg = renderer.views[0].buffer.get_gsg() if renderer.views else None
        buffer = renderer.engine.make_output(
            renderer.pipe,
            f"camera{index}",
            index,
            props,
            size,
            GraphicsPipe.BF_refuse_window,
            gsg,
            None,
        )
        if buffer is None:
            raise RuntimeError(
                f"panda3d could not open a {spec.width}x{spec.height} offscreen buffer"
            )
        self.buffer: GraphicsOutput = buffer
        self.color, self.depth = Texture("color"), Texture("depth")
        buffer.add_render_texture(self.color, GraphicsOutput.RTM_copy_ram, GraphicsOutput.RTP_color)
        buffer.add_render_texture(self.depth, GraphicsOutput.RTM_copy_ram, GraphicsOutput.RTP_depth)
        buffer.set_clear_color((0.0, 0.0, 0.0, int(Label.SKY) / 255.0))
        buffer.set_clear_color_active(True)
        buffer.set_clear_depth_active(True)
        camera = renderer.make_camera(spec)
        buffer.make_display_region().set_camera(camera)
        self.camera = camera
        self.tan_half = LVecBase2f(
            math.tan(math.radians(spec.fov) / 2), spec.height / (2 * spec.focal)
        )


class CameraRenderer:
    """Renders any number of ego cameras of one ``World``.

    Build it once per world (the static town takes about a second, cached per town and seed);
    then ``render`` every frame. Each renderer has its own engine, buffers and scene graph, so
    several coexist in one process.

    Args:
        world: The world to draw; its map, raster and lights fix the static scene.
        seed: Seed of the procedural buildings and trees, and of the rain streaks.
        near, far: Clipping planes [m]; ``far`` is also the depth of the sky.
    """

    def __init__(self, world: World, seed: int = 0, near: float = 0.1, far: float = 1000.0) -> None:
        self.pipe = headless_pipe()
        self.engine = GraphicsEngine(self.pipe)
        self.near, self.far, self.seed = near, far, seed
        self.views: list[_View] = []
        self._by_spec: dict[CameraSpec, _View] = {}
        self.root = NodePath("scene")
        self.root.set_attrib(CullFaceAttrib.make(CullFaceAttrib.M_cull_counter_clockwise))
        self._groups = {name: self.root.attach_new_node(name) for name in shaders.GROUPS}
        self._shaders: dict[tuple[str, bool, bool, bool], Shader] = {}
        for group, tiles in scene.static_meshes(world, seed).items():
            for tile in tiles:
                self._groups[group.upper()].attach_new_node(to_geom_node(tile, group))
        self._add_sky()
        self._dyn_tex = Texture("actors")
        self._dyn_tex.set_minfilter(SamplerState.FT_nearest)
        self._dyn_tex.set_magfilter(SamplerState.FT_nearest)
        self._actors: list[NodePath] = []
        self._capacity = (0, 0, 0)
        self._weather: Weather | None = None
        self._ensure_capacity(world)

    # -------------------------------------------------------------------------------- scene
    def _add_sky(self) -> None:
        corners = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
        quad = Mesh(
            make_vertices(corners, (0, 0, 0), Label.SKY, Material.SKY),
            np.array([[0, 1, 2], [0, 2, 3]], dtype=np.uint32),
        )
        sky = self._groups["SKY"].attach_new_node(to_geom_node(quad, "sky"))
        sky.node().set_bounds(OmniBoundingVolume())
        sky.node().set_final(True)
        sky.set_attrib(DepthTestAttrib.make(RenderAttrib.M_less_equal))
        sky.set_attrib(DepthWriteAttrib.make(DepthWriteAttrib.M_off))
        sky.set_attrib(CullFaceAttrib.make(CullFaceAttrib.M_cull_none))
        sky.set_bin("fixed", 100)

    def _ensure_capacity(self, world: World) -> None:
        """(Re)build the actor pools when the world holds more actors than they do."""
        need = (len(world.traffic.xyz) + 1, len(world.walkers.xyz), len(world.light_layout.pole))
        if all(n <= c for n, c in zip(need, self._capacity, strict=True)):
            return
        cap = tuple(
            max(c, 1 << max(5, math.ceil(math.log2(max(n, 1)))))
            for n, c in zip(need, self._capacity, strict=True)
        )
        for node in self._actors:
            node.remove_node()
        self._actors = []
        for group, template, count in (
            ("VEHICLE", vehicle_template(), cap[0]),
            ("WALKER", walker_template(), cap[1]),
        ):
            node = self._groups[group].attach_new_node(to_geom_node(pool(template, count), group))
            node.node().set_bounds(OmniBoundingVolume())
            node.node().set_final(True)
            self._actors.append(node)
        self._capacity = (cap[0], cap[1], cap[2])
        self._dyn = np.zeros((_ROWS, max(cap), 4), dtype=np.float32)
        self._dyn_tex.setup_2d_texture(max(cap), _ROWS, Texture.T_float, Texture.F_rgba32)
        self.root.set_shader_input("dyn", self._dyn_tex)
        logger.debug("actor pools: %d vehicles, %d walkers, %d lights", *cap)

    def make_camera(self, spec: CameraSpec) -> NodePath:
        """A camera node under this renderer's scene with the spec's lens."""
        from panda3d.core import Camera, PerspectiveLens

        lens = PerspectiveLens()
        lens.set_fov(spec.fov, spec.vfov)
        lens.set_near_far(self.near, self.far)
        camera = Camera("camera", lens)
        return self.root.attach_new_node(camera)

    # -------------------------------------------------------------------------------- frame
    def _update_actors(self, world: World) -> None:
        """Write vehicle, walker and lamp state into the actor texture."""
        self._ensure_capacity(world)
        dyn = self._dyn
        dyn[:] = 0.0
        t, w = world.traffic, world.walkers
        n, m = len(t.xyz), len(w.xyz)
        ego = world.ego_transform()
        lights = float(world.weather.is_night)
        dyn[0, 0] = (ego.x, -ego.y, ego.z, -math.radians(ego.yaw))
        dyn[1, 0] = (world.config.ego.length, world.config.ego.width, EGO_HEIGHT, 1.0)
        dyn[2, 0] = (0.55, 0.05, 0.05, lights)
        dyn[0, 1 : n + 1, :3] = t.xyz
        dyn[0, 1 : n + 1, 1] *= -1.0
        dyn[0, 1 : n + 1, 3] = -t.yaw
        dyn[1, 1 : n + 1, :3] = VEHICLE_SHAPES[t.shape]
        dyn[1, 1 : n + 1, 3] = 1.0
        dyn[2, 1 : n + 1, :3] = _PAINT[t.color % len(_PAINT)]
        dyn[2, 1 : n + 1, 3] = lights
        dyn[3, :m, :3] = w.xyz
        dyn[3, :m, 1] *= -1.0
        dyn[3, :m, 3] = -w.yaw
        dyn[4, :m, :3] = (0.32, 0.52, 1.0)
        dyn[4, :m, 2] = 1.6 + 0.08 * (w.appearance % 4)
        dyn[4, :m, 3] = w.active
        dyn[5, :m, :3] = _SHIRTS[w.appearance % len(_SHIRTS)]
        dyn[6, : len(world.lights.state), 0] = world.lights.state
        self._dyn_tex.set_ram_image(dyn)

    def _apply_weather(self, weather: Weather) -> None:
        """Set the weather's uniforms, and the shader variants of its effects if they changed."""
        if weather == self._weather:
            return
        look = weather_look(weather)
        for name, value in shader_inputs(look).items():
            self.root.set_shader_input(name, value)
        flags = (look.rain > 0.0, look.wet > 0.0, look.night > 0.0)
        for group, node in self._groups.items():
            key = (group, *flags)
            shader = self._shaders.get(key)
            if shader is None:
                shader = Shader.make(
                    Shader.SL_GLSL, shaders.VERTEX, shaders.fragment(group, *flags)
                )
                self._shaders[key] = shader
            node.set_shader(shader)
        self._weather = weather

    def _place(self, view: _View, world: World) -> None:
        """Put the camera on the ego and pass its frame to the shader."""
        spec, ego = view.spec, world.ego_transform()
        yaw = math.radians(ego.yaw)
        x = ego.x + math.cos(yaw) * spec.x - math.sin(yaw) * spec.y
        y = ego.y + math.sin(yaw) * spec.x + math.cos(yaw) * spec.y
        view.camera.set_pos_hpr(
            x, -y, ego.z + spec.z, -(ego.yaw + spec.yaw) - 90.0, spec.pitch, 0.0
        )
        quat = view.camera.get_quat()
        root = self.root
        root.set_shader_input("cam_pos", view.camera.get_pos())
        root.set_shader_input("cam_fwd", quat.get_forward())
        root.set_shader_input("cam_right", quat.get_right())
        root.set_shader_input("cam_up", quat.get_up())
        root.set_shader_input("tan_half", view.tan_half)
        root.set_shader_input("resolution", LVecBase2f(spec.width, spec.height))
        root.set_shader_input("noise_seed", LVecBase2f(self.seed % 997, world.frame % 8192))

    def _view(self, spec: CameraSpec) -> _View:
        view = self._by_spec.get(spec)
        if view is None:
            view = _View(self, spec, len(self.views))
            self.views.append(view)
            self._by_spec[spec] = view
        return view

    def render(self, world: World, spec: CameraSpec | None = None) -> CameraFrame:
        """Draw the world from one ego camera (default ``CameraSpec()``)."""
        return self.render_many(world, [spec or CameraSpec()])[0]

    def render_many(self, world: World, specs: list[CameraSpec]) -> list[CameraFrame]:
        """Draw the world from several ego cameras; actors are posed once for all of them."""
        self._update_actors(world)
        self._apply_weather(world.weather)
        wanted = [self._view(spec) for spec in specs]
        frames = []
        for view in wanted:
            for other in self.views:
                other.buffer.set_active(other is view)
            self._place(view, world)
            self.engine.render_frame()
            frames.append(self._read(view, world.frame))
        return frames

    def _read(self, view: _View, frame: int) -> CameraFrame:
        h, w = view.spec.height, view.spec.width
        raw = np.frombuffer(view.color.get_ram_image(), dtype=np.uint8).reshape(h, w, 4)
        rgb = cv2.cvtColor(raw, cv2.COLOR_RGBA2RGB)
        labels = cv2.extractChannel(raw, 3)
        zbuf = np.frombuffer(view.depth.get_ram_image(), dtype=np.float32).reshape(h, w)
        # OpenGL depth d in [0, 1] -> eye depth n / (1 - d (1 - n / f)).
        depth = np.multiply(zbuf, np.float32(-(1.0 - self.near / self.far)))
        depth += np.float32(1.0)
        np.divide(np.float32(self.near), depth, out=depth)
        np.copyto(depth, np.float32(self.far), where=zbuf >= 1.0)
        return CameraFrame(np.asarray(rgb, np.uint8), np.asarray(labels, np.uint8), depth, frame)

    def close(self) -> None:
        """Release the buffers and GL contexts."""
        self.engine.remove_all_windows()
        self.views.clear()
        self._by_spec.clear()


Renderer = CameraRenderer
"""Short alias."""
