"""Train the embedded default model: a tiny Wan 2.1 VAE and a Wan 2.1-architecture DiT.

    .venv/bin/python -m tools.training.train_embedded [--stage vae|data|data2|dit|export|all] [--max-minutes M]

Stages (each resumes from its checkpoint in .train/, so a stopped run goes on where it left off):
  vae     reconstruction training of ComfyUI's WanVAE class at width 8 on 64 px scenes, then the
          latent statistics are folded into its 1x1 in/out convs so ComfyUI's Wan21 latent
          normalisation maps its latents to zero mean, unit variance per channel
  data    seeded CLIP-L embeddings of the training captions (through ComfyUI's own CLIP code,
          exactly as CLIPTextEncode computes them) and VAE latents of jittered renders
  data2   phase-2 data: 256 px latents of more captions (two jittered renders each)
  dit     flow matching (x_t = (1 - s) x0 + s e, target e - x0, the CONST parameterisation ComfyUI
          samples Wan with) on ComfyUI's WanModel class, caption dropout for CFG, EMA weights;
          phase 1 (steps < dit_restart) at 128 then 256 px on `data`, phase 2 at 256 px on `data2`
          with bf16 autocast and a warm restart of the cosine learning-rate schedule
  export  fp16 files into assets/, loadable by the stock UNETLoader / VAELoader

Settings are the `Settings` dataclass below; losses go to tools/training/logs/*.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tools.runtime import dit_runtime, model_files
from tools.training import scenes

REPO = dit_runtime.REPO
WORK = REPO / ".train"
LOGS = REPO / "tools" / "training" / "logs"
ASSETS = REPO / "assets"


@dataclass(frozen=True)
class Settings:
    seed: int = 1234
    # VAE
    vae_dim: int = 8
    vae_steps: int = 1000
    vae_batch: int = 8
    vae_res: int = 96
    vae_lr: float = 5e-4
    vae_kl: float = 1e-5
    # data
    captions: int = 3000
    renders_low: int = 4  # jittered renders per caption at dit_res_low
    renders_high: int = 1  # at dit_res_high
    # DiT
    dim: int = 256
    ffn_dim: int = 1024
    layers: int = 6
    dit_res_low: int = 128
    dit_res_high: int = 256
    dit_steps: int = 7000
    dit_high_from: int = 5000  # step from which batches come at dit_res_high
    dit_batch_low: int = 32
    dit_batch_high: int = 8
    dit_lr: float = 3e-4
    dit_warmup: int = 300
    caption_dropout: float = 0.1
    ema: float = 0.999
    shift: float = 3.0  # ModelSamplingSD3 shift the baseline graph samples with
    checkpoint_every: int = 200
    # phase 2 (from `dit_restart`): phase 1 left shapes blobby, so it goes on at 256 px only, on
    # fresh data (more captions, several jittered renders each), bf16 autocast (the CPU has AMX:
    # ~1.4x per step), and a warm restart of the cosine schedule
    dit_restart: int = 6400
    dit_total: int = 26400
    phase2_captions: int = 6000
    phase2_renders: int = 2
    phase2_lr: float = 1.5e-4
    phase2_warmup: int = 200
    phase2_bf16: bool = True


S = Settings()


def comfy_imports():
    dit_runtime.in_process()
    from comfy.cli_args import args

    args.use_pytorch_cross_attention = True  # SDPA has a fast backward; ComfyUI's CPU default does not
    import comfy.latent_formats
    import comfy.ldm.wan.model
    import comfy.ldm.wan.vae
    import comfy.ops
    import comfy.sd

    return comfy


def log_row(name: str, row: dict) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    path = LOGS / f"{name}.csv"
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def init_module(model: torch.nn.Module) -> None:
    """ComfyUI's ops skip weight init (torch.empty), so every parameter is set here."""
    for mod in model.modules():
        for base in (torch.nn.Conv3d, torch.nn.Conv2d, torch.nn.Linear):
            if isinstance(mod, base):
                base.reset_parameters(mod)
        if isinstance(mod, torch.nn.LayerNorm | torch.nn.GroupNorm) and mod.weight is not None:
            torch.nn.init.ones_(mod.weight)
            torch.nn.init.zeros_(mod.bias)
        if type(mod).__name__ == "RMSNorm" and getattr(mod, "weight", None) is not None:
            torch.nn.init.ones_(mod.weight)
    for name, p in model.named_parameters():
        if name.endswith("modulation"):
            with torch.no_grad():
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))


