"""The settings records, resolved: variant x method -> the `balanced` settings at 28 and 50 steps, and their source.

    .venv/bin/python -m tools.benchmarks.settings_table [--preset balanced] [--out docs/results/settings.md]

Nothing runs a model: this reads accel_core/settings/records.py through the same resolver the nodes use.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from comfyui_ditaccel.accel_core.settings import records
from comfyui_ditaccel.accel_core.settings.resolve import SPECS, Request
from comfyui_ditaccel.accel_core.settings.variants import NAMES, Variant

from tools import REPO

STEPS = (28, 50)
SPARSE_KINDS = ("grat", "pisa", "svg2", "draft", "rettention")
# the config fields each method's row shows (the rest keep their defaults)
SHOWN = {
    records.TAYLORSEER: ("interval", "order", "warmup_steps", "threshold"),
    records.CG_TAYLOR: ("threshold", "order", "first_block_order", "max_skips", "warmup_steps"),
    records.FBCACHE: ("threshold", "max_skips", "warmup_steps"),
    records.RAS: ("sample_ratio", "warmup_steps", "dense_steps", "final_dense_steps", "high_ratio",
                  "starvation_scale"),
    records.JIT: ("stages", "densities", "interpolate", "warmup_steps", "full_context"),
    records.SPARSE: ("density", "dense_steps", "dense_blocks"),
}


def _value(v: object) -> str:
    if isinstance(v, tuple):
        return "/".join(f"{x:g}" for x in v)
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _values(config: object, method: str) -> str:
    return ", ".join(f"{name} {_value(getattr(config, name))}" for name in SHOWN[method])


def rows(preset: str) -> list[tuple[str, str, str, str, str]]:
    out = []
    for rec in records.RECORDS:
        v = Variant(rec.family, rec.key, NAMES[rec.key], "")
        for method in SPECS:
            if method not in rec.methods:
                continue
            kinds = [k for k in SPARSE_KINDS if f"{method}/{k}" in rec.methods] if method == records.SPARSE else []
            for kind in [None, *kinds]:
                request = Request(method, preset, {"method": kind} if kind else {})
                label = f"{SPECS[method].node}" + (f" ({kind})" if kind else (" (other kinds)" if kinds else ""))
                at = [request.resolve(v, steps) for steps in STEPS]
                out.append((NAMES[rec.key], label, _values(at[0].config, method), _values(at[1].config, method),
                            at[0].source))
    return out


def markdown(preset: str) -> str:
    lines = [
        f"# Settings per model: `{preset}` at {STEPS[0]} and {STEPS[1]} steps",
        "",
        "What each preset node runs on each model variant, resolved from the settings records "
        "(`accel_core/settings/records.py`) by the resolver the nodes use. Sources: a paper's reference code (file and "
        "commit), a peer pack's documented setting, our own measurement on the embedded models (the command; figures "
        "in the results pages), or `derived: <rule>, not measured`. `docs/research/settings_sources.md` lists the "
        "published values these come from. Only the embedded models' settings are measured here; every real-model "
        "row is taken from its source or derived, not measured.",
        "",
        f"Made by `.venv/bin/python -m tools.benchmarks.settings_table --preset {preset}`.",
        "",
        f"| Model | Node | {STEPS[0]} steps | {STEPS[1]} steps | Source |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {m} | {n} | {a} | {b} | {s} |" for m, n, a, b, s in rows(preset)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.benchmarks.settings_table", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=records.PRESETS, default="balanced")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "settings.md")
    args = parser.parse_args(argv)
    text = markdown(args.preset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
