"""Train the embedded Wan model further on moving scenes: the video model and a video-capable VAE.

    .venv/bin/python -m tools.training.train_video [--stage vae|data|dit|export|all] [--max-minutes M]

Starts from the embedded image model in assets/ (see train_embedded.py) and its data grammar;
clips are `scenes.render_clip`: the captioned objects drifting and turning at constant rates.

Stages (each resumes from its checkpoint in .train_video/):
  vae     trains only what a single frame never reaches: the earlier time taps of every causal
          3-tap conv (zero so far: a lone frame sees zero padding there) and the temporal
          down/up-sampling convs. A one-frame input takes exactly the path it took before, so the
          VAE file in assets/ is replaced and every image figure stays bit for bit the same.
  data    seeded CLIP-L embeddings of training captions and VAE latents of moving clips
  dit     flow matching on the clips (as train_embedded's DiT stage), from the image model's
          weights, fp32, EMA weights; buckets of frames x resolution mixed per step
  export  the video DiT as a new fp16 file (assets/ditaccel_wan21_video.safetensors) and the VAE

Losses go to tools/training/logs/video_*.csv, the settings to tools/training/logs/video_settings.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import safetensors.torch
import torch

from tools.runtime import dit_runtime, model_files
from tools.training import scenes
from tools.training import train_embedded as te

WORK = dit_runtime.REPO / ".train_video"


@dataclass(frozen=True)
class Settings:
    seed: int = 4321
    vae_steps: int = 400
    vae_batch: int = 4
    vae_res: int = 64
    vae_frames: int = 9
    vae_lr: float = 1e-3
    captions: int = 1200
    # (resolution, frames, clips) of the DiT's data, one caption after another; 1 + 4k frames (Wan's
    # VAE). Few large clips: the VAE's 3D convs take ~2 s per 256 px clip on this CPU
    buckets: tuple[tuple[int, int, int], ...] = ((128, 9, 1200), (128, 17, 600), (256, 9, 200))
    batch: tuple[int, ...] = (8, 4, 2)  # per bucket, about the same tokens per step
    bucket_weights: tuple[float, ...] = (0.4, 0.35, 0.25)
    dit_steps: int = 2400
    dit_lr: float = 1e-4
    dit_warmup: int = 100
    ema: float = 0.998
    caption_dropout: float = 0.1
    checkpoint_every: int = 100


S = Settings()


def clips_to_tensor(clips: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(clips)).float().div(127.5).sub(1.0)  # B, T, H, W, 3
    return x.permute(0, 4, 1, 2, 3).contiguous()  # B, 3, T, H, W


# --------------------------------------------------------------------------------------------- VAE
def encode_video(comfy, vae, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and log-variance, chunked as WanVAE.encode chunks (1 frame, then 4 at a time)."""
    cache = [None] * comfy.ldm.wan.vae.count_conv3d(vae.decoder)
    outs = []
    for i in range(1 + (x.shape[2] - 1) // 4):
        chunk = x[:, :, :1] if i == 0 else x[:, :, 1 + 4 * (i - 1):1 + 4 * i]
        outs.append(vae.encoder(chunk, feat_cache=cache, feat_idx=[0]))
    return vae.conv1(torch.cat(outs, 2)).chunk(2, dim=1)


def decode_video(comfy, vae, z: torch.Tensor) -> torch.Tensor:
    cache = [None] * comfy.ldm.wan.vae.count_conv3d(vae.decoder)
    h = vae.conv2(z)
    return torch.cat([vae.decoder(h[:, :, i:i + 1], feat_cache=cache, feat_idx=[0]) for i in range(h.shape[2])], 2)


def temporal_params(vae) -> list[torch.Tensor]:
    """Make only the video-only weights trainable (see the module docstring); return them."""
    for p in vae.parameters():
        p.requires_grad_(False)
    train = []
    for name, m in vae.named_modules():
        if name.endswith("time_conv"):
            for p in m.parameters():
                p.requires_grad_(True)
                train.append(p)
        elif isinstance(m, torch.nn.Conv3d) and m.weight.shape[2] == 3:
            m.weight.requires_grad_(True)
            mask = torch.ones_like(m.weight)
            mask[:, :, 2] = 0  # the tap a lone frame sees stays as trained on images
            m.weight.register_hook(lambda g, mask=mask: g * mask)
            train.append(m.weight)
    return train


@torch.no_grad()
def init_time_convs(vae) -> None:
    """Start the untrained temporal resamplers at averaging (down) and repeating (up) frames."""
    for name, m in vae.named_modules():
        if not name.endswith("time_conv"):
            continue
        w = m.weight  # (out, in, 3, 1, 1)
        w.zero_()
        m.bias.zero_()
        c = w.shape[1]
        eye = torch.eye(c)
        if w.shape[0] == c:  # downsample: mean of the two newest frames of each stride-2 window
            w[:, :, 1, 0, 0] = eye / 2
            w[:, :, 2, 0, 0] = eye / 2
        else:  # upsample: both output frames start as the input frame
            w[:c, :, 2, 0, 0] = eye
            w[c:, :, 2, 0, 0] = eye


def load_vae(comfy) -> torch.nn.Module:
    vae = te.build_vae(comfy, te.S.vae_dim)
    sd = safetensors.torch.load_file(str(te.ASSETS / model_files.WAN_VAE_FILE))
    vae.load_state_dict({k: v.float() for k, v in sd.items()})
    return vae


def stage_vae(max_seconds: float) -> None:
    comfy = te.comfy_imports()
    ckpt = WORK / "vae.ckpt"
    vae = load_vae(comfy)
    init_time_convs(vae)
    params = temporal_params(vae)
    opt = torch.optim.AdamW(params, lr=S.vae_lr, weight_decay=0.0, betas=(0.9, 0.99))
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    rng = random.Random(S.seed + step)
    start = time.time()
    while step < S.vae_steps and time.time() - start < max_seconds:
        x = clips_to_tensor([scenes.render_clip(scenes.random_scene(rng), S.vae_res, S.vae_frames, rng)
                             for _ in range(S.vae_batch)])
        mu, logvar = encode_video(comfy, vae, x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar.clamp(-12, 4)).exp()
        y = decode_video(comfy, vae, z)
        loss = ((y - x) ** 2).mean() + 0.1 * (y - x).abs().mean()
        te.optimizer_step(opt, vae, loss, S.vae_lr * min(1.0, (step + 1) / 50)
                          * (0.55 + 0.45 * math.cos(math.pi * step / S.vae_steps)))
        step += 1
        if step % 10 == 0:
            err = ((y.detach().clamp(-1, 1) - x) / 2).pow(2)
            first = -10 * math.log10(err[:, :, :1].mean().item())
            later = -10 * math.log10(err[:, :, 1:].mean().item())
            te.log_row("video_vae_loss", {"step": step, "loss": round(loss.item(), 5), "psnr_first": round(first, 2),
                                          "psnr_later": round(later, 2), "seconds": round(time.time() - start, 1)})
            print(f"[vae] step {step} loss {loss.item():.4f} first {first:.1f} dB later {later:.1f} dB "
                  f"({time.time() - start:.0f} s)", flush=True)
        if step % S.checkpoint_every == 0:
            te.save_ckpt(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step)
    te.save_ckpt(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step)


def trained_vae(comfy) -> torch.nn.Module:
    vae = te.build_vae(comfy, te.S.vae_dim)
    vae.load_state_dict(torch.load(WORK / "vae.ckpt", weights_only=False)["model"])
    return vae.eval()


# -------------------------------------------------------------------------------------------- data
def stage_data() -> None:
    out = WORK / "data.pt"
    if out.exists():
        return
    comfy = te.comfy_imports()
    train = scenes.draw_scenes(S.seed, S.captions, "train")
    captions = sorted({s.caption for s in train})
    by_caption = {s.caption: s for s in train}
    start = time.time()
    emb, empty = te.embed_captions(comfy, captions, "data")
    print(f"[data] embedded {len(captions)} captions ({time.time() - start:.0f} s)", flush=True)
    vae = trained_vae(comfy)
    fmt = comfy.latent_formats.Wan21()
    rng = random.Random(S.seed + 7)
    latents = {}
    for res, frames, clips in S.buckets:
        items = [(i % len(captions), by_caption[captions[i % len(captions)]]) for i in range(clips)]
        zs, idx = [], []
        for j in range(0, len(items), 8):
            chunk = items[j:j + 8]
            with torch.no_grad():
                x = clips_to_tensor([scenes.render_clip(s, res, frames, rng) for _, s in chunk])
                zs.append(fmt.process_in(encode_video(comfy, vae, x)[0]).half())
            idx += [ci for ci, _ in chunk]
            if j % 800 == 0:
                print(f"[data] {res}px x {frames} latents {j}/{len(items)} ({time.time() - start:.0f} s)", flush=True)
        latents[(res, frames)] = (torch.cat(zs), torch.tensor(idx))
    torch.save({"captions": captions, "emb": emb, "empty": empty, "latents": latents}, out)


# --------------------------------------------------------------------------------------------- DiT
def learning_rate(step: int) -> float:
    warm = min(1.0, (step + 1) / S.dit_warmup)
    return S.dit_lr * warm * (0.55 + 0.45 * math.cos(math.pi * min(1.0, step / S.dit_steps)))


def stage_dit(max_seconds: float) -> None:
    comfy = te.comfy_imports()
    model = te.build_dit(comfy)
    sd = safetensors.torch.load_file(str(te.ASSETS / model_files.WAN_DIT_FILE))
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=S.dit_lr, weight_decay=0.01, betas=(0.9, 0.99))
    ckpt = WORK / "dit.ckpt"
    step = 0
    gen = torch.Generator().manual_seed(S.seed)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        ema = state["ema"]
        opt.load_state_dict(state["opt"])
        step = state["step"]
        gen.set_state(state["gen"])
    data = torch.load(WORK / "data.pt", weights_only=False)
    emb, empty = data["emb"].float(), data["empty"].float()
    keys = [(r, f) for r, f, _ in S.buckets]
    weights = torch.tensor(S.bucket_weights)
    start = time.time()
    model.train()
    while step < S.dit_steps and time.time() - start < max_seconds:
        b = int(torch.multinomial(weights, 1, generator=gen))
        z_all, cap_idx = data["latents"][keys[b]]
        pick = torch.randint(len(z_all), (S.batch[b],), generator=gen)
        lr = learning_rate(step)
        # fp32: bf16 autocast's backward is ~20x slower on torch 2.14's CPU
        loss = te.flow_matching_step(model, opt, ema, S.ema, z_all[pick], emb[cap_idx[pick]], empty,
                                     S.caption_dropout, gen, lr)
        step += 1
        if step % 10 == 0:
            te.log_row("video_dit_loss", {"step": step, "loss": round(loss.item(), 5), "lr": f"{lr:.2e}",
                                          "bucket": f"{keys[b][0]}px x {keys[b][1]}",
                                          "seconds": round(time.time() - start, 1)})
        if step % S.checkpoint_every == 0:
            te.save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step, gen=gen.get_state())
            print(f"[dit] step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    te.save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step, gen=gen.get_state())


# ------------------------------------------------------------------------------------------ export
def stage_export() -> None:
    te.comfy_imports()
    vae_sd = torch.load(WORK / "vae.ckpt", weights_only=False)["model"]
    model_files.write_safetensors(te.ASSETS / model_files.WAN_VAE_FILE,
                                  {k: v.half().numpy() for k, v in vae_sd.items()})
    state = torch.load(WORK / "dit.ckpt", weights_only=False)
    model_files.write_safetensors(te.ASSETS / model_files.WAN_VIDEO_DIT_FILE,
                                  {k: v.half().numpy() for k, v in state["ema"].items()})
    (te.LOGS / "video_settings.json").write_text(
        json.dumps({**asdict(S), "dit_trained_steps": state["step"]}, indent=1))
    print(f"[export] wrote {model_files.WAN_VIDEO_DIT_FILE} (step {state['step']}) and the VAE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="all", choices=["vae", "data", "dit", "export", "all"])
    parser.add_argument("--max-minutes", type=float, default=600.0, help="stop (with a checkpoint) after this")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes
    if args.stage in ("vae", "all"):
        stage_vae(deadline - time.time())
    if args.stage in ("data", "all") and (WORK / "vae.ckpt").exists():
        stage_data()
    if args.stage in ("dit", "all") and (WORK / "data.pt").exists():
        stage_dit(deadline - time.time())
    if args.stage in ("export", "all") and (WORK / "dit.ckpt").exists():
        stage_export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
