//! Facial landmarks and head pose: MediaPipe's FaceMesh v2 (478 points with iris), face-api.js's
//! 68-point model (iBUG/300-W order), and the head pose from fitting the mesh to MediaPipe's
//! canonical face model.

#![warn(missing_docs)]

pub mod facemesh;
pub mod landmarks68;
pub mod headpose;

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
