"""The one layer that touches ComfyUI: how a method is attached to a ModelPatcher.

- `attach(model, method)` clones the patcher, checks the family, registers the method and
  the pack's two keyed wrappers (OUTER_SAMPLE: fresh `RunContext` per sampling run, dropped
  after; APPLY_MODEL: per-call record for the report — every family's model call goes
  through it, unlike DIFFUSION_MODEL, which 0.3.75's MMDiT (SD3) forward does not offer), and
  an innermost DIFFUSION_MODEL wrapper that marks the call's forward as run, so a call another
  node's cache answered (EasyCache, LazyCache) counts as reused, not as computed.
- `set_block_patches` installs `patches_replace["dit"]` entries that know their own block
  index (Wan on 0.3.75 does not set `block_index`) and chain to a patch already there; for
  blocks the model calls directly (Lumina 2, HiDream), an object patch routes the call through them.
- `set_module_wrappers` puts a `ModuleWrapper` on named submodules of every block through
  ModelPatcher object patches (for methods that replace attention / MLP outputs).
- `set_attention_override` installs an attention override that chains to whatever override
  was there before.

Only public extension points are used; nothing here edits a ComfyUI module or model class.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from comfy.model_patcher import ModelPatcher, create_model_options_clone
from comfy.patcher_extension import WrappersMP

from . import memory
from .adapters import HOOK_FORWARD, HOOK_MODEL_CALL, BlockList, ModelAdapter, adapter_for
from .metrics import FlopCounter, tensor_bytes
from .module_wrap import BlockCallHook, ModuleSlot, ModuleWrapper, unwrapped
from .report import RAN_REUSED, CallRecord, ReportHolder
from .run_context import BlockHook, BlockSite, Method, RunContext, stream_labels
from .settings import variants

WRAPPER_KEY = "ditaccel"
RUN_KEY = "ditaccel_run"
REPORT_KEY = "ditaccel_report"
METHODS_KEY = "ditaccel_methods"
ATTENTION_OWNERS_KEY = "ditaccel_attention_owners"  # methods whose attention override must run


class AttentionOverrideLost(RuntimeError):
    """A node applied after the pack's attention methods replaced ComfyUI's attention override."""

AttentionFn = Callable[..., torch.Tensor]


class MethodTable:
    """Methods registered on one patched model, in the order they were applied.

    Copy-on-write: attaching builds a new table, so sharing one between clones is safe.
    """

    def __init__(self, methods: dict[str, Method] | None = None) -> None:
        self.methods: dict[str, Method] = dict(methods or {})

    def __deepcopy__(self, memo: dict) -> MethodTable:
        return self

    def with_method(self, method: Method) -> MethodTable:
        methods = {k: v for k, v in self.methods.items() if k != method.key}
        methods[method.key] = method
        return MethodTable(methods)


def transformer_options(model: ModelPatcher) -> dict:
    return model.model_options.setdefault("transformer_options", {})


def report_holder(model: ModelPatcher) -> ReportHolder | None:
    return transformer_options(model).get(REPORT_KEY)


def attach(model: ModelPatcher, method: Method | None, needs: frozenset[str] = frozenset(),
           name: str = "DiTAccel") -> tuple[ModelPatcher, ModelAdapter]:
    """Clone `model`, check its family supports `needs`, register `method` and the pack's wrappers."""
    adapter = adapter_for(model.get_model_object("diffusion_model"), needs | {HOOK_MODEL_CALL}, name)
    m = model.clone()
    to = transformer_options(m)
    if not isinstance(to.get(REPORT_KEY), ReportHolder):
        to[REPORT_KEY] = ReportHolder()
    table = to.get(METHODS_KEY) or MethodTable()
    if method is not None:
        table = table.with_method(method)
    to[METHODS_KEY] = table
    if not m.get_wrappers(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY):
        m.add_wrapper_with_key(WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, _outer_sample_wrapper)
        m.add_wrapper_with_key(WrappersMP.APPLY_MODEL, WRAPPER_KEY, _model_call_wrapper)
    if not m.get_wrappers(WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY):
        m.add_wrapper_with_key(WrappersMP.PREPARE_SAMPLING, WRAPPER_KEY, _prepare_sampling_wrapper)
    # innermost of the forward's wrappers, moved there by every DiTAccel node: a cache node applied
    # before this one (EasyCache, LazyCache) that skips the forward leaves the call unmarked
    m.remove_wrappers_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)
    m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY, _forward_ran_wrapper)
    return m, adapter


