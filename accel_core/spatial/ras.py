"""Region-Adaptive Sampling (Liu et al., arXiv 2502.10389): each step, only the tokens in focus run.

After `warmup_steps` full steps, a step runs the transformer on `sample_ratio` of the image
tokens; the others keep the last block's output from the step that last computed them (the
model's head still applies the current step's modulation), and their keys and values come
from a per-block cache, so attention still sees the whole image. Which tokens run is chosen
from the previous step's update, as the reference scheduler does: per latent pixel the spread
over channels of (x - denoised) / sigma (the sampler's velocity; `metric` std or l2norm),
averaged over the token's patch, times exp(starvation_scale * drop_count) (drop_count starts
at -(steps + 1) and grows by one each time a token is left out). Of the tokens left out,
`high_ratio` come from the top of that ranking and the rest from the bottom: the reference code
drops the top (high_ratio 1), the paper describes dropping the slow, low-focus regions
(high_ratio 0); `tools/benchmarks/bench_spatial.py` measures both on the embedded model (docs/results/spatial.md).
`dense_steps` full steps spread evenly over the sparse part refresh every cache (the paper's
error-reset steps: 2 of 28 steps after a warm-up of 4 land on 12 and 20, as its SD3 script).
`final_dense_steps` last steps also compute every token (ours, not the paper's: the last step's
output is the image, and one dense last step buys much of the quality back for a small share of
the FLOPs; docs/results/spatial.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..memory import ON_DEVICE, ModelDims, Need, RunShape, Storage
from ..run_context import RunContext
from .subset_call import CallPlan, call_key, subset_block_hook, subset_plan
from .tokens import as_video, channel_spread, context_forms, per_token

KEY = "ditaccel.ras"
METRICS = ("std", "l2norm")


@dataclass(frozen=True)
class RASConfig:
    sample_ratio: float = 0.5  # share of the image tokens computed on a sparse step
    warmup_steps: int = 4  # the first steps compute every token
    dense_steps: int = 2  # steps spread evenly after the warm-up that compute every token, refreshing caches
    final_dense_steps: int = 1  # the last steps compute every token
    high_ratio: float = 0.0  # share of the skipped tokens taken from the fastest-changing end of the ranking
    starvation_scale: float = 0.1  # how fast a token's rank rises each time it is skipped
    metric: str = "std"  # per-pixel spread of the update over latent channels: std or l2norm
    start_percent: float = 0.0  # sparse steps start at this share of the steps
    end_percent: float = 1.0  # and end at this share
    reference_steps: int = 0  # presets: the warm-up is given for this many steps and scaled

    def __post_init__(self) -> None:
        if not 0.05 <= self.sample_ratio <= 1.0:
            raise ValueError(f"sample_ratio must be between 0.05 and 1.0, got {self.sample_ratio}")
        if not 0 <= self.warmup_steps <= 1000:
            raise ValueError(f"warmup_steps must be between 0 and 1000, got {self.warmup_steps}")
        if not 0 <= self.dense_steps <= 1000:
            raise ValueError(f"dense_steps must be between 0 and 1000, got {self.dense_steps}")
        if not 0 <= self.final_dense_steps <= 1000:
            raise ValueError(f"final_dense_steps must be between 0 and 1000, got {self.final_dense_steps}")
        if not 0.0 <= self.high_ratio <= 1.0:
            raise ValueError(f"high_ratio must be between 0 and 1, got {self.high_ratio}")
        if not 0.0 <= self.starvation_scale <= 10.0:
            raise ValueError(f"starvation_scale must be between 0 and 10, got {self.starvation_scale}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not 0.0 <= self.start_percent < self.end_percent <= 1.0:
            raise ValueError(f"start_percent ({self.start_percent}) must be below end_percent ({self.end_percent}), "
                             f"both in [0, 1]")

    def tag(self) -> str:
        return (f"RAS(ratio={self.sample_ratio:g}, warmup={self.warmup_steps}, dense={self.dense_steps}, "
                f"final={self.final_dense_steps}, "
                f"high={self.high_ratio:g}, starve={self.starvation_scale:g}, {self.metric}, "
                f"{self.start_percent:g}-{self.end_percent:g})")

    def with_window(self, start_percent: float, end_percent: float) -> RASConfig:
        return replace(self, start_percent=start_percent, end_percent=end_percent)

    def plan(self, total_steps: int) -> StepPlan:
        warmup = self.warmup_steps
        if self.reference_steps > 0:
            warmup = round(warmup * total_steps / self.reference_steps)
        return StepPlan(total_steps, warmup, self.dense_steps, self.start_percent, self.end_percent,
                        self.final_dense_steps)


@dataclass(frozen=True)
class StepPlan:
    """Which steps run every token: the warm-up, the refresh steps, the final steps and the steps
    outside the window."""

    total_steps: int
    warmup_steps: int
    dense_steps: int
    start_percent: float = 0.0
    end_percent: float = 1.0
    final_dense_steps: int = 0

    @property
    def refresh_steps(self) -> tuple[int, ...]:
        span = self.total_steps - self.final_dense_steps - self.warmup_steps
        if span <= 0:
            return ()
        return tuple(sorted({self.warmup_steps + round(k * span / (self.dense_steps + 1))
                             for k in range(1, self.dense_steps + 1)}))

    def sparse(self, step: int) -> bool:
        if step < self.warmup_steps or step >= self.total_steps - self.final_dense_steps or step in self.refresh_steps:
            return False
        share = step / max(self.total_steps, 1)
        return self.start_percent <= share < self.end_percent

    def sparse_steps(self) -> list[int]:
        return [s for s in range(self.total_steps) if self.sparse(s)]


def focus_metric(velocity: torch.Tensor, patch: tuple[int, int, int], kind: str) -> torch.Tensor:
    """Per token (B, L): how much the sampler's update moves its patch (RAS's selection metric)."""
    return per_token(channel_spread(as_video(velocity), kind), patch)


def keep_count(tokens: int, ratio: float) -> int:
    return max(1, min(tokens, round(tokens * ratio)))


def choose_tokens(metric: torch.Tensor, drop_count: torch.Tensor, keep: int, high_ratio: float,
                  starvation_scale: float) -> torch.Tensor:
    """Sorted indices (B, keep) of the tokens that run; the rest are dropped from both tails of the ranking."""
    score = metric.float() * torch.exp(starvation_scale * drop_count.float())
    tokens = score.shape[1]
    drop = tokens - keep
    high = round(drop * high_ratio)
    low = drop - high
    order = torch.argsort(score, dim=1, stable=True)
    kept = order[:, low: tokens - high]
    return kept.sort(dim=1).values


@dataclass
class RASState:
    """Per run: the selection of each step (shared by every call of the step) and the per-call caches.

    Order: after each model evaluation the post-CFG observer hands `observe` the guided velocity; at a
    call's first block `begin_call` asks `selection` for the step's tokens (chosen once per step) and
    sets `current`; every block runs on those tokens (`subset_call.run_block`), the attention reading
    `keys_values`; the last block's output goes to `hidden` and `current` is cleared.
    """

    config: RASConfig
    plan: StepPlan  # which steps run sparse
    patch: tuple[int, int, int]  # the model's patch size (latent pixels per token)
    metric: torch.Tensor | None = None  # (B, L) from the last guided update
    drop_count: torch.Tensor | None = None  # (B, L) how often each token was left out (its rank rises)
    chosen_step: int | None = None  # the step `chosen` is for
    chosen: torch.Tensor | None = None  # (B, keep) for `chosen_step`
    # per call key (conditionings + shape): the last block's output and each block's keys / values
    hidden: dict[tuple, torch.Tensor] = field(default_factory=dict)
    keys_values: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    current: Any = None  # the plan of the model call in progress (set at its first block)
    storage: Storage = ON_DEVICE  # where `keys_values` lives (memory form)

    def observe(self, velocity: torch.Tensor) -> None:
        """The guided velocity of the latest model evaluation (what the sampler integrates)."""
        metric = focus_metric(velocity, self.patch, self.config.metric)
        if self.drop_count is None or self.drop_count.shape != metric.shape:
            self.drop_count = torch.full(metric.shape, -(self.plan.total_steps + 1.0))
        self.metric = metric

    def selection(self, step: int, tokens: int) -> torch.Tensor | None:
        """The tokens that run at `step` (B, keep), or None when the step runs every token."""
        if not self.plan.sparse(step) or self.metric is None or self.metric.shape[1] != tokens:
            return None
        if self.chosen_step != step:
            keep = keep_count(tokens, self.config.sample_ratio)
            self.chosen = choose_tokens(self.metric, self.drop_count, keep, self.config.high_ratio,
                                        self.config.starvation_scale)
            dropped = torch.ones_like(self.drop_count, dtype=torch.bool)
            dropped.scatter_(1, self.chosen, False)
            self.drop_count += dropped.float()
            self.chosen_step = step
        return self.chosen


def memory_needs(config: RASConfig, dims: ModelDims, shape: RunShape) -> tuple[Need, ...]:
    """The last block's output and every block's keys and values per call row; the ranking's
    per-token figures (float32) and chosen indices (int64) per sample. A call gathers the chosen
    tokens and scatters the block's output into a whole-image tensor."""
    keep = keep_count(shape.image_tokens, config.sample_ratio)
    small = shape.batch * (8 * shape.image_tokens + 8 * keep)
    kept = shape.hidden(dims, rows=shape.rows) + small
    between = shape.hidden(dims, rows=shape.rows) + shape.hidden(dims, tokens=keep, rows=shape.rows)
    return context_forms(kept, between, dims, shape)


def begin_call(state: RASState, ctx: RunContext, args: dict) -> CallPlan:
    to = args["transformer_options"]
    x = args["img"]
    plan = CallPlan(call_key(to, x))
    call = ctx.current_call
    if call is None or x.shape[1] != call.image_tokens or plan.key not in state.hidden:
        return plan
    chosen = state.selection(ctx.step, x.shape[1])
    chunks = max(len(to.get("cond_or_uncond") or ()), 1)
    if chosen is None or chosen.shape[0] * chunks != x.shape[0]:
        return plan
    return subset_plan(plan, ctx, x, chosen, chunks, n_keys=x.shape[1], left_out="reused")


def block_hook() -> Callable[..., dict]:
    return subset_block_hook(KEY, begin_call, keep_last_output=True)
