//! face-api.js's expression net (`FaceExpressionNet`), ported from the original TF.js weights and
//! numerically equal to TF.js.
//!
//! The network ([`FaceApiExpression::forward`]) is face-api's shared backbone with a 7-output
//! fully connected head ([`facecore::faceapi::FaceProcessor`]): it maps a `N x 3 x 112 x 112`
//! tensor (RGB, `(pixel - [122.782, 117.001, 104.298]) / 255`) to `N x 7` logits in face-api's
//! label order ([`FACEAPI_LABELS`]: neutral, happy, sad, angry, fearful, disgusted, surprised).
//! [`FaceApiExpression::probabilities`] adds face-api's preprocessing of detected faces (crop the
//! box clipped and floored, pad to a centred square, resize to 112 with TensorFlow's legacy
//! bilinear; see [`facecore::faceapi`]), runs all faces as one batch, applies the softmax and
//! reorders the seven probabilities to angry, disgust, fear, happy, sad, surprise, neutral.
//!
//! face-api's composed task `withFaceLandmarks().withFaceExpressions()` crops the landmark-aligned
//! box instead of the detection box; pass that box to get the same input.
//!
//! # Weights
//!
//! `weights/faceapi_expression.safetensors`, written by `tools/convert/faceapi.py` from
//! `model/face_expression_model.bin` of npm `@vladmandic/face-api@1.7.15` (MIT): uint8 tensors
//! dequantised to f32 exactly as TF.js does at load (biases were stored as f32), under the
//! manifest's names, kernels in PyTorch layout.

use candle_core::{Device, Module, Tensor, D};
use facecore::faceapi::{face_batch, FaceProcessor};
use facecore::geometry::BBox;
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;

use crate::Result;

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "faceapi_expression.safetensors",
    embedded: include_bytes!("../../../weights/faceapi_expression.safetensors"),
};

/// face-api's output order (`FACE_EXPRESSION_LABELS`, `src/faceExpressionNet/FaceExpressions.ts`).
pub const FACEAPI_LABELS: [&str; 7] = [
    "neutral",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgusted",
    "surprised",
];

/// For each class of the workspace's order (angry, disgust, fear, happy, sad, surprise, neutral),
/// its index in [`FACEAPI_LABELS`].
const FROM_FACEAPI: [usize; 7] = [3, 5, 4, 1, 2, 6, 0];

/// face-api.js's expression net.
#[derive(Debug, Clone)]
pub struct FaceApiExpression {
    net: FaceProcessor,
    device: Device,
}

impl FaceApiExpression {
    /// Loads the weights from `source` (CPU).
    pub fn load(source: &WeightsSource) -> Result<Self> {
        let device = Device::Cpu;
        let net = WEIGHTS.build(source, &device, |vb| {
            FaceProcessor::new(&vb, FACEAPI_LABELS.len())
        })?;
        Ok(Self { net, device })
    }

    /// The raw network: `N x 3 x 112 x 112` normalised input to `N x 7` logits in
    /// [`FACEAPI_LABELS`] order.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(input)?)
    }

    /// The probabilities of angry, disgust, fear, happy, sad, surprise and neutral for the faces
    /// `boxes` of `img`, one batch, in the boxes' order. An error when a box has no pixel inside
    /// the image.
    pub fn probabilities(&self, img: &RgbImage, boxes: &[BBox]) -> Result<Vec<[f32; 7]>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let (input, _) = face_batch(img, boxes, &self.device)?;
        let probs: Vec<Vec<f32>> =
            candle_nn::ops::softmax(&self.forward(&input)?, D::Minus1)?.to_vec2()?;
        Ok(probs.iter().map(|p| reorder(p)).collect())
    }
}

/// Reorders probabilities from [`FACEAPI_LABELS`] order to angry, disgust, fear, happy, sad,
/// surprise, neutral.
fn reorder(faceapi: &[f32]) -> [f32; 7] {
    FROM_FACEAPI.map(|i| faceapi.get(i).copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_reordered() {
        let ours = [
            "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
        ];
        for (label, &i) in ours.iter().zip(&FROM_FACEAPI) {
            assert!(FACEAPI_LABELS[i].starts_with(&label[..3]), "{label}");
        }
        let p = reorder(&[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        assert_eq!(p, [0.3, 0.5, 0.4, 0.1, 0.2, 0.6, 0.0]);
    }
}
