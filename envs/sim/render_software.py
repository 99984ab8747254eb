"""Camera rendering without OpenGL: panda3d's software rasteriser ``p3tinydisplay``.

The fallback where OpenGL over EGL is missing (``pipe.renderer_kind``). p3tinydisplay runs no
shaders, so a frame is drawn in three fixed-function passes over the same culled static scene
(``StaticScene``, one per pass) and CPU-posed actors, each into its own buffer:

* colour: vertex albedo lit per vertex by panda3d's fixed-function sun and ambient lights;
* labels: flat 8-bit vertex colours holding the label id, which read back exactly;
* depth: p3tinydisplay cannot read its depth buffer back, so the camera-space depth becomes a
  texture coordinate (``TexGenAttrib.M_eye_position``) into a 4096-texel code ramp, which
  reads back as colour: 1/16 m steps up to ``DEPTH_RANGE``, anything farther reads as the far
  plane. The rasteriser's perspective correction is inexact on large triangles: within 0.1 m
  on walls and vehicles, a few per cent on the ground near the horizon.

On the CPU afterwards: the sky gradient where the labels say sky, distance fog from the decoded
depth (so fog also needs the depth pass), and rain's lower contrast. Left out, compared with the
shader renderer: rain streaks, wet reflections, lit windows, headlights, lamp glow, vehicle
glass and wheels; a traffic light shows its state as the colour of its whole lamp face. Labels
and geometry agree with the GL renderer's, colours do not, so a perception model trained on one
renderer's images should be run on the same one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from panda3d.core import (
    AmbientLight,
    Camera,
    ColorAttrib,
    DirectionalLight,
    FrameBufferProperties,
    Geom,
    GeomNode,
    GeomVertexArrayFormat,
    GeomVertexFormat,
    GraphicsEngine,
    GraphicsOutput,
    LMatrix4f,
    LVecBase3f,
    LVecBase4f,
    NodePath,
    PerspectiveLens,
    SamplerState,
    TexGenAttrib,
    Texture,
    TextureStage,
    TransformState,
    WindowProperties,
)
from panda3d.core import (
    Material as PandaMaterial,
)

from envs.sim import scene
from envs.sim.actor_pool import (
    EGO_HEIGHT,
    EGO_PAINT,
    VEHICLE_RANGE,
    WALKER_RANGE,
    ViewWedge,
    actor_looks,
    visible,
)
from envs.sim.camera import CameraFrame, CameraSpec, open_buffer
from envs.sim.labels import Label
from envs.sim.mesh import Material, Mesh, geom_node, vehicle_template, walker_template
from envs.sim.pipe import software_pipe
from envs.sim.render_cull import CameraPose, StaticScene
from envs.sim.render_weather import WeatherLook, weather_look

if TYPE_CHECKING:
    from envs.sim.weather import Weather
    from envs.sim.world import World
    from envs.types import Transform

DEPTH_RANGE = 256.0
"""[m] Depth the code ramp spans; farther surfaces read as the far plane."""
DEPTH_MAX_EDGE = 8.0
"""[m] Longest triangle edge in the depth pass (``subdivide``)."""
_CODES = 4096  # texels of the depth code ramp: R = code >> 4, G = (code & 15) << 4
_GROUPS = ("TERRAIN", "GROUND", "SOLID", "LAMP")
"""Static groups drawn (the glow quads need a shader). The terrain lies a few centimetres under
the roads, closer than p3tinydisplay's 16-bit depth buffer resolves at a distance, so it is
drawn first, with no depth test or write, and everything else covers it."""
_LAMP_HUES = np.array(  # red, yellow, green (TrafficLightState 0-2); other states: unlit
    [[1.0, 0.12, 0.05], [1.0, 0.72, 0.05], [0.1, 1.0, 0.35]], np.float32
)
_UNLIT_LAMP = np.array([0.08, 0.08, 0.08], np.float32)
_PASSES = ("rgb", "labels", "depth")


def _format(kind: str) -> GeomVertexFormat:
    array = GeomVertexArrayFormat()
    array.add_column("vertex", 3, Geom.NT_float32, Geom.C_point)
    if kind == "rgb":
        array.add_column("normal", 3, Geom.NT_float32, Geom.C_normal)
    if kind != "depth":
        array.add_column("color", 4, Geom.NT_uint8, Geom.C_color)
    return GeomVertexFormat.register_format(array)


_FORMATS: dict[str, GeomVertexFormat] = {}


def _vertex_bytes(kind: str, vertices: NDArray[np.float32], rgb: NDArray[np.float32]) -> bytes:
    """One pass's interleaved vertex rows: position, [normal], [RGBA8 colour]."""
    n = len(vertices)
    fields: list[tuple[str, str, int]] = [("p", "<f4", 3)]
    if kind == "rgb":
        fields.append(("n", "<f4", 3))
    if kind != "depth":
        fields.append(("c", "u1", 4))
    rows = np.zeros(n, dtype=np.dtype([(name, t, (k,)) for name, t, k in fields]))
    rows["p"] = vertices[:, 0:3]
    if kind == "rgb":
        rows["n"] = vertices[:, 10:13]
    if kind != "depth":
        rows["c"][:, :3] = _to_bytes(rgb)
        rows["c"][:, 3] = 255
    return rows.tobytes()


