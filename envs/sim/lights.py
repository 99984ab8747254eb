"""Traffic lights placed on a town's junctions, cycling like CARLA's controllers.

OpenDRIVE towns rarely carry signals, so lights are placed the way CARLA equips its towns: one
light per incoming road at every junction with three or more approaches, a stop line across the
incoming lanes where they enter the junction, and one group per junction that gives each light
(controller) in turn green, yellow, then red (the all-red clearance) while the others wait red.
Timings default to CARLA's: green 10 s, yellow 3 s, red 2 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from envs.sim.roadmap import RoadMap
from envs.types import TrafficLightState

RED, YELLOW, GREEN = (
    int(TrafficLightState.RED),
    int(TrafficLightState.YELLOW),
    int(TrafficLightState.GREEN),
)


@dataclass(frozen=True)
class LightTiming:
    """Phase durations of one controller [s]."""

    green: float = 10.0
    yellow: float = 3.0
    red: float = 2.0

    def __post_init__(self) -> None:
        if min(self.green, self.yellow, self.red) < 0 or self.green + self.yellow + self.red <= 0:
            raise ValueError(
                f"traffic-light timings must be non-negative with a positive sum: {self}"
            )

    @property
    def period(self) -> float:
        """One controller's turn [s]."""
        return self.green + self.yellow + self.red


class LightLayout:
    """Where the lights are: fixed per town.

    Attributes:
        junction: (L,) junction id of each light.
        road: (L,) OpenDRIVE id of the incoming road it governs.
        group: (L,) index of the junction group; ``slot``: (L,) its turn within the group.
        group_size: (G,) number of lights per group.
        stop_line: (L, 2, 2) end points of each stop line [m].
        stop_center: (L, 3) stop-line centre [m].
        pole: (L, 3) pole foot beside the rightmost incoming lane [m].
        facing: (L,) yaw the lamp faces (towards approaching traffic) [rad].
        seg_light: (S,) light governing the end of each lane segment, or -1.
        lanes: per light, the incoming segments it governs.
    """

    def __init__(self, roadmap: RoadMap) -> None:
        incoming: dict[tuple[int, int], list[int]] = {}
        for seg in np.flatnonzero(roadmap.seg_junction >= 0):
            for pred in roadmap.predecessors[seg]:
                if roadmap.seg_junction[pred] < 0:
                    key = (int(roadmap.seg_junction[seg]), int(roadmap.seg_road[pred]))
                    lanes = incoming.setdefault(key, [])
                    if int(pred) not in lanes:
                        lanes.append(int(pred))
        approaches: dict[int, int] = {}
        for junction, _road in incoming:
            approaches[junction] = approaches.get(junction, 0) + 1
        keys = sorted(k for k in incoming if approaches[k[0]] >= 3)
        self.lanes = [sorted(incoming[k]) for k in keys]
        self.junction = np.array([k[0] for k in keys], dtype=np.int64)
        self.road = np.array([k[1] for k in keys], dtype=np.int64)
        junctions = sorted(set(self.junction.tolist()))
        self.group = np.array([junctions.index(j) for j in self.junction], dtype=np.int64)
        self.slot = np.zeros(len(keys), dtype=np.int64)
        for g in range(len(junctions)):
            members = np.flatnonzero(self.group == g)
            self.slot[members] = np.arange(len(members))
        self.group_size = np.bincount(self.group, minlength=len(junctions)).astype(np.int64)
        self.seg_light = np.full(len(roadmap.seg_length), -1, dtype=np.int64)
        self._place(roadmap)

    def _place(self, roadmap: RoadMap) -> None:
        count = len(self.lanes)
        self.stop_line = np.zeros((count, 2, 2))
        self.stop_center = np.zeros((count, 3))
        self.pole = np.zeros((count, 3))
        self.facing = np.zeros(count)
        for light, lanes in enumerate(self.lanes):
            ends = roadmap.segment_end(np.asarray(lanes))
            xyz, yaw = roadmap.points[ends], roadmap.yaw[ends]
            right = np.array([-np.sin(yaw[0]), np.cos(yaw[0])])
            edges = np.concatenate(roadmap.lane_edges(ends))
            heading = np.array([np.cos(yaw[0]), np.sin(yaw[0])])
            lateral = edges @ right
            self.stop_line[light] = [edges[np.argmin(lateral)], edges[np.argmax(lateral)]]
            self.stop_center[light] = xyz.mean(axis=0)
            outer = edges[np.argmax(lateral)]
            foot = outer + right * 1.5 - heading * 1.0
            self.pole[light] = [foot[0], foot[1], xyz[:, 2].mean()]
            self.facing[light] = yaw[0] + np.pi
            self.seg_light[lanes] = light

    def __len__(self) -> int:
        return len(self.lanes)


