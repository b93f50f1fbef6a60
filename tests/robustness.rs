//! Bad input end to end: every case of `docs/RELIABILITY.md` with its documented outcome.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::OnceLock;

use faceanalysis::{decode_image, load_image, DecodeLimits, Error, FaceAnalyzer};
use image::{DynamicImage, GenericImage, ImageFormat, Rgb, RgbImage};

fn analyzer() -> &'static FaceAnalyzer {
    static ANALYZER: OnceLock<FaceAnalyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| FaceAnalyzer::new().unwrap())
}

fn astronaut() -> DynamicImage {
    load_image("examples/images/astronaut.jpg").unwrap()
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("faceanalysis-robust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn decode_error(bytes: &[u8]) -> String {
    match decode_image(bytes, &DecodeLimits::default()) {
        Err(e @ Error::ImageFile { .. }) => e.to_string(),
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[test]
fn empty_and_truncated_files() {
    assert!(decode_error(&[]).contains("<memory>"));
    let png = encode(&astronaut(), ImageFormat::Png);
    decode_error(&png[..png.len() / 2]);
    // A JPEG cut in half still decodes: the decoder fills the missing rows with gray. The
    // outcome is an image, analysed as it is.
    let jpeg = encode(&astronaut(), ImageFormat::Jpeg);
    let half = decode_image(&jpeg[..jpeg.len() / 2], &DecodeLimits::default()).unwrap();
    assert_eq!((half.width(), half.height()), (512, 512));
    analyzer().analyze(&half).unwrap();
    decode_error(&jpeg[..100]);
}

#[test]
fn wrong_extension_is_decoded_by_content() {
    let path = temp_file("really_a_png.jpg", &encode(&astronaut(), ImageFormat::Png));
    let img = load_image(&path).unwrap();
    assert_eq!(analyzer().analyze(&img).unwrap().len(), 1);
    let text = temp_file("notes.jpg", b"not an image at all");
    let msg = load_image(&text).unwrap_err().to_string();
    assert!(msg.contains("notes.jpg"), "{msg}");
}

/// A BMP header announcing `width` x `height` pixels, with no pixel data.
fn bmp_header(width: u32, height: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&(54 + 3 * width * height).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&54u32.to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&width.to_le_bytes());
    b.extend_from_slice(&height.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&24u16.to_le_bytes());
    b.extend_from_slice(&[0; 24]);
    b
}

#[test]
fn decompression_bombs_are_refused_by_the_limits() {
    let msg = decode_error(&bmp_header(20000, 20000));
    assert!(msg.contains("limit"), "{msg}");
    let small = DecodeLimits {
        max_width: 100,
        max_height: 100,
        ..DecodeLimits::default()
    };
    let png = encode(&astronaut(), ImageFormat::Png);
    assert!(decode_image(&png, &small).is_err());
    assert!(decode_image(&png, &DecodeLimits::default()).is_ok());
}

/// `jpeg` with an EXIF block saying "rotate 90 degrees clockwise to display" (orientation 6).
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes());
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes());
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let upright = astronaut();
    // Stored rotated 90 degrees counter-clockwise, tagged to be shown rotated back.
    let stored = upright.rotate270().crop_imm(0, 0, 512, 400);
    let tagged = with_exif_orientation(&encode(&stored, ImageFormat::Jpeg), 6);
    let img = decode_image(&tagged, &DecodeLimits::default()).unwrap();
    assert_eq!((img.width(), img.height()), (400, 512), "shown upright");
    let faces = analyzer().analyze(&img).unwrap();
    assert_eq!(faces.len(), 1);
    let pose = faces[0].head_pose.unwrap();
    assert!(pose.roll.abs() < 15.0, "upright face, roll {}", pose.roll);
}

#[test]
fn odd_sizes_and_flat_or_extreme_pixels() {
    for (w, h) in [(1, 1), (1, 10000), (10000, 1), (3, 2)] {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([200, 10, 90])));
        assert!(analyzer().analyze(&img).unwrap().is_empty(), "{w}x{h}");
    }
    for v in [0u8, 255] {
        let img = DynamicImage::ImageRgb8(RgbImage::from_pixel(640, 480, Rgb([v; 3])));
        assert!(analyzer().analyze(&img).unwrap().is_empty(), "flat {v}");
    }
    // Saturated noise: every pixel 0 or 255 in each channel.
    let noise = RgbImage::from_fn(320, 240, |x, y| {
        let h = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)).wrapping_mul(2246822519);
        Rgb([
            (h >> 7 & 1) as u8 * 255,
            (h >> 13 & 1) as u8 * 255,
            (h >> 21 & 1) as u8 * 255,
        ])
    });
    analyzer().analyze(&DynamicImage::ImageRgb8(noise)).unwrap();
}

