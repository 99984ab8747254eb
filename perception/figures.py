"""Pictures of a perception evaluation: the confusion matrix and input | prediction | truth rows.

Drawn with OpenCV (a project dependency) rather than matplotlib (not one). Images are built in
BGR, OpenCV's order, and written atomically as PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from numpy.typing import NDArray

from envs.atomic import atomic_path
from envs.sim.labels import PALETTE, Label
from perception.dataset import ShardDataset
from perception.metrics import colorize, predict
from perception.model import PerceptionNet

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SCALE = 0.45
_WHITE = (255, 255, 255)
_BLACK = (0, 0, 0)


def class_title(name: str) -> str:
    """``ROAD_LINE`` -> ``road line``."""
    return name.lower().replace("_", " ")


def write_png(path: str | Path, image: NDArray[np.uint8]) -> None:
    """Write a BGR image as PNG, atomically.

    Raises:
        ValueError: naming ``path`` when OpenCV cannot encode the image.
    """
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {image.shape} image as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _text_image(text: str, width: int, height: int) -> NDArray[np.uint8]:
    """White ``text`` left-aligned and vertically centred on a black (height, width) strip."""
    strip = np.zeros((height, width, 3), np.uint8)
    (_, h), _ = cv2.getTextSize(text, _FONT, _SCALE, 1)
    cv2.putText(strip, text, (2, (height + h) // 2), _FONT, _SCALE, _WHITE, 1, cv2.LINE_AA)
    return strip


def draw_confusion(classes: Sequence[str], counts: Sequence[Sequence[int]]) -> NDArray[np.uint8]:
    """A row-normalised confusion matrix (rows: truth, columns: prediction) as a BGR image.

    Args:
        classes: Label names (``envs.sim.labels.Label`` members) of the rows and columns.
        counts: (n, n) pixel counts, rows the true class.

    Returns:
        The picture: each cell coloured (viridis) and marked with its percentage of the row,
        class names on both axes beside a swatch of the class's colour.
    """
    matrix = np.asarray(counts, dtype=np.float64)
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    n, cell, swatch = len(classes), 34, 12
    titles = [class_title(c) for c in classes]
    label_w = max(cv2.getTextSize(t, _FONT, _SCALE, 1)[0][0] for t in titles) + 8
    left, top = label_w + swatch + 6, label_w + swatch + 30
    caption = "rows: truth, columns: prediction, % of row"
    width = max(left + n * cell, cv2.getTextSize(caption, _FONT, _SCALE, 1)[0][0]) + 8
    image = np.zeros((top + n * cell + 8, width, 3), np.uint8)
    cv2.putText(image, caption, (4, 16), _FONT, _SCALE, _WHITE, 1, cv2.LINE_AA)
    levels = np.round(rows * 255).astype(np.uint8)
    colours = cv2.applyColorMap(levels.reshape(-1, 1), cv2.COLORMAP_VIRIDIS).reshape(n, n, 3)
    for i, (name, title) in enumerate(zip(classes, titles, strict=True)):
        bgr = tuple(int(v) for v in PALETTE[int(Label[name])][::-1])
        y, x = top + i * cell, left + i * cell
        # row label, then its swatch; column label rotated to read upwards, swatch below it
        image[y : y + cell, :label_w] = _text_image(title, label_w, cell)
        image[y + 11 : y + cell - 11, label_w : label_w + swatch] = bgr
        column = cv2.rotate(_text_image(title, label_w, cell), cv2.ROTATE_90_COUNTERCLOCKWISE)
        image[top - swatch - 4 - label_w : top - swatch - 4, x : x + cell] = column
        image[top - swatch - 2 : top - 2, x + 11 : x + cell - 11] = bgr
        for j in range(n):
            cx = left + j * cell
            image[y + 1 : y + cell - 1, cx + 1 : cx + cell - 1] = colours[i, j]
            if rows[i, j] >= 0.005:
                text = f"{100 * rows[i, j]:.0f}"
                (w, h), _ = cv2.getTextSize(text, _FONT, 0.4, 1)
                ink = _BLACK if rows[i, j] > 0.6 else _WHITE
                org = (cx + (cell - w) // 2, y + (cell + h) // 2)
                cv2.putText(image, text, org, _FONT, 0.4, ink, 1, cv2.LINE_AA)
    return image


def spread_frames(weathers: NDArray[np.str_], count: int) -> list[int]:
    """Up to ``count`` frame indices shared round-robin among the weather presets.

    Presets are taken in sorted order; within a preset the frames are evenly spaced, so the
    picture shows different scenes as well as different weathers.
    """
    names = sorted(set(weathers.tolist()))
    frames = {w: np.flatnonzero(weathers == w) for w in names}
    take = dict.fromkeys(names, 0)
    wanted = min(count, len(weathers))
    while sum(take.values()) < wanted:
        for w in names:
            if take[w] < len(frames[w]) and sum(take.values()) < wanted:
                take[w] += 1
    picks: list[int] = []
    for w in names:
        k, idx = take[w], frames[w]
        picks += [int(idx[int((i + 0.5) * len(idx) / k)]) for i in range(k)]
    return picks


def draw_samples(
    model: PerceptionNet, data: ShardDataset, indices: Sequence[int], scale: int = 2
) -> NDArray[np.uint8]:
    """Rows of input | prediction | ground truth for frames ``indices``, as a BGR image.

    Each row's input is marked with its weather preset; ``scale`` enlarges every panel
    (nearest neighbour, so label edges stay sharp).
    """
    batch = data.batch(indices)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        _, pred = predict(model, batch["image"])
    model.train(was_training)
    panels = [batch["image"], colorize(pred), colorize(batch["labels"])]
    weathers = data.arrays()["weather"][np.asarray(indices)]
    gap = 4
    rows = []
    for i, weather in enumerate(weathers):
        parts = []
        for panel in panels:
            rgb = panel[i].permute(1, 2, 0).numpy()
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            big = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
            parts += [big, np.zeros((big.shape[0], gap, 3), np.uint8)]
        row = np.concatenate(parts[:-1], axis=1)
        cv2.putText(row, str(weather), (5, 17), _FONT, _SCALE, _BLACK, 3, cv2.LINE_AA)
        cv2.putText(row, str(weather), (5, 17), _FONT, _SCALE, _WHITE, 1, cv2.LINE_AA)
        rows += [row, np.zeros((gap, row.shape[1], 3), np.uint8)]
    body = np.concatenate(rows[:-1], axis=0)
    panel_w = (body.shape[1] - 2 * gap) // 3
    header = np.zeros((24, body.shape[1], 3), np.uint8)
    for k, title in enumerate(("input", "prediction", "ground truth")):
        (w, _), _ = cv2.getTextSize(title, _FONT, 0.55, 1)
        org = (k * (panel_w + gap) + (panel_w - w) // 2, 17)
        cv2.putText(header, title, org, _FONT, 0.55, _WHITE, 1, cv2.LINE_AA)
    return np.concatenate([header, body], axis=0)
