"""The memory contract: each method's formula against what it really holds or allocates, at three
sizes; the plan's forms (bit-identical where the arithmetic is the same); refusals before the first step."""

from __future__ import annotations

import weakref

import pytest
import torch
from comfyui_ditaccel.accel_core import memory
from comfyui_ditaccel.accel_core.adapters import WAN21
from comfyui_ditaccel.accel_core.attention import engine, pisa
from comfyui_ditaccel.accel_core.attention.config import SparseAttentionConfig
from comfyui_ditaccel.accel_core.attention.engine import memory_needs as sparse_needs
from comfyui_ditaccel.accel_core.attention.layout import TileLayout
from comfyui_ditaccel.accel_core.attention.selection import Selection
from comfyui_ditaccel.accel_core.caching.apply import apply_cg_taylor, apply_first_block_cache, apply_taylorseer
from comfyui_ditaccel.accel_core.caching.first_block import CGTaylorConfig, FirstBlockCacheConfig
from comfyui_ditaccel.accel_core.caching.taylorseer import TaylorSeerConfig
from comfyui_ditaccel.accel_core.comfy_patch import METHODS_KEY, report_holder, transformer_options
from comfyui_ditaccel.accel_core.guidance.apply import apply_softpag
from comfyui_ditaccel.accel_core.guidance.softpag import SoftPAGConfig
from comfyui_ditaccel.accel_core.spatial.apply import apply_jit, apply_ras
from comfyui_ditaccel.accel_core.spatial.jit import JiTConfig
from comfyui_ditaccel.accel_core.spatial.ras import RASConfig
from torch.utils._python_dispatch import TorchDispatchMode

from tools.runtime.sampling import WAN_FILE, load_model, sample

SIZES = ((128, 128), (128, 192), (192, 256))  # 64, 96 and 192 image tokens
STEPS = 8
TOLERANCE = 0.10

METHODS = {
    "taylorseer output": lambda m: apply_taylorseer(m, TaylorSeerConfig(interval=2, order=1, granularity="output")),
    "taylorseer blocks adaptive": lambda m: apply_taylorseer(
        m, TaylorSeerConfig(interval=3, order=2, granularity="blocks", threshold=0.5)),
    "taylorseer modules": lambda m: apply_taylorseer(m, TaylorSeerConfig(interval=2, order=1, granularity="modules")),
    "first-block cache": lambda m: apply_first_block_cache(m, FirstBlockCacheConfig(threshold=0.5, warmup_steps=1)),
    "cg-taylor": lambda m: apply_cg_taylor(m, CGTaylorConfig(threshold=0.5, warmup_steps=1)),
    "ras": lambda m: apply_ras(m, RASConfig(sample_ratio=0.25, warmup_steps=2, dense_steps=1)),
    "jit full context": lambda m: apply_jit(m, JiTConfig(full_context=True)),
    # SoftPAG's perturbed pass is a conditioning stream of its own for TaylorSeer's forecasts
    "taylorseer blocks over softpag": lambda m: apply_taylorseer(
        apply_softpag(m, SoftPAGConfig("2:all", 1.0, 3.0)),
        TaylorSeerConfig(interval=2, order=1, granularity="blocks")),
}


@pytest.fixture(scope="module")
def wan():
    return load_model(WAN_FILE)