#[test]
fn many_small_faces_in_one_image() {
    let face = astronaut().crop_imm(170, 50, 110, 135).resize_exact(
        44,
        54,
        image::imageops::FilterType::Triangle,
    );
    let (cols, rows) = (20u32, 10u32);
    let mut tiled = DynamicImage::new_rgb8(cols * 48, rows * 58);
    for r in 0..rows {
        for c in 0..cols {
            tiled.copy_from(&face, c * 48 + 2, r * 58 + 2).unwrap();
        }
    }
    let analyzer = FaceAnalyzer::builder()
        .detector_options(faceanalysis::DetectorOptions {
            max_side: Some(1024),
            ..Default::default()
        })
        .build()
        .unwrap();
    let faces = analyzer.analyze(&tiled).unwrap();
    assert!(
        faces.len() >= 150 && faces.len() <= 200,
        "{} faces",
        faces.len()
    );
    for f in &faces {
        assert!(f.landmarks.is_some() || !f.omitted.is_empty());
    }
    let capped = FaceAnalyzer::builder()
        .detector_options(faceanalysis::DetectorOptions {
            max_side: Some(1024),
            max_faces: Some(5),
            ..Default::default()
        })
        .parts([])
        .build()
        .unwrap();
    assert_eq!(capped.analyze(&tiled).unwrap().len(), 5);
}

#[test]
fn one_analyzer_shared_by_eight_threads_gives_the_single_threaded_results() {
    let images: Vec<DynamicImage> = ["astronaut", "grace_hopper", "group", "noface"]
        .iter()
        .map(|n| load_image(format!("examples/images/{n}.jpg")).unwrap())
        .collect();
    let analyzer = analyzer();
    let expected: Vec<_> = images
        .iter()
        .map(|i| analyzer.analyze(i).unwrap())
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let (images, expected) = (&images, &expected);
                s.spawn(move || {
                    for k in 0..images.len() {
                        let i = (t + k) % images.len();
                        let faces = analyzer.analyze(&images[i]).unwrap();
                        assert!(faces == expected[i], "thread {t}, image {i} differs");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}

/// The `analyze` example next to this test binary (`cargo test` builds the examples).
fn analyze_example() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("examples").join("analyze");
    path.exists().then_some(path)
}

#[test]
fn a_batch_run_reports_each_failing_file_and_goes_on() {
    let Some(analyze) = analyze_example() else {
        eprintln!("skipped: the analyze example is not built next to this test");
        return;
    };
    let text = temp_file("batch_text.jpg", b"plain text");
    let args = [
        "examples/images/astronaut.jpg".into(),
        "examples/images/missing.jpg".into(),
        text.display().to_string(),
        "examples/images/noface.jpg".into(),
    ];
    let out = std::process::Command::new(analyze)
        .args(["--json", "--parts", ""])
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed file makes the exit code 1"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "one line per input: {stdout}");
    for (line, arg) in lines.iter().zip(&args) {
        assert_eq!(line["image"].as_str(), Some(arg.as_str()), "input order");
    }
    assert_eq!(lines[0]["faces"].as_array().unwrap().len(), 1);
    assert!(lines[1]["error"].as_str().unwrap().contains("missing.jpg"));
    assert!(lines[2]["error"].is_string());
    assert_eq!(lines[3]["faces"].as_array().unwrap().len(), 0);
}

#[test]
fn cmyk_and_16_bit_files_are_converted() {
    for name in ["astronaut_cmyk.jpg", "astronaut_gray16.png"] {
        let img = load_image(format!("tests/fixtures/{name}")).unwrap();
        let faces = analyzer().analyze(&img).unwrap();
        assert_eq!(faces.len(), 1, "{name}");
        assert!(faces[0].embedding.is_some(), "{name}");
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let img = load_image("examples/images/group.jpg").unwrap();
    let one = FaceAnalyzer::builder().threads(1).build().unwrap();
    let two = FaceAnalyzer::builder().threads(2).build().unwrap();
    let (a, b) = (one.analyze(&img).unwrap(), two.analyze(&img).unwrap());
    assert_eq!(a.len(), 5);
    assert!(a == b, "1 and 2 threads differ");
}
