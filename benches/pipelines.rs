//! Whole pipelines, for `tools/reference/pipelines.py` to set beside the reference pipelines on
//! the same images at the same thread counts (1 and 2, through `ThreadPool::install`; candle's
//! own element-wise pool is bounded by `CANDLE_NUM_THREADS`, see `facecore::threads`):
//!
//! - `pipeline_mediapipe/{1t,2t}/{astronaut,grace_hopper}`: BlazeFace short range, the mesh, the
//!   blendshapes and the head pose, what MediaPipe's Face Landmarker computes with blendshapes
//!   and the transformation matrix; one `analyze_rgb` per iteration on one sample photo.
//! - `pipeline_opencv/{1t,2t}`: RetinaFace and the SFace embedding of the largest face, what
//!   OpenCV's YuNet + SFace does; the mean per image over the first [`LFW_SUBSET`] LFW images
//!   (`../shared/eval/lfw/images/<Name>/<Name>_0001.jpg`, names sorted). One criterion iteration
//!   runs the whole subset and `iter_custom` reports its time divided by the subset's size.
//!   Skipped, with a line on stderr, when `../shared/eval/lfw` is absent.
//!
//! Images are decoded to RGB before timing. Run with `cargo bench --bench pipelines`.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use faceanalysis::{DetectorKind, DetectorOptions, FaceAnalyzer, Part};
use facecore::threads::ThreadPool;
use image::RgbImage;

/// How many LFW images (the first `<Name>_0001.jpg` in sorted name order) the OpenCV pipeline
/// runs on; `tools/reference/pipelines.py` uses the same number.
const LFW_SUBSET: usize = 200;

/// The LFW images folder, relative to the repository root.
const LFW: &str = "../shared/eval/lfw/images";

fn pools() -> [(usize, ThreadPool); 2] {
    [1, 2].map(|threads| (threads, ThreadPool::new(threads).expect("thread pool")))
}

fn mediapipe(c: &mut Criterion) {
    let analyzer = FaceAnalyzer::builder()
        .detector(DetectorKind::BlazeFaceShort)
        .parts([Part::Landmarks, Part::Blendshapes, Part::HeadPose])
        .build()
        .expect("embedded weights");
    let pools = pools();
    let mut group = c.benchmark_group("pipeline_mediapipe");
    for name in ["astronaut", "grace_hopper"] {
        let img = faceanalysis::load_image(format!("examples/images/{name}.jpg"))
            .expect("sample image")
            .to_rgb8();
        let faces = analyzer.analyze_rgb(&img).expect("analysis");
        assert!(
            faces.len() == 1
                && faces[0].landmarks.is_some()
                && faces[0].blendshapes.is_some()
                && faces[0].head_pose.is_some(),
            "{name}: expected one face with every part, got {faces:?}"
        );
        for (threads, pool) in &pools {
            let id = BenchmarkId::new(format!("{threads}t"), name);
            group.bench_with_input(id, &img, |b, img| {
                b.iter(|| {
                    pool.install(|| analyzer.analyze_rgb(img))
                        .expect("analysis")
                })
            });
        }
    }
    group.finish();
}

/// The first `LFW_SUBSET` LFW images, decoded, or `None` when the folder is absent or empty.
fn lfw_subset() -> Option<Vec<RgbImage>> {
    let mut names: Vec<String> = std::fs::read_dir(LFW)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let images: Vec<RgbImage> = names
        .iter()
        .map(|n| Path::new(LFW).join(n).join(format!("{n}_0001.jpg")))
        .filter(|p| p.is_file())
        .take(LFW_SUBSET)
        .map(|p| {
            faceanalysis::load_image(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .to_rgb8()
        })
        .collect();
    (!images.is_empty()).then_some(images)
}

fn opencv(c: &mut Criterion) {
    let Some(images) = lfw_subset() else {
        eprintln!("pipeline_opencv: no images in {LFW}, skipped");
        return;
    };
    let analyzer = FaceAnalyzer::builder()
        .detector_options(DetectorOptions {
            max_faces: Some(1),
            ..DetectorOptions::default()
        })
        .parts([Part::Embedding])
        .build()
        .expect("embedded weights");
    let embedded = images
        .iter()
        .map(|img| analyzer.analyze_rgb(img).expect("analysis"))
        .filter(|faces| faces.first().is_some_and(|f| f.embedding.is_some()))
        .count();
    eprintln!(
        "pipeline_opencv: {embedded} of {} LFW images have an embedded face",
        images.len()
    );
    let mut group = c.benchmark_group("pipeline_opencv");
    group.sampling_mode(SamplingMode::Flat);
    for (threads, pool) in &pools() {
        group.bench_function(format!("{threads}t"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for img in &images {
                        pool.install(|| analyzer.analyze_rgb(img))
                            .expect("analysis");
                    }
                }
                start.elapsed() / images.len() as u32
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = mediapipe, opencv
}
criterion_main!(benches);
