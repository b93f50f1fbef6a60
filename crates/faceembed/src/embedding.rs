//! Identity embeddings and face verification.
//!
//! An [`Embedding`] is an L2-normalised vector tagged with the [`EmbeddingModel`] that made it.
//! Two embeddings of the same model compare by cosine similarity ([`Embedding::cosine`], in
//! `[-1, 1]`, higher is more alike) or Euclidean distance ([`Embedding::distance`], in `[0, 2]`,
//! `distance² = 2 - 2 cosine`); embeddings of different models never compare (an error).
//!
//! [`verify`] decides "same person" at the model's threshold ([`EmbeddingModel::threshold`]),
//! calibrated on LFW; [`verify_at`] takes your own.

use crate::{Error, Result};

/// OpenCV's published cosine threshold for SFace (`opencv_zoo`,
/// `models/face_recognition_sface/sface.py` and OpenCV's `face_match` sample: 0.363), kept
/// after checking it on LFW.
///
/// Measured on LFW View 2 (6,000 pairs) through this crate's full pipeline (RetinaFace, the face
/// nearest the image centre, ArcFace alignment, the int8 SFace; `examples/eval_identity.rs`):
/// at 0.363, 99.47 % of the pairs are right, 2 of the 3,000 different-person pairs are accepted
/// (false-accept rate 0.07 %) and 30 of the 3,000 same-person pairs rejected (1.00 %). The
/// threshold that maximises accuracy on all 6,000 pairs is about 0.335 (99.52 %, but 7 false
/// accepts, 0.23 %); cross-validated thresholds range from 0.335 to 0.369. The stricter 0.363
/// costs 0.05 points of accuracy and admits 2 false accepts instead of 7.
pub const SFACE_THRESHOLD: f32 = 0.363;

/// Cosine threshold for dlib's ResNet embeddings. Owned by the dlib port, which may revise it
/// with its own measurements.
///
/// dlib's published rule is a Euclidean distance below 0.6 between its raw descriptors, whose
/// norms are about 1.4; for two descriptors of that norm it is a cosine above
/// `1 - 0.6² / (2 · 1.4²)` ≈ 0.91. Measured on LFW View 2 through this crate's pipeline
/// (RetinaFace keypoints, `DlibPoints5::from_keypoints5`, dlib's chip; `examples/eval_identity.rs
/// --model dlib`): 98.98 % of the 6,000 pairs right at 0.91, false-accept rate 0.60 % (18 of
/// 3,000), false-reject rate 1.43 %; every cross-validated threshold rounds to 0.910.
pub const DLIB_RESNET_THRESHOLD: f32 = 0.91;

/// The models that make embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum EmbeddingModel {
    /// OpenCV's SFace, `face_recognition_sface_2021dec_int8bq` (128-D).
    SFace,
    /// dlib's ResNet-29 face recognition model v1 (128-D).
    DlibResNet,
}

impl EmbeddingModel {
    /// Every model.
    pub const ALL: [EmbeddingModel; 2] = [EmbeddingModel::SFace, EmbeddingModel::DlibResNet];

    /// The model's stable id, as stored in gallery files.
    pub fn id(&self) -> &'static str {
        match self {
            Self::SFace => "sface-2021dec-int8bq",
            Self::DlibResNet => "dlib-resnet-v1",
        }
    }

    /// The model with this id.
    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.id() == id)
    }

    /// The length of the model's vectors.
    pub fn dim(&self) -> usize {
        match self {
            Self::SFace | Self::DlibResNet => 128,
        }
    }

    /// The cosine similarity at or above which two faces are judged the same person:
    /// [`SFACE_THRESHOLD`] or [`DLIB_RESNET_THRESHOLD`].
    pub fn threshold(&self) -> f32 {
        match self {
            Self::SFace => SFACE_THRESHOLD,
            Self::DlibResNet => DLIB_RESNET_THRESHOLD,
        }
    }
}

impl std::fmt::Display for EmbeddingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

/// One face's identity vector, L2-normalised, with the model that made it.
///
/// Build one with [`Embedding::new`], which normalises and checks the vector.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Embedding {
    /// The model that made the vector.
    pub model: EmbeddingModel,
    /// The vector, of length `model.dim()` and unit L2 norm.
    pub vector: Vec<f32>,
}

impl Embedding {
    /// An embedding from a model's raw output, scaled to unit length. Errors when the length is
    /// not the model's, or when the vector is zero or not finite.
    pub fn new(model: EmbeddingModel, raw: Vec<f32>) -> Result<Self> {
        if raw.len() != model.dim() {
            return Err(Error::InvalidArgument(format!(
                "a {model} embedding has {} values, got {}",
                model.dim(),
                raw.len()
            )));
        }
        let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
        if !norm.is_finite() || norm <= f32::MIN_POSITIVE {
            return Err(Error::InvalidArgument(format!(
                "a {model} embedding must be finite and non-zero (norm {norm})"
            )));
        }
        Ok(Self {
            model,
            vector: raw.into_iter().map(|v| v / norm).collect(),
        })
    }

