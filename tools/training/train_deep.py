"""Train the deep embedded model: a 24-block Wan 2.1 DiT for images of 128-512 px and clips of 1-17 frames.

    .venv/bin/python -m tools.training.train_deep [--stage data|dit|export|all] [--max-minutes M]

Why a new model: the first embedded model (6 blocks, 256 px, one caption grammar) misled the
methods measured on it — its first block was a sixth of a step, its features did not extrapolate,
it drew nothing at other sizes or at captions off the grammar. This one is as deep as the DiTs
users run are in proportion (first block <= 1/24 of a step), sees many sizes and both images and
clips (one model, as Wan serves both), and reworded captions (`captions.vary`).

Stages (each resumes from what .train_deep/ holds, so a stopped run goes on where it left off):
  data    seeded CLIP-L embeddings of the training scenes' captions (canonical and one rewording
          each) and VAE latents (the shipped video-capable VAE) of jittered renders, one file per
          bucket of width x height x frames
  dit     flow matching as train_embedded's DiT stage, fp32, EMA weights. Starts by growing the
          shipped 6-block image model to 24 blocks: each shipped block is followed by three copies
          of itself whose output projections are zero, so the grown model computes exactly what the
          shipped one did and training adds what the new depth can (block expansion, as LLaMA Pro,
          Wu et al. 2024). One bucket per step, drawn by weight; a learning rate that warms up,
          stays flat, and decays linearly over the last `decay_steps` before `dit_steps`
          (warmup-stable-decay), so the run can be stopped and resumed across sessions.
  export  the EMA weights in fp16, loadable by the stock UNETLoader, into .train_deep/

The wall time of every stage adds up in .train_deep/budget.json; the DiT stage stops when it
reaches `budget_hours` in all. Losses go to tools/training/logs/deep_*.csv, settings to
tools/training/logs/deep_settings.json.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass

import safetensors.torch
import torch

from tools.runtime import dit_runtime, model_files
from tools.training import captions as caption_variants
from tools.training import scenes
from tools.training import train_embedded as te
from tools.training import train_video as tv

WORK = dit_runtime.REPO / ".train_deep"
EXPORT_FILE = "ditaccel_wan21_deep.safetensors"


@dataclass(frozen=True)
class Bucket:
    name: str
    width: int  # pixels
    height: int
    frames: int  # 1 = an image; 1 + 4k for a clip (Wan's VAE)
    count: int  # renders in the data
    batch: int  # per step; about 1,000-1,500 tokens a step everywhere
    weight: float  # share of the steps

    @property
    def tokens(self) -> int:
        return (1 + (self.frames - 1) // 4) * (self.height // 16) * (self.width // 16)


BUCKETS: tuple[Bucket, ...] = (
    Bucket("img128", 128, 128, 1, 6000, 16, 0.14),
    Bucket("img256", 256, 256, 1, 4000, 5, 0.31),
    Bucket("img320x192", 320, 192, 1, 800, 5, 0.04),
    Bucket("img192x320", 192, 320, 1, 800, 5, 0.04),
    Bucket("img384x256", 384, 256, 1, 800, 3, 0.05),
    Bucket("img256x384", 256, 384, 1, 800, 3, 0.05),
    Bucket("img512", 512, 512, 1, 500, 1, 0.08),
    Bucket("img512x384", 512, 384, 1, 300, 2, 0.03),
    Bucket("img384x512", 384, 512, 1, 300, 2, 0.03),
    Bucket("vid128x9", 128, 128, 9, 1000, 6, 0.07),
    Bucket("vid128x17", 128, 128, 17, 800, 4, 0.08),
    Bucket("vid256x9", 256, 256, 9, 200, 2, 0.04),
    Bucket("vid256x17", 256, 256, 17, 150, 1, 0.04),
)


@dataclass(frozen=True)
class Settings:
    seed: int = 2468
    scenes: int = 4000  # training scenes; each has its canonical caption and one rewording
    variant_share: float = 0.5  # of steps' captions that are the rewording
    layers: int = 24
    grow_from_layers: int = 6  # the shipped image model's depth
    dit_steps: int = 36000
    decay_steps: int = 6000
    dit_lr: float = 2e-4
    dit_warmup: int = 300
    ema: float = 0.999
    caption_dropout: float = 0.1
    checkpoint_every: int = 100
    budget_hours: float = 20.0


S = Settings()


# ------------------------------------------------------------------------------------------ budget
def spent_seconds() -> float:
    path = WORK / "budget.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else 0.0


def add_spent(seconds: float, what: str) -> None:
    path = WORK / "budget.json"
    state = json.loads(path.read_text()) if path.exists() else {"seconds": 0.0, "by_stage": {}}
    state["seconds"] += seconds
    state["by_stage"][what] = state["by_stage"].get(what, 0.0) + seconds
    path.write_text(json.dumps(state, indent=1))


# -------------------------------------------------------------------------------------------- data
def training_scenes() -> list[scenes.Scene]:
    return scenes.draw_scenes(S.seed, S.scenes, "train")


def training_captions() -> list[str]:
    """Index 2i: scene i's canonical caption; 2i + 1: its rewording."""
    rng = random.Random(S.seed + 1)
    out = []
    for scene in training_scenes():
        out += [scene.caption, caption_variants.vary(scene, rng)]
    return out


