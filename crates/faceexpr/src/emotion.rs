//! The seven basic emotions of FER2013 from two models: mini-Xception ([`MiniXception`], fer's
//! FER2013 classifier) and face-api.js's expression net ([`FaceApiExpression`]), alone or
//! averaged, optionally averaged again over each face and its mirror image.

use facecore::geometry::BBox;
use facecore::weights::WeightsSource;
use image::RgbImage;

use crate::faceapi_expression::FaceApiExpression;
use crate::mini_xception::MiniXception;
use crate::{Error, Result};

/// The emotion classes, in FER2013's order (the order of every score array here).
pub const EMOTION_LABELS: [&str; 7] = [
    "angry", "disgust", "fear", "happy", "sad", "surprise", "neutral",
];

/// The emotion of one face.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Emotion {
    /// The most probable class of [`EMOTION_LABELS`].
    pub label: &'static str,
    /// The probability of each class of [`EMOTION_LABELS`], summing to 1.
    pub scores: [f32; 7],
}

impl Emotion {
    /// The emotion with these probabilities; on a tie the earlier class wins.
    pub fn from_scores(scores: [f32; 7]) -> Emotion {
        let best = (1..7).fold(0, |best, i| if scores[i] > scores[best] { i } else { best });
        Emotion {
            label: EMOTION_LABELS[best],
            scores,
        }
    }

    /// The score of `label`, if it is one of [`EMOTION_LABELS`].
    pub fn get(&self, label: &str) -> Option<f32> {
        EMOTION_LABELS
            .iter()
            .position(|l| *l == label)
            .map(|i| self.scores[i])
    }
}

/// Which model classifies the emotions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EmotionModel {
    /// mini-Xception on the squared face box, 64x64 grayscale ([`crate::mini_xception`]).
    #[default]
    MiniXception,
    /// face-api.js's expression net on the face box, 112x112 RGB ([`crate::faceapi_expression`]).
    FaceApi,
    /// The mean of both models' probabilities.
    Average,
}

/// Emotion recognition with one model, or both averaged.
#[derive(Debug, Clone)]
pub struct EmotionRecognizer {
    mini_xception: Option<MiniXception>,
    faceapi: Option<FaceApiExpression>,
    flip: bool,
}

impl EmotionRecognizer {
    /// Loads the weights `model` needs from `source`. With `flip`, every face is classified as
    /// given and mirrored left to right, and the two probability vectors are averaged.
    pub fn load(source: &WeightsSource, model: EmotionModel, flip: bool) -> Result<Self> {
        let mini = matches!(model, EmotionModel::MiniXception | EmotionModel::Average);
        let faceapi = matches!(model, EmotionModel::FaceApi | EmotionModel::Average);
        Ok(Self {
            mini_xception: mini.then(|| MiniXception::load(source)).transpose()?,
            faceapi: faceapi
                .then(|| FaceApiExpression::load(source))
                .transpose()?,
            flip,
        })
    }

    /// The emotion of every face box of `img` (one batch per model), in the boxes' order. An
    /// error when a box has no pixel inside the image.
    pub fn predict(&self, img: &RgbImage, boxes: &[BBox]) -> Result<Vec<Emotion>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let mut scores = self.scores(img, boxes)?;
        if self.flip {
            let mirrored = image::imageops::flip_horizontal(img);
            let w = img.width() as f32;
            let flipped: Vec<BBox> = boxes
                .iter()
                .map(|b| BBox::new(w - b.x1, b.y0, w - b.x0, b.y1))
                .collect();
            scores = average(&scores, &self.scores(&mirrored, &flipped)?)?;
        }
        Ok(scores.into_iter().map(Emotion::from_scores).collect())
    }

    /// The probabilities of the chosen model(s), averaged when there are two.
    fn scores(&self, img: &RgbImage, boxes: &[BBox]) -> Result<Vec<[f32; 7]>> {
        let mini = self
            .mini_xception
            .as_ref()
            .map(|m| m.probabilities(img, boxes))
            .transpose()?;
        let faceapi = self
            .faceapi
            .as_ref()
            .map(|m| m.probabilities(img, boxes))
            .transpose()?;
        match (mini, faceapi) {
            (Some(a), Some(b)) => average(&a, &b),
            (Some(a), None) | (None, Some(a)) => Ok(a),
            (None, None) => Err(Error::InvalidArgument(
                "emotion recognizer has no model".into(),
            )),
        }
    }
}

/// The element-wise mean of two lists of probability vectors of the same length.
pub fn average(a: &[[f32; 7]], b: &[[f32; 7]]) -> Result<Vec<[f32; 7]>> {
    if a.len() != b.len() {
        return Err(Error::InvalidArgument(format!(
            "cannot average {} and {} probability vectors",
            a.len(),
            b.len()
        )));
    }
    Ok(a.iter()
        .zip(b)
        .map(|(x, y)| std::array::from_fn(|i| (x[i] + y[i]) / 2.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_is_the_argmax() {
        let e = Emotion::from_scores([0.1, 0.0, 0.1, 0.5, 0.1, 0.1, 0.1]);
        assert_eq!(e.label, "happy");
        assert_eq!(e.get("sad"), Some(0.1));
        assert_eq!(e.get("bored"), None);
        assert_eq!(
            Emotion::from_scores([0.5, 0.5, 0., 0., 0., 0., 0.]).label,
            "angry"
        );
    }

    #[test]
    fn average_is_elementwise() {
        let a = [[1.0, 0., 0., 0., 0., 0., 0.]];
        let b = [[0.0, 1., 0., 0., 0., 0., 0.]];
        assert_eq!(average(&a, &b).unwrap()[0][..2], [0.5, 0.5]);
        assert!(average(&a, &[]).is_err());
    }
}
