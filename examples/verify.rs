//! Face verification: are the people in two photos the same person?
//!
//! ```text
//! cargo run --release --example verify -- IMAGE_A IMAGE_B [--threshold COSINE]
//! ```
//!
//! Detects the faces of both images with RetinaFace, aligns the largest face of each to the
//! ArcFace template, embeds it with SFace and prints the cosine similarity and the verdict at
//! SFace's threshold (or `--threshold`). An image with several faces uses its largest, and says
//! so; an image without a face is an error (exit code 1). Bad arguments: exit code 2.
//!
//! ```text
//! cargo run --release --example verify -- examples/images/grace_hopper.jpg examples/images/group.jpg
//! ```
//!
//! prints `similarity 0.969 (threshold 0.363): same person` (the largest face of the collage is
//! Grace Hopper's).

mod common;
mod identity;

use std::path::Path;
use std::process::ExitCode;

use common::flag_value;
use faceanalysis::facedetect::FaceDetector;
use faceanalysis::faceembed::embedding::{verify_at, Embedding, EmbeddingModel};
use faceanalysis::faceembed::sface::SFace;
use faceanalysis::WeightsSource;

fn usage() -> &'static str {
    "usage: verify IMAGE_A IMAGE_B [--threshold COSINE]"
}

fn embed_largest(
    detector: &dyn FaceDetector,
    sface: &SFace,
    path: &Path,
) -> Result<Embedding, String> {
    let img = identity::load_rgb(path)?;
    let faces = identity::detect(detector, &img)?;
    let face = faces
        .first()
        .ok_or_else(|| format!("no face found in {}", path.display()))?;
    if faces.len() > 1 {
        let b = face.bbox;
        eprintln!(
            "{}: {} faces; using the largest, at ({:.0}, {:.0})-({:.0}, {:.0})",
            path.display(),
            faces.len(),
            b.x0,
            b.y0,
            b.x1,
            b.y1
        );
    }
    let mut e = sface
        .embed(&img, &[face.keypoints])
        .map_err(|e| format!("{}: {e}", path.display()))?;
    e.pop()
        .ok_or_else(|| format!("{}: no embedding", path.display()))
}

fn run() -> Result<(), (String, u8)> {
    let mut it = std::env::args().skip(1);
    let (mut paths, mut threshold) = (Vec::new(), EmbeddingModel::SFace.threshold());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--threshold" => threshold = flag_value(&mut it, "--threshold").map_err(|e| (e, 2))?,
            "-h" | "--help" => return Err((usage().into(), 2)),
            _ => paths.push(arg),
        }
    }
    let [a, b] = paths.as_slice() else {
        return Err((usage().into(), 2));
    };
    let detector = identity::detector().map_err(|e| (e, 1))?;
    let sface = SFace::load(&WeightsSource::Embedded).map_err(|e| (e.to_string(), 1))?;
    let ea = embed_largest(detector.as_ref(), &sface, Path::new(a)).map_err(|e| (e, 1))?;
    let eb = embed_largest(detector.as_ref(), &sface, Path::new(b)).map_err(|e| (e, 1))?;
    let v = verify_at(&ea, &eb, threshold).map_err(|e| (e.to_string(), 2))?;
    println!(
        "similarity {:.4} (threshold {:.3}): {}",
        v.similarity,
        v.threshold,
        if v.same {
            "same person"
        } else {
            "different people"
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((msg, code)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}
