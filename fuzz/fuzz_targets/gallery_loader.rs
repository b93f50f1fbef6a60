//! Bytes → `Gallery::from_bytes` → search: an error naming the offset, never a panic.
#![no_main]

use faceanalysis::faceembed::{Embedding, EmbeddingModel, Gallery, Score};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for model in EmbeddingModel::ALL {
        if let Ok(g) = Gallery::from_bytes(data, model) {
            let mut v = vec![0.0f32; model.dim()];
            v[0] = 1.0;
            if let Ok(q) = Embedding::new(model, v) {
                let _ = g.search(&q, 3, Score::Best);
                let _ = g.search(&q, 3, Score::Mean);
            }
            let _ = Gallery::from_bytes(&g.to_bytes(), model);
        }
    }
});
