"""The shapes every node shares: a schema built from what the node says about itself (`KitNode`), and for
the acceleration nodes a MODEL in, a preset, custom inputs, the method attached to a clone out (`MethodNode`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from comfy_api.latest import io

from ..accel_core.settings.resolve import Request
from .inputs import FAMILIES, model_input, preset_input
from .schema import node_schema


@dataclass(frozen=True)
class NodeText:
    """What a node says about itself in the node library and its help page."""

    node_id: str
    display_name: str
    category: str
    description: str
    output: str = ""  # a method node's MODEL output tooltip
    model: str = f"The diffusion model ({FAMILIES})."  # a method node's model input tooltip


def with_text(outputs: tuple[Any, ...], text: str) -> io.NodeOutput:
    """The node's outputs, and `text` shown on the node in the UI."""
    return io.NodeOutput(*outputs, ui={"text": [text]})


class KitNode(io.ComfyNode):
    """A node whose schema is its TEXT, `schema_inputs()` and `schema_outputs()` (and IS_OUTPUT_NODE)."""

    TEXT: ClassVar[NodeText]
    IS_OUTPUT_NODE: ClassVar[bool] = False

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return []

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return []

    @classmethod
    def define_schema(cls) -> io.Schema:
        t = cls.TEXT
        return node_schema(node_id=t.node_id, display_name=t.display_name, category=t.category,
                           description=t.description, inputs=cls.schema_inputs(), outputs=cls.schema_outputs(),
                           is_output_node=cls.IS_OUTPUT_NODE)


class MethodNode(KitNode):
    """A node that attaches one method to a model, built from class attributes.

    Its schema is the model input, the preset, then `custom_inputs()`; `execute` resolves the preset
    against the custom inputs (a settings `Request`) and hands it to `attach`. Each node keeps its own
    validate_inputs: ComfyUI skips its own checks of exactly the inputs that function names, so the
    names must be spelled out per node (never **kwargs).
    """

    METHOD: ClassVar[str]  # the settings records' method key
    attach: ClassVar[Callable[[Any, Any], Any]]  # (model, request) -> the patched clone
    # what an input the prompt leaves out stands for, where not the method's own default
    OMITTED: ClassVar[dict[str, Any]] = {}

    @classmethod
    def custom_inputs(cls) -> list[Any]:
        return []

    @classmethod
    def schema_inputs(cls) -> list[Any]:
        return [model_input(cls.TEXT.model), preset_input(), *cls.custom_inputs()]

    @classmethod
    def schema_outputs(cls) -> list[Any]:
        return [io.Model.Output(tooltip=cls.TEXT.output)]

    @classmethod
    def request(cls, model: Any, preset: str, custom: dict[str, Any]) -> Any:
        return Request(cls.METHOD, preset, {**cls.OMITTED, **custom})

    @classmethod
    def execute(cls, model: Any, preset: str, **custom: Any) -> io.NodeOutput:
        return io.NodeOutput(cls.attach(model, cls.request(model, preset, custom)))
