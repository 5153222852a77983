"""Validation of the embedded model's detector (accel_core/guidance/scene_detector.py) on ground truth.

`validate` measures it on ground-truth renders of held-out captions before it is used on
samples; `adheres` / `colour_adheres` apply it to a scene's captioned primary object.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from comfyui_ditaccel.accel_core.guidance.scene_detector import Found, contains, find_objects, shape_features

from tools.training.scenes import COLOURS, SHAPES, Scene, draw_scenes, render

__all__ = ["Found", "adheres", "colour_adheres", "contains", "find_objects", "shape_features", "validate"]


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
