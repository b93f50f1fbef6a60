//! `FaceAnalyzer::analyze` with the default parts on a 640x480 image holding one face and eight
//! faces (the astronaut sample pasted onto a gray canvas), at 1 and 2 threads, and the
//! analyzer's build from the embedded weights (`analyzer_build`). Run with
//! `cargo bench --bench analyze`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use faceanalysis::FaceAnalyzer;
use facecore::threads::ThreadPool;
use image::{imageops, DynamicImage, Rgb, RgbImage};

/// A 640x480 gray canvas with `faces` copies of the sample face: one large, or a 4x2 grid.
fn canvas(faces: usize) -> DynamicImage {
    let face = faceanalysis::load_image("examples/images/astronaut.jpg")
        .expect("sample image")
        .to_rgb8();
    let mut canvas = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
    if faces == 1 {
        let face = imageops::resize(&face, 400, 400, imageops::FilterType::Triangle);
        imageops::overlay(&mut canvas, &face, 120, 40);
    } else {
        let face = imageops::resize(&face, 150, 150, imageops::FilterType::Triangle);
        for i in 0..faces {
            let (col, row) = ((i % 4) as i64, (i / 4) as i64);
            imageops::overlay(&mut canvas, &face, 10 + col * 157, 60 + row * 190);
        }
    }
    DynamicImage::ImageRgb8(canvas)
}

fn analyze(c: &mut Criterion) {
    // Every default model built from the embedded weights (in a process that has built one
    // before: the first build in a process also pages the weights in).
    c.bench_function("analyzer_build", |b| {
        b.iter(|| FaceAnalyzer::builder().build().expect("embedded weights"))
    });
    let analyzer = FaceAnalyzer::builder().build().expect("embedded weights");
    let mut group = c.benchmark_group("analyze_640x480");
    for faces in [1, 8] {
        let img = canvas(faces);
        let found = analyzer.analyze(&img).expect("analysis").len();
        assert_eq!(
            found, faces,
            "the canvas should hold {faces} detectable faces"
        );
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads).expect("thread pool");
            let id = BenchmarkId::new(format!("{threads}t"), format!("{faces}_faces"));
            group.bench_with_input(id, &img, |b, img| {
                b.iter(|| pool.install(|| analyzer.analyze(img)).expect("analysis"))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = analyze
}
criterion_main!(benches);
