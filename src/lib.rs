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

use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage};

pub use facecore;
pub use facecore::geometry::{BBox, Keypoints5, Point};
pub use facecore::weights::WeightsSource;
pub use facedetect;
pub use faceattrs;
pub use faceembed;
pub use faceexpr;
pub use facegaze;
pub use facelandmarks;
pub use facedetect::{Detection, DetectorKind, DetectorOptions};

/// Errors of the facade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A detector failed to load or to run.
    #[error(transparent)]
    Detect(#[from] facedetect::Error),
    /// The shared core failed (weights, image conversion, geometry).
    #[error(transparent)]
    Core(#[from] facecore::Error),
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

/// One face and everything computed for it. Parts that were not asked for are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// The face box, in original-image pixels.
    pub bbox: BBox,
    /// The detector's confidence in `[0, 1]` (1 for a face assumed with
    /// [`FaceAnalyzerBuilder::assume_face`]).
    pub score: f32,
    /// The 5-point layout ([`Keypoints5`]), when the detector gives it.
    pub keypoints: Option<Keypoints5>,
    /// The detector's own keypoints in its own order (see each detector's documentation).
    pub detector_keypoints: Vec<Point>,
}

impl From<Detection> for Face {
    fn from(d: Detection) -> Self {
        Self {
            bbox: d.bbox,
            score: d.score,
            keypoints: d.keypoints,
            detector_keypoints: d.native_keypoints,
        }
    }
}

/// The JSON shape of a face: `{"bbox": [x0, y0, x1, y1], "score": S, "keypoints": [[x, y] x5],
/// "detector_keypoints": [[x, y], ...]}`, a part omitted when it was not computed, and
/// `detector_keypoints` omitted when they are the 5-point layout itself.
#[cfg(feature = "serde")]
impl serde::Serialize for Face {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let xy = |ps: &[Point]| ps.iter().map(|p| [p.x, p.y]).collect::<Vec<_>>();
        let b = &self.bbox;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("bbox", &[b.x0, b.y0, b.x1, b.y1])?;
        m.serialize_entry("score", &self.score)?;
        if let Some(k) = &self.keypoints {
            m.serialize_entry("keypoints", &xy(k.points()))?;
        }
        let own_layout =
            self.keypoints.map(|k| k.0.to_vec()) == Some(self.detector_keypoints.clone());
        if !self.detector_keypoints.is_empty() && !own_layout {
            m.serialize_entry("detector_keypoints", &xy(&self.detector_keypoints))?;
        }
        m.end()
    }
}

/// Configures and builds a [`FaceAnalyzer`].
#[derive(Debug, Clone, Default)]
pub struct FaceAnalyzerBuilder {
    detector: DetectorKind,
    detector_options: DetectorOptions,
    weights: WeightsSource,
    assume_face: bool,
}

impl FaceAnalyzerBuilder {
    /// The face detector (default: RetinaFace).
    pub fn detector(mut self, kind: DetectorKind) -> Self {
        self.detector = kind;
        self
    }

    /// Detector options: thresholds, minimum size, maximum faces, input resolution.
    pub fn detector_options(mut self, options: DetectorOptions) -> Self {
        self.detector_options = options;
        self
    }

    /// Where weights come from (default: compiled into the library).
    pub fn weights(mut self, source: WeightsSource) -> Self {
        self.weights = source;
        self
    }

    /// Skip detection: every image is one face crop, its box the whole image.
    pub fn assume_face(mut self, yes: bool) -> Self {
        self.assume_face = yes;
        self
    }

    /// Checks every option and loads every model.
    pub fn build(self) -> Result<FaceAnalyzer> {
        self.detector_options.validate()?;
        Ok(FaceAnalyzer {
            detector: self.detector.load(&self.weights)?,
            detector_options: self.detector_options,
            assume_face: self.assume_face,
        })
    }
}

/// Runs the chosen models on images. Build it once, then share it: it is `Send + Sync`.
pub struct FaceAnalyzer {
    detector: Box<dyn facedetect::FaceDetector>,
    detector_options: DetectorOptions,
    assume_face: bool,
}

impl std::fmt::Debug for FaceAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceAnalyzer")
            .field("detector", &self.detector.name())
            .field("detector_options", &self.detector_options)
            .field("assume_face", &self.assume_face)
            .finish()
    }
}

impl FaceAnalyzer {
    /// An analyzer with every default: RetinaFace, embedded weights.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// A builder to choose models and options.
    pub fn builder() -> FaceAnalyzerBuilder {
        FaceAnalyzerBuilder::default()
    }

    /// The faces of `img`, highest detection score first. Grayscale, RGBA and 16-bit images are
    /// converted to 8-bit RGB first.
    pub fn analyze(&self, img: &DynamicImage) -> Result<Vec<Face>> {
        self.analyze_rgb(&img.to_rgb8())
    }

    /// The faces of an 8-bit RGB image; see [`FaceAnalyzer::analyze`].
    pub fn analyze_rgb(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (width, height) = img.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::EmptyImage { width, height });
        }
        if self.assume_face {
            return Ok(vec![Face {
                bbox: BBox::new(0.0, 0.0, width as f32, height as f32),
                score: 1.0,
                keypoints: None,
                detector_keypoints: Vec::new(),
            }]);
        }
        let dets = self.detector.detect(img, &self.detector_options)?;
        Ok(dets.into_iter().map(Face::from).collect())
    }
}

/// Reads and decodes an image file, guessing its format from its content (not its extension).
pub fn load_image(path: impl AsRef<Path>) -> Result<DynamicImage> {
    let path = path.as_ref();
    let err = |reason: String| Error::ImageFile {
        path: path.to_path_buf(),
        reason,
    };
    image::ImageReader::open(path)
        .map_err(|e| err(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?
        .decode()
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FaceAnalyzer>();
    }
}
