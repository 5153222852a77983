"""Sparse attention on the CPU: the block-sparse CPU path against the reference, the tile layout,
the selection helpers, every method through the engine, Re-ttention's state and the config.

All of it is plain PyTorch (no Triton), seeded, and small enough to run in seconds."""

from __future__ import annotations

import math

import pytest
import torch
from comfyui_ditaccel.accel_core.attention import dispatch, draft, engine, grat, pisa, rettention, selection, svg2
from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
from comfyui_ditaccel.accel_core.attention.layout import TileLayout
from comfyui_ditaccel.kernels import block_sparse_cpu
from comfyui_ditaccel.kernels import block_sparse_reference as ref
from torch.nn.attention import SDPBackend, sdpa_kernel

GRID = (1, 32, 32)  # 1024 image tokens: 4 query blocks of 16x16, 16 key blocks of 8x8
LAYOUT = TileLayout(GRID, 16, 8)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    with sdpa_kernel(SDPBackend.MATH):  # the exact backend (the fused CPU one uses an approximate exp)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def dense_lse(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1]), -1)


def make_qkv(b: int, h: int, nq: int, nk: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(b, h, n, d, generator=gen).to(dtype) for n in (nq, nk, nk))


def make_index(b: int, h: int, nq: int, nk: int, block_q: int, block_k: int, density: float,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random key blocks per query block, unsorted, padded with junk (in range and out of it) past
    kv_count; query block 0 of (0, 0) and the last query block of (b-1, h-1) keep nothing."""
    gen = torch.Generator().manual_seed(seed)
    nqb, nkb = ref.n_blocks(nq, block_q), ref.n_blocks(nk, block_k)
    index = torch.rand(b, h, nqb, nkb, generator=gen).argsort(-1)
    keep = max(1, round(density * nkb))
    count = torch.randint(keep if density >= 1 else max(1, keep - 1), keep + 1, (b, h, nqb), generator=gen)
    count[0, 0, 0] = 0
    count[-1, -1, -1] = 0
    slots = torch.arange(nkb).expand_as(index)
    junk = torch.randint(-5, nkb + 5, index.shape, generator=gen)
    index = torch.where(slots < count.unsqueeze(-1), index, junk)
    return index.int(), count.int()


def structured_qkv(seed: int = 0, grid: tuple[int, int, int] = GRID, b: int = 2, h: int = 2, d: int = 64,
                   q_scale: float = 1.0, noise: float = 0.1):
    """q, k, v that are smooth functions of the token's position (plus a little noise on k and v), in
    raster order: attention is spread over many blocks but far from flat (entropy ~5 nats of ~6.9)."""
    gen = torch.Generator().manual_seed(seed)
    t, rows, cols = grid
    f, y, x = torch.meshgrid(torch.arange(t), torch.arange(rows), torch.arange(cols), indexing="ij")
    pos = torch.stack([f.flatten(), y.flatten() / rows, x.flatten() / cols], -1).float()
    phase = pos @ (torch.randn(3, 16, generator=gen) * 3)
    features = torch.cat([torch.sin(phase), torch.cos(phase)], -1)  # (N, 32)

    def project() -> torch.Tensor:
        return features @ torch.randn(b, h, 32, d, generator=gen) * (d ** 0.25 / math.sqrt(32))

    n = features.shape[0]
    k = project() + noise * torch.randn(b, h, n, d, generator=gen)
    q = q_scale * project()
    v = project() + 0.5 + noise * torch.randn(b, h, n, d, generator=gen)
    return q, k, v


# --- the CPU path against the reference -----------------------------------------------------------

SHAPES = [  # (B, H, Nq, Nk, D, block_q, block_k)
    (1, 2, 128, 128, 32, 32, 32),
    (2, 3, 100, 130, 40, 64, 16),  # short last blocks, Nq != Nk, block_q != block_k
    (1, 2, 200, 77, 64, 16, 32),  # block_q < block_k, fewer keys than queries
    (2, 1, 70, 190, 64, 64, 16),
]


def check_cpu(shape, density: float, dtype: torch.dtype, seed: int = 0) -> None:
    b, h, nq, nk, d, block_q, block_k = shape
    q, k, v = make_qkv(b, h, nq, nk, d, seed=seed, dtype=dtype)
    index, count = make_index(b, h, nq, nk, block_q, block_k, density, seed=seed)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k)
    want, want_lse = ref.block_sparse_attention_reference(q, k, v, index, count, block_q, block_k)
    assert out.dtype == dtype and out.shape == want.shape
    assert lse.dtype == torch.float32 and lse.shape == want_lse.shape
    empty = torch.isinf(want_lse)
    assert empty.any() and not empty.all()
    assert torch.equal(torch.isinf(lse), empty) and torch.all(lse[empty] < 0)
    assert torch.all(out[empty] == 0)
    if dtype == torch.float32:
        torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(lse[~empty], want_lse[~empty], atol=1e-5, rtol=0)
    else:
        assert rel_err(out, want) <= 1e-2
        assert rel_err(lse[~empty], want_lse[~empty]) <= 1e-2


@pytest.mark.parametrize("density", [1.0, 0.5, 0.2])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_cpu_equals_reference_fp32(shape, density: float) -> None:
    check_cpu(shape, density, torch.float32)


@pytest.mark.parametrize("density", [1.0, 0.3])
@pytest.mark.parametrize("shape", SHAPES[1:3], ids=lambda s: "x".join(map(str, s)))
def test_cpu_equals_reference_bf16(shape, density: float) -> None:
    check_cpu(shape, density, torch.bfloat16, seed=1)


def test_cpu_dense_equals_sdpa() -> None:
    b, h, nq, nk, d, block_q, block_k = 2, 3, 100, 130, 40, 64, 16
    q, k, v = make_qkv(b, h, nq, nk, d, seed=2)
    nqb, nkb = ref.n_blocks(nq, block_q), ref.n_blocks(nk, block_k)
    index = torch.stack([torch.randperm(nkb, generator=torch.Generator().manual_seed(i)) for i in range(b * h * nqb)])
    count = torch.full((b, h, nqb), nkb)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index.view(b, h, nqb, nkb), count, block_q,
                                                           block_k)
    torch.testing.assert_close(out, sdpa(q, k, v), atol=1e-5, rtol=0)
    torch.testing.assert_close(lse.double(), dense_lse(q, k), atol=1e-5, rtol=0)


def test_cpu_explicit_scale() -> None:
    shape = (1, 2, 100, 130, 40, 32, 16)
    b, h, nq, nk, d, block_q, block_k = shape
    q, k, v = make_qkv(b, h, nq, nk, d, seed=3)
    index, count = make_index(b, h, nq, nk, block_q, block_k, 0.5, seed=3)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k, scale=0.3)
    want, want_lse = ref.block_sparse_attention_reference(q, k, v, index, count, block_q, block_k, scale=0.3)
    default, _ = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k)
    kept = ~torch.isinf(want_lse)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse[kept], want_lse[kept], atol=1e-5, rtol=0)
    assert rel_err(default, want) > 1e-2  # the scale is really used


@pytest.mark.parametrize("chunk_scores", [1, 64 * 4 * 16 * 3])
def test_cpu_small_chunks_and_unfused_fallback(monkeypatch: pytest.MonkeyPatch, chunk_scores: int) -> None:
    """Chunks of one or a few query blocks (later rows of a chunk keep fewer blocks than its first),
    and the matmul fallback taken where ATen's fused CPU kernel is unavailable: all equal the reference."""
    b, h, nq, nk, d, block_q, block_k = 2, 3, 100, 130, 40, 64, 16
    q, k, v = make_qkv(b, h, nq, nk, d, seed=4)
    index, count = make_index(b, h, nq, nk, block_q, block_k, 0.5, seed=4)
    assert len(set(count.flatten().tolist())) >= 3  # 0 and two others
    want, want_lse = ref.block_sparse_attention_reference(q, k, v, index, count, block_q, block_k)
    kept = ~torch.isinf(want_lse)
    monkeypatch.setattr(block_sparse_cpu, "CHUNK_SCORES", chunk_scores)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse[kept], want_lse[kept], atol=1e-5, rtol=0)
    monkeypatch.setattr(block_sparse_cpu, "CHUNK_SCORES", 1 << 23)
    monkeypatch.setattr(block_sparse_cpu, "_fused", lambda *args: None)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse[kept], want_lse[kept], atol=1e-5, rtol=0)
    assert torch.all(out[~kept] == 0) and torch.all(lse[~kept] == float("-inf"))


