"""Byte-deterministic safetensors writer.

safetensors' own ``save_file`` stores ``__metadata__`` from a hash map, so the
header's key order (and therefore the file's sha256) changes between runs.
``save`` re-serialises the header with sorted keys; the data section is the
library's own (tensors ordered by dtype alignment, then name).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from safetensors.numpy import save as _st_save


def save(tensors: dict[str, np.ndarray], path, metadata: dict[str, str] | None = None) -> Path:
    blob = _st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}, metadata=metadata)
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    out = {}
    meta = header.pop("__metadata__", None)
    if meta:
        out["__metadata__"] = dict(sorted(meta.items()))
    for k in sorted(header):
        out[k] = header[k]
    hb = json.dumps(out, separators=(",", ":"), ensure_ascii=True).encode()
    hb += b" " * (-len(hb) % 8)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(struct.pack("<Q", len(hb)) + hb + data)
    tmp.replace(path)
    return path


def summary(tensors: dict[str, np.ndarray]) -> str:
    """``N tensors, M parameters, [dtypes]``: what a converter prints about a file it wrote."""
    n = sum(v.size for v in tensors.values())
    return f"{len(tensors)} tensors, {n} parameters, {sorted({str(v.dtype) for v in tensors.values()})}"
