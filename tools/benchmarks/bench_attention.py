"""Sparse attention alone, on q/k/v captured from the embedded model (tools/benchmarks/capture_qkv.py).

For each captured size, block and method: time of the method (layout, block selection, kernel,
PISA's estimate; medians of alternated runs) against dense `scaled_dot_product_attention` on the
same device in this process, relative L2 error of the output, and the share of softmax mass the
exactly computed blocks hold. Re-ttention's reshape needs statistics of an earlier full step, so
here it is its bare mask; its full form is measured end to end (tools/benchmarks/bench_sparse_e2e.py).

    .venv/bin/python -m tools.benchmarks.capture_qkv --sizes 512 1024 2048
    .venv/bin/python -m tools.benchmarks.bench_attention --density 0.2
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from comfyui_ditaccel.accel_core.attention import engine
from comfyui_ditaccel.accel_core.attention.config import METHODS, SparseAttentionConfig
from comfyui_ditaccel.accel_core.attention.dispatch import run
from comfyui_ditaccel.accel_core.attention.layout import TileLayout
from comfyui_ditaccel.accel_core.attention.selection import Selection

from tools import REPO


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def mass_kept(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: TileLayout, config: SparseAttentionConfig,
              full_lse: torch.Tensor) -> float:
    order = layout.order()
    qt, kt, vt = (x.index_select(-2, order) for x in (q, k, v))
    selection: Selection = engine._select(qt, kt, vt, layout, config, engine.SiteState())[0]
    _, lse, _ = run(qt, kt, vt, selection, layout.block_q, layout.block_k)
    return float(torch.exp(lse - full_lse.index_select(-1, order)).mean())


def oracle_mass(q: torch.Tensor, k: torch.Tensor, layout: TileLayout, density: float) -> float:
    """Softmax mass of the best `density` share of key blocks per query block, picked with the true
    attention: the most any block selection at this density can keep."""
    order = layout.order()
    qt, kt = q.index_select(-2, order), k.index_select(-2, order)
    bq, bk = layout.block_q, layout.block_k
    nkb = -(-k.shape[-2] // bk)
    keep = max(1, math.ceil(density * nkb))
    kept = []
    for start in range(0, qt.shape[-2], bq):
        p = torch.softmax(qt[..., start:start + bq, :] @ kt.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)
        p = F.pad(p, (0, nkb * bk - p.shape[-1])).unflatten(-1, (nkb, bk)).sum(-1)  # (B, H, rows, nKb)
        best = torch.topk(p.sum(-2), keep, dim=-1).indices  # the query block's best key blocks
        kept.append(torch.gather(p, -1, best.unsqueeze(-2).expand(*p.shape[:-1], keep)).sum(-1))
    return float(torch.cat(kept, -1).mean())


def timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qkv", type=Path, default=REPO / "out" / "qkv")
    ap.add_argument("--density", type=float, default=0.2)
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--grat-pattern", default="neighbors")
    ap.add_argument("--no-estimate", action="store_true", help="drop skipped blocks instead of estimating them")
    ap.add_argument("--oracle", action="store_true",
                    help="only print the softmax mass the best blocks at this density hold (no timing)")
    a = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    files = sorted(a.qkv.glob("qkv_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise SystemExit(f"no captures in {a.qkv}: run tools/benchmarks/capture_qkv.py first")
    print(f"device: CPU ({torch.get_num_threads()} threads), density {a.density}, medians of {a.repeats} "
          f"alternated runs; speed-up = dense SDPA time / method time")
    print(f"{'tokens':>6} {'block':>5} {'method':<11} {'dense s':>8} {'sparse s':>8} {'speed-up':>8} "
          f"{'rel L2':>7} {'mass':>6} {'kept':>6}")
    for path in files:
        data = torch.load(path)
        grid = tuple(data["grid"])
        layout = TileLayout(grid, 16, 8)
        for block, t in sorted(data["blocks"].items()):
            q, k, v = t["q"], t["k"], t["v"]
            if a.oracle:
                print(f"{q.shape[-2]:>6} {block:>5} oracle: the best {a.density:g} of key blocks per query "
                      f"block hold {oracle_mass(q, k, layout, a.density):.3f} of the softmax mass", flush=True)
                continue
            dense = F.scaled_dot_product_attention(q, k, v)
            full_lse = torch.logsumexp(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1) if q.shape[-2] <= 8192 \
                else _lse_chunked(q, k)
            for method in a.methods:
                config = SparseAttentionConfig(method=method, density=a.density, grat_pattern=a.grat_pattern,
                                               estimate_skipped=not a.no_estimate)
                row = measure(q, k, v, layout, config, dense, full_lse, a.repeats)
                print(f"{q.shape[-2]:>6} {block:>5} {method:<11} {row['dense']:>8.3f} {row['sparse']:>8.3f} "
                      f"{row['dense'] / row['sparse']:>7.2f}× {row['err']:>7.3f} {row['mass']:>6.3f} "
                      f"{row['kept']:>6.3f}", flush=True)
    return 0


def _run(q, k, v, layout: TileLayout, config: SparseAttentionConfig) -> torch.Tensor:
    # past any refresh step: Re-ttention without stored statistics is its bare mask
    state = engine.SiteState()
    if config.method == "rettention":
        order = layout.order()
        qt, kt, vt = (x.index_select(-2, order) for x in (q, k, v))
        selection = engine._select(qt, kt, vt, layout, config, state)[0]
        out, _, _ = run(qt, kt, vt, selection, layout.block_q, layout.block_k)
        return out.index_select(-2, layout.inverse())
    return engine.sparse_attention(q, k, v, layout, config, 10**6, state).out


def measure(q, k, v, layout: TileLayout, config: SparseAttentionConfig, dense: torch.Tensor,
            full_lse: torch.Tensor, repeats: int) -> dict[str, float]:
    err = rel_l2(_run(q, k, v, layout, config), dense)
    dense_times, sparse_times = [], []
    for _ in range(repeats):
        dense_times += timed(lambda: F.scaled_dot_product_attention(q, k, v), 1)
        sparse_times += timed(lambda: _run(q, k, v, layout, config), 1)
    order = layout.order()
    selection = engine._select(*(x.index_select(-2, order) for x in (q, k, v)), layout, config,
                               engine.SiteState())[0]
    return {"dense": statistics.median(dense_times), "sparse": statistics.median(sparse_times), "err": err,
            "mass": mass_kept(q, k, v, layout, config, full_lse),
            "kept": selection.density(-(-k.shape[-2] // layout.block_k))}


def _lse_chunked(q: torch.Tensor, k: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    parts = [torch.logsumexp(q[..., i:i + chunk, :] @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, -1)
             for i in range(0, q.shape[-2], chunk)]
    return torch.cat(parts, -1)


if __name__ == "__main__":
    raise SystemExit(main())