def _outer_sample_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    guider = executor.class_obj
    original_options = guider.model_options
    to = original_options.get("transformer_options", {})
    holder, table = to.get(REPORT_KEY), to.get(METHODS_KEY)
    if holder is None or table is None:
        return executor(*args, **kwargs)
    diffusion_model = guider.model_patcher.get_model_object("diffusion_model")
    adapter = adapter_for(diffusion_model)
    sigmas = [float(s) for s in args[3]]
    record = holder.start_run(tuple(m.label for m in table.methods.values()), sigmas)
    ctx = RunContext(adapter=adapter, flops=FlopCounter(adapter, diffusion_model), record=record,
                     sample_sigmas=sigmas, last_list=adapter.last_list(diffusion_model),
                     token_pad=adapter.pad_multiple(diffusion_model),
                     variant=_run_variant(guider, adapter, diffusion_model, sigmas, args[0] if args else None),
                     latent_positions=_positions(args[0] if args else None))
    start = time.perf_counter()
    try:
        # before any state exists and before ComfyUI loads the model: a graph that cannot fit stops here
        plan = _memory_plan(guider, table, ctx, diffusion_model, args[0] if args else None)
        ctx.forms = {key: need.form for key, need in plan.chosen.items()}
        ctx.memory_extra = plan.extra
        record.memory = tuple(plan.lines)
        record.memory_held = plan.held
        for key, method in table.methods.items():
            ctx.states[key] = method.new_run_state(ctx)
        record.methods = tuple(ctx.labels.get(key, m.label) for key, m in table.methods.items())
        record.variant = f"{ctx.variant.name} ({ctx.variant.why})"
        record.settings = tuple(ctx.settings.values())
        args, kwargs = _with_step_callback(ctx, list(args), kwargs)
        guider.model_options = create_model_options_clone(original_options)
        guider.model_options["transformer_options"][RUN_KEY] = ctx
        out = executor(*args, **kwargs)
        record.status = "finished"
        return out
    except BaseException as e:
        record.status = f"stopped: {type(e).__name__}"
        raise
    finally:
        record.seconds = time.perf_counter() - start
        record.state_bytes = tensor_bytes(ctx.states)
        guider.model_options = original_options


# a step's compute time for the report's host-copy estimate (bf16 dense, a 4090 / A100 class GPU)
ASSUMED_DEVICE_FLOPS = 150e12


def run_shape(adapter: ModelAdapter, noise: torch.Tensor, conds: dict, cfg: float | None,
              extra_streams: int = 0) -> memory.RunShape:
    """The run as memory sees it: tokens from the latent and the conditionings, one stream per conditioning
    entry (the negative ones drop out at CFG 1, which ComfyUI then skips), plus `extra_streams` per
    positive entry (a method's extra passes, e.g. SoftPAG's perturbed one)."""
    entries = {k: v for k, v in (conds or {}).items()
               if isinstance(v, list) and not (k == "negative" and cfg is not None and abs(cfg - 1.0) < 1e-9)}
    text = [c["cross_attn"].shape[1] for v in entries.values() for c in v
            if isinstance(c, dict) and isinstance(c.get("cross_attn"), torch.Tensor) and c["cross_attn"].dim() == 3]
    shape = tuple(noise.shape)
    return memory.RunShape(image_tokens=adapter.image_tokens(shape), text_tokens=max(text, default=0),
                           batch=shape[0], streams=max(1, sum(len(v) for v in entries.values())
                                                       + extra_streams * len(entries.get("positive", []))),
                           latent_values=int(torch.Size(shape[1:]).numel()))


