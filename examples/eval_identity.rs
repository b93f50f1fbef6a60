//! Face-verification accuracy on LFW (`../shared/eval/lfw`, see its README and
//! `docs/ACCURACY.md`).
//!
//! ```text
//! cargo run --release --example eval_identity -- DATA_DIR [--model sface|dlib|both] [--cache DIR]
//! ```
//!
//! DATA_DIR holds `lfw/pairs.txt` (View 2: 10 folds of 300 same-person and 300 different-person
//! pairs) and `lfw/images/<Name>/<Name>_<i:04>.jpg`. The full pipeline runs once on each of the
//! 7,701 images the pairs use: RetinaFace (library defaults) finds the faces, the face whose box
//! centre is nearest the image centre is kept, and each model embeds it (SFace: ArcFace 112x112
//! alignment from the five keypoints; dlib: dlib's 150x150 chip from
//! `DlibPoints5::from_keypoints5`). An image where no face is found is not dropped: its keypoints
//! are the mean keypoint layout of the detected images (in image-relative coordinates; LFW's
//! deep-funnelled images are centred on the face), and such images are counted and listed on
//! stderr. A pair's score is the cosine similarity of its two embeddings; `both` averages the
//! two models' cosines (the "mean of both cosines" row; its own threshold is the mean of the two).
//!
//! `--cache DIR` saves each model's 7,701 embeddings as `DIR/lfw_<model id>.gallery` (the
//! gallery format, one identity per image) and the images without a detected face as
//! `DIR/lfw_noface.txt`, and reuses them on later runs: `--model both` after a `sface` and a
//! `dlib` run with the same cache computes nothing.
//!
//! Protocol: 10-fold cross-validation; for each fold the threshold that maximises accuracy on
//! the other nine folds is applied to it; printed: mean ± sample standard deviation of the ten
//! fold accuracies. Also printed, for calibration, over all 6,000 pairs: the accuracy, the
//! false-accept rate (different-person pairs at or above the threshold) and false-reject rate at
//! the model's own threshold (`EmbeddingModel::threshold`), the single threshold that maximises
//! accuracy, and the true-accept rate at a false-accept rate of at most 0.1 % (3 of 3,000).
//!
//! Exit code 1 when an image cannot be read or processed, 2 for bad arguments or missing data.

mod common;
mod identity;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use common::flag_value;
use faceanalysis::facecore::chip::DlibPoints5;
use faceanalysis::facedetect::FaceDetector;
use faceanalysis::faceembed::dlib_resnet::DlibResNet;
use faceanalysis::faceembed::embedding::{Embedding, EmbeddingModel};
use faceanalysis::faceembed::gallery::Gallery;
use faceanalysis::faceembed::sface::SFace;
use faceanalysis::{Keypoints5, Point, WeightsSource};
use image::RgbImage;

/// Folds of LFW View 2.
const FOLDS: usize = 10;

/// The largest false-accept rate for the reported true-accept rate.
const TAR_AT_FAR: f64 = 1e-3;

/// One LFW pair: fold, the two image keys (`Name/Name_0001`), and whether it is one person.
struct Pair {
    fold: usize,
    a: String,
    b: String,
    same: bool,
}

fn usage() -> &'static str {
    "usage: eval_identity DATA_DIR [--model sface|dlib|both] [--cache DIR]"
}

fn image_key(name: &str, index: &str) -> Result<String, String> {
    let i: u32 = index
        .parse()
        .map_err(|_| format!("bad image number {index:?} for {name}"))?;
    Ok(format!("{name}/{name}_{i:04}"))
}

/// Parses `pairs.txt` (View 2): a `10 300` header, then per fold 300 lines `name i j` and 300
/// lines `name1 i name2 j`.
fn read_pairs(path: &Path) -> Result<Vec<Pair>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<usize> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [folds, per] = header[..] else {
        return Err(format!("{}: bad header", path.display()));
    };
    if folds != FOLDS {
        return Err(format!(
            "{}: {folds} folds, expected {FOLDS}",
            path.display()
        ));
    }
    let mut pairs = Vec::with_capacity(folds * per * 2);
    for fold in 0..folds {
        for k in 0..2 * per {
            let line = lines
                .next()
                .ok_or_else(|| format!("{}: ends in fold {fold}", path.display()))?;
            let f: Vec<&str> = line.split_whitespace().collect();
            let (a, b, same) = match f[..] {
                [n, i, j] if k < per => (image_key(n, i)?, image_key(n, j)?, true),
                [n1, i, n2, j] if k >= per => (image_key(n1, i)?, image_key(n2, j)?, false),
                _ => return Err(format!("{}: bad line {line:?}", path.display())),
            };
            pairs.push(Pair { fold, a, b, same });
        }
    }
    Ok(pairs)
}

