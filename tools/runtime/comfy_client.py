"""A small client for ComfyUI's HTTP/WebSocket API: submit a prompt, wait, fetch outputs.

Errors come back as readable exceptions: a rejected prompt names each node and input that
ComfyUI refused; a failed execution names the node, its class and the exception message.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Prompt = dict[str, dict[str, Any]]


class ComfyError(RuntimeError):
    """Base for errors that a CLI prints as one line."""


class PromptRejected(ComfyError):
    """`/prompt` answered 400: validation failed before anything ran."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.node_errors: dict[str, Any] = body.get("node_errors") or {}
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        err = self.body.get("error") or {}
        if err:
            parts.append(f"{err.get('type', 'error')}: {err.get('message', '')}".strip())
        for node_id, info in self.node_errors.items():
            for e in info.get("errors", []):
                extra = e.get("extra_info") or {}
                name = extra.get("input_name", "")
                where = f"node {node_id} ({info.get('class_type', '?')})" + (f" input '{name}'" if name else "")
                parts.append(f"{where}: {e.get('message', '')} {e.get('details', '')}".strip())
        return "prompt rejected: " + "; ".join(parts)

    def mentions(self, text: str) -> bool:
        return text in json.dumps(self.body)


class ExecutionFailed(ComfyError):
    """The prompt was accepted but a node raised while it ran."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.node_type = data.get("node_type", "?")
        self.exception_message = str(data.get("exception_message", "")).strip()
        super().__init__(
            f"node {data.get('node_id', '?')} ({self.node_type}) failed: "
            f"{data.get('exception_type', 'error')}: {self.exception_message}"
        )


@dataclass
class RunResult:
    prompt_id: str
    events: list[dict[str, Any]]
    outputs: dict[str, Any]
    seconds: float
    images: list[bytes] = field(default_factory=list)

    def progress_events(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "progress"]

    def node_output(self, node_id: str) -> dict[str, Any]:
        return self.outputs.get(node_id, {})


class ComfyClient:
    def __init__(self, url: str, timeout: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.client_id = uuid.uuid4().hex

    # --- plain HTTP -------------------------------------------------------------------------
    def _request(self, path: str, payload: dict[str, Any] | None = None) -> tuple[int, bytes]:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str) -> Any:
        status, body = self._request(path)
        if status != 200:
            raise ComfyError(f"GET {path} answered HTTP {status}: {body[:200]!r}")
        return json.loads(body)

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        return self.get_json("/object_info" + (f"/{node_class}" if node_class else ""))

    def submit(self, prompt: Prompt) -> str:
        status, body = self._request("/prompt", {"prompt": prompt, "client_id": self.client_id})
        parsed = json.loads(body) if body else {}
        # A 200 can still carry node_errors: ComfyUI then runs only the outputs that validated.
        if status != 200 or parsed.get("node_errors"):
            raise PromptRejected(status, parsed)
        return parsed["prompt_id"]

    def history(self, prompt_id: str) -> dict[str, Any]:
        return self.get_json(f"/history/{prompt_id}").get(prompt_id, {})

    def view(self, image: dict[str, str]) -> bytes:
        query = urllib.parse.urlencode({"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                                        "type": image.get("type", "output")})
        status, body = self._request(f"/view?{query}")
        if status != 200:
            raise ComfyError(f"could not fetch image {image['filename']}: HTTP {status}")
        return body

    # --- running ------------------------------------------------------------------------------
    def connect_events(self, timeout: float | None = None) -> Any:
        """The server's websocket for this client's events (progress, execution_*), connected."""
        import websocket  # websocket-client

        url = self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
        return websocket.create_connection(url, timeout=self.timeout if timeout is None else timeout)

    def run(self, prompt: Prompt, on_event: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
        """Submit, wait for the end through the websocket, then read outputs from /history.

        `on_event` sees every message of this prompt as it arrives (e.g. to interrupt at a step).
        """
        ws = self.connect_events()
        try:
            start = time.perf_counter()
            prompt_id = self.submit(prompt)
            events = self._collect(ws, prompt_id, on_event)
            seconds = time.perf_counter() - start
        finally:
            ws.close()
        entry = self.finished_entry(prompt_id)
        outputs = entry.get("outputs", {})
        images = self.saved_images(outputs)
        return RunResult(prompt_id, events, outputs, seconds, images)

    def saved_images(self, outputs: dict[str, Any]) -> list[bytes]:
        """The images a prompt saved (SaveImage), in node order; previews (the report's plot, PreviewImage)
        are temp files and not among them."""
        return [self.view(img) for out in outputs.values() for img in out.get("images", [])
                if img.get("type", "output") == "output"]

    def finished_entry(self, prompt_id: str) -> dict[str, Any]:
        """/history can lag the websocket's execution_success by a moment."""
        deadline = time.monotonic() + 30
        while True:
            entry = self.history(prompt_id)
            if entry.get("status", {}).get("completed") or time.monotonic() > deadline:
                return entry
            time.sleep(0.05)

    def _collect(self, ws: Any, prompt_id: str,
                 on_event: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            raw = ws.recv()
            if not isinstance(raw, str):
                continue  # binary frames are previews
            msg = json.loads(raw)
            data = msg.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            events.append(msg)
            if on_event is not None:
                on_event(msg)
            kind = msg.get("type")
            if kind == "execution_error":
                raise ExecutionFailed(data)
            if kind == "execution_interrupted":
                raise ComfyError(f"prompt {prompt_id} was interrupted")
            if kind == "execution_success":
                return events
        raise ComfyError(f"prompt {prompt_id} did not finish within {self.timeout:.0f} s")

    def interrupt(self) -> None:
        self._request("/interrupt", {})

    def interrupt_prompt(self, prompt_id: str) -> None:
        """Interrupt `prompt_id` if it is the one running (another running prompt is left alone)."""
        self._request("/interrupt", {"prompt_id": prompt_id})


def decode_png(data: bytes) -> Any:
    """PNG bytes -> float32 HxWxC array in [0, 1]."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32) / 255.0
