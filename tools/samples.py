"""Make the redistributable sample images in examples/images/.

Run: tools/.venv/bin/python tools/samples.py   (venv from tools/venv.sh)

Sources (public-domain photographs shipped in PyPI wheels, fetched with
``pip download --no-deps`` through the weights pipeline's cache):
  * scikit-image==0.26.0  skimage/data/astronaut.png       (NASA, Eileen Collins)
  * matplotlib==3.11.2    matplotlib/mpl-data/sample_data/grace_hopper.jpg (US Navy)

Outputs (deterministic for a given Pillow version):
  astronaut.jpg     astronaut.png re-encoded (JPEG q90, 4:4:4)
  grace_hopper.jpg  byte-for-byte copy of the matplotlib file
  group.jpg         1024x640 collage, 5 faces at several scales, 2 mirrored
  noface.jpg        a crop of astronaut.png (space-suit chest) with no face
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "convert"))
from convert import extract, sha256  # noqa: E402

OUT = ROOT / "examples" / "images"

ASTRONAUT = ("pypi", "scikit-image==0.26.0", "skimage/data/astronaut.png",
             "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5")
HOPPER = ("pypi", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130")

JPEG = dict(quality=90, subsampling=0, optimize=True)

GROUP_SIZE = (1024, 640)
GROUP_BG = (128, 128, 128)
# (source, scale, mirrored, top-left x, top-left y)
GROUP_LAYOUT = [
    ("hopper", 0.90, False, 300, 50),
    ("astronaut", 0.55, False, 10, 330),
    ("astronaut", 0.30, True, 70, 60),
    ("astronaut", 0.45, True, 780, 30),
    ("hopper", 0.40, True, 790, 340),
]

# (left, upper, right, lower) in astronaut.png: suit chest + mission patch.
NOFACE_BOX = (40, 300, 296, 512)


def fetch(src) -> Path:
    registry, spec, inner, digest = src
    p = extract(registry, spec, inner)
    got = sha256(p)
    if got != digest:
        raise SystemExit(f"{spec}:{inner}: sha256 {got} != expected {digest}")
    print(f"input  {got}  {registry}:{spec}:{inner}")
    return p


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    astronaut = Image.open(fetch(ASTRONAUT)).convert("RGB")
    hopper_path = fetch(HOPPER)
    hopper = Image.open(hopper_path).convert("RGB")

    astronaut.save(OUT / "astronaut.jpg", **JPEG)
    shutil.copyfile(hopper_path, OUT / "grace_hopper.jpg")

    group = Image.new("RGB", GROUP_SIZE, GROUP_BG)
    srcs = {"astronaut": astronaut, "hopper": hopper}
    for name, scale, mirrored, x, y in GROUP_LAYOUT:
        im = srcs[name]
        w, h = round(im.width * scale), round(im.height * scale)
        im = im.resize((w, h), Image.Resampling.LANCZOS)
        if mirrored:
            im = ImageOps.mirror(im)
        assert x >= 0 and y >= 0 and x + w <= GROUP_SIZE[0] and y + h <= GROUP_SIZE[1], name
        group.paste(im, (x, y))
    group.save(OUT / "group.jpg", **JPEG)

    astronaut.crop(NOFACE_BOX).save(OUT / "noface.jpg", **JPEG)

    total = 0
    for f in ("astronaut.jpg", "grace_hopper.jpg", "group.jpg", "noface.jpg"):
        p = OUT / f
        total += p.stat().st_size
        with Image.open(p) as im:
            size = im.size
        print(f"output {hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(ROOT)}"
              f"  {size[0]}x{size[1]}  {p.stat().st_size} bytes")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
