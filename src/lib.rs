//! `faceanalysis`: face detection and analysis on real pretrained models, in Rust.
//!
//! The facade over the workspace's crates: choose the models once with
//! [`FaceAnalyzer::builder`], then call [`FaceAnalyzer::analyze`] on any image and get one
//! [`Face`] per face, every coordinate in original-image pixels.
//!
//! ```no_run
//! use faceanalysis::FaceAnalyzer;
//!
//! let analyzer = FaceAnalyzer::new()?;
//! let img = faceanalysis::load_image("examples/images/group.jpg")?;
//! for face in analyzer.analyze(&img)? {
//!     println!("face at {:?} (score {:.2})", face.bbox, face.score);
//! }
//! # Ok::<(), faceanalysis::Error>(())
//! ```

#![warn(missing_docs)]

use std::path::PathBuf;

mod analyzer;
mod face;
mod input;

pub use analyzer::{FaceAnalyzer, FaceAnalyzerBuilder, Landmarks68Source};
pub use face::{Face, Omission, Part};
pub use input::{decode_image, load_image, load_image_with, DecodeLimits};

pub use faceattrs;
pub use facecore;
pub use facecore::geometry::{BBox, Keypoints5, Point};
pub use facecore::weights::WeightsSource;
pub use facedetect;
pub use facedetect::{Detection, DetectorKind, DetectorOptions};
pub use faceembed;
pub use faceexpr;
pub use facegaze;
pub use facelandmarks;

/// Errors of the facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A detector failed to load or to run.
    #[error(transparent)]
    Detect(#[from] facedetect::Error),
    /// The shared core failed (weights, image conversion, geometry).
    #[error(transparent)]
    Core(#[from] facecore::Error),
    /// A landmark or head-pose model failed to load or to run.
    #[error(transparent)]
    Landmarks(#[from] facelandmarks::Error),
    /// The gaze model failed.
    #[error(transparent)]
    Gaze(#[from] facegaze::Error),
    /// An identity model failed to load or to run.
    #[error(transparent)]
    Embed(#[from] faceembed::Error),
    /// An age or gender model failed to load or to run.
    #[error(transparent)]
    Attrs(#[from] faceattrs::Error),
    /// An expression model failed to load or to run.
    #[error(transparent)]
    Expr(#[from] faceexpr::Error),
    /// An option of the analyzer is invalid (an unknown part name, say).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An image file could not be read or decoded.
    #[error("cannot read image {path}: {reason}")]
    ImageFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// An image has no pixels.
    #[error("image is {width}x{height} pixels: nothing to analyse")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
