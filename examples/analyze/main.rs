//! The main job: detect and analyse the faces of images and folders of images.
//!
//! ```text
//! cargo run --release --example analyze -- [OPTIONS] PATH...
//! ```
//!
//! Each PATH is an image or a folder (searched recursively, sorted). Options:
//! - `--json`: JSON Lines on stdout, one object per image, in input order;
//! - `--draw DIR`: write annotated PNGs into DIR (boxes, keypoints, the mesh, the 68 points,
//!   head-pose axes, gaze arrows, and age, gender and emotion beside each box);
//! - `--detector retinaface|blazeface-short|blazeface-full` (default retinaface);
//! - `--assume-face`: skip detection, the whole image is one face crop;
//! - `--parts LIST`: comma-separated parts to compute, named as in the JSON shape (`landmarks`,
//!   `landmarks68`, `head_pose`, `gaze`, `embedding`, `age`, `gender`, `emotion`, `blendshapes`,
//!   `action_units`; default: all). The box, score and keypoints are always there;
//! - `--embedding sface|dlib`, `--emotion mini-xception|faceapi|average`,
//!   `--landmarks68 faceapi|mesh`: the model behind a part;
//! - `--no-flip`: do not average emotion, age and gender over each face and its mirror image
//!   (the default does: slightly more accurate, twice the work for those models);
//! - `--threads N`: threads to use (default: all cores);
//! - `--weights DIR`: read `.safetensors` files from DIR instead of the embedded ones;
//! - `--score S`, `--max-side PX`, `--min-size PX`, `--max-faces N`: detector options.
//!
//! A file that cannot be read or decoded gets an `"error"` and processing goes on; the exit
//! code is 1 if any image failed, 2 for bad options.

#[path = "../common/mod.rs"]
mod common;
mod draw;

use common::flag_value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use faceanalysis::faceembed::embedding::EmbeddingModel;
use faceanalysis::faceexpr::EmotionModel;
use faceanalysis::{DetectorOptions, Face, FaceAnalyzer, Landmarks68Source, Part, WeightsSource};
use image::RgbImage;

const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

/// One line of `--json` output, keys in the documented order.
#[derive(serde::Serialize)]
struct ImageLine<'a> {
    image: &'a str,
    width: u32,
    height: u32,
    faces: &'a [Face],
}

struct Args {
    json: bool,
    draw: Option<PathBuf>,
    paths: Vec<PathBuf>,
    analyzer: FaceAnalyzer,
}

fn usage() -> &'static str {
    "usage: analyze [--json] [--draw DIR] [--detector retinaface|blazeface-short|blazeface-full] \
     [--assume-face] [--parts LIST] [--embedding sface|dlib] \
     [--emotion mini-xception|faceapi|average] [--landmarks68 faceapi|mesh] [--no-flip] [--threads N] \
     [--weights DIR] [--score S] [--max-side PX] [--min-size PX] [--max-faces N] PATH..."
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut builder = FaceAnalyzer::builder();
    let mut opts = DetectorOptions::default();
    let (mut json, mut draw, mut paths) = (false, None, Vec::new());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--draw" => draw = Some(flag_value::<PathBuf>(&mut it, "--draw")?),
            "--detector" => {
                let name: String = flag_value(&mut it, "--detector")?;
                builder = builder.detector(name.parse().map_err(|e| format!("{e}"))?);
            }
            "--assume-face" => builder = builder.assume_face(true),
            "--parts" => {
                let list: String = flag_value(&mut it, "--parts")?;
                let parts = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|name| name.parse::<Part>().map_err(|e| e.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                builder = builder.parts(parts);
            }
            "--embedding" => {
                let name: String = flag_value(&mut it, "--embedding")?;
                builder = builder.embedding_model(match name.as_str() {
                    "sface" => EmbeddingModel::SFace,
                    "dlib" => EmbeddingModel::DlibResNet,
                    _ => return Err(format!("--embedding: {name:?} is not sface or dlib")),
                });
            }
            "--emotion" => {
                let name: String = flag_value(&mut it, "--emotion")?;
                builder = builder.emotion_model(match name.as_str() {
                    "mini-xception" => EmotionModel::MiniXception,
                    "faceapi" => EmotionModel::FaceApi,
                    "average" => EmotionModel::Average,
                    _ => {
                        return Err(format!(
                            "--emotion: {name:?} is not mini-xception, faceapi or average"
                        ))
                    }
                });
            }
            "--landmarks68" => {
                let name: String = flag_value(&mut it, "--landmarks68")?;
                builder = builder.landmarks68_source(match name.as_str() {
                    "faceapi" => Landmarks68Source::FaceApi,
                    "mesh" => Landmarks68Source::Mesh,
                    _ => return Err(format!("--landmarks68: {name:?} is not faceapi or mesh")),
                });
            }
            "--threads" => builder = builder.threads(flag_value(&mut it, "--threads")?),
            "--no-flip" => builder = builder.emotion_flip(false).age_gender_flip(false),
            "--weights" => {
                builder = builder.weights(WeightsSource::Dir(flag_value(&mut it, "--weights")?))
            }
            "--score" => opts.score_threshold = Some(flag_value(&mut it, "--score")?),
            "--max-side" => opts.max_side = Some(flag_value(&mut it, "--max-side")?),
            "--min-size" => opts.min_face_size = flag_value(&mut it, "--min-size")?,
            "--max-faces" => opts.max_faces = Some(flag_value(&mut it, "--max-faces")?),
            "-h" | "--help" => return Err(usage().to_string()),
            flag if flag.starts_with("--") => {
                return Err(format!("unknown option {flag}\n{}", usage()))
            }
            _ => paths.push(PathBuf::from(arg)),
        }
    }
    if paths.is_empty() {
        return Err(usage().to_string());
    }
    let analyzer = builder
        .detector_options(opts)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(Args {
        json,
        draw,
        paths,
        analyzer,
    })
}

