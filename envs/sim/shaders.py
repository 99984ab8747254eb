"""GLSL of the one-pass renderer: colour in RGB, the label id in alpha, depth from the z-buffer.

Conventions the Python side relies on:

* Clip-space y is negated, so the framebuffer's first row is the image's top row and read-backs
  need no flip (front faces therefore appear clockwise: the renderer culls counter-clockwise).
* Colour is written as ``(b, g, r)``: panda3d stores RGBA8 read-backs as BGRA, so the bytes in
  RAM come out in RGB order, followed by the label.
* The label is ``id / 255`` in alpha with blending off: exact ids, untouched by light or weather.
* Dynamic actors are pooled meshes posed from the ``dyn`` texture (one texel per actor per row):
  panda3d uploads RAM texels as BGRA, hence the ``.bgra`` swizzles. Row 0 vehicle pose
  (x, y, z, heading), 1 vehicle size (length, width, height, visible),
  2 vehicle colour (r, g, b, lights on), 3-5 the same for walkers (skin tone in place of
  lights), 6 traffic-light state.
* Material ids are ``mesh.Material``; the sky is a clip-space quad at the far plane (depth 1)
  above ``sky_low`` (NDC y a few degrees below the horizon: the terrain covers what is lower).

Cost model (Mesa llvmpipe on one core, where a frame of 160x96 has about a millisecond): every
triangle that reaches the rasteriser costs ~0.3 us, every pixel is paid for, and both sides of a
data-dependent branch are evaluated. So each material group and weather effect is its own
compiled variant, lighting is flat and done per vertex (``mesh`` makes the provoking vertex carry
the face normal), the sky is two triangles with its colour per pixel, eye depth for fog comes
free from ``gl_FragCoord.w``, and per-pixel work is limited to cheap patterns (windows, paving,
lamps, vehicle lights).
"""

_COMMON = """
uniform mat4 cam;  // the camera's transform: rows right, forward, up, position
#define cam_right cam[0].xyz
#define cam_fwd cam[1].xyz
#define cam_up cam[2].xyz
#define cam_pos cam[3].xyz
uniform vec3 sun_dir;
uniform vec3 sun_color;
uniform vec3 ambient;
uniform vec3 sky_zenith;
uniform vec3 sky_horizon;
uniform vec3 fog_color;
uniform float fog_k;
uniform float wet;
uniform float rain;
uniform float night;

// A cheap hash in [0, 1) (no sin: transcendental functions are slow on llvmpipe).
float hash(vec2 p) {
    vec3 q = fract(vec3(p.xyx) * 0.1031);
    q += dot(q, q.yzx + 33.33);
    return fract((q.x + q.y) * q.z);
}

// The sky's colour towards a unit direction; the sun's glow is cos^48 by squaring (no pow).
vec3 sky(vec3 dir) {
    vec3 c = mix(sky_horizon, sky_zenith, smoothstep(0.0, 0.5, dir.z));
    float s2 = max(dot(dir, sun_dir), 0.0);
    s2 *= s2;
    float s4 = s2 * s2, s16 = s4 * s4 * s4 * s4;
    return c + sun_color * 0.6 * s16 * s16 * s16;
}
"""

