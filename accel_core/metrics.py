"""Quality metrics (PSNR, SSIM, relative L2) and transformer FLOP estimates."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .adapters import BlockList, ModelAdapter


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    if mse == 0.0:
        return float("inf")
    return 10.0 * torch.log10(torch.tensor(data_range**2 / mse)).item()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window) over channels; images HxWxC or NxHxWxC in [0, range]."""
    def to_nchw(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        if x.dim() == 3:
            x = x.unsqueeze(0)
        return x.permute(0, 3, 1, 2)

    x, y = to_nchw(a), to_nchw(b)
    c = x.shape[1]
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean().item()


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    return (torch.linalg.vector_norm((a - b).double()) / torch.linalg.vector_norm(b.double()).clamp_min(1e-12)).item()


def _tokens_for(name: str, spec: BlockList, n_img: int, n_txt: int) -> int:
    if spec.vector_linear_prefixes and name.startswith(spec.vector_linear_prefixes):
        return 1
    if spec.text_linear_prefixes and name.startswith(spec.text_linear_prefixes):
        return n_txt
    return n_img + n_txt if spec.joint_tokens else n_img


def _expert_shares(block: torch.nn.Module, spec: BlockList) -> dict[str, float]:
    """Name prefix of each routed expert list -> the share of its experts a token runs (top-k of n)."""
    shares = {}
    for path in spec.routed_experts:
        moe = block.get_submodule(path)
        shares[f"{path}.experts."] = moe.num_activated_experts / len(moe.experts)
    return shares


def _share(name: str, shares: dict[str, float]) -> float:
    return next((s for prefix, s in shares.items() if name.startswith(prefix)), 1.0)


def block_flops(block: torch.nn.Module, spec: BlockList, n_img: int, n_txt: int, n_keys: int | None = None) -> float:
    """Multiply-add FLOPs (2 per MAC) of one block for one sample: its linears plus attention.

    `n_keys`: image keys each image query attends to, where that differs from `n_img` (a block run
    on part of the tokens whose attention still sees every token's cached key).
    """
    keys = n_img if n_keys is None else n_keys
    linears = [(n, m.weight.shape) for n, m in block.named_modules()
               if getattr(m, "weight", None) is not None and m.weight.dim() == 2]
    if not linears:
        return 0.0
    shares = _expert_shares(block, spec)
    flops = sum(2.0 * _tokens_for(n, spec, n_img, n_txt) * shape[0] * shape[1] * _share(n, shares)
                for n, shape in linears)
    width = _width(linears, spec)
    for kind in spec.attention:
        if kind == "self":
            q, k = n_img, keys
        elif kind == "joint":
            q, k = n_img + n_txt, keys + n_txt
        else:  # cross
            q, k = n_img, n_txt
        flops += 4.0 * q * k * width  # QK^T and AV
    return flops


def _width(linears: list[tuple[str, torch.Size]], spec: BlockList) -> int:
    # the attention width is the narrowest token linear's input; conditioning-vector linears
    # (modulation) can be narrower (Lumina 2: 1024 against 2304) and do not see tokens
    token_linears = [shape for n, shape in linears
                     if not (spec.vector_linear_prefixes and n.startswith(spec.vector_linear_prefixes))]
    return min(shape[1] for shape in token_linears or [shape for _, shape in linears])


def stream_width(block: torch.nn.Module, spec: BlockList) -> int:
    """The hidden width of a block's token stream (its attention width)."""
    linears = [(n, m.weight.shape) for n, m in block.named_modules()
               if getattr(m, "weight", None) is not None and m.weight.dim() == 2]
    return _width(linears, spec) if linears else 0


class FlopCounter:
    """Per-block and whole-stack FLOPs of one diffusion model, cached by token counts."""

    def __init__(self, adapter: ModelAdapter, diffusion_model: torch.nn.Module) -> None:
        self.adapter = adapter
        self._blocks = [(spec, block) for spec in adapter.block_lists
                        for block in getattr(diffusion_model, spec.attr, ())]
        self._cache: dict[tuple[int, int, int | None], tuple[float, ...]] = {}

    def per_block(self, n_img: int, n_txt: int, n_keys: int | None = None) -> tuple[float, ...]:
        key = (n_img, n_txt, n_keys)
        if key not in self._cache:
            self._cache[key] = tuple(block_flops(block, spec, n_img, n_txt, n_keys) for spec, block in self._blocks)
        return self._cache[key]

    def stack(self, n_img: int, n_txt: int, batch: int = 1, n_keys: int | None = None) -> float:
        return batch * sum(self.per_block(n_img, n_txt, n_keys))


def tensor_bytes(obj: object, _seen: set[int] | None = None) -> int:
    """Bytes of every distinct tensor reachable from `obj` (dataclasses, dicts, lists, tuples, sets).

    Used to report what a method's per-run state holds; a tensor reached twice counts once.
    """
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, list | tuple | set | frozenset):
        return sum(tensor_bytes(v, seen) for v in obj)
    fields = getattr(obj, "__dataclass_fields__", None)
    if fields:
        return sum(tensor_bytes(getattr(obj, name), seen) for name in fields)
    return 0
