"""The Templates browser's thumbnails and the node help pages' pictures, made from the pack's own runs.

    COMFYUI_PATH=$PWD/.comfy-newest/ComfyUI-0.33.0 .venv-newest/bin/python -m tools.pictures.gallery

(`--reuse` takes the demo graphs' outputs from an earlier run's out/pictures/; the newest-ComfyUI
environment `make test` builds: it has ComfyUI's web UI and Playwright; Debian's
chromium drives it). Writes:

- `workflows/<title>.jpg`: the embedded model's graphs, their own output (run through the API at the
  graph's settings); the real-family graphs, whose weights are not here, a screenshot of the graph.
- `web/docs/pictures/<NodeId>.jpg`: full compute beside the node's demo graph at the same seed, the
  report node after a run in the UI (DiTAccelReport, DiTAccelRecord), the curves DiTAccelCalibrate
  measured (its plot).
"""

from __future__ import annotations

import io
import json
import shutil
import sys

from PIL import Image, ImageDraw

from tools import REPO
from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient
from tools.workflows import catalog

PICTURES = REPO / "web" / "docs" / "pictures"
CACHE = REPO / "out" / "pictures"
THUMB = 256  # the Templates browser shows thumbnails at about this size
# each node's demo graph (the report nodes get a screenshot of the report instead)
NODE_GRAPHS = {"DiTAccelTaylorSeer": "taylorseer", "DiTAccelCGTaylor": "cg_taylor",
               "DiTAccelFirstBlockCache": "first_block_cache", "DiTAccelRAS": "ras", "DiTAccelJiT": "jit",
               "DiTAccelSoftPAG": "softpag", "DiTAccelHeadHunter": "headhunter",
               "DiTAccelSparseAttention": "sparse_attention"}


# the region of the page the graph is drawn into: clear of the side bar, the tabs, the toasts and the minimap
FRAME = {"x": 80, "y": 110, "width": 1800, "height": 1000}
# the whole graph into FRAME (the canvas draws a node at (pos + offset) * scale); the loaders' red "missing
# model" outlines (the families' weights are not here) are left out of the picture
FIT_VIEW = """(f) => { const c = window.app.canvas, ns = window.app.graph.nodes;
  const x0 = Math.min(...ns.map(n => n.pos[0])), y0 = Math.min(...ns.map(n => n.pos[1] - 40));
  const x1 = Math.max(...ns.map(n => n.pos[0] + n.size[0])), y1 = Math.max(...ns.map(n => n.pos[1] + n.size[1]));
  const s = 0.95 * Math.min(f.width / (x1 - x0), f.height / (y1 - y0));
  c.ds.scale = s;
  c.ds.offset = [(f.x + f.width / 2) / s - (x0 + x1) / 2, (f.y + f.height / 2) / s - (y0 + y1) / 2];
  ns.forEach(n => { n.has_errors = false; }); c.setDirty(true, true); }"""


