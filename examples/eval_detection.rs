//! Face-detection accuracy on the evaluation sets of `../shared/eval` (see its README and
//! `docs/ACCURACY.md`).
//!
//! ```text
//! cargo run --release --example eval_detection -- DATA_DIR [--detector NAME]... [--max-side PX]...
//!     [--score S] [--list-misses]
//! ```
//!
//! DATA_DIR holds `afw/faces.csv` and `voc_faces/boxes.csv` with their images. For every detector
//! (default: all three) and every `--max-side` (default: the library's), prints one markdown table
//! row:
//!
//! - AFW (300-W, 337 annotated faces): recall of annotated faces. A detection matches an annotated
//!   face when the IoU of the detection box and the box of the face's 68 points is >= 0.4, or
//!   when the annotated box's centre lies inside the detection box and their sizes are within 2x,
//!   a box's size being the square root of its area. Matching is one-to-one, greedy by descending
//!   IoU over the qualifying pairs. Only faces large enough for 300-W are annotated, so a detection
//!   that matches none is not necessarily false: its count is printed for information only.
//! - VOC faces (43 tight boxes in 9 photos, both splits): recall and precision at IoU >= 0.4,
//!   one-to-one, greedy by descending IoU.
//! - The mean detection time per image in milliseconds (image decoding excluded), single run, for
//!   information only: this is not a benchmark.
//!
//! `--list-misses` writes to stderr every missed face, with its size, the image size and the
//! nearest detection, and every detection that matched no face, for both sets. Unreadable images and bad CSV rows are reported on stderr and counted as
//! misses; the program never panics on bad data. Exit code 1 when an image could not be read or
//! analysed, 2 for bad arguments or a missing set.

mod common;

use common::flag_value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use faceanalysis::{BBox, DetectorKind, DetectorOptions, FaceAnalyzer, Point};

/// IoU at or above which a detection matches a ground-truth box.
const MIN_IOU: f32 = 0.4;
/// AFW's alternative criterion: the sizes (square roots of the areas) are within this ratio.
const MAX_SIZE_RATIO: f32 = 2.0;

struct Args {
    data: PathBuf,
    detectors: Vec<DetectorKind>,
    max_sides: Vec<Option<u32>>,
    score: Option<f32>,
    list_misses: bool,
}

fn usage() -> &'static str {
    "usage: eval_detection DATA_DIR [--detector retinaface|blazeface-short|blazeface-full]... \
     [--max-side PX]... [--score S] [--list-misses]"
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut data, mut detectors, mut max_sides) = (None, Vec::new(), Vec::new());
    let (mut score, mut list_misses) = (None, false);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--detector" => {
                let name: String = flag_value(&mut it, "--detector")?;
                detectors.push(name.parse::<DetectorKind>().map_err(|e| e.to_string())?);
            }
            "--max-side" => max_sides.push(Some(flag_value::<u32>(&mut it, "--max-side")?)),
            "--score" => score = Some(flag_value::<f32>(&mut it, "--score")?),
            "--list-misses" => list_misses = true,
            "-h" | "--help" => return Err(usage().into()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if data.is_none() => data = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let check = DetectorOptions {
        score_threshold: score,
        max_side: max_sides.iter().copied().flatten().min(),
        ..Default::default()
    };
    check.validate().map_err(|e| e.to_string())?;
    if detectors.is_empty() {
        detectors = DetectorKind::ALL.to_vec();
    }
    if max_sides.is_empty() {
        max_sides.push(None);
    }
    Ok(Args {
        data: data.ok_or("missing DATA_DIR")?,
        detectors,
        max_sides,
        score,
        list_misses,
    })
}

/// A CSV file without quoted fields, its header mapping column names to indices.
struct Csv {
    path: PathBuf,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl Csv {
    fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let split = |l: &str| {
            l.split(',')
                .map(|f| f.trim().to_string())
                .collect::<Vec<_>>()
        };
        let header = lines
            .next()
            .map(|(_, l)| split(l))
            .ok_or(format!("{} is empty", path.display()))?;
        let rows = lines.map(|(i, l)| (i + 1, split(l))).collect();
        Ok(Self {
            path: path.to_path_buf(),
            header,
            rows,
        })
    }

    fn column(&self, name: &str) -> Result<usize, String> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("{}: no column {name:?}", self.path.display()))
    }

    /// The image name and box of every row, or a message per bad row (reported, then skipped).
    fn boxes(&self) -> Result<Vec<(String, BBox, usize)>, String> {
        let [img, x0, y0, x1, y1] = ["image", "x0", "y0", "x1", "y1"].map(|c| self.column(c));
        let (img, x0, y0, x1, y1) = (img?, x0?, y0?, x1?, y1?);
        let mut out = Vec::new();
        for (line, row) in &self.rows {
            let num = |i: usize| -> Option<f32> {
                row.get(i)?.parse::<f32>().ok().filter(|v| v.is_finite())
            };
            let parsed = (|| {
                let name = row.get(img).filter(|s| !s.is_empty())?.clone();
                let b = BBox::new(num(x0)?, num(y0)?, num(x1)?, num(y1)?);
                (b.x1 > b.x0 && b.y1 > b.y0).then_some((name, b, *line))
            })();
            match parsed {
                Some(r) => out.push(r),
                None => eprintln!(
                    "warning: {} line {line}: bad row, skipped",
                    self.path.display()
                ),
            }
        }
        Ok(out)
    }
}