/// The face nearest the image centre, if any.
fn central_face(detector: &dyn FaceDetector, img: &RgbImage) -> Result<Option<Keypoints5>, String> {
    let centre = Point::new(img.width() as f32 / 2.0, img.height() as f32 / 2.0);
    let dist = |f: &identity::Face| {
        let c = f.bbox.center();
        (c.x - centre.x).powi(2) + (c.y - centre.y).powi(2)
    };
    Ok(identity::detect(detector, img)?
        .into_iter()
        .min_by(|a, b| dist(a).total_cmp(&dist(b)))
        .map(|f| f.keypoints))
}

/// A loaded model.
enum Model {
    SFace(SFace),
    Dlib(DlibResNet),
}

impl Model {
    fn load(kind: EmbeddingModel) -> Result<Self, String> {
        let source = WeightsSource::Embedded;
        match kind {
            EmbeddingModel::SFace => SFace::load(&source).map(Model::SFace),
            EmbeddingModel::DlibResNet => DlibResNet::load(&source).map(Model::Dlib),
        }
        .map_err(|e| format!("cannot load {kind}: {e}"))
    }

    fn embed(&self, img: &RgbImage, face: &Keypoints5) -> Result<Embedding, String> {
        let mut out = match self {
            Model::SFace(m) => m.embed(img, &[*face]),
            Model::Dlib(m) => m.embed(img, &[DlibPoints5::from_keypoints5(face)]),
        }
        .map_err(|e| e.to_string())?;
        out.pop().ok_or_else(|| "no embedding".to_string())
    }
}

/// Keypoints in image-relative coordinates (`x / width`, `y / height`).
fn relative(k: &Keypoints5, img: &RgbImage) -> [f64; 10] {
    let (w, h) = (img.width() as f64, img.height() as f64);
    std::array::from_fn(|i| {
        let p = k.0[i / 2];
        if i % 2 == 0 {
            p.x as f64 / w
        } else {
            p.y as f64 / h
        }
    })
}

/// Every image's embedding by each model (image key to embedding, one map per model), and the
/// keys of the images where no face was found.
struct Embedded {
    per_model: Vec<BTreeMap<String, Embedding>>,
    missed: Vec<String>,
}

/// Runs the pipeline on every image once.
fn embed_all(data: &Path, keys: &[&str], models: &[Model]) -> Result<Embedded, String> {
    let detector = identity::detector()?;
    let path_of = |key: &str| data.join("lfw/images").join(format!("{key}.jpg"));
    let load = |key: &str| identity::load_rgb(&path_of(key)).map_err(|e| format!("{key}: {e}"));
    let mut per_model = vec![BTreeMap::new(); models.len()];
    let mut embed = |key: &str, img: &RgbImage, face: &Keypoints5| -> Result<(), String> {
        for (m, map) in models.iter().zip(per_model.iter_mut()) {
            let e = m.embed(img, face).map_err(|e| format!("{key}: {e}"))?;
            map.insert(key.to_string(), e);
        }
        Ok(())
    };
    let mut missed = Vec::new();
    let (mut layout_sum, mut detected) = ([0f64; 10], 0usize);
    let start = Instant::now();
    for (n, &key) in keys.iter().enumerate() {
        let img = load(key)?;
        match central_face(detector.as_ref(), &img).map_err(|e| format!("{key}: {e}"))? {
            Some(face) => {
                for (s, v) in layout_sum.iter_mut().zip(relative(&face, &img)) {
                    *s += v;
                }
                detected += 1;
                embed(key, &img, &face)?;
            }
            None => missed.push(key.to_string()),
        }
        if (n + 1) % 500 == 0 {
            eprintln!(
                "{}/{} images, {:.1} s",
                n + 1,
                keys.len(),
                start.elapsed().as_secs_f64()
            );
        }
    }
    if detected == 0 {
        return Err("no face found in any image".into());
    }
    let mean = layout_sum.map(|s| s / detected as f64);
    for key in &missed {
        let img = load(key)?;
        let (w, h) = (img.width() as f64, img.height() as f64);
        let face = Keypoints5(std::array::from_fn(|i| {
            Point::new((mean[2 * i] * w) as f32, (mean[2 * i + 1] * h) as f32)
        }));
        eprintln!("no face found in {key}: using the mean keypoint layout");
        embed(key, &img, &face)?;
    }
    Ok(Embedded { per_model, missed })
}

/// `--cache DIR`: each model's embeddings as a gallery (one identity per image key).
fn cache_file(dir: &Path, model: EmbeddingModel) -> PathBuf {
    dir.join(format!("lfw_{}.gallery", model.id()))
}

