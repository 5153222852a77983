"""The video model (the embedded Wan model trained further on moving scenes) in real graphs."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import torch
from comfyui_ditaccel.accel_core.metrics import psnr
from graphs import add_report, insert_model_node, set_steps
from PIL import Image

from tools.runtime import dit_runtime, model_files
from tools.runtime.comfy_client import decode_png

FRAMES, SIZE, STEPS = 9, 128, 12


def video_prompt(baseline_prompt: dict) -> dict:
    prompt = set_steps(copy.deepcopy(baseline_prompt), STEPS)
    prompt["1"]["inputs"]["unet_name"] = model_files.WAN_VIDEO_DIT_FILE
    prompt["5"]["inputs"].update(width=SIZE, height=SIZE, length=FRAMES)
    return prompt


def clip_of(result) -> np.ndarray:
    return np.stack([decode_png(b) for b in result.images])


def test_the_video_model_draws_a_moving_clip(client, baseline_prompt):
    clip = clip_of(client.run(video_prompt(baseline_prompt)))
    assert clip.shape == (FRAMES, SIZE, SIZE, 3)
    assert float(clip.std()) > 0.05  # objects on a background, not a flat frame
    steps = [float(np.abs(clip[i + 1] - clip[i]).mean()) for i in range(FRAMES - 1)]
    assert min(steps) > 1e-3 and float(np.abs(clip[-1] - clip[0]).mean()) > 0.01  # every frame moves on


def test_taylorseer_forecasts_on_a_clip_close_to_the_full_run(client, baseline_prompt):
    base = clip_of(client.run(video_prompt(baseline_prompt)))
    prompt = add_report(insert_model_node(video_prompt(baseline_prompt), "40", "DiTAccelTaylorSeer",
                                          preset="balanced"))
    result = client.run(prompt)
    clip = clip_of(result)
    text = result.node_output("50")["text"][0]
    rows = [line.split() for line in text.splitlines() if line[:4].strip().isdigit()]
    assert len(rows) == STEPS and any(r[2] == "forecast" for r in rows), text
    assert clip.shape == base.shape
    assert psnr(torch.from_numpy(clip), torch.from_numpy(base)) > 25.0


def test_example_video_workflow_runs_as_shipped(client):
    prompt = json.loads((dit_runtime.REPO / "workflows" / "api" / "video_taylorseer.json").read_text())
    result = client.run(prompt)
    animations = [Image.open(io.BytesIO(b)) for b in result.images if b[:4] == b"RIFF"]
    assert len(animations) == 1 and animations[0].n_frames == 9
    text = result.node_output("50")["text"][0]
    assert "methods: TaylorSeer(" in text and "transformer FLOPs run: 100.0 %" not in text
