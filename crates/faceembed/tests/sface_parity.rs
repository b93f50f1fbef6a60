//! SFace against onnxruntime on the original int8 ONNX file and OpenCV's own alignment
//! (fixtures from `tools/reference/sface.py`; see `tests/fixtures/README.md`).

use candle_core::Tensor;
use facecore::geometry::{Keypoints5, Point};
use facecore::weights::WeightsSource;
use faceembed::cluster::cluster;
use faceembed::embedding::{verify, Embedding, EmbeddingModel};
use faceembed::sface::{align, SFace};
use facetest::max_abs_diff_slices as max_abs_diff;
use image::RgbImage;
use safetensors::SafeTensors;

const SAMPLES: [&str; 3] = ["astronaut", "grace_hopper", "group"];

/// Which person each fixture face shows, in fixture order (the `group` collage is made of the
/// two portraits; see `examples/images/README.md`).
const PEOPLE: [(&str, &[&str]); 3] = [
    ("astronaut", &["collins"]),
    ("grace_hopper", &["hopper"]),
    (
        "group",
        &["collins", "hopper", "hopper", "collins", "collins"],
    ),
];

/// Largest error allowed between our raw features and onnxruntime's on the same chip (the fp32
/// tolerance: both sides dequantise the same int8 values exactly, then compute in float32; what
/// is left is summation order, onnxruntime's MLAS kernels against candle's with batch norm folded
/// into the kernels. Measured: at most 4.1e-6, on features of norm 10-13).
const FEATURE_TOL: f32 = 1e-4;

/// Largest mean absolute difference, in gray levels, between our aligned chip (the `image`
/// crate's JPEG decoding, float bilinear sampling) and OpenCV's (Pillow's decoding,
/// `warpAffine`'s fixed-point bilinear sampling with 1/32-pixel positions).
const CHIP_MEAN_TOL: f32 = 1.0;

/// Smallest cosine similarity, and largest component error, allowed between our end-to-end
/// (unit) embedding and onnxruntime's on OpenCV's chip of the same face: the chips differ by the
/// decoding and sampling above. Measured: cosine at least 0.99993, component error at most 4e-3.
const PIPELINE_MIN_COSINE: f32 = 0.999;
const PIPELINE_MAX_ERROR: f32 = 1e-2;

struct Fixture {
    keypoints: Vec<Keypoints5>,
    chips: Vec<RgbImage>,
    features: Vec<Vec<f32>>,
}

fn fixture(name: &str) -> Fixture {
    let path = format!(
        "{}/tests/fixtures/sface_{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |n: &str| -> Vec<f32> {
        st.tensor(n)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let kps = f32s("keypoints");
    let keypoints = kps
        .chunks_exact(10)
        .map(|k| Keypoints5(std::array::from_fn(|i| Point::new(k[2 * i], k[2 * i + 1]))))
        .collect();
    let chips = st
        .tensor("chips")
        .unwrap()
        .data()
        .chunks_exact(112 * 112 * 3)
        .map(|c| RgbImage::from_raw(112, 112, c.to_vec()).unwrap())
        .collect();
    let features = f32s("embeddings")
        .chunks_exact(128)
        .map(<[f32]>::to_vec)
        .collect();
    Fixture {
        keypoints,
        chips,
        features,
    }
}

fn image(name: &str) -> RgbImage {
    let path = format!(
        "{}/../../examples/images/{name}.jpg",
        env!("CARGO_MANIFEST_DIR")
    );
    image::open(path).unwrap().to_rgb8()
}

#[test]
fn network_matches_onnxruntime_on_opencv_chips() {
    let sface = SFace::load(&WeightsSource::Embedded).unwrap();
    for name in SAMPLES {
        let fx = fixture(name);
        let ours: Vec<Vec<f32>> = sface.features(&fx.chips).unwrap().to_vec2().unwrap();
        for (k, (o, r)) in ours.iter().zip(&fx.features).enumerate() {
            let err = max_abs_diff(o, r);
            eprintln!("{name} face {k}: max |feature error| {err:.2e}");
            assert!(err < FEATURE_TOL, "{name} face {k}: {err}");
        }
    }
}

#[test]
fn pipeline_matches_opencv_alignment_and_onnxruntime() {
    let sface = SFace::load(&WeightsSource::Embedded).unwrap();
    for name in SAMPLES {
        let fx = fixture(name);
        let img = image(name);
        let embeddings = sface.embed(&img, &fx.keypoints).unwrap();
        for (k, kps) in fx.keypoints.iter().enumerate() {
            let chip = align(&img, kps).unwrap();
            let diff: Vec<f32> = chip
                .as_raw()
                .iter()
                .zip(fx.chips[k].as_raw())
                .map(|(&a, &b)| (a as f32 - b as f32).abs())
                .collect();
            let mean = diff.iter().sum::<f32>() / diff.len() as f32;
            let max = diff.iter().copied().fold(0.0, f32::max);
            let reference = Embedding::new(EmbeddingModel::SFace, fx.features[k].clone()).unwrap();
            let cos = embeddings[k].cosine(&reference).unwrap();
            let err = max_abs_diff(&embeddings[k].vector, &reference.vector);
            eprintln!(
                "{name} face {k}: chip mean |diff| {mean:.3}, max {max}; \
                 embedding cosine to reference {cos:.5}, max error {err:.1e}"
            );
            assert!(
                mean <= CHIP_MEAN_TOL,
                "{name} face {k}: chip mean diff {mean}"
            );
            assert!(cos >= PIPELINE_MIN_COSINE, "{name} face {k}: cosine {cos}");
            assert!(err <= PIPELINE_MAX_ERROR, "{name} face {k}: error {err}");
        }
    }
}

#[test]
fn verification_and_clustering_on_real_faces() {
    let sface = SFace::load(&WeightsSource::Embedded).unwrap();
    let (mut embeddings, mut people) = (Vec::new(), Vec::new());
    for (name, who) in PEOPLE {
        let fx = fixture(name);
        embeddings.extend(sface.embed_chips(&fx.chips).unwrap());
        people.extend(who.iter().copied());
    }
    for i in 0..embeddings.len() {
        for j in i + 1..embeddings.len() {
            let v = verify(&embeddings[i], &embeddings[j]).unwrap();
            let same = people[i] == people[j];
            assert_eq!(v.same, same, "faces {i} and {j}: {v:?}");
        }
    }
    let groups = cluster(&embeddings).unwrap();
    let named: Vec<Vec<&str>> = groups
        .iter()
        .map(|g| g.iter().map(|&i| people[i]).collect())
        .collect();
    assert_eq!(groups.len(), 2, "{named:?}");
    assert!(named[0].iter().all(|p| *p == "collins") && named[0].len() == 4);
    assert!(named[1].iter().all(|p| *p == "hopper") && named[1].len() == 3);
}

#[test]
fn raw_tensor_input_is_the_chip() {
    // The network's input is the chip's RGB values as float32, NCHW, unnormalised.
    let fx = fixture("astronaut");
    let sface = SFace::load(&WeightsSource::Embedded).unwrap();
    let chip = &fx.chips[0];
    let hwc = Tensor::from_vec(
        chip.as_raw().iter().map(|&v| v as f32).collect::<Vec<_>>(),
        (1, 112, 112, 3),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let nchw = hwc.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
    let direct: Vec<Vec<f32>> = candle_core::Module::forward(sface.net(), &nchw)
        .unwrap()
        .to_vec2()
        .unwrap();
    let via_chips: Vec<Vec<f32>> = sface.features(&fx.chips).unwrap().to_vec2().unwrap();
    assert_eq!(direct, via_chips);
}
