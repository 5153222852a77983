"""Caption variation: the same scene said the way people type prompts, not only in the grammar.

`scenes.Scene.caption` is the fixed grammar every benchmark and the detector use. `vary` says the
same scene another way — another word order, position phrasings ("in the top left corner"),
no size word, no background clause, filler words — so a model trained on both draws what the
known words of an off-grammar prompt say. The split follows the canonical caption: a variant of a
held-out scene is held out too.
"""

from __future__ import annotations

import random

from tools.training.scenes import Scene, SceneObject

# other ways to say each position of the grammar
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "at the top left": ("in the top left corner", "top left", "in the upper left", "at the upper left"),
    "at the top": ("at the top center", "near the top", "in the upper middle", "top"),
    "at the top right": ("in the top right corner", "top right", "in the upper right", "at the upper right"),
    "on the left": ("at the left", "on the left side", "left", "in the middle left"),
    "in the center": ("in the middle", "at the center", "centered", "center"),
    "on the right": ("at the right", "on the right side", "right", "in the middle right"),
    "at the bottom left": ("in the bottom left corner", "bottom left", "in the lower left", "at the lower left"),
    "at the bottom": ("at the bottom center", "near the bottom", "in the lower middle", "bottom"),
    "at the bottom right": ("in the bottom right corner", "bottom right", "in the lower right",
                            "at the lower right"),
}
SIZE_PHRASES = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
PREFIXES = ("a picture of ", "an image of ", "a drawing of ", "draw ", "there is ", "a simple illustration of ",
            "please draw ", "a flat graphic of ")
SUFFIXES = (", flat colours", ", simple", ", minimal", ", high quality", ", clean vector art")
ADVERBS = ("", "", "very ", "nice ", "plain ")
JOINERS = (" and ", ", ", " with ", " plus ", ". ")
BACKGROUND_PHRASES = ("on a {} background", "{} background", "against a {} background", "with a {} background",
                      "over {}")


def _object_phrase(obj: SceneObject, rng: random.Random) -> str:
    size = rng.choice(SIZE_PHRASES[obj.size]) if rng.random() < 0.7 else ""
    where = obj.position if rng.random() < 0.4 else rng.choice(POSITION_PHRASES[obj.position])
    adverb = rng.choice(ADVERBS) if size else ""
    words = [adverb + size, obj.colour] if rng.random() < 0.8 else [obj.colour, adverb + size]
    noun = " ".join(w for w in [*words, obj.shape] if w)
    article = "an" if noun[0] in "aeiou" else "a"
    if rng.random() < 0.25:
        return f"{where}, {article} {noun}" if rng.random() < 0.5 else f"{where} {article} {noun}"
    return f"{article} {noun} {where}"


def vary(scene: Scene, rng: random.Random) -> str:
    """One random rewording of `scene`'s caption (never the canonical caption itself, mostly)."""
    objects = list(scene.objects)
    if len(objects) > 1 and rng.random() < 0.3:
        rng.shuffle(objects)
    phrases = [_object_phrase(o, rng) for o in objects]
    body = phrases[0]
    for p in phrases[1:]:
        body += rng.choice(JOINERS) + p
    r = rng.random()
    if r < 0.3:  # no background: the model picks one
        text = body
    else:
        bg = rng.choice(BACKGROUND_PHRASES).format(scene.background)
        text = f"{bg}, {body}" if r < 0.45 else f"{body}, {bg}"
    if rng.random() < 0.35:
        text = rng.choice(PREFIXES) + text
    if rng.random() < 0.2:
        text += rng.choice(SUFFIXES)
    if rng.random() < 0.15:
        text = text.capitalize()
    return text
