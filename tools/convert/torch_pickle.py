"""Minimal, torch-free reader for PyTorch checkpoint files (``torch.save``).

Supports both on-disk layouts torch has used:

* the zip layout (torch >= 1.6): ``<archive>/data.pkl`` whose persistent ids
  ``('storage', StorageType, key, location, numel)`` point at raw little-endian
  storages ``<archive>/data/<key>``;
* the legacy layout (torch < 1.6): a stream of pickles -- magic number,
  protocol version, sys info, the object (same persistent ids, plus an optional
  view description), the list of storage keys -- followed by each storage as
  ``int64 numel`` + raw bytes, in the order of that list.

Only the globals a plain ``state_dict`` needs are allowed (OrderedDict, the
tensor/parameter rebuild helpers, ``torch.*Storage``); anything else raises,
so loading never executes arbitrary code. Tensors come back as numpy arrays.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. (only the dtype matters)."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"StorageType({self.name})"


class Storage:
    """A flat storage: ``data`` is filled in once its bytes are read."""

    def __init__(self, dtype: np.dtype, numel: int | None):
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class StorageView:
    """Legacy storage view: ``numel`` elements of ``base`` from ``offset``."""

    def __init__(self, base: Storage, offset: int, numel: int):
        self.base, self.offset, self.numel = base, offset, numel


class LazyTensor:
    """Tensor whose storage bytes may not have been read yet (legacy layout)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(size), tuple(stride)

    def materialize(self) -> np.ndarray:
        storage, offset = self.storage, self.offset
        if isinstance(storage, StorageView):
            offset += storage.offset
            storage = storage.base
        flat = storage.data
        if flat is None:
            raise ValueError("storage data was never read")
        itemsize = flat.dtype.itemsize
        if not self.size:
            return np.array(flat[offset], dtype=flat.dtype)
        # bounds check before as_strided (which does none)
        last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        if offset < 0 or last >= flat.size:
            raise ValueError("tensor view exceeds its storage")
        view = np.lib.stride_tricks.as_strided(
            flat[offset:],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored, **_kw):
    return LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_rest):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


class _Unpickler(pickle.Unpickler):
    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    }

    def __init__(self, file, persistent_load):
        super().__init__(file)
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        return self._persistent_load(pid)


def _storage_dtype(storage_type) -> np.dtype:
    if isinstance(storage_type, StorageType):
        return storage_type.dtype
    raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")


def _load_zip(path: Path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise ValueError(f"{path}: expected one <archive>/data.pkl, got {pkl}")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode().strip()
        storages: dict[str, Storage] = {}

        def persistent_load(pid):
            if pid[0] != "storage":
                raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
            _, storage_type, key, _location, _numel = pid[:5]
            if key not in storages:
                dtype = _storage_dtype(storage_type).newbyteorder("<" if byteorder == "little" else ">")
                raw = zf.read(f"{prefix}data/{key}")
                st = Storage(dtype, len(raw) // dtype.itemsize)
                st.data = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
                storages[key] = st
            return storages[key]

        obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), persistent_load).load()
    return obj


def _load_legacy(path: Path):
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a torch checkpoint (bad magic number)")
        if pickle.load(f) != LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy protocol version")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, Storage] = {}

        def persistent_load(pid):
            if pid[0] != "storage":
                raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
            _, storage_type, root_key, _location, numel, view_metadata = pid
            if root_key not in storages:
                storages[root_key] = Storage(_storage_dtype(storage_type), numel)
            root = storages[root_key]
            if view_metadata is not None:
                _view_key, offset, view_size = view_metadata
                return StorageView(root, offset, view_size)
            return root

        obj = _Unpickler(f, persistent_load).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            nbytes = numel * st.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated storage {key}")
            st.numel = numel
            st.data = np.frombuffer(raw, dtype=st.dtype.newbyteorder("<")).astype(st.dtype)
    return obj


def _materialize(obj):
    if isinstance(obj, LazyTensor):
        return obj.materialize()
    if isinstance(obj, collections.OrderedDict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def load(path) -> object:
    """Load a ``torch.save`` file; tensors become contiguous numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        obj = _load_legacy(path)
    return _materialize(obj)


def load_state_dict(path) -> "collections.OrderedDict[str, np.ndarray]":
    """Load a checkpoint and return its flat ``name -> array`` state dict.

    Unwraps a top-level ``{"state_dict": ...}`` and strips a ``module.``
    (DataParallel) prefix, as most model repositories' loaders do.
    """
    obj = load(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: checkpoint is not a state dict ({type(obj).__name__})")
    out = collections.OrderedDict()
    for k, v in obj.items():
        if k.startswith("module."):
            k = k[len("module.") :]
        if not isinstance(v, np.ndarray):
            raise ValueError(f"{path}: entry {k!r} is not a tensor ({type(v).__name__})")
        out[k] = v
    return out
