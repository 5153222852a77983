"""The pack in ComfyUI's real frontend, driven by headless Chromium (Playwright): only where ComfyUI's
frontend package is installed (the newest-ComfyUI leg of `make test`). Screenshots go to out/ui/."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from tools.runtime import dit_runtime
from tools.workflows import catalog
from tools.workflows.workflow_ui import strip_meta

pytestmark = pytest.mark.skipif(
    not dit_runtime.frontend_installed(),
    reason="ComfyUI's frontend package is not installed here (the newest-ComfyUI leg of make test has it)")

SHOTS = dit_runtime.REPO / "out" / "ui"
PACK = dit_runtime.PACK_LINK_NAME
# the embedded model's graphs run from the Run button: the baseline and one per node group
RUNNABLE = {"baseline": None, "taylorseer": "TaylorSeer", "ras": "RAS", "softpag": "SoftPAG",
            "sparse_attention": "SparseAttention", "headhunter": None}
CATEGORIES = {"DiTAccel", "DiTAccel/caching", "DiTAccel/spatial", "DiTAccel/guidance", "DiTAccel/attention",
              "DiTAccel/calibration"}


@pytest.fixture(scope="module")
def ui_url():
    log = dit_runtime.COMFY_HOME / "logs" / "ui-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with dit_runtime.running_server(log=log, ui=True) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is needed for the browser tests (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def open_ui(browser, url: str):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    page.errors = errors
    return context, page


@pytest.fixture
def page(browser, ui_url):
    context, page = open_ui(browser, ui_url)
    yield page
    context.close()


def load(page, name: str) -> None:
    """Open a workflow through the UI's file input, as a user picking the file does."""
    path = catalog.ui_file(name)
    page.locator("#comfy-file-input").set_input_files(str(path))
    count = len(json.loads(path.read_text())["nodes"])
    page.wait_for_function(f"() => window.app.graph.nodes.length === {count}", timeout=30_000)


def api_prompt(page) -> dict:
    return page.evaluate("async () => (await window.app.graphToPrompt()).output")


def finished_count(page) -> int:
    return page.evaluate("async () => Object.values(await (await fetch('/history')).json())"
                         ".filter(e => e.status?.completed).length")


def run_from_the_button(page, timeout: float = 600) -> dict:
    """Click Run; wait for the prompt it queued to finish; its history entry."""
    before = finished_count(page)
    page.get_by_role("button", name="Run", exact=False).first.click()
    deadline = time.monotonic() + timeout
    while finished_count(page) <= before:
        failed = page.evaluate("async () => Object.values(await (await fetch('/history')).json())"
                               ".filter(e => e.status?.status_str === 'error').map(e => JSON.stringify(e.status))")
        assert not failed, failed
        assert time.monotonic() < deadline, "the prompt the Run button queued did not finish"
        page.wait_for_timeout(1000)
    history = page.evaluate("async () => await (await fetch('/history')).json()")
    return max(history.values(), key=lambda e: e["prompt"][0])


def node_images(page) -> list[str]:
    """The URLs of the images the nodes show (the canvas draws each node's `imgs`)."""
    return page.evaluate("() => window.app.graph.nodes.flatMap(n => (n.imgs || []).map(i => i.src))")


@pytest.mark.parametrize("name", catalog.names())
def test_every_workflow_opens_without_missing_nodes_and_matches_its_api_twin(page, name):
    load(page, name)
    missing = page.evaluate("() => window.app.graph.nodes.filter(n => !window.LiteGraph.registered_node_types[n.type])"
                            ".map(n => n.type)")
    assert missing == []
    prompt = api_prompt(page)
    twin = json.loads((catalog.API_DIR / f"{name}.json").read_text())
    assert strip_meta(prompt) == strip_meta(twin)
    titles = page.evaluate("() => window.app.graph.nodes.filter(n => n.type.startsWith('DiTAccel')).map(n => n.title)")
    assert not [t for t in titles if t.startswith("DiTAccel")], titles  # display names, not class names


