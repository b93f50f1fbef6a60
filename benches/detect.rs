//! Detector speed on a 640x480 image holding one face (the astronaut sample, letterboxed onto
//! a gray canvas). Run with `cargo bench --bench detect`.

use criterion::{criterion_group, criterion_main, Criterion};
use faceanalysis::{DetectorKind, FaceAnalyzer};
use image::{imageops, DynamicImage, Rgb, RgbImage};

fn canvas() -> DynamicImage {
    let face = faceanalysis::load_image("examples/images/astronaut.jpg")
        .expect("sample image")
        .to_rgb8();
    let face = imageops::resize(&face, 400, 400, imageops::FilterType::Triangle);
    let mut canvas = RgbImage::from_pixel(640, 480, Rgb([128, 128, 128]));
    imageops::overlay(&mut canvas, &face, 120, 40);
    DynamicImage::ImageRgb8(canvas)
}

fn detectors(c: &mut Criterion) {
    let img = canvas();
    let mut group = c.benchmark_group("detect_640x480");
    for kind in DetectorKind::ALL {
        let analyzer = FaceAnalyzer::builder()
            .detector(kind)
            .build()
            .expect("embedded weights");
        group.bench_function(kind.name(), |b| {
            b.iter(|| analyzer.analyze(&img).expect("analysis"))
        });
    }
    group.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
