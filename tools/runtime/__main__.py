"""The command line of the runtime the demo, the benchmarks and the integration tests share.

    python -m tools.runtime prepare           # ComfyUI 0.3.75 + the pack + model files in .comfy/
    python -m tools.runtime serve [--port N]  # headless server in the foreground
    python -m tools.runtime run WORKFLOW.json [--out DIR] [--set NODE.INPUT=VALUE ...]
    python -m tools.runtime demo              # baseline graph -> out/demo/

Run from the repository root (``make prepare``, ``make serve``, ``make demo`` do). The demo renders
held-out captions of the embedded model's scene grammar, so this module (and only this one in
``tools.runtime``) imports the training data and the embedded-model evaluation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tools.runtime.comfy_client import ComfyClient, ComfyError
from tools.runtime.dit_runtime import (
    DEFAULT_PORT,
    REPO,
    check_model_files,
    load_workflow,
    prepare,
    run_workflow,
    running_server,
    serve,
)


def demo(out_dir: Path) -> None:
    from tools.benchmarks import embedded_eval
    from tools.training import scenes

    workflow = REPO / "workflows" / "api" / "baseline.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    prompt = load_workflow(workflow)
    lay = prepare()
    check_model_files(prompt, lay)
    grid_captions = [s.caption for s in scenes.draw_scenes(77, 8, "held_out", max_objects=2)]
    with running_server() as url:
        client = ComfyClient(url)
        client.run(prompt)  # first run loads the models; time the second
        result = client.run(prompt)
        grid_images = embedded_eval.render_captions(client, grid_captions, seed=0)
    image = out_dir / "baseline.png"
    image.write_bytes(result.images[0])
    embedded_eval.caption_grid(grid_images, grid_captions).save(out_dir / "caption_grid.png")
    sampler = next(n for n in prompt.values() if n["class_type"] == "KSampler")["inputs"]
    latent = next(n for n in prompt.values() if n["class_type"] == "EmptyHunyuanLatentVideo")["inputs"]
    caption = next(n for n in prompt.values() if n["class_type"] == "CLIPTextEncode")["inputs"]["text"]
    line = (f"baseline: {sampler['steps']} steps {sampler['sampler_name']}/{sampler['scheduler']} "
            f"cfg {sampler['cfg']} at {latent['width']}x{latent['height']}: {result.seconds:.2f} s per prompt "
            f"(warm, whole graph, CPU)")
    (out_dir / "timing.txt").write_text(line + "\n")
    print(line)
    print(f"wrote {image} ('{caption}'), {out_dir / 'caption_grid.png'} and {out_dir / 'timing.txt'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.runtime", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="install ComfyUI into .comfy/, link the pack, write model files")
    p.add_argument("--force", action="store_true", help="reinstall ComfyUI even if present")
    p = sub.add_parser("serve", help="run the prepared ComfyUI headless in the foreground")
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", DEFAULT_PORT)))
    p = sub.add_parser("run", help="run an API-format workflow and save its images")
    p.add_argument("workflow", type=Path)
    p.add_argument("--out", type=Path, default=REPO / "out" / "run")
    p.add_argument("--set", action="append", default=[], metavar="NODE.INPUT=VALUE")
    p.add_argument("--port", type=int, default=None)
    p = sub.add_parser("demo", help="baseline graph on the default model -> out/demo/")
    p.add_argument("--out", type=Path, default=REPO / "out" / "demo")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "prepare":
            lay = prepare(args.force)
            print(f"[dit_runtime] ready: ComfyUI at {lay.code_root}, base directory {lay.base_dir}")
        elif args.cmd == "serve":
            return serve(args.port)
        elif args.cmd == "run":
            print(json.dumps(run_workflow(args.workflow, args.out, args.set, args.port), indent=2))
        elif args.cmd == "demo":
            demo(args.out)
    except ComfyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
