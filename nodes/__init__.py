"""The pack's ComfyUI nodes (V3 schema). Each module contributes its node classes here."""

from comfy_api.latest import ComfyExtension, io

from .attention import NODES as ATTENTION_NODES
from .caching import NODES as CACHING_NODES
from .calibration import NODES as CALIBRATION_NODES
from .guidance import NODES as GUIDANCE_NODES
from .report import NODES as REPORT_NODES
from .spatial import NODES as SPATIAL_NODES


class DiTAccelExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [*CACHING_NODES, *GUIDANCE_NODES, *ATTENTION_NODES, *SPATIAL_NODES, *CALIBRATION_NODES, *REPORT_NODES]
