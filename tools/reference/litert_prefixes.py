"""Times a LiteRT model layer by layer: each prefix of its operators run alone.

LiteRT's Python interpreter has no per-operator profiler. This script rebuilds the original
``.tflite`` once per computing operator (DEQUANTIZE, which expands the fp16 weights at load, is
skipped), with that operator's output as the only output; XNNPACK drops the operators the
output does not need, so each prefix times the chain that feeds one tensor. The difference
between two prefixes along a chain is the time of the operators between them (noisy: a few
tens of µs either way, so compare stages of several layers, not single operators).

    tools/.venv/bin/python tools/reference/litert_prefixes.py --threads 1 [--model facemesh]

Prints one line per prefix: its last operator, output tensor and shape, and the median µs of
``--reps`` invokes on random input.
"""

from __future__ import annotations

import argparse

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from timing import TASK_MEMBERS, median_ms, tflite_bytes

OPERATORS = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def prefix(content: bytes, count: int) -> bytes:
    """The model with its first `count` operators, the last one's output its only output."""
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:count]
    graph.outputs = [graph.operators[-1].outputs[0]]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def median_us(content: bytes, threads: int, reps: int) -> float:
    interp = Interpreter(model_content=content, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.random.default_rng(0).random(inp["shape"], dtype=np.float32))
    for _ in range(30):
        interp.invoke()
    return median_ms(interp.invoke, reps) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="blazeface_full_range",
                        choices=["blazeface_full_range", *TASK_MEMBERS])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    content = tflite_bytes(args.model)
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    for count, op in enumerate(graph.operators, start=1):
        code = model.operatorCodes[op.opcodeIndex]
        kind = OPERATORS.get(max(code.builtinCode, code.deprecatedBuiltinCode), "?")
        if kind == "DEQUANTIZE":
            continue
        tensor = graph.tensors[op.outputs[0]]
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        name = name if len(name) <= 32 else "..." + name[-29:]
        us = median_us(prefix(content, count), args.threads, args.reps)
        shape = [int(d) for d in tensor.shape]
        print(f"{count:4d} {kind:18s} {name:32s} {str(shape):20s} {us:9.1f}", flush=True)


if __name__ == "__main__":
    main()
