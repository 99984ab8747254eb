"""Semantic label ids (CARLA >= 0.9.14, ``carla.CityObjectLabel``) and the Cityscapes palette.

Every label image of the project uses these ids; ``shared/DESIGN.md`` §5 lists them. Ids before
CARLA 0.9.14 were different: convert old data before mixing it with these.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from numpy.typing import NDArray


class Label(IntEnum):
    """CARLA's semantic tags with their integer ids."""

    UNLABELED = 0
    ROAD = 1
    SIDEWALK = 2
    BUILDING = 3
    WALL = 4
    FENCE = 5
    POLE = 6
    TRAFFIC_LIGHT = 7
    TRAFFIC_SIGN = 8
    VEGETATION = 9
    TERRAIN = 10
    SKY = 11
    PEDESTRIAN = 12
    RIDER = 13
    CAR = 14
    TRUCK = 15
    BUS = 16
    TRAIN = 17
    MOTORCYCLE = 18
    BICYCLE = 19
    STATIC = 20
    DYNAMIC = 21
    OTHER = 22
    WATER = 23
    ROAD_LINE = 24
    GROUND = 25
    BRIDGE = 26
    RAIL_TRACK = 27
    GUARD_RAIL = 28


NUM_LABELS = len(Label)

# Cityscapes colours (CARLA's own palette for the ids above), RGB.
_COLORS: dict[Label, tuple[int, int, int]] = {
    Label.UNLABELED: (0, 0, 0),
    Label.ROAD: (128, 64, 128),
    Label.SIDEWALK: (244, 35, 232),
    Label.BUILDING: (70, 70, 70),
    Label.WALL: (102, 102, 156),
    Label.FENCE: (190, 153, 153),
    Label.POLE: (153, 153, 153),
    Label.TRAFFIC_LIGHT: (250, 170, 30),
    Label.TRAFFIC_SIGN: (220, 220, 0),
    Label.VEGETATION: (107, 142, 35),
    Label.TERRAIN: (152, 251, 152),
    Label.SKY: (70, 130, 180),
    Label.PEDESTRIAN: (220, 20, 60),
    Label.RIDER: (255, 0, 0),
    Label.CAR: (0, 0, 142),
    Label.TRUCK: (0, 0, 70),
    Label.BUS: (0, 60, 100),
    Label.TRAIN: (0, 80, 100),
    Label.MOTORCYCLE: (0, 0, 230),
    Label.BICYCLE: (119, 11, 32),
    Label.STATIC: (110, 190, 160),
    Label.DYNAMIC: (170, 120, 50),
    Label.OTHER: (55, 90, 80),
    Label.WATER: (45, 60, 150),
    Label.ROAD_LINE: (157, 234, 50),
    Label.GROUND: (81, 0, 81),
    Label.BRIDGE: (150, 100, 100),
    Label.RAIL_TRACK: (230, 150, 140),
    Label.GUARD_RAIL: (180, 165, 180),
}

PALETTE: NDArray[np.uint8] = np.zeros((256, 3), dtype=np.uint8)
"""(256, 3) RGB colour of every label id; ids above 28 are black."""
for _label, _rgb in _COLORS.items():
    PALETTE[int(_label)] = _rgb


def labels_to_palette(labels: NDArray[np.integer]) -> NDArray[np.uint8]:
    """Colour a label image with the Cityscapes palette.

    Args:
        labels: (H, W) integer label ids (values 0..255; unknown ids come out black).

    Returns:
        (H, W, 3) uint8 RGB image.

    Raises:
        ValueError: for an image that is not two-dimensional.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be an (H, W) image, got shape {labels.shape}")
    return PALETTE[labels.astype(np.uint8, copy=False)]
