"""A simple detector for the embedded model's scenes: is there a <colour> <shape> in this image?

Pixels take the nearest palette colour (object colours and backgrounds); each connected
region of an object colour is classified by two rotation-invariant features of its mask:
fill = area / minimum-area enclosing rectangle (circle 0.79, square 1.0, triangle 0.5,
cross 0.57) and solidity = area / convex-hull area (1.0 for the convex shapes, 0.72 for the
cross). The palette and shapes are the embedded model's caption grammar (tools/training/scenes.py
draws with them); tools/training/detector.py validates the detector on ground-truth renders. It lives
in the pack because the head search (DiTAccelHeadHunter) offers prompt adherence as an objective.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from ..quoting import quoted

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 205, 35),
    "purple": (140, 55, 175),
    "orange": (240, 135, 25),
}
SHAPES = ("circle", "square", "triangle", "cross")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"gray": (128, 128, 128), "black": (22, 22, 26),
                                                "white": (236, 236, 232)}

_PALETTE_NAMES = list(COLOURS) + [f"bg:{b}" for b in BACKGROUNDS]
_PALETTE = np.array(list(COLOURS.values()) + list(BACKGROUNDS.values()), dtype=np.float32)
PROTOTYPES = {"circle": (0.785, 1.0), "square": (1.0, 1.0), "triangle": (0.5, 1.0), "cross": (0.565, 0.72)}
MIN_AREA_SHARE = 0.008


@dataclass(frozen=True)
class Found:
    colour: str
    shape: str
    area_share: float
    fill: float
    solidity: float


def _min_rect_area(points: np.ndarray, hull: ConvexHull) -> float:
    verts = points[hull.vertices]
    edges = np.diff(np.vstack([verts, verts[:1]]), axis=0)
    best = np.inf
    for dx, dy in edges:
        norm = np.hypot(dx, dy)
        if norm == 0:
            continue
        c, s = dx / norm, dy / norm
        u = verts @ np.array([c, s])
        v = verts @ np.array([-s, c])
        best = min(best, (u.max() - u.min()) * (v.max() - v.min()))
    return float(best)


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """(fill, solidity) of a boolean mask, measured on pixel corners so small masks stay honest."""
    ys, xs = np.nonzero(mask)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)]).astype(float)
    try:
        hull = ConvexHull(corners)
    except QhullError:
        return 0.0, 0.0
    area = float(mask.sum())
    return area / _min_rect_area(corners, hull), area / hull.volume


def classify_shape(fill: float, solidity: float) -> str:
    return min(PROTOTYPES, key=lambda s: (PROTOTYPES[s][0] - fill) ** 2 + (PROTOTYPES[s][1] - solidity) ** 2)


def find_objects(image: np.ndarray) -> list[Found]:
    """All object-coloured regions of an HxWx3 image (uint8 or float in [0, 1])."""
    img = image.astype(np.float32)
    if img.max() <= 1.0:
        img = img * 255.0
    dist = ((img[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    labels = dist.argmin(-1)
    total = labels.size
    found = []
    for ci, colour in enumerate(COLOURS):
        mask = labels == ci
        mask = ndimage.binary_opening(mask, iterations=1)
        regions, n = ndimage.label(mask)
        for r in range(1, n + 1):
            region = regions == r
            share = region.sum() / total
            if share < MIN_AREA_SHARE:
                continue
            fill, solidity = shape_features(region)
            found.append(Found(colour, classify_shape(fill, solidity), float(share), fill, solidity))
    return found


def contains(image: np.ndarray, colour: str, shape: str) -> bool:
    return has_object(find_objects(image), colour, shape)


def has_object(found: list[Found], colour: str, shape: str) -> bool:
    return any(f.colour == colour and f.shape == shape for f in found)


SHAPE_TEMPERATURE = 0.02  # squared (fill, solidity) distance; the closest prototypes are 0.046 apart


def shape_probability(fill: float, solidity: float, shape: str) -> float:
    """Softmax over the shape prototypes of -(squared feature distance) / SHAPE_TEMPERATURE, read at `shape`."""
    logits = {s: -((p[0] - fill) ** 2 + (p[1] - solidity) ** 2) / SHAPE_TEMPERATURE for s, p in PROTOTYPES.items()}
    top = max(logits.values())
    weights = {s: np.exp(v - top) for s, v in logits.items()}
    return float(weights[shape] / sum(weights.values()))


def adherence_score(image: np.ndarray, colour: str, shape: str) -> float:
    """Graded adherence in [0, 1]: over the regions of `colour`, the highest shape probability of `shape`.

    0 when no region has the colour; above 0.5 only where `contains` finds the object too. It
    moves with how clearly a region has the shape, so a search over few samples sees a change
    that a hit / miss count would only see as a tie.
    """
    return graded_adherence(find_objects(image), colour, shape)


def graded_adherence(found: list[Found], colour: str, shape: str) -> float:
    """`adherence_score` on regions already found (`find_objects`)."""
    return max((shape_probability(f.fill, f.solidity, shape) for f in found if f.colour == colour), default=0.0)


def primary_object(caption: str) -> tuple[str, str]:
    """(colour, shape) of a caption's first object: "a <size> <colour> <shape> ..."."""
    m = re.search(rf"\b({'|'.join(COLOURS)})\s+({'|'.join(SHAPES)})\b", caption.lower())
    if m is None:
        raise ValueError(f"caption {quoted(caption)} names no '<colour> <shape>' of the embedded model's grammar "
                         f"(colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)})")
    return m.group(1), m.group(2)

