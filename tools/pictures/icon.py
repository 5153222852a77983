"""Draw the pack's registry icon (pyproject.toml's [tool.comfy] Icon points at the file this writes).

    .venv/bin/python -m tools.pictures.icon        # writes assets/icon.png

A stack of transformer blocks, most of them faded (skipped by the caching methods), and a
fast-forward mark: what the pack does, drawn with Pillow, 400 x 400 as the registry shows icons.
"""

from __future__ import annotations

import sys

from PIL import Image, ImageDraw

from tools import REPO

SIZE = 400
OUT = REPO / "assets" / "icon.png"


def draw() -> Image.Image:
    img = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((8, 8, SIZE - 8, SIZE - 8), radius=72, fill=(24, 28, 40, 255))
    # six blocks: the first and last computed (bright), the four between forecast (faded)
    for i in range(6):
        top = 70 + i * 45
        bright = i in (0, 5)
        fill = (86, 196, 255, 255) if bright else (44, 76, 104, 255)
        d.rounded_rectangle((60, top, 220, top + 32), radius=9, fill=fill)
    # fast-forward: two triangles
    for x in (240, 295):
        d.polygon([(x, 140), (x + 70, 200), (x, 260)], fill=(255, 176, 64, 255))
    return img


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw().save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
