"""How a ``Weather`` looks: the shader uniforms for sun, sky, fog, wet roads, rain and night.

Weather changes only the RGB image, never labels or depth. The aim is distinct visual domains
(noon, sunset, night; clear, cloudy, wet, rainy, foggy) at no per-pixel cost in Python: every
effect is evaluated in the fragment shader from these few numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from panda3d.core import LVecBase3f

from envs.sim.weather import Weather

Vec3 = tuple[float, float, float]


def _smoothstep(lo: float, hi: float, x: float) -> float:
    t = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _mix(a: Vec3, b: Vec3, t: float) -> Vec3:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _scale(a: Vec3, k: float) -> Vec3:
    return (a[0] * k, a[1] * k, a[2] * k)


@dataclass(frozen=True)
class WeatherLook:
    """Shader uniforms of one weather (colours linear in [0, 1], directions in panda's frame).

    Attributes:
        sun_dir: Unit vector towards the sun.
        sun_color: Direct sunlight colour times intensity.
        ambient: Sky light colour times intensity.
        sky_zenith, sky_horizon: Sky gradient colours.
        fog_color: Colour distant surfaces fade to.
        fog_k: Fog extinction coefficient [1/m]; visibility falls as exp(-fog_k * depth).
        wet: Road wetness in [0, 1] (darker, reflective asphalt).
        rain: Rain intensity in [0, 1] (streaks, lower contrast).
        night: Headlights and lit windows in [0, 1].
    """

    sun_dir: Vec3
    sun_color: Vec3
    ambient: Vec3
    sky_zenith: Vec3
    sky_horizon: Vec3
    fog_color: Vec3
    fog_k: float
    wet: float
    rain: float
    night: float


def _sun(weather: Weather) -> Vec3:
    alt = math.radians(max(weather.sun_altitude_angle, -90.0))
    az = math.radians(weather.sun_azimuth_angle)
    # CARLA's frame (y south) to panda's (y north).
    return (math.cos(alt) * math.cos(az), -math.cos(alt) * math.sin(az), math.sin(alt))


def weather_look(weather: Weather) -> WeatherLook:
    """Map CARLA's weather parameters to shader uniforms.

    Sun altitude sets day (> ~10 deg), sunset (warm, low light, 0-25 deg) and night (< 0 deg,
    lights on below 15 deg as in CARLA); cloudiness dims the sun and greys the sky; precipitation
    adds rain; wetness and precipitation deposits darken and gloss the road; fog density sets an
    exponential distance fog.
    """
    alt = weather.sun_altitude_angle
    cloud = min(max(weather.cloudiness / 100.0, 0.0), 1.0)
    day = _smoothstep(-8.0, 12.0, alt)
    warm = 1.0 - _smoothstep(8.0, 35.0, alt)
    sun_tint = _mix((1.0, 0.97, 0.9), (1.0, 0.62, 0.35), warm)
    sun_power = day * (0.45 + 0.5 * _smoothstep(5.0, 45.0, alt)) * (1.0 - 0.8 * cloud)
    day_ambient = _mix(_mix((0.42, 0.45, 0.52), (0.42, 0.36, 0.38), warm), (0.5, 0.5, 0.52), cloud)
    ambient = _mix((0.07, 0.075, 0.1), day_ambient, day)
    clear_zenith = _mix((0.22, 0.42, 0.75), (0.28, 0.30, 0.52), warm)
    clear_horizon = _mix((0.62, 0.75, 0.90), (0.95, 0.58, 0.35), warm)
    grey = _scale((0.62, 0.63, 0.66), 0.45 + 0.55 * (1.0 - 0.5 * warm))
    zenith = _mix(_mix(clear_zenith, grey, cloud * 0.9), (0.01, 0.015, 0.04), 1.0 - day)
    horizon = _mix(_mix(clear_horizon, grey, cloud * 0.85), (0.04, 0.05, 0.08), 1.0 - day)
    fog = min(max(weather.fog_density / 100.0, 0.0), 1.0)
    rain = min(max(weather.precipitation / 100.0, 0.0), 1.0)
    wet = min(max(max(weather.wetness, weather.precipitation_deposits) / 100.0, 0.0), 1.0)
    return WeatherLook(
        sun_dir=_sun(weather),
        sun_color=_scale(sun_tint, sun_power),
        ambient=_scale(ambient, 1.0 - 0.15 * rain),
        sky_zenith=zenith,
        sky_horizon=horizon,
        fog_color=_mix(horizon, _scale(ambient, 1.4), 0.3),
        fog_k=0.035 * fog**1.5 + 0.0015 * rain,
        wet=wet,
        rain=rain,
        night=1.0 - _smoothstep(5.0, 15.0, alt),
    )


def shader_inputs(look: WeatherLook) -> dict[str, LVecBase3f | float]:
    """The look as panda3d shader inputs (name -> value)."""
    vec = LVecBase3f
    return {
        "sun_dir": vec(*look.sun_dir),
        "sun_color": vec(*look.sun_color),
        "ambient": vec(*look.ambient),
        "sky_zenith": vec(*look.sky_zenith),
        "sky_horizon": vec(*look.sky_horizon),
        "fog_color": vec(*look.fog_color),
        "fog_k": look.fog_k,
        "wet": look.wet,
        "rain": look.rain,
        "night": look.night,
    }
