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
  2 vehicle colour (r, g, b, lights on), 3-5 the same for walkers, 6 traffic-light state.
* Material ids are ``mesh.Material``; the sky is a clip-space quad at the far plane (depth 1).
"""

VERTEX = """#version 330
uniform mat4 p3d_ModelViewProjectionMatrix;
uniform sampler2D dyn;
in vec4 p3d_Vertex;
in vec3 albedo;
in vec4 info;
out vec3 wpos;
out vec3 lpos;
out vec2 ndc;
flat out vec3 base;
flat out vec4 tag;
flat out vec2 extra;

void main() {
    vec3 p = p3d_Vertex.xyz;
    vec3 col = albedo;
    vec2 ex = vec2(0.0, 1.0);
    int mat = int(info.y + 0.5);
    int id = int(info.z + 0.5);
    lpos = p;
    if (mat == 5 || mat == 6) {
        int row = mat == 5 ? 0 : 3;
        vec4 pose = texelFetch(dyn, ivec2(id, row), 0).bgra;
        vec4 size = texelFetch(dyn, ivec2(id, row + 1), 0).bgra;
        vec4 paint = texelFetch(dyn, ivec2(id, row + 2), 0).bgra;
        vec3 q = p * size.xyz * size.w;
        float c = cos(pose.w), s = sin(pose.w);
        p = vec3(c * q.x - s * q.y, s * q.x + c * q.y, q.z) + pose.xyz;
        col = paint.rgb;
        ex = vec2(paint.a, size.w);
    } else if (mat == 4) {
        ex.x = texelFetch(dyn, ivec2(id, 6), 0).b;
    }
    wpos = p;
    base = col;
    tag = info;
    extra = ex;
    if (mat == 7) {
        gl_Position = vec4(p.xy, 1.0, 1.0);
    } else {
        gl_Position = p3d_ModelViewProjectionMatrix * vec4(p, 1.0);
    }
    ndc = gl_Position.xy / gl_Position.w;
    gl_Position.y = -gl_Position.y;
}
"""

_FRAGMENT = """
uniform vec3 cam_pos;
uniform vec3 cam_fwd;
uniform vec3 cam_right;
uniform vec3 cam_up;
uniform vec2 tan_half;
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
uniform vec2 noise_seed;
uniform vec2 resolution;
in vec3 wpos;
in vec3 lpos;
in vec2 ndc;
flat in vec3 base;
flat in vec4 tag;
flat in vec2 extra;
out vec4 o;

float hash(vec2 p) {
    return fract(sin(dot(p, vec2(12.9898, 78.233))) * 43758.5453);
}

vec3 sky(vec3 dir) {
    vec3 c = mix(sky_horizon, sky_zenith, smoothstep(0.0, 0.5, dir.z));
    return c + sun_color * 0.6 * pow(max(dot(dir, sun_dir), 0.0), 48.0);
}

vec3 surface(vec3 n, out vec3 emit, out float gloss) {
    vec3 alb = base;
    emit = vec3(0.0);
    gloss = 0.0;
#if defined(GROUND)
    // road 1, marking 2, grass 8, sidewalk 9
    float m = tag.y;
    float grain = hash(floor(wpos.xy * (m > 7.5 ? 0.7 : 3.0)));
    vec2 f = fract(wpos.xy / 1.5);
    float tiles = m > 8.5 && min(f.x, f.y) < 0.05 ? 0.8 : 1.0;
    alb *= (m < 1.5 ? 0.94 + 0.12 * grain : (m > 7.5 && m < 8.5 ? 0.8 + 0.35 * grain : tiles));
#ifdef WET
    alb *= 1.0 - (m < 1.5 ? 0.5 : 0.3) * wet;
    gloss = m < 2.5 ? wet : 0.0;
#endif
#elif defined(SOLID)
    // diffuse 0, building 3, lamp 4
    if (tag.y > 3.5) {
        vec3 lamp = tag.w < 0.5 ? vec3(1.0, 0.12, 0.05)
                  : (tag.w < 1.5 ? vec3(1.0, 0.72, 0.05) : vec3(0.1, 1.0, 0.35));
        bool on = abs(extra.x - tag.w) < 0.5;
        alb = lamp * 0.1;
        emit = on ? lamp * 1.3 : vec3(0.0);
    } else if (tag.y > 2.5) {
        vec2 uv = vec2(dot(wpos.xy, vec2(-n.y, n.x)) / 3.2, wpos.z / 3.4);
        vec2 f = fract(uv);
        bool window = abs(n.z) < 0.5 && wpos.z > 2.0
                      && f.x > 0.2 && f.x < 0.8 && f.y > 0.3 && f.y < 0.8;
        alb = window ? vec3(0.12, 0.14, 0.17) : alb * (n.z > 0.5 ? 0.55 : 1.0);
        gloss = window ? 0.35 : 0.0;
#ifdef NIGHT
        float lit = step(0.55, hash(floor(uv) + tag.z));
        emit = window ? vec3(1.0, 0.82, 0.5) * 0.7 * night * lit : vec3(0.0);
#endif
    }
#elif defined(VEHICLE)
    vec3 q = lpos;
    bool glass = tag.w > 0.5 && q.z < 0.98;
    bool head = q.x > 0.49 && abs(q.y) > 0.27 && abs(q.y) < 0.45 && q.z > 0.33 && q.z < 0.46;
    bool tail = q.x < -0.49 && abs(q.y) > 0.3 && q.z > 0.36 && q.z < 0.48;
    bool wheel = tag.w < 0.5 && q.z < 0.3 && abs(abs(q.x) - 0.3) < 0.09;
    alb = glass ? vec3(0.10, 0.12, 0.15) : (wheel ? vec3(0.04) : base);
    emit = head ? vec3(1.0, 0.95, 0.8) * (0.25 + 1.5 * extra.x)
         : (tail ? vec3(0.9, 0.04, 0.03) * (0.35 + 0.9 * extra.x) : vec3(0.0));
    gloss = glass ? 0.35 : 0.12;
#elif defined(WALKER)
    vec3 skin = vec3(0.78, 0.6, 0.48) * (0.7 + 0.3 * hash(vec2(tag.z, 3.0)));
    alb = tag.w > 0.5 ? skin : (lpos.z < 0.5 ? base * 0.35 : base);
#endif
    return alb;
}

