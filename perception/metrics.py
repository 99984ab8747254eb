"""Segmentation and affordance metrics, shared by training (validation) and evaluation."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from perception.model import LABEL_NAMES, NUM_CLASSES


def confusion(pred: Tensor, target: Tensor, num_classes: int = NUM_CLASSES) -> NDArray[np.int64]:
    """(classes, classes) counts, rows the true class, columns the predicted one."""
    index = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy().astype(np.int64)


def per_class_iou(matrix: NDArray[np.int64]) -> dict[str, float]:
    """IoU of every class that appears in the ground truth (absent classes are left out).

    A class absent from the ground truth would score 0 for any false positive and be undefined
    otherwise, so -- as in Cityscapes and CARLA benchmarks -- only present classes count.
    """
    true = matrix.sum(axis=1)
    pred = matrix.sum(axis=0)
    hits = np.diag(matrix)
    out = {}
    for c in np.flatnonzero(true):
        out[LABEL_NAMES[c]] = float(hits[c] / (true[c] + pred[c] - hits[c]))
    return out


def mean_iou(matrix: NDArray[np.int64]) -> float:
    """Mean of ``per_class_iou`` (NaN when the ground truth is empty)."""
    ious = per_class_iou(matrix)
    return float(np.mean(list(ious.values()))) if ious else float("nan")
