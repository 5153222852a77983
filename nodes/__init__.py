"""The pack's ComfyUI nodes (V3 schema). Each module contributes its node classes here."""

from comfy_api.latest import ComfyExtension, io

from .report import NODES as REPORT_NODES


class DiTAccelExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [*REPORT_NODES]
