//! Age, gender and emotion accuracy on the evaluation sets of `../shared/eval` (see its README
//! and `docs/ACCURACY.md`).
//!
//! ```text
//! cargo run --release --example eval_attributes -- DATA_DIR [--assume-face] [--flip]
//!     [--limit N] [--only utkface|fer2013]
//! ```
//!
//! **UTKFace** (`DATA_DIR/utkface/`: 200x200 aligned crops in `images/`, `labels.csv`: `file, age, gender,
//! race`, gender 0 = male): age MAE in years (of the expected age, not rounded), accuracy on the
//! eight Adience groups (true and predicted ages both mapped with `faceattrs::adience_group`: an
//! age between two groups goes to the nearer one, a midpoint to the older), gender accuracy.
//!
//! - *detection*: RetinaFace (default options) on the image, the highest-scored face, its 5
//!   keypoints mapped with `DlibPoints5::from_keypoints5`, then the package's chips. Images where
//!   no face is found are counted and left out of the three numbers.
//! - *assume-face* (`--assume-face`): no detector. Every image is taken as one face at UTKFace's
//!   fixed alignment: the keypoints of every image are the mean of RetinaFace's keypoints over
//!   the images of the detection pass (the crops are aligned, so one set of points fits all).
//!   All images are scored.
//!
//! **FER2013** (`DATA_DIR/fer2013_public/`: 48x48 grayscale crops, `labels.csv`: `file,
//! emotion`): every image is one face, its box the whole image. Accuracy and the 7x7 confusion
//! matrix (rows the true class, columns the predicted one, FER2013 order) for mini-Xception,
//! face-api's expression net and their average; with `--flip` also each averaged with the
//! mirror image.
//!
//! `--flip` also adds UTKFace rows with flip averaging. `--limit N` uses N images of
//! each set, evenly spaced. Unreadable images and bad rows are reported on stderr and counted; the program
//! never panics on bad data. Exit code 2 for bad arguments or a missing set.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::flag_value;
use faceanalysis::faceattrs::{adience_group, AgeGender};
use faceanalysis::facecore::chip::DlibPoints5;
use faceanalysis::faceexpr::emotion::{average, EMOTION_LABELS};
use faceanalysis::faceexpr::{FaceApiExpression, MiniXception};
use faceanalysis::{BBox, DetectorKind, DetectorOptions, Keypoints5, Point, WeightsSource};

struct Args {
    data: PathBuf,
    assume_face: bool,
    flip: bool,
    limit: Option<usize>,
    only: Option<String>,
}

fn usage() -> &'static str {
    "usage: eval_attributes DATA_DIR [--assume-face] [--flip] [--limit N] \
     [--only utkface|fer2013]"
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        data: PathBuf::new(),
        assume_face: false,
        flip: false,
        limit: None,
        only: None,
    };
    let mut data = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--assume-face" => args.assume_face = true,
            "--flip" => args.flip = true,
            "--limit" => args.limit = Some(flag_value(&mut it, "--limit")?),
            "--only" => {
                let v: String = flag_value(&mut it, "--only")?;
                if v != "utkface" && v != "fer2013" {
                    return Err(format!("--only: unknown set {v:?}"));
                }
                args.only = Some(v);
            }
            "-h" | "--help" => return Err(usage().into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if data.is_none() => data = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    args.data = data.ok_or("missing DATA_DIR")?;
    Ok(args)
}

/// The rows of a header-first CSV without quoted fields, as (line number, fields).
fn read_csv(path: &Path, columns: &[&str]) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .map(|(_, l)| l.split(',').map(str::trim).collect())
        .ok_or(format!("{} is empty", path.display()))?;
    let idx = columns
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h == c)
                .ok_or(format!("{}: no column {c:?}", path.display()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines
        .filter_map(|(i, l)| {
            let fields: Vec<&str> = l.split(',').map(str::trim).collect();
            let row: Option<Vec<String>> = idx
                .iter()
                .map(|&k| fields.get(k).map(|s| s.to_string()))
                .collect();
            if row.is_none() {
                eprintln!("warning: {} line {}: too few fields", path.display(), i + 1);
            }
            row.map(|r| (i + 1, r))
        })
        .collect())
}

/// `n` evenly spaced rows of `rows` (all of them without a limit).
fn sample<T>(rows: Vec<T>, n: Option<usize>) -> Vec<T> {
    match n {
        Some(n) if n > 0 && n < rows.len() => {
            let step = rows.len() as f64 / n as f64;
            let mut keep = (0..n).map(|i| (i as f64 * step) as usize).peekable();
            rows.into_iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    (keep.peek() == Some(&i)).then(|| {
                        keep.next();
                        r
                    })
                })
                .collect()
        }
        _ => rows,
    }
}