def optimizer_step(opt: torch.optim.Optimizer, model: torch.nn.Module, loss: torch.Tensor, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def save_ckpt(path: Path, **state) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).float().div(127.5).sub(1.0)  # ComfyUI VAE input range
    return x.permute(0, 3, 1, 2).unsqueeze(2)  # B, 3, 1, H, W


# --------------------------------------------------------------------------------------------- VAE
def build_vae(comfy, dim: int) -> torch.nn.Module:
    return comfy.ldm.wan.vae.WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                    temperal_downsample=[False, True, True], dropout=0.0)


@torch.no_grad()
def init_vae_for_images(vae: torch.nn.Module) -> None:
    """He init that sees what a single frame sees: a causal 3x3x3 conv only uses its last time slice.

    Torch's default init (fan-in over all 27 taps, a=sqrt(5)) leaves one-frame signals ~3x too
    weak and the net sits on a predict-the-background plateau for hundreds of steps.
    """
    for m in vae.modules():
        if isinstance(m, torch.nn.Conv3d | torch.nn.Conv2d):
            m.bias.zero_()
            if isinstance(m, torch.nn.Conv3d) and m.weight.shape[2] == 3:
                w = torch.empty(m.weight.shape[:2] + m.weight.shape[3:])
                torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
                m.weight.zero_()
                m.weight[:, :, 2] = w
            else:
                torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    vae.conv1.bias[16:] = -8.0  # little posterior noise at first, or it drowns the latents


def vae_encode_stats(comfy, vae, x):
    n = comfy.ldm.wan.vae.count_conv3d(vae.decoder)
    h = vae.encoder(x, feat_cache=[None] * n, feat_idx=[0])
    return vae.conv1(h).chunk(2, dim=1)


def vae_decode(comfy, vae, z):
    n = comfy.ldm.wan.vae.count_conv3d(vae.decoder)
    return vae.decoder(vae.conv2(z), feat_cache=[None] * n, feat_idx=[0])


def stage_vae(max_seconds: float) -> None:
    comfy = comfy_imports()
    torch.manual_seed(S.seed)
    vae = build_vae(comfy, S.vae_dim)
    init_module(vae)
    init_vae_for_images(vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=S.vae_lr, weight_decay=0.0, betas=(0.9, 0.99))
    ckpt = WORK / "vae.ckpt"
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    if step >= S.vae_steps and (WORK / "vae_folded.pt").exists():
        return
    rng = random.Random(S.seed + step)
    start = time.time()
    while step < S.vae_steps and time.time() - start < max_seconds:
        batch = [scenes.render(scenes.random_scene(rng), S.vae_res, rng) for _ in range(S.vae_batch)]
        x = images_to_tensor(batch)
        mu, logvar = vae_encode_stats(comfy, vae, x)
        logvar = logvar.clamp(-12, 4)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        y = vae_decode(comfy, vae, z)
        rec = ((y - x) ** 2).mean() + 0.1 * (y - x).abs().mean()  # L1-heavy losses stall on the background
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).mean()
        loss = rec + S.vae_kl * kl
        optimizer_step(opt, vae, loss, S.vae_lr * min(1.0, (step + 1) / 100))
        step += 1
        if step % 20 == 0:
            psnr = -10 * math.log10(((y.clamp(-1, 1) - x) / 2).pow(2).mean().item())
            log_row("vae_loss", {"step": step, "rec": round(rec.item(), 5), "kl": round(kl.item(), 3),
                                 "psnr": round(psnr, 2), "seconds": round(time.time() - start, 1)})
        if step % S.checkpoint_every == 0:
            save_ckpt(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step)
    save_ckpt(ckpt, model=vae.state_dict(), opt=opt.state_dict(), step=step)
    if step >= S.vae_steps:
        fold_latent_stats(comfy, vae)


