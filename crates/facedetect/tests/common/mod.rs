//! Helpers shared by the parity tests: fixtures, images, tensor and detection comparison.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use facedetect::Detection;

/// The crate's root directory.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tensors of `tests/fixtures/<name>.safetensors`.
pub fn fixture(name: &str) -> HashMap<String, Tensor> {
    facetest::fixture(root().join(format!("tests/fixtures/{name}.safetensors")))
}

/// An image file decoded to RGB.
pub fn load_rgb(path: &Path) -> image::RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .to_rgb8()
}

/// A sample image of `examples/images/`, decoded to RGB by the `image` crate.
pub fn sample_image(name: &str) -> image::RgbImage {
    load_rgb(&root().join(format!("../../examples/images/{name}.jpg")))
}

/// The largest absolute value of a tensor.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The largest absolute difference between two tensors of the same shape.
pub use facetest::max_abs_diff;

/// Compares detections with reference rows `x0, y0, x1, y1, score, then keypoints x, y` (the
/// detector's own keypoints): same count, boxes and keypoints within `px`, scores within `score`.
pub fn compare_detections(what: &str, dets: &[Detection], want: &Tensor, px: f32, score: f32) {
    let want: Vec<Vec<f32>> = want.to_dtype(DType::F32).unwrap().to_vec2().unwrap();
    assert_eq!(dets.len(), want.len(), "{what}: detection count");
    for (d, w) in dets.iter().zip(&want) {
        assert_eq!(
            2 * d.native_keypoints.len(),
            w.len() - 5,
            "{what}: keypoint count"
        );
        let mut got = vec![d.bbox.x0, d.bbox.y0, d.bbox.x1, d.bbox.y1];
        got.extend(d.native_keypoints.iter().flat_map(|p| [p.x, p.y]));
        let expect: Vec<f32> = w[..4].iter().chain(&w[5..]).copied().collect();
        let err = got
            .iter()
            .zip(&expect)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "{what}: score {:.4} (ref {:.4}), max box/keypoint error {err:.2e} px",
            d.score, w[4]
        );
        assert!(err <= px, "{what}: box/keypoints differ by {err} px");
        assert!(
            (d.score - w[4]).abs() <= score,
            "{what}: score {} vs {}",
            d.score,
            w[4]
        );
    }
}