/// Accumulated age and gender errors of one protocol.
#[derive(Default)]
struct AgeGenderScore {
    n: usize,
    abs_err: f64,
    group_ok: usize,
    gender_ok: usize,
}

impl AgeGenderScore {
    fn add(&mut self, years: f32, group: &str, male: bool, true_age: f32, true_male: bool) {
        self.n += 1;
        self.abs_err += (years - true_age).abs() as f64;
        self.group_ok += usize::from(group == adience_group(true_age));
        self.gender_ok += usize::from(male == true_male);
    }

    fn row(&self, protocol: &str, not_found: usize, total: usize) -> String {
        let n = self.n.max(1) as f64;
        format!(
            "| {protocol} | {} / {total} | {not_found} | {:.2} | {:.1} % | {:.1} % |",
            self.n,
            self.abs_err / n,
            100.0 * self.group_ok as f64 / n,
            100.0 * self.gender_ok as f64 / n
        )
    }
}

fn load_rgb(path: &Path) -> Option<image::RgbImage> {
    match image::open(path) {
        Ok(img) => Some(img.to_rgb8()),
        Err(e) => {
            eprintln!("warning: cannot read {}: {e}", path.display());
            None
        }
    }
}

fn utkface(args: &Args) -> Result<usize, String> {
    let dir = args.data.join("utkface");
    let rows = read_csv(&dir.join("labels.csv"), &["file", "age", "gender"])?;
    let rows = sample(rows, args.limit);
    let detector = DetectorKind::RetinaFace
        .load(&WeightsSource::Embedded)
        .map_err(|e| e.to_string())?;
    let model = AgeGender::load(&WeightsSource::Embedded).map_err(|e| e.to_string())?;
    let flipped = model.clone().with_flip(true);
    let models: Vec<(&str, &AgeGender)> = if args.flip {
        vec![("", &model), (" + flip", &flipped)]
    } else {
        vec![("", &model)]
    };
    let opts = DetectorOptions::default();
    let mut images = Vec::new();
    let mut errors = 0;
    let (mut not_found, mut found_keypoints) = (0, Vec::new());
    let mut det_scores: Vec<AgeGenderScore> = models.iter().map(|_| Default::default()).collect();
    for (line, row) in &rows {
        let (Ok(age), Ok(gender)) = (row[1].parse::<f32>(), row[2].parse::<u8>()) else {
            eprintln!("warning: utkface labels line {line}: bad age or gender");
            errors += 1;
            continue;
        };
        let Some(img) = load_rgb(&dir.join("images").join(&row[0])) else {
            errors += 1;
            continue;
        };
        let dets = detector.detect(&img, &opts).map_err(|e| e.to_string())?;
        match dets.first().and_then(|d| d.keypoints) {
            Some(k) => {
                found_keypoints.push(k);
                let points = [DlibPoints5::from_keypoints5(&k)];
                for ((_, m), score) in models.iter().zip(&mut det_scores) {
                    let out = m.predict(&img, &points).map_err(|e| e.to_string())?;
                    if let Some((a, g)) = out.first() {
                        score.add(a.years, a.group, g.label == "male", age, gender == 0);
                    }
                }
            }
            None => not_found += 1,
        }
        if args.assume_face {
            images.push((img, age, gender == 0));
        }
    }
    let total = rows.len();
    println!("\nUTKFace ({total} images)\n");
    println!("| protocol | faces scored | not found | age MAE (years) | Adience group | gender |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for ((suffix, _), score) in models.iter().zip(&det_scores) {
        println!(
            "{}",
            score.row(&format!("detection{suffix}"), not_found, total)
        );
    }
    if args.assume_face && !found_keypoints.is_empty() {
        let n = found_keypoints.len() as f32;
        let mean = Keypoints5(std::array::from_fn(|i| {
            let (x, y) = found_keypoints
                .iter()
                .fold((0.0, 0.0), |(x, y), k| (x + k.0[i].x, y + k.0[i].y));
            Point::new(x / n, y / n)
        }));
        let points = [DlibPoints5::from_keypoints5(&mean)];
        for ((suffix, m), _) in models.iter().zip(0..) {
            let mut score = AgeGenderScore::default();
            for (img, age, male) in &images {
                let out = m.predict(img, &points).map_err(|e| e.to_string())?;
                if let Some((a, g)) = out.first() {
                    score.add(a.years, a.group, g.label == "male", *age, *male);
                }
            }
            println!("{}", score.row(&format!("assume-face{suffix}"), 0, total));
        }
        let pts: Vec<String> = mean
            .0
            .iter()
            .map(|p| format!("({:.1}, {:.1})", p.x, p.y))
            .collect();
        println!(
            "\nassume-face keypoints (mean of {} detections): {}",
            found_keypoints.len(),
            pts.join(" ")
        );
    }
    Ok(errors)
}