_VERTEX = """
uniform mat4 p3d_ModelViewProjectionMatrix;
uniform vec2 tan_half;
uniform float sky_low;
#if defined(VEHICLE) || defined(WALKER) || defined(LAMP) || defined(GLOW)
uniform sampler2D dyn;
#endif
#ifdef GLOW
uniform vec2 resolution;
#endif
in vec4 p3d_Vertex;
in vec3 albedo;
in vec4 info;
in vec3 normal;
flat out vec4 tag;
flat out vec3 base;
flat out vec3 lit;
flat out vec3 spec;
flat out vec3 nrm;
out vec3 wpos;
out vec3 lpos;

void main() {
    vec3 p = p3d_Vertex.xyz;
    vec3 n = normal;
    vec3 col = albedo;
    vec4 t = info;
    lpos = p;
#if defined(VEHICLE) || defined(WALKER)
    int id = int(info.z + 0.5);
#ifdef VEHICLE
    const int row = 0;
#else
    const int row = 3;
#endif
    vec4 pose = texelFetch(dyn, ivec2(id, row), 0).bgra;
    vec4 size = texelFetch(dyn, ivec2(id, row + 1), 0).bgra;
    vec4 paint = texelFetch(dyn, ivec2(id, row + 2), 0).bgra;
    vec3 q = p * size.xyz * size.w;
    float c = cos(pose.w), s = sin(pose.w);
    p = vec3(c * q.x - s * q.y, s * q.x + c * q.y, q.z) + pose.xyz;
    n = vec3(c * n.x - s * n.y, s * n.x + c * n.y, n.z);
    col = paint.rgb;
    t.z = paint.a;  // vehicles: lights on; walkers: skin tone
#elif defined(LAMP)
    t.z = texelFetch(dyn, ivec2(int(info.z + 0.5), 6), 0).b;  // live lamp state
    lpos = vec3(info.w, 0.0, 0.0);  // 0 at the bottom of the lamp face, 3 at its top
#elif defined(GLOW)
    // The lit lamp's glow (the bloom a real camera shows around an emissive lamp): a disc facing
    // the camera, radius GLOW_RADIUS but never under 2 pixels (so a lamp far away stays a few
    // dim pixels instead of vanishing between pixel centres), fading off-axis of the lamp.
    float state = texelFetch(dyn, ivec2(int(info.z + 0.5), 6), 0).b;
    vec3 centre = p + vec3(0.0, 0.0, (2.5 - state) * LAMP_PITCH);
    vec3 to_cam = cam_pos - centre;
    float dist = max(length(to_cam), 1e-3);
    float radius = max(GLOW_RADIUS, 4.0 * dist * tan_half.x / resolution.x);
    vec2 corner = vec2(info.w > 0.5 && info.w < 2.5 ? 1.0 : -1.0, info.w > 1.5 ? 1.0 : -1.0);
    p = centre + radius * (corner.x * cam_right + corner.y * cam_up);
    lpos = vec3(corner, 0.0);
    float facing = smoothstep(0.2, 0.7, dot(n, to_cam) / dist);
    vec3 hue = state < 0.5 ? vec3(1.0, 0.12, 0.05)
             : (state < 1.5 ? vec3(1.0, 0.72, 0.05) : vec3(0.1, 1.0, 0.35));
    col = hue * facing * sqrt(GLOW_RADIUS / radius) * (0.7 + 0.5 * night);
    t.z = state > 2.5 || facing <= 0.0 ? 0.0 : 1.0;  // 0: nothing to draw
#endif
    wpos = p;
#ifdef SKY
    // One quad from a little below the horizon (``sky_low``) to the top of the image; the
    // colour is evaluated per pixel from the interpolated view direction.
    p.y = mix(sky_low, 1.0, p.y * 0.5 + 0.5);
    gl_Position = vec4(p.xy, 1.0, 1.0);
    wpos = cam_fwd + p.x * tan_half.x * cam_right + p.y * tan_half.y * cam_up;
    base = vec3(1.0 - exp(-fog_k * 1000.0));  // fog at the far plane
    lit = vec3(1.0);
    spec = vec3(0.0);
#else
    gl_Position = p3d_ModelViewProjectionMatrix * vec4(p, 1.0);
    vec3 v = normalize(p - cam_pos);
    lit = ambient * (0.75 + 0.25 * n.z) + sun_color * max(dot(n, sun_dir), 0.0);
    float fresnel = 1.0 - max(dot(n, -v), 0.0);
    fresnel *= fresnel;
    vec3 r = reflect(v, n);
    spec = (0.15 + 0.6 * fresnel * fresnel) * 0.7
         * mix(sky_horizon, sky_zenith, clamp(r.z * 2.0, 0.0, 1.0));
    base = col;
#endif
    nrm = n;
    tag = t;
    gl_Position.y = -gl_Position.y;
#ifdef GLOW
    gl_Position = t.z > 0.5 ? gl_Position : vec4(2.0, 2.0, 2.0, 1.0);  // outside: clipped
#endif
}
"""

