//! Test support shared by the workspace's parity tests: loading safetensors fixtures and
//! measuring the largest absolute difference between two results.
//!
//! Dev-only: the crates use it under `[dev-dependencies]`. Its functions panic on bad input,
//! as test helpers do.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

/// The tensors of the safetensors file at `path`, loaded on the CPU.
///
/// # Panics
///
/// If the file cannot be read or parsed; the message names the path.
pub fn fixture(path: impl AsRef<Path>) -> HashMap<String, Tensor> {
    let path = path.as_ref();
    candle_core::safetensors::load(path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The largest absolute difference between two tensors of the same shape, computed in f32.
///
/// # Panics
///
/// If the shapes differ, or a tensor cannot be converted to f32.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let d = (a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap();
    d.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap()
}

/// The largest absolute difference between two slices of the same length (0 when empty).
///
/// # Panics
///
/// If the lengths differ.
pub fn max_abs_diff_slices(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
