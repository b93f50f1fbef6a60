//! Blendshapes parity with the original `face_blendshapes.tflite` in LiteRT and with MediaPipe's
//! own Face Landmarker.
//!
//! The fixture `tests/fixtures/blendshapes.safetensors` is written by
//! `tools/reference/blendshapes.py` from the faces MediaPipe finds in the sample images (each
//! also mirrored and rotated): MediaPipe's meshes in image pixels (`mesh`), its blendshape
//! scores (`mediapipe`), the model input MediaPipe builds from the mesh (`input`) and LiteRT's
//! output on it (`output`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;
use facecore::geometry::Point3;
use facecore::weights::WeightsSource;
use faceexpr::action_units::ActionUnits;
use faceexpr::blendshapes::{landmarks_to_input, FaceBlendshapes, BLENDSHAPE_NAMES};

/// Scores (in `[0, 1]`) of the network against LiteRT on the same input. The weights are the
/// source's fp16 values in both; what remains is f32 summation order (XNNPACK's kernels against
/// candle's) through 19 dense layers and 8 layer norms. Measured: 1.6e-6.
const RAW_TOLERANCE: f32 = 1e-5;
/// Our whole `predict` on MediaPipe's mesh against MediaPipe's own scores. MediaPipe's scores
/// differ from LiteRT's on the same input by up to 2e-6 (its own TFLite runtime), and the
/// pixel coordinates are rebuilt from the normalised landmarks in f32. Measured: 1.5e-6.
const END_TO_END_TOLERANCE: f32 = 1e-5;
/// Our model input from the mesh against MediaPipe's.
const INPUT_TOLERANCE: f32 = 0.0;

fn fixture() -> HashMap<String, Tensor> {
    facetest::fixture(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/blendshapes.safetensors"),
    )
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2().unwrap()
}

fn max_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn meshes(fx: &HashMap<String, Tensor>) -> Vec<Vec<Point3>> {
    let mesh: Vec<Vec<Vec<f32>>> = fx["mesh"].to_vec3().unwrap();
    mesh.iter()
        .map(|m| m.iter().map(|p| Point3::new(p[0], p[1], p[2])).collect())
        .collect()
}

#[test]
fn network_matches_litert() {
    let fx = fixture();
    let model = FaceBlendshapes::load(&WeightsSource::Embedded).unwrap();
    let ours = rows(&model.forward(&fx["input"]).unwrap());
    let want = rows(&fx["output"]);
    let err = max_diff(&ours, &want);
    println!("{} faces: raw network max error {err:.2e}", want.len());
    assert!(err <= RAW_TOLERANCE, "network differs from LiteRT by {err}");
}

#[test]
fn predict_matches_mediapipe() {
    let fx = fixture();
    let model = FaceBlendshapes::load(&WeightsSource::Embedded).unwrap();
    let meshes = meshes(&fx);
    let refs: Vec<&[Point3]> = meshes.iter().map(|m| m.as_slice()).collect();

    let input = landmarks_to_input(&refs).unwrap();
    let want_input: Vec<f32> = fx["input"].flatten_all().unwrap().to_vec1().unwrap();
    let err_in = input
        .iter()
        .zip(&want_input)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert_eq!(input.len(), want_input.len());
    assert!(err_in <= INPUT_TOLERANCE, "input differs by {err_in}");

    let ours: Vec<Vec<f32>> = model
        .predict(&refs)
        .unwrap()
        .iter()
        .map(|b| b.scores.to_vec())
        .collect();
    let want = rows(&fx["mediapipe"]);
    let err = max_diff(&ours, &want);
    println!("{} faces: end-to-end max error {err:.2e}", want.len());
    assert!(
        err <= END_TO_END_TOLERANCE,
        "predict differs from MediaPipe by {err}"
    );

    // The smiling astronaut (face 0): MediaPipe's strongest blendshapes are the smile.
    let b = model.predict(&refs[..1]).unwrap()[0];
    let top = b
        .iter()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(n, _)| n)
        .unwrap();
    assert!(top.starts_with("mouthSmile"), "{top}");
    assert!(ActionUnits::from_blendshapes(&b)
        .present(0.5)
        .contains(&"AU12"));
    assert_eq!(BLENDSHAPE_NAMES.len(), want[0].len());
}

#[test]
fn wrong_mesh_length_is_an_error() {
    let model = FaceBlendshapes::load(&WeightsSource::Embedded).unwrap();
    let mesh = vec![Point3::new(1.0, 2.0, 3.0); 468];
    let err = model.predict(&[&mesh]).unwrap_err().to_string();
    assert!(err.contains("468"), "{err}");
}
