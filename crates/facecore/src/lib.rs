//! The shared core of the `faceanalysis` workspace: image-to-tensor conversion, geometry,
//! weights loading, the convolution layer types every model uses, and one error type.
//!
//! ```
//! use facecore::geometry::{nms, BBox};
//! use facecore::image::{image_to_tensor, Normalization, Resize};
//!
//! let img = image::RgbImage::new(64, 48);
//! let (tensor, transform) = image_to_tensor(
//!     &img,
//!     Resize::Letterbox { width: 32, height: 32, pad: 127.5 },
//!     &Normalization::RGB_SIGNED_UNIT,
//!     &facecore::Device::Cpu,
//! )?;
//! assert_eq!(tensor.dims(), &[1, 3, 32, 32]);
//! assert_eq!(transform.scale_x, 0.5);
//!
//! let boxes = [BBox::new(0., 0., 10., 10.), BBox::new(1., 1., 11., 11.)];
//! assert_eq!(nms(&boxes, &[0.9, 0.8], 0.4), vec![0]);
//! # Ok::<(), facecore::Error>(())
//! ```

#![warn(missing_docs)]

pub mod chip;
pub mod error;
pub mod faceapi;
pub mod geometry;
pub mod image;
mod kernels;
pub mod layers;
pub mod threads;
pub mod weights;

pub use candle_core::{Device, Tensor};
pub use error::{Error, Result};
