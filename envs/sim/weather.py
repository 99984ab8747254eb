"""Weather state with every field of ``carla.WeatherParameters`` and the named presets.

The seven fields that define a preset (cloudiness, precipitation, precipitation deposits,
wind, sun altitude, fog density, wetness) follow the CARLA preset table (CARLA ``WeatherParameters``
docs, also ``shared/DESIGN.md`` §5); the remaining fields take CARLA's defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Weather:
    """All fields of ``carla.WeatherParameters``; percentages in [0, 100], angles in degrees."""

    cloudiness: float = 0.0
    precipitation: float = 0.0
    precipitation_deposits: float = 0.0
    wind_intensity: float = 0.0
    sun_azimuth_angle: float = 0.0
    sun_altitude_angle: float = 0.0
    fog_density: float = 0.0
    fog_distance: float = 0.75
    fog_falloff: float = 0.1
    wetness: float = 0.0
    scattering_intensity: float = 1.0
    mie_scattering_scale: float = 0.03
    rayleigh_scattering_scale: float = 0.0331
    dust_storm: float = 0.0

    def replace(self, **changes: float) -> Weather:
        """Return a copy with some fields changed; unknown field names raise ``ValueError``."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(
                f"unknown weather field(s) {sorted(unknown)}; fields are "
                f"{[f.name for f in dataclasses.fields(self)]}"
            )
        return dataclasses.replace(self, **changes)

    @property
    def is_night(self) -> bool:
        """CARLA switches vehicle lights on below a sun altitude of 15 degrees."""
        return self.sun_altitude_angle < 15.0

    @classmethod
    def preset(cls, name: str) -> Weather:
        """The named CARLA preset (``ClearNoon``, ``HardRainSunset``, ``ClearNight``...).

        Raises:
            ValueError: if the name is not a preset; the message lists the valid names.
        """
        try:
            values = _PRESET_TABLE[name]
        except KeyError:
            raise ValueError(
                f"unknown weather preset {name!r}; choose one of {', '.join(PRESET_NAMES)}"
            ) from None
        return cls(**dict(zip(_PRESET_FIELDS, values, strict=True)))


_PRESET_FIELDS = (
    "cloudiness",
    "precipitation",
    "precipitation_deposits",
    "wind_intensity",
    "sun_altitude_angle",
    "fog_density",
    "wetness",
)

_NOON = {
    "Clear": (5, 0, 0, 10, 45, 2, 0),
    "Cloudy": (60, 0, 0, 10, 45, 3, 0),
    "Wet": (5, 0, 50, 10, 45, 3, 0),
    "WetCloudy": (60, 0, 50, 10, 45, 3, 0),
    "MidRainy": (60, 60, 60, 60, 45, 3, 0),
    "HardRain": (100, 100, 90, 100, 45, 7, 0),
    "SoftRain": (20, 30, 50, 30, 45, 3, 0),
}
_NIGHT = {
    "ClearNight": (5, 0, 0, 10, -90, 60, 0),
    "CloudyNight": (60, 0, 0, 10, -90, 60, 0),
    "WetNight": (5, 0, 50, 10, -90, 60, 60),
    "WetCloudyNight": (60, 0, 50, 10, -90, 60, 60),
    "SoftRainNight": (60, 30, 50, 30, -90, 60, 60),
    "MidRainyNight": (80, 60, 60, 60, -90, 60, 80),
    "HardRainNight": (100, 100, 90, 100, -90, 100, 100),
}


def _build_table() -> dict[str, tuple[float, ...]]:
    table: dict[str, tuple[float, ...]] = {}
    for stem, values in _NOON.items():
        table[f"{stem}Noon"] = values
        sunset = list(values)
        sunset[4] = 15
        table[f"{stem}Sunset"] = tuple(sunset)
    table.update(_NIGHT)
    return table


_PRESET_TABLE = _build_table()
PRESET_NAMES: tuple[str, ...] = tuple(_PRESET_TABLE)
"""Every preset name, noon first, then sunset, then night."""

DEFAULT_ROUTE_WEATHER = Weather(sun_altitude_angle=70.0, cloudiness=30.0)
"""What the leaderboard 1.0 uses when a route file gives no weather."""
