"""Write the per-family baseline graphs and the per-method Flux graphs (API format).

    .venv/bin/python -m tools.workflows.family_workflows      # then tools/workflows/workflow_ui.py for the UI files

Each `workflows/api/baseline_<family>.json` is the stock graph of one family with the file
names ComfyUI's own examples use (put your files under those names, or pick yours in the
loader widgets): loaders -> [sampling patch] -> KSampler -> VAEDecode -> save. Acceleration
nodes go on the KSampler's `model` input; `flux_<method>.json` shows that for every method
that supports Flux. The graphs are data here, not hand-edited JSON, so they stay consistent;
`tests/integration/test_family_workflows.py` checks them against the server's node schemas.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from tools import REPO

API = REPO / "workflows" / "api"
PROMPT = "a red fox sitting in a snowy forest at dawn, soft light"
SAMPLER, MODEL_OUT = "6", "10"  # the KSampler and the last node of the model chain


@dataclass(frozen=True)
class FamilyGraph:
    family: str
    title: str
    loaders: dict[str, dict]  # node id -> node; "1" gives MODEL, "2" gives CLIP (output 0 or 1), "7" VAE
    clip: list  # [node id, output] of the CLIP
    vae: list
    latent: dict  # the empty-latent node
    sampler: dict  # KSampler widget values
    model_patch: dict | None = None  # e.g. ModelSamplingSD3 between loader and sampler
    guidance: float | None = None  # FluxGuidance on the positive conditioning
    video: bool = False
    negative: str = ""
    lumina_prompts: bool = False  # CLIPTextEncodeLumina2: Lumina 2 expects its system prompt before the text
    tiled_decode: bool = False  # VAEDecodeTiled: long videos decode in tiles of frames


def unet(name: str, dtype: str = "default") -> dict:
    return {"class_type": "UNETLoader", "inputs": {"unet_name": name, "weight_dtype": dtype}}


def clip(name: str, kind: str) -> dict:
    return {"class_type": "CLIPLoader", "inputs": {"clip_name": name, "type": kind, "device": "default"}}


def vae(name: str) -> dict:
    return {"class_type": "VAELoader", "inputs": {"vae_name": name}}


def image_latent(width: int, height: int) -> dict:
    return {"class_type": "EmptySD3LatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}}


def video_latent(width: int, height: int, length: int) -> dict:
    return {"class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": width, "height": height, "length": length, "batch_size": 1}}


def ksampler(steps: int, cfg: float, sampler: str = "euler", scheduler: str = "simple") -> dict:
    return {"seed": 0, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0}


def shift(kind: str, value: float) -> dict:
    return {"class_type": kind, "inputs": {"shift": value}}


FAMILIES = (
    FamilyGraph("flux", "Flux.1 dev", {
        "1": unet("flux1-dev.safetensors"),
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux",
                                                         "device": "default"}},
        "7": vae("ae.safetensors")}, ["2", 0], ["7", 0], image_latent(1024, 1024), ksampler(20, 1.0),
        guidance=3.5),
    FamilyGraph("qwen_image", "Qwen-Image", {
        "1": unet("qwen_image_fp8_e4m3fn.safetensors"),
        "2": clip("qwen_2.5_vl_7b_fp8_scaled.safetensors", "qwen_image"),
        "7": vae("qwen_image_vae.safetensors")}, ["2", 0], ["7", 0], image_latent(1328, 1328), ksampler(20, 2.5),
        model_patch=shift("ModelSamplingAuraFlow", 3.1)),
    FamilyGraph("wan", "Wan 2.1 text-to-video 1.3B", {
        "1": unet("wan2.1_t2v_1.3B_fp16.safetensors"), "2": clip("umt5_xxl_fp8_e4m3fn_scaled.safetensors", "wan"),
        "7": vae("wan_2.1_vae.safetensors")}, ["2", 0], ["7", 0], video_latent(832, 480, 33),
        ksampler(30, 6.0, "uni_pc", "simple"), model_patch=shift("ModelSamplingSD3", 8.0), video=True),
    FamilyGraph("sd3", "SD3.5 medium", {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_medium.safetensors"}},
        "2": {"class_type": "TripleCLIPLoader", "inputs": {"clip_name1": "clip_g.safetensors",
                                                           "clip_name2": "clip_l.safetensors",
                                                           "clip_name3": "t5xxl_fp16.safetensors"}}},
        ["2", 0], ["1", 2], image_latent(1024, 1024), ksampler(40, 4.5, "euler", "sgm_uniform"),
        model_patch=shift("ModelSamplingSD3", 3.0)),
    FamilyGraph("hunyuan_video", "HunyuanVideo 720p", {
        "1": unet("hunyuan_video_t2v_720p_bf16.safetensors"),
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "llava_llama3_fp8_scaled.safetensors",
                                                         "type": "hunyuan_video", "device": "default"}},
        "7": vae("hunyuan_video_vae_bf16.safetensors")}, ["2", 0], ["7", 0], video_latent(848, 480, 73),
        ksampler(20, 1.0), model_patch=shift("ModelSamplingSD3", 7.0), guidance=6.0, video=True, tiled_decode=True),
    FamilyGraph("chroma", "Chroma", {
        "1": unet("chroma-unlocked-v50.safetensors"), "2": clip("t5xxl_fp8_e4m3fn_scaled.safetensors", "chroma"),
        "7": vae("ae.safetensors")}, ["2", 0], ["7", 0], image_latent(1024, 1024),
        ksampler(26, 4.0, "euler", "beta"), negative="low quality, blurry"),
    FamilyGraph("lumina2", "Lumina Image 2.0", {
        "1": unet("lumina_2_model_bf16.safetensors"), "2": clip("gemma_2_2b_fp16.safetensors", "lumina2"),
        "7": vae("ae.safetensors")}, ["2", 0], ["7", 0], image_latent(1024, 1024),
        ksampler(25, 4.0, "res_multistep", "simple"), model_patch=shift("ModelSamplingAuraFlow", 6.0),
        negative="blurry, ugly, bad", lumina_prompts=True),
    FamilyGraph("hidream", "HiDream I1 full", {
        "1": unet("hidream_i1_full_fp16.safetensors"),
        "2": {"class_type": "QuadrupleCLIPLoader", "inputs": {
            "clip_name1": "clip_l_hidream.safetensors", "clip_name2": "clip_g_hidream.safetensors",
            "clip_name3": "t5xxl_fp8_e4m3fn_scaled.safetensors",
            "clip_name4": "llama_3.1_8b_instruct_fp8_scaled.safetensors"}},
        "7": vae("ae.safetensors")}, ["2", 0], ["7", 0], image_latent(1024, 1024),
        ksampler(50, 5.0, "uni_pc", "simple"), model_patch=shift("ModelSamplingSD3", 3.0)),
)

# the pack's methods on Flux (RAS and JiT are Wan only): the node as the embedded model's example graph
# sets it (balanced preset), SoftPAG on two double blocks
FLUX_METHODS = ("taylorseer", "cg_taylor", "first_block_cache", "sparse_attention", "softpag")
SOFTPAG = ("DiTAccelSoftPAG", {"heads": "double:2:all; double:5:all", "strength": 0.5, "scale": 2.0,
                               "start_percent": 0.0, "end_percent": 1.0})


def method_node(name: str) -> tuple[str, dict]:
    if name == "softpag":
        return SOFTPAG
    node = json.loads((API / f"{name}.json").read_text())["40"]
    return node["class_type"], {k: v for k, v in node["inputs"].items() if k != "model"}


def baseline(f: FamilyGraph) -> dict:
    p: dict[str, dict] = {k: {**v, "_meta": {"title": f"{f.title}: {v['class_type']}"}} for k, v in f.loaders.items()}
    model = ["1", 0]
    if f.model_patch is not None:
        p[MODEL_OUT] = {**f.model_patch, "inputs": {"model": model, **f.model_patch["inputs"]}}
        model = [MODEL_OUT, 0]
    for node_id, text, title in (("3", PROMPT, "Positive"), ("4", f.negative, "Negative")):
        if f.lumina_prompts:
            p[node_id] = {"class_type": "CLIPTextEncodeLumina2",
                          "inputs": {"system_prompt": "superior", "user_prompt": text, "clip": f.clip}}
        else:
            p[node_id] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": f.clip}}
        p[node_id]["_meta"] = {"title": title}
    positive = ["3", 0]
    if f.guidance is not None:
        p["11"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": positive, "guidance": f.guidance}}
        positive = ["11", 0]
    p["5"] = f.latent
    p[SAMPLER] = {"class_type": "KSampler", "inputs": {"model": model, **f.sampler, "positive": positive,
                                                       "negative": ["4", 0], "latent_image": ["5", 0]}}
    if f.tiled_decode:
        p["8"] = {"class_type": "VAEDecodeTiled", "inputs": {"samples": [SAMPLER, 0], "vae": f.vae, "tile_size": 256,
                                                             "overlap": 64, "temporal_size": 64,
                                                             "temporal_overlap": 8}}
    else:
        p["8"] = {"class_type": "VAEDecode", "inputs": {"samples": [SAMPLER, 0], "vae": f.vae}}
    prefix = f"ditaccel_baseline_{f.family}"
    if f.video:
        p["9"] = {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["8", 0], "filename_prefix": prefix,
                                                               "fps": 16.0, "lossless": False, "quality": 90,
                                                               "method": "default"}}
    else:
        p["9"] = {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}}
    return p


def with_method(graph: dict, node: str, inputs: dict) -> dict:
    """The graph with `node` on the KSampler's model input and a DiTAccelReport after the sampler."""
    p = json.loads(json.dumps(graph))
    p["40"] = {"class_type": node, "inputs": {"model": p[SAMPLER]["inputs"]["model"], **inputs}}
    p[SAMPLER]["inputs"]["model"] = ["40", 0]
    p["50"] = {"class_type": "DiTAccelReport", "inputs": {"model": ["40", 0], "latent": [SAMPLER, 0]}}
    return p


def graphs() -> dict[str, dict]:
    out = {f"baseline_{f.family}": baseline(f) for f in FAMILIES}
    for name in FLUX_METHODS:
        out[f"flux_{name}"] = with_method(out["baseline_flux"], *method_node(name))
    return out


def main() -> int:
    for name, graph in graphs().items():
        path = API / f"{name}.json"
        path.write_text(json.dumps(graph, indent=1) + "\n")
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
