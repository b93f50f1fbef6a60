//! FaceMesh v2 parity with the original `.tflite` in LiteRT and with MediaPipe's own
//! `FaceLandmarker`.
//!
//! Fixtures (`tests/fixtures/{facemesh,mediapipe}_<image>.safetensors`, see the README there)
//! are written by `tools/reference/facemesh.py`. The images are the Pillow decodings of the
//! sample JPEGs stored by the BlazeFace reference (`facedetect/tests/fixtures/
//! blazeface_pixels_<image>.png`), the pixels MediaPipe was given.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use facecore::geometry::Point;
use facecore::weights::WeightsSource;
use facedetect::{BlazeFace, DetectorOptions, FaceDetector};
use facelandmarks::facemesh::{FaceMesh, Landmarks478, MeshRoi};
use facetest::max_abs_diff;

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

/// Raw landmarks (input pixels, values up to ~260): ours against LiteRT. Both run the same
/// fp16 weights in f32; the difference is the kernels' summation order (XNNPACK against
/// candle's and our depthwise loop) through 70 layers. Measured: at most 2.7e-4.
const RAW_LANDMARK_TOLERANCE: f32 = 1e-3;
/// Presence logit (~17) and the auxiliary sigmoid output. Measured: at most 2.1e-5.
const RAW_SCORE_TOLERANCE: f32 = 1e-4;
/// Our crop of MediaPipe's ROI against OpenCV's `warpPerspective` (8-bit levels): OpenCV
/// interpolates in fixed point (1/32-pixel positions, 15-bit weights), we in f32. Measured: 1
/// level on fewer than 0.05% of the values.
const CROP_LEVEL_TOLERANCE: u8 = 1;
/// The whole pipeline on the re-run's ROI against the re-run of MediaPipe's graph on exactly
/// that ROI (image pixels, x, y and z). Measured: at most 0.002 px in x, y, 0.017 px in z.
const RERUN_PIXEL_TOLERANCE: f32 = 0.05;
/// The same against MediaPipe's own landmarks, x and y. The re-run's detection matches
/// MediaPipe's to 1e-7 on astronaut and group but only to ~4e-5 (normalised) on the
/// letterboxed grace_hopper; the mesh follows the face, so x and y move little. Measured: at
/// most 0.10 px.
const MEDIAPIPE_PIXEL_TOLERANCE: f32 = 0.25;
/// z against MediaPipe's: z scales with the ROI's width, which carries the detection's
/// difference directly. Measured: at most 0.86 px (grace_hopper; 0.09 px elsewhere).
const MEDIAPIPE_DEPTH_TOLERANCE: f32 = 1.0;
/// The pipeline from our own BlazeFace detection, x and y. `facedetect`'s letterbox samples
/// with half-pixel centres where MediaPipe's ImageToTensor (OpenCV `warpPerspective`) samples
/// pixel `4i` directly, so its boxes and keypoints differ from MediaPipe's by 4-12 px on these
/// images; the mesh follows the face, not the ROI. Measured: at most 2.5 px.
const BLAZEFACE_PIXEL_TOLERANCE: f32 = 3.0;
/// MediaPipe's ROI on the sample JPEG decoded by the `image` crate, whose pixels differ from
/// Pillow's by up to 4 levels, against MediaPipe's landmarks (x, y). Measured: at most 0.10 px.
const JPEG_PIXEL_TOLERANCE: f32 = 0.25;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    facetest::fixture(root().join(format!("tests/fixtures/{name}.safetensors")))
}

