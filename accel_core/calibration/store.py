"""Where profiles live: one JSON file each in a folder of ComfyUI's user directory (the node passes it)."""

from __future__ import annotations

import os
from pathlib import Path

from .profile import Profile, ProfileError, load

SUBFOLDER = ("ditaccel", "profiles")


def folder(user_directory: str | Path) -> Path:
    return Path(user_directory).joinpath(*SUBFOLDER)


def names(directory: Path) -> list[str]:
    """The saved profiles' file names, newest first."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob("*.json") if p.is_file()]
    return [p.name for p in sorted(files, key=lambda p: (-p.stat().st_mtime, p.name))]


def save(profile: Profile, directory: Path) -> Path:
    """Write the profile under its name; written to a temporary file and renamed, so a failure leaves no
    half-written profile behind."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / profile.name
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(profile.to_json())
    os.replace(tmp, path)
    return path


def read(directory: Path, name: str) -> Profile:
    if Path(name).name != name or not name.endswith(".json"):
        raise ProfileError(f"profile_name: {name!r} is not a profile file name (pick one from the list)")
    path = directory / name
    if not path.is_file():
        saved = ", ".join(names(directory)) or "none"
        raise ProfileError(f"profile_name: {path} does not exist (saved profiles: {saved})")
    return load(path)
