//! The main job: detect and analyse the faces of images and folders of images.
//!
//! ```text
//! cargo run --release --example analyze -- [OPTIONS] PATH...
//! ```
//!
//! Each PATH is an image or a folder (searched recursively, sorted). Options:
//! - `--json`: JSON Lines on stdout, one object per image, in input order;
//! - `--draw DIR`: write annotated PNGs (boxes, keypoints) into DIR;
//! - `--detector retinaface|blazeface-short|blazeface-full` (default retinaface);
//! - `--assume-face`: skip detection, the whole image is one face crop;
//! - `--parts LIST`: comma-separated parts to compute (the box, score and keypoints are always
//!   there);
//! - `--weights DIR`: read `.safetensors` files from DIR instead of the embedded ones;
//! - `--score S`, `--max-side PX`, `--min-size PX`, `--max-faces N`: detector options.
//!
//! A file that cannot be read or decoded gets an `"error"` and processing goes on; the exit
//! code is 1 if any image failed, 2 for bad options.

mod common;

use common::flag_value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use faceanalysis::{DetectorOptions, Face, FaceAnalyzer, WeightsSource};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

/// Every part name of the JSON shape, and whether this version computes it.
const PARTS: &[(&str, bool)] = &[
    ("landmarks", false),
    ("landmarks68", false),
    ("head_pose", false),
    ("gaze", false),
    ("embedding", false),
    ("age", false),
    ("gender", false),
    ("emotion", false),
    ("blendshapes", false),
    ("action_units", false),
];

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
     [--assume-face] [--parts LIST] [--weights DIR] [--score S] [--max-side PX] [--min-size PX] \
     [--max-faces N] PATH..."
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
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    match PARTS.iter().find(|(p, _)| *p == name) {
                        Some((_, true)) => {}
                        Some((_, false)) => {
                            return Err(format!("part {name:?} is not available in this version"))
                        }
                        None => return Err(format!("unknown part {name:?}")),
                    }
                }
            }
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

fn draw(img: &RgbImage, faces: &[Face]) -> RgbImage {
    let mut canvas = img.clone();
    let thickness = (img.width().max(img.height()) / 400).max(1) as i32;
    for face in faces {
        let b = face.bbox;
        for t in 0..thickness {
            let w = (b.width() as i32 + 2 * t).max(1) as u32;
            let h = (b.height() as i32 + 2 * t).max(1) as u32;
            let rect = Rect::at(b.x0 as i32 - t, b.y0 as i32 - t).of_size(w, h);
            draw_hollow_rect_mut(&mut canvas, rect, Rgb([0, 255, 0]));
        }
        let r = thickness + 1;
        for p in &face.detector_keypoints {
            draw_filled_circle_mut(&mut canvas, (p.x as i32, p.y as i32), r, Rgb([0, 128, 255]));
        }
        for p in face.keypoints.iter().flat_map(|k| k.0) {
            draw_filled_circle_mut(&mut canvas, (p.x as i32, p.y as i32), r, Rgb([255, 0, 0]));
        }
    }
    canvas
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
                        let b = f.bbox;
                        println!(
                            "  [{:.0}, {:.0}, {:.0}, {:.0}] score {:.3}",
                            b.x0, b.y0, b.x1, b.y1, f.score
                        );
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
                    if let Err(e) = draw(&img, &faces).save(dir.join(&name)) {
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
