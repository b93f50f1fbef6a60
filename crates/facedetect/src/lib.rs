//! Face detectors: RetinaFace (MobileNet-0.25, the default) and MediaPipe's BlazeFace (short and
//! full range), behind one [`FaceDetector`] trait. Every detector returns [`Detection`]s in
//! original-image pixels.
//!
//! ```no_run
//! use facedetect::{DetectorKind, DetectorOptions};
//! use facecore::weights::WeightsSource;
//!
//! let detector = DetectorKind::RetinaFace.load(&WeightsSource::Embedded)?;
//! let img = image::open("examples/images/astronaut.jpg").map_err(|e| facedetect::Error::InvalidOption(e.to_string()))?.to_rgb8();
//! for face in detector.detect(&img, &DetectorOptions::default())? {
//!     println!("{:?} {:.3}", face.bbox, face.score);
//! }
//! # Ok::<(), facedetect::Error>(())
//! ```

#![warn(missing_docs)]

pub mod blazeface;
pub mod retinaface;

use std::str::FromStr;

use facecore::geometry::{BBox, Keypoints5, Point};
use facecore::weights::WeightsSource;
use image::RgbImage;

pub use blazeface::BlazeFace;
pub use retinaface::RetinaFace;

/// Errors of the detectors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the shared core (weights, image, geometry).
    #[error(transparent)]
    Core(#[from] facecore::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A detector option is out of range, or a detector name is unknown.
    #[error("invalid detector option: {0}")]
    InvalidOption(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// One detected face, in original-image pixels.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Detection {
    /// The face box.
    pub bbox: BBox,
    /// The detector's confidence in `[0, 1]`.
    pub score: f32,
    /// The workspace's 5-point layout ([`Keypoints5`]), when the detector gives those points.
    pub keypoints: Option<Keypoints5>,
    /// The detector's own keypoints, in its own order (documented on each detector).
    pub native_keypoints: Vec<Point>,
}

/// Options shared by every detector. `None` means the detector's own published default.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorOptions {
    /// Minimum score of a kept face, in `[0, 1]`.
    pub score_threshold: Option<f32>,
    /// IoU above which the lower-scored of two overlapping faces is suppressed, in `[0, 1]`.
    pub nms_iou: Option<f32>,
    /// Faces whose box is smaller than this on its shorter side, in pixels, are dropped.
    pub min_face_size: f32,
    /// At most this many faces are kept, the largest ones.
    pub max_faces: Option<usize>,
    /// RetinaFace only: the image is scaled down so that its long side is at most this many
    /// pixels before detection (never up). `None` means the default of 640.
    pub max_side: Option<u32>,
}

impl Default for DetectorOptions {
    fn default() -> Self {
        Self {
            score_threshold: None,
            nms_iou: None,
            min_face_size: 0.0,
            max_faces: None,
            max_side: None,
        }
    }
}

impl DetectorOptions {
    /// Checks every option's range.
    pub fn validate(&self) -> Result<()> {
        let unit = |name: &str, v: Option<f32>| match v {
            Some(v) if !(0.0..=1.0).contains(&v) => Err(Error::InvalidOption(format!(
                "{name} must be in [0, 1], got {v}"
            ))),
            _ => Ok(()),
        };
        unit("score_threshold", self.score_threshold)?;
        unit("nms_iou", self.nms_iou)?;
        if !(self.min_face_size >= 0.0 && self.min_face_size.is_finite()) {
            return Err(Error::InvalidOption(format!(
                "min_face_size must be a finite number of pixels >= 0, got {}",
                self.min_face_size
            )));
        }
        if self.max_side == Some(0) {
            return Err(Error::InvalidOption(
                "max_side must be at least 1 pixel".into(),
            ));
        }
        Ok(())
    }

    /// Applies the options every detector shares to detections sorted by descending score:
    /// the minimum face size, then the `max_faces` largest faces, kept in score order.
    pub fn finish(&self, mut dets: Vec<Detection>) -> Vec<Detection> {
        dets.retain(|d| d.bbox.width().min(d.bbox.height()) >= self.min_face_size);
        if let Some(max) = self.max_faces {
            if dets.len() > max {
                let mut by_area: Vec<usize> = (0..dets.len()).collect();
                by_area.sort_by(|&a, &b| dets[b].bbox.area().total_cmp(&dets[a].bbox.area()));
                let mut keep = vec![false; dets.len()];
                by_area.iter().take(max).for_each(|&i| keep[i] = true);
                let mut k = keep.into_iter();
                dets.retain(|_| k.next().unwrap_or(false));
            }
        }
        dets
    }
}

/// A face detector.
pub trait FaceDetector: Send + Sync {
    /// The detector's name, as the `analyze` example spells it.
    fn name(&self) -> &'static str;
    /// Detects the faces of `img`, highest score first.
    fn detect(&self, img: &RgbImage, opts: &DetectorOptions) -> Result<Vec<Detection>>;
}

/// The detectors of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DetectorKind {
    /// RetinaFace with a MobileNet-0.25 backbone (boxes and 5 keypoints).
    #[default]
    RetinaFace,
    /// BlazeFace short range (128x128, faces within about 2 m of the camera).
    BlazeFaceShort,
    /// BlazeFace full range (192x192, faces up to about 5 m).
    BlazeFaceFull,
}

impl DetectorKind {
    /// Every detector, in the order the docs list them.
    pub const ALL: [DetectorKind; 3] = [
        DetectorKind::RetinaFace,
        DetectorKind::BlazeFaceShort,
        DetectorKind::BlazeFaceFull,
    ];

    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::RetinaFace => "retinaface",
            Self::BlazeFaceShort => "blazeface-short",
            Self::BlazeFaceFull => "blazeface-full",
        }
    }

    /// Loads this detector's weights from `source`.
    pub fn load(&self, source: &WeightsSource) -> Result<Box<dyn FaceDetector>> {
        Ok(match self {
            Self::RetinaFace => Box::new(RetinaFace::new(source)?),
            Self::BlazeFaceShort => Box::new(BlazeFace::short_range(source)?),
            Self::BlazeFaceFull => Box::new(BlazeFace::full_range(source)?),
        })
    }
}

impl FromStr for DetectorKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                Error::InvalidOption(format!(
                    "unknown detector {s:?}: expected retinaface, blazeface-short or blazeface-full"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, size: f32, score: f32) -> Detection {
        Detection {
            bbox: BBox::new(x, 0.0, x + size, size),
            score,
            keypoints: None,
            native_keypoints: vec![],
        }
    }

    #[test]
    fn finish_keeps_the_largest_faces_in_score_order() {
        let opts = DetectorOptions {
            min_face_size: 5.0,
            max_faces: Some(2),
            ..Default::default()
        };
        let dets = vec![
            det(0., 10., 0.9),
            det(20., 30., 0.8),
            det(60., 4., 0.7),
            det(80., 20., 0.6),
        ];
        let kept: Vec<f32> = opts.finish(dets).iter().map(|d| d.score).collect();
        assert_eq!(kept, vec![0.8, 0.6]);
    }

    #[test]
    fn options_are_validated_and_names_parse() {
        let bad = DetectorOptions {
            score_threshold: Some(1.5),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        assert!(DetectorOptions::default().validate().is_ok());
        assert_eq!(
            "blazeface-full".parse::<DetectorKind>().unwrap(),
            DetectorKind::BlazeFaceFull
        );
        assert!("yolo".parse::<DetectorKind>().is_err());
    }
}
