"""Procedurally drawn, captioned scenes: the embedded model's training data and its test prompts.

Grammar (fixed): one to three objects, each "a <size> <colour> <shape> <position>", joined by
", " and " and ", then ", on a <background> background". Example:
    "a large red circle at the top left and a small blue cross at the bottom, on a black background"

Objects never overlap, so every captioned object is visible. A caption belongs to the held-out
split iff its sha256 falls in the first 10 % of the hash space; training only ever draws
captions outside it, and no setting is tuned on held-out captions.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

import numpy as np
from comfyui_ditaccel.accel_core.guidance.scene_detector import BACKGROUNDS, COLOURS, SHAPES
from PIL import Image, ImageDraw

SIZES = {"small": 0.24, "large": 0.40}  # side of the object's box, as a share of the canvas
POSITIONS: dict[str, tuple[float, float]] = {  # centre (x, y) as a share of the canvas
    "at the top left": (0.25, 0.25), "at the top": (0.5, 0.25), "at the top right": (0.75, 0.25),
    "on the left": (0.25, 0.5), "in the center": (0.5, 0.5), "on the right": (0.75, 0.5),
    "at the bottom left": (0.25, 0.75), "at the bottom": (0.5, 0.75), "at the bottom right": (0.75, 0.75),
}
HELD_OUT_SHARE = 0.10


@dataclass(frozen=True)
class SceneObject:
    colour: str
    shape: str
    size: str
    position: str

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape} {self.position}"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str

    @property
    def caption(self) -> str:
        phrases = [o.phrase() for o in self.objects]
        body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return f"{body}, on a {self.background} background"

    @property
    def primary(self) -> SceneObject:
        return self.objects[0]


def is_held_out(caption: str) -> bool:
    digest = int.from_bytes(hashlib.sha256(caption.encode()).digest()[:8], "big")
    return digest < HELD_OUT_SHARE * 2**64


def _positions_compatible(a: str, b: str) -> bool:
    (ax, ay), (bx, by) = POSITIONS[a], POSITIONS[b]
    return max(abs(ax - bx), abs(ay - by)) >= 0.5 - 1e-9


def random_scene(rng: random.Random, max_objects: int = 3) -> Scene:
    weights = [0.5, 0.35, 0.15][:max_objects]
    n = rng.choices(range(1, max_objects + 1), weights=weights)[0]
    objects: list[SceneObject] = []
    while len(objects) < n:
        free = [p for p in POSITIONS if all(_positions_compatible(p, o.position) for o in objects)]
        if not free:  # e.g. a centred first object leaves no room: start over
            objects = []
            continue
        position = rng.choice(free)
        size = "small" if objects else rng.choice(list(SIZES))  # only the first object may be large
        objects.append(SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), size, position))
    return Scene(tuple(objects), rng.choice(list(BACKGROUNDS)))


def draw_scenes(seed: int, count: int, split: str, max_objects: int = 3) -> list[Scene]:
    """`count` scenes whose captions are all in `split` ("train" or "held_out"), reproducibly."""
    rng = random.Random(seed)
    want_held_out = split == "held_out"
    out: list[Scene] = []
    while len(out) < count:
        scene = random_scene(rng, max_objects)
        if is_held_out(scene.caption) == want_held_out:
            out.append(scene)
    return out


def _shape_points(shape: str, cx: float, cy: float, half: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * 0.85, y * 0.85) for x, y in pts]
    elif shape == "triangle":
        pts = [(0, -1), (1, 0.8), (-1, 0.8)]
    elif shape == "cross":
        a, b = 1.0, 0.34
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b),
               (-b, -b)]
    else:
        raise ValueError(shape)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + half * (x * c - y * s), cy + half * (x * s + y * c)) for x, y in pts]


@dataclass(frozen=True)
class Placement:
    """Where and how one object is drawn: centre and box side as shares of the canvas, tilt, colour."""

    x: float
    y: float
    scale: float
    angle: float
    colour: tuple[int, ...]


def _placements(scene: Scene, rng: random.Random | None) -> list[Placement]:
    out = []
    for obj in scene.objects:
        px, py = POSITIONS[obj.position]
        scale = SIZES[obj.size]
        angle = 0.0
        colour = COLOURS[obj.colour]
        if rng is not None:
            px += rng.uniform(-0.05, 0.05)
            py += rng.uniform(-0.05, 0.05)
            scale *= rng.uniform(0.9, 1.1)
            angle = rng.uniform(-0.2, 0.2)
            shade = rng.uniform(0.92, 1.08)
            colour = tuple(int(min(255, max(0, ch * shade))) for ch in colour)
        out.append(Placement(px, py, scale, angle, tuple(colour)))
    return out


def _draw(scene: Scene, size: int, placements: list[Placement], supersample: int,
          height: int | None = None) -> np.ndarray:
    """`size` is the width; `height` defaults to it. Positions are shares of each side, an
    object's box a share of the shorter side (so objects keep their shape and never overlap)."""
    height = size if height is None else height
    big_w, big_h = size * supersample, height * supersample
    side = min(big_w, big_h)
    img = Image.new("RGB", (big_w, big_h), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(img)
    for obj, pl in zip(scene.objects, placements, strict=True):
        cx, cy, half = pl.x * big_w, pl.y * big_h, pl.scale * side / 2
        if obj.shape == "circle":
            draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=pl.colour)
        else:
            draw.polygon(_shape_points(obj.shape, cx, cy, half, pl.angle), fill=pl.colour)
    img = img.resize((size, height), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8).copy()


def render(scene: Scene, size: int, rng: random.Random | None = None, supersample: int = 3,
           height: int | None = None) -> np.ndarray:
    """RGB uint8 image, `size` wide and `height` (default `size`) high. `rng` adds the jitter of
    training data (position, size, tilt, shade)."""
    return _draw(scene, size, _placements(scene, rng), supersample, height)


# the largest drift per frame, as a share of the canvas, and the largest turn per frame (radians):
# over 17 frames an object moves at most ~a quarter of the canvas, so the caption's position still holds
MAX_SPEED = 0.015
MAX_TURN = 0.06


def render_clip(scene: Scene, size: int, frames: int, rng: random.Random, supersample: int = 2,
                height: int | None = None) -> np.ndarray:
    """(frames, height, size, 3) uint8: the scene's objects drifting and turning at constant rates.

    The first frame is `render`'s jittered image; each object then moves with its own velocity and
    spin (drawn from `rng`), so the motion is smooth and predictable from the first frames.
    """
    start = _placements(scene, rng)
    motion = [(rng.uniform(-MAX_SPEED, MAX_SPEED), rng.uniform(-MAX_SPEED, MAX_SPEED),
               rng.uniform(-MAX_TURN, MAX_TURN)) for _ in start]
    clip = []
    for t in range(frames):
        now = [Placement(p.x + vx * t, p.y + vy * t, p.scale, p.angle + w * t, p.colour)
               for p, (vx, vy, w) in zip(start, motion, strict=True)]
        clip.append(_draw(scene, size, now, supersample, height))
    return np.stack(clip)
