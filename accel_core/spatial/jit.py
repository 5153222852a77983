"""Just-in-Time anchor sampling (Sun, Li, Liu, CVPR 2026, arXiv 2603.10744), as a model patch.

The run is cut into stages (`stages`: where each ends, as a share of the steps); in stage s only
a `densities[s]` share of the image tokens, the anchors, go through the transformer, and the
velocity of every other token is the anchors' velocity spread over the image (normalised
Gaussian interpolation; the paper's SAG-ODE). The first anchors are a checkerboard of the token
grid (even rows and columns) plus its border, trimmed or filled to the first density with a
fixed seed; each later stage adds the tokens where the last velocity field varies most (local
3 x 3 variance). What is spread (`interpolate`): "velocity" as the paper; "clean" (default,
ours) spreads the anchors' clean-image estimate x - sigma v and takes each token's velocity
from its own state, (x - clean) / sigma, so a token keeps its own noise instead of following
its neighbours' (measured better on the embedded model: docs/results/spatial.md). Tokens that join are first
pulled toward the anchors' clean-image estimate, noised to the current level with the run's
own starting noise (the deterministic micro-flow: x <- (1 - 1/R) x + (1/R) target, R = `relax`).
With the stock KSampler the pull is applied through the velocity the sampler integrates, using
the next sigma of `sample_sigmas`; it assumes one model evaluation per step (euler-type
samplers): with Heun-type samplers it lands on the corrector's evaluation, at half strength.

The paper's 4x / 7x presets also run fewer steps (18 / 11 instead of 50): here the step count is
the sampler's; `tools/benchmarks/bench_spatial.py` measures both at the same steps and at 11 and 18.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..memory import DEVICE, ON_DEVICE, ModelDims, Need, RunShape, Storage
from ..quoting import quoted
from ..run_context import RunContext
from .subset_call import CallPlan, call_key, subset_block_hook, subset_plan
from .tokens import as_video, context_forms, per_token, to_pixels

KEY = "ditaccel.jit"
INTERPOLATE = ("clean", "velocity")


def parse_fractions(text: str, name: str) -> tuple[float, ...]:
    """"0.4, 0.65, 1.0" -> (0.4, 0.65, 1.0); an error names the input and the bad entry."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{name}: {quoted(part)} is not a number (expected comma-separated fractions, "
                             f"e.g. '0.4, 0.65, 1.0')") from None
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{name}: {value:g} is outside (0, 1]")
        out.append(value)
    return tuple(out)