_FRAGMENT = """
uniform vec2 noise_seed;
uniform vec2 resolution;
flat in vec4 tag;
flat in vec3 base;
flat in vec3 lit;
flat in vec3 spec;
flat in vec3 nrm;
in vec3 wpos;
in vec3 lpos;
out vec4 o;

void main() {
#ifdef GLOW
    // Added to RGB only (the renderer masks alpha: labels stay exact; no depth is written).
    float q = max(1.0 - dot(lpos.xy, lpos.xy), 0.0);
    vec3 glow = base * (q * q) * exp(-fog_k / gl_FragCoord.w);
    o = vec4(glow.bgr, 0.0);
#else
    vec3 alb = base;
    vec3 emit = vec3(0.0);
    float gloss = 0.0;
#if defined(GROUND)
    // road 1, marking 2, grass 8, sidewalk 9
    float m = tag.y;
    vec2 f = fract(wpos.xy * 0.6667);
    alb *= m > 8.5 && min(f.x, f.y) < 0.05 ? 0.8 : 1.0;
    alb *= m > 7.5 && m < 8.5 ? 0.8 + 0.35 * hash(floor(wpos.xy * 0.7)) : 1.0;
#ifdef WET
    alb *= 1.0 - (m < 1.5 ? 0.5 : 0.3) * wet;
    gloss = m < 2.5 ? wet : 0.0;
    // The reflection changes along a road triangle: per pixel, with the ground's normal (up).
    float down = max(-normalize(wpos - cam_pos).z, 0.0);
    float fresnel = (1.0 - down) * (1.0 - down);
    vec3 reflection = (0.15 + 0.6 * fresnel * fresnel) * 0.7
                    * mix(sky_horizon, sky_zenith, clamp(down * 2.0, 0.0, 1.0));
#endif
#elif defined(SOLID)
    // diffuse 0, building 3
    vec2 uv = vec2(dot(wpos.xy, vec2(-nrm.y, nrm.x)) * 0.3125, wpos.z * 0.2941);
    vec2 f = fract(uv);
    bool window = tag.y > 2.5 && abs(nrm.z) < 0.5 && wpos.z > 2.0
                  && f.x > 0.2 && f.x < 0.8 && f.y > 0.3 && f.y < 0.8;
    alb = window ? vec3(0.12, 0.14, 0.17) : alb * (nrm.z > 0.5 && tag.y > 2.5 ? 0.55 : 1.0);
    gloss = window ? 0.35 : 0.0;
#ifdef NIGHT
    float lit_window = step(0.55, hash(floor(uv) + tag.z));
    emit = window ? vec3(1.0, 0.82, 0.5) * 0.7 * night * lit_window : vec3(0.0);
#endif
#elif defined(LAMP)
    // part runs 0 (bottom) to 3 (top) over the lamp face: red on top, then yellow, green.
    float k = lpos.x;
    float lamp = 2.0 - floor(k);
    vec3 hue = lamp < 0.5 ? vec3(1.0, 0.12, 0.05)
             : (lamp < 1.5 ? vec3(1.0, 0.72, 0.05) : vec3(0.1, 1.0, 0.35));
    bool disc = abs(fract(k) - 0.5) < 0.4;
    alb = disc ? hue * 0.1 : base;
    emit = disc && abs(tag.z - lamp) < 0.5 ? hue * 1.3 : vec3(0.0);
#elif defined(VEHICLE)
    vec3 q = lpos;
    bool glass = tag.w > 0.5 && q.z < 0.98;
    bool head = q.x > 0.49 && abs(q.y) > 0.27 && abs(q.y) < 0.45 && q.z > 0.33 && q.z < 0.46;
    bool tail = q.x < -0.49 && abs(q.y) > 0.3 && q.z > 0.36 && q.z < 0.48;
    bool wheel = tag.w < 0.5 && q.z < 0.3 && abs(abs(q.x) - 0.3) < 0.09;
    alb = glass ? vec3(0.10, 0.12, 0.15) : (wheel ? vec3(0.04) : base);
    emit = head ? vec3(1.0, 0.95, 0.8) * (0.25 + 1.5 * tag.z)
         : (tail ? vec3(0.9, 0.04, 0.03) * (0.35 + 0.9 * tag.z) : vec3(0.0));
    gloss = glass ? 0.35 : 0.12;
#elif defined(WALKER)
    alb = tag.w > 0.5 ? vec3(0.78, 0.6, 0.48) * tag.z : (lpos.z < 0.5 ? base * 0.35 : base);
#endif
#ifdef SKY
    vec3 col = mix(sky(normalize(wpos)), fog_color, base.x);
#else
    vec3 light = lit;
#ifdef NIGHT
    vec3 view = wpos - cam_pos;
    float dist = length(view);
    vec3 v = view / max(dist, 1e-4);
    float cone = smoothstep(0.82, 0.97, dot(v, cam_fwd)) * step(wpos.z, cam_pos.z - 0.5);
    float beam = cone * max(dot(nrm, -v), 0.0) * 60.0 / (dist * dist + 40.0);
    light += night * vec3(1.0, 0.95, 0.85) * beam;
#endif
#if defined(GROUND) && defined(WET)
    vec3 col = alb * light + emit + gloss * reflection;
#else
    vec3 col = alb * light + emit + gloss * spec;
#endif
    col = mix(col, fog_color, 1.0 - exp(-fog_k / gl_FragCoord.w));
#endif
#ifdef RAIN
    col = mix(col, fog_color, 0.2 * rain);
    float w = max(1.0, floor(resolution.x / 200.0));
    float column = floor(gl_FragCoord.x / w);
    float h = hash(vec2(column, noise_seed.x));
    float y = gl_FragCoord.y / resolution.y * 3.0 + h * 17.0 - noise_seed.y * (0.45 + 0.3 * h);
    float drop = step(hash(vec2(column, floor(y)) + noise_seed.x), 0.18 * rain);
    float streak = drop * step(fract(y), 0.22);
    col = mix(col, vec3(0.78, 0.80, 0.84), 0.35 * streak);
#endif
    o = vec4(clamp(col, 0.0, 1.0).bgr, tag.x / 255.0);
#endif
}
"""

