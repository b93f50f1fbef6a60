//! Identity: face embeddings (OpenCV's SFace, dlib's ResNet), verification at calibrated
//! thresholds, a searchable gallery of named identities, and clustering of a photo collection.

#![warn(missing_docs)]

pub mod embedding;
pub mod sface;
pub mod dlib_resnet;
pub mod gallery;
pub mod cluster;

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