/// Expands folders into their image files, recursively, sorted; files are kept as given.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            out.push(dir.to_path_buf());
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// One line about a face for the human summary.
fn summary(f: &Face) -> String {
    let b = f.bbox;
    let mut s = format!(
        "[{:.0}, {:.0}, {:.0}, {:.0}] score {:.3}",
        b.x0, b.y0, b.x1, b.y1, f.score
    );
    if let Some(g) = &f.gender {
        s += &format!(", {} ({:.2})", g.label, g.score);
    }
    if let Some(a) = &f.age {
        s += &format!(", {:.0} years ({})", a.years, a.group);
    }
    if let Some(e) = &f.emotion {
        s += &format!(", {}", e.label);
    }
    if let Some(p) = &f.head_pose {
        s += &format!(", yaw {:.0} pitch {:.0} roll {:.0}", p.yaw, p.pitch, p.roll);
    }
    if let Some(g) = &f.gaze {
        s += &format!(
            ", gaze yaw {:.0} pitch {:.0}",
            g.combined.yaw, g.combined.pitch
        );
    }
    if let Some(au) = &f.action_units {
        let present = au.present(faceanalysis::faceexpr::action_units::DEFAULT_PRESENCE_THRESHOLD);
        if !present.is_empty() {
            s += &format!(", AUs {}", present.join(" "));
        }
    }
    for o in &f.omitted {
        s += &format!(", no {}: {}", o.part, o.reason);
    }
    s
}

/// Analyses one file; returns its size and faces.
fn analyze_one(analyzer: &FaceAnalyzer, path: &Path) -> Result<(RgbImage, Vec<Face>), String> {
    let img = faceanalysis::load_image(path)
        .map_err(|e| e.to_string())?
        .to_rgb8();
    let faces = analyzer.analyze_rgb(&img).map_err(|e| e.to_string())?;
    Ok((img, faces))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.draw {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let mut failed = false;
    let mut drawn_names = HashSet::new();
    for path in expand(&args.paths) {
        let shown = path.display().to_string();
        match analyze_one(&args.analyzer, &path) {
            Ok((img, faces)) => {
                if args.json {
                    let line = ImageLine {
                        image: &shown,
                        width: img.width(),
                        height: img.height(),
                        faces: &faces,
                    };
                    match serde_json::to_string(&line) {
                        Ok(line) => println!("{line}"),
                        Err(e) => {
                            println!(
                                "{}",
                                serde_json::json!({"image": shown, "error": e.to_string()})
                            );
                            failed = true;
                        }
                    }
                } else {
                    println!(
                        "{shown}: {}x{}, {} face(s)",
                        img.width(),
                        img.height(),
                        faces.len()
                    );
                    for f in &faces {
                        println!("  {}", summary(f));
                    }
                }
                if let Some(dir) = &args.draw {
                    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
                    let mut name = format!("{stem}.png");
                    let mut n = 1;
                    while !drawn_names.insert(name.clone()) {
                        n += 1;
                        name = format!("{stem}_{n}.png");
                    }
                    if let Err(e) = draw::draw(&img, &faces).save(dir.join(&name)) {
                        eprintln!("{shown}: cannot write {name}: {e}");
                        failed = true;
                    }
                }
            }
            Err(e) => {
                failed = true;
                if args.json {
                    println!("{}", serde_json::json!({"image": shown, "error": e}));
                } else {
                    println!("{shown}: error: {e}");
                }
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