def stage_data(deadline: float) -> None:
    comfy = te.comfy_imports()
    caps = training_captions()
    chunk = 1000
    for i in range(0, len(caps), chunk):
        out = WORK / f"emb_{i // chunk:02d}.pt"
        if out.exists():
            continue
        if time.time() > deadline:
            return
        start = time.time()
        emb, empty = te.embed_captions(comfy, caps[i:i + chunk], f"emb {i // chunk}")
        torch.save({"emb": emb, "empty": empty}, out)
        add_spent(time.time() - start, "data")
    vae = tv.load_vae(comfy).eval()
    fmt = comfy.latent_formats.Wan21()
    train = training_scenes()
    for b in BUCKETS:
        out = WORK / f"lat_{b.name}.pt"
        if out.exists():
            continue
        if time.time() > deadline:
            return
        start = time.time()
        rng = random.Random(f"{S.seed}-{b.name}")
        order = [i % len(train) for i in range(b.count)]
        random.Random(f"{S.seed}-{b.name}-order").shuffle(order)
        zs = []
        per = max(1, 16 // (b.frames * max(1, (b.width * b.height) // (128 * 128))))
        for j in range(0, len(order), per):
            idx = order[j:j + per]
            if b.frames == 1:
                x = te.images_to_tensor([scenes.render(train[k], b.width, rng, height=b.height) for k in idx])
            else:
                x = tv.clips_to_tensor([scenes.render_clip(train[k], b.width, b.frames, rng, height=b.height)
                                        for k in idx])
            with torch.no_grad():
                zs.append(fmt.process_in(tv.encode_video(comfy, vae, x)[0]).half())
        torch.save({"latents": torch.cat(zs), "scene": torch.tensor(order)}, out)
        add_spent(time.time() - start, "data")
        print(f"[data] {b.name}: {b.count} latents {tuple(zs[0].shape[1:])} ({time.time() - start:.0f} s)",
              flush=True)


def data_ready() -> bool:
    n_emb = math.ceil(2 * S.scenes / 1000)
    return (all((WORK / f"emb_{i:02d}.pt").exists() for i in range(n_emb))
            and all((WORK / f"lat_{b.name}.pt").exists() for b in BUCKETS))


# --------------------------------------------------------------------------------------------- DiT
def build_dit(comfy, layers: int) -> torch.nn.Module:
    return comfy.ldm.wan.model.WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=16, dim=te.S.dim,
                                        ffn_dim=te.S.ffn_dim, freq_dim=256, text_dim=4096, out_dim=16,
                                        num_heads=te.S.dim // 128, num_layers=layers,
                                        operations=comfy.ops.disable_weight_init)


ZEROED_IN_COPIES = ("self_attn.o.", "cross_attn.o.", "ffn.2.")  # a block's three residual branches end here


def grown_state(shipped: dict[str, torch.Tensor], layers: int, from_layers: int) -> dict[str, torch.Tensor]:
    """Block expansion: block j of the deep model is shipped block j // r (r = layers / from_layers);
    all but the first of each run of r have their residual branches' output projections zeroed, so
    they add nothing until trained and the deep model starts as the shipped one."""
    r = layers // from_layers
    out = {k: v.float().clone() for k, v in shipped.items() if not k.startswith("blocks.")}
    for j in range(layers):
        prefix = f"blocks.{j // r}."
        for k, v in shipped.items():
            if k.startswith(prefix):
                rest = k[len(prefix):]
                w = v.float().clone()
                if j % r and rest.startswith(ZEROED_IN_COPIES):
                    w.zero_()
                out[f"blocks.{j}.{rest}"] = w
    return out


def learning_rate(step: int) -> float:
    """Warmup, flat, then linear decay to a tenth over the last `decay_steps`."""
    lr = S.dit_lr * min(1.0, (step + 1) / S.dit_warmup)
    into_decay = step - (S.dit_steps - S.decay_steps)
    if into_decay > 0:
        lr *= 1.0 - 0.9 * min(1.0, into_decay / S.decay_steps)
    return lr


