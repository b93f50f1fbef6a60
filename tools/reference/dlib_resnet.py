"""Reference fixtures for the Rust port of dlib's face recognition ResNet (``faceembed::dlib_resnet``).

Runs dlib's own Python module (``import dlib``, dlib 20) on the sample images, with the models of
PyPI ``face-recognition-models==0.3.0`` (the package the weights come from):

1. ``dlib.get_frontal_face_detector()`` (HOG, one upsampling) and
   ``shape_predictor_5_face_landmarks.dat`` give every face's 5 landmarks on the whole image
   (Pillow's RGB decoding of the sample JPEG; ``astronaut_large`` is that image enlarged 2.75x with
   Pillow's bilinear filter, so that dlib's chip extraction takes its image-pyramid path);
2. ``dlib.get_face_chip(img, shape, 150, 0.25)`` (``extract_image_chip``, dlib's defaults for the
   ResNet) gives the 150x150 chip;
3. ``dlib.face_recognition_model_v1(dat).compute_face_descriptor(chip)`` gives the raw 128-D
   descriptor (no jitter; dlib does not normalise it), and
   ``compute_face_descriptor(img, shape)`` the descriptor of dlib's whole pipeline.

To keep the fixtures small each face's image is cropped to the part dlib's chip extraction reads
(the chip's rotated rectangle, grown by 16 px, clipped to the image); the script checks that dlib
makes exactly the same chip from the crop as from the whole image.

Writes ``crates/faceembed/tests/fixtures/dlib_resnet_<image>_<k>.safetensors`` holding

* ``image``               HxWx3 u8: the crop (exact RGB pixels);
* ``points``              5x2 f32: dlib's 5 landmarks in crop pixels (integers), in
                          ``shape_predictor_5_face_landmarks`` order;
* ``chip``                150x150x3 u8: dlib's chip;
* ``descriptor``          128 f32: ``compute_face_descriptor(chip)``;
* ``descriptor_pipeline`` 128 f32: ``compute_face_descriptor(crop, shape)``.

Faces are ordered by the nose landmark (top to bottom, then left to right).
Run: ``tools/.venv/bin/python tools/reference/dlib_resnet.py`` (uses the pipeline cache of
``tools/.venv/bin/python tools/convert/convert.py dlib_resnet``; byte-identical on rerun).
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
FIXTURES = ROOT / "crates" / "faceembed" / "tests" / "fixtures"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import convert as pipeline  # noqa: E402
import dlib_resnet as conv  # noqa: E402
import st_write  # noqa: E402

_, SPEC, RESNET = conv.SOURCES[0]
PREDICTOR = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
SIZE, PADDING = 150, 0.25  # dlib's get_face_chip / compute_face_descriptor defaults
MARGIN = 16
# fixture name, source image, enlargement, faces kept (indices in nose order). astronaut's
# face 1 is the mission patch (a HOG false positive); group's faces 1 and 5 are the small
# mirrored portraits (chips upsampled), 3 the large Grace Hopper; at 2.75x the astronaut's chip
# rectangle is about 330 px, so dlib samples it from one pyramid level down.
CASES = [("astronaut", "astronaut", 1.0, [0]), ("group", "group", 1.0, [1, 3, 5]),
         ("astronaut_large", "astronaut", 2.75, [0])]


def chip_region(shape, width: int, height: int) -> tuple[int, int, int, int]:
    """The part of the image the chip reads: its rotated rectangle plus ``MARGIN``, clipped."""
    d = dlib.get_face_chip_details(shape, SIZE, PADDING)
    r = d.rect
    cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
    c, s = np.cos(d.angle), np.sin(d.angle)
    xs, ys = [], []
    for x, y in [(r.left(), r.top()), (r.right(), r.top()), (r.right(), r.bottom()),
                 (r.left(), r.bottom())]:
        xs.append((x - cx) * c - (y - cy) * s + cx)
        ys.append((x - cx) * s + (y - cy) * c + cy)
    left = max(0, int(np.floor(min(xs))) - MARGIN)
    top = max(0, int(np.floor(min(ys))) - MARGIN)
    right = min(width, int(np.ceil(max(xs))) + MARGIN + 1)
    bottom = min(height, int(np.ceil(max(ys))) + MARGIN + 1)
    return left, top, right, bottom


def main() -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    resnet_path = pipeline.extract("pypi", SPEC, RESNET)
    predictor_path = pipeline.extract("pypi", SPEC, PREDICTOR)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path))
    model = dlib.face_recognition_model_v1(str(resnet_path))
    for name, source, scale, keep in CASES:
        path = IMAGES / f"{source}.jpg"
        pil = Image.open(path).convert("RGB")
        if scale != 1:
            size = (round(pil.width * scale), round(pil.height * scale))
            pil = pil.resize(size, Image.BILINEAR)
        img = np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))
        shapes = [predictor(img, d) for d in detector(img, 1)]
        shapes.sort(key=lambda s: (s.part(2).y, s.part(2).x))
        for k in keep:
            shape = shapes[k]
            whole_chip = np.asarray(dlib.get_face_chip(img, shape, SIZE, PADDING), dtype=np.uint8)
            left, top, right, bottom = chip_region(shape, img.shape[1], img.shape[0])
            crop = np.ascontiguousarray(img[top:bottom, left:right])
            pts = [dlib.point(shape.part(i).x - left, shape.part(i).y - top) for i in range(5)]
            rect = shape.rect
            local = dlib.full_object_detection(
                dlib.rectangle(rect.left() - left, rect.top() - top,
                               rect.right() - left, rect.bottom() - top), pts)
            chip = np.asarray(dlib.get_face_chip(crop, local, SIZE, PADDING), dtype=np.uint8)
            if not np.array_equal(chip, whole_chip):
                raise RuntimeError(f"{name} face {k}: the crop changes dlib's chip")
            descriptor = np.array(model.compute_face_descriptor(chip), dtype=np.float32)
            pipeline_descriptor = np.array(
                model.compute_face_descriptor(crop, local), dtype=np.float32)
            tensors = {
                "image": crop,
                "points": np.array([[p.x, p.y] for p in pts], dtype=np.float32),
                "chip": chip,
                "descriptor": descriptor,
                "descriptor_pipeline": pipeline_descriptor,
            }
            meta = {
                "image": f"examples/images/{source}.jpg",
                "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "enlargement": f"{scale}x (Pillow bilinear)",
                "crop": f"{left},{top},{right},{bottom}",
                "dlib": dlib.__version__,
                "model": f"pypi:{SPEC}:{RESNET}",
                "landmarks": f"pypi:{SPEC}:{PREDICTOR}",
                "chip": f"get_face_chip size {SIZE} padding {PADDING}",
            }
            out = st_write.save(tensors, FIXTURES / f"dlib_resnet_{name}_{k}.safetensors", meta)
            rect = dlib.get_face_chip_details(local, SIZE, PADDING).rect
            print(f"{out.name}: crop {crop.shape[1]}x{crop.shape[0]}, chip rectangle "
                  f"{rect.width():.0f}x{rect.height():.0f}, "
                  f"|descriptor| {np.linalg.norm(descriptor):.4f}, "
                  f"pipeline diff {np.abs(descriptor - pipeline_descriptor).max():.2e}")


if __name__ == "__main__":
    main()
