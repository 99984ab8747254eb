"""Headless cameras for the embedded world: RGB, semantic labels and depth from one render.

panda3d draws through OpenGL over EGL (``p3headlessgl``: Mesa's llvmpipe on a CPU, the GPU
where there is one) into offscreen buffers; no ShowBase and no window. One pass of one shader
writes colour and the label id (in alpha) and fills the depth buffer; both are read back into
numpy. The static town is built once; vehicles, pedestrians and lamp states are pooled meshes
posed from a small float texture that is rewritten every frame, so a frame costs one texture
upload, one draw per material group (``render_cull`` picks the visible static triangles) and
two read-backs.

Frames (see ``shaders`` for the conventions): ``rgb`` (H, W, 3) uint8; ``labels`` (H, W) uint8
with CARLA's ids (``labels.Label``); ``depth`` (H, W) float32 planar depth along the optical
axis [m], like CARLA's depth camera, with the sky at ``far`` (1000 m).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from panda3d.core import (
    ColorBlendAttrib,
    ColorWriteAttrib,
    CullFaceAttrib,
    DepthTestAttrib,
    DepthWriteAttrib,
    FrameBufferProperties,
    GraphicsEngine,
    GraphicsOutput,
    GraphicsPipe,
    LMatrix4f,
    LVecBase2f,
    NodePath,
    OmniBoundingVolume,
    PTA_float,
    PTA_LMatrix4f,
    PTA_LVecBase2f,
    RenderAttrib,
    Shader,
    Texture,
    WindowProperties,
)

from envs.sim import scene, shaders
from envs.sim.actor_pool import EGO_HEIGHT, ActorPools, ViewWedge
from envs.sim.labels import Label
from envs.sim.mesh import Material, Mesh, make_vertices, to_geom_node
from envs.sim.pipe import headless_pipe, renderer_kind
from envs.sim.render_cull import CameraPose, StaticScene
from envs.sim.render_weather import shader_inputs, weather_look

if TYPE_CHECKING:
    from envs.sim.weather import Weather
    from envs.sim.world import World
    from envs.types import Transform

logger = logging.getLogger(__name__)

__all__ = ["EGO_HEIGHT", "CameraFrame", "CameraRenderer", "CameraSpec", "Renderer"]


@dataclass(frozen=True)
class CameraSpec:
    """A camera rigidly mounted on the ego vehicle.

    Attributes:
        width, height: Image size [px].
        fov: Horizontal field of view [deg] (square pixels; the vertical one follows).
        x, y, z: Mount position relative to the vehicle's centre at ground level, in CARLA's
            frame (x forward, y right, z up) [m].
        pitch: Up-down tilt, positive looks up [deg]; ``yaw``: positive looks right [deg].
        depth: Whether frames carry the depth image. Reading the depth buffer back and
            converting it is 10-15 % of a 160x96 frame on llvmpipe (measured back to back), so a
            camera that only feeds a policy (RGB, labels) turns it off.
    """

    width: int = 160
    height: int = 96
    fov: float = 100.0
    x: float = 1.5
    y: float = 0.0
    z: float = 2.4
    pitch: float = 0.0
    yaw: float = 0.0
    depth: bool = True

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

    def mount(self, ego: Transform) -> tuple[float, float]:
        """World (x, y) of this camera mounted on ``ego`` [m]."""
        yaw = math.radians(ego.yaw)
        x = ego.x + math.cos(yaw) * self.x - math.sin(yaw) * self.y
        y = ego.y + math.sin(yaw) * self.x + math.cos(yaw) * self.y
        return x, y

    def wedge(self, ego: Transform) -> ViewWedge:
        """Where this camera looks when mounted on ``ego`` (for culling actors)."""
        x, y = self.mount(ego)
        yaw = math.radians(ego.yaw) + math.radians(self.yaw)
        return ViewWedge(x, y, yaw, math.tan(math.radians(self.fov) / 2))


@dataclass(frozen=True)
class CameraFrame:
    """Three aligned images from one render.

    Attributes:
        rgb: (H, W, 3) uint8 colour.
        labels: (H, W) uint8 semantic ids (CARLA >= 0.9.14).
        depth: (H, W) float32 planar depth along the optical axis [m]; sky at the far plane.
            ``None`` when the camera's spec has ``depth=False``.
        frame: World frame number the images show.
    """

    rgb: NDArray[np.uint8]
    labels: NDArray[np.uint8]
    depth: NDArray[np.float32] | None
    frame: int


def open_buffer(
    engine: GraphicsEngine,
    pipe: GraphicsPipe,
    name: str,
    props: FrameBufferProperties,
    size: WindowProperties,
    gsg: Any,
) -> GraphicsOutput:
    """An offscreen buffer (never a window), sharing ``gsg`` when given."""
    buffer = engine.make_output(
        pipe, name, 0, props, size, GraphicsPipe.BF_refuse_window, gsg, None
    )
    if buffer is None:
        x, y = size.get_size()
        raise RuntimeError(f"panda3d could not open a {x}x{y} offscreen buffer ({name})")
    return buffer


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
        buffer = open_buffer(renderer.engine, renderer.pipe, f"camera{index}", props, size, gsg)
        self.buffer: GraphicsOutput = buffer
        self.color, self.depth = Texture("color"), Texture("depth")
        buffer.add_render_texture(self.color, GraphicsOutput.RTM_copy_ram, GraphicsOutput.RTP_color)
        if spec.depth:
            buffer.add_render_texture(
                self.depth, GraphicsOutput.RTM_copy_ram, GraphicsOutput.RTP_depth
            )
        buffer.set_clear_color((0.0, 0.0, 0.0, int(Label.SKY) / 255.0))
        buffer.set_clear_color_active(True)
        buffer.set_clear_depth_active(True)
        camera = renderer.make_camera(spec)
        buffer.make_display_region().set_camera(camera)
        self.camera = camera
        self.tan_half = LVecBase2f(
            math.tan(math.radians(spec.fov) / 2), spec.height / (2 * spec.focal)
        )
        # The sky starts 6 degrees below the horizon (NDC y); the terrain covers all lower.
        low = math.tan(math.radians(-6.0 - spec.pitch)) / self.tan_half[1]
        self.sky_low = float(min(max(low, -1.0), 1.0))


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
        for order, node in enumerate(self._groups.values()):
            node.set_bin("fixed", order)  # front to back (see ``shaders.GROUPS``)
        self._shaders: dict[tuple[str, bool, bool, bool], Shader] = {}
        meshes = {group.upper(): mesh for group, mesh in scene.static_meshes(world, seed).items()}
        glow = meshes.pop("GLOW")
        self._static = StaticScene(meshes, self._groups)
        self._add_sky()
        self._add_glow(glow)
        self._actors = ActorPools(self._groups["VEHICLE"], self._groups["WALKER"], self.root)
        self._weather: Weather | None = None
        self._placed: _View | None = None
        self._active: _View | None = None
        # Per-frame and per-view uniforms are arrays bound once and then written in place.
        # Setting a shader input on the root every frame changes the scene root's render
        # state, and that cost a quarter of a frame (160x96 on llvmpipe, one core: 0.93 ms a
        # frame with set_shader_input, 0.68 ms with these arrays; identical images).
        self._cam = PTA_LMatrix4f([LMatrix4f.ident_mat()])
        self._noise_seed = PTA_LVecBase2f([LVecBase2f(0.0, 0.0)])
        self._tan_half = PTA_LVecBase2f([LVecBase2f(1.0, 1.0)])
        self._resolution = PTA_LVecBase2f([LVecBase2f(1.0, 1.0)])
        self._sky_low = PTA_float([0.0])
        for name, value in (
            ("cam", self._cam),
            ("noise_seed", self._noise_seed),
            ("tan_half", self._tan_half),
            ("resolution", self._resolution),
            ("sky_low", self._sky_low),
        ):
            self.root.set_shader_input(name, value)

    # -------------------------------------------------------------------------------- scene
    def _add_sky(self, cells: tuple[int, int] = (1, 1)) -> None:
        """The sky: a quad at the far plane (the vertex shader fits it above the horizon)."""
        gx, gy = np.meshgrid(np.linspace(-1, 1, cells[0] + 1), np.linspace(-1, 1, cells[1] + 1))
        corners = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])
        row = cells[0] + 1
        i = (np.arange(cells[1])[:, None] * row + np.arange(cells[0])[None, :]).ravel()
        tris = np.concatenate(
            [np.stack([i, i + 1, i + row + 1], 1), np.stack([i, i + row + 1, i + row], 1)]
        )
        quad = Mesh(
            make_vertices(corners, (0, 0, 0), Label.SKY, Material.SKY),
            tris.astype(np.uint32),
        )
        self._add_overlay("SKY", quad)

    def _add_overlay(self, group: str, mesh: Mesh) -> NodePath:
        """Geometry the shader places (never culled by bounds), depth-tested against what is
        drawn, writing no depth, both faces drawn."""
        node = self._groups[group].attach_new_node(to_geom_node(mesh, group.lower()))
        node.node().set_bounds(OmniBoundingVolume())
        node.node().set_final(True)
        node.set_attrib(DepthTestAttrib.make(RenderAttrib.M_less_equal))
        node.set_attrib(DepthWriteAttrib.make(DepthWriteAttrib.M_off))
        node.set_attrib(CullFaceAttrib.make(CullFaceAttrib.M_cull_none))
        return node

    def _add_glow(self, glow: Mesh) -> None:
        """The lamps' glow quads: blended onto the colour only, never the label or the depth.

        A few quads per town, posed by the shader (which also drops those facing away or of
        dark lamps), so they skip the static culling.
        """
        if not len(glow.triangles):
            return
        node = self._add_overlay("GLOW", glow)
        node.set_attrib(ColorWriteAttrib.make(ColorWriteAttrib.C_rgb))
        node.set_attrib(
            ColorBlendAttrib.make(
                ColorBlendAttrib.M_add, ColorBlendAttrib.O_one, ColorBlendAttrib.O_one
            )
        )

    def make_camera(self, spec: CameraSpec) -> NodePath:
        """A camera node under this renderer's scene with the spec's lens."""
        from panda3d.core import Camera, PerspectiveLens

        lens = PerspectiveLens()
        lens.set_fov(spec.fov, spec.vfov)
        lens.set_near_far(self.near, self.far)
        camera = Camera("camera", lens)
        return self.root.attach_new_node(camera)

    # -------------------------------------------------------------------------------- frame
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
                    Shader.SL_GLSL, shaders.vertex(group, *flags), shaders.fragment(group, *flags)
                )
                self._shaders[key] = shader
            node.set_shader(shader)
        self._weather = weather

    def _place(self, view: _View, world: World, ego: Transform) -> None:
        """Put the camera on the ego and pass its frame to the shader."""
        spec = view.spec
        x, y = spec.mount(ego)
        heading = -(ego.yaw + spec.yaw) - 90.0
        view.camera.set_pos_hpr(x, -y, ego.z + spec.z, heading, spec.pitch, 0.0)
        self._static.update(
            CameraPose(
                (x, -y, ego.z + spec.z),
                heading,
                spec.pitch,
                (float(view.tan_half[0]), float(view.tan_half[1])),
                spec.focal,
            )
        )
        self._cam[0] = view.camera.get_mat()
        if view is not self._placed:  # per-view constants
            self._tan_half[0] = view.tan_half
            self._resolution[0] = LVecBase2f(spec.width, spec.height)
            self._sky_low[0] = view.sky_low
            self._placed = view
        self._noise_seed[0] = LVecBase2f(self.seed % 997, world.frame % 8192)

    def _view(self, spec: CameraSpec) -> _View:
        view = self._by_spec.get(spec)
        if view is None:
            view = _View(self, spec, len(self.views))
            self.views.append(view)
            self._active = None  # a new buffer starts active
            self._by_spec[spec] = view
        return view

    def render(self, world: World, spec: CameraSpec | None = None) -> CameraFrame:
        """Draw the world from one ego camera (default ``CameraSpec()``)."""
        return self.render_many(world, [spec or CameraSpec()])[0]

    def render_many(self, world: World, specs: list[CameraSpec]) -> list[CameraFrame]:
        """Draw the world from several ego cameras; actors are posed once for all of them."""
        wanted = [self._view(spec) for spec in specs]
        ego = world.ego_transform()
        self._actors.update(world, ego, [view.spec.wedge(ego) for view in wanted])
        self._apply_weather(world.weather)
        frames = []
        for view in wanted:
            if view is not self._active:  # only the drawn view's buffer renders
                for other in self.views:
                    other.buffer.set_active(other is view)
                self._active = view
            self._place(view, world, ego)
            self.engine.render_frame()
            frames.append(self._read(view, world.frame))
        return frames

    def _read(self, view: _View, frame: int) -> CameraFrame:
        h, w = view.spec.height, view.spec.width
        raw = np.frombuffer(view.color.get_ram_image(), dtype=np.uint8).reshape(h, w, 4)
        rgb: NDArray[np.uint8] = np.asarray(cv2.cvtColor(raw, cv2.COLOR_RGBA2RGB), np.uint8)
        labels: NDArray[np.uint8] = np.asarray(cv2.extractChannel(raw, 3), np.uint8)
        if not view.spec.depth:
            return CameraFrame(rgb, labels, None, frame)
        zbuf = np.frombuffer(view.depth.get_ram_image(), dtype=np.float32).reshape(h, w)
        # OpenGL depth d in [0, 1] -> eye depth n / (1 - d (1 - n / f)).
        depth = np.multiply(zbuf, np.float32(-(1.0 - self.near / self.far)))
        depth += np.float32(1.0)
        np.divide(np.float32(self.near), depth, out=depth)
        np.copyto(depth, np.float32(self.far), where=zbuf >= 1.0)
        return CameraFrame(rgb, labels, depth, frame)

    def close(self) -> None:
        """Release the buffers and GL contexts."""
        self.engine.remove_all_windows()
        self.views.clear()
        self._by_spec.clear()


Renderer = CameraRenderer
"""Short alias."""


class FrameRenderer(Protocol):
    """What draws camera frames: ``CameraRenderer`` (OpenGL) or ``SoftwareRenderer``."""

    def render(self, world: World, spec: CameraSpec | None = None) -> CameraFrame: ...

    def render_many(self, world: World, specs: list[CameraSpec]) -> list[CameraFrame]: ...

    def close(self) -> None: ...


def make_renderer(world: World, seed: int = 0) -> FrameRenderer:
    """The camera renderer ``pipe.renderer_kind`` picks: OpenGL over EGL, or where that is
    missing (or ``SEGDRIVE_RENDERER=software``) panda3d's software rasteriser."""
    if renderer_kind() == "software":
        from envs.sim.render_software import SoftwareRenderer

        return SoftwareRenderer(world, seed=seed)
    return CameraRenderer(world, seed=seed)
