"""Attaching the caching methods to a ComfyUI model (imports ComfyUI through comfy_patch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..adapters import HOOK_BLOCK_REPLACE, HOOK_DIFFUSION_MODEL
from ..comfy_patch import attach, set_block_patches
from ..run_context import RunContext
from . import taylorseer


@dataclass(frozen=True)
class TaylorSeerMethod:
    config: taylorseer.TaylorSeerConfig
    key: str = taylorseer.KEY

    @property
    def label(self) -> str:
        return self.config.tag()

    def new_run_state(self, run: RunContext) -> taylorseer.TaylorSeerState:
        return taylorseer.new_state(self.config, run)


def apply_taylorseer(model: Any, config: taylorseer.TaylorSeerConfig) -> Any:
    m, adapter = attach(model, TaylorSeerMethod(config), frozenset({HOOK_BLOCK_REPLACE, HOOK_DIFFUSION_MODEL}),
                        name="DiTAccelTaylorSeer")
    set_block_patches(m, adapter, taylorseer.KEY, taylorseer.block_hook(config))
    return m