def first_frame(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as img:
        img.seek(0)
        return img.convert("RGB")


def save_jpeg(img: Image.Image, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=85, optimize=True)
    print(f"wrote {path.relative_to(REPO)}")


def side_by_side(left: Image.Image, right: Image.Image, labels: tuple[str, str]) -> Image.Image:
    w, h = left.size
    out = Image.new("RGB", (2 * w + 8, h + 24), (24, 28, 40))
    out.paste(left, (0, 24))
    out.paste(right.resize((w, h)), (w + 8, 24))
    d = ImageDraw.Draw(out)
    d.text((6, 6), labels[0], fill=(230, 230, 230))
    d.text((w + 14, 6), labels[1], fill=(230, 230, 230))
    return out


def run_outputs(url: str, reuse: bool) -> dict[str, Image.Image]:
    """Each demo graph's output (kept in out/pictures/; `reuse`: take those from an earlier run)."""
    client = ComfyClient(url)
    outputs = {}
    for name in catalog.names():
        if catalog.runs_here(name):
            kept = CACHE / f"{name}.png"
            if not (reuse and kept.is_file()):
                prompt = json.loads((catalog.API_DIR / f"{name}.json").read_text())
                kept.parent.mkdir(parents=True, exist_ok=True)
                first_frame(client.run(prompt).images[0]).save(kept)
            outputs[name] = Image.open(kept).convert("RGB")
    return outputs


def calibration_curves(url: str) -> Image.Image:
    """The plot DiTAccelCalibrate previews for the calibrate graph (its PreviewImage, a temp file)."""
    client = ComfyClient(url)
    prompt = json.loads((catalog.API_DIR / "calibrate.json").read_text())
    preview = next(k for k, v in prompt.items() if v["class_type"] == "PreviewImage")
    image = client.run(prompt).node_output(preview)["images"][0]
    return Image.open(io.BytesIO(client.view(image))).convert("RGB")


def screenshots(url: str) -> tuple[dict[str, Image.Image], Image.Image]:
    """Each real-family graph as the UI draws it, and the TaylorSeer graph's report node after a run."""
    from playwright.sync_api import sync_playwright

    graphs = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 2400, "height": 1400})
        page.goto(url)
        page.wait_for_function("() => window.app && window.app.graph", timeout=120_000)
        for name in [n for n in catalog.names() if not catalog.runs_here(n)] + ["taylorseer"]:
            page.locator("#comfy-file-input").set_input_files(str(catalog.ui_file(name)))
            page.wait_for_timeout(1500)
            if not catalog.runs_here(name):
                page.evaluate(FIT_VIEW, FRAME)
                page.wait_for_timeout(500)
                shot = page.screenshot(clip=FRAME)
                graphs[name] = Image.open(io.BytesIO(shot)).convert("RGB")
        # the report: run the TaylorSeer graph from the Run button, then the report node's box on the canvas
        page.get_by_role("button", name="Run", exact=False).first.click()
        page.wait_for_function("() => [...document.querySelectorAll('textarea.ditaccel-report')]"
                               ".some(t => t.value.startsWith('DiTAccel report (finished)'))", timeout=600_000)
        page.wait_for_timeout(1000)
        # the report node in the middle of the view, then its box on the page (title bar included)
        page.evaluate("() => { const c = window.app.canvas; c.ds.scale = 1; "
                      "c.centerOnNode(window.app.graph.nodes.find(n => n.type === 'DiTAccelReport')); "
                      "c.setDirty(true, true); }")
        page.wait_for_timeout(1000)
        box = page.evaluate("""() => { const c = window.app.canvas, r = c.canvas.getBoundingClientRect();
          const n = window.app.graph.nodes.find(n => n.type === 'DiTAccelReport'), s = c.ds.scale;
          const x = (n.pos[0] - 10 + c.ds.offset[0]) * s, y = (n.pos[1] - 40 + c.ds.offset[1]) * s;
          const left = Math.max(r.left, r.left + x), top = Math.max(r.top, r.top + y);
          return {x: left, y: top, width: Math.min(r.right - left, (n.size[0] + 20) * s),
                  height: Math.min(r.bottom - top, (n.size[1] + 50) * s)}; }""")
        report = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
        browser.close()
    return graphs, report


def main(argv: list[str]) -> int:
    reuse = "--reuse" in argv
    with dit_runtime.running_server(ui=True) as url:
        outputs = run_outputs(url, reuse)
        curves = calibration_curves(url)
        graphs, report = screenshots(url)
    for name in catalog.names():
        img = outputs.get(name) or graphs[name]
        img = img.copy()
        img.thumbnail((2 * THUMB, THUMB) if name in graphs else (THUMB, THUMB))
        save_jpeg(img, catalog.thumbnail(name))
    for node, name in NODE_GRAPHS.items():
        label = catalog.title(name).split(" - ", 1)[1]
        save_jpeg(side_by_side(outputs["baseline"], outputs[name], ("full compute", label)), PICTURES / f"{node}.jpg")
    save_jpeg(report, PICTURES / "DiTAccelReport.jpg")
    save_jpeg(curves, PICTURES / "DiTAccelCalibrate.jpg")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
