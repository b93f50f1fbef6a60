//! Helpers shared by the identity examples (`verify`, `search`, `cluster`, `eval_identity`):
//! RetinaFace with the library's defaults, and the image files of a folder.

use std::path::{Path, PathBuf};

use faceanalysis::facedetect::{DetectorKind, DetectorOptions, FaceDetector};
use faceanalysis::{BBox, Keypoints5, WeightsSource};
use image::RgbImage;

/// One detected face: its box and its five keypoints.
pub struct Face {
    /// The face box, image pixels.
    pub bbox: BBox,
    /// The five keypoints, image pixels.
    pub keypoints: Keypoints5,
}

/// RetinaFace, the library's default detector, from the embedded weights.
pub fn detector() -> Result<Box<dyn FaceDetector>, String> {
    DetectorKind::RetinaFace
        .load(&WeightsSource::Embedded)
        .map_err(|e| format!("cannot load the face detector: {e}"))
}

/// The faces of `img` that have keypoints, largest box first.
pub fn detect(detector: &dyn FaceDetector, img: &RgbImage) -> Result<Vec<Face>, String> {
    let mut faces: Vec<Face> = detector
        .detect(img, &DetectorOptions::default())
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|d| {
            d.keypoints.map(|keypoints| Face {
                bbox: d.bbox,
                keypoints,
            })
        })
        .collect();
    faces.sort_by(|a, b| b.bbox.area().total_cmp(&a.bbox.area()));
    Ok(faces)
}

/// The image files (`.jpg`, `.jpeg`, `.png`) directly inside `dir`, sorted by name.
#[allow(dead_code)] // verify and eval_identity read no folders
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                    ["jpg", "jpeg", "png"].contains(&x.to_ascii_lowercase().as_str())
                })
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads an image file as 8-bit RGB.
pub fn load_rgb(path: &Path) -> Result<RgbImage, String> {
    faceanalysis::load_image(path)
        .map(|img| img.to_rgb8())
        .map_err(|e| e.to_string())
}
