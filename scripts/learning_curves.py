"""Learning curves of training runs: driving score vs env steps and vs wall-clock hours.

Usage::

    python scripts/learning_curves.py runs/ppo runs/dqn --out docs/learning_curves.png \
        [--labels PPO,DQN] [--reference 62.4 --reference-label "80 % of autopilot"]

Each run folder is one written by ``train.py``: ``eval.csv`` (periodic evaluation on the fixed
routes) is drawn as markers and lines, the training-episode driving score from SB3's
``progress.csv`` (``driving/driving_score``, a mean over the episodes that ended in a logging
interval) as a thin lighter line. The picture is drawn with OpenCV only, so no plotting library
is needed.

``progress.csv`` is reopened for writing by SB3 on ``--resume``, so for a resumed run the
training line covers only the latest session, and its hours count from that session's start.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from envs.atomic import atomic_path

logger = logging.getLogger(__name__)

EVAL_CSV = "eval.csv"
PROGRESS_CSV = "progress.csv"
SCORE_MAX = 100.0  # driving score is a percentage
# BGR, the first colours of matplotlib's tab10.
COLOURS = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148))
REFERENCE_COLOUR = (90, 90, 90)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MARGIN = {"left": 70, "right": 20, "top": 40, "bottom": 50}
LEGEND_HEIGHT = 30


@dataclass(frozen=True)
class Curve:
    """Driving score [0, 100] against env steps and wall-clock time [h]; sorted by steps."""

    steps: NDArray[np.float64]
    hours: NDArray[np.float64]
    score: NDArray[np.float64]

    @classmethod
    def from_rows(cls, rows: list[tuple[float, float, float]]) -> Curve:
        data = np.array(sorted(rows), dtype=np.float64).reshape(-1, 3)
        return cls(data[:, 0], data[:, 1] / 3600.0, data[:, 2])


@dataclass(frozen=True)
class RunCurves:
    """The evaluation curve and the training-episode curve of one run (either may be empty)."""

    label: str
    evaluation: Curve
    training: Curve


def _number(text: str | None) -> float | None:
    """A finite float, or None for an empty or non-numeric CSV cell."""
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_eval(path: Path) -> Curve:
    """``eval.csv`` written by ``agent.callbacks``: columns steps, wall_time [s], driving_score."""
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            steps, wall = _number(row.get("steps")), _number(row.get("wall_time"))
            score = _number(row.get("driving_score"))
            if steps is not None and wall is not None and score is not None:
                rows.append((steps, wall, score))
    return Curve.from_rows(rows)


def read_progress(path: Path) -> Curve:
    """``progress.csv`` of SB3's CSV logger: rows with a ``driving/driving_score``.

    Rows dumped outside the rollout loop (evaluation, warm start) have no ``time/*`` cells, so
    the latest step count and elapsed time [s] seen above them are carried down.
    """
    rows = []
    steps = elapsed = None
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            latest = _number(row.get("time/total_timesteps"))
            steps = steps if latest is None else latest
            latest = _number(row.get("time/time_elapsed"))
            elapsed = elapsed if latest is None else latest
            score = _number(row.get("driving/driving_score"))
            if score is not None and steps is not None and elapsed is not None:
                rows.append((steps, elapsed, score))
    return Curve.from_rows(rows)


def read_run(run_dir: Path, label: str | None = None) -> RunCurves:
    """The curves of one ``train.py`` run folder.

    Raises:
        FileNotFoundError: the folder holds neither ``eval.csv`` nor ``progress.csv``.
    """
    eval_path, progress_path = run_dir / EVAL_CSV, run_dir / PROGRESS_CSV
    if not eval_path.is_file() and not progress_path.is_file():
        raise FileNotFoundError(
            f"{run_dir}: neither {EVAL_CSV} nor {PROGRESS_CSV} there; pass a run folder "
            "written by train.py (runs/NAME)"
        )
    empty = Curve.from_rows([])
    return RunCurves(
        label or run_dir.resolve().name,
        read_eval(eval_path) if eval_path.is_file() else empty,
        read_progress(progress_path) if progress_path.is_file() else empty,
    )


# --------------------------------------------------------------------------- drawing
def nice_ticks(high: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 x 10^k apart) from 0 up to at least ``high``."""
    high = high if high > 0 else 1.0
    raw = high / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def format_steps(value: float) -> str:
    """``1500000`` -> ``1.5M``, ``20000`` -> ``20k``."""
    for factor, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:g}{suffix}"
    return f"{value:g}"


def _text(image: NDArray[np.uint8], text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    """Text whose ``org`` is its centre (horizontally) and baseline."""
    (width, _), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(image, text, (org[0] - width // 2, org[1]), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _vertical_text(image: NDArray[np.uint8], text: str, centre: tuple[int, int]) -> None:
    (width, height), base = cv2.getTextSize(text, FONT, 0.55, 1)
    patch = np.full((height + base + 4, width + 4, 3), 255, np.uint8)
    cv2.putText(patch, text, (2, height + 2), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    rotated = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    top, left = centre[1] - rotated.shape[0] // 2, centre[0] - rotated.shape[1] // 2
    image[top : top + rotated.shape[0], left : left + rotated.shape[1]] = rotated


def _dashed_line(image: NDArray[np.uint8], y: int, x0: int, x1: int) -> None:
    for x in range(x0, x1, 14):
        cv2.line(image, (x, y), (min(x + 8, x1), y), REFERENCE_COLOUR, 2, cv2.LINE_AA)


def _lighter(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(c + 0.45 * (255 - c)) for c in colour)  # type: ignore[return-value]


@dataclass(frozen=True)
class Axis:
    """One panel: its pixel rectangle, x data range and which curve field is its x."""

    left: int
    top: int
    right: int
    bottom: int
    x_max: float
    x_of: Callable[[Curve], NDArray[np.float64]]

    def points(self, x: NDArray[np.float64], y: NDArray[np.float64]) -> NDArray[np.int32]:
        px = self.left + (self.right - self.left) * x / self.x_max
        py = self.bottom - (self.bottom - self.top) * np.clip(y, 0.0, SCORE_MAX) / SCORE_MAX
        return np.stack([px, py], axis=1).round().astype(np.int32)


def _draw_axes(image: NDArray[np.uint8], ax: Axis, title: str, xlabel: str) -> None:
    fmt = format_steps if "steps" in xlabel else (lambda v: f"{v:g}")
    for tick in nice_ticks(ax.x_max):
        x = int(ax.points(np.array([tick]), np.zeros(1))[0, 0])
        cv2.line(image, (x, ax.top), (x, ax.bottom), (230, 230, 230), 1)
        cv2.line(image, (x, ax.bottom), (x, ax.bottom + 5), (0, 0, 0), 1)
        _text(image, fmt(round(tick, 10)), (x, ax.bottom + 20))
    for tick in range(0, int(SCORE_MAX) + 1, 20):
        y = int(ax.points(np.zeros(1), np.array([float(tick)]))[0, 1])
        cv2.line(image, (ax.left, y), (ax.right, y), (230, 230, 230), 1)
        cv2.line(image, (ax.left - 5, y), (ax.left, y), (0, 0, 0), 1)
        (width, _), _ = cv2.getTextSize(str(tick), FONT, 0.5, 1)
        cv2.putText(
            image, str(tick), (ax.left - 9 - width, y + 5), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA
        )
    cv2.rectangle(image, (ax.left, ax.top), (ax.right, ax.bottom), (0, 0, 0), 1)
    _text(image, title, ((ax.left + ax.right) // 2, ax.top - 12), 0.6)
    _text(image, xlabel, ((ax.left + ax.right) // 2, ax.bottom + 42), 0.55)
    _vertical_text(image, "driving score", (ax.left - 52, (ax.top + ax.bottom) // 2))


def _draw_curves(image: NDArray[np.uint8], ax: Axis, runs: Sequence[RunCurves]) -> None:
    for i, run in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        train = ax.points(ax.x_of(run.training), run.training.score)
        if len(train) > 1:
            cv2.polylines(image, [train], False, _lighter(colour), 1, cv2.LINE_AA)
        evaluation = ax.points(ax.x_of(run.evaluation), run.evaluation.score)
        if len(evaluation) > 1:
            cv2.polylines(image, [evaluation], False, colour, 2, cv2.LINE_AA)
        for point in evaluation:
            cv2.circle(image, (int(point[0]), int(point[1])), 4, colour, -1, cv2.LINE_AA)


def _entry_width(text: str) -> int:
    """Pixels a legend entry takes: its line sample, gap and text."""
    return int(cv2.getTextSize(text, FONT, 0.5, 1)[0][0]) + 60


def _legend_rows(entries: list[tuple[str, str, tuple]], width: int) -> list[list[int]]:
    """Entry indices per legend row: as many as fit in ``width`` pixels, in order."""
    rows: list[list[int]] = [[]]
    used = 0
    for i, (text, _, _) in enumerate(entries):
        w = _entry_width(text)
        if rows[-1] and used + w > width - 20:
            rows.append([])
            used = 0
        rows[-1].append(i)
        used += w
    return rows


def _draw_legend(
    image: NDArray[np.uint8], entries: list[tuple[str, str, tuple]], rows: list[list[int]]
) -> None:
    """``(text, kind, colour)`` entries in centred rows at the bottom; kind is "eval",
    "train" or "reference"."""
    for r, row in enumerate(rows):
        y = image.shape[0] - 14 - LEGEND_HEIGHT * (len(rows) - 1 - r)
        widths = [_entry_width(entries[i][0]) for i in row]
        x = max(10, (image.shape[1] - sum(widths)) // 2)
        for i, width in zip(row, widths, strict=True):
            text, kind, colour = entries[i]
            if kind == "reference":
                _dashed_line(image, y - 5, x, x + 30)
            else:
                thick = 2 if kind == "eval" else 1
                cv2.line(image, (x, y - 5), (x + 30, y - 5), colour, thick, cv2.LINE_AA)
            if kind == "eval":
                cv2.circle(image, (x + 15, y - 5), 4, colour, -1, cv2.LINE_AA)
            cv2.putText(image, text, (x + 38, y), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            x += width


def draw_learning_curves(
    runs: Sequence[RunCurves],
    size: tuple[int, int] = (1200, 450),
    reference: tuple[float, str] | None = None,
) -> NDArray[np.uint8]:
    """Two panels side by side (DS vs env steps, DS vs wall-clock hours) and a legend row.

    Args:
        runs: The runs to draw, one colour each.
        size: ``(width, height)`` of the picture [px].
        reference: An optional ``(driving score, label)`` drawn as a dashed horizontal line.

    Returns:
        A BGR image.
    """
    width, height = size
    image = np.full((height, width, 3), 255, np.uint8)
    curves = [c for run in runs for c in (run.evaluation, run.training)]
    entries: list[tuple[str, str, tuple]] = []
    for i, run in enumerate(runs):
        colour = COLOURS[i % len(COLOURS)]
        if len(run.evaluation.score):
            entries.append((f"{run.label} (evaluation)", "eval", colour))
        if len(run.training.score):
            entries.append((f"{run.label} (training episodes)", "train", _lighter(colour)))
    if reference is not None:
        entries.append((reference[1], "reference", REFERENCE_COLOUR))
    rows = _legend_rows(entries, width)  # the legend wraps when the entries do not fit
    bottom = height - MARGIN["bottom"] - LEGEND_HEIGHT * len(rows)
    half = width // 2
    panels = (
        ("driving score vs env steps", "env steps", lambda c: c.steps),
        ("driving score vs wall-clock time", "wall-clock time [h]", lambda c: c.hours),
    )
    for i, (title, xlabel, x_of) in enumerate(panels):
        x_max = max((float(x_of(c).max()) for c in curves if len(c.score)), default=1.0)
        left, right = i * half + MARGIN["left"], (i + 1) * half - MARGIN["right"]
        ax = Axis(left, MARGIN["top"], right, bottom, nice_ticks(x_max)[-1], x_of)
        _draw_axes(image, ax, title, xlabel)
        if reference is not None:
            y = int(ax.points(np.zeros(1), np.array([reference[0]]))[0, 1])
            _dashed_line(image, y, ax.left, ax.right)
        _draw_curves(image, ax, runs)
    _draw_legend(image, entries, rows)
    return image


def write_png(path: Path, image: NDArray[np.uint8]) -> None:
    """Write a BGR image as PNG, atomically."""
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {image.shape} image as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders written by train.py")
    parser.add_argument("--out", type=Path, default=Path("docs/learning_curves.png"))
    parser.add_argument("--labels", help="comma-separated legend names, one per run folder")
    parser.add_argument("--reference", type=float, help="driving score of a dashed line")
    parser.add_argument("--reference-label", default="reference", help="its legend text")
    parser.add_argument("--width", type=int, default=1200, help="[px]")
    parser.add_argument("--height", type=int, default=450, help="[px]")
    args = parser.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [None] * len(args.runs)
    if len(labels) != len(args.runs):
        parser.error(f"--labels has {len(labels)} names for {len(args.runs)} run folders")
    if args.width < 500 or args.height < 250:
        parser.error(f"--width {args.width} --height {args.height}: at least 500 x 250 px")
    if args.reference is not None and not 0.0 <= args.reference <= SCORE_MAX:
        parser.error(f"--reference {args.reference}: a driving score is within [0, 100]")
    try:
        runs = [read_run(d, label) for d, label in zip(args.runs, labels, strict=True)]
    except FileNotFoundError as error:
        parser.error(str(error))
    for run in runs:
        if not len(run.evaluation.score) and not len(run.training.score):
            logger.warning("%s: no driving scores logged yet", run.label)
    reference = None if args.reference is None else (args.reference, args.reference_label)
    image = draw_learning_curves(runs, (args.width, args.height), reference)
    write_png(args.out, image)
    logger.info("wrote %s", args.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
