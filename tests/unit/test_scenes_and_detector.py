"""The embedded model's data: caption grammar, held-out split, renders, and the detector."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np

from tools.training import detector, scenes

PHRASE = (r"a (small|large) (" + "|".join(scenes.COLOURS) + r") (" + "|".join(scenes.SHAPES) + r") ("
          + "|".join(scenes.POSITIONS) + ")")
CAPTION = re.compile(rf"^{PHRASE}(, {PHRASE})*( and {PHRASE})?, on a ({'|'.join(scenes.BACKGROUNDS)}) background$")


def test_captions_follow_the_grammar_and_splits_are_disjoint():
    train = scenes.draw_scenes(1, 300, "train")
    held = scenes.draw_scenes(1, 100, "held_out")
    for s in train + held:
        assert CAPTION.match(s.caption), s.caption
        assert 1 <= len(s.objects) <= 3
    assert not {s.caption for s in train} & {s.caption for s in held}
    assert all(scenes.is_held_out(s.caption) for s in held)
    share = np.mean([scenes.is_held_out(scenes.random_scene(random.Random(i)).caption) for i in range(2000)])
    assert 0.07 < share < 0.13
    assert [s.caption for s in scenes.draw_scenes(1, 20, "train")] == [s.caption for s in train[:20]]


def test_renders_show_every_object_where_the_caption_says():
    rng = random.Random(3)
    for scene in scenes.draw_scenes(4, 20, "train"):
        img = scenes.render(scene, 128, rng)
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        for obj in scene.objects:
            px, py = scenes.POSITIONS[obj.position]
            centre = img[int(py * 128), int(px * 128)].astype(int)
            assert np.abs(centre - np.array(scenes.COLOURS[obj.colour])).max() < 40, scene.caption


def test_detector_on_ground_truth_beats_chance_by_far():
    v = detector.validate(count=60, size=256, seed=11)
    assert v.accuracy >= 0.95 and v.all_objects_accuracy >= 0.9
    assert v.chance < 0.15 and v.uniform_chance == 1 / 24


def test_detector_classifies_each_shape():
    for shape in scenes.SHAPES:
        for colour in ("red", "blue"):
            scene = scenes.Scene((scenes.SceneObject(colour, shape, "large", "in the center"),), "gray")
            found = detector.find_objects(scenes.render(scene, 256, random.Random(0)))
            assert [(f.colour, f.shape) for f in found] == [(colour, shape)]
    flat = np.full((64, 64, 3), 128, np.uint8)
    assert detector.find_objects(flat) == []


def test_adherence_score_is_graded_and_agrees_with_the_hit():
    from comfyui_ditaccel.accel_core.guidance.scene_detector import adherence_score, shape_probability

    for shape in scenes.SHAPES:
        scene = scenes.Scene((scenes.SceneObject("green", shape, "large", "in the center"),), "gray")
        img = scenes.render(scene, 256, random.Random(1))
        scores = {s: adherence_score(img, "green", s) for s in scenes.SHAPES}
        assert scores[shape] > 0.5 and max(scores, key=scores.get) == shape, (shape, scores)
        assert abs(sum(scores.values()) - 1.0) < 1e-6  # one region: the shape probabilities
        assert adherence_score(img, "red", shape) == 0.0  # no region of the colour
    # between the circle (0.785) and square (1.0) prototypes the score moves smoothly from one to the other
    probs = [shape_probability(f, 1.0, "square") for f in np.linspace(0.8, 0.98, 7)]
    assert all(a < b for a, b in itertools.pairwise(probs)) and probs[0] < 0.5 < probs[-1]
