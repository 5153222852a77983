"""Wrapping a submodule of a block (attention, MLP) so a method can replace its output.

`ModuleWrapper` shares the wrapped module's parameter, buffer and child dicts, so while it is
installed (as a ModelPatcher object patch) every weight keeps its name: LoRA patches, low-VRAM
loading and weight casting see the same keys as without it. Its forward asks `decide` first;
`decide` returns a tensor to use instead of running the module, or None to run it, and `seen`
gets what the module computed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

Decide = Callable[[str], "torch.Tensor | None"]
Seen = Callable[[str, torch.Tensor], None]


class ModuleSlot:
    """What the wrappers of one method ask during a model call; empty outside the method's calls."""

    def __init__(self) -> None:
        self.decide: Decide | None = None
        self.seen: Seen | None = None

    def clear(self) -> None:
        self.decide = self.seen = None

    def __deepcopy__(self, memo: dict) -> ModuleSlot:
        return self


class SharedModule(torch.nn.Module):
    """A stand-in for `inner` installed as an object patch: it holds the wrapped module's own
    parameter, buffer and child dicts, not copies, so weight names and updates stay shared.
    Attributes given as keywords are set without registering them as submodules."""

    def __init__(self, inner: torch.nn.Module, **attrs: Any) -> None:
        super().__init__()
        self._parameters = inner._parameters
        self._buffers = inner._buffers
        self._modules = inner._modules
        object.__setattr__(self, "inner", inner)
        for name, value in attrs.items():
            object.__setattr__(self, name, value)

    def __deepcopy__(self, memo: dict) -> SharedModule:
        return self


class ModuleWrapper(SharedModule):
    def __init__(self, owner: str, key: str, inner: torch.nn.Module, slot: ModuleSlot) -> None:
        super().__init__(inner, owner=owner, key=key, slot=slot)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        slot = self.slot
        if slot.decide is not None:
            out = slot.decide(self.key)
            if out is not None:
                return out
        out = self.inner(*args, **kwargs)
        if slot.seen is not None:
            slot.seen(self.key, out)
        return out


def unwrapped(module: Any, owner: str) -> Any:
    """`module` without `owner`'s wrapper on top (applying a method again replaces its wrappers)."""
    while isinstance(module, ModuleWrapper) and module.owner == owner:
        module = module.inner
    return module


class BlockCallHook(SharedModule):
    """A block its model calls directly, without looking up patches_replace (Lumina 2 / Z-Image and
    HiDream on 0.3.75): the call goes through `transformer_options["patches_replace"]["dit"][(name, index)]`
    as it does in the families whose forward looks it up, so block patches work the same way.

    `call_args` pairs the block's parameter names with the patch's args-dict names (the image
    stream first), e.g. (("x", "img"), ("freqs_cis", "pe")); the call is bound to the block's
    signature, so it does not matter whether the model passes them by position or by name.
    Parameters it does not name reach the patch under their own names and go back unchanged.
    `returns` names what the block returns, as the patch's output dict does: one name, the block
    returns that tensor (Lumina 2); several, a tuple in that order (HiDream's double blocks return
    image and text). Default: the image stream alone.
    Shares the block's parameter dicts (weights keep their names), like ModuleWrapper.
    """

    def __init__(self, inner: torch.nn.Module, replace_name: str, index: int,
                 call_args: tuple[tuple[str, str], ...], returns: tuple[str, ...] = ()) -> None:
        super().__init__(inner, replace_name=replace_name, index=index, call_args=call_args,
                         returns=returns or (call_args[0][1],), signature=inspect.signature(inner.forward))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        to = kwargs.get("transformer_options") or {}
        patch = to.get("patches_replace", {}).get("dit", {}).get((self.replace_name, self.index))
        bound = self.signature.bind_partial(*args, **kwargs).arguments
        image_param = self.call_args[0][0]
        if patch is None or image_param not in bound:
            return self.inner(*args, **kwargs)
        to_key = dict(self.call_args)
        to_param = {key: param for param, key in self.call_args}
        block_args = {to_key.get(name, name): value for name, value in bound.items() if name != "transformer_options"}
        block_args["transformer_options"] = to
        returns = self.returns

        def original_block(a: dict) -> dict:
            call = {to_param.get(name, name): value for name, value in a.items() if name != "transformer_options"}
            out = self.inner(**call, transformer_options=a["transformer_options"])
            return dict(zip(returns, out, strict=True)) if len(returns) > 1 else {returns[0]: out}

        out = patch(block_args, {"original_block": original_block})
        return tuple(out[k] for k in returns) if len(returns) > 1 else out[returns[0]]
