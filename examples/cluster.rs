//! Face clustering: group the faces of a photo folder by person.
//!
//! ```text
//! cargo run --release --example cluster -- DIR [--threshold COSINE] [--crops OUT_DIR]
//! ```
//!
//! Detects every face of every image directly in `DIR` (RetinaFace), embeds it with SFace,
//! groups the embeddings with `faceembed::cluster` (Chinese whispers at SFace's threshold, or
//! `--threshold`) and prints the groups as JSON:
//!
//! ```text
//! {"model": "sface-2021dec-int8bq", "threshold": 0.363,
//!  "clusters": [{"faces": [{"image": "...", "bbox": [x0, y0, x1, y1]}, ...]}, ...],
//!  "images_without_faces": ["..."]}
//! ```
//!
//! largest group first. With `--crops OUT_DIR`, the aligned 112x112 chip of every face is written
//! to `OUT_DIR/cluster_<k>/<image>_<face>.png`, one folder per group.
//!
//! ```text
//! cargo run --release --example cluster -- examples/images --crops /tmp/clusters
//! ```

mod common;
mod identity;

use std::path::PathBuf;
use std::process::ExitCode;

use common::flag_value;
use faceanalysis::faceembed::cluster::cluster_at;
use faceanalysis::faceembed::embedding::EmbeddingModel;
use faceanalysis::faceembed::sface::{align, SFace};
use faceanalysis::WeightsSource;
use serde_json::json;

fn usage() -> &'static str {
    "usage: cluster DIR [--threshold COSINE] [--crops OUT_DIR]"
}

/// One face: the image it is in, its index there, its box and its aligned chip.
struct FaceEntry {
    image: PathBuf,
    index: usize,
    bbox: [f32; 4],
    chip: image::RgbImage,
}

/// `v` with at most three decimals, for readable JSON (pixels, thresholds).
fn short(v: f32) -> f64 {
    (v as f64 * 1000.0).round() / 1000.0
}

fn run() -> Result<(), (String, u8)> {
    let mut it = std::env::args().skip(1);
    let (mut dir, mut crops, mut threshold) = (None, None, EmbeddingModel::SFace.threshold());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--threshold" => threshold = flag_value(&mut it, "--threshold").map_err(|e| (e, 2))?,
            "--crops" => {
                crops = Some(flag_value::<PathBuf>(&mut it, "--crops").map_err(|e| (e, 2))?)
            }
            _ if dir.is_none() && !arg.starts_with('-') => dir = Some(PathBuf::from(arg)),
            _ => return Err((usage().into(), 2)),
        }
    }
    let dir = dir.ok_or((usage().to_string(), 2))?;
    let detector = identity::detector().map_err(|e| (e, 1))?;
    let sface = SFace::load(&WeightsSource::Embedded).map_err(|e| (e.to_string(), 1))?;
    let (mut faces, mut without) = (Vec::new(), Vec::new());
    for path in identity::image_files(&dir).map_err(|e| (e, 1))? {
        let img = identity::load_rgb(&path).map_err(|e| (e, 1))?;
        let detected = identity::detect(detector.as_ref(), &img).map_err(|e| (e, 1))?;
        if detected.is_empty() {
            without.push(path.display().to_string());
        }
        for (index, f) in detected.iter().enumerate() {
            let chip = align(&img, &f.keypoints).map_err(|e| (e.to_string(), 1))?;
            let b = f.bbox;
            faces.push(FaceEntry {
                image: path.clone(),
                index,
                bbox: [b.x0, b.y0, b.x1, b.y1],
                chip,
            });
        }
    }
    let chips: Vec<_> = faces.iter().map(|f| f.chip.clone()).collect();
    let embeddings = sface.embed_chips(&chips).map_err(|e| (e.to_string(), 1))?;
    let groups = cluster_at(&embeddings, threshold).map_err(|e| (e.to_string(), 2))?;
    if let Some(out) = &crops {
        for (k, group) in groups.iter().enumerate() {
            let folder = out.join(format!("cluster_{k:02}"));
            std::fs::create_dir_all(&folder)
                .map_err(|e| (format!("cannot create {}: {e}", folder.display()), 1))?;
            for &i in group {
                let f = &faces[i];
                let stem = f.image.file_stem().unwrap_or_default().to_string_lossy();
                let file = folder.join(format!("{stem}_{}.png", f.index));
                f.chip
                    .save(&file)
                    .map_err(|e| (format!("cannot write {}: {e}", file.display()), 1))?;
            }
        }
    }
    let clusters: Vec<_> = groups
        .iter()
        .map(|g| {
            let members: Vec<_> = g
                .iter()
                .map(|&i| json!({"image": faces[i].image.display().to_string(), "bbox": faces[i].bbox.map(short)}))
                .collect();
            json!({ "faces": members })
        })
        .collect();
    let report = json!({
        "model": EmbeddingModel::SFace.id(),
        "threshold": short(threshold),
        "clusters": clusters,
        "images_without_faces": without,
    });
    let text = serde_json::to_string_pretty(&report).map_err(|e| (e.to_string(), 1))?;
    println!("{text}");
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