@pytest.mark.parametrize("nk", [128, 130])
def test_cpu_full_width_rows_and_strided_inputs(nk: int) -> None:
    """Every row uses its whole index width (no padding slot), the last key block listed, the short
    one when nk = 130; q, k, v are transposed views of (B, N, H, D) tensors."""
    b, h, nq, d, block_q, block_k = 2, 3, 100, 32, 32, 16
    gen = torch.Generator().manual_seed(16)
    q, k, v = (torch.randn(b, n, h, d, generator=gen).transpose(1, 2) for n in (nq, nk, nk))
    assert not q.is_contiguous()
    nqb, nkb = ref.n_blocks(nq, block_q), ref.n_blocks(nk, block_k)
    others = torch.rand(b, h, nqb, nkb - 1, generator=gen).argsort(-1)[..., :2]  # distinct, all < nkb - 1
    index = torch.cat([torch.full((b, h, nqb, 1), nkb - 1), others], -1)
    count = torch.full((b, h, nqb), 3)
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index.int(), count.int(), block_q, block_k)
    want, want_lse = ref.block_sparse_attention_reference(q, k, v, index, count, block_q, block_k)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(lse, want_lse, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_never_reads_unlisted_blocks(dtype: torch.dtype) -> None:
    """NaN keys and values in a key block no query lists (though the padding names it) leave the
    output bit-identical: a masked dense computation would turn them into NaN (0 * NaN)."""
    b, h, nq, nk, d, block_q, block_k = 2, 2, 100, 130, 32, 32, 16
    q, k, v = make_qkv(b, h, nq, nk, d, seed=5, dtype=dtype)
    nqb, nkb = ref.n_blocks(nq, block_q), ref.n_blocks(nk, block_k)
    unlisted = 3
    others = torch.tensor([j for j in range(nkb) if j != unlisted])
    gen = torch.Generator().manual_seed(5)
    index = torch.stack([others[torch.randperm(nkb - 1, generator=gen)] for _ in range(b * h * nqb)])
    index = torch.cat([index, torch.full((b * h * nqb, 2), unlisted)], -1).view(b, h, nqb, nkb + 1).int()
    count = torch.randint(1, nkb, (b, h, nqb), generator=gen).int()
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, count, block_q, block_k)
    rows = slice(unlisted * block_k, (unlisted + 1) * block_k)
    k2, v2 = k.clone(), v.clone()
    k2[..., rows, :] = float("nan")
    v2[..., rows, :] = float("nan")
    out2, lse2 = block_sparse_cpu.block_sparse_attention_cpu(q, k2, v2, index, count, block_q, block_k)
    assert not out2.isnan().any()
    assert torch.equal(out2, out) and torch.equal(lse2, lse)
    # the reference does read every block: the same NaNs reach its output
    assert ref.block_sparse_attention_reference(q, k2, v2, index, count, block_q, block_k)[0].isnan().any()


