//! The layer types every model's convolutions go through.
//!
//! Models stay ordinary candle code (`xs.apply(&conv)?`), but their convolutions are built here,
//! with batch-norm folded into the kernel at load and the activation fused into the layer, so a
//! faster CPU kernel lands in one place for the whole workspace.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;

/// Padding of a convolution's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// The same number of zero rows and columns on every side (PyTorch's `padding=p`).
    Symmetric(usize),
    /// TensorFlow's `SAME`: output size `ceil(input / stride)`, with the odd extra row and column
    /// of padding at the bottom and right, computed from the input size at run time.
    Same,
}

/// A convolution's shape: channels, kernel, stride, padding and groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dSpec {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride in both directions.
    pub stride: usize,
    /// Input padding.
    pub padding: Padding,
    /// Groups: 1 for a dense convolution, `in_channels` for a depthwise one.
    pub groups: usize,
}

impl Conv2dSpec {
    /// A dense `kernel`x`kernel` convolution with PyTorch-style symmetric padding `kernel / 2`.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize, stride: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel,
            stride,
            padding: Padding::Symmetric(kernel / 2),
            groups: 1,
        }
    }

    /// A depthwise convolution (one filter per channel) with symmetric padding `kernel / 2`.
    pub fn depthwise(channels: usize, kernel: usize, stride: usize) -> Self {
        Self {
            groups: channels,
            ..Self::new(channels, channels, kernel, stride)
        }
    }

    /// The same spec with another padding.
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    /// The kernel's shape in PyTorch layout: `[out, in / groups, k, k]`.
    pub fn weight_shape(&self) -> (usize, usize, usize, usize) {
        (
            self.out_channels,
            self.in_channels / self.groups.max(1),
            self.kernel,
            self.kernel,
        )
    }
}

