//! 68-point landmark accuracy on the 300-W HELEN test set of `../shared/eval` (see its README and
//! `docs/ACCURACY.md`).
//!
//! ```text
//! cargo run --release --example eval_landmarks -- DATA_DIR [--list-failures]
//! ```
//!
//! DATA_DIR holds `helen68/` (330 faces: `<id>.jpg` and `<id>.pts`, 68 points in iBUG order,
//! 0-based pixels). For every face:
//!
//! 1. RetinaFace (default options) detects the faces of the whole image;
//! 2. the annotated face is the detection with the largest IoU with the bounding box of its 68
//!    points; when no detection overlaps that box by at least [`MIN_IOU`], the face is missed;
//! 3. two landmark models run on the matched detection: face-api.js's 68-point net on its box
//!    (`FaceLandmarks68::run`), and MediaPipe's FaceMesh on the ROI of its box and eye keypoints
//!    (`MeshRoi::from_detection`, `FaceMesh::run`), read as 68 points by
//!    `Landmarks478::landmarks68`;
//! 4. NME = mean point-to-point error / distance between the outer eye corners (points 36 and
//!    45), in percent.
//!
//! Printed as a markdown table, one row per model: the mean NME over the detected faces, the
//! failure rate (NME > 8 %) over all annotated faces with every missed face counted as a
//! failure, the number of misses, and the mean time of the landmark step per face (information
//! only, not a benchmark).
//! `--list-failures` writes every failure and miss to stderr. Unreadable files are reported on
//! stderr and counted as misses; exit code 1 when any file could not be read, 2 for bad
//! arguments or a missing set.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use faceanalysis::facedetect::{DetectorKind, DetectorOptions};
use faceanalysis::facelandmarks::facemesh::{FaceMesh, MeshRoi};
use faceanalysis::facelandmarks::FaceLandmarks68;
use faceanalysis::{load_image, BBox, Detection, Keypoints5, Point, WeightsSource};

/// IoU of a detection with the points' box below which the face counts as missed.
const MIN_IOU: f32 = 0.2;
/// NME (percent) above which a face counts as a failure (300-W convention).
const FAILURE_NME: f32 = 8.0;
/// Outer eye corners in the iBUG 68-point order (0-based).
const OUTER_EYE_CORNERS: (usize, usize) = (36, 45);

/// One annotated face.
struct Sample {
    id: String,
    image: PathBuf,
    points: Vec<Point>,
}

/// Reads a 300-W `.pts` file: `version`, `n_points: 68`, `{`, 68 lines `x y`, `}`.
fn read_pts(path: &Path) -> Result<Vec<Point>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let body = text
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .ok_or_else(|| format!("{}: no {{ … }} block", path.display()))?;
    let points = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace().map(str::parse::<f32>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(x)), Some(Ok(y)), None) => Ok(Point::new(x, y)),
                _ => Err(format!("{}: bad point line {l:?}", path.display())),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    if points.len() != 68 {
        return Err(format!(
            "{}: {} points, expected 68",
            path.display(),
            points.len()
        ));
    }
    Ok(points)
}

/// Every `<id>.pts` of `dir` with its `<id>.jpg`, sorted by id.
fn read_set(dir: &Path) -> Result<(Vec<Sample>, Vec<String>), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".pts").map(str::to_string)
        })
        .collect();
    ids.sort();
    let (mut samples, mut errors) = (Vec::new(), Vec::new());
    for id in ids {
        match read_pts(&dir.join(format!("{id}.pts"))) {
            Ok(points) => samples.push(Sample {
                image: dir.join(format!("{id}.jpg")),
                id,
                points,
            }),
            Err(e) => errors.push(e),
        }
    }
    Ok((samples, errors))
}

/// Euclidean distance in pixels.
fn distance(a: &Point, b: &Point) -> f32 {
    (a.x - b.x).hypot(a.y - b.y)
}

/// Mean point-to-point error over the outer-eye-corner distance, in percent.
fn nme(pred: &[Point], truth: &[Point]) -> Option<f32> {
    let (a, b) = OUTER_EYE_CORNERS;
    let d = distance(truth.get(a)?, truth.get(b)?);
    if pred.len() != truth.len() || d <= 0.0 {
        return None;
    }
    let sum: f32 = pred.iter().zip(truth).map(|(p, t)| distance(p, t)).sum();
    Some(100.0 * sum / truth.len() as f32 / d)
}