def _to_bytes(colour: NDArray[np.floating]) -> NDArray[np.uint8]:
    return np.asarray(np.clip(np.rint(np.asarray(colour) * 255.0), 0, 255), np.uint8)


def _pass_colours(kind: str, vertices: NDArray[np.float32]) -> NDArray[np.float32]:
    """Per-vertex colour of a pass in [0, 1]: albedo, or the label id / 255 in every channel."""
    if kind == "labels":
        return np.repeat(vertices[:, 6:7] / 255.0, 3, axis=1).astype(np.float32)
    return np.asarray(vertices[:, 3:6], np.float32)


def _geom_node(kind: str, mesh: Mesh, name: str) -> GeomNode:
    """A GeomNode of ``mesh`` in pass ``kind``'s vertex format (one draw call)."""
    fmt = _FORMATS.get(kind)
    if fmt is None:
        fmt = _FORMATS[kind] = _format(kind)
    rows = _vertex_bytes(kind, mesh.vertices, _pass_colours(kind, mesh.vertices))
    return geom_node(fmt, rows, len(mesh.vertices), mesh.triangles, name)


def subdivide(mesh: Mesh, max_edge: float) -> Mesh:
    """Split triangles in four at their edge midpoints until no edge is over ``max_edge`` [m];
    the terrain (``Material.GRASS``, a few huge triangles under everything) stays whole.

    For the depth pass: p3tinydisplay's perspective correction of texture coordinates is
    inexact across large triangles (25 % off on a road 20 degrees below the horizon).
    """
    vertices, tris = mesh.vertices, mesh.triangles.astype(np.int64)
    done = [tris[vertices[tris[:, 2], 7] == Material.GRASS]]
    tris = tris[vertices[tris[:, 2], 7] != Material.GRASS]
    while len(tris):
        p = vertices[tris, :3]
        edge = np.linalg.norm(p - np.roll(p, -1, axis=1), axis=2).max(axis=1)
        long = edge > max_edge
        done.append(tris[~long])
        tris = tris[long]
        if not len(tris):
            break
        a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
        mids = []
        for u, v in ((a, b), (b, c), (c, a)):
            mid = (vertices[u] + vertices[v]) / 2.0
            mid[:, 6:13] = vertices[c, 6:13]  # the face's label, material, ids and normal
            mids.append(mid)
        n, start = len(tris), len(vertices)
        ab, bc, ca = (start + np.arange(n) + k * n for k in range(3))
        vertices = np.concatenate([vertices, *mids]).astype(np.float32)
        tris = np.concatenate(
            [
                np.stack([a, ab, ca], 1),
                np.stack([ab, b, bc], 1),
                np.stack([ca, bc, c], 1),
                np.stack([ab, bc, ca], 1),
            ]
        )
    return Mesh(vertices, np.concatenate(done).astype(np.uint32))