/// Accuracy and confusion matrix of one emotion classifier.
struct Confusion {
    name: String,
    matrix: [[usize; 7]; 7],
}

impl Confusion {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            matrix: [[0; 7]; 7],
        }
    }

    fn add(&mut self, truth: usize, scores: &[f32; 7]) {
        let pred = (1..7).fold(0, |b, i| if scores[i] > scores[b] { i } else { b });
        if let Some(row) = self.matrix.get_mut(truth) {
            row[pred] += 1;
        }
    }

    fn accuracy(&self) -> f64 {
        let total: usize = self.matrix.iter().flatten().sum();
        let right: usize = (0..7).map(|i| self.matrix[i][i]).sum();
        100.0 * right as f64 / total.max(1) as f64
    }

    fn print(&self) {
        println!("\n{} (rows: true class, columns: predicted)\n", self.name);
        println!(
            "| true \\ predicted | {} | recall |",
            EMOTION_LABELS.join(" | ")
        );
        println!("| --- |{}", " --- |".repeat(8));
        for (label, row) in EMOTION_LABELS.iter().zip(&self.matrix) {
            let n: usize = row.iter().sum();
            let i = EMOTION_LABELS.iter().position(|l| l == label).unwrap_or(0);
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            let recall = 100.0 * row[i] as f64 / n.max(1) as f64;
            println!("| {label} | {} | {recall:.1} % |", cells.join(" | "));
        }
    }
}

fn fer2013(args: &Args) -> Result<usize, String> {
    let dir = args.data.join("fer2013_public");
    let rows = read_csv(&dir.join("labels.csv"), &["file", "emotion"])?;
    let rows = sample(rows, args.limit);
    let mini = MiniXception::load(&WeightsSource::Embedded).map_err(|e| e.to_string())?;
    let faceapi = FaceApiExpression::load(&WeightsSource::Embedded).map_err(|e| e.to_string())?;
    let mut tables: Vec<Confusion> = ["mini-Xception", "face-api", "average"]
        .iter()
        .flat_map(|m| {
            let mut v = vec![Confusion::new(m)];
            if args.flip {
                v.push(Confusion::new(&format!("{m} + flip")));
            }
            v
        })
        .collect();
    let mut errors = 0;
    for (line, row) in &rows {
        let Some(truth) = EMOTION_LABELS.iter().position(|l| *l == row[1]) else {
            eprintln!(
                "warning: fer2013 labels line {line}: unknown emotion {:?}",
                row[1]
            );
            errors += 1;
            continue;
        };
        let Some(img) = load_rgb(&dir.join(&row[0])) else {
            errors += 1;
            continue;
        };
        let (w, h) = img.dimensions();
        let boxes = [BBox::new(0.0, 0.0, w as f32, h as f32)];
        let run = |img: &image::RgbImage| -> Result<[[f32; 7]; 3], String> {
            let m = mini.probabilities(img, &boxes).map_err(|e| e.to_string())?;
            let f = faceapi
                .probabilities(img, &boxes)
                .map_err(|e| e.to_string())?;
            let a = average(&m, &f).map_err(|e| e.to_string())?;
            match (m.first(), f.first(), a.first()) {
                (Some(m), Some(f), Some(a)) => Ok([*m, *f, *a]),
                _ => Err("a model returned no scores".into()),
            }
        };
        let plain = run(&img)?;
        let mirrored = if args.flip {
            Some(run(&image::imageops::flip_horizontal(&img))?)
        } else {
            None
        };
        let mut t = tables.iter_mut();
        for (k, scores) in plain.iter().enumerate() {
            if let Some(c) = t.next() {
                c.add(truth, scores);
            }
            if let Some(mirror) = &mirrored {
                let avg = average(&[*scores], &[mirror[k]]).map_err(|e| e.to_string())?;
                if let (Some(c), Some(s)) = (t.next(), avg.first()) {
                    c.add(truth, s);
                }
            }
        }
    }
    println!("\nFER2013 PublicTest ({} images)\n", rows.len());
    println!("| model | accuracy |");
    println!("| --- | --- |");
    for c in &tables {
        println!("| {} | {:.2} % |", c.name, c.accuracy());
    }
    for c in &tables {
        c.print();
    }
    Ok(errors)
}

fn run(args: &Args) -> Result<usize, String> {
    let mut errors = 0;
    if args.only.as_deref() != Some("fer2013") {
        errors += utkface(args)?;
    }
    if args.only.as_deref() != Some("utkface") {
        errors += fer2013(args)?;
    }
    Ok(errors)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("{n} images or rows could not be used");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