def shape_of(size: tuple[int, int]) -> memory.RunShape:
    """What `sample` runs: one sample, cond and uncond (CFG 2), 7 text tokens, a 16-channel latent."""
    h, w = size[0] // 8, size[1] // 8
    return memory.RunShape(image_tokens=(h // 2) * (w // 2), text_tokens=7, batch=1, streams=2,
                           latent_values=16 * h * w)


def planned(model, size: tuple[int, int], form: int = 0) -> int:
    """The held bytes the methods on `model` declare for `size` (their `form`-th form)."""
    dims = memory.model_dims(WAN21, model.get_model_object("diffusion_model"), sparse_runs=False)
    table = transformer_options(model)[METHODS_KEY]
    return sum(m.memory(m.config, dims, shape_of(size))[form].held for m in table.methods.values())


@pytest.mark.parametrize("name", list(METHODS))
def test_held_memory_formula_matches_what_the_state_holds(wan, name):
    for size in SIZES:
        m = METHODS[name](wan)
        sample(m, steps=STEPS, size=size)
        record = report_holder(m).latest
        measured = record.state_peak_bytes
        assert measured > 0
        # the run's own plan (its shape read from the latent and the conditionings) ...
        assert abs(record.memory_held - measured) <= TOLERANCE * measured, (name, size, record.memory_held, measured)
        if "softpag" not in name:  # ... and the formulas at the shape written out here
            formula = planned(m, size)
            assert abs(formula - measured) <= TOLERANCE * measured, (name, size, formula, measured)


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the storages the ops inside it create that are still referenced by a tensor
    (a storage counts once however many views share it; the inputs' own storages do not count)."""

    def __init__(self, *inputs: torch.Tensor) -> None:
        super().__init__()
        self.outside = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        self.tensors: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if not isinstance(t, torch.Tensor) or id(t) in self.tensors:
                continue
            ptr, n = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
            if not n or ptr in self.outside:
                continue
            self.tensors[id(t)] = ptr
            self.refs[ptr] = self.refs.get(ptr, 0) + 1
            if self.refs[ptr] == 1:
                self.live += n
                self.peak = max(self.peak, self.live)
            weakref.finalize(t, self._drop, id(t), ptr, n)
        return out

    def _drop(self, key: int, ptr: int, n: int) -> None:
        self.tensors.pop(key, None)
        self.refs[ptr] -= 1
        if not self.refs[ptr]:
            del self.refs[ptr]
            self.live -= n


def _estimate_inputs(n_side: int, heads: int = 2, head_dim: int = 128, rows: int = 2):
    g = torch.Generator().manual_seed(n_side)
    layout = TileLayout((1, n_side, n_side), 16, 8)
    n = layout.tokens
    q, k, v = (torch.randn(rows, heads, n, head_dim, generator=g) for _ in range(3))
    stats = pisa.block_stats(k, v, layout.block_k)
    nqb, nkb = -(-n // layout.block_q), -(-n // layout.block_k)
    count = torch.full((rows, heads, nqb), 2, dtype=torch.int32)
    index = torch.zeros(rows, heads, nqb, nkb, dtype=torch.int32)
    index[..., 1] = 1
    out = torch.randn(rows, heads, n, head_dim, generator=g)
    lse = torch.randn(rows, heads, n, generator=g)
    return layout, q, out, lse, Selection(index, count), stats


@pytest.mark.parametrize("chunked", [False, True])
def test_estimate_transient_formula_matches_the_allocations(chunked):
    for side in (96, 112, 128):  # 9216, 12544 and 16384 tokens: the scores outgrow the queries
        layout, q, out, lse, selection, stats = _estimate_inputs(side)
        rows, heads, n, head_dim = q.shape
        nqb = -(-n // layout.block_q)
        chunk = engine.estimate_chunk(head_dim, layout.block_q, layout.block_k) if chunked else 0
        with LiveBytes(q, out, lse, *vars(stats).values(), selection.kv_index, selection.kv_count) as probe:
            result = pisa.add_estimate(q, out, lse, selection, stats, layout.block_q, chunk)
        del result
        query_rows = (chunk if chunked else nqb) * layout.block_q
        formula = engine.estimate_bytes(rows, heads, query_rows, -(-n // layout.block_k), head_dim,
                                        n if chunked else 0, out.element_size())
        assert abs(formula - probe.peak) <= TOLERANCE * probe.peak, (chunked, side, formula, probe.peak)


def test_chunked_form_runs_groups_of_heads_into_the_same_attention():
    config = SparseAttentionConfig(method="draft", density=0.25, estimate_skipped=True, min_tokens=1)
    layout = TileLayout((1, 64, 64), config.query_tile, config.key_tile)
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 16, layout.tokens, 64, generator=g) for _ in range(3))
    whole = engine.sparse_attention(q, k, v, layout, config, 10, engine.SiteState())
    parts = engine.sparse_attention(q, k, v, layout, config, 10, engine.SiteState(), memory.CHUNKED)
    assert engine.head_group(16) == 2
    torch.testing.assert_close(parts.out, whole.out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(parts.lse, whole.lse, rtol=1e-4, atol=1e-4)
    assert parts.kept == pytest.approx(whole.kept)


def test_chunked_estimate_matches_the_whole_one():
    layout, q, out, lse, selection, stats = _estimate_inputs(128)
    whole = pisa.add_estimate(q, out, lse, selection, stats, layout.block_q)
    chunk = engine.estimate_chunk(q.shape[-1], layout.block_q, layout.block_k)
    assert chunk < -(-layout.tokens // layout.block_q)  # it does cut: the last chunk is a part one
    parts = pisa.add_estimate(q, out, lse, selection, stats, layout.block_q, chunk)
    torch.testing.assert_close(parts[0], whole[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(parts[1], whole[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("form", [memory.DEVICE, memory.MODEL_DTYPE, memory.HOST])
def test_rettention_held_formula_matches_the_site_state(form):
    config = SparseAttentionConfig(method="rettention", density=0.25, dense_steps=0, dense_blocks=0, min_tokens=1)
    dims = memory.ModelDims("probe", (memory.ListDims(1),), width=256, heads=2, hidden_itemsize=2,
                            compute_itemsize=2)
    for side in (32, 48, 64):
        layout = TileLayout((1, side, side), config.query_tile, config.key_tile)
        g = torch.Generator().manual_seed(side)
        q, k, v = (torch.randn(2, 2, layout.tokens, 128, generator=g).to(torch.bfloat16) for _ in range(3))
        site = engine.SiteState()
        engine.sparse_attention(q, k, v, layout, config, 0, site, form)
        held = site.reshape.ratio.nbytes + site.reshape.residual.nbytes
        shape = memory.RunShape(image_tokens=layout.tokens, text_tokens=0, batch=1, streams=2,
                                latent_values=layout.tokens)
        need = {n.form: n for n in sparse_needs(config, dims, shape)}[form]
        assert abs(need.held + need.host - held) <= TOLERANCE * held, (form, side, need, held)
        assert (site.reshape.residual.device.type == "cpu") and (form != memory.DEVICE or
                                                                 site.reshape.residual.dtype == torch.float32)


def test_host_form_runs_the_same_arithmetic(wan, monkeypatch):
    """On the CPU the host form keeps its caches in the same memory: its output is bit-identical, and the
    report names the form the plan chose."""
    size = SIZES[0]
    m = METHODS["ras"](apply_taylorseer(wan, TaylorSeerConfig(interval=2, order=1, granularity="blocks")))
    reference = sample(m, steps=STEPS, size=size)
    device_form = planned(m, size)
    monkeypatch.setenv(memory.DEVICE_ENV, str(device_form // 2))
    out = sample(m, steps=STEPS, size=size)
    record = report_holder(m).latest
    assert torch.equal(out, reference)
    assert any(line.startswith("DiTAccelRAS: host memory") for line in record.memory), record.memory
    assert "memory: DiTAccelRAS: host memory" in record.summary()


def test_a_graph_that_cannot_fit_is_refused_before_the_first_step(wan, monkeypatch):
    monkeypatch.setenv(memory.DEVICE_ENV, "150KB")
    m = METHODS["taylorseer modules"](wan)
    steps = []
    with pytest.raises(memory.MemoryRefused) as refused:
        import comfy.sample

        latent = torch.zeros(1, 16, 1, 16, 16)
        from tools.runtime.sampling import conditioning
        comfy.sample.sample(m, comfy.sample.prepare_noise(latent, 0), STEPS, 2.0, "euler", "simple",
                            conditioning(1), conditioning(2), latent, seed=0, disable_pbar=True,
                            callback=lambda *a: steps.append(a[0]))
    text = str(refused.value)
    assert steps == []
    assert text.startswith("DiTAccelTaylorSeer: not enough memory")
    assert "0.1 MB is free for it, as DITACCEL_DEVICE_MEMORY sets" in text
    assert "Fits with granularity 'output'" in text
    assert report_holder(m).latest.status == "stopped: MemoryRefused"


def test_refusal_names_a_setting_that_fits():
    dims = memory.ModelDims("probe", (memory.ListDims(30, modules=3),), width=1536, heads=12, hidden_itemsize=4,
                            compute_itemsize=2)
    shape = memory.RunShape(image_tokens=32760, text_tokens=512, batch=1, streams=2, latent_values=16 * 21 * 60 * 104)
    from comfyui_ditaccel.accel_core.caching import taylorseer

    config = TaylorSeerConfig(order=1, granularity="modules")
    entry = memory.Entry(taylorseer.KEY, "DiTAccelTaylorSeer", lambda s: taylorseer.memory_needs(config, dims, s),
                         [(t, lambda s, c=c: taylorseer.memory_needs(c, dims, s))
                          for t, c in taylorseer.memory_hints(config)])
    budget = memory.Budget(2 * 10**9, 0, "test", host_relieves=True)
    with pytest.raises(memory.MemoryRefused, match="Fits with granularity 'output'"):
        memory.plan([entry], shape, budget)


@pytest.mark.parametrize("text,expected", [("2GB", 2 * 10**9), ("512 MB", 512 * 10**6), ("1.5GiB", int(1.5 * 2**30)),
                                           ("123", 123)])
def test_budget_sizes_parse(text, expected):
    assert memory.parse_bytes(text, memory.DEVICE_ENV) == expected


def test_a_bad_budget_names_the_variable():
    with pytest.raises(ValueError, match="DITACCEL_DEVICE_MEMORY='lots'"):
        memory.parse_bytes("lots", memory.DEVICE_ENV)


def test_the_memory_table_in_the_docs_is_what_the_tool_prints_now():
    from tools import REPO
    from tools.benchmarks import memory_table

    page = memory_table.page()
    assert (REPO / "docs" / "results" / "memory.md").read_text() == page, \
        "regenerate: .venv/bin/python -m tools.benchmarks.memory_table --out docs/results/memory.md"
    # every node at its defaults fits at every size listed, in some form, or the table shows the refusal
    rows = [line for line in page.splitlines() if line.startswith("| ") and "DiTAccel" in line]
    assert len(rows) == len(memory_table.SIZES) * len(memory_table.NODES)
    for row in rows:
        form = row.rstrip(" |").rsplit("|", 1)[1].strip()
        assert form.startswith(("device", "host memory", "model dtype", "chunked", "refused: not enough memory",
                                "not supported", "keeps nothing")), row


@pytest.mark.parametrize("name", ["taylorseer blocks", "first-block cache", "cg-taylor"])
def test_held_memory_formula_on_joint_blocks(name):
    """Flux's stack ends in single blocks that carry text and image tokens together (bf16 weights computed in
    float32 on the CPU): the run's plan against what the state held."""
    import comfy.sd

    from tools.runtime import dit_runtime
    from tools.runtime.sampling import conditioning

    flux = comfy.sd.load_diffusion_model(str(dit_runtime.ensure_flux_thin()))
    apply = {"taylorseer blocks": lambda m: apply_taylorseer(m, TaylorSeerConfig(interval=2, order=1,
                                                                                 granularity="blocks")),
             "first-block cache": METHODS["first-block cache"], "cg-taylor": METHODS["cg-taylor"]}[name]
    for size in ((64, 64), (64, 128)):
        m = apply(flux)
        cond, neg = conditioning(1, tokens=5, pooled=2048), conditioning(2, tokens=5, pooled=2048)
        sample(m, steps=4, size=size, video=False, positive=cond, negative=neg)
        record = report_holder(m).latest
        if name != "taylorseer blocks" and record.state_peak_bytes == 0:
            pytest.skip("the gated caches need two blocks; the thin Flux model has one")
        assert abs(record.memory_held - record.state_peak_bytes) <= TOLERANCE * record.state_peak_bytes, \
            (name, size, record.memory_held, record.state_peak_bytes)