def _memory_plan(guider: Any, table: MethodTable, ctx: RunContext, diffusion_model: Any,
                 noise: Any) -> memory.Plan:
    methods = [m for m in table.methods.values() if getattr(m, "memory", None) is not None]
    if not methods or not isinstance(noise, torch.Tensor):
        return memory.Plan()
    from .attention.dispatch import triton_ready

    patcher = guider.model_patcher
    device = torch.device(patcher.load_device)
    base_model = patcher.model
    dtype = getattr(base_model, "manual_cast_dtype", None) or base_model.get_dtype()
    dims = memory.model_dims(ctx.adapter, diffusion_model, sparse_runs=device.type == "cuda" and triton_ready(),
                             compute_itemsize=torch.empty((), dtype=dtype).element_size())
    shape = run_shape(ctx.adapter, noise, getattr(guider, "conds", {}), getattr(guider, "cfg", None),
                      sum(getattr(m, "extra_streams", 0) for m in methods))
    def forms(method: Any, config: Any) -> Callable[[memory.RunShape], Any]:
        return lambda s: method.memory(config, dims, s)

    entries = []
    for m in methods:
        hints = [(text, forms(m, c)) for text, c in (m.memory_hints(m.config) if m.memory_hints else [])]
        entries.append(memory.Entry(m.key, m.node or m.key, forms(m, m.config), hints))
    step_s = None
    if device.type == "cuda":
        step_s = ctx.flops.stack(shape.image_tokens, shape.text_tokens, batch=shape.rows) / ASSUMED_DEVICE_FLOPS
    return memory.plan(entries, shape, _budget(patcher, noise, guider), step_s)


def _budget(patcher: ModelPatcher, noise: torch.Tensor, guider: Any) -> memory.Budget:
    """What the pack's methods may use: DITACCEL_DEVICE_MEMORY when set; else the device's free memory plus
    the weights ComfyUI can offload from it, less ComfyUI's own estimate of the sampling's activations."""
    import comfy.model_management as mm

    device = torch.device(patcher.load_device)
    host_free = int(mm.get_free_memory(torch.device("cpu")))
    host = memory.env_budget(memory.HOST_ENV)
    host = int(host_free * 0.8) if host is None else host  # leave room for the rest of the process
    activations = _comfy_estimate(patcher, noise, guider)
    set_by_hand = memory.env_budget(memory.DEVICE_ENV)
    if set_by_hand is not None:
        return memory.Budget(set_by_hand, host, f"as {memory.DEVICE_ENV} sets", activations, host_relieves=True)
    if device.type == "cpu":
        free = max(host_free - activations, 0)
        return memory.Budget(free, free, "host memory free beside ComfyUI's estimate of the sampling's activations",
                             activations, host_relieves=False)
    offloadable = sum(int(lm.model.loaded_size()) for lm in mm.current_loaded_models
                      if getattr(lm, "device", None) == device and lm.model is not None)
    free = int(mm.get_free_memory(device)) + offloadable - activations - int(mm.extra_reserved_memory())
    return memory.Budget(max(free, 0), host, f"{device} free with every weight offloaded, beside ComfyUI's estimate "
                         f"of the sampling's activations", activations)


def _comfy_estimate(patcher: ModelPatcher, noise: torch.Tensor, guider: Any) -> int:
    """ComfyUI's own estimate of a sampling's activation memory (what its loader keeps free)."""
    import comfy.sampler_helpers

    try:
        return int(comfy.sampler_helpers.estimate_memory(patcher, noise.shape, getattr(guider, "conds", {}))[0])
    except Exception:  # an estimate for a budget: a family whose conds it cannot read counts none
        return 0


def _prepare_sampling_wrapper(executor: Any, model: ModelPatcher, noise_shape: Any, conds: Any, *args: Any,
                              **kwargs: Any) -> Any:
    """After ComfyUI has loaded the model for the sampling: make room for the methods' planned extra memory,
    so its loader offloads weights (partially unloading the model) instead of sampling running out of memory."""
    out = executor(model, noise_shape, conds, *args, **kwargs)
    options = kwargs.get("model_options") if "model_options" in kwargs else (args[0] if args else None)
    ctx = run_context((options or {}).get("transformer_options", {}))
    device = torch.device(model.load_device)
    if ctx is not None and ctx.memory_extra > 0 and device.type != "cpu":
        import comfy.model_management as mm
        import comfy.sampler_helpers

        activations = comfy.sampler_helpers.estimate_memory(model, noise_shape, conds)[0]
        mm.free_memory(activations + ctx.memory_extra + mm.extra_reserved_memory(), device)
    return out