@torch.no_grad()
def fold_latent_stats(comfy, vae) -> None:
    """Rescale the encoder's mu and the decoder's input so Wan21's (z - mean) / std is ~N(0, 1)."""
    fmt = comfy.latent_formats.Wan21()
    mean, std = fmt.latents_mean.flatten(), fmt.latents_std.flatten()
    rng = random.Random(S.seed + 99)
    mus = []
    for _ in range(16):
        x = images_to_tensor([scenes.render(scenes.random_scene(rng), 128, rng) for _ in range(8)])
        mus.append(vae_encode_stats(comfy, vae, x)[0])
    mu = torch.cat(mus).transpose(0, 1).reshape(16, -1)
    a, b = mu.mean(1), mu.std(1)
    b = b.clamp_min(0.5 * b.median())
    w1, b1 = vae.conv1.weight, vae.conv1.bias  # (32, 32, 1, 1, 1): first 16 outputs are mu
    scale = std / b
    w1[:16] *= scale.view(16, 1, 1, 1, 1)
    b1[:16] = (b1[:16] - a) * scale + mean
    w2, b2 = vae.conv2.weight, vae.conv2.bias  # (16, 16, 1, 1, 1) on z
    inv = b / std  # z_old = a + inv * (z_new - mean)
    b2 += (w2[:, :, 0, 0, 0] @ (a - inv * mean))
    w2 *= inv.view(1, 16, 1, 1, 1)
    torch.save(vae.state_dict(), WORK / "vae_folded.pt")
    json.dump({"mean": a.tolist(), "std": b.tolist()}, open(LOGS / "vae_latent_stats.json", "w"), indent=1)


def load_folded_vae(comfy):
    vae = build_vae(comfy, S.vae_dim)
    vae.load_state_dict(torch.load(WORK / "vae_folded.pt"))
    return vae.eval()


