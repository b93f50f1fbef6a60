//! Identity: face embeddings (OpenCV's SFace, dlib's ResNet), verification at calibrated
//! thresholds, a searchable gallery of named identities, and clustering of a photo collection.
//!
//! ```no_run
//! use facecore::geometry::{Keypoints5, Point};
//! use facecore::weights::WeightsSource;
//! use faceembed::{verify, SFace};
//!
//! let sface = SFace::load(&WeightsSource::Embedded)?;
//! let img = image::open("examples/images/group.jpg")
//!     .map_err(|e| faceembed::Error::InvalidArgument(e.to_string()))?
//!     .to_rgb8();
//! // Two faces' 5-point layouts, from a detector such as RetinaFace.
//! let a = Keypoints5([Point::new(513., 229.), Point::new(570., 228.), Point::new(541., 263.),
//!     Point::new(519., 293.), Point::new(563., 292.)]);
//! let b = Keypoints5([Point::new(124., 389.), Point::new(146., 391.), Point::new(134., 402.),
//!     Point::new(125., 412.), Point::new(143., 413.)]);
//! let e = sface.embed(&img, &[a, b])?;
//! let v = verify(&e[0], &e[1])?;
//! println!("similarity {:.3}: {}", v.similarity, if v.same { "same person" } else { "different" });
//! # Ok::<(), faceembed::Error>(())
//! ```

#![warn(missing_docs)]

pub mod cluster;
pub mod dlib_resnet;
pub mod embedder;
pub mod embedding;
pub mod gallery;
pub mod sface;

pub use cluster::{cluster, cluster_at};
pub use dlib_resnet::DlibResNet;
pub use embedder::Embedder;
pub use embedding::{verify, verify_at, Embedding, EmbeddingModel, Verification};
pub use gallery::{Gallery, Match, Score};
pub use sface::SFace;

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
    /// Two embeddings, or an embedding and a gallery, come from different models.
    #[error("embedding models differ: {expected} and {found}")]
    ModelMismatch {
        /// The model id expected (of the first embedding, or of the gallery).
        expected: String,
        /// The model id found.
        found: String,
    },
    /// A gallery file could not be read or written.
    #[error("gallery file {path}: {source}")]
    GalleryIo {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A gallery file is not a valid gallery (wrong magic, version or model, truncated,
    /// corrupt); the message says what and where.
    #[error("gallery file {path} is invalid: {reason}")]
    GalleryFormat {
        /// The file (`<bytes>` for an in-memory gallery).
        path: std::path::PathBuf,
        /// What was wrong, with the byte offset where it was found.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