def _positions(noise: Any) -> int:
    """Frames x height x width of the latent (what a calibration profile's size bucket counts)."""
    return int(noise[0, 0].numel()) if isinstance(noise, torch.Tensor) and noise.dim() >= 4 else 0


def _run_variant(guider: Any, adapter: ModelAdapter, diffusion_model: Any, sigmas: list[float],
                 noise: Any) -> variants.Variant:
    """The variant this run shows: the model's dimensions, then the sigma range and frames it samples."""
    sampling = getattr(guider.model_patcher.model, "model_sampling", None)
    sigma_max = float(getattr(sampling, "sigma_max", sigmas[0] if sigmas else 1.0))
    frames = int(noise.shape[2]) if isinstance(noise, torch.Tensor) and noise.dim() == 5 else 1
    return variants.refine(variants.identify(adapter, diffusion_model), sigmas, sigma_max, frames)


def _with_step_callback(ctx: RunContext, args: list, kwargs: dict) -> tuple[list, dict]:
    """Count finished sampler steps through the sampler's per-step callback (position 5)."""
    if len(args) > 5:
        original = args[5]
    else:
        original = kwargs.get("callback")

    def callback(step: int, *rest: Any) -> Any:
        ctx.on_step_done(step)
        if original is not None:
            return original(step, *rest)
        return None

    if len(args) > 5:
        args[5] = callback
    else:
        kwargs["callback"] = callback
    return args, kwargs


def run_context(to: dict) -> RunContext | None:
    return to.get(RUN_KEY)


def _model_call_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """BaseModel.apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **conds)."""
    to = args[5] if len(args) > 5 and isinstance(args[5], dict) else kwargs.get("transformer_options") or {}
    ctx = run_context(to)
    if ctx is None:
        return executor(*args, **kwargs)
    x = args[0]
    context = args[3] if len(args) > 3 else kwargs.get("c_crossattn")
    n_txt = ctx.adapter.text_tokens(context, kwargs)
    n_img = ctx.adapter.image_tokens(tuple(x.shape))
    full = ctx.flops.stack(n_img, n_txt, batch=x.shape[0])
    sigmas = to.get("sigmas")
    call = CallRecord(step=ctx.step, sigma=float(sigmas[0]) if sigmas is not None else float("nan"),
                      streams=stream_labels(to.get("cond_or_uncond")), batch=x.shape[0],
                      image_tokens=n_img, text_tokens=n_txt, flops_full=full, flops_run=full,
                      grid=ctx.adapter.token_grid(tuple(x.shape)))
    ctx.current_call = call
    start = time.perf_counter()
    try:
        out = executor(*args, **kwargs)
        if isinstance(out, torch.Tensor) and out.is_cuda:
            torch.cuda.synchronize(out.device)
        if ctx.adapter.offers(HOOK_FORWARD) and not call.forward_ran and not call.skipped:
            call.mark_skipped(call.flops_run, "the whole model (another node reused an output)", RAN_REUSED)
        _check_override_ran(to, ctx, call)
        return out
    finally:
        call.seconds = time.perf_counter() - start
        ctx.record.calls.append(call)
        ctx.current_call = None


def _check_override_ran(to: dict, ctx: RunContext, call: CallRecord) -> None:
    """A model call that ran blocks must have gone through the pack's attention override when a
    method installed one: newer ComfyUI's ModelAttentionBackend (and other nodes) replace the
    override without chaining, which would turn the method off without a word."""
    owners = to.get(ATTENTION_OWNERS_KEY)
    ran_blocks = call.flops_run > 0 and (call.forward_ran or not ctx.adapter.offers(HOOK_FORWARD))
    if owners and ran_blocks and not call.override_ran:
        names = ", ".join(o.removeprefix("ditaccel.") for o in owners)
        raise AttentionOverrideLost(
            f"DiTAccel: the attention work of {names} did not run: a node applied after it replaced ComfyUI's "
            f"attention override (e.g. ModelAttentionBackend or another attention patch). Remove that node "
            f"from this model's chain, or remove the DiTAccel attention node.")


def forward_options(args: tuple, kwargs: dict) -> dict:
    """The transformer_options of a DIFFUSION_MODEL call (families pass them by position or by name)."""
    found = next((a for a in args if isinstance(a, dict) and RUN_KEY in a), None)
    return found or kwargs.get("transformer_options") or {}