def test_cpu_single_block_rows_use_only_that_block() -> None:
    """kv_count 1 everywhere: each query block attends exactly to its one key block."""
    b, h, nq, nk, d, block_q, block_k = 1, 2, 64, 96, 16, 32, 32
    q, k, v = make_qkv(b, h, nq, nk, d, seed=6)
    index = torch.tensor([2, 0]).view(1, 1, 2, 1).expand(b, h, 2, 1).int()
    out, lse = block_sparse_cpu.block_sparse_attention_cpu(q, k, v, index, torch.ones(b, h, 2).int(), block_q,
                                                           block_k)
    torch.testing.assert_close(out[..., :32, :], sdpa(q[..., :32, :], k[..., 64:, :], v[..., 64:, :]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(out[..., 32:, :], sdpa(q[..., 32:, :], k[..., :32, :], v[..., :32, :]), atol=1e-5,
                               rtol=0)
    torch.testing.assert_close(lse[..., :32].double(), dense_lse(q[..., :32, :], k[..., 64:, :]), atol=1e-5, rtol=0)


# --- tile layout ----------------------------------------------------------------------------------


def raster_coords(grid: tuple[int, int, int]) -> torch.Tensor:
    """(N, 3) (frame, row, column) of each raster token."""
    t, h, w = grid
    f, y, x = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([f.flatten(), y.flatten(), x.flatten()], -1)


@pytest.mark.parametrize("grid", [(1, 32, 32), (1, 20, 36), (3, 16, 24)])
def test_order_is_a_permutation(grid: tuple[int, int, int]) -> None:
    layout = TileLayout(grid, 16, 8)
    order = layout.order()
    assert layout.tokens == math.prod(grid) and order.shape == (layout.tokens,)
    assert torch.equal(order.sort().values, torch.arange(layout.tokens))


@pytest.mark.parametrize(("grid", "full_tiles"), [((1, 32, 32), 4), ((1, 20, 36), 2), ((3, 16, 24), 1)])
def test_full_tiles_are_squares(grid: tuple[int, int, int], full_tiles: int) -> None:
    """In a full query tile the key blocks are 8x8 squares of one frame, and the query block is the
    16x16 square that contains them."""
    layout = TileLayout(grid, 16, 8)
    coords = raster_coords(grid)[layout.order()]
    for qb in range(full_tiles):  # the full tiles that lead the tiled order, before any short one
        block = coords[qb * 256:(qb + 1) * 256]
        assert block[:, 0].unique().numel() == 1
        assert int(block[:, 1].min()) % 16 == 0 and int(block[:, 2].min()) % 16 == 0
        assert int(block[:, 1].max() - block[:, 1].min()) == 15 and int(block[:, 2].max() - block[:, 2].min()) == 15
        for kb in range(4):
            square = block[kb * 64:(kb + 1) * 64]
            assert square[:, 0].unique().numel() == 1
            assert square[:, 1].unique().numel() == 8 and int(square[:, 1].max() - square[:, 1].min()) == 7
            assert square[:, 2].unique().numel() == 8 and int(square[:, 2].max() - square[:, 2].min()) == 7


def test_key_blocks_of_a_frame_with_half_tiles_are_squares() -> None:
    """(3, 16, 24): each frame is one 16x16 tile and one 16x8 tile, i.e. six 8x8 key blocks."""
    layout = TileLayout((3, 16, 24), 16, 8)
    coords = raster_coords(layout.grid)[layout.order()].view(-1, 64, 3)
    assert coords.shape[0] == 18
    for square in coords:
        assert square[:, 0].unique().numel() == 1
        assert int(square[:, 1].max() - square[:, 1].min()) == 7 and int(square[:, 2].max() - square[:, 2].min()) == 7
    assert torch.equal(coords[:, 0, 0], torch.arange(3).repeat_interleave(6))


def test_key_centroids_tiny_grids() -> None:
    layout = TileLayout((1, 4, 6), 4, 2)  # a 4x4 tile (four 2x2 blocks) and a 4x2 tile (two)
    want = torch.tensor([[0, .5, .5], [0, .5, 2.5], [0, 2.5, .5], [0, 2.5, 2.5], [0, .5, 4.5], [0, 2.5, 4.5]])
    assert torch.equal(layout.key_centroids(), want)
    assert torch.equal(layout.query_centroids(), torch.tensor([[0, 1.5, 1.5], [0, 1.5, 4.5]]))
    # 3x3 with 2x2 tiles: blocks are cut by count, the last one holds a single token
    layout = TileLayout((1, 3, 3), 2, 2)
    want = torch.tensor([[0, .5, .5], [0, 1.25, 1.25], [0, 2, 2]])
    assert torch.equal(layout.key_centroids(), want)
    layout = TileLayout((2, 2, 2), 2, 1)  # frames
    assert torch.equal(layout.key_centroids(), raster_coords((2, 2, 2)).float())
    assert torch.equal(layout.query_centroids(), torch.tensor([[0, .5, .5], [1, .5, .5]]))


# --- selection helpers ----------------------------------------------------------------------------


def test_top_k() -> None:
    scores = torch.randn(2, 3, 4, 10, generator=torch.Generator().manual_seed(0))
    index, count = selection.top_k(scores, 3)
    assert index.dtype == torch.int32 and count.dtype == torch.int32
    assert index.shape == (2, 3, 4, 3) and torch.all(count == 3)
    want = scores.argsort(-1, descending=True)[..., :3]
    assert torch.equal(index.long().sort(-1).values, want.sort(-1).values)


def test_from_mask() -> None:
    keep = torch.tensor([[True, False, True, False, True],
                         [False, False, False, False, False],
                         [False, True, False, False, False]])
    index, count = selection.from_mask(keep)
    assert count.tolist() == [3, 0, 1]
    assert index.shape == (3, 3) and index.dtype == torch.int32
    assert index[0].tolist() == [0, 2, 4] and index[2, 0] == 1
    index, count = selection.from_mask(torch.zeros(2, 4, dtype=torch.bool))
    assert index.shape == (2, 1) and count.tolist() == [0, 0]
    # random masks: the listed ids are exactly the kept ones
    keep = torch.rand(2, 3, 5, 12, generator=torch.Generator().manual_seed(1)) < 0.3
    index, count = selection.from_mask(keep)
    assert torch.equal(ref.block_mask(index, count, 12), keep)


def test_top_p() -> None:
    probs = torch.tensor([0.125, 0.5, 0.125, 0.25])  # dyadic: cumulative sums are exact
    cases = [  # (p, cap, count)
        (0.4, 4, 1),  # the best block alone reaches p
        (0.5, 4, 1),  # reaching p exactly stops
        (0.7, 4, 2),
        (0.75, 4, 2),
        (0.8, 4, 3),
        (1.0, 4, 4),
        (1.0, 2, 2),  # at most cap
        (0.0, 4, 1),  # at least one
    ]
    for p, cap, want in cases:
        index, count = selection.top_p(probs.expand(2, 3, 4), p, cap)
        assert torch.all(count == want), (p, cap)
        assert index.shape == (2, 3, cap) and index.dtype == torch.int32
        assert index[0, 0, :want].tolist() == [1, 3, 0, 2][:want]
    rows = torch.softmax(torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(2)) * 2, -1)
    index, count = selection.top_p(rows, 0.8, 10)
    mass = ref.block_mask(index, count, 16).float().mul(rows).sum(-1)
    smaller = ref.block_mask(index, count - 1, 16).float().mul(rows).sum(-1)
    capped = count == 10
    assert torch.all(mass[~capped] >= 0.8 - 1e-6) and torch.all(smaller[count > 1] < 0.8)


def test_global_share() -> None:
    logits = torch.randn(2, 3, 6, 20, generator=torch.Generator().manual_seed(3)) * 4
    logits[..., 0, :] *= 0.01  # a nearly flat row: its best block is below the global share
    probs = torch.softmax(logits, -1)
    index, count = selection.global_share(probs, 0.05)
    keep = ref.block_mask(index, count, 20)
    want_n = math.ceil(0.05 * 120)
    flat = probs.flatten(-2)
    top = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, flat.topk(want_n, -1).indices, True).view_as(keep)
    best = torch.zeros_like(keep).scatter_(-1, probs.argmax(-1, keepdim=True), True)
    assert torch.equal(keep, top | best)  # exactly the share, plus every row's best block
    per_head = count.sum(-1)
    assert torch.all(per_head >= want_n) and torch.all(per_head <= want_n + 6)
    assert torch.all(count >= 1)
    assert (best & ~top)[..., 0, :].any(-1).all()  # the flat rows keep their best block through the row rule


