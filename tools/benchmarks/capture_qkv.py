"""Capture real q/k/v of the embedded model's image self-attention, for the attention benchmark.

A held-out scene is drawn at the requested size, VAE-encoded and noised to the sampler's state
at a middle step of a 28-step euler run (shift 3, as the example workflows); one CFG step is
run in-process on real ComfyUI with an attention override that stores the self-attention
inputs of the chosen blocks. Output: out/qkv/qkv_<tokens>.pt with {"q", "k", "v"} per block,
each (B=2 [cond, uncond], heads, tokens, head dim) fp32, and the token grid.

    .venv/bin/python -m tools.benchmarks.capture_qkv --sizes 512 1024 2048
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from tools import REPO


def _comfy():
    from tools.runtime import dit_runtime

    dit_runtime.in_process()
    import comfy.sample
    import comfy.sd
    import comfy.utils
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    return comfy, ModelSamplingSD3, dit_runtime


def capture(size: int, blocks: tuple[int, ...], step: int, steps: int, seed: int, frames: int = 1,
            dit_path: Path | None = None) -> dict:
    """q/k/v of `blocks` at `step`; `dit_path` replaces the embedded model file for this size and frames."""
    comfy, sampling_sd3, dit_runtime = _comfy()
    import numpy as np

    from tools.runtime import model_files
    from tools.training import scenes

    models = dit_runtime.layout().models
    dit = model_files.WAN_VIDEO_DIT_FILE if frames > 1 else model_files.WAN_DIT_FILE
    model = comfy.sd.load_diffusion_model(str(dit_path or models / "diffusion_models" / dit))
    model = sampling_sd3().patch(model, 3.0)[0]
    clip = comfy.sd.load_clip(ckpt_paths=[str(models / "text_encoders" / model_files.CLIP_L_FILE)],
                              clip_type=comfy.sd.CLIPType.SD3)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(models / "vae" / model_files.WAN_VAE_FILE)))
    scene = scenes.draw_scenes(seed, 1, "eval")[0]
    if frames > 1:  # a moving clip for the video model: (frames, H, W, 3)
        pixels = torch.from_numpy(scenes.render_clip(scene, size, frames, random.Random(seed)).astype(np.float32) / 255)
    else:
        pixels = torch.from_numpy(np.asarray(scenes.render(scene, size, random.Random(seed), supersample=1),
                                             dtype=np.float32) / 255.0).unsqueeze(0)
    latent = vae.encode(pixels)
    positive = [[clip.encode_from_tokens(clip.tokenize(scene.caption)), {}]]
    negative = [[clip.encode_from_tokens(clip.tokenize("")), {}]]

    found: dict[int, dict[str, torch.Tensor]] = {}
    counter = {"call": 0}

    def override(func, q, k, v, heads, *args, **kwargs):
        if q.shape[-2 if kwargs.get("skip_reshape") else 1] == k.shape[-2 if kwargs.get("skip_reshape") else 1]:
            block = counter["call"]
            counter["call"] += 1
            if block in blocks:
                def split(x):
                    if kwargs.get("skip_reshape"):
                        return x.float().clone()
                    b, n, hd = x.shape
                    return x.float().reshape(b, n, heads, hd // heads).transpose(1, 2).contiguous()
                found[block] = {"q": split(q), "k": split(k), "v": split(v)}
        return func(q, k, v, heads, *args, **kwargs)

    model.model_options.setdefault("transformer_options", {})["optimized_attention_override"] = override
    noise = comfy.sample.prepare_noise(latent, seed)
    comfy.sample.sample(model, noise, steps, 5.0, "euler", "simple", positive, negative, latent,
                        start_step=step, last_step=step + 1, force_full_denoise=False, seed=seed,
                        disable_pbar=True)
    t, h, w = latent.shape[2], latent.shape[3] // 2, latent.shape[4] // 2
    return {"grid": (t, h, w), "caption": scene.caption, "step": step, "blocks": found}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048], help="image sizes in pixels")
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--step", type=int, default=10, help="which step of the 28-step run to capture")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--frames", type=int, default=1,
                    help="above 1: the video model on a moving clip of this many frames (1 + 4k)")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "qkv")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    for size in a.sizes:
        data = capture(size, tuple(a.blocks), a.step, 28, a.seed, a.frames)
        t, h, w = data["grid"]
        path = a.out / f"qkv_{t * h * w}.pt"
        torch.save(data, path)
        print(f"{size} px: {t * h * w} image tokens, blocks {sorted(data['blocks'])} → {path}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
