//! Parity of the face-api.js expression port with TF.js running the original model (fixtures
//! from `tools/reference/faceapi.mjs`, see `tests/fixtures/README.md`).

use std::path::PathBuf;

use facecore::faceapi::{input_tensor, FaceCrop};
use facecore::geometry::BBox;
use facecore::weights::WeightsSource;
use faceexpr::faceapi_expression::{FaceApiExpression, FACEAPI_LABELS};
use facetest::max_abs_diff_slices as max_abs;
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

/// Max abs error of logits and probabilities: both sides compute in f32 with the same weights;
/// only the summation order of the convolutions differs.
const TOLERANCE: f32 = 1e-4;

/// The workspace's class order.
const LABELS: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load(image: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("faceapi_expression_{image}.safetensors"));
        Fixture {
            bytes: std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        }
    }

    fn f32s(&self, name: &str) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// The image with each stored face crop pasted where it was cut (black elsewhere).
    fn image(&self) -> RgbImage {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let size = self.f32s("image_size");
        let mut img = RgbImage::new(size[0] as u32, size[1] as u32);
        for (i, c) in self.f32s("crops").chunks_exact(4).enumerate() {
            let t = st.tensor(&format!("crop_{i}")).unwrap();
            assert_eq!(t.dtype(), Dtype::U8);
            assert_eq!(t.shape(), &[c[3] as usize, c[2] as usize, 3]);
            for (j, px) in t.data().chunks_exact(3).enumerate() {
                let (x, y) = ((j % c[2] as usize) as u32, (j / c[2] as usize) as u32);
                img.put_pixel(
                    c[0] as u32 + x,
                    c[1] as u32 + y,
                    image::Rgb([px[0], px[1], px[2]]),
                );
            }
        }
        img
    }

    fn boxes(&self) -> Vec<BBox> {
        self.f32s("boxes")
            .chunks_exact(4)
            .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
            .collect()
    }
}

#[test]
fn logits_match_tfjs() {
    let net = FaceApiExpression::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let f = Fixture::load(image);
        let img = f.image();
        let (w, h) = img.dimensions();
        let crops: Vec<FaceCrop> = f
            .boxes()
            .iter()
            .map(|b| FaceCrop::from_box(b, w, h).unwrap())
            .collect();
        let input = input_tensor(&img, &crops, &candle_core::Device::Cpu).unwrap();
        let got: Vec<f32> = net
            .forward(&input)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let err = max_abs(&got, &f.f32s("logits"));
        println!("{image}: logits max abs error {err:e}");
        assert!(err < TOLERANCE, "{image}: {err}");
    }
}

#[test]
fn probabilities_match_tfjs_in_our_label_order() {
    let net = FaceApiExpression::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let f = Fixture::load(image);
        let got = net.probabilities(&f.image(), &f.boxes()).unwrap();
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
