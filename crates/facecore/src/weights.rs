//! Loading `.safetensors` weights, either compiled into the library or from a directory.
//!
//! Every model of the workspace names its file with a [`WeightFile`]: the file name and the bytes
//! embedded at compile time. A [`WeightsSource`] chooses at run time whether those embedded bytes
//! or a file of the same name in a directory are used. Tensors stored as fp16 or bf16 are upcast
//! to f32 at load. A missing tensor, a wrong shape or a corrupt file becomes an
//! [`Error`] that names the file and the tensor.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

/// Where model weights come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WeightsSource {
    /// The `.safetensors` files compiled into the library (the default: no files needed).
    #[default]
    Embedded,
    /// A directory holding `.safetensors` files with the same names as the embedded ones.
    Dir(PathBuf),
}

/// One weights file of one model: its file name and its bytes compiled into the library.
#[derive(Debug, Clone, Copy)]
pub struct WeightFile {
    /// The file name, as it appears under `weights/` and in a [`WeightsSource::Dir`].
    pub name: &'static str,
    /// The file's bytes, embedded at compile time.
    pub embedded: &'static [u8],
}

impl WeightFile {
    /// Reads this file from `source` and parses it into tensors on `device`.
    pub fn load(&self, source: &WeightsSource, device: &Device) -> Result<Weights> {
        match source {
            WeightsSource::Embedded => Weights::from_bytes(self.name, self.embedded, device),
            WeightsSource::Dir(dir) => {
                let path = dir.join(self.name);
                let bytes =
                    std::fs::read(&path).map_err(|source| Error::WeightsIo { path, source })?;
                Weights::from_bytes(self.name, &bytes, device)
            }
        }
    }

    /// Loads this file and builds a model from it with `build`, a constructor walking a
    /// [`VarBuilder`]. A tensor that `build` asks for and that is missing or misshapen is
    /// reported as [`Error::WeightsTensor`] with this file's and the tensor's names.
    pub fn build<M>(
        &self,
        source: &WeightsSource,
        device: &Device,
        build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
    ) -> Result<M> {
        self.load(source, device)?.build(build)
    }
}

/// The tensors of one weights file, all as f32.
#[derive(Debug)]
pub struct Weights {
    file: String,
    tensors: HashMap<String, Tensor>,
    device: Device,
}

impl Weights {
    /// Parses `.safetensors` bytes; `file` names the file in errors.
    pub fn from_bytes(file: &str, bytes: &[u8], device: &Device) -> Result<Self> {
        let corrupt = |reason: String| Error::WeightsCorrupt {
            file: file.to_string(),
            reason,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let tensor_err = |reason: String| Error::WeightsTensor {
                file: file.to_string(),
                tensor: name.clone(),
                reason,
            };
            let values = decode_f32(view.dtype(), view.data()).map_err(tensor_err)?;
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(tensor_err(format!("holds a non-finite value ({bad})")));
            }
            let t = Tensor::from_vec(values, view.shape(), device)?;
            tensors.insert(name, t);
        }
        Ok(Self {
            file: file.to_string(),
            tensors,
            device: device.clone(),
        })
    }

    /// The file these tensors came from.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Builds a model with `build` from a [`VarBuilder`] over these tensors; see
    /// [`WeightFile::build`].
    pub fn build<M>(
        self,
        build: impl FnOnce(VarBuilder<'static>) -> candle_core::Result<M>,
    ) -> Result<M> {
        let file = self.file.clone();
        let device = self.device.clone();
        let backend = std::sync::Arc::new(Backend {
            weights: self,
            failure: Mutex::new(None),
        });
        let vb =
            VarBuilder::from_backend(Box::new(SharedBackend(backend.clone())), DType::F32, device);
        match build(vb) {
            Ok(m) => Ok(m),
            Err(e) => {
                let failure = backend.failure.lock().ok().and_then(|mut f| f.take());
                Err(match failure {
                    Some((tensor, reason)) => Error::WeightsTensor {
                        file,
                        tensor,
                        reason,
                    },
                    None => Error::Candle(e),
                })
            }
        }
    }
}

fn decode_f32(dtype: Dtype, data: &[u8]) -> std::result::Result<Vec<f32>, String> {
    let width = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        other => return Err(format!("unsupported dtype {other:?}")),
    };
    if !data.len().is_multiple_of(width) {
        return Err(format!(
            "{} bytes is not a whole number of {dtype:?}",
            data.len()
        ));
    }
    Ok(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => data
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    })
}

/// The [`SimpleBackend`] behind [`Weights::build`]: it records the first failing tensor so the
/// error can name it.
struct Backend {
    weights: Weights,
    failure: Mutex<Option<(String, String)>>,
}

struct SharedBackend(std::sync::Arc<Backend>);

impl Backend {
    fn fail(&self, name: &str, reason: String) -> candle_core::Error {
        let msg = format!(
            "weights file {}, tensor {name}: {reason}",
            self.weights.file
        );
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert((name.to_string(), reason));
        }
        candle_core::Error::Msg(msg)
    }

    fn fetch(&self, name: &str) -> candle_core::Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| self.fail(name, "missing".to_string()))
    }
}

impl SimpleBackend for SharedBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = self.0.fetch(name)?;
        if t.shape() != &s {
            return Err(self.0.fail(
                name,
                format!("expected shape {:?}, found {:?}", s.dims(), t.dims()),
            ));
        }
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.fetch(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.weights.get(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.to_string(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        safetensors::serialize(views, None).unwrap()
    }

    #[test]
    fn fp16_is_upcast() {
        let bytes: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let file = file_with(&[("w", Dtype::F16, vec![2], bytes)]);
        let w = Weights::from_bytes("t.safetensors", &file, &Device::Cpu).unwrap();
        let v: Vec<f32> = w.get("w").unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![1.5, -2.0]);
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let bytes: Vec<u8> = [1f32, 2., 3.]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let file = file_with(&[("a.weight", Dtype::F32, vec![3], bytes)]);
        let load = || Weights::from_bytes("m.safetensors", &file, &Device::Cpu).unwrap();
        let err = load().build(|vb| vb.get(4, "a.weight")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::WeightsTensor { .. }), "{msg}");
        assert!(
            msg.contains("m.safetensors") && msg.contains("a.weight"),
            "{msg}"
        );
        let err = load().build(|vb| vb.pp("b").get(3, "weight")).unwrap_err();
        assert!(err.to_string().contains("b.weight"), "{err}");
    }

    #[test]
    fn corrupt_files_are_errors() {
        let err =
            Weights::from_bytes("x.safetensors", b"\x10\0\0\0\0\0\0\0{", &Device::Cpu).unwrap_err();
        assert!(matches!(err, Error::WeightsCorrupt { .. }));
        assert!(err.to_string().contains("x.safetensors"));
    }

    #[test]
    fn missing_directory_file_is_an_io_error() {
        let f = WeightFile {
            name: "nope.safetensors",
            embedded: &[],
        };
        let err = f
            .load(&WeightsSource::Dir("/nonexistent".into()), &Device::Cpu)
            .unwrap_err();
        assert!(err.to_string().contains("nope.safetensors"));
    }
}
