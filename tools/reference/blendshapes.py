"""Reference fixture for the Rust port of MediaPipe's face blendshapes model.

For every face that MediaPipe's own Face Landmarker (``mediapipe`` Tasks, ``FaceLandmarker``,
IMAGE mode, ``output_face_blendshapes=True``, up to 5 faces, the pinned
``face_landmarker.task``) finds in the sample images ``examples/images/*.jpg``, this writes to
``crates/faceexpr/tests/fixtures/blendshapes.safetensors`` (images decoded by Pillow; each
sample also mirrored and rotated by 15 degrees, bilinear, for more real meshes):

* ``mesh``       Nx478x3 f32: MediaPipe's 478 landmarks in image pixels
                 (``x * width``, ``y * height``, ``z * width``, in float32);
* ``mediapipe``  Nx52 f32: MediaPipe's own blendshape scores (the end-to-end reference);
* ``input``      Nx146x2 f32: the blendshape model's input built as MediaPipe's
                 ``FaceBlendshapesGraph`` does (the 146 ``kLandmarksSubsetIdxs`` landmarks,
                 ``LandmarksToTensorCalculator`` with X, Y and the image size: x * width,
                 y * height in float32);
* ``output``     Nx52 f32: the ORIGINAL ``face_blendshapes.tflite`` run in LiteRT
                 (``ai_edge_litert.interpreter.Interpreter``, 1 thread, default delegates,
                 i.e. XNNPACK) on ``input`` (the raw-model reference);
* ``image_size`` Nx2 f32: width, height of the face's image.

Metadata: the image of every face, the sha256 of the images and of the model file, the
versions used. Run: ``tools/.venv/bin/python tools/reference/blendshapes.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "faceexpr" / "tests" / "fixtures"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import blendshapes as conv  # noqa: E402
import st_write  # noqa: E402

# mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc, kLandmarksSubsetIdxs
SUBSET = [
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39,
    40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133,
    136, 144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160,
    161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246,
    249, 251, 263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295,
    296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324, 332, 334,
    336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382,
    384, 385, 386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454,
    466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
]


def face_landmarker(task: Path):
    """MediaPipe's Face Landmarker in IMAGE mode with blendshapes."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task)),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=5,
        output_face_blendshapes=True,
    )
    return vision.FaceLandmarker.create_from_options(options)


def variants(path: Path):
    """The sample image decoded by Pillow, mirrored, and rotated by 15 degrees (more real meshes)."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    yield path.name, img
    yield f"{path.name} mirrored", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    yield f"{path.name} rotated 15", img.rotate(15, resample=Image.Resampling.BILINEAR)


def meshes(landmarker, img):
    """(mesh in pixels Kx478x3, MediaPipe's scores Kx52, (w, h)) for one RGB image."""
    import mediapipe as mp

    image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(np.asarray(img)))
    w, h = image.width, image.height
    result = landmarker.detect(image)
    out = []
    for lms, cats in zip(result.face_landmarks, result.face_blendshapes):
        norm = np.array([[p.x, p.y, p.z] for p in lms], dtype=np.float32)
        scale = np.array([w, h, w], dtype=np.float32)
        names = [c.category_name for c in cats]
        if names[0] != "_neutral" or len(names) != 52:
            raise ValueError(f"unexpected blendshape names {names[:3]}...")
        out.append((norm * scale, np.array([c.score for c in cats], dtype=np.float32)))
    return out, (w, h)


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter
    import mediapipe as mp

    sources = conv.fetch()
    task = Path(sources[conv.SOURCES[0][2]])
    model = conv.tflite_bytes(sources)
    interp = Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]

    landmarker = face_landmarker(task)
    rows = {"mesh": [], "mediapipe": [], "input": [], "output": [], "image_size": []}
    faces = []
    images = sorted(IMAGES.glob("*.jpg"))
    for path in images:
        for name, img in variants(path):
            found, (w, h) = meshes(landmarker, img)
            for mesh, scores in found:
                x = mesh[SUBSET, :2].astype(np.float32)[None]
                interp.set_tensor(inp["index"], x)
                interp.invoke()
                y = np.array(interp.get_tensor(out["index"]), dtype=np.float32).reshape(52)
                rows["mesh"].append(mesh)
                rows["mediapipe"].append(scores)
                rows["input"].append(x[0])
                rows["output"].append(y)
                rows["image_size"].append(np.array([w, h], dtype=np.float32))
                faces.append(name)
                top = np.argsort(-scores)[:3]
                print(f"{name}: face {len(faces) - 1}: |LiteRT - MediaPipe| max "
                      f"{np.abs(y - scores).max():.2e}; top {top.tolist()} {scores[top].round(3).tolist()}")
    landmarker.close()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    dest = FIXTURES / "blendshapes.safetensors"
    st_write.save({k: np.stack(v).astype(np.float32) for k, v in rows.items()}, dest, metadata={
        "faces": json.dumps(faces),
        "images_sha256": json.dumps({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in images}),
        "model": f"{conv.MEMBER} of {conv.SOURCES[0][1]}:{conv.SOURCES[0][2]}",
        "tflite_sha256": conv.MEMBER_SHA256,
        "runtime": "ai_edge_litert.interpreter.Interpreter, num_threads=1, default delegates",
        "mediapipe": f"mediapipe=={mp.__version__} FaceLandmarker, IMAGE mode, num_faces=5",
        "input": "kLandmarksSubsetIdxs of the mesh, (x * width, y * height) in float32",
    })
    print(f"{dest.relative_to(ROOT)}: {len(faces)} faces")


if __name__ == "__main__":
    main()