fn pixels(image: &str) -> image::RgbImage {
    let path = root().join(format!(
        "../facedetect/tests/fixtures/blazeface_pixels_{image}.png"
    ));
    image::open(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .to_rgb8()
}

fn sample_jpeg(image: &str) -> image::RgbImage {
    let path = root().join(format!("../../examples/images/{image}.jpg"));
    image::open(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .to_rgb8()
}

/// The fixture's ROIs (normalised `cx, cy, w, h, rotation`) in image pixels.
fn rois(fx: &HashMap<String, Tensor>) -> Vec<MeshRoi> {
    let size: Vec<f32> = fx["image_size"].to_vec1().unwrap();
    let rows: Vec<Vec<f32>> = fx["roi"].to_vec2().unwrap();
    rows.iter()
        .map(|r| MeshRoi {
            center: Point::new(r[0] * size[0], r[1] * size[1]),
            width: r[2] * size[0],
            height: r[3] * size[1],
            rotation: r[4],
        })
        .collect()
}

/// Largest x/y distance (pixels) between our meshes and reference `Fx478x3` landmarks, and the
/// largest z difference.
fn mesh_error(what: &str, ours: &[Landmarks478], want: &Tensor) -> (f32, f32) {
    let want: Vec<Vec<Vec<f32>>> = want.to_vec3().unwrap();
    assert_eq!(ours.len(), want.len(), "{what}: face count");
    let (mut xy, mut z) = (0f32, 0f32);
    for (m, w) in ours.iter().zip(&want) {
        assert_eq!(m.points.len(), 478);
        for (p, q) in m.points.iter().zip(w) {
            xy = xy.max((p.x - q[0]).abs()).max((p.y - q[1]).abs());
            z = z.max((p.z - q[2]).abs());
        }
    }
    println!("{what}: max |dx|,|dy| {xy:.3} px, max |dz| {z:.3} px");
    (xy, z)
}

#[test]
fn network_matches_litert() {
    let mesh = FaceMesh::load(&WeightsSource::Embedded).expect("embedded weights load");
    for image in IMAGES {
        let fx = fixture(&format!("facemesh_{image}"));
        let input = fx["input_u8"]
            .permute((0, 3, 1, 2))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .broadcast_div(&Tensor::new(255f32, &Device::Cpu).unwrap())
            .unwrap();
        let out = mesh.net().forward_raw(&input).unwrap();
        let err = max_abs_diff(&out.landmarks, &fx["landmarks_raw"]);
        let err_logit = max_abs_diff(&out.presence_logits, &fx["presence_logit"]);
        let err_aux = max_abs_diff(&out.aux_scores, &fx["identity_2"]);
        println!("{image}: landmarks {err:.2e}, presence logit {err_logit:.2e}, aux {err_aux:.2e}");
        assert!(
            err <= RAW_LANDMARK_TOLERANCE,
            "{image}: landmarks differ by {err}"
        );
        assert!(
            err_logit <= RAW_SCORE_TOLERANCE,
            "{image}: logit differs by {err_logit}"
        );
        assert!(
            err_aux <= RAW_SCORE_TOLERANCE,
            "{image}: aux differs by {err_aux}"
        );
    }
}

#[test]
fn crop_matches_opencv() {
    for image in IMAGES {
        let img = pixels(image);
        let fx = fixture(&format!("mediapipe_{image}"));
        let want = fixture(&format!("facemesh_{image}"))["input_u8"].clone();
        for (i, roi) in rois(&fx).iter().enumerate() {
            let ours = roi.crop(&img).unwrap();
            let want: Vec<u8> = want
                .get(i)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let diffs: Vec<u8> = ours
                .as_raw()
                .iter()
                .zip(&want)
                .map(|(a, b)| a.abs_diff(*b))
                .collect();
            let max = diffs.iter().copied().max().unwrap_or(0);
            let off = diffs.iter().filter(|&&d| d > 0).count() as f32 / diffs.len() as f32;
            println!(
                "{image} face {i}: crop max diff {max} levels, {:.3}% differ",
                100.0 * off
            );
            assert!(
                max <= CROP_LEVEL_TOLERANCE,
                "{image}: crop differs by {max}"
            );
        }
    }
}

#[test]
fn pipeline_matches_mediapipe() {
    let mesh = FaceMesh::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let img = pixels(image);
        let fx = fixture(&format!("mediapipe_{image}"));
        let ours = mesh.run(&img, &rois(&fx)).unwrap();
        let (xy, z) = mesh_error(&format!("{image} vs MediaPipe"), &ours, &fx["landmarks_px"]);
        assert!(
            xy <= MEDIAPIPE_PIXEL_TOLERANCE,
            "{image}: {xy} px from MediaPipe"
        );
        assert!(
            z <= MEDIAPIPE_DEPTH_TOLERANCE,
            "{image}: z {z} px from MediaPipe"
        );
        let (xy, z) = mesh_error(
            &format!("{image} vs re-run"),
            &ours,
            &fx["rerun_landmarks_px"],
        );
        assert!(
            xy <= RERUN_PIXEL_TOLERANCE,
            "{image}: {xy} px from the re-run"
        );
        assert!(
            z <= RERUN_PIXEL_TOLERANCE,
            "{image}: z {z} px from the re-run"
        );
        let jpeg = mesh.run(&sample_jpeg(image), &rois(&fx)).unwrap();
        let (xy, _) = mesh_error(
            &format!("{image} (image-crate JPEG)"),
            &jpeg,
            &fx["landmarks_px"],
        );
        assert!(
            xy <= JPEG_PIXEL_TOLERANCE,
            "{image}: JPEG {xy} px from MediaPipe"
        );
        for m in &ours {
            assert!(m.presence > 0.99, "{image}: presence {}", m.presence);
            let k = m.keypoints5();
            assert!(k.0[0].x < k.0[1].x && k.0[3].x < k.0[4].x, "{image}: {k:?}");
        }
    }
}

#[test]
fn pipeline_from_blazeface_matches_mediapipe() {
    let mesh = FaceMesh::load(&WeightsSource::Embedded).unwrap();
    let detector = BlazeFace::short_range(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let img = pixels(image);
        let fx = fixture(&format!("mediapipe_{image}"));
        let dets = detector.detect(&img, &DetectorOptions::default()).unwrap();
        let rois: Vec<MeshRoi> = dets
            .iter()
            .map(|d| {
                let eyes = (d.native_keypoints.first(), d.native_keypoints.get(1));
                MeshRoi::from_detection(d.bbox, eyes.0.copied(), eyes.1.copied())
            })
            .collect();
        let ours = mesh.run(&img, &rois).unwrap();
        let (xy, _) = mesh_error(
            &format!("{image} from BlazeFace"),
            &ours,
            &fx["landmarks_px"],
        );
        assert!(
            xy <= BLAZEFACE_PIXEL_TOLERANCE,
            "{image}: {xy} px from MediaPipe"
        );
    }
}

#[test]
fn small_roi_is_refused_and_empty_batch_is_empty() {
    let mesh = FaceMesh::load(&WeightsSource::Embedded).unwrap();
    let img = pixels("astronaut");
    assert!(mesh.run(&img, &[]).unwrap().is_empty());
    let tiny = MeshRoi::from_detection(
        facecore::geometry::BBox::new(10.0, 10.0, 20.0, 20.0),
        None,
        None,
    );
    let err = mesh.run(&img, &[tiny]).unwrap_err();
    assert!(matches!(
        err,
        facelandmarks::Error::RoiTooSmall { index: 0, .. }
    ));
    // A ROI mostly outside the image still runs (border replicated).
    let edge = MeshRoi::from_detection(
        facecore::geometry::BBox::new(-100.0, 450.0, 60.0, 610.0),
        None,
        None,
    );
    let out = mesh.run(&img, &[edge]).unwrap();
    assert_eq!(out[0].points.len(), 478);
}
