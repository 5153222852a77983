"""The runtime CLI: setup problems give one clear line; serve answers; demo writes its files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tools.runtime import dit_runtime

CLI = [sys.executable, "-m", "tools.runtime"]  # as `make` runs it, from the repository root


def run_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=dit_runtime.REPO,
                          env={**os.environ, **(env or {})})


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_comfyui_path_that_is_not_comfyui(tmp_path):
    line = one_line_error(run_cli("prepare", env={"COMFYUI_PATH": str(tmp_path)}))
    assert line.startswith(f"error: COMFYUI_PATH={tmp_path} is not a ComfyUI tree")


def test_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = one_line_error(run_cli("serve", "--port", str(port)))
    assert line == f"error: port {port} is already in use: pick another (make serve PORT=N)"


def test_missing_model_file(tmp_path):
    proc = run_cli("run", str(dit_runtime.REPO / "workflows" / "api" / "baseline.json"),
                   "--set", "1.unet_name=not_there.safetensors", "--out", str(tmp_path))
    line = one_line_error(proc)
    assert "model file missing: node 1 (UNETLoader) unet_name='not_there.safetensors'" in line


def test_serve_answers():
    port = dit_runtime.free_port()
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], cwd=dit_runtime.REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            page = r.read().decode()
        # where ComfyUI's frontend package is installed (the newest-ComfyUI environment), serve shows its UI
        assert ("<title>ComfyUI</title>" in page) == dit_runtime.frontend_installed(), page[:200]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    deadline = time.monotonic() + 20
    while listening(port):  # stopping the CLI stopped the server: no child of it goes on listening
        assert time.monotonic() < deadline, f"a server still listens on {port} after serve was stopped"
        time.sleep(0.2)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(600)
def test_demo_writes_an_image_and_a_timing_line(tmp_path):
    proc = run_cli("demo", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "baseline.png").stat().st_size > 1000
    timing = (tmp_path / "timing.txt").read_text()
    assert timing.startswith("baseline: 28 steps euler/simple cfg 5.0 at 256x256: ")
    assert " s per prompt" in timing