def _forward_ran_wrapper(executor: Any, *args: Any, **kwargs: Any) -> Any:
    """DIFFUSION_MODEL wrapper: the forward of the call in progress ran (its FLOPs are real)."""
    ctx = run_context(forward_options(args, kwargs))
    if ctx is not None and ctx.current_call is not None:
        ctx.current_call.forward_ran = True
    return executor(*args, **kwargs)


ForwardFn = Callable[..., Any]  # a DIFFUSION_MODEL wrapper: fn(executor, *args, **kwargs)


def set_forward_wrapper(model: ModelPatcher, owner: str, fn: ForwardFn | None) -> None:
    """Install `owner`'s DIFFUSION_MODEL wrapper (None: remove it), replacing one applied before.

    It goes inside the pack's forward-ran marker, so a call it answers itself is not taken for one
    another node's cache answered; the method marks such calls in the report.
    """
    model.remove_wrappers_with_key(WrappersMP.DIFFUSION_MODEL, owner)
    if fn is not None:
        model.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, owner, fn)


def clear_block_patches(model: ModelPatcher, owner: str) -> None:
    """Remove `owner`'s links from every block's patch chain (a method re-applied in another form)."""
    to = transformer_options(model)
    table = to.get("patches_replace", {}).get("dit")
    if not table:
        return
    kept = {where: _without_owner(patch, owner) for where, patch in table.items()}
    # copy on write, as ComfyUI's own setters do: the dicts may be shared with the source model
    to["patches_replace"] = {**to["patches_replace"], "dit": {w: p for w, p in kept.items() if p is not None}}


class BlockPatch:
    """A patches_replace["dit"] entry for one block of one method, chained to the entry it displaced."""

    def __init__(self, owner: str, fn: BlockHook, site: BlockSite, previous: Any) -> None:
        self.owner = owner
        self.fn = fn
        self.site = site
        self.previous = previous
        self.innermost = False  # placed under the pack's other links (see set_block_patches)

    def __deepcopy__(self, memo: dict) -> BlockPatch:
        return self

    def __call__(self, args: dict, extra: dict) -> dict:
        original = extra["original_block"]
        previous = self.previous
        if previous is None:
            call_block = original
        else:
            def call_block(block_args: dict) -> dict:
                return previous(block_args, extra)
        ctx = run_context(args.get("transformer_options") or {})
        return self.fn(args, call_block, self.site, ctx)


def set_block_patches(model: ModelPatcher, adapter: ModelAdapter, owner: str, fn: BlockHook,
                      block_filter: Callable[[BlockSite], bool] | None = None, innermost: bool = False) -> int:
    """Install `fn` on every block (or those `block_filter` keeps); returns how many were patched.

    `innermost`: the link goes below the pack's other links, next to the block itself, whatever the
    order the nodes were applied in (a method that runs blocks on part of the tokens must be the
    only one that sees the part: the others see whole-image tensors).
    """
    diffusion_model = model.get_model_object("diffusion_model")
    current = transformer_options(model).get("patches_replace", {}).get("dit", {})
    sizes = [(spec, len(getattr(diffusion_model, spec.attr, ()))) for spec in adapter.block_lists]
    total = sum(n for _, n in sizes)
    flat, patched = 0, 0
    for spec, n in sizes:
        for i in range(n):
            site = BlockSite(spec=spec, index=i, flat_index=flat, last=flat == total - 1)
            flat += 1
            if block_filter is not None and not block_filter(site):
                continue
            previous = _without_owner(current.get((spec.replace_name, i)), owner)
            link = _below_pack_links(previous, owner, fn, site) if innermost else BlockPatch(owner, fn, site, previous)
            model.set_model_patch_replace(link, "dit", spec.replace_name, i)
            if spec.call_args:
                _route_block_calls(model, spec, i)
            patched += 1
    return patched


def _route_block_calls(model: ModelPatcher, spec: BlockList, index: int) -> None:
    """Blocks the model calls directly get an object patch that looks up patches_replace for them."""
    path = f"diffusion_model.{spec.attr}.{index}"
    block = model.get_model_object(path)
    if not isinstance(block, BlockCallHook):
        model.add_object_patch(path, BlockCallHook(block, spec.replace_name, index, spec.call_args, spec.returns))