/// An activation fused into a layer.
#[derive(Debug, Clone)]
pub enum Activation {
    /// No activation.
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x` for positive `x`, `slope * x` otherwise.
    LeakyRelu(f32),
    /// Leaky ReLU with one learned slope per channel (a `[C]` tensor).
    PRelu(Tensor),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Activation {
    /// Applies the activation to an NCHW tensor.
    pub fn apply(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Self::Identity => Ok(xs.clone()),
            Self::Relu => xs.relu(),
            Self::Relu6 => xs.clamp(0f32, 6f32),
            Self::LeakyRelu(slope) => {
                let neg = xs.minimum(0f32)?.affine(*slope as f64, 0.)?;
                xs.relu()? + neg
            }
            Self::PRelu(slope) => {
                let c = slope.dim(0)?;
                let slope = slope.reshape((1, c, 1, 1))?;
                xs.relu()? + xs.minimum(0f32)?.broadcast_mul(&slope)?
            }
            Self::Sigmoid => candle_nn::ops::sigmoid(xs),
        }
    }
}

/// A 2-D convolution with its bias and activation fused.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    spec: Conv2dSpec,
    activation: Activation,
}

impl Conv2d {
    /// A convolution from its kernel (`[out, in / groups, k, k]`) and optional bias (`[out]`).
    pub fn from_tensors(
        weight: Tensor,
        bias: Option<Tensor>,
        spec: Conv2dSpec,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        if weight.dims4()? != spec.weight_shape() {
            candle_core::bail!(
                "convolution kernel has shape {:?}, expected {:?}",
                weight.dims(),
                spec.weight_shape()
            );
        }
        Ok(Self {
            weight,
            bias,
            spec,
            activation,
        })
    }

    /// Loads `weight` and, when `bias` is true, `bias` under `vb`.
    pub fn load(
        vb: VarBuilder,
        spec: Conv2dSpec,
        bias: bool,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        let weight = vb.get(spec.weight_shape(), "weight")?;
        let bias = if bias {
            Some(vb.get(spec.out_channels, "bias")?)
        } else {
            None
        };
        Self::from_tensors(weight, bias, spec, activation)
    }

    /// Loads a bias-free convolution under `conv` followed by a batch norm under `bn`
    /// (`weight`, `bias`, `running_mean`, `running_var`), folding the batch norm into the kernel.
    pub fn load_bn(
        conv: VarBuilder,
        bn: VarBuilder,
        spec: Conv2dSpec,
        eps: f64,
        activation: Activation,
    ) -> candle_core::Result<Self> {
        let weight = conv.get(spec.weight_shape(), "weight")?;
        let c = spec.out_channels;
        let gamma = bn.get(c, "weight")?;
        let beta = bn.get(c, "bias")?;
        let mean = bn.get(c, "running_mean")?;
        let var = bn.get(c, "running_var")?;
        let scale = (gamma / (var + eps)?.sqrt()?)?;
        let weight = weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
        let bias = (beta - (mean * &scale)?)?;
        Self::from_tensors(weight, Some(bias), spec, activation)
    }

    /// The layer's spec.
    pub fn spec(&self) -> &Conv2dSpec {
        &self.spec
    }
}

/// `(before, after)` zero padding of TensorFlow's `SAME` for one dimension.
pub fn same_padding(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out.saturating_sub(1)) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let s = &self.spec;
        let (h, w) = (xs.dim(D::Minus2)?, xs.dim(D::Minus1)?);
        let (top, bottom, left, right) = match s.padding {
            Padding::Symmetric(p) => (p, p, p, p),
            Padding::Same => {
                let (top, bottom) = same_padding(h, s.kernel, s.stride);
                let (left, right) = same_padding(w, s.kernel, s.stride);
                (top, bottom, left, right)
            }
        };
        let is_depthwise = s.groups > 1 && s.groups == s.in_channels && s.groups == s.out_channels;
        let no_padding = top + bottom + left + right == 0;
        let ys = if is_depthwise {
            depthwise(xs, &self.weight, s.stride, (top, bottom, left, right))?
        } else if s.kernel == 1 && s.stride == 1 && s.groups == 1 && no_padding {
            // A pointwise convolution is one matrix product per image, without im2col.
            let n = xs.dim(0)?;
            let w2 = self.weight.reshape((s.out_channels, s.in_channels))?;
            w2.broadcast_matmul(&xs.reshape((n, s.in_channels, h * w))?)?
                .reshape((n, s.out_channels, h, w))?
        } else if top == bottom && left == right && top == left {
            xs.conv2d(&self.weight, top, s.stride, 1, s.groups)?
        } else {
            let padded = xs.pad_with_zeros(D::Minus2, top, bottom)?.pad_with_zeros(
                D::Minus1,
                left,
                right,
            )?;
            padded.conv2d(&self.weight, 0, s.stride, 1, s.groups)?
        };
        let ys = match &self.bias {
            Some(b) => ys.broadcast_add(&b.reshape((1, s.out_channels, 1, 1))?)?,
            None => ys,
        };
        self.activation.apply(&ys)
    }
}

/// A depthwise convolution (one `k x k` filter per channel, `weight` `[C, 1, k, k]`) as a direct
/// loop over the channels of every image, in parallel; zero padding `(top, bottom, left, right)`.
/// Candle runs grouped convolutions as one convolution per group, which costs far more on the
/// small planes of mobile networks.
fn depthwise(
    xs: &Tensor,
    weight: &Tensor,
    stride: usize,
    (top, bottom, left, right): (usize, usize, usize, usize),
) -> candle_core::Result<Tensor> {
    use rayon::prelude::*;
    let (n, c, h, w) = xs.dims4()?;
    let k = weight.dim(D::Minus1)?;
    if h + top + bottom < k || w + left + right < k || stride == 0 {
        candle_core::bail!(
            "depthwise convolution: {k}x{k} kernel larger than the padded {h}x{w} input"
        );
    }
    let oh = (h + top + bottom - k) / stride + 1;
    let ow = (w + left + right - k) / stride + 1;
    let input = xs
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let kernel = weight.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, dst)| {
            let ch = plane % c;
            let src = &input[plane * h * w..(plane + 1) * h * w];
            let ker = &kernel[ch * k * k..(ch + 1) * k * k];
            for oy in 0..oh {
                let y0 = (oy * stride) as isize - top as isize;
                for ox in 0..ow {
                    let x0 = (ox * stride) as isize - left as isize;
                    let mut acc = 0f32;
                    for ky in 0..k {
                        let y = y0 + ky as isize;
                        if y < 0 || y >= h as isize {
                            continue;
                        }
                        let row = &src[y as usize * w..(y as usize + 1) * w];
                        for kx in 0..k {
                            let x = x0 + kx as isize;
                            if x >= 0 && x < w as isize {
                                acc += row[x as usize] * ker[ky * k + kx];
                            }
                        }
                    }
                    dst[oy * ow + ox] = acc;
                }
            }
        });
    Tensor::from_vec(out, (n, c, oh, ow), xs.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The largest absolute difference of two tensors of the same shape.
    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        diff.max(0).unwrap().to_scalar().unwrap()
    }

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_padding(128, 5, 2), (1, 2));
        assert_eq!(same_padding(64, 3, 1), (1, 1));
        assert_eq!(same_padding(64, 2, 2), (0, 0));
        assert_eq!(same_padding(7, 3, 2), (1, 1));
    }

    #[test]
    fn batch_norm_folds_into_the_kernel() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 2. * 5. * 5., &dev)
            .unwrap()
            .reshape((1, 2, 5, 5))
            .unwrap();
        let w = Tensor::arange(0f32, 3. * 2. * 9., &dev)
            .unwrap()
            .reshape((3, 2, 3, 3))
            .unwrap()
            .affine(0.01, -0.2)
            .unwrap();
        let gamma = Tensor::new(&[1.5f32, 0.5, -1.0], &dev).unwrap();
        let beta = Tensor::new(&[0.1f32, -0.2, 0.3], &dev).unwrap();
        let mean = Tensor::new(&[0.4f32, 0.0, -0.4], &dev).unwrap();
        let var = Tensor::new(&[2.0f32, 0.5, 1.0], &dev).unwrap();
        let mut ts = std::collections::HashMap::new();
        ts.insert("c.weight".to_string(), w.clone());
        ts.insert("b.weight".to_string(), gamma.clone());
        ts.insert("b.bias".to_string(), beta.clone());
        ts.insert("b.running_mean".to_string(), mean.clone());
        ts.insert("b.running_var".to_string(), var.clone());
        let vb = VarBuilder::from_tensors(ts, candle_core::DType::F32, &dev);
        let spec = Conv2dSpec::new(2, 3, 3, 1);
        let conv =
            Conv2d::load_bn(vb.pp("c"), vb.pp("b"), spec, 1e-5, Activation::Identity).unwrap();
        let got = conv.forward(&x).unwrap();
        let r = |t: &Tensor| t.reshape((1, 3, 1, 1)).unwrap();
        let want = x
            .conv2d(&w, 1, 1, 1, 1)
            .unwrap()
            .broadcast_sub(&r(&mean))
            .unwrap()
            .broadcast_div(&r(&(var + 1e-5).unwrap().sqrt().unwrap()))
            .unwrap()
            .broadcast_mul(&r(&gamma))
            .unwrap()
            .broadcast_add(&r(&beta))
            .unwrap();
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn depthwise_matches_candle_grouped_convolution() {
        let dev = Device::Cpu;
        let shapes = [
            (1, 3, 7, 9, 3, 1),
            (2, 4, 8, 8, 3, 2),
            (1, 5, 11, 6, 5, 2),
            (1, 2, 1, 1, 3, 1),
            (1, 8, 13, 13, 3, 2),
        ];
        for (n, c, h, w, k, stride) in shapes {
            let xs = Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1., (c, 1, k, k), &dev).unwrap();
            for padding in [
                Padding::Symmetric(k / 2),
                Padding::Symmetric(0),
                Padding::Same,
            ] {
                if padding == Padding::Symmetric(0) && (h < k || w < k) {
                    continue;
                }
                let spec = Conv2dSpec::depthwise(c, k, stride).with_padding(padding);
                let conv =
                    Conv2d::from_tensors(wt.clone(), None, spec, Activation::Identity).unwrap();
                let got = conv.forward(&xs).unwrap();
                let (t, b, l, r) = match padding {
                    Padding::Symmetric(p) => (p, p, p, p),
                    Padding::Same => {
                        let (t, b) = same_padding(h, k, stride);
                        let (l, r) = same_padding(w, k, stride);
                        (t, b, l, r)
                    }
                };
                let padded = xs
                    .pad_with_zeros(2, t, b)
                    .unwrap()
                    .pad_with_zeros(3, l, r)
                    .unwrap();
                let want = padded.conv2d(&wt, 0, stride, 1, c).unwrap();
                let err = max_abs_diff(&got, &want);
                assert!(
                    err < 1e-5,
                    "{n}x{c}x{h}x{w} k{k} s{stride} {padding:?}: {err}"
                );
            }
        }
    }

    #[test]
    fn pointwise_matches_candle_convolution() {
        let dev = Device::Cpu;
        for (n, cin, cout, h, w) in [(1, 3, 5, 7, 9), (2, 8, 16, 4, 4), (1, 64, 4, 1, 1)] {
            let xs = Tensor::randn(0f32, 1., (n, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1., (cout, cin, 1, 1), &dev).unwrap();
            let spec = Conv2dSpec::new(cin, cout, 1, 1);
            let conv = Conv2d::from_tensors(wt.clone(), None, spec, Activation::Identity).unwrap();
            let got = conv.forward(&xs).unwrap();
            let want = xs.conv2d(&wt, 0, 1, 1, 1).unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err < 1e-5, "{n}x{cin}x{h}x{w} -> {cout}: {err}");
        }
    }

    #[test]
    fn activations() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[-2f32, -0.5, 0.0, 3.0, 7.0], &dev)
            .unwrap()
            .reshape((1, 5, 1, 1))
            .unwrap();
        let v = |a: Activation| -> Vec<f32> {
            a.apply(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert_eq!(v(Activation::Relu), vec![0., 0., 0., 3., 7.]);
        assert_eq!(v(Activation::Relu6), vec![0., 0., 0., 3., 6.]);
        assert_eq!(v(Activation::LeakyRelu(0.1)), vec![-0.2, -0.05, 0., 3., 7.]);
        let slope = Tensor::new(&[0.5f32, 1., 2., 3., 4.], &dev).unwrap();
        assert_eq!(v(Activation::PRelu(slope)), vec![-1., -0.5, 0., 3., 7.]);
    }
}