def _code_texture() -> Texture:
    """The depth code ramp: texel i holds (i >> 4, (i & 15) << 4, 0), nearest, clamped."""
    i = np.arange(_CODES)
    ramp = np.zeros((1, _CODES, 3), np.uint8)
    ramp[0, :, 2] = i >> 4  # RAM order is BGR
    ramp[0, :, 1] = (i & 15) << 4
    texture = Texture("depth-code")
    texture.setup_2d_texture(_CODES, 1, Texture.T_unsigned_byte, Texture.F_rgb)
    texture.set_ram_image(ramp.tobytes())
    texture.set_minfilter(SamplerState.FT_nearest)
    texture.set_magfilter(SamplerState.FT_nearest)
    texture.set_wrap_u(SamplerState.WM_clamp)
    texture.set_wrap_v(SamplerState.WM_clamp)
    return texture


class _Actors:
    """A growing set of instances of one actor template in one pass, posed on the CPU."""

    def __init__(self, parent: NodePath, template: NodePath) -> None:
        self.parent, self.template = parent, template
        self.nodes: list[NodePath] = []

    def place(
        self,
        poses: NDArray[np.float64],
        sizes: NDArray[np.float64],
        paints: NDArray[np.float32] | None,
    ) -> None:
        """Show one instance per row of ``poses`` (x, y, z, heading deg; panda frame)."""
        while len(self.nodes) < len(poses):
            self.nodes.append(self.template.instance_to(self.parent))
        for k, node in enumerate(self.nodes):
            if k >= len(poses):
                node.hide()
                continue
            x, y, z, h = poses[k]
            node.set_pos_hpr_scale(x, y, z, h, 0.0, 0.0, *sizes[k])
            if paints is not None:
                r, g, b = paints[k]
                node.set_color_scale(r, g, b, 1.0)
            node.show()


class _Pass:
    """One fixed-function drawing of the scene (colour, labels or depth coded as colour)."""

    def __init__(self, kind: str, meshes: dict[str, Mesh]) -> None:
        self.kind = kind
        self.root = NodePath(kind)
        self.groups = {name: self.root.attach_new_node(name) for name in meshes}
        if "TERRAIN" in self.groups:  # drawn before everything (the background bin)
            terrain = self.groups["TERRAIN"]
            terrain.set_bin("background", 0)
            terrain.set_depth_test(False)
            terrain.set_depth_write(False)
        self.nodes: dict[str, GeomNode] = {}

        def to_node(mesh: Mesh, name: str) -> GeomNode:
            node = _geom_node(kind, mesh, name)
            self.nodes[name] = node
            return node

        self.scene = StaticScene(meshes, self.groups, to_node)
        self.actors = []
        for template in (vehicle_template(), walker_template()):
            if kind == "rgb":  # painted per instance with a colour scale
                template = _white(template)
            self.actors.append(_Actors(self.root, NodePath(_geom_node(kind, template, "actor"))))
        if kind == "depth":
            stage = TextureStage.get_default()
            self.root.set_texture(stage, _code_texture())
            self.root.set_tex_gen(stage, TexGenAttrib.M_eye_position)
            ramp = LMatrix4f(0, 0, 0, 0, 1.0 / DEPTH_RANGE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1)
            self.root.set_tex_transform(stage, TransformState.make_mat(ramp))
            self.root.set_attrib(ColorAttrib.make_flat((1.0, 1.0, 1.0, 1.0)))
        if kind == "rgb":
            self.ambient = self.root.attach_new_node(AmbientLight("ambient"))
            self.sun = self.root.attach_new_node(DirectionalLight("sun"))
            self.root.set_light(self.ambient)
            self.root.set_light(self.sun)
            # A white material: the lights then scale the vertex colour once (without one,
            # p3tinydisplay applies the vertex colour both as the material and as the colour).
            white = PandaMaterial("white")
            white.set_ambient(LVecBase4f(1.0, 1.0, 1.0, 1.0))
            white.set_diffuse(LVecBase4f(1.0, 1.0, 1.0, 1.0))
            self.root.set_material(white)
            if "LAMP" in self.groups:
                self.groups["LAMP"].set_light_off()  # the lamps glow with their own colour

    def recolour(self, name: str, colours: NDArray[np.floating]) -> None:
        """Rewrite the vertex colours of static group ``name`` (rgb pass)."""
        node = self.nodes.get(name)
        if node is None:
            return
        data = node.modify_geom(0).modify_vertex_data()
        rows = np.frombuffer(memoryview(data.modify_array(0)).cast("B"), dtype=np.uint8)
        rows = rows.reshape(len(colours), -1)
        rows[:, 24:27] = _to_bytes(colours)


