"""Wrapping a submodule of a block (attention, MLP) so a method can replace its output.

`ModuleWrapper` shares the wrapped module's parameter, buffer and child dicts, so while it is
installed (as a ModelPatcher object patch) every weight keeps its name: LoRA patches, low-VRAM
loading and weight casting see the same keys as without it. Its forward asks `decide` first;
`decide` returns a tensor to use instead of running the module, or None to run it, and `seen`
gets what the module computed.
"""

from __future__ import annotations

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


class ModuleWrapper(torch.nn.Module):
    def __init__(self, owner: str, key: str, inner: torch.nn.Module, slot: ModuleSlot) -> None:
        super().__init__()
        # the wrapped module's own dicts, not copies: parameter names and updates stay shared
        self._parameters = inner._parameters
        self._buffers = inner._buffers
        self._modules = inner._modules
        object.__setattr__(self, "inner", inner)
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "slot", slot)

    def __deepcopy__(self, memo: dict) -> ModuleWrapper:
        return self

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