# -------------------------------------------------------------------------------------------- data
def embed_captions(comfy, captions: list[str], tag: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded-CLIP-L embeddings (fp16, 77 x 768) of `captions`, and of the empty caption (for dropout)."""
    clip_path = dit_runtime.layout().models / "text_encoders" / model_files.CLIP_L_FILE
    if not clip_path.is_file():
        model_files.make_clip_l(clip_path)
    clip = comfy.sd.load_clip(ckpt_paths=[str(clip_path)], clip_type=comfy.sd.CLIPType.SD3)
    start = time.time()
    emb = torch.empty(len(captions), 77, 768, dtype=torch.float16)
    for i, cap in enumerate(captions):
        emb[i] = clip.encode_from_tokens(clip.tokenize(cap))[0, :, :768].half()
        if i % 500 == 0:
            print(f"[{tag}] embedded {i}/{len(captions)} captions ({time.time() - start:.0f} s)", flush=True)
    empty = clip.encode_from_tokens(clip.tokenize(""))[0, :, :768].half()
    return emb, empty


def build_data(out: Path, draw_seed: int, n_captions: int, plan: list[tuple[int, int]], render_seed: int,
               tag: str) -> None:
    """Seeded-CLIP-L embeddings of the drawn training captions and VAE latents of jittered renders.

    `plan`: (resolution, renders per caption) pairs. Written to `out` as one torch file.
    """
    comfy = comfy_imports()
    train = scenes.draw_scenes(draw_seed, n_captions, "train")
    captions = sorted({s.caption for s in train})
    by_caption = {s.caption: s for s in train}
    start = time.time()
    emb, empty = embed_captions(comfy, captions, tag)
    vae = load_folded_vae(comfy)
    fmt = comfy.latent_formats.Wan21()
    rng = random.Random(render_seed)
    latents = {}
    for res, repeats in plan:
        items = [(ci, by_caption[c]) for _ in range(repeats) for ci, c in enumerate(captions)]
        zs, idx = [], []
        for j in range(0, len(items), 16):
            chunk = items[j:j + 16]
            with torch.no_grad():
                x = images_to_tensor([scenes.render(s, res, rng) for _, s in chunk])
                zs.append(fmt.process_in(vae_encode_stats(comfy, vae, x)[0]).half())
            idx += [ci for ci, _ in chunk]
            if j % 1600 == 0:
                print(f"[{tag}] {res}px latents {j}/{len(items)} ({time.time() - start:.0f} s)", flush=True)
        latents[res] = (torch.cat(zs), torch.tensor(idx))
    torch.save({"captions": captions, "emb": emb, "empty": empty, "latents": latents}, out)


def stage_data() -> None:
    if not (WORK / "data.pt").exists():
        build_data(WORK / "data.pt", S.seed, S.captions,
                   [(S.dit_res_low, S.renders_low), (S.dit_res_high, S.renders_high)], S.seed + 7, "data")


def stage_data2() -> None:
    """Phase-2 data: 256 px latents only, for more captions than phase 1 (a new seed for the draw)."""
    if not (WORK / "data2.pt").exists():
        build_data(WORK / "data2.pt", S.seed + 2, S.phase2_captions, [(S.dit_res_high, S.phase2_renders)],
                   S.seed + 8, "data2")


# --------------------------------------------------------------------------------------------- DiT
def build_dit(comfy) -> torch.nn.Module:
    return comfy.ldm.wan.model.WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=S.dim,
                                        ffn_dim=S.ffn_dim, freq_dim=256, text_dim=4096, out_dim=16,
                                        num_heads=S.dim // 128, num_layers=S.layers,
                                        operations=comfy.ops.disable_weight_init)


def sample_sigmas(n: int, gen: torch.Generator) -> torch.Tensor:
    u = torch.sigmoid(torch.randn(n, generator=gen))
    return S.shift * u / (1 + (S.shift - 1) * u)


def flow_matching_step(model: torch.nn.Module, opt: torch.optim.Optimizer, ema: dict[str, torch.Tensor],
                       ema_decay: float, x0: torch.Tensor, ctx: torch.Tensor, empty: torch.Tensor, dropout: float,
                       gen: torch.Generator, lr: float, bf16: bool = False) -> torch.Tensor:
    """One rectified-flow training step (caption dropout, noise at a drawn sigma, velocity loss, AdamW, EMA).

    The draws come in the order dropout, sigma, noise: the shipped models were trained with it, and
    keeping it keeps their training reproducible. Returns the loss.
    """
    x0 = x0.float()
    ctx = ctx.to(torch.float32, copy=True)
    drop = torch.rand(len(x0), generator=gen) < dropout
    ctx[drop] = empty.float()
    ctx = torch.nn.functional.pad(ctx, (0, 4096 - 768))
    sigma = sample_sigmas(len(x0), gen)
    noise = torch.randn(x0.shape, generator=gen)
    s = sigma.view(-1, 1, 1, 1, 1)
    xt = (1 - s) * x0 + s * noise
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(xt, sigma * 1000.0, ctx)
    loss = ((out.float() - (noise - x0)) ** 2).mean()
    optimizer_step(opt, model, loss, lr)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            ema[k].mul_(ema_decay).add_(v.detach(), alpha=1 - ema_decay)
    return loss


def learning_rate(step: int) -> float:
    if step < S.dit_restart:
        lr = S.dit_lr * min(1.0, (step + 1) / S.dit_warmup)
        return lr * (0.5 * (1 + math.cos(math.pi * min(1.0, step / S.dit_steps))) * 0.9 + 0.1)
    k = step - S.dit_restart
    lr = S.phase2_lr * min(1.0, (k + 1) / S.phase2_warmup)
    return lr * (0.5 * (1 + math.cos(math.pi * min(1.0, k / (S.dit_total - S.dit_restart)))) * 0.9 + 0.1)


def stage_dit(max_seconds: float, init_from: Path | None = None) -> None:
    comfy = comfy_imports()
    torch.manual_seed(S.seed)
    model = build_dit(comfy)
    init_module(model)
    with torch.no_grad():
        model.head.head.weight.zero_()
        model.head.head.bias.zero_()
    if init_from is not None and not (WORK / "dit.ckpt").exists():
        # go on from exported weights (e.g. assets/) when the checkpoint of an earlier run is gone
        import safetensors.torch

        model.load_state_dict({k: v.float() for k, v in safetensors.torch.load_file(str(init_from)).items()})
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
    # phase 1's data only when this run still has phase-1 steps (data.pt is 430 MB)
    data = torch.load(WORK / "data.pt", weights_only=False) if step < S.dit_restart else None
    data2 = torch.load(WORK / "data2.pt", weights_only=False) if (WORK / "data2.pt").exists() else None
    start = time.time()
    model.train()
    while step < S.dit_total and time.time() - start < max_seconds:
        phase2 = step >= S.dit_restart
        if phase2 and data2 is None:
            raise SystemExit("phase 2 needs .train/data2.pt: run --stage data2 first")
        src = data2 if phase2 else data
        emb, empty = src["emb"], src["empty"]
        res = S.dit_res_high if step >= S.dit_high_from else S.dit_res_low
        batch = S.dit_batch_high if res == S.dit_res_high else S.dit_batch_low
        z_all, cap_idx = src["latents"][res]
        pick = torch.randint(len(z_all), (batch,), generator=gen)
        lr = learning_rate(step)
        loss = flow_matching_step(model, opt, ema, S.ema, z_all[pick], emb[cap_idx[pick]], empty, S.caption_dropout,
                                  gen, lr, bf16=phase2 and S.phase2_bf16)
        step += 1
        if step % 25 == 0:
            log_row("dit_loss", {"step": step, "loss": round(loss.item(), 5), "lr": f"{lr:.2e}", "res": res,
                                 "seconds": round(time.time() - start, 1)})
        if step % S.checkpoint_every == 0:
            save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step, gen=gen.get_state())
            print(f"[dit] step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step, gen=gen.get_state())


# ------------------------------------------------------------------------------------------ export
def stage_export() -> None:
    comfy_imports()
    ASSETS.mkdir(exist_ok=True)
    vae_sd = torch.load(WORK / "vae_folded.pt")
    model_files.write_safetensors(ASSETS / model_files.WAN_VAE_FILE,
                                  {k: v.half().numpy() for k, v in vae_sd.items()})
    state = torch.load(WORK / "dit.ckpt", weights_only=False)
    dit = {k: v.half().numpy() for k, v in state["ema"].items()}
    model_files.write_safetensors(ASSETS / model_files.WAN_DIT_FILE, dit)
    (LOGS / "settings.json").write_text(json.dumps({**asdict(S), "dit_trained_steps": state["step"]}, indent=1))
    print(f"[export] wrote {ASSETS / model_files.WAN_DIT_FILE} (step {state['step']}) and the VAE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="all", choices=["vae", "data", "data2", "dit", "export", "all"])
    parser.add_argument("--max-minutes", type=float, default=600.0, help="stop (with a checkpoint) after this")
    parser.add_argument("--dit-init", type=Path, default=None,
                        help="start the DiT from these weights when .train/ holds no DiT checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    WORK.mkdir(exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes
    if args.stage in ("vae", "all"):
        stage_vae(deadline - time.time())
    if args.stage in ("data", "all") and (WORK / "vae_folded.pt").exists():
        stage_data()
    if args.stage in ("data2", "all") and (WORK / "vae_folded.pt").exists():
        stage_data2()
    if args.stage in ("dit", "all") and (WORK / "data.pt").exists():
        stage_dit(deadline - time.time(), args.dit_init)
    if args.stage in ("export", "all") and (WORK / "dit.ckpt").exists():
        stage_export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