    /// Cosine similarity in `[-1, 1]`. Errors when the models (or lengths) differ.
    pub fn cosine(&self, other: &Embedding) -> Result<f32> {
        self.check_same_model(other)?;
        let dot: f32 = self
            .vector
            .iter()
            .zip(&other.vector)
            .map(|(a, b)| a * b)
            .sum();
        let norms = norm(&self.vector) * norm(&other.vector);
        Ok((dot / norms).clamp(-1.0, 1.0))
    }

    /// Euclidean distance between the unit vectors, in `[0, 2]`. Errors when the models differ.
    pub fn distance(&self, other: &Embedding) -> Result<f32> {
        Ok((2.0 - 2.0 * self.cosine(other)?).max(0.0).sqrt())
    }

    fn check_same_model(&self, other: &Embedding) -> Result<()> {
        if self.model != other.model || self.vector.len() != other.vector.len() {
            return Err(Error::ModelMismatch {
                expected: self.model.id().to_string(),
                found: other.model.id().to_string(),
            });
        }
        Ok(())
    }
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// The verdict on a pair of faces.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Verification {
    /// Cosine similarity of the two embeddings.
    pub similarity: f32,
    /// Whether `similarity >= threshold`.
    pub same: bool,
    /// The threshold used.
    pub threshold: f32,
}

/// Whether `a` and `b` show the same person, at their model's threshold
/// ([`EmbeddingModel::threshold`]). Errors when the models differ.
pub fn verify(a: &Embedding, b: &Embedding) -> Result<Verification> {
    verify_at(a, b, a.model.threshold())
}

/// Whether `a` and `b` show the same person, at your own cosine `threshold`. Errors when the
/// models differ or the threshold is not finite.
pub fn verify_at(a: &Embedding, b: &Embedding, threshold: f32) -> Result<Verification> {
    if !threshold.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "verification threshold {threshold}"
        )));
    }
    let similarity = a.cosine(b)?;
    Ok(Verification {
        similarity,
        same: similarity >= threshold,
        threshold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; 128];
        v[i] = 1.0;
        v
    }

    #[test]
    fn new_normalises_and_rejects_bad_vectors() {
        let mut raw = vec![0.0; 128];
        raw[0] = 3.0;
        raw[1] = 4.0;
        let e = Embedding::new(EmbeddingModel::SFace, raw).unwrap();
        assert_eq!((e.vector[0], e.vector[1]), (0.6, 0.8));
        assert!(Embedding::new(EmbeddingModel::SFace, vec![0.0; 128]).is_err());
        assert!(Embedding::new(EmbeddingModel::SFace, vec![1.0; 5]).is_err());
        let mut nan = unit(0);
        nan[3] = f32::NAN;
        assert!(Embedding::new(EmbeddingModel::SFace, nan).is_err());
    }

    #[test]
    fn cosine_and_distance_of_known_vectors() {
        let a = Embedding::new(EmbeddingModel::SFace, unit(0)).unwrap();
        let b = Embedding::new(EmbeddingModel::SFace, unit(1)).unwrap();
        let mut v = unit(0);
        v[1] = 1.0;
        let c = Embedding::new(EmbeddingModel::SFace, v).unwrap();
        assert_eq!(a.cosine(&b).unwrap(), 0.0);
        assert!((a.distance(&b).unwrap() - 2f32.sqrt()).abs() < 1e-6);
        assert!((a.cosine(&c).unwrap() - 0.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(a.distance(&a).unwrap(), 0.0);
    }

    #[test]
    fn models_never_mix() {
        let a = Embedding::new(EmbeddingModel::SFace, unit(0)).unwrap();
        let b = Embedding::new(EmbeddingModel::DlibResNet, unit(0)).unwrap();
        let err = a.cosine(&b).unwrap_err();
        assert!(matches!(err, Error::ModelMismatch { .. }), "{err}");
        assert!(a.distance(&b).is_err() && verify(&a, &b).is_err());
    }

    #[test]
    fn verification_at_the_model_threshold_and_at_a_chosen_one() {
        let a = Embedding::new(EmbeddingModel::SFace, unit(0)).unwrap();
        let mut v = unit(0);
        v[1] = 2.0;
        let b = Embedding::new(EmbeddingModel::SFace, v).unwrap();
        let sim = 1.0 / 5f32.sqrt();
        let r = verify(&a, &b).unwrap();
        assert!((r.similarity - sim).abs() < 1e-6);
        assert_eq!((r.same, r.threshold), (true, SFACE_THRESHOLD));
        let strict = verify_at(&a, &b, 0.5).unwrap();
        assert!(!strict.same);
        assert!(verify_at(&a, &b, f32::NAN).is_err());
    }

    #[test]
    fn ids_round_trip() {
        for m in EmbeddingModel::ALL {
            assert_eq!(EmbeddingModel::from_id(m.id()), Some(m));
        }
        assert_eq!(EmbeddingModel::from_id("arcface"), None);
    }
}