@pytest.mark.parametrize("name", list(RUNNABLE))
def test_a_workflow_runs_from_the_run_button_and_shows_its_image_and_report(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    load(page, name)
    entry = run_from_the_button(page)
    saved = [i for o in entry["outputs"].values() for i in o.get("images", []) if i["type"] == "output"]
    assert saved, entry["outputs"]
    # the image on its node, as the canvas draws it
    page.wait_for_function("() => window.app.graph.nodes.some(n => (n.imgs || [])"
                           ".some(i => i.src.includes('type=output')))", timeout=60_000)
    assert any(urllib.parse.quote(saved[0]["filename"]) in src for src in node_images(page))
    method = RUNNABLE[name]
    if method:
        page.wait_for_function("() => [...document.querySelectorAll('textarea.ditaccel-report')]"
                               ".some(t => t.value.startsWith('DiTAccel report (finished)'))", timeout=60_000)
        text = page.evaluate("() => document.querySelector('textarea.ditaccel-report').value")
        assert "transformer FLOPs run" in text and method in text
        # and its plot, a preview (a temp file) on the same node
        page.wait_for_function("() => window.app.graph.nodes.some(n => n.type === 'DiTAccelReport' && "
                               "(n.imgs || []).some(i => i.src.includes('type=temp')))", timeout=60_000)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    assert not [e for e in page.errors if "ditaccel" in e.lower()]


def test_a_node_found_through_the_search_box_and_wired_in_runs(page):
    """A user double-clicks the canvas, types an alias ("fbcache"), picks the node and wires it in. The spot is
    searched from the right: a fresh user's side panel (Media Assets) covers the canvas's left part."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    load(page, "baseline")
    find_spot = """() => { const c = window.app.canvas, r = c.canvas.getBoundingClientRect();
      for (let y = r.top + 400; y < r.bottom - 300; y += 40) for (let x = r.right - 250; x > r.left + 450; x -= 40) {
        const gx = (x - r.left) / c.ds.scale - c.ds.offset[0], gy = (y - r.top) / c.ds.scale - c.ds.offset[1];
        if (!window.app.graph.getNodeOnPos(gx, gy, window.app.graph.nodes, 40)) return [x, y]; }
      return null; }"""
    first = page.get_by_text("DiT Accel First Block Cache", exact=True).first
    for attempt in range(3):  # a double-click the busy UI missed, or keys typed before the box took focus
        spot = page.evaluate(find_spot)
        assert spot, "no empty place on the canvas to double-click"
        try:
            page.mouse.dblclick(*spot)
            page.wait_for_function("() => document.activeElement?.tagName === 'INPUT'", timeout=10_000)
            page.keyboard.type("fbcache", delay=30)
            first.wait_for(timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            page.wait_for_timeout(1000)
    page.screenshot(path=str(SHOTS / "search_fbcache.png"))
    page.keyboard.press("Enter")  # the first hit
    page.wait_for_function("() => window.app.graph.nodes.some(n => n.type === 'DiTAccelFirstBlockCache')",
                           timeout=30_000)
    # wire it between the model chain and the sampler, as a user drags the two links
    page.evaluate("""() => { const g = window.app.graph, fb = g.nodes.find(n => n.type === 'DiTAccelFirstBlockCache');
      const shift = g.nodes.find(n => n.type === 'ModelSamplingSD3');
      const sampler = g.nodes.find(n => n.type === 'KSampler');
      shift.connect(0, fb, 0); fb.connect(0, sampler, 0); g.setDirtyCanvas(true, true); }""")
    prompt = api_prompt(page)
    fb = next(k for k, v in prompt.items() if v["class_type"] == "DiTAccelFirstBlockCache")
    sampler = next(v for v in prompt.values() if v["class_type"] == "KSampler")
    assert sampler["inputs"]["model"] == [fb, 0]
    entry = run_from_the_button(page)
    assert fb in entry["prompt"][2] and any(o.get("images") for o in entry["outputs"].values())


def test_the_node_library_shows_the_pack_categories_and_its_templates_have_names_and_thumbnails(page):
    categories = set(page.evaluate("() => Object.values(window.LiteGraph.registered_node_types)"
                                   ".filter(t => t.type?.startsWith('DiTAccel'))"
                                   ".map(t => t.category)"))
    assert categories == CATEGORIES
    listed = page.evaluate("async () => await (await fetch('/api/workflow_templates')).json()")
    assert sorted(listed[PACK]) == sorted(catalog.TITLES.values())
    # the thumbnail URL the Templates browser asks for, for each template
    for title in catalog.TITLES.values():
        url = f"/api/workflow_templates/{PACK}/{urllib.parse.quote(title)}.jpg"
        kind = page.evaluate(f"async () => {{ const r = await fetch({json.dumps(url)}); "
                             "return r.ok ? r.headers.get('content-type') : String(r.status); }")
        assert kind == "image/jpeg", (title, kind)


def test_every_node_has_a_help_page_the_frontend_finds(page):
    nodes = page.evaluate("async () => Object.keys(await (await fetch('/object_info')).json())"
                          ".filter(k => k.startsWith('DiTAccel'))")
    assert len(nodes) == 12
    for node in nodes:
        text = page.evaluate(f"async () => {{ const r = await fetch('/extensions/{PACK}/docs/{node}.md'); "
                             "return r.ok ? await r.text() : ''; }")
        assert text.startswith("# "), f"no help page for {node}"
        for picture in [line.split("](", 1)[1].split(")", 1)[0] for line in text.splitlines() if line.startswith("![")]:
            status = page.evaluate(f"async () => (await fetch('/extensions/{PACK}/docs/{picture}')).status")
            assert status == 200, (node, picture)


def test_make_serve_prints_a_url_that_shows_the_real_ui(browser):
    """`make serve` as a user runs it: the URL it prints opens ComfyUI's web UI with the pack's nodes."""
    port = dit_runtime.free_port()
    proc = subprocess.Popen(["make", "serve", f"PORT={port}"], cwd=dit_runtime.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        url, seen = None, []
        deadline = time.monotonic() + 300
        while url is None:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"make serve ended: {''.join(seen)[-2000:]}"
            assert time.monotonic() < deadline, f"make serve printed no URL: {''.join(seen)[-2000:]}"
            seen.append(line)
            if "ComfyUI on http://" in line:
                url = line.split("ComfyUI on ", 1)[1].split()[0]
        # the server starts after the line (as a user, reload until it answers); its output goes on to the pipe
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    assert b"<html" in resp.read(4096).lower()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the printed URL never answered"
                time.sleep(1)
        context, page = open_ui(browser, url)
        try:
            assert page.evaluate("() => !!window.LiteGraph.registered_node_types['DiTAccelTaylorSeer']")
            page.screenshot(path=str(SHOTS / "make_serve.png"))
        finally:
            context.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
