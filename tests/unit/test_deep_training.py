"""The deep embedded model's training pieces: growth keeps the shipped model's output, caption
rewordings keep every object's colour and shape, rectangular renders put objects where the caption says."""

from __future__ import annotations

import random

import comfy.ops
import numpy as np
import safetensors.torch
import torch
from comfy.ldm.wan.model import WanModel

from tools.runtime import dit_runtime, model_files
from tools.training import captions, scenes, train_deep


def _wan(layers: int) -> WanModel:
    return WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=256, ffn_dim=1024, freq_dim=256,
                    text_dim=4096, out_dim=16, num_heads=2, num_layers=layers,
                    operations=comfy.ops.disable_weight_init)


def test_grown_model_starts_as_the_shipped_one():
    shipped = safetensors.torch.load_file(str(dit_runtime.ASSETS / model_files.WAN_DIT_FILE))
    small, deep = _wan(6), _wan(24)
    small.load_state_dict({k: v.float() for k, v in shipped.items()})
    grown = train_deep.grown_state(shipped, 24, 6)
    deep.load_state_dict(grown)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 1, 16, 24, generator=g)
    ctx = torch.nn.functional.pad(torch.randn(1, 77, 768, generator=g), (0, 4096 - 768))
    t = torch.tensor([600.0])
    with torch.no_grad():
        a, b = small(x, t, ctx), deep(x, t, ctx)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    # the copies are real copies apart from their zeroed output projections: training moves them
    assert torch.equal(grown["blocks.5.self_attn.q.weight"], grown["blocks.4.self_attn.q.weight"])
    assert grown["blocks.5.ffn.2.weight"].abs().sum() == 0 and grown["blocks.4.ffn.2.weight"].abs().sum() > 0
    per_block = len([k for k in shipped if k.startswith("blocks.5.")])
    assert len([k for k in grown if k.startswith("blocks.23.")]) == per_block


def test_rewordings_name_every_object_and_differ_from_the_grammar():
    rng = random.Random(0)
    differ = 0
    for scene in scenes.draw_scenes(5, 200, "train"):
        text = captions.vary(scene, rng)
        low = text.lower()
        for obj in scene.objects:
            assert obj.colour in low and obj.shape in low, (scene.caption, text)
        differ += text != scene.caption
    assert differ >= 190
    a = [captions.vary(s, random.Random(1)) for s in scenes.draw_scenes(5, 20, "train")]
    b = [captions.vary(s, random.Random(1)) for s in scenes.draw_scenes(5, 20, "train")]
    assert a == b


def test_rectangular_renders_keep_positions_and_square_renders_are_unchanged():
    scene = scenes.draw_scenes(4, 1, "train")[0]
    square = scenes.render(scene, 128, random.Random(2))
    assert np.array_equal(square, scenes.render(scene, 128, random.Random(2), height=128))
    for w, h in ((320, 192), (192, 320)):
        img = scenes.render(scene, w, None, height=h)
        assert img.shape == (h, w, 3)
        for obj in scene.objects:
            px, py = scenes.POSITIONS[obj.position]
            centre = img[int(py * h), int(px * w)].astype(int)
            assert np.abs(centre - np.array(scenes.COLOURS[obj.colour])).max() < 40, scene.caption
    clip = scenes.render_clip(scene, 192, 5, random.Random(3), height=128)
    assert clip.shape == (5, 128, 192, 3)


def test_buckets_cover_the_sizes_the_issue_names():
    sides = {s for b in train_deep.BUCKETS for s in (b.width, b.height)}
    assert min(sides) == 128 and max(sides) == 512
    assert any(b.width != b.height for b in train_deep.BUCKETS)
    assert {b.frames for b in train_deep.BUCKETS} >= {1, 17}
    assert abs(sum(b.weight for b in train_deep.BUCKETS) - 1.0) < 1e-9
    assert all(b.width % 16 == 0 and b.height % 16 == 0 and (b.frames - 1) % 4 == 0 for b in train_deep.BUCKETS)
