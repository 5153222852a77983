"""Per-family knowledge as data: where the block stack is, what a block takes and returns, token layout.

Records are matched on the diffusion model's class (module + name), never on a user-chosen
string. Generic code (patching, FLOP counting, token maps) reads these records; there is no
per-model copy of forward code anywhere in the pack.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The extension points a family's model offers the pack in ComfyUI; a method names those it needs
# (`adapter_for(..., needs)`), and a family lacking one is refused at apply time, naming it.
HOOK_MODEL_CALL = "APPLY_MODEL wrapper"  # every model call (the per-call record); every family has it
HOOK_FORWARD = "DIFFUSION_MODEL wrapper"  # around the diffusion model's forward (0.3.75's MMDiT has none)
HOOK_BLOCK_REPLACE = "block replace"  # patches_replace["dit"] per block (or the pack's object-patch route)
HOOK_ATTENTION = "attention override"  # transformer_options["optimized_attention_override"]
ALL_HOOKS = frozenset({HOOK_MODEL_CALL, HOOK_FORWARD, HOOK_BLOCK_REPLACE, HOOK_ATTENTION})


@dataclass(frozen=True)
class BlockList:
    """One list of transformer blocks inside the diffusion model."""

    attr: str  # attribute on the diffusion model holding the ModuleList
    replace_name: str  # patches_replace["dit"] key name: ("double_block" | "single_block", i)
    returns: tuple[str, ...]  # keys of the dict a replace patch must return
    image_key: str = "img"  # args key of the image stream
    joint_tokens: bool = False  # image stream also carries the text tokens (single-stream blocks)
    joint_order: tuple[str, ...] = ()  # how the model concatenates the streams entering a joint list
    text_linear_prefixes: tuple[str, ...] = ()  # linears that see text tokens only
    vector_linear_prefixes: tuple[str, ...] = ()  # linears on the conditioning vector (one token)
    attention: tuple[str, ...] = ("self",)  # "self" (image), "joint" (text + image), "cross" (image -> text)
    # submodules whose outputs the block adds to its stream (attention, MLP): what module-level
    # forecasting replaces; empty where the block computes attention inline (Flux)
    output_modules: tuple[str, ...] = ()
    # keys the list's last block returns with a value, where that is fewer than `returns` (SD3's last
    # block drops the text stream: "txt" is None); the stack's output is these
    final_returns: tuple[str, ...] = ()
    text_first: bool = True  # joint attention's token order: text then image (Flux, SD3) or the reverse
    # the model calls these blocks directly (no patches_replace lookup): the pack routes the calls
    # through patches_replace with an object patch; (block parameter, args-dict name) pairs, image first
    call_args: tuple[tuple[str, str], ...] = ()
    # mixture-of-experts feed-forwards (module paths in a block): each token runs only the module's
    # `num_activated_experts` of its `experts`, so FLOP counts take their linears at that share (HiDream)
    routed_experts: tuple[str, ...] = ()

    @property
    def output_keys(self) -> tuple[str, ...]:
        """What the list's last block returns with a value: the block stack's output when it ends it."""
        return self.final_returns or self.returns


@dataclass(frozen=True)
class ModelAdapter:
    family: str
    display_name: str
    model_classes: tuple[str, ...]  # "module:ClassName" of the diffusion model
    block_lists: tuple[BlockList, ...]
    hooks: frozenset[str]  # the HOOK_* this family offers
    patch_size: tuple[int, int, int]  # (t, h, w) latent cells per token
    sets_block_index: bool  # transformer_options["block_index"] set by the model on every version
    heads_path: str = "num_heads"  # dotted path from the diffusion model to its attention head count
    # model-call inputs besides the context whose tokens join the blocks' text stream: (keyword, token
    # axis, copies a block sees). HiDream's text stream carries the T5 tokens and the last Llama layer's,
    # and each block appends its own Llama layer's tokens beside them.
    extra_text: tuple[tuple[str, int, int], ...] = ()
    # attribute of the diffusion model holding the multiple that its joint sequence's text part and image
    # part are each padded to with learned pad tokens (Z-Image; None or unset on the model: no padding)
    pad_multiple_attr: str | None = None
    # the residual stream between blocks is float32 whatever the weights' dtype (Wan: its patch
    # embedding runs in float32 and the blocks' float32 modulation keeps it there; comfy/ldm/wan/model.py)
    stream_float32: bool = False

    def offers(self, hook: str) -> bool:
        return hook in self.hooks

    def pad_multiple(self, diffusion_model: object) -> int:
        """The multiple each part of the joint sequence is padded to (1: none)."""
        value = getattr(diffusion_model, self.pad_multiple_attr, None) if self.pad_multiple_attr else None
        return int(value) if value else 1

    def num_heads(self, diffusion_model: torch.nn.Module) -> int:
        obj: object = diffusion_model
        for part in self.heads_path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return int(obj)

    def text_tokens(self, context: object, conds: dict) -> int:
        """Text tokens a block sees, from the model call's context and its other conditioning inputs."""
        n = context.shape[1] if isinstance(context, torch.Tensor) and context.dim() == 3 else 0
        for name, axis, copies in self.extra_text:
            extra = conds.get(name)
            if isinstance(extra, torch.Tensor):
                n += copies * extra.shape[axis]
        return n

    def image_tokens(self, latent_shape: tuple[int, ...]) -> int:
        """Image tokens for a latent of shape (B, C, H, W) or (B, C, T, H, W)."""
        t, h, w = self.token_grid(latent_shape)
        return t * h * w

    def token_grid(self, latent_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(frames, rows, columns) of image tokens, in the order the model flattens them."""
        pt, ph, pw = self.patch_size
        if len(latent_shape) == 5:
            t, h, w = latent_shape[2:]
        else:
            t, (h, w) = 1, latent_shape[2:]
        return -(-t // pt), -(-h // ph), -(-w // pw)

    def last_list(self, diffusion_model: torch.nn.Module) -> BlockList:
        """The block list whose last block ends the stack (a list can be empty in a given model)."""
        return next((b for b in reversed(self.block_lists) if len(getattr(diffusion_model, b.attr, ()))),
                    self.block_lists[-1])

    def block_count(self, diffusion_model: torch.nn.Module) -> int:
        return sum(len(getattr(diffusion_model, b.attr, ())) for b in self.block_lists)


WAN21 = ModelAdapter(
    family="wan",
    display_name="Wan 2.1 / 2.2 (14B, 5B, 1.3B and the embedded model)",
    model_classes=("comfy.ldm.wan.model:WanModel",),
    block_lists=(
        BlockList(
            attr="blocks",
            replace_name="double_block",
            returns=("img",),
            text_linear_prefixes=("cross_attn.k", "cross_attn.v"),
            attention=("self", "cross"),
            output_modules=("self_attn", "cross_attn", "ffn"),
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=False,  # 0.3.75's Wan forward does not set it
    stream_float32=True,
)

FLUX = ModelAdapter(
    family="flux",
    display_name="Flux.1 (dev, schnell)",
    model_classes=("comfy.ldm.flux.model:Flux",),
    block_lists=(
        BlockList(
            attr="double_blocks",
            replace_name="double_block",
            returns=("img", "txt"),
            text_linear_prefixes=("txt_",),
            vector_linear_prefixes=("img_mod", "txt_mod"),
            attention=("joint",),
        ),
        BlockList(
            attr="single_blocks",
            replace_name="single_block",
            returns=("img",),
            joint_tokens=True,
            joint_order=("txt", "img"),
            vector_linear_prefixes=("modulation",),
            attention=("joint",),
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=True,
)

SD3 = ModelAdapter(
    family="sd3",
    display_name="SD3 / SD3.5 (MMDiT)",
    model_classes=("comfy.ldm.modules.diffusionmodules.mmdit:OpenAISignatureMMDITWrapper",),
    block_lists=(
        BlockList(
            attr="joint_blocks",
            replace_name="double_block",
            returns=("img", "txt"),
            text_linear_prefixes=("context_block.",),
            vector_linear_prefixes=("context_block.adaLN_modulation", "x_block.adaLN_modulation"),
            # joint text + image attention, then (SD3.5 medium's first blocks) image self-attention
            attention=("joint", "self"),
            final_returns=("img",),
        ),
    ),
    hooks=ALL_HOOKS - {HOOK_FORWARD},  # its forward calls no DIFFUSION_MODEL wrappers (0.3.75 and 0.33.0)
    patch_size=(1, 2, 2),
    sets_block_index=False,
)

HUNYUAN_VIDEO = ModelAdapter(
    family="hunyuan_video",
    display_name="HunyuanVideo",
    model_classes=("comfy.ldm.hunyuan_video.model:HunyuanVideo",),
    block_lists=(
        BlockList(
            attr="double_blocks",
            replace_name="double_block",
            returns=("img", "txt"),
            text_linear_prefixes=("txt_",),
            vector_linear_prefixes=("img_mod", "txt_mod"),
            attention=("joint",),
            text_first=False,
        ),
        BlockList(
            attr="single_blocks",
            replace_name="single_block",
            returns=("img",),
            joint_tokens=True,
            joint_order=("img", "txt"),
            vector_linear_prefixes=("modulation",),
            attention=("joint",),
            text_first=False,
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=True,
)

CHROMA = ModelAdapter(
    family="chroma",
    display_name="Chroma",
    model_classes=("comfy.ldm.chroma.model:Chroma",),
    block_lists=FLUX.block_lists,  # Flux's blocks without their own modulation linears (an approximator feeds them)
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=True,
)

QWEN_IMAGE = ModelAdapter(
    family="qwen_image",
    display_name="Qwen-Image (and Qwen-Image-Edit)",
    model_classes=("comfy.ldm.qwen_image.model:QwenImageTransformer2DModel",),
    block_lists=(
        BlockList(
            attr="transformer_blocks",
            replace_name="double_block",
            returns=("img", "txt"),
            text_linear_prefixes=("txt_mlp", "attn.add_", "attn.to_add_out"),
            vector_linear_prefixes=("img_mod", "txt_mod"),
            attention=("joint",),
            final_returns=("img",),  # the head reads the image stream only
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=True,
    heads_path="transformer_blocks.0.attn.heads",
)

LUMINA2 = ModelAdapter(
    family="lumina2",
    display_name="Lumina 2 / Z-Image",
    model_classes=("comfy.ldm.lumina.model:NextDiT",),
    block_lists=(
        BlockList(
            attr="layers",  # the main layers; the two refiner stacks before them stay untouched
            replace_name="double_block",
            returns=("img",),
            joint_tokens=True,
            joint_order=("txt", "img"),
            vector_linear_prefixes=("adaLN_modulation",),
            attention=("joint",),
            call_args=(("x", "img"), ("x_mask", "mask"), ("freqs_cis", "pe"), ("adaln_input", "vec")),
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=False,
    heads_path="layers.0.attention.n_local_heads",
    pad_multiple_attr="pad_tokens_multiple",  # Z-Image: text and image padded to multiples of 32
)

# 0.3.75's forward calls both lists directly by keyword (routed through patches_replace like Lumina 2's);
# the image stream comes first in every joint sequence
_HIDREAM_CALL = (("image_tokens", "img"), ("image_tokens_masks", "attn_mask"), ("text_tokens", "txt"),
                 ("adaln_input", "vec"), ("rope", "pe"))
HIDREAM = ModelAdapter(
    family="hidream",
    display_name="HiDream-I1",
    model_classes=("comfy.ldm.hidream.model:HiDreamImageTransformer2DModel",),
    block_lists=(
        BlockList(
            attr="double_stream_blocks",
            replace_name="double_block",
            # the text stream a double block gets is the carried text plus this block's Llama layer; it
            # returns both streams (a tuple) and the model keeps the carried part of the text
            returns=("img", "txt"),
            text_linear_prefixes=("block.attn1.to_q_t", "block.attn1.to_k_t", "block.attn1.to_v_t",
                                  "block.attn1.to_out_t", "block.ff_t"),
            vector_linear_prefixes=("block.adaLN_modulation",),
            attention=("joint",),
            text_first=False,
            call_args=_HIDREAM_CALL,
            routed_experts=("block.ff_i",),
        ),
        BlockList(
            attr="single_stream_blocks",
            replace_name="single_block",
            returns=("img",),
            joint_tokens=True,
            joint_order=("img", "txt"),
            vector_linear_prefixes=("block.adaLN_modulation",),
            attention=("joint",),
            text_first=False,
            # the model passes text_tokens=None here: the name passes through the patch unchanged
            call_args=tuple(p for p in _HIDREAM_CALL if p[1] != "txt"),
            routed_experts=("block.ff_i",),
        ),
    ),
    hooks=ALL_HOOKS,
    patch_size=(1, 2, 2),
    sets_block_index=False,
    heads_path="num_attention_heads",
    extra_text=(("encoder_hidden_states_llama3", 2, 2),),  # (batch, Llama layer, token, width)
)

ADAPTERS: tuple[ModelAdapter, ...] = (WAN21, FLUX, SD3, HUNYUAN_VIDEO, QWEN_IMAGE, CHROMA, LUMINA2, HIDREAM)


class UnsupportedModelError(ValueError):
    pass


def class_key(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__name__}"


def supported_families() -> str:
    return ", ".join(a.display_name for a in ADAPTERS)


def find_adapter(diffusion_model: object) -> ModelAdapter | None:
    key = class_key(diffusion_model)
    return next((a for a in ADAPTERS if key in a.model_classes), None)


def adapter_for(diffusion_model: object, needs: frozenset[str] = frozenset(), method: str = "DiTAccel") -> ModelAdapter:
    """The record for this model, or a clear error naming the model and what is supported."""
    adapter = find_adapter(diffusion_model)
    if adapter is None:
        raise UnsupportedModelError(
            f"{method}: model {type(diffusion_model).__name__} ({class_key(diffusion_model)}) is not supported. "
            f"Supported families: {supported_families()}."
        )
    missing = needs - adapter.hooks
    if missing:
        raise UnsupportedModelError(
            f"{method}: {adapter.display_name} offers no {' and no '.join(sorted(missing))} in ComfyUI, "
            f"which this method needs."
        )
    return adapter
