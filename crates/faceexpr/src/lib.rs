//! Expression: MediaPipe's 52 blendshapes, FACS action-unit intensities derived from them, and the
//! seven basic emotions (mini-Xception, face-api.js's expression model).
//!
//! ```no_run
//! use facecore::geometry::BBox;
//! use facecore::weights::WeightsSource;
//! use faceexpr::{EmotionModel, EmotionRecognizer};
//!
//! let emotions = EmotionRecognizer::load(&WeightsSource::Embedded, EmotionModel::MiniXception, true)?;
//! let img = image::open("examples/images/astronaut.jpg")
//!     .map_err(|e| faceexpr::Error::InvalidArgument(e.to_string()))?
//!     .to_rgb8();
//! for e in emotions.predict(&img, &[BBox::new(178.0, 56.0, 270.0, 176.0)])? {
//!     println!("{} ({:.2})", e.label, e.get(e.label).unwrap_or(0.0));
//! }
//! # Ok::<(), faceexpr::Error>(())
//! ```

#![warn(missing_docs)]

pub mod action_units;
pub mod blendshapes;
pub mod emotion;
pub mod faceapi_expression;
pub mod mini_xception;

pub use emotion::{Emotion, EmotionModel, EmotionRecognizer, EMOTION_LABELS};
pub use faceapi_expression::FaceApiExpression;
pub use mini_xception::MiniXception;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the shared core (weights, image, geometry).
    #[error(transparent)]
    Core(#[from] facecore::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An argument is out of range or inconsistent; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
