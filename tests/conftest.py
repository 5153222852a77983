"""Test set-up: the pack is imported as `comfyui_ditaccel` (never with the repo root on sys.path).

pytest's `pythonpath` setting (pyproject.toml) makes `tools` and `tests/support` importable;
importing `tools` registers the pack and takes the repository root off sys.path again (its
`nodes/` would shadow ComfyUI's `nodes`). The prepared ComfyUI tree (`make prepare`, or
COMFYUI_PATH) then goes on sys.path for the in-process tests.
"""

from __future__ import annotations

import os

import torch

# The Triton kernels run on the CPU only through the interpreter, and the flag is read when
# triton is first imported (its own tl.* helpers are jitted then), which ComfyUI's imports do.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tools.runtime import dit_runtime

dit_runtime.in_process()
