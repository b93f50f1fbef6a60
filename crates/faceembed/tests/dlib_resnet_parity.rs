//! dlib ResNet parity with dlib's own Python module (dlib 20).
//!
//! Fixtures (`tests/fixtures/dlib_resnet_<image>_<k>.safetensors`) are written by
//! `tools/reference/dlib_resnet.py`: a crop of a sample image, dlib's 5 landmarks of the face in
//! it, dlib's 150x150 chip (`get_face_chip`, padding 0.25), and the raw descriptors dlib computes
//! from that chip and from the crop and landmarks (its whole pipeline).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use facecore::chip::DlibPoints5;
use facecore::geometry::Point;
use facecore::weights::WeightsSource;
use faceembed::dlib_resnet::{DlibResNet, DLIB_DISTANCE_THRESHOLD};
use faceembed::embedding::EmbeddingModel;
use facetest::max_abs_diff_slices as max_abs_diff;
use image::RgbImage;

const FACES: [&str; 5] = [
    "astronaut_0",
    "group_1",
    "group_3",
    "group_5",
    "astronaut_large_0",
];

/// Descriptors from dlib's own chip, absolute (fp32 model, the workspace's 1e-4 bound). Both
/// sides compute in f32; dlib's CPU build (affine layers applied after each convolution) and
/// ours (affine folded into the kernels at load) round differently. Measured: at most 2.7e-7
/// on descriptors of norm 1.4 (components up to about 0.4).
const DESCRIPTOR_TOLERANCE: f32 = 1e-4;
/// Our chip against dlib's, in levels (0-255): mean and largest absolute difference. Measured:
/// one or two of the 67,500 values differ, by one level; the mean is below 3e-5.
const CHIP_MEAN_TOLERANCE: f32 = 1.0;
const CHIP_MAX_TOLERANCE: f32 = 1.0;
/// The whole pipeline (our chip, then our network) against dlib's descriptor, as a Euclidean
/// distance between raw descriptors (dlib's same-person rule is < 0.6). Measured: at most
/// 2.4e-5, from the one-level chip differences.
const PIPELINE_DISTANCE_TOLERANCE: f32 = 1e-3;

fn fixture(name: &str) -> HashMap<String, Tensor> {
    facetest::fixture(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/dlib_resnet_{name}.safetensors")),
    )
}

/// An `H x W x 3` u8 tensor as an image.
fn rgb(t: &Tensor) -> RgbImage {
    let (h, w, _) = t.dims3().unwrap();
    let data: Vec<u8> = t.flatten_all().unwrap().to_vec1().unwrap();
    RgbImage::from_raw(w as u32, h as u32, data).unwrap()
}

fn vector(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32).unwrap().to_vec1().unwrap()
}

fn points(t: &Tensor) -> DlibPoints5 {
    let p: Vec<Vec<f32>> = t.to_vec2().unwrap();
    DlibPoints5(std::array::from_fn(|i| Point::new(p[i][0], p[i][1])))
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

#[test]
fn descriptors_match_dlib_on_dlib_chips() {
    let net = DlibResNet::load(&WeightsSource::Embedded).expect("embedded weights load");
    let fixtures: Vec<_> = FACES.iter().map(|f| fixture(f)).collect();
    let chips: Vec<RgbImage> = fixtures.iter().map(|fx| rgb(&fx["chip"])).collect();
    // One batch of every chip.
    let got = net.descriptors(&chips).unwrap();
    assert_eq!(got.len(), FACES.len());
    for ((face, fx), ours) in FACES.iter().zip(&fixtures).zip(&got) {
        let want = vector(&fx["descriptor"]);
        let err = max_abs_diff(ours, &want);
        let norm = want.iter().map(|v| v * v).sum::<f32>().sqrt();
        println!("{face}: descriptor max err {err:.2e} (|dlib| {norm:.4})");
        assert!(
            err <= DESCRIPTOR_TOLERANCE,
            "{face}: descriptor differs by {err}"
        );
    }
    // A face alone gives what it gives in the batch.
    let single = net.descriptors(&chips[1..2]).unwrap();
    assert!(max_abs_diff(&single[0], &got[1]) <= 1e-6);
    // Embeddings are the unit descriptors.
    let emb = net.embed_chips(&chips[..1]).unwrap();
    assert_eq!(emb[0].model, EmbeddingModel::DlibResNet);
    let norm = got[0].iter().map(|v| v * v).sum::<f32>().sqrt();
    let unit: Vec<f32> = got[0].iter().map(|v| v / norm).collect();
    assert!(max_abs_diff(&emb[0].vector, &unit) <= 1e-6);
}

#[test]
fn chips_and_pipeline_match_dlib() {
    let net = DlibResNet::load(&WeightsSource::Embedded).expect("embedded weights load");
    for face in FACES {
        let fx = fixture(face);
        let image = rgb(&fx["image"]);
        let landmarks = points(&fx["points"]);
        let ours = DlibResNet::chips(&image, &[landmarks]).unwrap();
        let want = rgb(&fx["chip"]);
        let diffs: Vec<f32> = ours[0]
            .as_raw()
            .iter()
            .zip(want.as_raw())
            .map(|(a, b)| (*a as f32 - *b as f32).abs())
            .collect();
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        let max = diffs.iter().copied().fold(0.0, f32::max);
        let descriptor = net.descriptors(&ours).unwrap();
        let want_descriptor = vector(&fx["descriptor_pipeline"]);
        let dist = distance(&descriptor[0], &want_descriptor);
        println!(
            "{face}: chip mean diff {mean:.2e} (max {max}, {} of {} values differ) levels; \
             pipeline descriptor distance {dist:.2e}, max err {:.2e}",
            diffs.iter().filter(|d| **d > 0.0).count(),
            diffs.len(),
            max_abs_diff(&descriptor[0], &want_descriptor)
        );
        assert!(
            mean <= CHIP_MEAN_TOLERANCE,
            "{face}: chip differs by {mean} on average"
        );
        assert!(
            max <= CHIP_MAX_TOLERANCE,
            "{face}: a chip value differs by {max}"
        );
        assert!(
            dist <= PIPELINE_DISTANCE_TOLERANCE.min(DLIB_DISTANCE_THRESHOLD),
            "{face}: pipeline descriptor {dist} away from dlib's"
        );
        // `embed` is the same pipeline, normalised.
        let emb = net.embed(&image, &[landmarks]).unwrap();
        let norm = descriptor[0].iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((emb[0].vector[0] - descriptor[0][0] / norm).abs() <= 1e-6);
    }
}