/// Ground truth grouped by image, in file order of first appearance.
struct Set {
    dir: PathBuf,
    images: Vec<(String, Vec<(BBox, usize)>)>,
    n_faces: usize,
}

fn load_set(dir: &Path, csv_name: &str) -> Result<Set, String> {
    if !dir.is_dir() {
        return Err(format!("missing evaluation folder {}", dir.display()));
    }
    let csv = Csv::read(&dir.join(csv_name))?;
    let mut order: Vec<String> = Vec::new();
    let mut by_image: BTreeMap<String, Vec<(BBox, usize)>> = BTreeMap::new();
    for (name, b, line) in csv.boxes()? {
        if !by_image.contains_key(&name) {
            order.push(name.clone());
        }
        by_image.entry(name).or_default().push((b, line));
    }
    let images: Vec<_> = order
        .into_iter()
        .map(|n| {
            let faces = by_image.remove(&n).unwrap_or_default();
            (n, faces)
        })
        .collect();
    let n_faces = images.iter().map(|(_, f)| f.len()).sum();
    Ok(Set {
        dir: dir.to_path_buf(),
        images,
        n_faces,
    })
}

fn size(b: &BBox) -> f32 {
    b.area().sqrt()
}

/// AFW's match rule: IoU >= 0.4, or the truth's centre inside the detection with sizes within 2x.
fn afw_matches(det: &BBox, truth: &BBox) -> bool {
    if det.iou(truth) >= MIN_IOU {
        return true;
    }
    let (a, b) = (size(det), size(truth));
    det.contains(truth.center()) && a > 0.0 && b > 0.0 && a.max(b) <= MAX_SIZE_RATIO * a.min(b)
}

