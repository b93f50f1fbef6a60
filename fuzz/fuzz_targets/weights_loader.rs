//! Bytes → safetensors parsing → building BlazeFace and RetinaFace: an error naming the file,
//! never a panic.
#![no_main]

use faceanalysis::facecore::weights::Weights;
use faceanalysis::facedetect::blazeface::{BlazeFace, BlazeFaceVariant};
use faceanalysis::facedetect::retinaface::RetinaFaceNet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let device = candle_core::Device::Cpu;
    if let Ok(w) = Weights::from_bytes("fuzz.safetensors", data, &device) {
        let _ = w.build(|vb| BlazeFace::new(BlazeFaceVariant::ShortRange, vb));
    }
    if let Ok(w) = Weights::from_bytes("fuzz.safetensors", data, &device) {
        let _ = w.build(RetinaFaceNet::new);
    }
});