/// `--cache DIR`: the keys of the images where no face was found, one a line.
fn noface_file(dir: &Path) -> PathBuf {
    dir.join("lfw_noface.txt")
}

fn read_cache(dir: &Path, model: EmbeddingModel) -> Result<BTreeMap<String, Embedding>, String> {
    let gallery = Gallery::load(cache_file(dir, model), model).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for name in gallery.names() {
        if let Some(e) = gallery.embeddings(name).and_then(|l| l.first()) {
            out.insert(name.to_string(), e.clone());
        }
    }
    Ok(out)
}

fn write_cache(
    dir: &Path,
    model: EmbeddingModel,
    embeddings: &BTreeMap<String, Embedding>,
    missed: &[String],
) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut gallery = Gallery::new(model);
    for (key, e) in embeddings {
        gallery.add(key, e.clone()).map_err(|e| e.to_string())?;
    }
    gallery
        .save(cache_file(dir, model))
        .map_err(|e| e.to_string())?;
    let file = noface_file(dir);
    std::fs::write(
        &file,
        missed.iter().map(|k| format!("{k}\n")).collect::<String>(),
    )
    .map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// Accuracy of `score >= threshold` as "same".
fn accuracy(scores: &[(f32, bool)], threshold: f32) -> f64 {
    let right = scores
        .iter()
        .filter(|&&(s, same)| (s >= threshold) == same)
        .count();
    right as f64 / scores.len().max(1) as f64
}