@dataclass(frozen=True)
class JiTConfig:
    stages: tuple[float, ...] = (0.4, 0.65, 1.0)  # where each stage ends, as shares of the steps
    densities: tuple[float, ...] = (0.35, 0.62, 1.0)  # share of the image tokens computed in each stage
    relax: int = 3  # R of the micro-flow: a joining token moves 1/R of the way to the anchors' estimate
    interpolate: str = "clean"  # spread the anchors' clean-image estimate, or their velocity (INTERPOLATE)
    warmup_steps: int = 0  # first steps that compute every token before the stages start
    full_context: bool = False  # anchors attend to every token (the others' k/v from the latest full step)

    def __post_init__(self) -> None:
        if self.interpolate not in INTERPOLATE:
            raise ValueError(f"interpolate must be one of {', '.join(INTERPOLATE)}, got {quoted(self.interpolate)}")
        if not self.stages or len(self.stages) != len(self.densities):
            raise ValueError(f"stages and densities must have the same number of entries, got {len(self.stages)} "
                             f"and {len(self.densities)}")
        if any(not 0.0 < s <= 1.0 for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ValueError(f"stages must rise strictly within (0, 1], got {', '.join(f'{s:g}' for s in self.stages)}")
        if self.stages[-1] != 1.0:
            raise ValueError(f"stages must end at 1.0 (the last stage runs to the end), got {self.stages[-1]:g}")
        if any(not 0.0 < d <= 1.0 for d in self.densities) or list(self.densities) != sorted(self.densities):
            raise ValueError(f"densities must lie in (0, 1] and never fall, got "
                             f"{', '.join(f'{d:g}' for d in self.densities)}")
        if not 0 <= self.warmup_steps <= 1000:
            raise ValueError(f"warmup_steps must be between 0 and 1000, got {self.warmup_steps}")
        if not 1 <= self.relax <= 100:
            raise ValueError(f"relax must be between 1 and 100, got {self.relax}")

    def tag(self) -> str:
        fmt = ", ".join
        return (f"JiT(stages={fmt(f'{s:g}' for s in self.stages)}; densities={fmt(f'{d:g}' for d in self.densities)}; "
                f"relax={self.relax}, {self.interpolate}, warmup={self.warmup_steps}"
                f"{', full context' if self.full_context else ''})")

    def stage_ends(self, total_steps: int) -> list[int]:
        """The first step after each stage (the reference's int(total_steps * ratio))."""
        ends = [int(total_steps * s) for s in self.stages]
        ends[-1] = total_steps
        return ends

    def stage_of(self, step: int, total_steps: int) -> int | None:
        """The stage `step` belongs to (None: a warm-up step, every token runs)."""
        if step < self.warmup_steps:
            return None
        return next((k for k, end in enumerate(self.stage_ends(total_steps)) if step < end), len(self.stages) - 1)

    def sparse(self, step: int, total_steps: int) -> bool:
        stage = self.stage_of(step, total_steps)
        return stage is not None and self.densities[stage] < 1.0

    def full_token_evaluations(self, total_steps: int) -> float:
        """Model evaluations counted in whole-image equivalents (for the fair control)."""
        return sum(1.0 if self.stage_of(s, total_steps) is None else self.densities[self.stage_of(s, total_steps)]
                   for s in range(total_steps))


def initial_anchors(grid: tuple[int, int, int], density: float, seed: int = 0) -> torch.Tensor:
    """(L,) bool: even rows and columns of each frame plus the border, trimmed / filled to `density`."""
    t, h, w = grid
    plane = torch.zeros(h, w, dtype=torch.bool)
    plane[::2, ::2] = True
    plane[0, :] = plane[-1, :] = plane[:, 0] = plane[:, -1] = True
    mask = plane.expand(t, h, w).flatten().clone()
    want = max(1, min(mask.numel(), round(density * mask.numel())))
    g = torch.Generator().manual_seed(seed)
    have = int(mask.sum())
    if have > want:
        on = mask.nonzero().flatten()
        mask[on[torch.randperm(on.numel(), generator=g)[: have - want]]] = False
    elif have < want:
        off = (~mask).nonzero().flatten()
        mask[off[torch.randperm(off.numel(), generator=g)[: want - have]]] = True
    return mask


def local_variance(v: torch.Tensor) -> torch.Tensor:
    """Per latent pixel, the 3 x 3 neighbourhood variance of a velocity field, averaged over channels."""
    x = as_video(v).float()
    b, c, t, h, w = x.shape
    frames = x.movedim(2, 1).reshape(b * t, c, h, w)
    mean = F.avg_pool2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    sq = F.avg_pool2d(F.pad(frames * frames, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return (sq - mean * mean).clamp_min(0).mean(1).reshape(b, t, h, w)


def densify(mask: torch.Tensor, importance: torch.Tensor, count: int) -> torch.Tensor:
    """`mask` (B, L) with the most important inactive tokens switched on, up to `count` per row."""
    out = mask.clone()
    for row in range(mask.shape[0]):
        need = count - int(mask[row].sum())
        if need <= 0:
            continue
        score = importance[row].float().masked_fill(mask[row], -math.inf)
        out[row, torch.topk(score, need).indices] = True
    return out


def gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable blur of (N, C, H, W), zero outside the image (the normalisation takes care of edges)."""
    r = kernel.numel() // 2
    c = x.shape[1]
    kh = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1).to(x)
    kw = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1).to(x)
    x = F.conv2d(F.pad(x, (0, 0, r, r)), kh, groups=c)
    return F.conv2d(F.pad(x, (r, r, 0, 0)), kw, groups=c)


def spread(values: torch.Tensor, known: torch.Tensor, sigma: float) -> torch.Tensor:
    """`values` (B, C, [T,] H, W) kept where `known` (B, [T,] H, W) and filled elsewhere by normalised
    Gaussian interpolation of the known pixels (the blur widens until every pixel is reached)."""
    x = as_video(values).float()
    b, c, t, h, w = x.shape
    frames = x.movedim(2, 1).reshape(b * t, c, h, w)
    m = known.reshape(b * t, 1, h, w).float()
    filled = frames.clone()
    todo = m[:, 0] < 0.5
    s = sigma
    while bool(todo.any()):
        k = gaussian_kernel(s)
        num, den = _blur(frames * m, k), _blur(m, k)
        ok = todo & (den[:, 0] > 1e-6)
        ratio = num / den.clamp_min(1e-12)
        filled = torch.where(ok.unsqueeze(1), ratio, filled)
        todo = todo & ~ok
        s *= 2
        if s > 4 * max(h, w):
            break
    out = filled.reshape(b, t, c, h, w).movedim(1, 2)
    out = out if values.dim() == 5 else out.squeeze(2)
    return out.to(values.dtype)


def pull_velocity(v: torch.Tensor, x: torch.Tensor, target: torch.Tensor, joined: torch.Tensor, relax: int,
                  dt: float) -> torch.Tensor:
    """The velocity whose Euler step over `dt` takes the `joined` pixels to (1 - 1/R) x + (1/R) target
    plus their own step v * dt (the micro-flow, folded into what the sampler integrates)."""
    return torch.where(joined, v + (target - x) / (relax * dt), v)


def spread_sigma(density: float) -> float:
    """The reference's interpolation width, clip(0.4 / sqrt(density), 1, 10), in tokens."""
    return min(max(0.4 / math.sqrt(density), 1.0), 10.0)


@dataclass
class JiTState:
    """Per run: the anchors of each sample (grown at stage changes), the starting noise, the last
    velocity and clean-image estimate (for the next stage's new tokens).

    Order: at a call's first block `begin_call` asks `anchors` for the step's anchors (grown at a
    stage change) and sets `current` and `used_mask`; every block runs on the anchors
    (`subset_call.run_block`); after the guidance, the post-CFG `fill` rewrites the tokens the model
    did not compute and keeps `last_velocity`, `last_clean` and `last_mask` for the next stage.
    """

    config: JiTConfig
    total_steps: int  # the run's sampler steps
    patch: tuple[int, int, int]  # the model's patch size (latent pixels per token)
    mask: torch.Tensor | None = None  # (B, L) bool: the anchors of the current stage
    stage: int = 0  # the current stage's index
    grid: tuple[int, int, int] | None = None  # the token grid (frames, rows, columns)
    joined: torch.Tensor | None = None  # (B, L) bool: tokens that joined at `joined_step`
    joined_step: int | None = None  # the step of the latest stage change
    noise: torch.Tensor | None = None  # the run's starting noise
    last_velocity: torch.Tensor | None = None
    last_clean: torch.Tensor | None = None
    last_mask: torch.Tensor | None = None  # the anchors `last_clean` came from
    current: Any = None  # the plan of the model call in progress (set at its first block)
    used_mask: torch.Tensor | None = None  # the anchors the latest model call ran (None: every token)
    # full_context: each block's keys / values from the latest full call, per call key
    keys_values: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    seen: set = field(default_factory=set)  # call keys that ran a full call (their caches exist)
    storage: Storage = ON_DEVICE  # where `keys_values` lives (memory form)

    @property
    def tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2] if self.grid else 0

    def anchors(self, step: int, samples: int, grid: tuple[int, int, int]) -> torch.Tensor | None:
        """(samples, L) bool anchors for `step` (None: every token runs), growing at stage changes."""
        tokens = grid[0] * grid[1] * grid[2]
        stage = self.config.stage_of(step, self.total_steps)
        self.grid = grid
        if stage is None:
            return None
        if self.mask is None or self.mask.shape != (samples, tokens):
            self.stage = stage
            first = initial_anchors(grid, self.config.densities[stage])
            self.mask = first.expand(samples, tokens).clone()
            self.joined, self.joined_step = None, None
        if stage > self.stage:
            count = round(self.config.densities[stage] * tokens)
            if self.last_velocity is not None and self.last_velocity.shape[0] == samples:
                importance = per_token(local_variance(self.last_velocity), self.patch)
            else:
                importance = torch.zeros(samples, tokens)
            grown = densify(self.mask, importance, count)
            joined = grown & ~self.mask
            self.joined, self.joined_step = (joined, step) if bool(joined.any()) else (None, None)
            self.mask, self.stage = grown, stage
        if bool(self.mask.all()):
            return None
        return self.mask


def memory_hints(config: JiTConfig) -> list[tuple[str, JiTConfig]]:
    return [("full_context off", replace(config, full_context=False))] if config.full_context else []


def memory_needs(config: JiTConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """The run's noise, the last velocity and clean-image estimate (float32 latents) and four
    per-token masks per sample; with `full_context`, every block's keys and values per call row."""
    kept = shape.batch * (3 * 4 * shape.latent_values + 4 * shape.image_tokens)
    between = 2 * shape.hidden(dims, rows=shape.rows)  # the gathered anchors and the scattered output
    if not config.full_context:
        return (Need(DEVICE, held=kept, between=between),)
    return context_forms(kept, between, dims, shape)


def begin_call(state: JiTState, ctx: RunContext, args: dict) -> CallPlan:
    to = args["transformer_options"]
    x = args["img"]
    plan = CallPlan(call_key(to, x))
    call = ctx.current_call
    chunks = max(len(to.get("cond_or_uncond") or ()), 1)
    if call is None or x.shape[1] != call.image_tokens or x.shape[0] % chunks:
        state.used_mask = None
        return plan
    mask = state.anchors(ctx.step, x.shape[0] // chunks, call.grid)
    if mask is None or (state.config.full_context and plan.key not in state.seen):
        state.used_mask = None
        state.seen.add(plan.key)
        return plan
    state.used_mask = mask
    per_sample = mask.nonzero()[:, 1].view(mask.shape[0], -1)
    keys = x.shape[1] if state.config.full_context else None  # full context: anchors attend to every token
    return subset_plan(plan, ctx, x, per_sample, chunks, n_keys=keys, left_out="interpolated")


def block_hook() -> Callable[..., dict]:
    return subset_block_hook(KEY, begin_call, keep_last_output=False)


def fill(state: JiTState, ctx: RunContext, x: torch.Tensor, denoised: torch.Tensor,
         sigma_now: torch.Tensor) -> torch.Tensor:
    """The guided prediction with the tokens the model did not compute filled in: their velocity is the
    anchors' velocity spread over the image; tokens joining this step are pulled toward the anchors'
    clean-image estimate (the micro-flow), through the velocity the sampler integrates."""
    sigma = sigma_now.reshape(-1, *([1] * (x.dim() - 1))).clamp_min(1e-8)
    if state.noise is None or state.noise.shape != x.shape:
        state.noise = x / sigma  # the run's starting noise (x = sigma_max * noise on an empty latent)
    mask = state.used_mask if state.used_mask is not None and state.used_mask.shape[0] == x.shape[0] else None
    joining = (state.joined_step == ctx.step and state.joined is not None and state.last_clean is not None
               and state.last_clean.shape == x.shape and ctx.step + 1 < len(ctx.sample_sigmas))
    if mask is not None:
        density = float(mask.float().mean())
        known = mask_pixels(state, mask, x)
        width = spread_sigma(density) * state.patch[1]
        if state.config.interpolate == "velocity":
            denoised = x - sigma * spread((x - denoised) / sigma, known, width)
        else:
            denoised = spread(denoised, known, width)
    if joining:
        state.joined_step = None  # once per stage change, whatever the sampler's evaluations per step
        before = state.last_mask
        clean = spread(state.last_clean, mask_pixels(state, before, x),
                       spread_sigma(float(before.float().mean())) * state.patch[1])
        target = clean * (1 - sigma) + sigma * state.noise
        dt = ctx.sample_sigmas[ctx.step + 1] - float(sigma_now.flatten()[0])
        if abs(dt) > 1e-8:
            joined = mask_pixels(state, state.joined, x).unsqueeze(1)
            v = pull_velocity((x - denoised) / sigma, x, target, joined, state.config.relax, dt)
            denoised = x - sigma * v
    state.last_velocity = (x - denoised) / sigma
    state.last_clean = denoised
    state.last_mask = mask if mask is not None else torch.ones(x.shape[0], state.tokens, dtype=torch.bool)
    return denoised


def mask_pixels(state: JiTState, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-token mask on the latent's pixels: (B, T, H, W) for video latents, (B, H, W) for images."""
    size = tuple(as_video(x).shape[2:])
    pixels = to_pixels(mask.float(), state.grid, state.patch, size) > 0.5
    return pixels if x.dim() == 5 else pixels[:, 0]
