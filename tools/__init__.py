"""The pack's developer tools, and the one loader that makes the pack importable for them and the tests.

Run a tool as a module from the repository root, e.g. ``.venv/bin/python -m tools.runtime demo`` or
``.venv/bin/python -m tools.benchmarks.bench_caching --steps 28``. Roles:

- ``tools.runtime``: the ComfyUI tree, its server and client, the deterministic model files, the CLI
  (``python -m tools.runtime prepare | serve | run | demo``).
- ``tools.benchmarks``: every benchmark, sweep and matrix (``tools/benchmarks/README.md`` lists them).
- ``tools.training``: the embedded models' data, detector, training scripts and loss logs.
- ``tools.workflows``: the example graphs in ``workflows/`` (API files, their UI twins, their titles).
- ``tools.pictures``: the registry icon, the templates' thumbnails, the node help pages' pictures.
- ``tools.docs``: the node help pages (``web/docs/``), written from the node schemas.

Importing this package registers the pack under the name ``comfyui_ditaccel`` (the way ComfyUI
imports it from ``custom_nodes/``) and takes the repository root off ``sys.path``: ``python -m`` and
pytest put it there, and its ``nodes/`` and ``kernels/`` would shadow ComfyUI's top-level ``nodes``
module and the ``kernels`` package that transformers probes for. Modules of ``tools`` go on loading
through the package's own path. Dependencies run one way: benchmarks -> training -> runtime; nothing
here imports ``tests``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "comfyui_ditaccel"


def _drop_repo_root() -> None:
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO]


def pack() -> ModuleType:
    """The pack as the package ``comfyui_ditaccel`` (imported once, from the repository's ``__init__.py``)."""
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(PACKAGE, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


_drop_repo_root()
pack()