/// The threshold that maximises accuracy on `scores`. Candidates are the midpoints between
/// consecutive sorted scores (and just past the extremes); several usually tie, and the median
/// of the tied candidates is taken, so neither the strict nor the lenient end of the tie is
/// favoured.
fn best_threshold(scores: &[(f32, bool)]) -> f32 {
    let mut sorted: Vec<f32> = scores.iter().map(|s| s.0).collect();
    sorted.sort_by(f32::total_cmp);
    let mut candidates = vec![sorted.first().map_or(0.0, |s| s - 1e-3)];
    candidates.extend(sorted.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(sorted.last().map_or(0.0, |s| s + 1e-3));
    let accuracies: Vec<f64> = candidates.iter().map(|&t| accuracy(scores, t)).collect();
    let best = accuracies.iter().copied().fold(f64::MIN, f64::max);
    let tied: Vec<f32> = candidates
        .iter()
        .zip(&accuracies)
        .filter(|(_, &a)| a == best)
        .map(|(&t, _)| t)
        .collect();
    tied.get(tied.len() / 2).copied().unwrap_or(0.0)
}

fn report(label: &str, threshold: f32, pairs: &[Pair], scores: &[f32]) {
    let scored: Vec<(f32, bool)> = scores
        .iter()
        .zip(pairs)
        .map(|(&s, p)| (s, p.same))
        .collect();
    let mut fold_acc = Vec::with_capacity(FOLDS);
    let mut fold_thresholds = Vec::with_capacity(FOLDS);
    for fold in 0..FOLDS {
        let (test, train): (Vec<_>, Vec<_>) =
            scored.iter().zip(pairs).partition(|(_, p)| p.fold == fold);
        let train: Vec<(f32, bool)> = train.into_iter().map(|(s, _)| *s).collect();
        let test: Vec<(f32, bool)> = test.into_iter().map(|(s, _)| *s).collect();
        let t = best_threshold(&train);
        fold_thresholds.push(t);
        fold_acc.push(accuracy(&test, t));
    }
    let mean = fold_acc.iter().sum::<f64>() / FOLDS as f64;
    let var = fold_acc.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (FOLDS - 1) as f64;
    let t_mean = fold_thresholds.iter().sum::<f32>() / FOLDS as f32;
    let negatives: Vec<f32> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let positives: Vec<f32> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let rate =
        |v: &[f32], t: f32| v.iter().filter(|&&s| s >= t).count() as f64 / v.len().max(1) as f64;
    let mut neg_sorted = negatives.clone();
    neg_sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (TAR_AT_FAR * negatives.len() as f64).floor() as usize;
    let t_far = neg_sorted.get(allowed).map_or(f32::MIN, |s| s.next_up());
    let t_all = best_threshold(&scored);
    println!(
        "| {label} | {:.2} ± {:.2} | {t_mean:.3} | {:.2} | {:.2} % | {:.2} % | {t_all:.3} ({:.2}) | {:.2} % |",
        100.0 * mean,
        100.0 * var.sqrt(),
        100.0 * accuracy(&scored, threshold),
        100.0 * rate(&negatives, threshold),
        100.0 * (1.0 - rate(&positives, threshold)),
        100.0 * accuracy(&scored, t_all),
        100.0 * rate(&positives, t_far),
    );
    eprintln!("{label}: fold accuracies {fold_acc:.4?}, thresholds {fold_thresholds:.3?}; own threshold {threshold}");
}

fn run() -> Result<(), (String, u8)> {
    let mut it = std::env::args().skip(1);
    let (mut data, mut cache) = (None::<PathBuf>, None::<PathBuf>);
    let mut chosen = vec![EmbeddingModel::SFace];
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--model" => {
                chosen = match flag_value::<String>(&mut it, "--model")
                    .map_err(|e| (e, 2))?
                    .as_str()
                {
                    "sface" => vec![EmbeddingModel::SFace],
                    "dlib" => vec![EmbeddingModel::DlibResNet],
                    "both" => vec![EmbeddingModel::SFace, EmbeddingModel::DlibResNet],
                    other => return Err((format!("unknown model {other:?}\n{}", usage()), 2)),
                }
            }
            "--cache" => cache = Some(flag_value(&mut it, "--cache").map_err(|e| (e, 2))?),
            _ if data.is_none() && !arg.starts_with('-') => data = Some(PathBuf::from(arg)),
            _ => return Err((usage().into(), 2)),
        }
    }
    let data = data.ok_or((usage().to_string(), 2))?;
    let pairs = read_pairs(&data.join("lfw/pairs.txt")).map_err(|e| (e, 2))?;
    let mut keys: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    keys.sort_unstable();
    keys.dedup();
    eprintln!("{} pairs, {} images", pairs.len(), keys.len());
    let cached = |m: EmbeddingModel| cache.as_ref().is_some_and(|d| cache_file(d, m).is_file());
    let to_compute: Vec<EmbeddingModel> = chosen.iter().copied().filter(|&m| !cached(m)).collect();
    let mut embeddings: BTreeMap<EmbeddingModel, BTreeMap<String, Embedding>> = BTreeMap::new();
    let missed = if to_compute.is_empty() {
        let dir = cache.as_deref().unwrap_or(Path::new("."));
        let file = noface_file(dir);
        std::fs::read_to_string(&file)
            .map_err(|e| (format!("cannot read {}: {e}", file.display()), 1))?
            .lines()
            .map(str::to_string)
            .collect()
    } else {
        let models = to_compute
            .iter()
            .map(|&m| Model::load(m))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|e| (e, 1))?;
        let start = Instant::now();
        let Embedded { per_model, missed } =
            embed_all(&data, &keys, &models).map_err(|e| (e, 1))?;
        eprintln!(
            "embedded {} images in {:.0} s",
            keys.len(),
            start.elapsed().as_secs_f64()
        );
        for (m, map) in to_compute.iter().zip(per_model) {
            if let Some(dir) = &cache {
                write_cache(dir, *m, &map, &missed).map_err(|e| (e, 1))?;
            }
            embeddings.insert(*m, map);
        }
        missed
    };
    for &m in &chosen {
        if let (Some(dir), false) = (&cache, embeddings.contains_key(&m)) {
            embeddings.insert(m, read_cache(dir, m).map_err(|e| (e, 1))?);
        }
    }
    let mut per_model: Vec<Vec<f32>> = Vec::new();
    for m in &chosen {
        let map = embeddings
            .get(m)
            .ok_or((format!("no embeddings for {m}"), 1))?;
        let scores = pairs
            .iter()
            .map(|p| match (map.get(&p.a), map.get(&p.b)) {
                (Some(a), Some(b)) => a.cosine(b).map_err(|e| (e.to_string(), 1)),
                _ => Err((format!("{m}: no embedding for {} or {}", p.a, p.b), 1)),
            })
            .collect::<Result<Vec<f32>, _>>()?;
        per_model.push(scores);
    }
    println!(
        "| model | 10-fold accuracy % (mean ± std) | mean fold threshold | accuracy % at own threshold | \
         FAR at own threshold | FRR at own threshold | best single threshold (accuracy %) | TAR at FAR <= 0.1 % |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (m, scores) in chosen.iter().zip(&per_model) {
        report(m.id(), m.threshold(), &pairs, scores);
    }
    if let ([s, d], [ms, md]) = (&per_model[..], &chosen[..]) {
        let avg: Vec<f32> = s.iter().zip(d).map(|(a, b)| (a + b) / 2.0).collect();
        let t = (ms.threshold() + md.threshold()) / 2.0;
        report("mean of both cosines", t, &pairs, &avg);
    }
    println!(
        "\n{} of {} images had no detected face and used the mean keypoint layout.",
        missed.len(),
        keys.len()
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
