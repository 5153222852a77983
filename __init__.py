"""ComfyUI-DiTAccel: faster sampling and better guidance for Diffusion Transformers.

ComfyUI loads this package from custom_nodes/ and calls `comfy_entrypoint()`. The node
modules import ComfyUI's API, so they are imported only then: `accel_core` and `kernels`
stay importable without ComfyUI (for unit tests and tools).
"""

from typing import Any

# the frontend extension that shows DiTAccelReport's table on the node (web/js/report.js)
WEB_DIRECTORY = "./web"


async def comfy_entrypoint() -> Any:
    from .nodes import DiTAccelExtension

    return DiTAccelExtension()
