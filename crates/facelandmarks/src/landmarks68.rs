//! face-api.js's 68-point landmark net (`FaceLandmark68Net`), ported from the original TF.js
//! weights and numerically equal to TF.js.
//!
//! The network ([`FaceLandmarks68::forward`]) is face-api's shared backbone with a 136-output
//! fully connected head ([`facecore::faceapi::FaceProcessor`]): it maps a `N x 3 x 112 x 112`
//! tensor (RGB, `(pixel - [122.782, 117.001, 104.298]) / 255`) to `N x 136` values, `x, y` of the
//! 68 points in turn, in `[0, 1]` of the padded 112x112 input. [`FaceLandmarks68::run`] adds
//! face-api's pre- and post-processing for detected faces: crop the box (clipped, floored), pad
//! to a centred square, resize to 112 (TensorFlow's legacy bilinear), run all faces as one batch,
//! and map the points back to image pixels (`FaceLandmark68NetBase.postProcess`, see
//! [`FaceCrop::to_image`]).
//!
//! Points follow the iBUG 300-W 68-point order: 0–16 jaw (from the subject's right), 17–21 and
//! 22–26 brows, 27–35 nose, 36–41 and 42–47 eyes (36 and 45 are the outer corners), 48–67 mouth.
//!
//! # Weights
//!
//! `weights/faceapi_landmark68.safetensors`, written by `tools/convert/faceapi.py` from
//! `model/face_landmark_68_model.bin` of npm `@vladmandic/face-api@1.7.15` (MIT): the uint8
//! tensors dequantised to f32 exactly as TF.js does at load, under the manifest's names
//! (`dense0/conv0/filters`, `dense1/conv2/depthwise_filter`, `fc/weights`, …), kernels in
//! PyTorch layout.

use candle_core::{Device, Module, Tensor};
use facecore::faceapi::{face_batch, FaceCrop, FaceProcessor};
use facecore::geometry::{BBox, Point};
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;

use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "faceapi_landmark68.safetensors",
    embedded: include_bytes!("../../../weights/faceapi_landmark68.safetensors"),
};

/// Number of landmarks.
pub const NUM_POINTS: usize = 68;

/// The 68 landmarks of one face.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Landmarks68 {
    /// The points in iBUG 300-W order, in original-image pixels.
    pub points: Vec<Point>,
}

/// face-api.js's 68-point landmark net.
#[derive(Debug, Clone)]
pub struct FaceLandmarks68 {
    net: FaceProcessor,
    device: Device,
}

impl FaceLandmarks68 {
    /// Loads the weights from `source` (CPU).
    pub fn load(source: &WeightsSource) -> Result<Self> {
        let device = Device::Cpu;
        let net = WEIGHTS.build(source, &device, |vb| {
            FaceProcessor::new(&vb, 2 * NUM_POINTS)
        })?;
        Ok(Self { net, device })
    }

    /// The raw network: `N x 3 x 112 x 112` normalised input to `N x 136` outputs (`x, y` per
    /// point, in `[0, 1]` of the input).
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.net.forward(input)?)
    }

    /// The landmarks of the faces `boxes` of `img`, one batch, in the boxes' order. An error when
    /// a box has no pixel inside the image.
    pub fn run(&self, img: &RgbImage, boxes: &[BBox]) -> Result<Vec<Landmarks68>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let (input, crops) = face_batch(img, boxes, &self.device)?;
        let out: Vec<Vec<f32>> = self.forward(&input)?.to_vec2()?;
        crops
            .iter()
            .zip(&out)
            .map(|(crop, values)| to_landmarks(crop, values))
            .collect()
    }
}

/// Maps one face's 136 network outputs to image pixels through its crop.
pub fn to_landmarks(crop: &FaceCrop, values: &[f32]) -> Result<Landmarks68> {
    if values.len() != 2 * NUM_POINTS {
        return Err(Error::InvalidArgument(format!(
            "expected {} landmark values, got {}",
            2 * NUM_POINTS,
            values.len()
        )));
    }
    Ok(Landmarks68 {
        points: values
            .chunks_exact(2)
            .map(|p| crop.to_image(p[0], p[1]))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_map_to_crop_pixels() {
        let crop = FaceCrop {
            x: 10,
            y: 20,
            width: 112,
            height: 112,
        };
        let mut values = vec![0.5f32; 2 * NUM_POINTS];
        values[0] = 0.0;
        values[1] = 1.0;
        let lm = to_landmarks(&crop, &values).unwrap();
        assert_eq!(lm.points.len(), NUM_POINTS);
        assert_eq!((lm.points[0].x, lm.points[0].y), (10.0, 132.0));
        assert_eq!((lm.points[1].x, lm.points[1].y), (66.0, 76.0));
        assert!(to_landmarks(&crop, &values[..10]).is_err());
    }
}
