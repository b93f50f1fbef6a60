//! The weights compiled into the library are exactly the files `weights/README.md` lists, by
//! sha256; damaged copies given through a directory fail `build()` naming the file (and the
//! tensor, where one is at fault).

use faceanalysis::facecore::weights::WeightFile;
use faceanalysis::{faceattrs, facedetect, faceembed, faceexpr, facelandmarks};
use faceanalysis::{FaceAnalyzer, Part, WeightsSource};
use sha2::{Digest, Sha256};

/// Every weight file the library embeds.
const EMBEDDED: [WeightFile; 13] = [
    facedetect::retinaface::WEIGHTS,
    facedetect::blazeface::SHORT_RANGE_WEIGHTS,
    facedetect::blazeface::FULL_RANGE_WEIGHTS,
    facelandmarks::facemesh::WEIGHTS,
    facelandmarks::headpose::FACE_GEOMETRY_WEIGHTS,
    facelandmarks::landmarks68::WEIGHTS,
    faceexpr::blendshapes::WEIGHTS,
    faceexpr::faceapi_expression::WEIGHTS,
    faceexpr::mini_xception::WEIGHTS,
    faceattrs::age_gender::AGE_WEIGHTS,
    faceattrs::age_gender::GENDER_WEIGHTS,
    faceembed::sface::WEIGHTS,
    faceembed::dlib_resnet::WEIGHTS,
];

/// `(file, sha256)` of every row of the table in `weights/README.md`.
fn documented() -> Vec<(String, String)> {
    let readme = std::fs::read_to_string("weights/README.md").unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let file = cells[1].trim_matches('`').to_string();
            let sha = cells[cells.len() - 2].trim_matches('`').to_string();
            (file, sha)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn embedded_weights_match_their_documented_sha256() {
    let table = documented();
    assert_eq!(table.len(), EMBEDDED.len(), "one row per weight file");
    for w in EMBEDDED {
        let (_, sha) = table
            .iter()
            .find(|(f, _)| f == w.name)
            .unwrap_or_else(|| panic!("{} is not in weights/README.md", w.name));
        assert_eq!(&hex(w.embedded), sha, "{}", w.name);
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "faceanalysis-weights-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn build_mesh_from(dir: &std::path::Path) -> String {
    FaceAnalyzer::builder()
        .weights(WeightsSource::Dir(dir.to_path_buf()))
        .detector(faceanalysis::DetectorKind::BlazeFaceShort)
        .parts([Part::Landmarks])
        .build()
        .unwrap_err()
        .to_string()
}

#[test]
fn damaged_or_misnamed_files_fail_build_naming_the_file() {
    let mesh = facelandmarks::facemesh::WEIGHTS;
    let detector = facedetect::blazeface::SHORT_RANGE_WEIGHTS;
    let dir = temp_dir("damaged");
    std::fs::write(dir.join(detector.name), detector.embedded).unwrap();

    // Wrongly named: the mesh's file is not where the loader looks.
    std::fs::write(dir.join("facemesh.safetensors"), mesh.embedded).unwrap();
    let msg = build_mesh_from(&dir);
    assert!(msg.contains(mesh.name), "{msg}");

    // A bit flipped in the header makes it unreadable.
    let mut flipped = mesh.embedded.to_vec();
    flipped[20] ^= 0x40;
    std::fs::write(dir.join(mesh.name), &flipped).unwrap();
    let msg = build_mesh_from(&dir);
    assert!(msg.contains(mesh.name), "{msg}");

    // Truncated.
    std::fs::write(
        dir.join(mesh.name),
        &mesh.embedded[..mesh.embedded.len() - 1000],
    )
    .unwrap();
    let msg = build_mesh_from(&dir);
    assert!(msg.contains(mesh.name) && msg.contains("corrupt"), "{msg}");
}