/// One-to-one matching, greedy by descending IoU over the pairs `ok` accepts. Returns, for each
/// truth, the index of its detection.
fn greedy_match(
    dets: &[BBox],
    truths: &[BBox],
    ok: impl Fn(&BBox, &BBox) -> bool,
) -> Vec<Option<usize>> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (d, db) in dets.iter().enumerate() {
        for (t, tb) in truths.iter().enumerate() {
            if ok(db, tb) {
                pairs.push((db.iou(tb), d, t));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut det_used = vec![false; dets.len()];
    let mut of_truth = vec![None; truths.len()];
    for (_, d, t) in pairs {
        if !det_used[d] && of_truth[t].is_none() {
            det_used[d] = true;
            of_truth[t] = Some(d);
        }
    }
    of_truth
}

#[derive(Default)]
struct Counts {
    truths: usize,
    matched: usize,
    dets: usize,
    images: usize,
    failed_images: usize,
    millis: f64,
}

impl Counts {
    fn recall(&self) -> f64 {
        ratio(self.matched, self.truths)
    }
    fn precision(&self) -> f64 {
        ratio(self.matched, self.dets)
    }
    fn unmatched_dets(&self) -> usize {
        self.dets - self.matched
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        f64::NAN
    } else {
        a as f64 / b as f64
    }
}

/// Runs `analyzer` on every image of `set` and counts the matches under `ok`.
fn evaluate(
    analyzer: &FaceAnalyzer,
    set: &Set,
    ok: impl Fn(&BBox, &BBox) -> bool + Copy,
    list_misses: bool,
    tag: &str,
) -> Counts {
    let mut c = Counts::default();
    for (name, faces) in &set.images {
        c.truths += faces.len();
        let truths: Vec<BBox> = faces.iter().map(|(b, _)| *b).collect();
        let path = set.dir.join(name);
        let img = match faceanalysis::load_image(&path) {
            Ok(img) => img,
            Err(e) => {
                eprintln!("warning: {e}; its {} face(s) count as missed", faces.len());
                c.failed_images += 1;
                continue;
            }
        };
        let start = Instant::now();
        let found = analyzer.analyze(&img);
        let elapsed = start.elapsed().as_secs_f64() * 1e3;
        let found = match found {
            Ok(f) => f,
            Err(e) => {
                eprintln!("warning: {}: detection failed: {e}", path.display());
                c.failed_images += 1;
                continue;
            }
        };
        c.images += 1;
        c.millis += elapsed;
        let dets: Vec<BBox> = found.iter().map(|f| f.bbox).collect();
        let of_truth = greedy_match(&dets, &truths, ok);
        c.dets += dets.len();
        c.matched += of_truth.iter().filter(|m| m.is_some()).count();
        if list_misses {
            for (d, f) in found.iter().enumerate() {
                if !of_truth.contains(&Some(d)) {
                    let Point { x, y } = f.bbox.center();
                    eprintln!(
                        "{tag} unmatched: {name}: detection {:.0}x{:.0} (size {:.0}) centred \
                         ({x:.0},{y:.0}) score {:.2}",
                        f.bbox.width(),
                        f.bbox.height(),
                        size(&f.bbox),
                        f.score
                    );
                }
            }
            for ((t, line), m) in faces.iter().zip(&of_truth) {
                if m.is_some() {
                    continue;
                }
                let nearest = found
                    .iter()
                    .map(|f| (f.bbox.iou(t), f))
                    .max_by(|a, b| a.0.total_cmp(&b.0));
                let near = match nearest {
                    Some((iou, f)) => format!(
                        "nearest detection IoU {iou:.2} size {:.0} score {:.2}",
                        size(&f.bbox),
                        f.score
                    ),
                    None => "no detection".into(),
                };
                let Point { x, y } = t.center();
                eprintln!(
                    "{tag} miss: {name} (line {line}, image {}x{}): face {:.0}x{:.0} (size {:.0}) \
                     centred ({x:.0},{y:.0}); {near}",
                    img.width(),
                    img.height(),
                    t.width(),
                    t.height(),
                    size(t),
                );
            }
        }
    }
    c
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{:.1} %", 100.0 * v)
    }
}

/// Prints the table; returns the number of image runs that failed.
fn run(args: &Args) -> Result<usize, String> {
    if !args.data.is_dir() {
        return Err(format!(
            "DATA_DIR {} is not a folder (expected the evaluation sets, e.g. ../shared/eval)",
            args.data.display()
        ));
    }
    let afw = load_set(&args.data.join("afw"), "faces.csv")?;
    let voc = load_set(&args.data.join("voc_faces"), "boxes.csv")?;
    println!(
        "| detector | max_side | AFW recall ({} faces) | AFW unmatched detections | \
         VOC recall ({} faces) | VOC precision | ms / image |",
        afw.n_faces, voc.n_faces
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut failures = 0;
    for &kind in &args.detectors {
        // max_side only affects RetinaFace: one row for the other detectors.
        let sides: &[Option<u32>] = if kind == DetectorKind::RetinaFace {
            &args.max_sides
        } else {
            &[None]
        };
        for &max_side in sides {
            let opts = DetectorOptions {
                score_threshold: args.score,
                max_side,
                ..Default::default()
            };
            let analyzer = FaceAnalyzer::builder()
                .detector(kind)
                .detector_options(opts)
                .build()
                .map_err(|e| format!("{}: {e}", kind.name()))?;
            let tag = format!("[{} max_side={max_side:?}]", kind.name());
            let a = evaluate(&analyzer, &afw, afw_matches, args.list_misses, &tag);
            let v = evaluate(
                &analyzer,
                &voc,
                |d, t| d.iou(t) >= MIN_IOU,
                args.list_misses,
                &tag,
            );
            failures += a.failed_images + v.failed_images;
            let n = a.images + v.images;
            let ms = if n == 0 {
                "n/a".to_string()
            } else {
                format!("{:.1}", (a.millis + v.millis) / n as f64)
            };
            let side = match (kind, max_side) {
                (DetectorKind::RetinaFace, Some(s)) => s.to_string(),
                (DetectorKind::RetinaFace, None) => "default".into(),
                _ => "-".into(),
            };
            println!(
                "| {} | {side} | {} ({}/{}) | {} | {} ({}/{}) | {} ({}/{}) | {ms} |",
                kind.name(),
                pct(a.recall()),
                a.matched,
                a.truths,
                a.unmatched_dets(),
                pct(v.recall()),
                v.matched,
                v.truths,
                pct(v.precision()),
                v.matched,
                v.dets,
            );
        }
    }
    if failures > 0 {
        eprintln!("warning: {failures} image run(s) failed; their faces count as missed");
    }
    Ok(failures)
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
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn afw_rule_and_greedy_matching() {
        let t = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert!(afw_matches(&BBox::new(1.0, 1.0, 11.0, 11.0), &t));
        // Centre inside, 1.9x larger: matches by the second rule despite IoU 0.28.
        assert!(afw_matches(&BBox::new(-4.5, -4.5, 14.5, 14.5), &t));
        // Centre inside but 3x larger: no match.
        assert!(!afw_matches(&BBox::new(-10.0, -10.0, 20.0, 20.0), &t));
        let dets = [BBox::new(0.0, 0.0, 10.0, 10.0)];
        let truths = [
            BBox::new(1.0, 0.0, 11.0, 10.0),
            BBox::new(0.0, 0.0, 10.0, 10.0),
        ];
        let m = greedy_match(&dets, &truths, |d, t| d.iou(t) >= MIN_IOU);
        assert_eq!(m, vec![None, Some(0)]);
    }
}
