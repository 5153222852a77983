"""The example graphs by name: each API file `workflows/api/<name>.json` has a UI twin
`workflows/<title>.json` and a thumbnail `workflows/<title>.jpg`.

ComfyUI's Templates browser lists a pack's `workflows/*.json` under the pack and shows each file's
name as its title (and asks for `<name>.jpg` as its thumbnail), so the UI files carry readable
names; the API files keep short names for scripts and tests.
"""

from __future__ import annotations

from pathlib import Path

from tools import REPO
from tools.workflows.family_workflows import FAMILIES, FLUX_METHODS

UI_DIR = REPO / "workflows"
API_DIR = UI_DIR / "api"
DEMO = "Demo model"  # the embedded model (assets/): its graphs run anywhere, out of the box

_METHODS = {
    "taylorseer": "TaylorSeer",
    "cg_taylor": "CG-Taylor",
    "first_block_cache": "First Block Cache",
    "sparse_attention": "Sparse attention",
    "softpag": "SoftPAG guidance",
    "ras": "RAS region-adaptive sampling",
    "jit": "JiT anchor tokens",
    "headhunter": "HeadHunter picks SoftPAG heads",
    "calibrate": "Calibrate, measure the model once",
    "taylorseer_calibrated": "TaylorSeer set by a calibration",
    "taylorseer_saved_profile": "TaylorSeer with a saved profile",
}


def _titles() -> dict[str, str]:
    titles = {"baseline": f"{DEMO} - Baseline, full compute",
              "video_taylorseer": f"{DEMO} video - TaylorSeer"}
    titles.update({name: f"{DEMO} - {method}" for name, method in _METHODS.items()})
    for family in FAMILIES:
        titles[f"baseline_{family.family}"] = f"{family.title} - Baseline"
    flux = next(f.title for f in FAMILIES if f.family == "flux")
    titles.update({f"flux_{name}": f"{flux} - {_METHODS[name]}" for name in FLUX_METHODS})
    return titles


TITLES: dict[str, str] = _titles()


def names() -> list[str]:
    """Every example graph's short name (its API file's stem), sorted."""
    return sorted(p.stem for p in API_DIR.glob("*.json"))


def title(name: str) -> str:
    return TITLES[name]


def ui_file(name: str) -> Path:
    return UI_DIR / f"{title(name)}.json"


def thumbnail(name: str) -> Path:
    return UI_DIR / f"{title(name)}.jpg"


def runs_here(name: str) -> bool:
    """The graph loads the embedded model, whose files are here (the others need a family's real weights)."""
    return title(name).startswith(DEMO)
