//! Face search: enroll a folder of known people into a gallery file, then find them in photos.
//!
//! ```text
//! cargo run --release --example search -- enroll DIR GALLERY_FILE
//! cargo run --release --example search -- query GALLERY_FILE IMAGE... [-k K] [--mean]
//! ```
//!
//! `enroll` reads `DIR/<name>/*.jpg` (every photo of a sub-folder is one more embedding of the
//! identity `<name>`) and the images directly in `DIR` (each its own identity, named after the
//! file), embeds the largest face of each photo with SFace (photos without a face are skipped,
//! and said so) and writes the gallery file (`faceembed::gallery`'s format).
//!
//! `query` embeds every face of every image and prints its `K` (default 3) most similar
//! identities, scored by their best embedding or, with `--mean`, by the mean over their
//! embeddings; a face whose best score is under SFace's threshold is reported as unknown.
//!
//! ```text
//! cargo run --release --example search -- enroll examples/images /tmp/people.gallery
//! cargo run --release --example search -- query /tmp/people.gallery examples/images/group.jpg
//! ```

mod common;
mod identity;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::flag_value;
use faceanalysis::facedetect::FaceDetector;
use faceanalysis::faceembed::embedding::EmbeddingModel;
use faceanalysis::faceembed::gallery::{Gallery, Score};
use faceanalysis::faceembed::sface::SFace;
use faceanalysis::WeightsSource;

fn usage() -> &'static str {
    "usage: search enroll DIR GALLERY_FILE\n       search query GALLERY_FILE IMAGE... [-k K] [--mean]"
}

/// `(identity name, photo)` for every photo to enroll.
fn enrollment_photos(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let mut photos: Vec<(String, PathBuf)> = identity::image_files(dir)?
        .into_iter()
        .filter_map(|p| stem(&p).map(|n| (n, p)))
        .collect();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    folders.sort();
    for folder in folders {
        let name = folder
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for p in identity::image_files(&folder)? {
            photos.push((name.clone(), p));
        }
    }
    Ok(photos)
}

fn enroll(
    detector: &dyn FaceDetector,
    sface: &SFace,
    dir: &Path,
    out: &Path,
) -> Result<(), String> {
    let mut gallery = Gallery::new(EmbeddingModel::SFace);
    for (name, path) in enrollment_photos(dir)? {
        let img = identity::load_rgb(&path)?;
        let faces = identity::detect(detector, &img)?;
        let Some(face) = faces.first() else {
            eprintln!("{}: no face found, skipped", path.display());
            continue;
        };
        if faces.len() > 1 {
            eprintln!(
                "{}: {} faces, enrolling the largest",
                path.display(),
                faces.len()
            );
        }
        for e in sface
            .embed(&img, &[face.keypoints])
            .map_err(|e| e.to_string())?
        {
            gallery.add(&name, e).map_err(|e| e.to_string())?;
        }
    }
    gallery.save(out).map_err(|e| e.to_string())?;
    println!(
        "enrolled {} identities ({}) into {}",
        gallery.len(),
        gallery.names().collect::<Vec<_>>().join(", "),
        out.display()
    );
    Ok(())
}

fn query(
    detector: &dyn FaceDetector,
    sface: &SFace,
    gallery: &Gallery,
    images: &[PathBuf],
    k: usize,
    score: Score,
) -> Result<(), String> {
    let threshold = gallery.model().threshold();
    for path in images {
        let img = identity::load_rgb(path)?;
        let faces = identity::detect(detector, &img)?;
        if faces.is_empty() {
            println!("{}: no face found", path.display());
        }
        let kps: Vec<_> = faces.iter().map(|f| f.keypoints).collect();
        let embeddings = sface.embed(&img, &kps).map_err(|e| e.to_string())?;
        for (face, e) in faces.iter().zip(&embeddings) {
            let matches = gallery.search(e, k, score).map_err(|e| e.to_string())?;
            let verdict = match matches.first() {
                Some(m) if m.similarity >= threshold => m.name.as_str(),
                _ => "unknown",
            };
            let ranked: Vec<String> = matches
                .iter()
                .map(|m| format!("{} {:.3}", m.name, m.similarity))
                .collect();
            let b = face.bbox;
            println!(
                "{} face at ({:.0}, {:.0})-({:.0}, {:.0}): {verdict}  [{}]",
                path.display(),
                b.x0,
                b.y0,
                b.x1,
                b.y1,
                ranked.join(", ")
            );
        }
    }
    Ok(())
}

fn run() -> Result<(), (String, u8)> {
    let mut it = std::env::args().skip(1);
    let command = it.next().unwrap_or_default();
    let (mut positional, mut k, mut score) = (Vec::new(), 3usize, Score::Best);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-k" => k = flag_value(&mut it, "-k").map_err(|e| (e, 2))?,
            "--mean" => score = Score::Mean,
            _ => positional.push(PathBuf::from(arg)),
        }
    }
    let valid = match (command.as_str(), positional.len()) {
        ("enroll", n) => n == 2,
        ("query", n) => n >= 2,
        _ => false,
    };
    if !valid {
        return Err((usage().to_string(), 2));
    }
    let detector = identity::detector().map_err(|e| (e, 1))?;
    let sface = SFace::load(&WeightsSource::Embedded).map_err(|e| (e.to_string(), 1))?;
    let (first, rest) = (&positional[0], &positional[1..]);
    if command == "enroll" {
        enroll(detector.as_ref(), &sface, first, &rest[0]).map_err(|e| (e, 1))
    } else {
        let gallery =
            Gallery::load(first, EmbeddingModel::SFace).map_err(|e| (e.to_string(), 1))?;
        query(detector.as_ref(), &sface, &gallery, rest, k, score).map_err(|e| (e, 1))
    }
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