/// The index of the box with the largest IoU with `truth`, if at least [`MIN_IOU`].
fn match_face(boxes: &[BBox], truth: &BBox) -> Option<usize> {
    boxes
        .iter()
        .map(|b| b.iou(truth))
        .enumerate()
        .filter(|(_, iou)| *iou >= MIN_IOU)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// The running totals of one landmark model.
#[derive(Default)]
struct Score {
    nmes: Vec<f32>,
    failures: usize,
    time: Duration,
}

impl Score {
    /// Scores the 68 points `predict` returns for the annotated face `sample`.
    fn add(
        &mut self,
        sample: &Sample,
        model: &str,
        list_failures: bool,
        predict: impl FnOnce() -> Result<Vec<Point>, String>,
    ) -> Result<(), String> {
        let start = Instant::now();
        let pred = predict().map_err(|e| format!("{}: {model} failed: {e}", sample.id))?;
        self.time += start.elapsed();
        let e = nme(&pred, &sample.points).ok_or(format!(
            "{}: degenerate annotation or {model} output",
            sample.id
        ))?;
        if e > FAILURE_NME {
            self.failures += 1;
            if list_failures {
                eprintln!("failure: {} {model} NME {e:.2} %", sample.id);
            }
        }
        self.nmes.push(e);
        Ok(())
    }
}

/// The first face's 68 points of a model's batch output.
fn first<T>(faces: Vec<T>, points: impl FnOnce(T) -> Vec<Point>) -> Result<Vec<Point>, String> {
    faces
        .into_iter()
        .next()
        .map(points)
        .ok_or_else(|| "no face returned".to_string())
}

/// MediaPipe's ROI for a detection: its box and its two eye keypoints.
fn mesh_roi(det: &Detection) -> MeshRoi {
    let eye = |i: usize| det.keypoints.map(|k: Keypoints5| k.0[i]);
    MeshRoi::from_detection(
        det.bbox,
        eye(Keypoints5::LEFT_EYE),
        eye(Keypoints5::RIGHT_EYE),
    )
}

fn run(data: &Path, list_failures: bool) -> Result<bool, String> {
    let (samples, read_errors) = read_set(&data.join("helen68"))?;
    for e in &read_errors {
        eprintln!("unreadable: {e}");
    }
    let total = samples.len() + read_errors.len();
    if total == 0 {
        return Err(format!(
            "no .pts files in {}",
            data.join("helen68").display()
        ));
    }
    let detector = DetectorKind::RetinaFace
        .load(&WeightsSource::Embedded)
        .map_err(|e| e.to_string())?;
    let landmarks = FaceLandmarks68::load(&WeightsSource::Embedded).map_err(|e| e.to_string())?;
    let mesh = FaceMesh::load(&WeightsSource::Embedded).map_err(|e| e.to_string())?;
    let options = DetectorOptions::default();
    let (mut faceapi, mut meshes) = (Score::default(), Score::default());
    let mut misses = read_errors.len();
    let mut ok = read_errors.is_empty();
    for s in &samples {
        let img = match load_image(&s.image) {
            Ok(img) => img.to_rgb8(),
            Err(e) => {
                eprintln!("unreadable: {}: {e}", s.image.display());
                (misses, ok) = (misses + 1, false);
                continue;
            }
        };
        let truth = BBox::enclosing(&s.points).ok_or("empty point set")?;
        let dets = detector
            .detect(&img, &options)
            .map_err(|e| format!("{}: detection failed: {e}", s.id))?;
        let boxes: Vec<BBox> = dets.iter().map(|d| d.bbox).collect();
        let Some(det) = match_face(&boxes, &truth).and_then(|i| dets.get(i)) else {
            if list_failures {
                eprintln!("miss: {} ({} detections)", s.id, boxes.len());
            }
            misses += 1;
            continue;
        };
        faceapi.add(s, "face-api", list_failures, || {
            let out = landmarks
                .run(&img, &[det.bbox])
                .map_err(|e| e.to_string())?;
            first(out, |l| l.points)
        })?;
        meshes.add(s, "mesh", list_failures, || {
            let out = mesh
                .run(&img, &[mesh_roi(det)])
                .map_err(|e| e.to_string())?;
            first(out, |l| l.landmarks68())
        })?;
    }
    print_table(
        &[
            ("face-api.js 68-point net (`FaceLandmarks68`)", &faceapi),
            (
                "FaceMesh v2, 68 points read off the mesh (`Landmarks478::landmarks68`)",
                &meshes,
            ),
        ],
        total,
        misses,
    );
    Ok(ok)
}

fn print_table(rows: &[(&str, &Score)], total: usize, misses: usize) {
    println!(
        "HELEN (300-W test, {total} faces), RetinaFace default options; missed faces: {misses}"
    );
    println!();
    println!("| model | faces scored | NME % (scored) | failure rate % (NME > 8 %, misses count) | ms per face |");
    println!("| --- | --- | --- | --- | --- |");
    for (name, s) in rows {
        let n = s.nmes.len();
        let mean = s.nmes.iter().sum::<f32>() / n.max(1) as f32;
        let fail = 100.0 * (s.failures + misses) as f32 / total as f32;
        let ms = s.time.as_secs_f64() * 1e3 / n.max(1) as f64;
        println!("| {name} | {n} | {mean:.2} | {fail:.1} | {ms:.1} |");
    }
}

fn main() -> ExitCode {
    let mut data = None;
    let mut list_failures = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--list-failures" => list_failures = true,
            s if s.starts_with("--") || data.is_some() => {
                eprintln!("usage: eval_landmarks DATA_DIR [--list-failures]");
                return ExitCode::from(2);
            }
            _ => data = Some(PathBuf::from(arg)),
        }
    }
    let Some(data) = data else {
        eprintln!("usage: eval_landmarks DATA_DIR [--list-failures]");
        return ExitCode::from(2);
    };
    match run(&data, list_failures) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
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
    fn nme_divides_by_the_outer_eye_distance() {
        let mut truth: Vec<Point> = (0..68).map(|i| Point::new(i as f32, 0.0)).collect();
        truth[36] = Point::new(0.0, 0.0);
        truth[45] = Point::new(50.0, 0.0);
        let pred: Vec<Point> = truth.iter().map(|p| Point::new(p.x, p.y + 1.0)).collect();
        assert!((nme(&pred, &truth).unwrap() - 2.0).abs() < 1e-5);
    }

    #[test]
    fn the_best_overlapping_box_is_matched() {
        let truth = BBox::new(0., 0., 10., 10.);
        let boxes = [BBox::new(50., 50., 60., 60.), BBox::new(1., 1., 11., 11.)];
        assert_eq!(match_face(&boxes, &truth), Some(1));
        assert_eq!(match_face(&boxes[..1], &truth), None);
    }
}