GROUPS = ("VEHICLE", "WALKER", "SOLID", "LAMP", "GROUND", "SKY", "GLOW")
"""Material groups, in drawing order: near occluders first, so that llvmpipe's early depth
test rejects the hidden pixels of later groups before they are shaded; the sky after them, and
the lamps' glow last (blended over everything drawn, depth-tested, writing neither depth nor
the label)."""

GLOW_RADIUS = 0.45
"""Radius of a lit lamp's glow disc [m] (the lamp itself is 0.26 m across)."""

LAMP_PITCH = 0.92 / 3.0
"""Height of one lamp on the lamp face [m]; ``scene.traffic_light_mesh`` builds the face from it."""


def _header(group: str, rain: bool, wet: bool, night: bool) -> str:
    if group not in GROUPS:
        raise ValueError(f"unknown shader group {group!r}; one of {GROUPS}")
    defines = [f"#define {group}"]
    defines += [
        f"#define {flag}" for flag, on in (("RAIN", rain), ("WET", wet), ("NIGHT", night)) if on
    ]
    defines += [f"#define GLOW_RADIUS {GLOW_RADIUS:.4f}", f"#define LAMP_PITCH {LAMP_PITCH:.6f}"]
    return "#version 330\n" + "\n".join(defines) + _COMMON


def vertex(group: str, rain: bool, wet: bool, night: bool) -> str:
    """The vertex shader of one material group (posing, flat per-face light, sky colour)."""
    return _header(group, rain, wet, night) + _VERTEX


def fragment(group: str, rain: bool, wet: bool, night: bool) -> str:
    """The fragment shader specialised for one material group and the active weather effects.

    llvmpipe evaluates both sides of data-dependent branches, so compiling out what a group or a
    weather never uses is what keeps the per-pixel cost low.
    """
    return _header(group, rain, wet, night) + _FRAGMENT