# --- every method at density 1 is dense attention -------------------------------------------------


def dense_config(method: str) -> SparseAttentionConfig:
    return SparseAttentionConfig(method=method, density=1.0, estimate_skipped=False)


@pytest.mark.parametrize("method", ["grat", "draft", "pisa", "svg2", "rettention"])
def test_density_one_equals_dense(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if method == "svg2":
        # SVG2's density is the cap of a top-p (0.9) budget: above 1 the cap binds and every block is
        # kept, so this checks that its clustering permutations are undone
        monkeypatch.setattr(svg2, "TOP_P", 1.01)
    q, k, v = make_qkv(2, 2, 1024, 1024, 64, seed=7)
    state = engine.SiteState()
    outcome = engine.sparse_attention(q, k, v, LAYOUT, dense_config(method), 10, state)
    want = sdpa(q, k, v)
    assert outcome.out.shape == want.shape and outcome.kept == 1.0
    assert rel_err(outcome.out, want) <= 1e-4
    torch.testing.assert_close(outcome.lse.double(), dense_lse(q, k), atol=1e-4, rtol=0)
    if method == "svg2":
        assert state.centroids is not None
    if method == "rettention":  # nothing to reshape: the mask holds all the mass
        torch.testing.assert_close(state.reshape.ratio, torch.ones_like(state.reshape.ratio), atol=1e-5, rtol=0)
        assert float(state.reshape.residual.abs().max()) <= 1e-5
        again = engine.sparse_attention(q, k, v, LAYOUT, dense_config(method), 11, state)
        assert again.kept == 1.0 and rel_err(again.out, want) <= 1e-4


@pytest.mark.parametrize("grid", [(1, 20, 36), (3, 5, 7)])
@pytest.mark.parametrize("method", ["grat", "draft", "pisa", "svg2"])
def test_density_one_equals_dense_with_short_blocks(grid: tuple[int, int, int], method: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Grids whose edge tiles are short and whose token count is no multiple of the blocks."""
    monkeypatch.setattr(svg2, "TOP_P", 1.01)
    layout = TileLayout(grid, 16, 8)
    q, k, v = make_qkv(1, 2, layout.tokens, layout.tokens, 32, seed=15)
    outcome = engine.sparse_attention(q, k, v, layout, dense_config(method), 10, engine.SiteState())
    assert outcome.kept == 1.0
    assert rel_err(outcome.out, sdpa(q, k, v)) <= 1e-4
    torch.testing.assert_close(outcome.lse.double(), dense_lse(q, k), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["grat", "draft", "pisa", "svg2", "rettention"])
def test_density_one_bf16(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svg2, "TOP_P", 1.01)
    q, k, v = make_qkv(1, 2, 1024, 1024, 64, seed=3, dtype=torch.bfloat16)
    outcome = engine.sparse_attention(q, k, v, LAYOUT, dense_config(method), 10, engine.SiteState())
    assert outcome.out.dtype == torch.bfloat16 and outcome.lse.dtype == torch.float32
    assert rel_err(outcome.out, sdpa(q.float(), k.float(), v.float())) <= 1e-2


def test_svg2_density_one_permutes_for_real() -> None:
    """The clustering permutations the density-1 test undoes are not the identity."""
    q, k, _ = make_qkv(2, 2, 1024, 1024, 64, seed=7)
    sel, _ = svg2.select(q, k, 256, 64, 1.0, None)
    assert not torch.equal(sel.q_perm, torch.arange(1024).expand_as(sel.q_perm))
    assert not torch.equal(sel.k_perm, torch.arange(1024).expand_as(sel.k_perm))


def test_selections_list_distinct_valid_ids() -> None:
    """The kernels count a block listed twice twice (the reference's mask would not): every method's
    list must hold distinct ids in range, and no more of them than the index is wide."""
    q, k, v = make_qkv(2, 2, 1024, 1024, 32, seed=17)
    sels = [grat.select(q, LAYOUT, 0.3, "neighbors"), grat.select(q, LAYOUT, 0.3, "criss_cross"),
            draft.select(q, k, LAYOUT, 0.3), pisa.select(q, k, v, LAYOUT, 0.3)[0],
            svg2.select(q, k, 256, 64, 0.3, None)[0]]
    for sel in sels:
        assert sel.kv_count.shape == (2, 2, 4) and int(sel.kv_count.max()) <= sel.kv_index.shape[-1]
        for row, count in zip(sel.kv_index.reshape(-1, sel.kv_index.shape[-1]), sel.kv_count.flatten(), strict=True):
            ids = row[:count].tolist()
            assert len(set(ids)) == len(ids) and all(0 <= i < 16 for i in ids)


# --- estimating the skipped blocks ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["grat", "draft"])
def test_estimate_skipped_lowers_the_error(method: str) -> None:
    q, k, v = structured_qkv(seed=0)
    want = sdpa(q, k, v)
    want_lse = dense_lse(q, k)
    errors, lse_errors = {}, {}
    for estimate in (False, True):
        config = SparseAttentionConfig(method=method, density=0.25, estimate_skipped=estimate)
        outcome = engine.sparse_attention(q, k, v, LAYOUT, config, 10, engine.SiteState())
        assert outcome.kept < 0.5
        errors[estimate] = rel_err(outcome.out, want)
        lse_errors[estimate] = float((outcome.lse.double() - want_lse).abs().mean())
    assert errors[False] > 0.1  # the skipped blocks matter
    assert errors[True] < 0.5 * errors[False]
    assert lse_errors[True] < 0.5 * lse_errors[False]  # the estimated denominator is closer too


@pytest.mark.parametrize("density", [0.1, 0.25, 0.6])
def test_pisa_estimate_is_exact_for_flat_attention(density: float) -> None:
    """q = 0: every key weighs the same, the block means are exact and PISA returns mean(v)."""
    _, k, v = structured_qkv(seed=1)
    q = torch.zeros_like(k)
    want = v.mean(-2, keepdim=True).expand_as(v)
    for estimate in (True, False):  # PISA estimates whatever estimate_skipped says
        config = SparseAttentionConfig(method="pisa", density=density, estimate_skipped=estimate)
        outcome = engine.sparse_attention(q, k, v, LAYOUT, config, 10, engine.SiteState())
        assert outcome.kept < 1.0
        assert rel_err(outcome.out, want) <= 1e-5
        torch.testing.assert_close(outcome.lse, torch.full_like(outcome.lse, math.log(1024)), atol=1e-4, rtol=0)
    # the exact part alone (the kept blocks' average) is not the answer: the estimate does the work
    order = LAYOUT.order()
    qt, kt, vt = (x.index_select(-2, order) for x in (q, k, v))
    sel, _ = pisa.select(qt, kt, vt, LAYOUT, density)
    exact_only, _, _ = dispatch.run(qt, kt, vt, sel, LAYOUT.block_q, LAYOUT.block_k)
    assert rel_err(exact_only, want) > 1e-2


# --- GRAT -----------------------------------------------------------------------------------------


def block_boxes(layout: TileLayout, block: int) -> torch.Tensor:
    """(nb, 5) per block of the tiled order: frame, row min, row max, column min, column max."""
    coords = raster_coords(layout.grid)[layout.order()].view(-1, block, 3)
    return torch.stack([coords[..., 0].amin(-1), coords[..., 1].amin(-1), coords[..., 1].amax(-1),
                        coords[..., 2].amin(-1), coords[..., 2].amax(-1)], -1)


def kept_mask(sel: selection.Selection, nkb: int) -> torch.Tensor:
    return ref.block_mask(sel.kv_index, sel.kv_count, nkb)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.3, 1.0])
def test_grat_neighbors_keeps_own_blocks(density: float) -> None:
    layout = TileLayout((1, 48, 48), 16, 8)
    q = torch.zeros(2, 3, layout.tokens, 8)
    sel = grat.select(q, layout, density, "neighbors")
    qbox, kbox = block_boxes(layout, 256), block_boxes(layout, 64)
    nqb, nkb = qbox.shape[0], kbox.shape[0]
    assert (nqb, nkb) == (9, 36)
    budget = math.ceil(density * nkb)
    assert sel.kv_index.shape[:3] == (2, 3, nqb) and torch.all(sel.kv_count == budget)
    keep = kept_mask(sel, nkb)
    assert torch.all(keep.sum(-1) == budget)
    inside = ((kbox[None, :, 1] >= qbox[:, None, 1]) & (kbox[None, :, 2] <= qbox[:, None, 2])
              & (kbox[None, :, 3] >= qbox[:, None, 3]) & (kbox[None, :, 4] <= qbox[:, None, 4]))
    assert torch.all(inside.sum(-1) == 4)
    own_kept = (keep & inside).sum(-1)
    assert torch.all(own_kept == min(budget, 4))  # own blocks first, before any other


def test_grat_criss_cross_keeps_the_bands_first() -> None:
    layout = TileLayout((1, 64, 64), 16, 8)
    qbox, kbox = block_boxes(layout, 256), block_boxes(layout, 64)
    nkb = kbox.shape[0]
    same_rows = (kbox[None, :, 1] >= qbox[:, None, 1]) & (kbox[None, :, 2] <= qbox[:, None, 2])
    same_cols = (kbox[None, :, 3] >= qbox[:, None, 3]) & (kbox[None, :, 4] <= qbox[:, None, 4])
    cross = same_rows | same_cols
    assert torch.all(cross.sum(-1) == 28)
    q = torch.zeros(1, 1, layout.tokens, 8)
    narrow = kept_mask(grat.select(q, layout, 0.25, "criss_cross"), nkb)[0, 0]  # 16 < 28 blocks
    assert torch.all(narrow.sum(-1) == 16) and not torch.any(narrow & ~cross)
    wide = kept_mask(grat.select(q, layout, 0.5, "criss_cross"), nkb)[0, 0]  # 32 > 28 blocks
    assert torch.all(wide.sum(-1) == 32) and torch.all(wide[cross])
    # query tile (0, 0): a far block of its row band comes before the diagonal neighbour, not so for neighbors
    far = int(((kbox[:, 1] == 0) & (kbox[:, 3] == 32)).nonzero())
    diagonal = int(((kbox[:, 1] == 16) & (kbox[:, 3] == 16)).nonzero())
    near = kept_mask(grat.select(q, layout, 0.25, "neighbors"), nkb)[0, 0]
    assert narrow[0, far] and not narrow[0, diagonal]
    assert near[0, diagonal] and not near[0, far]


# --- DraftAttention -------------------------------------------------------------------------------


def test_draft_probs_are_pooled_attention() -> None:
    layout = TileLayout((1, 32, 32), 16, 8)
    q, k, _ = make_qkv(2, 2, 1024, 1024, 16, seed=8)
    probs = draft.draft_probs(q, k, layout, 0.25)
    qm, km = q.view(2, 2, 16, 64, 16).mean(-2), k.view(2, 2, 16, 64, 16).mean(-2)
    want = torch.softmax(qm @ km.transpose(-1, -2) * 0.25, -1).view(2, 2, 4, 4, 16).mean(-2)
    torch.testing.assert_close(probs, want, atol=1e-6, rtol=0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 4), atol=1e-6, rtol=0)


@pytest.mark.parametrize("density", [0.05, 0.2, 0.5])
def test_draft_kept_share(density: float) -> None:
    layout = TileLayout((1, 64, 64), 16, 8)
    q, k, _ = make_qkv(2, 2, layout.tokens, layout.tokens, 32, seed=9)
    q = q * 3
    sel = draft.select(q, k, layout, density)
    nqb, nkb = 16, 64
    assert sel.kv_count.shape == (2, 2, nqb)
    assert torch.all(sel.kv_count >= 1)
    per_head = sel.kv_count.sum(-1)
    want = math.ceil(density * nqb * nkb)
    assert torch.all(per_head >= want) and torch.all(per_head <= want + nqb)
    assert abs(sel.density(nkb) - density) <= 1 / nkb + 1e-9  # within one row's worth
    assert len(set(sel.kv_count.flatten().tolist())) > 1  # a global share, not the same count per row


# --- SVG2 -----------------------------------------------------------------------------------------


def test_kmeans_finds_separated_clusters() -> None:
    gen = torch.Generator().manual_seed(10)
    centres = torch.randn(2, 2, 4, 8, generator=gen) * 10
    labels_true = torch.arange(4).repeat_interleave(32)  # blobs in contiguous runs: the strided init meets each
    x = centres[..., labels_true, :] + 0.1 * torch.randn(2, 2, 128, 8, generator=gen)
    labels, centroids = svg2.kmeans(x, 4, 3)
    assert labels.shape == (2, 2, 128) and centroids.shape == (2, 2, 4, 8)
    assert labels.min() >= 0 and labels.max() < 4
    for b in range(2):
        for h in range(2):
            runs = labels[b, h].view(4, 32)
            assert torch.all(runs == runs[:, :1]) and runs[:, 0].unique().numel() == 4
    torch.testing.assert_close(centroids.gather(-2, labels[..., :1].unsqueeze(-1).expand(2, 2, 1, 8)),
                               x[..., :32, :].mean(-2, keepdim=True), atol=1e-5, rtol=0)


def test_kmeans_deterministic_and_warm_start() -> None:
    x = torch.randn(2, 3, 300, 16, generator=torch.Generator().manual_seed(11))
    labels, centroids = svg2.kmeans(x, 7, 4)
    again, again_c = svg2.kmeans(x, 7, 4)
    assert torch.equal(labels, again) and torch.equal(centroids, again_c)
    assert labels.min() >= 0 and labels.max() < 7
    warm_labels, warm = svg2.kmeans(x, 7, 1, init=centroids)
    assert warm.shape == centroids.shape and warm_labels.shape == labels.shape
    # a mismatching init (other cluster count) is ignored: the cold strided start is used
    cold = svg2.kmeans(x, 7, 4, init=torch.zeros(2, 3, 5, 16))
    assert torch.equal(cold[0], labels)


def is_permutation(perm: torch.Tensor) -> bool:
    return torch.equal(perm.sort(-1).values, torch.arange(perm.shape[-1]).expand_as(perm))


def test_svg2_select() -> None:
    q, k, _ = make_qkv(2, 2, 1024, 1024, 32, seed=12)
    sel, cent = svg2.select(q, k, 256, 64, 0.25, None)
    assert is_permutation(sel.q_perm) and is_permutation(sel.k_perm)
    assert cent.q.shape == (2, 2, 4, 32) and cent.k.shape == (2, 2, 16, 32)
    assert torch.all(sel.kv_count >= 1) and torch.all(sel.kv_count <= 4)
    assert sel.kv_index.shape[-1] == 4
    sel2, cent2 = svg2.select(q + 0.01, k, 256, 64, 0.25, cent)
    assert cent2.q.shape == cent.q.shape and cent2.k.shape == cent.k.shape
    assert is_permutation(sel2.q_perm) and is_permutation(sel2.k_perm)
    state = engine.SiteState()
    engine.sparse_attention(q, k, k, LAYOUT, SparseAttentionConfig(method="svg2", density=0.25), 10, state)
    assert state.centroids is not None and state.centroids.k.shape == (2, 2, 16, 32)


# --- Re-ttention ----------------------------------------------------------------------------------


def test_rettention_refresh_then_apply_reproduces_full() -> None:
    gen = torch.Generator().manual_seed(13)
    full, sparse = torch.randn(2, 2, 512, 32, generator=gen), torch.randn(2, 2, 512, 32, generator=gen)
    lse_full = torch.randn(2, 2, 512, generator=gen) + 5
    lse_sparse = lse_full - 3 * torch.rand(2, 2, 512, generator=gen)
    lse_sparse[0, 0, :4] = float("-inf")  # rows whose mask kept nothing
    reshape = rettention.refresh(full, lse_full, sparse, lse_sparse)
    assert torch.all(reshape.ratio[0, 0, :4] == 0)
    out, lse = rettention.apply(sparse, lse_sparse, reshape)
    assert out.dtype == full.dtype
    torch.testing.assert_close(out, full, atol=2e-6, rtol=0)  # (f - x) + x: exact up to rounding
    finite = ~torch.isinf(lse_sparse)
    torch.testing.assert_close(lse[finite], lse_full[finite], atol=1e-5, rtol=0)


def test_is_refresh_step() -> None:
    for dense_steps in (0, 1, 4):
        first = max(dense_steps - 1, 0)
        refresh = {first + 5 * i for i in range(6)}
        for step in range(30):
            assert rettention.is_refresh_step(step, dense_steps) == (step in refresh), (step, dense_steps)
    assert rettention.is_refresh_step(3, 4) and rettention.is_refresh_step(8, 4)
    assert not any(rettention.is_refresh_step(s, 4) for s in (0, 1, 2, 4, 5, 6, 7, 9, 12))


def test_rettention_engine_state() -> None:
    q, k, v = structured_qkv(seed=2)
    q2 = q + 0.3 * torch.randn(q.shape, generator=torch.Generator().manual_seed(14))
    config = SparseAttentionConfig(method="rettention", density=0.25, dense_steps=4, estimate_skipped=False)
    bare_config = SparseAttentionConfig(method="grat", density=0.25, grat_pattern="neighbors", estimate_skipped=False)
    state = engine.SiteState()
    first = engine.sparse_attention(q, k, v, LAYOUT, config, 5, state)  # not a refresh step, but no state yet
    dense = sdpa(q, k, v)
    assert first.kept == 1.0 and rel_err(first.out, dense) <= 1e-4
    assert state.reshape is not None and state.reshape.residual.shape == q.shape
    reshape = state.reshape
    # a later non-refresh step on the same inputs: the reshape gives back the full attention
    same = engine.sparse_attention(q, k, v, LAYOUT, config, 6, state)
    assert same.kept == 0.25 and state.reshape is reshape
    assert rel_err(same.out, dense) <= 1e-4
    bare_same = engine.sparse_attention(q, k, v, LAYOUT, bare_config, 6, engine.SiteState())
    assert rel_err(bare_same.out, dense) > 0.1
    # on other inputs it is the bare sparse output, reshaped
    later = engine.sparse_attention(q2, k, v, LAYOUT, config, 7, state)
    bare = engine.sparse_attention(q2, k, v, LAYOUT, bare_config, 7, engine.SiteState())
    assert rel_err(later.out, bare.out) > 0.1
    order = LAYOUT.order()
    inverse = order.argsort()
    want, _ = rettention.apply(bare.out.index_select(-2, order), bare.lse.index_select(-1, order), reshape)
    torch.testing.assert_close(later.out, want.index_select(-2, inverse), atol=1e-5, rtol=0)
    assert rel_err(later.out, sdpa(q2, k, v)) < rel_err(bare.out, sdpa(q2, k, v))
    # a refresh step recomputes the full attention and replaces the reshape
    refreshed = engine.sparse_attention(q2, k, v, LAYOUT, config, 8, state)
    assert refreshed.kept == 1.0 and rel_err(refreshed.out, sdpa(q2, k, v)) <= 1e-4
    assert state.reshape is not reshape


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "flash"}, "method"),
    ({"density": 0.0}, "density"),
    ({"density": 1.5}, "density"),
    ({"density": -0.1}, "density"),
    ({"query_tile": 16, "key_tile": 6}, "query_tile"),
])
def test_config_rejects(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SparseAttentionConfig(**kwargs)


def test_config_accepts_bounds() -> None:
    assert SparseAttentionConfig(density=1.0).density == 1.0
    assert SparseAttentionConfig(method="svg2", density=1e-3).method == "svg2"



@pytest.mark.parametrize("method", ["grat", "pisa", "draft", "rettention"])
def test_engine_through_the_triton_kernel_matches_the_cpu_path(monkeypatch, method):
    """What a GPU runs (the Triton kernel, interpreted here) gives the CPU path's result."""
    from comfyui_ditaccel.kernels import block_sparse_triton

    if not block_sparse_triton.triton_available():
        pytest.skip("triton not available")
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, 2, 1024, 64, generator=g) for _ in range(3))
    layout = TileLayout((1, 32, 32), 16, 8)
    config = SparseAttentionConfig(method=method, density=0.3)
    want = engine.sparse_attention(q, k, v, layout, config, 10, engine.SiteState())
    monkeypatch.setattr(dispatch, "backend_for", lambda *a: (dispatch.BACKEND_TRITON, None))
    got = engine.sparse_attention(q, k, v, layout, config, 10, engine.SiteState())
    assert got.backend == "triton"
    torch.testing.assert_close(got.out, want.out, atol=1e-4, rtol=1e-4)