def _below_pack_links(patch: Any, owner: str, fn: BlockHook, site: BlockSite) -> BlockPatch:
    """`patch`'s chain with `owner`'s link put under every pack link (above a foreign patch, if any)."""
    if isinstance(patch, BlockPatch) and not getattr(patch, "innermost", False):
        return BlockPatch(patch.owner, patch.fn, patch.site, _below_pack_links(patch.previous, owner, fn, site))
    link = BlockPatch(owner, fn, site, patch)
    link.innermost = True
    return link


def _without_owner(patch: Any, owner: str) -> Any:
    """The chain below `patch` with `owner`'s links removed: applying a method again replaces it."""
    if not isinstance(patch, BlockPatch | AttentionOverride):
        return patch
    rest = _without_owner(patch.previous, owner)
    if patch.owner == owner:
        return rest
    if rest is patch.previous:
        return patch
    if isinstance(patch, BlockPatch):
        link = BlockPatch(patch.owner, patch.fn, patch.site, rest)
        link.innermost = patch.innermost
        return link
    return AttentionOverride(patch.owner, patch.fn, rest)


class AttentionOverride:
    """transformer_options["optimized_attention_override"] that chains to the previous override.

    `fn(call_next, ctx, q, k, v, heads, **kwargs)`; `call_next(q, k, v, heads, **kwargs)` runs the
    previous override, or ComfyUI's own attention function when there was none;
    `call_next.with_base(f)` is the same chain with `f` in place of ComfyUI's function.
    """

    def __init__(self, owner: str, fn: AttentionFn, previous: Callable[..., torch.Tensor] | None) -> None:
        self.owner = owner
        self.fn = fn
        self.previous = previous

    def __deepcopy__(self, memo: dict) -> AttentionOverride:
        return self

    def __call__(self, func: Callable[..., torch.Tensor], *args: Any, **kwargs: Any) -> torch.Tensor:
        previous = self.previous

        def with_base(base: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
            def run(*a: Any, **kw: Any) -> torch.Tensor:
                if previous is not None:
                    return previous(base, *a, **kw)
                return base(*a, **kw)

            return run

        call_next = with_base(func)
        # a method that computes attention itself hands its function down as the chain's base, so
        # overrides that post-process attention (e.g. SoftPAG's head mixing) still apply to its output;
        # `base` is ComfyUI's own function, for a base that wraps it
        call_next.with_base = with_base  # type: ignore[attr-defined]
        call_next.base = func  # type: ignore[attr-defined]
        ctx = run_context(kwargs.get("transformer_options") or {})
        if ctx is not None and ctx.current_call is not None:
            ctx.current_call.override_ran = True
        return self.fn(call_next, ctx, *args, **kwargs)


def set_attention_override(model: ModelPatcher, owner: str, fn: AttentionFn) -> None:
    to = transformer_options(model)
    previous = _without_owner(to.get("optimized_attention_override"), owner)
    to["optimized_attention_override"] = AttentionOverride(owner, fn, previous)
    to[ATTENTION_OWNERS_KEY] = tuple(sorted({*to.get(ATTENTION_OWNERS_KEY, ()), owner}))


def set_module_wrappers(model: ModelPatcher, adapter: ModelAdapter, owner: str, slot: ModuleSlot) -> list[str]:
    """Wrap each block's output modules (`BlockList.output_modules`) with object patches on the clone `model`.

    Returns the wrapper keys, "<list attr>.<block>.<name>", in block order.
    """
    diffusion_model = model.get_model_object("diffusion_model")
    keys = []
    for spec in adapter.block_lists:
        for i in range(len(getattr(diffusion_model, spec.attr, ()))):
            for name in spec.output_modules:
                path = f"diffusion_model.{spec.attr}.{i}.{name}"
                inner = unwrapped(model.get_model_object(path), owner)
                key = f"{spec.attr}.{i}.{name}"
                model.add_object_patch(path, ModuleWrapper(owner, key, inner, slot))
                keys.append(key)
    return keys


def remove_post_cfg(model: ModelPatcher, owner: str) -> None:
    """Drop `owner`'s post-CFG functions from the clone `model` (applying a method again replaces them)."""
    fns = model.model_options.get("sampler_post_cfg_function", [])
    model.model_options["sampler_post_cfg_function"] = [f for f in fns if getattr(f, "owner", None) != owner]


def add_post_cfg(model: ModelPatcher, fn: Callable[[dict], torch.Tensor]) -> None:
    """Add `fn` (with an `owner`) to the clone's post-CFG functions, replacing the owner's earlier one.

    Functions run in the order of their `post_cfg_order` (default 0), then in the order the nodes
    were applied: guidance terms (0) first, then what reads the guided result (RAS's ranking, 1),
    then what rewrites it token by token (JiT's fill, 2).
    """
    remove_post_cfg(model, fn.owner)
    fns = [*model.model_options.get("sampler_post_cfg_function", []), fn]
    model.model_options["sampler_post_cfg_function"] = sorted(fns, key=lambda f: getattr(f, "post_cfg_order", 0))


def run_conds(model: Any, conds: list, x: torch.Tensor, sigma: torch.Tensor, model_options: dict,
              extra_options: dict) -> list[torch.Tensor]:
    """One extra model evaluation of `conds` (e.g. a perturbed pass), with `extra_options` added to
    a copy of the transformer options."""
    import comfy.samplers

    options = create_model_options_clone(model_options)
    options.setdefault("transformer_options", {}).update(extra_options)
    return comfy.samplers.calc_cond_batch(model, conds, x, sigma, options)


def sample_and_decode(model: ModelPatcher, positive: list, negative: list, latent: dict, vae: Any, seed: int,
                      steps: int, cfg: float, sampler_name: str, scheduler: str) -> torch.Tensor:
    """What KSampler + VAEDecode compute, as one call (for searches that sample many times: no progress bar)."""
    samples = _sample(model, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler, None, True)
    images = vae.decode(samples)
    if images.dim() == 5:  # video VAEs decode (B, T, H, W, C)
        images = images.reshape(-1, *images.shape[-3:])
    return images


def sample_with_progress(model: ModelPatcher, positive: list, negative: list, latent: dict, seed: int, steps: int,
                         cfg: float, sampler_name: str, scheduler: str) -> torch.Tensor:
    """What KSampler computes, with its progress bar and preview: ComfyUI's progress hook also raises when
    the user presses Cancel, so a long sampling inside a node stops like KSampler's."""
    import latent_preview

    callback = latent_preview.prepare_callback(model, steps)
    return _sample(model, positive, negative, latent, seed, steps, cfg, sampler_name, scheduler, callback, False)


def _sample(model: ModelPatcher, positive: list, negative: list, latent: dict, seed: int, steps: int, cfg: float,
            sampler_name: str, scheduler: str, callback: Callable[..., Any] | None, disable_pbar: bool) -> torch.Tensor:
    import comfy.sample

    latent_image = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    noise = comfy.sample.prepare_noise(latent_image, seed, latent.get("batch_index"))
    return comfy.sample.sample(model, noise, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                               noise_mask=latent.get("noise_mask"), callback=callback, disable_pbar=disable_pbar,
                               seed=seed)


def weights_and_patches(model: ModelPatcher) -> tuple[list[tuple[str, torch.Tensor]], str]:
    """The diffusion model's named weights (as loaded, before patches) and a digest of the patches ComfyUI
    applies on top (LoRAs: which weights, which strengths, sampled values of the patch tensors).

    While the model is loaded ComfyUI has written the patches into the weights and keeps the originals in
    its `backup`; those are read instead, so the fingerprint is the same loaded or not."""
    backup = getattr(model, "backup", {}) or {}
    named = [(key, backup[key].weight if key in backup else value)
             for key, value in model.model.state_dict().items() if key.startswith("diffusion_model.")]
    parts = []
    for key in sorted(model.patches):
        for patch in model.patches[key]:
            values = [t for t in _tensors(patch) if t.numel()]
            sampled = [float(t.flatten()[:: max(1, t.numel() // 8)][:8].float().sum()) for t in values]
            parts.append(f"{key}:{[p for p in patch if isinstance(p, (int, float))]}:{sampled}")
    return named, "\n".join(parts)


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    weights = getattr(obj, "weights", None)  # newer ComfyUI wraps a LoRA's tensors in an adapter object
    return _tensors(weights) if weights is not None else []
