"""Pictures and tables of an evaluation: route maps, the per-weather chart, the terminal summary.

Everything is drawn with OpenCV (BGR images), so the report needs no plotting library.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from envs.sim.raster import DRIVING, SIDEWALK, RoadRaster

__all__ = ["MARKERS", "RouteTrace", "route_picture", "summary_table", "weather_chart"]

Image = NDArray[np.uint8]

MAX_SPEED_COLOUR = 12.0  # [m/s] speed drawn at the top of the colour map
LEGEND_WIDTH = 330  # [px]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GROUND, _ROAD, _SIDEWALK = (50, 60, 50), (105, 105, 105), (160, 160, 160)
_PLAN = (255, 200, 60)  # light blue (BGR)

MARKERS: Mapping[str, tuple[int, tuple[int, int, int], str]] = {
    "collisions_vehicle": (cv2.MARKER_CROSS, (0, 0, 255), "vehicle collision"),
    "collisions_pedestrian": (cv2.MARKER_TILTED_CROSS, (255, 0, 255), "pedestrian collision"),
    "collisions_layout": (cv2.MARKER_SQUARE, (0, 140, 255), "layout collision"),
    "red_light": (cv2.MARKER_TRIANGLE_UP, (0, 0, 220), "red light"),
    "stop_infraction": (cv2.MARKER_TRIANGLE_DOWN, (0, 80, 200), "stop sign"),
    "outside_route_lanes": (cv2.MARKER_DIAMOND, (0, 255, 255), "outside route lanes"),
    "min_speed_infractions": (cv2.MARKER_DIAMOND, (255, 255, 0), "min speed"),
    "route_dev": (cv2.MARKER_STAR, (255, 255, 255), "route deviation"),
    "vehicle_blocked": (cv2.MARKER_STAR, (200, 200, 255), "agent blocked"),
    "route_timeout": (cv2.MARKER_STAR, (255, 200, 200), "route timeout"),
    "scenario_timeouts": (cv2.MARKER_STAR, (180, 180, 180), "scenario timeout"),
    "yield_emergency_vehicle_infractions": (cv2.MARKER_STAR, (120, 120, 255), "yield emergency"),
}
"""Symbol, colour (BGR) and legend text of each infraction key."""


@dataclass(frozen=True)
class RouteTrace:
    """What a route picture shows.

    Attributes:
        title: Headline (route key, weather).
        plan_xy: (N, 2) planned route [m].
        trajectory: (T, 3) driven ``x, y, speed`` samples [m, m, m/s].
        infractions: ``(key, x, y)`` of every event [m].
        lines: Extra legend lines (status, scores).
    """

    title: str
    plan_xy: NDArray[np.float64]
    trajectory: NDArray[np.float64]
    infractions: Sequence[tuple[str, float, float]]
    lines: Sequence[str] = ()


def _town_image(raster: RoadRaster) -> Image:
    image = np.empty((*raster.layer.shape, 3), dtype=np.uint8)
    image[:] = _GROUND
    image[raster.layer == DRIVING] = _ROAD
    image[raster.layer == SIDEWALK] = _SIDEWALK
    return image


def _speed_colours(speed: NDArray[np.float64]) -> NDArray[np.uint8]:
    levels = np.clip(speed / MAX_SPEED_COLOUR * 255.0, 0, 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_JET)
    return np.asarray(colours, dtype=np.uint8).reshape(-1, 3)


def _legend(height: int, trace: RouteTrace, counts: Mapping[str, int]) -> Image:
    panel = np.full((max(height, 420), LEGEND_WIDTH, 3), 30, dtype=np.uint8)
    y = 26
    cv2.putText(panel, trace.title, (10, y), _FONT, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    for line in trace.lines:
        y += 22
        cv2.putText(panel, line, (10, y), _FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    y += 30
    cv2.line(panel, (12, y - 4), (40, y - 4), _PLAN, 3)
    cv2.putText(panel, "planned route", (50, y), _FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    y += 24
    bar = _speed_colours(np.linspace(0.0, MAX_SPEED_COLOUR, 160))
    panel[y - 12 : y, 12:172] = bar[None, :, :]
    cv2.putText(
        panel,
        f"speed 0-{MAX_SPEED_COLOUR:g} m/s",
        (180, y),
        _FONT,
        0.4,
        (230, 230, 230),
        1,
        cv2.LINE_AA,
    )
    for key, (marker, colour, text) in MARKERS.items():
        if not counts.get(key):
            continue
        y += 26
        cv2.drawMarker(panel, (24, y - 5), colour, marker, 16, 2)
        label = f"{text} x{counts[key]}"
        cv2.putText(panel, label, (50, y), _FONT, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    if not counts:
        y += 26
        cv2.putText(panel, "no infractions", (12, y), _FONT, 0.45, (150, 255, 150), 1)
    return panel


def route_picture(raster: RoadRaster, trace: RouteTrace) -> Image:
    """The town from above with the plan, the drive coloured by speed and the infractions.

    Args:
        raster: The town's road raster (its ``ppm`` sets the picture's scale).
        trace: What to draw.

    Returns:
        (H, W, 3) BGR image, the map on the left and the legend on the right.
    """
    image = _town_image(raster)
    width = max(2, round(raster.ppm))
    plan_px = raster.to_pixels(trace.plan_xy).astype(np.int32)
    cv2.polylines(image, [plan_px], False, _PLAN, width + 2, cv2.LINE_AA)
    if len(trace.trajectory) >= 2:
        pts = raster.to_pixels(trace.trajectory[:, :2]).astype(np.int32)
        colours = _speed_colours(trace.trajectory[:, 2])
        for i in range(len(pts) - 1):
            colour = tuple(int(c) for c in colours[i])
            cv2.line(image, tuple(pts[i]), tuple(pts[i + 1]), colour, width, cv2.LINE_AA)
    start = tuple(int(v) for v in plan_px[0])
    cv2.circle(image, start, 4 * width, (0, 255, 0), -1)
    cv2.circle(image, tuple(int(v) for v in plan_px[-1]), 4 * width, (0, 0, 255), 2)
    counts: Counter[str] = Counter()
    for key, x, y in trace.infractions:
        counts[key] += 1
        marker, colour, _ = MARKERS.get(key, (cv2.MARKER_STAR, (255, 255, 255), key))
        point = tuple(int(v) for v in raster.to_pixels(np.array([[x, y]]))[0])
        cv2.drawMarker(image, point, (0, 0, 0), marker, 10 * width, 2 * width + 2)
        cv2.drawMarker(image, point, colour, marker, 10 * width, 2 * width)
    legend = _legend(image.shape[0], trace, counts)
    if legend.shape[0] > image.shape[0]:
        pad = legend.shape[0] - image.shape[0]
        image = np.asarray(
            cv2.copyMakeBorder(image, 0, pad, 0, 0, cv2.BORDER_CONSTANT, value=_GROUND), np.uint8
        )
    return np.hstack([image, legend])


def _by_weather(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        groups[str(record["meta"].get("weather", "?"))].append(record)
    return dict(groups)


def _means(records: Sequence[Mapping[str, Any]]) -> tuple[float, float, float]:
    n = max(len(records), 1)
    ds, rc, ip = (
        sum(r["scores"][k] for r in records) / n
        for k in ("score_composed", "score_route", "score_penalty")
    )
    return ds, rc, ip


def weather_chart(records: Sequence[Mapping[str, Any]], width: int = 900) -> Image:
    """Bar chart of mean driving score and route completion per weather (0-100).

    Args:
        records: Route records (``meta.weather`` names the group).
        width: Picture width [px].

    Returns:
        (H, W, 3) BGR image.
    """
    groups = _by_weather(records)
    height, top, bottom, left = 420, 40, 110, 50
    image = np.full((height, width, 3), 255, dtype=np.uint8)
    plot_h = height - top - bottom
    cv2.putText(image, "Scores by weather", (left, 26), _FONT, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
    for level in range(0, 101, 25):
        y = top + plot_h - int(plot_h * level / 100)
        cv2.line(image, (left, y), (width - 10, y), (220, 220, 220), 1)
        cv2.putText(image, str(level), (8, y + 5), _FONT, 0.45, (80, 80, 80), 1, cv2.LINE_AA)
    slot = (width - left - 10) / max(len(groups), 1)
    bar = max(4, int(slot * 0.35))
    series = ((0, (180, 100, 30), "driving score"), (1, (60, 170, 60), "route completion"))
    for i, (name, group) in enumerate(sorted(groups.items())):
        means = _means(group)
        x0 = left + int(i * slot + slot * 0.12)
        for j, colour, _ in series:
            value = means[j]
            x = x0 + j * bar
            y = top + plot_h - int(plot_h * min(value, 100.0) / 100)
            cv2.rectangle(image, (x, y), (x + bar - 2, top + plot_h), colour, -1)
            cv2.putText(image, f"{value:.0f}", (x, y - 4), _FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        label = f"{name} (n={len(group)})"
        cv2.putText(image, label, (x0, top + plot_h + 20), _FONT, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    for k, (_, colour, text) in enumerate(series):
        x = left + k * 220
        cv2.rectangle(image, (x, height - 40), (x + 18, height - 24), colour, -1)
        cv2.putText(image, text, (x + 26, height - 27), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return image


def _main_infractions(records: Sequence[Mapping[str, Any]], top: int = 3) -> str:
    counts: Counter[str] = Counter()
    for record in records:
        for key, messages in record["infractions"].items():
            counts[key] += len(messages)
    items = [f"{MARKERS[k][2] if k in MARKERS else k} x{n}" for k, n in counts.most_common(top)]
    return ", ".join(i for i, (_, n) in zip(items, counts.most_common(top), strict=True) if n)


def summary_table(records: Sequence[Mapping[str, Any]], global_record: Mapping[str, Any]) -> str:
    """The terminal summary: one line per route, one per weather, and the global means.

    Args:
        records: Route records.
        global_record: From ``evaluation.scoring.global_record``.

    Returns:
        A multi-line plain-text table.
    """
    head = (
        f"{'route':<34} {'weather':<16} {'status':<30} {'DS':>6} {'RC':>6} {'IP':>5}  infractions"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        s = r["scores"]
        lines.append(
            f"{r['route_id']:<34} {r['meta'].get('weather', '?')!s:<16} {r['status'][:30]:<30} "
            f"{s['score_composed']:6.1f} {s['score_route']:6.1f} {s['score_penalty']:5.2f}  "
            f"{_main_infractions([r])}"
        )
    lines += ["", f"{'weather':<16} {'routes':>6} {'DS':>6} {'RC':>6} {'IP':>5}  infractions"]
    for name, group in sorted(_by_weather(records).items()):
        ds, rc, ip = _means(group)
        lines.append(
            f"{name:<16} {len(group):>6} {ds:6.1f} {rc:6.1f} {ip:5.2f}  {_main_infractions(group)}"
        )
    means = global_record["scores_mean"]
    lines += [
        "",
        f"global: DS {means['score_composed']:.2f}  RC {means['score_route']:.2f}  "
        f"IP {means['score_penalty']:.3f}  ({len(records)} routes, status "
        f"{global_record['status']})",
    ]
    return "\n".join(lines)
