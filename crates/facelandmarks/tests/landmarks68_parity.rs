//! Parity of the face-api.js 68-point landmark port with TF.js running the original model
//! (fixtures from `tools/reference/faceapi.mjs`, see `tests/fixtures/README.md`).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use facecore::faceapi::{face_pixels, FaceCrop, MEAN_RGB};
use facecore::geometry::BBox;
use facecore::weights::WeightsSource;
use facelandmarks::landmarks68::{FaceLandmarks68, NUM_POINTS};
use facetest::{max_abs_diff_slices as max_abs, FaceApiFixture};
use image::RgbImage;

const IMAGES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

/// Max abs error of the raw outputs (`[0, 1]` of the input). Both sides compute in f32 with the
/// same weights; only the summation order of the convolutions differs.
const RAW_TOLERANCE: f32 = 1e-4;
/// Max error in image pixels against TF.js's positions mapped through the crop (crops of up
/// to a few hundred pixels scale the raw error up).
const PIXEL_TOLERANCE: f32 = 1e-3;
/// Max error in image pixels against face-api's composed task, which shifts the points by the
/// unfloored box corner instead of the crop's corner (under 1 pixel for boxes inside the image).
const COMPOSED_TOLERANCE: f32 = 1.0;

fn fixture(image: &str) -> FaceApiFixture {
    FaceApiFixture::load(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "tests/fixtures/faceapi_landmarks68_{image}.safetensors"
    )))
}

fn boxes(f: &FaceApiFixture) -> Vec<BBox> {
    f.boxes()
        .iter()
        .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
        .collect()
}

#[test]
fn crops_and_input_match_tfjs() {
    for image in IMAGES {
        let f = fixture(image);
        let img = f.image();
        let (w, h) = img.dimensions();
        let crops: Vec<FaceCrop> = boxes(&f)
            .iter()
            .map(|b| FaceCrop::from_box(b, w, h).unwrap())
            .collect();
        for (crop, want) in crops.iter().zip(f.f32s("crops").chunks_exact(4)) {
            let got = [crop.x, crop.y, crop.width, crop.height].map(|v| v as f32);
            assert_eq!(got.as_slice(), want, "{image}");
        }
        if f.has("input") {
            let got: Vec<f32> = crops
                .iter()
                .flat_map(|c| face_pixels(&img, c).unwrap())
                .collect();
            let err = max_abs(&got, &f.f32s("input"));
            println!("{image}: 112x112 input max abs error {err:e} (0-255 scale)");
            assert!(err < 1e-4, "{image}: input error {err}");
        }
    }
}

#[test]
fn network_matches_tfjs_on_its_input() {
    let net = FaceLandmarks68::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES.iter().filter(|i| fixture(i).has("input")) {
        let f = fixture(image);
        let hwc = f.f32s("input");
        let n = hwc.len() / (112 * 112 * 3);
        let normalized: Vec<f32> = hwc
            .chunks_exact(3)
            .flat_map(|p| (0..3).map(move |c| (p[c] - MEAN_RGB[c]) / 255.0))
            .collect();
        let input = Tensor::from_vec(normalized, (n, 112, 112, 3), &Device::Cpu)
            .unwrap()
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        let err = f.max_abs_diff("raw", &net.forward(&input).unwrap());
        println!("{image}: raw output max abs error {err:e}");
        assert!(err < RAW_TOLERANCE, "{image}: raw error {err}");
    }
}

#[test]
fn landmarks_match_tfjs_in_image_pixels() {
    let net = FaceLandmarks68::load(&WeightsSource::Embedded).unwrap();
    for image in IMAGES {
        let f = fixture(image);
        let got = net.run(&f.image(), &boxes(&f)).unwrap();
        let got: Vec<f32> = got
            .iter()
            .flat_map(|l| {
                assert_eq!(l.points.len(), NUM_POINTS);
                l.points.iter().flat_map(|p| [p.x, p.y])
            })
            .collect();
        // TF.js's crop-relative positions, scaled by the crop and shifted by its corner.
        let crops = f.f32s("crops");
        let want: Vec<f32> = f
            .f32s("relative")
            .chunks_exact(2 * NUM_POINTS)
            .zip(crops.chunks_exact(4))
            .flat_map(|(rel, c)| {
                rel.chunks_exact(2)
                    .flat_map(|p| [p[0] * c[2] + c[0], p[1] * c[3] + c[1]])
                    .collect::<Vec<_>>()
            })
            .collect();
        let err = max_abs(&got, &want);
        let composed = max_abs(&got, &f.f32s("landmarks"));
        println!(
            "{image}: landmarks max error {err:e} px; against face-api's composed task {composed:.3} px"
        );
        assert!(err < PIXEL_TOLERANCE, "{image}: {err} px");
        assert!(composed < COMPOSED_TOLERANCE, "{image}: {composed} px");
    }
}

#[test]
fn empty_and_outside_boxes() {
    let net = FaceLandmarks68::load(&WeightsSource::Embedded).unwrap();
    let img = RgbImage::new(64, 48);
    assert!(net.run(&img, &[]).unwrap().is_empty());
    assert!(net.run(&img, &[BBox::new(70., 0., 90., 20.)]).is_err());
}
