"""One real ComfyUI server (headless, --cache-none) with the pack, shared by the integration tests."""

from __future__ import annotations

import copy
import json

import pytest

from tools.runtime import dit_runtime
from tools.runtime.comfy_client import ComfyClient


@pytest.fixture(scope="session")
def server_url():
    log = dit_runtime.COMFY_HOME / "logs" / "integration-server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with dit_runtime.running_server(log=log) as url:
        yield url


@pytest.fixture(scope="session")
def client(server_url) -> ComfyClient:
    return ComfyClient(server_url, timeout=300)


@pytest.fixture(scope="session")
def object_info(client) -> dict:
    return client.object_info()


@pytest.fixture
def baseline_prompt() -> dict:
    return copy.deepcopy(json.loads((dit_runtime.REPO / "workflows" / "api" / "baseline.json").read_text()))