vec3 shade(vec3 view) {
    vec3 n = normalize(cross(dFdx(wpos), dFdy(wpos)));
    n = dot(n, view) > 0.0 ? -n : n;
    float dist = length(view);
    vec3 v = view / max(dist, 1e-4);
    vec3 emit;
    float gloss;
    vec3 alb = surface(n, emit, gloss);
    vec3 light = ambient * (0.75 + 0.25 * n.z) + sun_color * max(dot(n, sun_dir), 0.0);
#ifdef NIGHT
    float cone = smoothstep(0.82, 0.97, dot(v, cam_fwd)) * step(wpos.z, cam_pos.z - 0.5);
    float beam = cone * max(dot(n, -v), 0.0) * 60.0 / (dist * dist + 40.0);
    light += night * vec3(1.0, 0.95, 0.85) * beam;
#endif
    vec3 col = alb * light + emit;
    float fresnel = pow(1.0 - max(dot(n, -v), 0.0), 4.0);
    vec3 r = reflect(v, n);
    vec3 mirrored = mix(sky_horizon, sky_zenith, clamp(r.z * 2.0, 0.0, 1.0));
    col += gloss * (0.15 + 0.6 * fresnel) * 0.7 * mirrored;
    return col;
}

void main() {
    vec3 view = wpos - cam_pos;
#if defined(SKY)
    vec3 dir = normalize(cam_fwd + ndc.x * tan_half.x * cam_right + ndc.y * tan_half.y * cam_up);
    vec3 col = sky(dir);
    float depth = 1000.0;
#else
    float depth = dot(view, cam_fwd);
    vec3 col = shade(view);
#endif
    col = mix(col, fog_color, 1.0 - exp(-fog_k * depth));
#ifdef RAIN
    col = mix(col, fog_color, 0.2 * rain);
    float w = max(1.0, floor(resolution.x / 200.0));
    float column = floor(gl_FragCoord.x / w);
    float h = hash(vec2(column, noise_seed.x));
    float y = gl_FragCoord.y / resolution.y * 3.0 + h * 17.0 - noise_seed.y * (0.45 + 0.3 * h);
    float drop = step(hash(vec2(column, floor(y)) + noise_seed.x), 0.18 * rain);
    float lit = drop * step(fract(y), 0.22);
    col = mix(col, vec3(0.78, 0.80, 0.84), 0.35 * lit);
#endif
    o = vec4(clamp(col, 0.0, 1.0).bgr, tag.x / 255.0);
}
"""

GROUPS = ("GROUND", "SOLID", "VEHICLE", "WALKER", "SKY")


def fragment(group: str, rain: bool, wet: bool, night: bool) -> str:
    """The fragment shader specialised for one material group and the active weather effects.

    llvmpipe evaluates both sides of data-dependent branches, so compiling out what a group or a
    weather never uses is what keeps the per-pixel cost low.
    """
    if group not in GROUPS:
        raise ValueError(f"unknown shader group {group!r}; one of {GROUPS}")
    defines = [f"#define {group}"]
    defines += [
        f"#define {flag}" for flag, on in (("RAIN", rain), ("WET", wet), ("NIGHT", night)) if on
    ]
    return "#version 330\n" + "\n".join(defines) + _FRAGMENT
