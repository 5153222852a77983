"""A simple detector for the embedded model's scenes: is there a <colour> <shape> in this image?

Pixels take the nearest palette colour (object colours and backgrounds); each connected
region of an object colour is classified by two rotation-invariant features of its mask:
fill = area / minimum-area enclosing rectangle (circle 0.79, square 1.0, triangle 0.5,
cross 0.57) and solidity = area / convex-hull area (1.0 for the convex shapes, 0.72 for the
cross). `validate` measures it on ground-truth renders before it is used on samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from scenes import BACKGROUNDS, COLOURS, SHAPES, Scene, draw_scenes, render
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

PROTOTYPES = {"circle": (0.785, 1.0), "square": (1.0, 1.0), "triangle": (0.5, 1.0), "cross": (0.565, 0.72)}
MIN_AREA_SHARE = 0.008

_PALETTE_NAMES = list(COLOURS) + [f"bg:{b}" for b in BACKGROUNDS]
_PALETTE = np.array(list(COLOURS.values()) + list(BACKGROUNDS.values()), dtype=np.float32)


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
    return any(f.colour == colour and f.shape == shape for f in find_objects(image))


def adheres(image: np.ndarray, scene: Scene) -> bool:
    """The captioned primary object (colour and shape) is in the image."""
    return contains(image, scene.primary.colour, scene.primary.shape)


def colour_adheres(image: np.ndarray, scene: Scene) -> bool:
    """A region of the captioned primary object's colour is in the image (shape not checked)."""
    return any(f.colour == scene.primary.colour for f in find_objects(image))


@dataclass(frozen=True)
class Validation:
    accuracy: float  # primary object found on ground-truth renders of held-out captions
    all_objects_accuracy: float  # every captioned object found
    chance: float  # found on renders of a different random held-out caption
    uniform_chance: float  # 1 / (colours x shapes)
    samples: int


def validate(count: int = 200, size: int = 256, seed: int = 7) -> Validation:
    scenes = draw_scenes(seed, count, "held_out")
    rng = random.Random(seed)
    hits = all_hits = chance_hits = 0
    for i, scene in enumerate(scenes):
        image = render(scene, size, rng)
        found = {(f.colour, f.shape) for f in find_objects(image)}
        hits += (scene.primary.colour, scene.primary.shape) in found
        all_hits += all((o.colour, o.shape) in found for o in scene.objects)
        other = scenes[(i + 1 + rng.randrange(count - 1)) % count]
        chance_hits += (other.primary.colour, other.primary.shape) in found
    return Validation(hits / count, all_hits / count, chance_hits / count, 1 / (len(COLOURS) * len(SHAPES)), count)


if __name__ == "__main__":
    v = validate()
    print(f"detector on ground-truth renders of {v.samples} held-out captions (256 px, jittered): "
          f"primary object {100 * v.accuracy:.1f} %, all objects {100 * v.all_objects_accuracy:.1f} %, "
          f"chance (another caption's object) {100 * v.chance:.1f} %, uniform chance {100 * v.uniform_chance:.1f} %")
