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

/// A fixture written by `tools/reference/faceapi.mjs`: `image_size` (width, height), `boxes`
/// and `crops` (x, y, width, height per face, f32), each face's pixels as `crop_{i}` (u8,
/// height x width x 3), and the model's outputs under their own names.
pub struct FaceApiFixture {
    tensors: HashMap<String, Tensor>,
}

impl FaceApiFixture {
    /// Loads the fixture at `path` (see [`fixture`]).
    pub fn load(path: impl AsRef<Path>) -> Self {
        Self {
            tensors: fixture(path),
        }
    }

    /// Whether the fixture holds a tensor called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The values of the f32 tensor `name`, flattened.
    ///
    /// # Panics
    ///
    /// If there is no such tensor or it is not f32.
    pub fn f32s(&self, name: &str) -> Vec<f32> {
        let t = &self.tensors[name];
        assert_eq!(t.dtype(), DType::F32, "{name}");
        t.flatten_all().and_then(|t| t.to_vec1()).unwrap()
    }

    /// The largest absolute difference between `got`, flattened, and the f32 tensor `name`.
    ///
    /// # Panics
    ///
    /// As [`FaceApiFixture::f32s`], if `got` is not f32, or if the lengths differ.
    pub fn max_abs_diff(&self, name: &str, got: &Tensor) -> f32 {
        let got: Vec<f32> = got.flatten_all().and_then(|t| t.to_vec1()).unwrap();
        max_abs_diff_slices(&got, &self.f32s(name))
    }

    /// The image with each stored face crop pasted where it was cut (black elsewhere).
    ///
    /// # Panics
    ///
    /// If a crop is missing, not u8, or not the size its `crops` row says.
    pub fn image(&self) -> image::RgbImage {
        let size = self.f32s("image_size");
        let mut img = image::RgbImage::new(size[0] as u32, size[1] as u32);
        for (i, c) in self.f32s("crops").chunks_exact(4).enumerate() {
            let t = &self.tensors[&format!("crop_{i}")];
            assert_eq!(t.dtype(), DType::U8);
            assert_eq!(t.dims(), &[c[3] as usize, c[2] as usize, 3]);
            let data: Vec<u8> = t.flatten_all().and_then(|t| t.to_vec1()).unwrap();
            for (j, px) in data.chunks_exact(3).enumerate() {
                let (x, y) = ((j % c[2] as usize) as u32, (j / c[2] as usize) as u32);
                img.put_pixel(
                    c[0] as u32 + x,
                    c[1] as u32 + y,
                    image::Rgb([px[0], px[1], px[2]]),
                );
            }
        }
        img
    }

    /// The face boxes, `[x0, y0, x1, y1]` each.
    pub fn boxes(&self) -> Vec<[f32; 4]> {
        self.f32s("boxes")
            .chunks_exact(4)
            .map(|b| [b[0], b[1], b[2], b[3]])
            .collect()
    }
}
