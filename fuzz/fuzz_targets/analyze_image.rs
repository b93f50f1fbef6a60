//! Image bytes → decode (with limits) → `analyze` with every part: an error or faces, never a
//! panic.
#![no_main]

use std::sync::OnceLock;

use faceanalysis::{decode_image, DecodeLimits, FaceAnalyzer};
use libfuzzer_sys::fuzz_target;

fn analyzer() -> &'static FaceAnalyzer {
    static ANALYZER: OnceLock<FaceAnalyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| FaceAnalyzer::new().expect("embedded weights load"))
}

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the limits themselves are part of what is fuzzed.
    let limits = DecodeLimits {
        max_width: 1024,
        max_height: 1024,
        max_alloc: 64 << 20,
    };
    if let Ok(img) = decode_image(data, &limits) {
        let _ = analyzer().analyze(&img);
    }
});
