//! The one error type of `facecore`.

use std::path::PathBuf;

/// Everything that can go wrong in the shared core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weights file could not be read from disk.
    #[error("cannot read weights file {path}: {source}")]
    WeightsIo {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A weights file is not a valid `.safetensors` file.
    #[error("weights file {file} is corrupt: {reason}")]
    WeightsCorrupt {
        /// The file's name.
        file: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A tensor is missing from a weights file, or has the wrong shape or type.
    #[error("weights file {file}, tensor {tensor}: {reason}")]
    WeightsTensor {
        /// The file's name.
        file: String,
        /// The tensor's full name in the file.
        tensor: String,
        /// What was wrong with it.
        reason: String,
    },
    /// An image cannot be processed (empty, too small, or otherwise unusable).
    #[error("invalid image: {0}")]
    InvalidImage(String),
    /// An argument is out of its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A geometric estimation had no unique answer (for example, all points coincide).
    #[error("degenerate geometry: {0}")]
    Degenerate(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