class TrafficLights:
    """Live light states: cycling per group, optionally frozen or forced per light."""

    def __init__(self, layout: LightLayout, timing: LightTiming | None = None) -> None:
        self.layout = layout
        self.timing = timing or LightTiming()
        self.time = 0.0
        self.offset = np.zeros(len(layout.group_size))
        self.forced = np.full(len(layout), -1, dtype=np.int64)
        self.frozen = False
        self._next_change = 0.0
        self.state: NDArray[np.int64] = np.full(len(layout), RED, dtype=np.int64)
        self._update()

    def reset(self, rng: np.random.Generator) -> None:
        """Restart the clock with a random phase per junction; clears freezing and forcing."""
        cycle = self.layout.group_size * self.timing.period
        self.offset = rng.uniform(0.0, 1.0, size=len(cycle)) * cycle
        self.time = 0.0
        self.forced[:] = -1
        self.frozen = False
        self._update()

    def tick(self, dt: float) -> None:
        """Advance the controllers by ``dt`` seconds (no-op while frozen)."""
        if not self.frozen:
            # Rounded so that 200 steps of 0.05 s are exactly 10 s, not 9.9999999.
            self.time = round(self.time + dt, 9)
        if self.time >= self._next_change:
            self._update()

    def _update(self) -> None:
        layout, timing = self.layout, self.timing
        if len(layout) == 0:
            self._next_change = float("inf")
            return
        period = timing.period
        cycle = layout.group_size[layout.group] * period
        phase = np.round(np.mod(self.time + self.offset[layout.group], cycle), 9)
        active = (phase // period).astype(np.int64)
        within = phase - active * period
        state = np.where(
            within < timing.green,
            GREEN,
            np.where(within < timing.green + timing.yellow, YELLOW, RED),
        )
        state = np.where(active == layout.slot, state, RED)
        self.state = np.where(self.forced >= 0, self.forced, state)
        # States only change at phase boundaries: remember the next one to skip idle ticks.
        boundaries = np.array([timing.green, timing.green + timing.yellow, period])
        ahead = boundaries[None, :] - within[:, None]
        self._next_change = self.time + float(
            np.where(ahead > 1e-9, ahead, np.inf).min(initial=period)
        )

    def force(self, state: TrafficLightState | None, lights: list[int] | None = None) -> None:
        """Hold lights (all by default) in ``state``; ``None`` returns them to cycling."""
        index = slice(None) if lights is None else np.asarray(lights, dtype=np.int64)
        self.forced[index] = -1 if state is None else int(state)
        self._update()

    def freeze(self, frozen: bool = True) -> None:
        """Stop (or restart) every controller's clock, like ``world.freeze_all_traffic_lights``."""
        self.frozen = frozen

    def light_ahead(
        self, roadmap: RoadMap, seg: int, s: float, max_distance: float = 50.0
    ) -> tuple[int, float]:
        """The light governing a lane position, like ``vehicle.get_traffic_light()``.

        Follows the lane (through single successors) until a signalised stop line.

        Returns:
            ``(light, distance_to_stop_line)``, or ``(-1, inf)`` if none within ``max_distance``.
        """
        if roadmap.seg_junction[seg] >= 0:  # already past the stop line
            return -1, float("inf")
        distance = float(roadmap.seg_length[seg]) - s
        for _ in range(8):
            light = int(self.layout.seg_light[seg])
            if light >= 0:
                return (light, distance) if distance <= max_distance else (-1, float("inf"))
            nxt = roadmap.successors[seg]
            if len(nxt) != 1 or distance > max_distance or roadmap.seg_junction[nxt[0]] >= 0:
                break
            seg = int(nxt[0])
            distance += float(roadmap.seg_length[seg])
        return -1, float("inf")
