//! Parity of the face-api.js expression port with TF.js running the original model (fixtures
//! from `tools/reference/faceapi.mjs`, see `tests/fixtures/README.md`).

use std::path::PathBuf;

use facecore::faceapi::{input_tensor, FaceCrop};
use facecore::geometry::BBox;
use facecore::weights::WeightsSource;
use faceexpr::faceapi_expression::{FaceApiExpression, FACEAPI_LABELS};
use facetest::FaceApiFixture;

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

/// Max abs error of logits and probabilities: both sides compute in f32 with the same weights;
/// only the summation order of the convolutions differs.
const TOLERANCE: f32 = 1e-4;

/// The workspace's class order.
const LABELS: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

fn fixture(image: &str) -> FaceApiFixture {
    FaceApiFixture::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/faceapi_expression_{image}.safetensors"
    )))
}

fn boxes(f: &FaceApiFixture) -> Vec<BBox> {
    f.boxes()
        .iter()
        .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
        .collect()
}

#[test]
fn logits_match_tfjs() {
    let net = FaceApiExpression::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let f = fixture(image);
        let img = f.image();
        let (w, h) = img.dimensions();
        let crops: Vec<FaceCrop> = boxes(&f)
            .iter()
            .map(|b| FaceCrop::from_box(b, w, h).unwrap())
            .collect();
        let input = input_tensor(&img, &crops, &candle_core::Device::Cpu).unwrap();
        let err = f.max_abs_diff("logits", &net.forward(&input).unwrap());
        println!("{image}: logits max abs error {err:e}");
        assert!(err < TOLERANCE, "{image}: {err}");
    }
}

#[test]
fn probabilities_match_tfjs_in_our_label_order() {
    let net = FaceApiExpression::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let f = fixture(image);
        let got = net.probabilities(&f.image(), &boxes(&f)).unwrap();
        let want = f.f32s("probabilities");
        let mut err = 0f32;
        for (ours, theirs) in got.iter().zip(want.chunks_exact(7)) {
            for (label, p) in LABELS.iter().zip(ours) {
                let i = FACEAPI_LABELS
                    .iter()
                    .position(|l| l.starts_with(&label[..3]))
                    .unwrap();
                err = err.max((p - theirs[i]).abs());
            }
        }
        assert_eq!(got.len() * 7, want.len());
        let top = |p: &[f32; 7]| {
            let i = (0..7).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            LABELS[i]
        };
        println!(
            "{image}: probabilities max abs error {err:e}; top classes {:?}",
            got.iter().map(top).collect::<Vec<_>>()
        );
        assert!(err < TOLERANCE, "{image}: {err}");
    }
}