def load_data() -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    shards = [torch.load(p, weights_only=False) for p in sorted(WORK.glob("emb_*.pt"))]
    emb = torch.cat([s["emb"] for s in shards])
    latents = {}
    for b in BUCKETS:
        d = torch.load(WORK / f"lat_{b.name}.pt", weights_only=False)
        latents[b.name] = (d["latents"], d["scene"])
    return emb, shards[0]["empty"], latents


def stage_dit(deadline: float) -> None:
    stop = {"now": False}
    # `kill PID` pauses training: it stops after the current step with a checkpoint, so other work can
    # have the CPU (its wall time would otherwise count against the training budget)
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    comfy = te.comfy_imports()
    torch.manual_seed(S.seed)
    model = build_dit(comfy, S.layers)
    ckpt = WORK / "dit.ckpt"
    gen = torch.Generator().manual_seed(S.seed)
    step = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        ema = state["ema"]
        opt = torch.optim.AdamW(model.parameters(), lr=S.dit_lr, weight_decay=0.01, betas=(0.9, 0.99))
        opt.load_state_dict(state["opt"])
        step = state["step"]
        gen.set_state(state["gen"])
    else:
        shipped = safetensors.torch.load_file(str(te.ASSETS / model_files.WAN_DIT_FILE))
        model.load_state_dict(grown_state(shipped, S.layers, S.grow_from_layers))
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
        opt = torch.optim.AdamW(model.parameters(), lr=S.dit_lr, weight_decay=0.01, betas=(0.9, 0.99))
    emb, empty, latents = load_data()
    weights = torch.tensor([b.weight for b in BUCKETS])
    model.train()
    start = last = time.time()
    spent = spent_seconds()  # the budget file's total as of `last` (read again only after each checkpoint)
    while step < S.dit_steps and time.time() < deadline and not stop["now"]:
        if spent + (time.time() - last) > 3600 * S.budget_hours:
            print(f"[dit] the {S.budget_hours} h budget is spent", flush=True)
            break
        b = BUCKETS[int(torch.multinomial(weights, 1, generator=gen))]
        z_all, scene_idx = latents[b.name]
        pick = torch.randint(len(z_all), (b.batch,), generator=gen)
        variant = (torch.rand(b.batch, generator=gen) < S.variant_share).long()
        lr = learning_rate(step)
        # fp32: bf16 autocast's backward is far slower on this CPU (train_video.py)
        loss = te.flow_matching_step(model, opt, ema, S.ema, z_all[pick], emb[2 * scene_idx[pick] + variant],
                                     empty, S.caption_dropout, gen, lr)
        step += 1
        if step % 10 == 0:
            te.log_row("deep_dit_loss", {"step": step, "loss": round(loss.item(), 5), "lr": f"{lr:.2e}",
                                         "bucket": b.name,
                                         "hours": round((spent + time.time() - last) / 3600, 3)})
        if step % S.checkpoint_every == 0:
            te.save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step,
                         gen=gen.get_state())
            add_spent(time.time() - last, "dit")
            last, spent = time.time(), spent_seconds()
            print(f"[dit] step {step} loss {loss.item():.4f} ({time.time() - start:.0f} s this run, "
                  f"{spent / 3600:.2f} h in all)", flush=True)
    te.save_ckpt(ckpt, model=model.state_dict(), ema=ema, opt=opt.state_dict(), step=step, gen=gen.get_state())
    add_spent(time.time() - last, "dit")


# ------------------------------------------------------------------------------------------ export
def stage_export() -> None:
    te.comfy_imports()
    state = torch.load(WORK / "dit.ckpt", weights_only=False)
    model_files.write_safetensors(WORK / EXPORT_FILE, {k: v.half().numpy() for k, v in state["ema"].items()})
    (te.LOGS / "deep_settings.json").write_text(json.dumps(
        {**asdict(S), "buckets": [asdict(b) for b in BUCKETS], "dit_trained_steps": state["step"],
         "hours": round(spent_seconds() / 3600, 2)}, indent=1))
    print(f"[export] wrote {WORK / EXPORT_FILE} (step {state['step']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="all", choices=["data", "dit", "export", "all"])
    parser.add_argument("--max-minutes", type=float, default=600.0, help="stop (with a checkpoint) after this")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    WORK.mkdir(exist_ok=True)
    deadline = time.time() + 60 * args.max_minutes
    if args.stage in ("data", "all"):
        stage_data(deadline)
    if args.stage in ("dit", "all") and data_ready():
        stage_dit(deadline)
    if args.stage in ("export", "all") and (WORK / "dit.ckpt").exists():
        stage_export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
