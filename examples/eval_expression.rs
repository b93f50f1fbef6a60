//! How well the blendshape-derived action units separate FER2013's emotions (`docs/ACCURACY.md`).
//!
//! ```text
//! cargo run --release --example eval_expression -- DATA_DIR [--size PX]
//! ```
//!
//! DATA_DIR holds `fer2013_public/labels.csv` (`file, emotion`) with its 48x48 grayscale crops.
//! No action-unit labels exist there, so the check is indirect: for each pair (AU12, happy),
//! (AU04, angry), (AU26, surprise) and a few more, the ROC AUC with which the AU's intensity
//! separates the crops of that emotion from all the others. Each crop is a face already: it is
//! upscaled to `--size` pixels (default 192, bicubic) so the mesh sees a face of the size it was
//! trained on, and analysed as one face whose box is the whole image (`assume_face`), the mesh's
//! ROI being that box scaled by 1.5 as MediaPipe does for a detection. A crop whose mesh fails is
//! counted and left out of the AUCs. Exit code 1 when a crop could not be read, 2 for bad arguments.

mod common;

use common::flag_value;
use std::path::PathBuf;
use std::process::ExitCode;

use faceanalysis::{FaceAnalyzer, Part};
use image::imageops::FilterType;

/// The (action unit, emotion) pairs reported; the first three are the issue's.
const PAIRS: [(&str, &str); 7] = [
    ("AU12", "happy"),
    ("AU04", "angry"),
    ("AU26", "surprise"),
    ("AU01", "surprise"),
    ("AU05", "surprise"),
    ("AU15", "sad"),
    ("AU09", "disgust"),
];

/// ROC AUC of `scores` for `positive` (Mann-Whitney U, ties counted half).
fn auc(scores: &[(f32, bool)]) -> f64 {
    let mut sorted: Vec<(f32, bool)> = scores.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0f64, 0usize);
    while i < sorted.len() {
        let mut j = i;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1..=j share their mean.
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * sorted[i..j].iter().filter(|s| s.1).count() as f64;
        i = j;
    }
    let pos = scores.iter().filter(|s| s.1).count() as f64;
    let neg = scores.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

fn main() -> ExitCode {
    let mut it = std::env::args().skip(1);
    let (mut data, mut size) = (None::<PathBuf>, 192u32);
    while let Some(arg) = it.next() {
        let parsed = match arg.as_str() {
            "--size" => flag_value(&mut it, "--size").map(|v| size = v),
            _ if data.is_none() && !arg.starts_with("--") => {
                data = Some(PathBuf::from(arg));
                Ok(())
            }
            _ => Err(format!("unexpected argument {arg}")),
        };
        if let Err(e) = parsed {
            eprintln!("{e}\nusage: eval_expression DATA_DIR [--size PX]");
            return ExitCode::from(2);
        }
    }
    let Some(data) = data else {
        eprintln!("usage: eval_expression DATA_DIR [--size PX]");
        return ExitCode::from(2);
    };
    let dir = data.join("fer2013_public");
    let labels = match std::fs::read_to_string(dir.join("labels.csv")) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read {}: {e}", dir.join("labels.csv").display());
            return ExitCode::from(2);
        }
    };
    let analyzer = match FaceAnalyzer::builder()
        .assume_face(true)
        .parts([Part::ActionUnits])
        .build()
    {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let (mut rows, mut failed, mut no_mesh) = (Vec::new(), 0usize, 0usize);
    for line in labels.lines().skip(1) {
        let Some((file, emotion)) = line.split_once(',') else {
            eprintln!("bad row {line:?}");
            failed += 1;
            continue;
        };
        let img = match faceanalysis::load_image(dir.join(file)) {
            Ok(img) => img.resize_exact(size, size, FilterType::CatmullRom),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
                continue;
            }
        };
        match analyzer.analyze(&img) {
            Ok(faces) => match faces.first().and_then(|f| f.action_units) {
                Some(au) => rows.push((emotion.trim().to_string(), au)),
                None => no_mesh += 1,
            },
            Err(e) => {
                eprintln!("{file}: {e}");
                failed += 1;
            }
        }
    }
    println!(
        "FER2013 PublicTest: {} crops with action units, {no_mesh} without a mesh, {failed} unreadable; upscaled to {size} px",
        rows.len()
    );
    println!("| action unit | emotion | ROC AUC |\n|---|---|---|");
    for (au, emotion) in PAIRS {
        let scores: Vec<(f32, bool)> = rows
            .iter()
            .filter_map(|(e, units)| units.get(au).map(|v| (v, e == emotion)))
            .collect();
        println!("| {au} | {emotion} | {:.3} |", auc(&scores));
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
