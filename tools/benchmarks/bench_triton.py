"""The Triton block-sparse attention kernel against dense scaled_dot_product_attention on a GPU.

    .venv/bin/python -m tools.benchmarks.bench_triton --tokens 16384 65536        # on a machine with CUDA
    TRITON_INTERPRET=1 .venv/bin/python -m tools.benchmarks.bench_triton --device cpu --tokens 512 --repeats 1  # smoke

For each token count, dtype and density: kernel time (CUDA events, median of --repeats after a
warm-up) of the Triton kernel over a GRAT neighbourhood selection in the pack's tile layout
(256-token query tiles, 64-token key tiles, 2 heads of 128 like the embedded model, batch 2)
against dense SDPA on the same device; relative L2 error of the kernel against the PyTorch
reference on the listed blocks (exact sparse attention: the error is the kernel's, not the
sparsity's), and of the sparse output against dense. Prints the GPU model.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from comfyui_ditaccel.accel_core.attention import grat
from comfyui_ditaccel.accel_core.attention.layout import TileLayout
from comfyui_ditaccel.kernels import block_sparse_triton as tri
from comfyui_ditaccel.kernels.block_sparse_cpu import block_sparse_attention_cpu

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[16384, 65536])
    ap.add_argument("--densities", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--dtypes", nargs="+", default=["bf16", "fp16", "fp32"], choices=list(DTYPES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (Triton interpreter)"
    print(f"device: {name}; batch 2, 2 heads of 128, query tiles 256, key tiles 64, GRAT neighbours")
    print(f"{'tokens':>6} {'dtype':>5} {'density':>7} {'dense ms':>9} {'triton ms':>9} {'speed-up':>8} "
          f"{'kernel err':>10} {'vs dense':>8}")
    g = torch.Generator().manual_seed(0)
    for n in a.tokens:
        side = math.isqrt(n)
        layout = TileLayout((1, side, n // side), 16, 8)
        n = layout.tokens
        for dtype_name in a.dtypes:
            dtype = DTYPES[dtype_name]
            q, k, v = (torch.randn(2, 2, n, 128, generator=g).to(device, dtype) for _ in range(3))
            dense_s = timed(lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v), device, a.repeats)
            dense = F.scaled_dot_product_attention(q, k, v)
            for density in a.densities:
                sel = grat.select(q, layout, density)
                index, count = sel.kv_index.to(device), sel.kv_count.to(device)
                run = lambda q=q, k=k, v=v, i=index, c=count, t=layout: tri.block_sparse_attention_triton(  # noqa: E731
                    q, k, v, i, c, t.block_q, t.block_k)
                sparse_s = timed(run, device, a.repeats)
                out, _ = run()
                want, _ = block_sparse_attention_cpu(q.float().cpu(), k.float().cpu(), v.float().cpu(),
                                                     index.cpu(), count.cpu(), layout.block_q, layout.block_k)
                print(f"{n:>6} {dtype_name:>5} {density:>7.2f} {1000 * dense_s:>9.2f} {1000 * sparse_s:>9.2f} "
                      f"{dense_s / sparse_s:>7.2f}x {rel(out.cpu(), want):>10.2e} {rel(out, dense):>8.3f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