def _white(template: Mesh) -> Mesh:
    vertices = template.vertices.copy()
    vertices[:, 3:6] = 1.0
    return Mesh(vertices, template.triangles)


@dataclass
class _View:
    """One camera: a buffer, texture and lens per pass, and its sky gradient."""

    spec: CameraSpec
    buffers: list[GraphicsOutput]
    textures: list[Texture]
    cameras: list[NodePath]
    up: NDArray[np.float32]  # (H, W) height of each pixel's unit view direction


class SoftwareRenderer:
    """Renders ego cameras of one ``World`` with ``p3tinydisplay`` (no OpenGL needed).

    The same interface and images as ``camera.CameraRenderer`` (labels and geometry agree; the
    colours are simpler, see the module notes). Slower: each frame is three software passes.

    Args:
        world: The world to draw.
        seed: Seed of the procedural buildings and trees.
        near, far: Clipping planes [m]; ``far`` is the depth of the sky and of anything beyond
            ``DEPTH_RANGE``.
    """

    def __init__(self, world: World, seed: int = 0, near: float = 0.1, far: float = 1000.0) -> None:
        self.pipe = software_pipe()
        self.engine = GraphicsEngine(self.pipe)
        self.near, self.far, self.seed = near, far, seed
        static = {g.upper(): m for g, m in scene.static_meshes(world, seed).items()}
        ground = static["GROUND"]
        grass = ground.vertices[ground.triangles[:, 2], 7] == Material.GRASS
        static["TERRAIN"] = Mesh(ground.vertices, ground.triangles[grass])
        static["GROUND"] = Mesh(ground.vertices, ground.triangles[~grass])
        meshes = {g: static[g] for g in _GROUPS if g in static and len(static[g].triangles)}
        fine = {name: subdivide(mesh, DEPTH_MAX_EDGE) for name, mesh in meshes.items()}
        self._passes = [_Pass(kind, fine if kind == "depth" else meshes) for kind in _PASSES]
        self.root = self._passes[0].root
        lamps = meshes.get("LAMP")
        self._lamp_light = (
            np.zeros(0, np.int64) if lamps is None else lamps.vertices[:, 8].astype(np.int64)
        )
        self._ground = ground
        self.views: list[_View] = []
        self._by_spec: dict[CameraSpec, _View] = {}
        self._weather: Weather | None = None
        self._look: WeatherLook = weather_look(world.weather)
        self._lamp_states: bytes | None = None

    # ------------------------------------------------------------------------------- views
    def _view(self, spec: CameraSpec) -> _View:
        view = self._by_spec.get(spec)
        if view is not None:
            return view
        props = FrameBufferProperties()
        props.set_rgba_bits(8, 8, 8, 8)
        props.set_depth_bits(16)
        size = WindowProperties.size(spec.width, spec.height)
        buffers: list[GraphicsOutput] = []
        textures: list[Texture] = []
        cameras: list[NodePath] = []
        for kind, render_pass in zip(_PASSES, self._passes, strict=True):
            host = self.views[0].buffers[0] if self.views else (buffers[0] if buffers else None)
            gsg = host.get_gsg() if host is not None else None  # one GSG for every buffer
            buffer = open_buffer(
                self.engine, self.pipe, f"{kind}{len(self.views)}", props, size, gsg
            )
            texture = Texture(kind)
            buffer.add_render_texture(
                texture, GraphicsOutput.RTM_copy_ram, GraphicsOutput.RTP_color
            )
            clear = {"rgb": (0.0, 0.0, 0.0, 1.0), "labels": (Label.SKY / 255.0,) * 3 + (1.0,)}
            buffer.set_clear_color(clear.get(kind, (1.0, 1.0, 1.0, 1.0)))
            buffer.set_clear_color_active(True)
            buffer.set_clear_depth_active(True)
            lens = PerspectiveLens()
            lens.set_fov(spec.fov, spec.vfov)
            lens.set_near_far(self.near, self.far)
            camera = render_pass.root.attach_new_node(Camera(kind, lens))
            buffer.make_display_region().set_camera(camera)
            buffers.append(buffer)
            textures.append(texture)
            cameras.append(camera)
        view = _View(spec, buffers, textures, cameras, _view_heights(spec))
        self.views.append(view)
        self._by_spec[spec] = view
        return view

    # ------------------------------------------------------------------------------- frame
    def _apply_weather(self, weather: Weather) -> None:
        if weather == self._weather:
            return
        look = weather_look(weather)
        rgb = self._passes[0]
        ambient = LVecBase3f(*look.ambient) * 0.875  # the shader's ambient * (0.75 + 0.25 n.z)
        rgb.ambient.node().set_color((*ambient, 1.0))
        rgb.sun.node().set_color((*look.sun_color, 1.0))
        rgb.sun.node().set_direction(LVecBase3f(*(-c for c in look.sun_dir)))
        v = self._ground.vertices  # wet ground is darker (roads the most)
        dark = np.where(v[:, 7] < Material.MARKING - 0.5, 0.5, 0.3) * look.wet
        for name in ("GROUND", "TERRAIN"):
            rgb.recolour(name, v[:, 3:6] * (1.0 - dark)[:, None])
        self._weather, self._look = weather, look

    def _update_lamps(self, world: World) -> None:
        states = np.asarray(world.lights.state, np.int64)
        key = states.tobytes()
        if key == self._lamp_states or not len(self._lamp_light):
            return
        per_vertex = states[np.clip(self._lamp_light, 0, max(len(states) - 1, 0))]
        lit = (per_vertex >= 0) & (per_vertex < len(_LAMP_HUES))
        colours = np.where(lit[:, None], _LAMP_HUES[np.clip(per_vertex, 0, 2)], _UNLIT_LAMP)
        self._passes[0].recolour("LAMP", colours.astype(np.float32))
        self._lamp_states = key

    def _place_actors(self, world: World, ego: Transform, wedges: list[ViewWedge]) -> None:
        t, w = world.traffic, world.walkers
        nt = len(t.xyz)
        xy = np.concatenate([t.xyz[:, :2], w.xyz[:, :2]]) if nt + len(w.xyz) else np.zeros((0, 2))
        reach2 = np.repeat(np.square([VEHICLE_RANGE, WALKER_RANGE]), [nt, len(w.xyz)])
        keep = visible(xy, wedges, reach2)
        keep[nt:] &= w.active
        cars = np.flatnonzero(keep[:nt])
        people = np.flatnonzero(keep[nt:])
        sizes, paints = actor_looks(world)
        car_pose = np.zeros((len(cars) + 1, 4))
        car_pose[0] = (ego.x, -ego.y, ego.z, -ego.yaw)
        car_pose[1:, :3] = t.xyz[cars]
        car_pose[1:, 1] *= -1.0
        car_pose[1:, 3] = -np.degrees(t.yaw[cars])
        car_size = np.zeros((len(cars) + 1, 3))
        car_size[0] = (world.config.ego.length, world.config.ego.width, EGO_HEIGHT)
        car_size[1:] = sizes[cars]
        car_paint = np.zeros((len(cars) + 1, 3), np.float32)
        car_paint[0] = EGO_PAINT
        car_paint[1:] = paints[cars]
        walker_pose = np.zeros((len(people), 4))
        walker_pose[:, :3] = w.xyz[people]
        walker_pose[:, 1] *= -1.0
        walker_pose[:, 3] = -np.degrees(w.yaw[people])
        walker_size, shirts = sizes[nt + people], paints[nt + people]
        for render_pass in self._passes:
            paint = render_pass.kind == "rgb"
            vehicles, walkers = render_pass.actors
            vehicles.place(car_pose, car_size, car_paint if paint else None)
            walkers.place(walker_pose, walker_size, shirts if paint else None)

    def _place(self, view: _View, ego: Transform) -> None:
        spec = view.spec
        x, y = spec.mount(ego)
        heading = -(ego.yaw + spec.yaw) - 90.0
        tan_half = (
            math.tan(math.radians(spec.fov) / 2.0),
            spec.height / (2.0 * spec.focal),
        )
        pose = CameraPose((x, -y, ego.z + spec.z), heading, spec.pitch, tan_half, spec.focal)
        for camera, render_pass in zip(view.cameras, self._passes, strict=True):
            camera.set_pos_hpr(x, -y, ego.z + spec.z, heading, spec.pitch, 0.0)
            render_pass.scene.update(pose)

    def render(self, world: World, spec: CameraSpec | None = None) -> CameraFrame:
        """Draw the world from one ego camera (default ``CameraSpec()``)."""
        return self.render_many(world, [spec or CameraSpec()])[0]

    def render_many(self, world: World, specs: list[CameraSpec]) -> list[CameraFrame]:
        """Draw the world from several ego cameras."""
        wanted = [self._view(spec) for spec in specs]
        ego = world.ego_transform()
        self._apply_weather(world.weather)
        self._update_lamps(world)
        self._place_actors(world, ego, [view.spec.wedge(ego) for view in wanted])
        frames = []
        for view in wanted:
            depth = view.spec.depth or self._look.fog_k > 0.0
            for other in self.views:
                for k, buffer in enumerate(other.buffers):
                    buffer.set_active(other is view and (k < 2 or depth))
            self._place(view, ego)
            self.engine.render_frame()
            frames.append(self._read(view, world.frame, depth))
        return frames

    def _read(self, view: _View, frame: int, with_depth: bool) -> CameraFrame:
        h, w = view.spec.height, view.spec.width

        def image(k: int) -> NDArray[np.uint8]:  # BGRA, bottom row first
            raw = np.frombuffer(view.textures[k].get_ram_image(), np.uint8)
            return raw.reshape(h, w, 4)[::-1]

        labels = np.ascontiguousarray(image(1)[:, :, 2])
        depth = None
        if with_depth:
            code = image(2)
            index = code[:, :, 2].astype(np.int32) * 16 + (code[:, :, 1].astype(np.int32) >> 4)
            depth = ((index + 0.5) * (DEPTH_RANGE / _CODES)).astype(np.float32)
            # Sky (cleared to the last code) and anything beyond the ramp, where the texture
            # coordinate passes 1 and p3tinydisplay reads texel 0 (clamping or not; no real
            # surface is nearer than the near plane, so code 0 is never a true depth).
            depth[(index >= _CODES - 1) | (index == 0)] = np.float32(self.far)
        rgb = self._finish(image(0)[:, :, 2::-1], labels, depth, view)
        return CameraFrame(rgb, labels, depth if view.spec.depth else None, frame)

    def _finish(
        self,
        lit: NDArray[np.uint8],
        labels: NDArray[np.uint8],
        depth: NDArray[np.float32] | None,
        view: _View,
    ) -> NDArray[np.uint8]:
        """Sky, fog and rain on the lit colours (the shader renderer's formulas)."""
        look = self._look
        col = lit.astype(np.float32) / 255.0
        fog = np.asarray(look.fog_color, np.float32)
        sky = labels == Label.SKY
        if sky.any():
            t = np.clip(view.up / 0.5, 0.0, 1.0)
            t = t * t * (3.0 - 2.0 * t)
            horizon = np.asarray(look.sky_horizon, np.float32)
            zenith = np.asarray(look.sky_zenith, np.float32)
            gradient = horizon + (zenith - horizon) * t[:, :, None]
            haze = 1.0 - math.exp(-look.fog_k * self.far)
            col[sky] = gradient[sky] * (1.0 - haze) + fog * haze
        if depth is not None and look.fog_k > 0.0:
            f = 1.0 - np.exp(-look.fog_k * depth)
            f[sky] = 0.0
            col += (fog - col) * f[:, :, None]
        if look.rain > 0.0:
            col += (fog - col) * (0.2 * look.rain)
        return np.ascontiguousarray(_to_bytes(col))

    def close(self) -> None:
        """Release the buffers."""
        self.engine.remove_all_windows()
        self.views.clear()
        self._by_spec.clear()


def _view_heights(spec: CameraSpec) -> NDArray[np.float32]:
    """Per pixel, the up component of its unit view direction (pitch only; the sky gradient)."""
    cols = (np.arange(spec.width) + 0.5 - spec.width / 2) / spec.focal
    rows = (spec.height / 2 - (np.arange(spec.height) + 0.5)) / spec.focal
    pitch = math.radians(spec.pitch)
    forward_up = math.sin(pitch) + rows * math.cos(pitch)  # (H,)
    length = np.sqrt(1.0 + rows[:, None] ** 2 + cols[None, :] ** 2)
    return (forward_up[:, None] / length).astype(np.float32)
