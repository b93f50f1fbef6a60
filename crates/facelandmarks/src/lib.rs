//! Facial landmarks and head pose: MediaPipe's FaceMesh v2 (478 points with iris), face-api.js's
//! 68-point model (iBUG/300-W order), and the head pose from fitting the mesh to MediaPipe's
//! canonical face model.
//!
//! ```no_run
//! use facecore::geometry::{BBox, Point};
//! use facecore::weights::WeightsSource;
//! use facelandmarks::{FaceMesh, HeadPoseEstimator, MeshRoi};
//!
//! let mesh = FaceMesh::load(&WeightsSource::Embedded)?;
//! let pose = HeadPoseEstimator::load(&WeightsSource::Embedded)?;
//! let img = image::open("examples/images/astronaut.jpg")
//!     .map_err(|e| facelandmarks::Error::InvalidArgument(e.to_string()))?
//!     .to_rgb8();
//! // A face box and its eyes, from any detector.
//! let roi = MeshRoi::from_detection(
//!     BBox::new(178.0, 56.0, 270.0, 176.0),
//!     Some(Point::new(204.0, 103.0)),
//!     Some(Point::new(245.0, 104.0)),
//! );
//! for face in mesh.run(&img, &[roi])? {
//!     let p = pose.estimate(&face.points, img.width(), img.height())?;
//!     println!("{} points, yaw {:.0} pitch {:.0} roll {:.0}", face.points.len(), p.yaw, p.pitch, p.roll);
//! }
//! # Ok::<(), facelandmarks::Error>(())
//! ```

#![warn(missing_docs)]

pub mod facemesh;
pub mod headpose;
pub mod landmarks68;

pub use facemesh::{FaceMesh, Landmarks478, MeshRoi};
pub use headpose::{HeadPose, HeadPoseEstimator};
pub use landmarks68::{FaceLandmarks68, Landmarks68};

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
    /// A face's mesh ROI is too small (or not finite) for the mesh to mean anything; see
    /// [`facemesh::MeshRoi::is_usable`].
    #[error("mesh ROI {index} is {size} pixels on its shorter side, below the minimum of {min}")]
    RoiTooSmall {
        /// Index of the ROI in the call.
        index: usize,
        /// Its shorter side in pixels.
        size: f32,
        /// The minimum, [`facemesh::MIN_ROI_SIZE`].
        min: f32,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
