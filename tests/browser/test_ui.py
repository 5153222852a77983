"""The pack in ComfyUI's real frontend, driven by headless Chromium (Playwright): only where ComfyUI's
frontend package is installed (the newest-ComfyUI leg of `make test`). Screenshots go to out/ui/."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tools.runtime import dit_runtime

pytestmark = pytest.mark.skipif(
    not dit_runtime.frontend_installed(),
    reason="ComfyUI's frontend package is not installed here (the newest-ComfyUI leg of make test has it)")

WORKFLOWS = dit_runtime.REPO / "workflows"
SHOTS = dit_runtime.REPO / "out" / "ui"
# the embedded model's graphs: their model files are here, so they run from the Run button too
RUNNABLE = ("baseline", "taylorseer")


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


@pytest.fixture
def page(browser, ui_url):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(ui_url)
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    page.errors = errors
    yield page
    context.close()


def load(page, name: str) -> None:
    """Open a workflow through the UI's file input, as a user picking the file does."""
    path = WORKFLOWS / f"{name}.json"
    page.locator("#comfy-file-input").set_input_files(str(path))
    count = len(json.loads(path.read_text())["nodes"])
    page.wait_for_function(f"() => window.app.graph.nodes.length === {count}", timeout=30_000)


def api_prompt(page) -> dict:
    return page.evaluate("async () => (await window.app.graphToPrompt()).output")


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_every_workflow_opens_without_missing_nodes_and_matches_its_api_twin(page, name):
    load(page, name)
    missing = page.evaluate("() => window.app.graph.nodes.filter(n => !window.LiteGraph.registered_node_types[n.type])"
                            ".map(n => n.type)")
    assert missing == []
    prompt = api_prompt(page)
    twin = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
    strip = lambda p: {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in p.items()}  # noqa: E731
    assert strip(prompt) == strip(twin)


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_workflow_runs_from_the_run_button_and_the_report_shows_on_its_node(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    load(page, name)
    before = page.evaluate("async () => Object.keys(await (await fetch('/history')).json()).length")
    page.get_by_role("button", name="Run", exact=False).first.click()
    finished = ("async () => Object.values(await (await fetch('/history')).json())"
                ".filter(e => e.status?.completed).length")
    deadline = time.monotonic() + 300
    while page.evaluate(finished) <= before:
        assert time.monotonic() < deadline, "the prompt the Run button queued did not finish"
        page.wait_for_timeout(1000)
    saved = page.evaluate("async () => Object.values(await (await fetch('/history')).json())"
                          ".flatMap(e => Object.values(e.outputs).flatMap(o => o.images || []))"
                          ".filter(i => i.type === 'output').length")
    assert saved >= 1
    if "DiTAccelReport" in (WORKFLOWS / f"{name}.json").read_text():
        page.wait_for_function("() => [...document.querySelectorAll('textarea.ditaccel-report')]"
                               ".some(t => t.value.startsWith('DiTAccel report (finished)'))", timeout=60_000)
        text = page.evaluate("() => document.querySelector('textarea.ditaccel-report').value")
        assert "transformer FLOPs run" in text and "TaylorSeer" in text
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    assert not [e for e in page.errors if "ditaccel" in e.lower()]
