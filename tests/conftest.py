"""Test set-up: the pack is imported as `comfyui_ditaccel` (never with the repo root on sys.path).

The prepared ComfyUI tree (`make prepare`, or COMFYUI_PATH) is put on sys.path for the
in-process tests, `tools/` for the runtime helpers and `tests/support/` for shared test helpers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import torch

# The Triton kernels run on the CPU only through the interpreter, and the flag is read when
# triton is first imported (its own tl.* helpers are jitted then), which ComfyUI's imports do.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
PACKAGE = "comfyui_ditaccel"


def _register_pack() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)


def _add_paths() -> None:
    sys.path.insert(0, str(TOOLS))
    sys.path.insert(0, str(REPO / "tests" / "support"))
    import dit_runtime

    dit_runtime.in_process()


_add_paths()
_register_pack()
