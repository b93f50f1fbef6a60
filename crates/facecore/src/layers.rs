//! The layer types every model's convolutions go through.
//!
//! Models stay ordinary candle code (`xs.apply(&conv)?`), but their convolutions are built here,
//! with batch-norm folded into the kernel at load and the activation fused into the layer, so a
//! faster CPU kernel lands in one place for the whole workspace.

use candle_core::{DType, Module, Storage, Tensor, D};
use candle_nn::VarBuilder;

use crate::kernels::{self, Epilogue, Geometry};

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

    /// Whether each channel is convolved alone: as many groups as input and output channels
    /// (more than one; a single channel counts as dense).
    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.in_channels && self.groups == self.out_channels
    }

    /// Whether each output position reads only its own input position: a 1x1 kernel, stride 1,
    /// no padding (what runs on bordered activations as they lie).
    fn is_positionwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding.amounts((3, 3), 1, 1) == (0, 0, 0, 0)
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
    /// Applies the activation to an NCHW tensor (or any tensor whose channels are dimension 1,
    /// for a [`PRelu`](Self::PRelu)); on the CPU in one pass over the values.
    pub fn apply(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        if matches!(self, Self::Identity) {
            return Ok(xs.clone());
        }
        if xs.device().is_cpu() && xs.dtype() == DType::F32 && xs.rank() >= 2 {
            let xs = xs.contiguous()?;
            let channels = xs.dim(1)?;
            let plane = xs.dims()[2..].iter().product::<usize>().max(1);
            let epilogue = self.epilogue(channels)?;
            let out = with_f32_slice(&xs, |values| {
                kernels::activate(values, None, channels, plane, &epilogue)
            })?;
            return Tensor::from_vec(out, xs.shape(), xs.device());
        }
        self.apply_candle(xs)
    }

    /// Applies the activation to `a + b` (two tensors of one shape, channels as in
    /// [`apply`](Self::apply)); on the CPU in one pass over the values, on the kernels' threads
    /// (candle's own addition of large tensors runs on its private spinning pool).
    pub fn apply_sum(&self, a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
        if a.shape() != b.shape() {
            candle_core::bail!(
                "cannot add tensors of shapes {:?} and {:?}",
                a.dims(),
                b.dims()
            );
        }
        let cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
        if cpu_f32(a) && cpu_f32(b) && a.rank() >= 2 {
            let (a, b) = (a.contiguous()?, b.contiguous()?);
            let channels = a.dim(1)?;
            let plane = a.dims()[2..].iter().product::<usize>().max(1);
            let epilogue = self.epilogue(channels)?;
            let out = with_f32_slice(&a, |x| {
                with_f32_slice(&b, |y| {
                    kernels::activate(x, Some(y), channels, plane, &epilogue)
                })
            })??;
            return Tensor::from_vec(out, a.shape(), a.device());
        }
        self.apply_candle(&(a + b)?)
    }

    /// The activation with candle's operations.
    fn apply_candle(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
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

    /// The activation as the CPU kernels apply it to `channels` channels.
    fn epilogue(&self, channels: usize) -> candle_core::Result<Epilogue> {
        Ok(match self {
            Self::Identity => Epilogue::Identity,
            Self::Relu => Epilogue::Relu,
            Self::Relu6 => Epilogue::Relu6,
            Self::LeakyRelu(slope) => Epilogue::LeakyRelu(*slope),
            Self::PRelu(slope) => {
                let slopes = slope
                    .to_dtype(DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?;
                if slopes.len() != channels {
                    candle_core::bail!("PReLU has {} slopes, expected {channels}", slopes.len());
                }
                Epilogue::PRelu(slopes)
            }
            Self::Sigmoid => Epilogue::Sigmoid,
        })
    }
}

/// A tensor added to a convolution's output (a residual connection), fused into the layer.
///
/// The tensor is `[N, C', OH, OW]`, the convolution output's shape except that `C'` may be
/// smaller than its channels: the further channels get nothing added (the zero-padded
/// shortcuts of BlazeFace and FaceMesh). A [`Tensor`] for [`Conv2d::forward_add`], [`Bordered`]
/// activations for [`Conv2d::forward_bordered_add`].
#[derive(Debug)]
pub enum Residual<'a, T = Tensor> {
    /// `activation(conv(x) + r)`.
    BeforeActivation(&'a T),
    /// `activation(conv(x)) + r`.
    AfterActivation(&'a T),
}

impl<T> Clone for Residual<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Residual<'_, T> {}

impl<'a, T> Residual<'a, T> {
    fn value(&self) -> &'a T {
        match self {
            Self::BeforeActivation(t) | Self::AfterActivation(t) => t,
        }
    }

    fn after_activation(&self) -> bool {
        matches!(self, Self::AfterActivation(_))
    }

    /// The same kind of residual, of `value`.
    fn with<U>(&self, value: &'a U) -> Residual<'a, U> {
        match self {
            Self::BeforeActivation(_) => Residual::BeforeActivation(value),
            Self::AfterActivation(_) => Residual::AfterActivation(value),
        }
    }
}

/// The fewest input channels for which a 3x3 convolution on bordered planes runs by
/// Winograd's F(2x2, 3x3) rather than the direct kernel: with few channels the transforms weigh
/// more than the products they save (gender's 3-channel first layer by Winograd was no faster,
/// batch 8 at one thread 1.90–2.11 against 1.77–1.98 ms).
const WINOGRAD_INPUTS: usize = 16;

/// A 2-D convolution with its bias and activation fused.
///
/// On the CPU it runs facecore's own kernels (see [`threads`](crate::threads) for the thread
/// count): a direct kernel on weights packed at load for a dense 3x3 to 7x7 convolution, one
/// `gemm` per image and group after an im2col for the others (no im2col for a pointwise
/// convolution), a direct loop for a depthwise one, the bias and activation applied as each
/// output row is written. On bordered activations a 3x3 convolution with stride 1 and 16 input
/// channels or more runs by Winograd's F(2x2, 3x3). On other devices it runs candle's `conv2d`.
#[derive(Debug, Clone)]
pub struct Conv2d {
    /// `[out, in / groups, k, k]`, f32, contiguous.
    weight: Tensor,
    bias: Option<Tensor>,
    spec: Conv2dSpec,
    activation: Activation,
    /// The bias (`[out]`, or empty) and activation as the CPU kernels read them.
    bias_values: Vec<f32>,
    epilogue: Epilogue,
    /// The kernel packed for the direct convolution (a dense kxk convolution, `3 <= k <= 7`).
    direct: Option<std::sync::Arc<kernels::DirectWeight>>,
    /// The kernel transformed for Winograd's F(2x2, 3x3), built on the first bordered run that
    /// takes it (see [`forward_bordered`](Self::forward_bordered)).
    winograd: std::sync::OnceLock<Option<std::sync::Arc<kernels::WinogradWeight>>>,
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
        let groups = spec.groups;
        if groups == 0
            || !spec.in_channels.is_multiple_of(groups)
            || !spec.out_channels.is_multiple_of(groups)
        {
            candle_core::bail!(
                "{groups} groups do not divide {} input and {} output channels",
                spec.in_channels,
                spec.out_channels
            );
        }
        let weight = weight.to_dtype(DType::F32)?.contiguous()?;
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        let bias_values = match &bias {
            Some(b) => b.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        if !bias_values.is_empty() && bias_values.len() != spec.out_channels {
            candle_core::bail!(
                "convolution bias has {} values, expected {}",
                bias_values.len(),
                spec.out_channels
            );
        }
        let epilogue = activation.epilogue(spec.out_channels)?;
        let direct = if groups == 1 && spec.kernel >= 3 && weight.device().is_cpu() {
            let dims = (spec.out_channels, spec.in_channels, spec.kernel);
            kernels::DirectWeight::new(&weight.flatten_all()?.to_vec1::<f32>()?, dims)
                .map(std::sync::Arc::new)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            spec,
            activation,
            bias_values,
            epilogue,
            direct,
            winograd: std::sync::OnceLock::new(),
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

impl Padding {
    /// The padding `(top, bottom, left, right)` of an `h` x `w` input under a `kernel` x `kernel`
    /// window moved by `stride`.
    fn amounts(
        self,
        (h, w): (usize, usize),
        kernel: usize,
        stride: usize,
    ) -> (usize, usize, usize, usize) {
        match self {
            Self::Symmetric(p) => (p, p, p, p),
            Self::Same => {
                let (top, bottom) = same_padding(h, kernel, stride);
                let (left, right) = same_padding(w, kernel, stride);
                (top, bottom, left, right)
            }
        }
    }
}

/// The geometry of a `what` (a convolution or a pooling) with a `kernel` x `kernel` window,
/// `stride` and `pads` on an `[n, c, h, w]` input, or an error saying why it does not fit.
fn window_geometry(
    what: &str,
    (n, c, h, w): (usize, usize, usize, usize),
    kernel: usize,
    stride: usize,
    pads: (usize, usize, usize, usize),
) -> candle_core::Result<Geometry> {
    Geometry::new((n, c, h, w), kernel, stride, pads).ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "{kernel}x{kernel} {what} with stride {stride} and padding {pads:?} does not fit a {h}x{w} input"
        ))
    })
}

/// Errors unless a residual of `residual`'s `(N, C', H, W)` fits a `what`'s output of
/// `output`'s: the same batch, height and width, and at most its channels.
fn check_residual(
    what: &str,
    (rn, rc, rh, rw): (usize, usize, usize, usize),
    (n, o, h, w): (usize, usize, usize, usize),
) -> candle_core::Result<()> {
    if rn != n || rc > o || (rh, rw) != (h, w) {
        candle_core::bail!(
            "residual of shape [{rn}, {rc}, {rh}, {rw}] does not fit a {what} output of [{n}, {o}, {h}, {w}]"
        );
    }
    Ok(())
}

impl Conv2d {
    /// Zero padding `(top, bottom, left, right)` of an `h` x `w` input.
    fn padding(&self, h: usize, w: usize) -> (usize, usize, usize, usize) {
        let s = &self.spec;
        s.padding.amounts((h, w), s.kernel, s.stride)
    }

    /// Candle's convolution, for tensors that are not on the CPU.
    fn forward_candle(
        &self,
        xs: &Tensor,
        (top, bottom, left, right): (usize, usize, usize, usize),
        residual: Option<Residual>,
    ) -> candle_core::Result<Tensor> {
        let s = &self.spec;
        let padded =
            xs.pad_with_zeros(D::Minus2, top, bottom)?
                .pad_with_zeros(D::Minus1, left, right)?;
        let ys = padded.conv2d(&self.weight, 0, s.stride, 1, s.groups)?;
        let ys = match &self.bias {
            Some(b) => ys.broadcast_add(&b.reshape((1, s.out_channels, 1, 1))?)?,
            None => ys,
        };
        let Some(residual) = residual else {
            return self.activation.apply_candle(&ys);
        };
        let r = residual.value();
        let r = r.pad_with_zeros(1, 0, s.out_channels - r.dim(1)?)?;
        if residual.after_activation() {
            self.activation.apply_candle(&ys)? + r
        } else {
            self.activation.apply_candle(&(ys + r)?)
        }
    }

    /// `activation(conv(xs))` with `residual` added before or after the activation, in the same
    /// pass over the output on the CPU. Errors when `residual`'s batch, height or width differ
    /// from the output's or it has more channels.
    pub fn forward_add(&self, xs: &Tensor, residual: Residual) -> candle_core::Result<Tensor> {
        self.run(xs, Some(residual))
    }

    /// The convolution of `xs`, with the residual when there is one.
    fn run(&self, xs: &Tensor, residual: Option<Residual>) -> candle_core::Result<Tensor> {
        let s = &self.spec;
        let (n, c, h, w) = xs.dims4()?;
        if c != s.in_channels {
            candle_core::bail!(
                "convolution expects {} input channels, got a {:?} tensor",
                s.in_channels,
                xs.dims()
            );
        }
        let pads = self.padding(h, w);
        let g = window_geometry("convolution", (n, c, h, w), s.kernel, s.stride, pads)?;
        if let Some(r) = residual {
            let out = (n, s.out_channels, g.out_height, g.out_width);
            check_residual("convolution", r.value().dims4()?, out)?;
        }
        if !xs.device().is_cpu() {
            return self.forward_candle(xs, pads, residual);
        }
        let out = self.run_cpu(xs, &g, residual)?;
        Tensor::from_vec(
            out,
            (n, s.out_channels, g.out_height, g.out_width),
            xs.device(),
        )
    }

    /// The convolution of bordered activations, bordered: a 1x1 convolution (stride 1, no
    /// padding) runs its product over the border too, which is then zeroed again; a dense 3x3
    /// convolution with stride 1 and one zero on every side reads the border as its padding
    /// (the direct kernel, with no padded copy) and writes the next border as it goes, and so
    /// does the stride-2 depthwise convolution of
    /// [`forward_from_bordered`](Self::forward_from_bordered). Other convolutions run on a
    /// plain copy. Errors when `xs` has the wrong channels.
    pub fn forward_bordered(&self, xs: &Bordered) -> candle_core::Result<Bordered> {
        let (n, c, h, w) = xs.dims;
        match self.halving(xs, true)? {
            Some(out) => Bordered::from_values(out, (n, c, h / 2, w / 2), xs.values.device()),
            None => self.bordered(xs, None),
        }
    }

    /// `activation(conv(xs))` with `residual` (bordered activations of the output's batch,
    /// height and width, with at most its channels) added before or after the activation, on
    /// bordered activations: a 1x1 convolution adds it in the same pass over its output, as
    /// [`forward_bordered`](Self::forward_bordered) runs it; any other convolution runs
    /// [`forward_add`](Self::forward_add) on plain copies. Errors when `xs` has the wrong
    /// channels or `residual` does not fit the output.
    pub fn forward_bordered_add(
        &self,
        xs: &Bordered,
        residual: Residual<'_, Bordered>,
    ) -> candle_core::Result<Bordered> {
        self.bordered(xs, Some(residual))
    }

    /// Errors unless bordered activations of `dims` (`(N, C, H, W)`) have this convolution's
    /// input channels.
    fn check_input(&self, (n, c, h, w): (usize, usize, usize, usize)) -> candle_core::Result<()> {
        if c != self.spec.in_channels {
            candle_core::bail!(
                "convolution expects {} input channels, got [{n}, {c}, {h}, {w}]",
                self.spec.in_channels
            );
        }
        Ok(())
    }

    /// The convolution of bordered activations, with the residual when there is one.
    fn bordered(
        &self,
        xs: &Bordered,
        residual: Option<Residual<'_, Bordered>>,
    ) -> candle_core::Result<Bordered> {
        let s = &self.spec;
        self.check_input(xs.dims)?;
        let (n, c, h, w) = xs.dims;
        let dims = (n, s.out_channels, h, w);
        if let Some(r) = residual {
            check_residual("convolution", r.value().dims, dims)?;
        }
        let on_cpu = xs.on_cpu() && residual.is_none_or(|r| r.value().on_cpu());
        let out = match &self.direct {
            _ if !on_cpu => None,
            _ if s.is_positionwise() && s.groups == 1 => {
                let weights = (&self.weight, self.bias_values.as_slice(), &self.epilogue);
                Some(separable_cpu(xs, None, weights, residual)?)
            }
            _ if s.is_positionwise() => {
                let g = window_geometry("convolution", (n, c, h + 3, w + 2), 1, 1, (0, 0, 0, 0))?;
                let residual = residual.map(|r| r.with(&r.value().values));
                let mut out = self.run_cpu(&xs.values, &g, residual)?;
                kernels::clear_border(&Bordered::shape_of(dims), &mut out);
                Some(out)
            }
            Some(_) if residual.is_some() => None,
            Some(direct) if self.is_same_3x3((h, w)) => with_f32_slice(&xs.values, |input| {
                let shape = Bordered::shape_of(xs.dims);
                let (bias, epilogue) = (&self.bias_values, &self.epilogue);
                self.winograd(&shape)
                    .and_then(|weight| {
                        kernels::conv2d_winograd_bordered(
                            &shape, input, weight, bias, epilogue, None,
                        )
                    })
                    .or_else(|| {
                        kernels::conv2d_direct_bordered(&shape, input, direct, bias, epilogue)
                    })
            })?,
            _ => None,
        };
        match (out, residual) {
            (Some(out), _) => Bordered::from_values(out, dims, xs.values.device()),
            (None, None) => Bordered::new(&self.forward(&xs.to_tensor()?)?),
            (None, Some(r)) => {
                let plain = r.value().to_tensor()?;
                Bordered::new(&self.forward_add(&xs.to_tensor()?, r.with(&plain))?)
            }
        }
    }

    /// This convolution of bordered activations with its outputs channels last: `[N, H, W,
    /// O]`, each position's outputs side by side (a detection head's layout, with no
    /// transposing copy after it). A 1x1 convolution runs as one product per part of the
    /// image's rows, straight into that order; any other convolution, or activations not on
    /// the CPU, runs [`forward`](Module::forward) on a plain copy, then is permuted. Errors when
    /// `xs` has the wrong channels.
    pub fn forward_channels_last(&self, xs: &Bordered) -> candle_core::Result<Tensor> {
        let s = &self.spec;
        self.check_input(xs.dims)?;
        if !xs.on_cpu() || !s.is_positionwise() || s.groups != 1 {
            return self
                .forward(&xs.to_tensor()?)?
                .permute((0, 2, 3, 1))?
                .contiguous();
        }
        let (n, _, h, w) = xs.dims;
        let shape = Bordered::shape_of(xs.dims);
        let layer = (s.out_channels, self.bias_values.as_slice(), &self.epilogue);
        let out = with_f32_slice(&xs.values, |input| {
            with_f32_slice(&self.weight, |weight| {
                kernels::pointwise_channels_last(&shape, input, weight, layer)
            })
        })??;
        Tensor::from_vec(out, (n, h, w, s.out_channels), xs.values.device())
    }

    /// This convolution then `pool`, on bordered activations: one layer where the convolution
    /// runs by Winograd's F(2x2, 3x3) (see [`forward_bordered`](Self::forward_bordered)) and
    /// `pool` is a 2x2, stride-2 pooling without padding, each 2x2 block of outputs pooled as it
    /// is computed, with no full-size output; `forward_bordered` then
    /// [`Pool2d::forward_bordered`] otherwise. Errors as they do.
    pub fn forward_bordered_pooled(
        &self,
        xs: &Bordered,
        pool: &Pool2d,
    ) -> candle_core::Result<Bordered> {
        let (n, c, h, w) = xs.dims;
        let shape = Bordered::shape_of(xs.dims);
        let halves = pool.halves((h, w));
        let s = &self.spec;
        let weight = (xs.on_cpu() && c == s.in_channels && halves && self.is_same_3x3((h, w)))
            .then(|| self.winograd(&shape))
            .flatten();
        if let Some(weight) = weight {
            let max = Some(pool.kind == PoolKind::Max);
            let out = with_f32_slice(&xs.values, |input| {
                let (bias, epilogue) = (&self.bias_values, &self.epilogue);
                kernels::conv2d_winograd_bordered(&shape, input, weight, bias, epilogue, max)
            })?;
            if let Some(out) = out {
                let dims = (n, s.out_channels, h / 2, w / 2);
                return Bordered::from_values(out, dims, xs.values.device());
            }
        }
        pool.forward_bordered(&self.forward_bordered(xs)?)
    }

    /// This convolution of plain activations, bordered (for layers on [`Bordered`] activations
    /// after it): a dense convolution that runs on the direct kernel writes its output in the
    /// bordered layout as it goes; any other is converted after it runs (one copy). Errors as
    /// [`forward`](Module::forward) does.
    pub fn forward_to_bordered(&self, xs: &Tensor) -> candle_core::Result<Bordered> {
        let s = &self.spec;
        let (n, c, h, w) = xs.dims4()?;
        if let (Some(direct), true) = (&self.direct, c == s.in_channels && xs.device().is_cpu()) {
            let pads = self.padding(h, w);
            let g = window_geometry("convolution", (n, c, h, w), s.kernel, s.stride, pads)?;
            let xs = xs.to_dtype(DType::F32)?.contiguous()?;
            let layer = (self.bias_values.as_slice(), &self.epilogue);
            let out = with_f32_slice(&xs, |input| {
                kernels::conv2d_direct(&g, input, direct, layer, None, true)
            })?;
            if let Some(out) = out {
                let dims = (n, s.out_channels, g.out_height, g.out_width);
                return Bordered::from_values(out, dims, xs.device());
            }
        }
        Bordered::new(&self.forward(xs)?)
    }

    /// This convolution of bordered activations, plain (`[N, O, OH, OW]`): a 3x3 depthwise
    /// convolution with stride 2 and TensorFlow's `SAME` padding of even planes (a BlazeBlock's
    /// first layer when it halves the resolution) reads them in place, the border as its
    /// padding, with no padded copy; any other convolution runs on a plain copy. Errors when
    /// `xs` has the wrong channels.
    pub fn forward_from_bordered(&self, xs: &Bordered) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = xs.dims;
        match self.halving(xs, false)? {
            Some(out) => Tensor::from_vec(out, (n, c, h / 2, w / 2), xs.values.device()),
            None => self.forward(&xs.to_tensor()?),
        }
    }

    /// The values of the 3x3 depthwise convolution with stride 2 and `SAME` padding of even
    /// planes of [`forward_from_bordered`](Self::forward_from_bordered) read in place,
    /// bordered when `bordered`, or `None` when this is another convolution or not on the CPU.
    fn halving(&self, xs: &Bordered, bordered: bool) -> candle_core::Result<Option<Vec<f32>>> {
        let s = &self.spec;
        let (_, c, h, w) = xs.dims;
        let halving = s.is_depthwise()
            && c == s.in_channels
            && s.kernel == 3
            && s.stride == 2
            && h.is_multiple_of(2)
            && w.is_multiple_of(2)
            && self.padding(h, w) == (0, 1, 0, 1);
        if !xs.on_cpu() || !halving {
            return Ok(None);
        }
        let shape = Bordered::shape_of(xs.dims);
        let out = with_f32_slice(&xs.values, |input| {
            with_f32_slice(&self.weight, |kernel| {
                let layer = (kernel, self.bias_values.as_slice(), &self.epilogue);
                kernels::depthwise_halving(&shape, input, layer, bordered)
            })
        })??;
        Ok(Some(out))
    }

    /// Whether this is a dense 3x3 convolution with stride 1 and one zero on every side of
    /// a `(height, width)` plane, on the CPU: what the bordered kernels compute in place.
    fn is_same_3x3(&self, (h, w): (usize, usize)) -> bool {
        let s = &self.spec;
        self.direct.is_some()
            && s.kernel == 3
            && s.stride == 1
            && s.padding.amounts((h, w), 3, 1) == (1, 1, 1, 1)
    }

    /// The Winograd weight for a 3x3 convolution over bordered planes of `shape`: `None` when
    /// it has fewer than [`WINOGRAD_INPUTS`] input channels or an odd side, which the direct
    /// kernel takes, or when the weight cannot be read.
    fn winograd(&self, shape: &kernels::BorderedShape) -> Option<&kernels::WinogradWeight> {
        let s = &self.spec;
        let odd = !shape.height.is_multiple_of(2) || !shape.width.is_multiple_of(2);
        if s.in_channels < WINOGRAD_INPUTS || odd {
            return None;
        }
        self.winograd
            .get_or_init(|| {
                let weight = self.weight.flatten_all().ok()?.to_vec1::<f32>().ok()?;
                let dims = (s.out_channels, s.in_channels);
                kernels::WinogradWeight::new(&weight, dims).map(std::sync::Arc::new)
            })
            .as_deref()
    }

    /// The convolution of `xs` (on the CPU, of geometry `g`) by facecore's kernels, with the
    /// residual when there is one.
    fn run_cpu(
        &self,
        xs: &Tensor,
        g: &Geometry,
        residual: Option<Residual>,
    ) -> candle_core::Result<Vec<f32>> {
        let s = &self.spec;
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let r = residual
            .map(|r| r.value().to_dtype(DType::F32)?.contiguous())
            .transpose()?;
        let out = with_f32_slice(&xs, |input| {
            with_f32_slice(&self.weight, |weight| {
                with_optional_f32_slice(r.as_ref(), |values| {
                    let residual = values.zip(residual).map(|(values, r)| kernels::Residual {
                        values,
                        channels: r.value().dims()[1],
                        after_activation: r.after_activation(),
                    });
                    if let Some(direct) = &self.direct {
                        let layer = (self.bias_values.as_slice(), &self.epilogue);
                        let out = kernels::conv2d_direct(g, input, direct, layer, residual, false);
                        if let Some(out) = out {
                            return out;
                        }
                    }
                    let depthwise = if s.is_depthwise() {
                        kernels::depthwise(
                            g,
                            input,
                            weight,
                            &self.bias_values,
                            &self.epilogue,
                            residual,
                        )
                    } else {
                        None
                    };
                    depthwise.unwrap_or_else(|| {
                        kernels::conv2d(
                            g,
                            input,
                            weight,
                            &self.bias_values,
                            (s.out_channels, s.groups),
                            &self.epilogue,
                            residual,
                        )
                    })
                })
            })
        })???;
        Ok(out)
    }
}

/// Activations (`[N, C, H, W]`) laid out for chains of [`Separable`] layers and of 3x3
/// convolutions ([`Conv2d::forward_bordered`]): each plane stored as `(H + 3) x (W + 2)` values
/// with a zero border (one row above, two below, one column either side), so that a 3x3
/// convolution reads its neighbours straight from the tensor, with no padded copy per layer,
/// and writes the next layer's border as it goes.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use facecore::layers::Bordered;
///
/// let xs = Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((1, 2, 3, 4))?;
/// let bordered = Bordered::new(&xs)?;
/// assert_eq!(bordered.dims4(), (1, 2, 3, 4));
/// let plain = bordered.to_tensor()?.squeeze(0)?;
/// assert_eq!(plain.to_vec3::<f32>()?, xs.squeeze(0)?.to_vec3::<f32>()?);
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Bordered {
    /// `[N, C, H + 3, W + 2]`, contiguous.
    values: Tensor,
    /// `(N, C, H, W)` without the border.
    dims: (usize, usize, usize, usize),
}

impl Bordered {
    /// `xs` (`[N, C, H, W]`, at least one row and column) in the bordered layout: one copy.
    pub fn new(xs: &Tensor) -> candle_core::Result<Self> {
        let dims = xs.dims4()?;
        let (n, c, height, width) = dims;
        if height == 0 || width == 0 {
            candle_core::bail!(
                "bordered activations need a non-empty plane, got {:?}",
                xs.dims()
            );
        }
        let values = if xs.device().is_cpu() {
            let xs = xs.to_dtype(DType::F32)?.contiguous()?;
            let shape = Self::shape_of(dims);
            let values = with_f32_slice(&xs, |input| kernels::border(&shape, input))?;
            Tensor::from_vec(values, (n, c, height + 3, width + 2), xs.device())?
        } else {
            xs.pad_with_zeros(D::Minus2, 1, 2)?
                .pad_with_zeros(D::Minus1, 1, 1)?
                .contiguous()?
        };
        Ok(Self { values, dims })
    }

    /// The activations without their border (`[N, C, H, W]`): one copy.
    pub fn to_tensor(&self) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = self.dims;
        if self.on_cpu() {
            let shape = Self::shape_of(self.dims);
            let plain = with_f32_slice(&self.values, |values| kernels::unborder(&shape, values))?;
            return Tensor::from_vec(plain, (n, c, h, w), self.values.device());
        }
        self.values
            .narrow(D::Minus2, 1, h)?
            .narrow(D::Minus1, 1, w)?
            .contiguous()
    }

    /// `(N, C, H, W)` of the activations (without the border).
    pub fn dims4(&self) -> (usize, usize, usize, usize) {
        self.dims
    }

    /// Whether the facecore kernels take the values: f32 on the CPU.
    fn on_cpu(&self) -> bool {
        self.values.device().is_cpu() && self.values.dtype() == DType::F32
    }

    /// Activations of `dims` (`(N, C, H, W)`) from their values in the bordered layout, as a
    /// kernel wrote them (`N x C x (H + 3) x (W + 2)`).
    fn from_values(
        values: Vec<f32>,
        dims: (usize, usize, usize, usize),
        device: &candle_core::Device,
    ) -> candle_core::Result<Self> {
        let (n, c, h, w) = dims;
        let values = Tensor::from_vec(values, (n, c, h + 3, w + 2), device)?;
        Ok(Self { values, dims })
    }

    fn shape_of(
        (batch, channels, height, width): (usize, usize, usize, usize),
    ) -> kernels::BorderedShape {
        kernels::BorderedShape {
            batch,
            channels,
            height,
            width,
        }
    }
}

/// A network's activations between layers, plain or [`Bordered`], converted (one copy) only
/// where the next layer needs the other layout.
#[derive(Debug, Clone)]
pub enum Activations {
    /// `[N, C, H, W]`.
    Plain(Tensor),
    /// In the bordered layout.
    Bordered(Bordered),
}

impl Activations {
    /// The activations as a plain tensor.
    pub fn into_plain(self) -> candle_core::Result<Tensor> {
        match self {
            Self::Plain(xs) => Ok(xs),
            Self::Bordered(xs) => xs.to_tensor(),
        }
    }

    /// The activations in the bordered layout.
    pub fn into_bordered(self) -> candle_core::Result<Bordered> {
        match self {
            Self::Plain(xs) => Bordered::new(&xs),
            Self::Bordered(xs) => Ok(xs),
        }
    }
}

/// A 3x3 depthwise convolution (stride 1, one zero on every side: TensorFlow's `SAME`) and the
/// 1x1 convolution after it, run as one layer on [`Bordered`] activations, with a residual
/// added before the pointwise activation.
///
/// On the CPU a few rows of all channels go through both convolutions at a time, the
/// depthwise outputs staying in cache for the product, and no plane is copied or padded; the
/// output is bordered for the next such layer. On other devices it runs the two [`Conv2d`]s.
#[derive(Debug, Clone)]
pub struct Separable {
    depthwise: Conv2d,
    pointwise: Conv2d,
}

impl Separable {
    /// The pair, checked: a depthwise 3x3 convolution with stride 1 and one zero of padding
    /// on every side, then a 1x1 convolution with stride 1 and no padding over its channels.
    pub fn new(depthwise: Conv2d, pointwise: Conv2d) -> candle_core::Result<Self> {
        let (d, p) = (&depthwise.spec, &pointwise.spec);
        let channels = d.in_channels;
        if d.groups != channels
            || d.out_channels != channels
            || d.kernel != 3
            || d.stride != 1
            || d.padding.amounts((3, 3), 3, 1) != (1, 1, 1, 1)
        {
            candle_core::bail!(
                "a separable layer needs a 3x3 depthwise convolution, stride 1, padding 1, got {d:?}"
            );
        }
        if p.in_channels != channels || p.groups != 1 || !p.is_positionwise() {
            candle_core::bail!(
                "a separable layer needs a 1x1 convolution of the {channels} depthwise channels, got {p:?}"
            );
        }
        Ok(Self {
            depthwise,
            pointwise,
        })
    }

    /// `pointwise(depthwise(xs))`, with `residual` (`[N, C', H, W]`, `C'` at most the
    /// outputs; the further channels get nothing) added before the pointwise activation.
    /// Errors when `xs` has the wrong channels or `residual` does not fit the output.
    pub fn forward(
        &self,
        xs: &Bordered,
        residual: Option<&Bordered>,
    ) -> candle_core::Result<Bordered> {
        let (n, c, h, w) = xs.dims4();
        let out_channels = self.pointwise.spec.out_channels;
        if c != self.depthwise.spec.in_channels {
            candle_core::bail!(
                "separable layer expects {} input channels, got [{n}, {c}, {h}, {w}]",
                self.depthwise.spec.in_channels
            );
        }
        if let Some(r) = residual {
            check_residual("separable", r.dims4(), (n, out_channels, h, w))?;
        }
        if !xs.on_cpu() || !residual.is_none_or(Bordered::on_cpu) {
            let ys = self.depthwise.forward(&xs.to_tensor()?)?;
            let ys = match residual {
                Some(r) => self
                    .pointwise
                    .forward_add(&ys, Residual::BeforeActivation(&r.to_tensor()?))?,
                None => self.pointwise.forward(&ys)?,
            };
            return Bordered::new(&ys);
        }
        let (d, p) = (&self.depthwise, &self.pointwise);
        let out = separable_cpu(
            xs,
            Some(d),
            (&p.weight, &p.bias_values, &p.epilogue),
            residual.map(Residual::BeforeActivation),
        )?;
        let values = Tensor::from_vec(out, (n, out_channels, h + 3, w + 2), xs.values.device())?;
        Ok(Bordered {
            values,
            dims: (n, out_channels, h, w),
        })
    }
}

/// Runs [`kernels::separable`] on bordered activations on the CPU: `depthwise` (a checked 3x3
/// depthwise convolution, or none) then the 1x1 convolution `(weight, bias, activation)` with
/// `residual`, whose dimensions the caller has checked. The bordered output's values.
fn separable_cpu(
    xs: &Bordered,
    depthwise: Option<&Conv2d>,
    (weight, bias, epilogue): (&Tensor, &[f32], &kernels::Epilogue),
    residual: Option<Residual<'_, Bordered>>,
) -> candle_core::Result<Vec<f32>> {
    let out_channels = weight.dim(0)?;
    let values = residual.map(|r| &r.value().values);
    with_f32_slice(&xs.values, |input| {
        with_f32_slice(weight, |pw| {
            with_optional_f32_slice(depthwise.map(|d| &d.weight), |dw| {
                with_optional_f32_slice(values, |values| {
                    let weights = kernels::SeparableWeights {
                        depthwise: dw
                            .zip(depthwise)
                            .map(|(dw, d)| (dw, d.bias_values.as_slice(), &d.epilogue)),
                        pointwise: (pw, bias, epilogue),
                        out_channels,
                    };
                    let residual = values.zip(residual).map(|(values, r)| kernels::Residual {
                        values,
                        channels: r.value().dims.1,
                        after_activation: r.after_activation(),
                    });
                    let shape = Bordered::shape_of(xs.dims);
                    kernels::separable(&shape, input, &weights, residual)
                })
            })
        })
    })???
}

/// A dense layer over the last dimension, `y = act(x W^T + b)` (no activation unless
/// [`with_activation`](Self::with_activation) sets one), run by facecore's `gemm` on the CPU
/// (candle's matmul elsewhere). It also runs over the second-to-last dimension
/// ([`forward_columns`](Self::forward_columns), the token mixing of an MLP-Mixer) and with a
/// residual added ([`forward_add`](Self::forward_add)), without transposes or extra passes.
#[derive(Debug, Clone)]
pub struct Linear {
    /// `[out, in]`, f32.
    weight: Tensor,
    bias: Option<Tensor>,
    activation: Activation,
    /// The weight transposed (`[in, out]`, row-major), the bias and the activation, as the CPU
    /// kernels read them (the column form reads `weight` itself).
    weight_t: Vec<f32>,
    bias_values: Vec<f32>,
    epilogue: Epilogue,
}

impl Linear {
    /// A dense layer from its weight (`[out, in]`) and optional bias (`[out]`).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> candle_core::Result<Self> {
        let (outputs, _) = weight.dims2()?;
        let weight = weight.to_dtype(DType::F32)?.contiguous()?;
        let bias = bias.map(|b| b.to_dtype(DType::F32)).transpose()?;
        let bias_values = match &bias {
            Some(b) => b.flatten_all()?.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        if !bias_values.is_empty() && bias_values.len() != outputs {
            candle_core::bail!(
                "dense bias has {} values, expected {outputs}",
                bias_values.len()
            );
        }
        let weight_t = weight.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        Ok(Self {
            weight,
            bias,
            activation: Activation::Identity,
            weight_t,
            bias_values,
            epilogue: Epilogue::Identity,
        })
    }
}

impl Linear {
    /// The same layer followed by `activation`, applied after the bias (and before a
    /// residual). A [`PRelu`](Activation::PRelu) is an error: its slopes are per channel of
    /// an image, which a dense layer does not have.
    pub fn with_activation(self, activation: Activation) -> candle_core::Result<Self> {
        if matches!(activation, Activation::PRelu(_)) {
            candle_core::bail!("a dense layer takes no PReLU activation");
        }
        let epilogue = activation.epilogue(0)?;
        Ok(Self {
            activation,
            epilogue,
            ..self
        })
    }

    /// `act(x W^T + b) + residual`, `residual` of the output's shape.
    pub fn forward_add(&self, xs: &Tensor, residual: &Tensor) -> candle_core::Result<Tensor> {
        self.run(xs, Some(residual), false)
    }

    /// The layer applied over `xs`'s second-to-last dimension, with `residual` (of the output's
    /// shape) added after the activation if given: `[.., in, C]` to `[.., out, C]`, each
    /// column of `C` values mixed as one input vector. It equals transposing the last two
    /// dimensions, [`forward`](Module::forward) and transposing back, without either copy.
    pub fn forward_columns(
        &self,
        xs: &Tensor,
        residual: Option<&Tensor>,
    ) -> candle_core::Result<Tensor> {
        self.run(xs, residual, true)
    }

    /// The layer over the last dimension, or the second-to-last when `columns`.
    fn run(
        &self,
        xs: &Tensor,
        residual: Option<&Tensor>,
        columns: bool,
    ) -> candle_core::Result<Tensor> {
        let (outputs, inputs) = self.weight.dims2()?;
        let dims = xs.dims();
        let axis = dims.len().checked_sub(if columns { 2 } else { 1 });
        let Some(axis) = axis.filter(|&a| dims[a] == inputs) else {
            let which = if columns { "second-to-last" } else { "last" };
            candle_core::bail!(
                "dense layer expects {inputs} inputs in the {which} dimension, got a {dims:?} tensor"
            );
        };
        let mut out_dims = dims.to_vec();
        out_dims[axis] = outputs;
        if let Some(r) = residual {
            if r.dims() != out_dims.as_slice() {
                candle_core::bail!(
                    "dense residual has shape {:?}, expected {out_dims:?}",
                    r.dims()
                );
            }
        }
        if !xs.device().is_cpu() {
            let xs = if columns {
                xs.transpose(axis, axis + 1)?
            } else {
                xs.clone()
            };
            let mut ys = xs.broadcast_matmul(&self.weight.t()?)?;
            if let Some(b) = &self.bias {
                ys = ys.broadcast_add(b)?;
            }
            ys = self.activation.apply_candle(&ys)?;
            if columns {
                ys = ys.transpose(axis, axis + 1)?;
            }
            return match residual {
                Some(r) => ys + r,
                None => Ok(ys),
            };
        }
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let residual = residual
            .map(|r| r.to_dtype(DType::F32)?.contiguous())
            .transpose()?;
        let cols = if columns { dims[axis + 1] } else { 1 };
        let images = xs.elem_count() / (inputs * cols).max(1);
        let out = with_f32_slice(&xs, |input| {
            let run = |residual: Option<&[f32]>| {
                let finish = kernels::DenseFinish {
                    epilogue: &self.epilogue,
                    residual,
                };
                if columns {
                    with_f32_slice(&self.weight, |weight| {
                        kernels::dense_columns(
                            input,
                            weight,
                            &self.bias_values,
                            (images, inputs, outputs, cols),
                            finish,
                        )
                    })
                } else {
                    Ok(kernels::dense(
                        input,
                        &self.weight_t,
                        &self.bias_values,
                        (images, inputs, outputs),
                        finish,
                    ))
                }
            };
            match &residual {
                Some(r) => with_f32_slice(r, |r| run(Some(r)))?,
                None => run(None),
            }
        })??;
        Tensor::from_vec(out, out_dims, xs.device())
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.run(xs, None, false)
    }
}

/// A dense layer whose weight (`[out, in]`) is kept as it was quantised, read so on the CPU,
/// whose reads of the weight bound a dense layer at batch 1:
/// - int8 with a scale and a zero point per block of consecutive inputs of each output, as
///   ONNX `DequantizeLinear` with `block_size` on the input axis (SFace's `pre_fc1`,
///   [`new`](Self::new)): it multiplies the int8 values themselves, a quarter of the bytes of
///   the f32 weight, and applies each block's zero point and scale to the block's sums, the
///   products of the dequantised weight regrouped by block;
/// - f16, as a `.tflite` converted with float16 quantization stores its weights (FaceMesh's
///   landmark head, [`from_f16`](Self::from_f16)): it reads the f16 values, half the bytes,
///   converts them to f32 as it loads them (exactly) and multiplies and sums in f32.
///
/// Its results equal [`Linear`] on the dequantised weight up to rounding (tested to 1e-5).
/// Elsewhere than on the CPU it multiplies by the dequantised weight with candle.
#[derive(Debug, Clone)]
pub struct QuantizedLinear {
    weight: kernels::PackedWeight,
    bias: Vec<f32>,
}

impl QuantizedLinear {
    /// A layer from its int8 `values` (`outputs x inputs`, row-major), the `scales` and
    /// `zero_points` of each output's blocks of `block` inputs (`outputs x inputs / block`,
    /// row-major) and an optional bias (`[outputs]`).
    pub fn new(
        values: &[i8],
        (outputs, inputs): (usize, usize),
        (scales, zero_points, block): (&[f32], &[i8], usize),
        bias: Option<Vec<f32>>,
    ) -> candle_core::Result<Self> {
        let weight =
            kernels::QuantizedWeight::new(values, (outputs, inputs), scales, zero_points, block)
                .map_err(|e| candle_core::Error::Msg(format!("quantized dense layer: {e}")))?;
        Self::with_bias(kernels::PackedWeight::Int8(weight), bias)
    }

    /// A layer from a weight (`[out, in]`) whose values are all f16 values (an `F16` tensor,
    /// or one upcast from f16, as facecore's weight files load an f16 tensor) and an optional
    /// bias (`[out]`). Errors on a value that f16 does not hold exactly, which this layer would
    /// round.
    pub fn from_f16(weight: &Tensor, bias: Option<&Tensor>) -> candle_core::Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let values = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let halves: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
        let inexact = (values.iter().zip(&halves).enumerate())
            .find(|(_, (v, h))| h.to_f32().to_bits() != v.to_bits());
        if let Some((i, (v, _))) = inexact {
            candle_core::bail!(
                "f16 dense layer: weight value {v} at ({}, {}) is not an f16 value",
                i / inputs.max(1),
                i % inputs.max(1)
            );
        }
        let weight = kernels::HalfWeight::new(&halves, (outputs, inputs))
            .map_err(|e| candle_core::Error::Msg(format!("f16 dense layer: {e}")))?;
        let bias = bias
            .map(|b| b.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>())
            .transpose()?;
        Self::with_bias(kernels::PackedWeight::Half(weight), bias)
    }

    /// The layer of `weight` and `bias` (`[outputs]`; none for zeros), or an error when the
    /// bias has another length.
    fn with_bias(
        weight: kernels::PackedWeight,
        bias: Option<Vec<f32>>,
    ) -> candle_core::Result<Self> {
        let (outputs, _) = weight.dims();
        let bias = bias.unwrap_or_default();
        if !bias.is_empty() && bias.len() != outputs {
            candle_core::bail!(
                "quantized dense bias has {} values, expected {outputs}",
                bias.len()
            );
        }
        Ok(Self { weight, bias })
    }

    /// `(outputs, inputs)`.
    pub fn dims(&self) -> (usize, usize) {
        self.weight.dims()
    }
}

impl Module for QuantizedLinear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (outputs, inputs) = self.weight.dims();
        let dims = xs.dims();
        if dims.last() != Some(&inputs) {
            candle_core::bail!(
                "quantized dense layer expects {inputs} inputs in the last dimension, got a \
                 {dims:?} tensor"
            );
        }
        let mut out_dims = dims.to_vec();
        out_dims[dims.len() - 1] = outputs;
        if !xs.device().is_cpu() {
            let weight =
                Tensor::from_vec(self.weight.dequantized(), (outputs, inputs), xs.device())?;
            let ys = xs.broadcast_matmul(&weight.t()?)?;
            return match self.bias.as_slice() {
                [] => Ok(ys),
                b => ys.broadcast_add(&Tensor::new(b, xs.device())?),
            };
        }
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let rows = dims[..dims.len() - 1].iter().product();
        let out = with_f32_slice(&xs, |input| {
            kernels::dense_packed(input, &self.weight, &self.bias, rows)
        })?;
        Tensor::from_vec(out, out_dims, xs.device())
    }
}

/// A layer norm over the last dimension, `(x - mean) / sqrt(var + eps) * scale + offset`
/// (the offset optional), each row in one pass over its values on the CPU (candle's operations
/// elsewhere).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    scale: Tensor,
    offset: Option<Tensor>,
    eps: f32,
    /// The scale and the offset (empty without one), as the CPU kernel reads them.
    scale_values: Vec<f32>,
    offset_values: Vec<f32>,
}

impl LayerNorm {
    /// A layer norm from its scale (`[C]`), optional offset (`[C]`) and epsilon.
    pub fn new(scale: Tensor, offset: Option<Tensor>, eps: f64) -> candle_core::Result<Self> {
        let scale = scale.to_dtype(DType::F32)?;
        let scale_values = scale.flatten_all()?.to_vec1::<f32>()?;
        let offset = offset.map(|o| o.to_dtype(DType::F32)).transpose()?;
        let offset_values = match &offset {
            Some(o) => o.flatten_all()?.to_vec1::<f32>()?,
            None => Vec::new(),
        };
        if !offset_values.is_empty() && offset_values.len() != scale_values.len() {
            candle_core::bail!(
                "layer norm offset has {} values, its scale {}",
                offset_values.len(),
                scale_values.len()
            );
        }
        Ok(Self {
            scale,
            offset,
            eps: eps as f32,
            scale_values,
            offset_values,
        })
    }
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let c = self.scale_values.len();
        if xs.dims().last() != Some(&c) {
            candle_core::bail!("layer norm over {c} values got a {:?} tensor", xs.dims());
        }
        if !xs.device().is_cpu() {
            let mean = xs.mean_keepdim(D::Minus1)?;
            let centred = xs.broadcast_sub(&mean)?;
            let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
            let normed = centred.broadcast_div(&(var + self.eps as f64)?.sqrt()?)?;
            let ys = normed.broadcast_mul(&self.scale)?;
            return match &self.offset {
                Some(o) => ys.broadcast_add(o),
                None => Ok(ys),
            };
        }
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let out = with_f32_slice(&xs, |values| {
            kernels::layer_norm(values, &self.scale_values, &self.offset_values, self.eps)
        })?;
        Tensor::from_vec(out, xs.shape(), xs.device())
    }
}

/// Bilinear resampling of an NCHW tensor to `height` x `width` with half-pixel centres
/// (PyTorch's `align_corners=False`, candle's `upsample_bilinear2d(h, w, false)`): on the CPU
/// in two passes over each plane (rows, then columns) in `f32`, instead of candle's four
/// gathers per output in `f64`; candle's operation elsewhere.
pub fn resize_bilinear(xs: &Tensor, height: usize, width: usize) -> candle_core::Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    if h == 0 || w == 0 || height == 0 || width == 0 {
        candle_core::bail!("cannot resize a {h}x{w} plane to {height}x{width}");
    }
    if !xs.device().is_cpu() {
        return xs.upsample_bilinear2d(height, width, false);
    }
    let xs = xs.to_dtype(DType::F32)?.contiguous()?;
    let planes = (
        kernels::PlaneRows::new((h, w), false),
        kernels::PlaneRows::new((height, width), false),
    );
    let out = with_f32_slice(&xs, |values| {
        kernels::resize_bilinear(values, n * c, planes)
    })?;
    Tensor::from_vec(out, (n, c, height, width), xs.device())
}

/// [`resize_bilinear`] of bordered activations, bordered (for layers on [`Bordered`]
/// activations before and after it): on the CPU the resize reads the input's rows in place and
/// writes the bordered layout as it goes, with no copy to convert either. Errors as
/// `resize_bilinear` does.
pub fn resize_bilinear_bordered(
    xs: &Bordered,
    height: usize,
    width: usize,
) -> candle_core::Result<Bordered> {
    let (n, c, h, w) = xs.dims;
    if height == 0 || width == 0 || !xs.on_cpu() {
        return Bordered::new(&resize_bilinear(&xs.to_tensor()?, height, width)?);
    }
    let planes = (
        kernels::PlaneRows::new((h, w), true),
        kernels::PlaneRows::new((height, width), true),
    );
    let out = with_f32_slice(&xs.values, |values| {
        kernels::resize_bilinear(values, n * c, planes)
    })?;
    Bordered::from_values(out, (n, c, height, width), xs.values.device())
}

/// The kind of a [`Pool2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// The window's maximum.
    Max,
    /// The mean of the window's values inside the input (padding never counts).
    Average,
}

/// A max or average pooling layer over square windows, run by facecore's kernels on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    kind: PoolKind,
    kernel: usize,
    stride: usize,
    padding: Padding,
}

impl Pool2d {
    /// A `kernel` x `kernel` max pooling with `stride` and no padding.
    pub fn max(kernel: usize, stride: usize) -> Self {
        Self {
            kind: PoolKind::Max,
            kernel,
            stride,
            padding: Padding::Symmetric(0),
        }
    }

    /// A `kernel` x `kernel` average pooling with `stride` and no padding.
    pub fn average(kernel: usize, stride: usize) -> Self {
        Self {
            kind: PoolKind::Average,
            ..Self::max(kernel, stride)
        }
    }

    /// The same pooling with another padding (whose values never count).
    pub fn with_padding(self, padding: Padding) -> Self {
        Self { padding, ..self }
    }

    /// The pooling of bordered activations, bordered: a 2x2, stride-2 pooling without padding
    /// of even planes reads them in place; any other runs on a plain copy. Errors as
    /// [`forward`](Module::forward) does.
    pub fn forward_bordered(&self, xs: &Bordered) -> candle_core::Result<Bordered> {
        let (n, c, h, w) = xs.dims;
        match self.pool_in_place(xs, true)? {
            Some(out) => Bordered::from_values(out, (n, c, h / 2, w / 2), xs.values.device()),
            None => Bordered::new(&self.forward(&xs.to_tensor()?)?),
        }
    }

    /// The pooling of bordered activations, plain (`[N, C, OH, OW]`): read in place as by
    /// [`forward_bordered`](Self::forward_bordered), else from a plain copy. Errors as
    /// [`forward`](Module::forward) does.
    pub fn forward_from_bordered(&self, xs: &Bordered) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = xs.dims;
        match self.pool_in_place(xs, false)? {
            Some(out) => Tensor::from_vec(out, (n, c, h / 2, w / 2), xs.values.device()),
            None => self.forward(&xs.to_tensor()?),
        }
    }

    /// The values of a 2x2, stride-2 pooling of `xs` read in place, bordered when `bordered`,
    /// or `None` when it is another pooling or not on the CPU.
    fn pool_in_place(
        &self,
        xs: &Bordered,
        bordered: bool,
    ) -> candle_core::Result<Option<Vec<f32>>> {
        let (_, _, h, w) = xs.dims;
        if !xs.on_cpu() || !self.halves((h, w)) {
            return Ok(None);
        }
        let max = self.kind == PoolKind::Max;
        let shape = Bordered::shape_of(xs.dims);
        with_f32_slice(&xs.values, |input| {
            Some(kernels::pool_bordered(&shape, input, max, bordered))
        })
    }

    /// Whether this is a 2x2, stride-2 pooling without padding of an even `(height, width)`
    /// plane: each output from one 2x2 block of the input.
    fn halves(&self, (h, w): (usize, usize)) -> bool {
        let pads = self.padding.amounts((h, w), self.kernel, self.stride);
        let fits = self.kernel == 2 && self.stride == 2 && pads == (0, 0, 0, 0);
        fits && h.is_multiple_of(2) && w.is_multiple_of(2)
    }
}

impl Module for Pool2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = xs.dims4()?;
        let pads = self.padding.amounts((h, w), self.kernel, self.stride);
        let g = window_geometry("pooling", (n, c, h, w), self.kernel, self.stride, pads)?;
        if !xs.device().is_cpu() {
            if pads != (0, 0, 0, 0) {
                candle_core::bail!("padded pooling runs on the CPU only");
            }
            return match self.kind {
                PoolKind::Max => xs.max_pool2d_with_stride(self.kernel, self.stride),
                PoolKind::Average => xs.avg_pool2d_with_stride(self.kernel, self.stride),
            };
        }
        let xs = xs.to_dtype(DType::F32)?.contiguous()?;
        let out = with_f32_slice(&xs, |input| {
            kernels::pool(&g, input, self.kind == PoolKind::Max)
        })?;
        Tensor::from_vec(out, (n, c, g.out_height, g.out_width), xs.device())
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.run(xs, None)
    }
}

/// Runs `f` on the values of `t` (see [`with_f32_slice`]), or on `None` when there is no `t`.
fn with_optional_f32_slice<R>(
    t: Option<&Tensor>,
    f: impl FnOnce(Option<&[f32]>) -> R,
) -> candle_core::Result<R> {
    match t {
        Some(t) => with_f32_slice(t, |values| f(Some(values))),
        None => Ok(f(None)),
    }
}

/// Runs `f` on the values of a contiguous f32 CPU tensor, without copying them.
fn with_f32_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("kernel input is not contiguous".into()))?;
    match &*storage {
        Storage::Cpu(cpu) => {
            let values = cpu.as_slice::<f32>()?.get(start..end).ok_or_else(|| {
                candle_core::Error::Msg("tensor layout exceeds its storage".into())
            })?;
            Ok(f(values))
        }
        _ => candle_core::bail!("kernel input is not on the CPU"),
    }
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

    /// A 1x1 convolution of bordered activations with no input channels sums nothing: its
    /// outputs are its bias through the activation, with a zero border.
    #[test]
    fn a_pointwise_layer_without_inputs_gives_its_bias() {
        let dev = Device::Cpu;
        let w = Tensor::zeros((3, 0, 1, 1), DType::F32, &dev).unwrap();
        let b = Tensor::new(&[1f32, -2., 3.], &dev).unwrap();
        let spec = Conv2dSpec::new(0, 3, 1, 1);
        let conv = Conv2d::from_tensors(w, Some(b), spec, Activation::Relu).unwrap();
        let xs = Bordered::new(&Tensor::zeros((1, 0, 4, 5), DType::F32, &dev).unwrap()).unwrap();
        let ys = conv.forward_bordered(&xs).unwrap().to_tensor().unwrap();
        let want = Tensor::new(&[1f32, 0., 3.], &dev)
            .unwrap()
            .reshape((1, 3, 1, 1))
            .unwrap()
            .broadcast_as((1, 3, 4, 5))
            .unwrap();
        assert_eq!(max_abs_diff(&ys, &want), 0.);
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

    /// A separable layer's two convolutions: depthwise `c` channels, pointwise `c → o`.
    fn separable_pair(c: usize, o: usize, act: Activation) -> (Conv2d, Conv2d) {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let dw_spec = Conv2dSpec::depthwise(c, 3, 1).with_padding(Padding::Same);
        // The depthwise layer takes the same activation unless it has per-channel slopes.
        let dw_act = match act {
            Activation::PRelu(_) => Activation::Identity,
            _ => act.clone(),
        };
        let dw = Conv2d::from_tensors(r(&[c, 1, 3, 3]), Some(r(&[c])), dw_spec, dw_act);
        let pw_spec = Conv2dSpec::new(c, o, 1, 1);
        let pw = Conv2d::from_tensors(r(&[o, c, 1, 1]), Some(r(&[o])), pw_spec, act);
        (dw.unwrap(), pw.unwrap())
    }

    #[test]
    fn separable_matches_its_two_convolutions() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let slopes = |o: usize| Activation::PRelu(r(&[o]).affine(0.1, 0.).unwrap());
        // Single pixels, one row, two columns, odd sizes, several tiles (64 x 64), a batch, a
        // residual with fewer channels than the output.
        for (n, c, o, (h, w), rc, act) in [
            (1, 3, 5, (1, 1), 0, Activation::Relu),
            (1, 4, 4, (1, 9), 4, Activation::Identity),
            (2, 4, 6, (5, 2), 4, slopes(6)),
            (1, 16, 24, (17, 30), 16, Activation::Relu),
            (1, 24, 28, (64, 64), 24, Activation::Relu),
            (3, 8, 8, (33, 13), 0, slopes(8)),
        ] {
            let (dw, pw) = separable_pair(c, o, act);
            let xs = r(&[n, c, h, w]);
            let residual = (rc > 0).then(|| r(&[n, rc, h, w]));
            let layer = Separable::new(dw.clone(), pw.clone()).unwrap();
            let bordered = residual.as_ref().map(|t| Bordered::new(t).unwrap());
            let got = layer
                .forward(&Bordered::new(&xs).unwrap(), bordered.as_ref())
                .unwrap();
            let ys = dw.forward(&xs).unwrap();
            let want = match &residual {
                Some(t) => pw.forward_add(&ys, Residual::BeforeActivation(t)).unwrap(),
                None => pw.forward(&ys).unwrap(),
            };
            let shape = (n, c, h, w);
            let err = relative_error(&got.to_tensor().unwrap(), &want);
            assert!(err < 1e-5, "{shape:?}: {err}");
            // The border is zero, as a fresh copy of the output has it.
            let fresh = Bordered::new(&want).unwrap();
            let err = relative_error(&got.values, &fresh.values);
            assert!(err < 1e-5, "{shape:?} bordered: {err}");
            // A 1x1 convolution on bordered activations keeps the border zero.
            let expand = Conv2d::from_tensors(
                r(&[o, c, 1, 1]),
                Some(r(&[o])),
                Conv2dSpec::new(c, o, 1, 1),
                slopes(o),
            )
            .unwrap();
            let got = expand
                .forward_bordered(&Bordered::new(&xs).unwrap())
                .unwrap();
            let want = Bordered::new(&expand.forward(&xs).unwrap()).unwrap();
            let err = relative_error(&got.values, &want.values);
            assert!(err < 1e-5, "{shape:?} 1x1 bordered: {err}");
            let plain = Activations::Bordered(got).into_plain().unwrap();
            let err = relative_error(&plain, &expand.forward(&xs).unwrap());
            assert!(err < 1e-5, "{shape:?} 1x1 bordered, plain: {err}");
        }
    }

    #[test]
    fn separable_rejects_what_it_does_not_run() {
        let (dw, pw) = separable_pair(4, 6, Activation::Relu);
        let strided = Conv2d::from_tensors(
            dw.weight.clone(),
            None,
            Conv2dSpec::depthwise(4, 3, 2).with_padding(Padding::Same),
            Activation::Identity,
        )
        .unwrap();
        assert!(Separable::new(strided, pw.clone()).is_err());
        assert!(Separable::new(pw.clone(), pw.clone()).is_err());
        assert!(Separable::new(dw.clone(), dw.clone()).is_err());
        let layer = Separable::new(dw, pw).unwrap();
        let dev = Device::Cpu;
        let bordered = |shape: (usize, usize, usize, usize)| {
            Bordered::new(&Tensor::zeros(shape, DType::F32, &dev).unwrap()).unwrap()
        };
        let xs = bordered((1, 4, 5, 5));
        assert!(layer.forward(&bordered((1, 3, 5, 5)), None).is_err());
        assert!(layer.forward(&xs, Some(&bordered((1, 7, 5, 5)))).is_err());
        assert!(layer.forward(&xs, Some(&bordered((1, 4, 5, 6)))).is_err());
        assert!(layer.forward(&xs, Some(&bordered((2, 4, 5, 5)))).is_err());
        assert!(layer.forward(&xs, Some(&bordered((1, 4, 5, 5)))).is_ok());
        assert!(layer.pointwise.forward_bordered(&xs).is_ok());
        assert!(layer
            .depthwise
            .forward_bordered(&bordered((1, 3, 5, 5)))
            .is_err());
        assert!(layer
            .pointwise
            .forward_bordered(&bordered((1, 6, 5, 5)))
            .is_err());
        let empty = Tensor::zeros((1, 4, 0, 5), DType::F32, &dev).unwrap();
        assert!(Bordered::new(&empty).is_err());
    }

    #[test]
    fn bordered_layers_match_plain_ones() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let conv = |c: usize, o: usize, k: usize, stride: usize, padding: Padding| {
            let spec = Conv2dSpec::new(c, o, k, stride).with_padding(padding);
            Conv2d::from_tensors(r(&[o, c, k, k]), Some(r(&[o])), spec, Activation::Relu).unwrap()
        };
        // The direct 3x3 kernel in place: one group and a partial one, planes whose last
        // block reads inside them (widths from 14 up, with the run's tail in the bottom
        // border) and narrower ones (which run on a plain copy), a batch, one pixel, odd
        // sizes; then convolutions of other geometries, which run on a plain copy.
        let same = Padding::Same;
        let convs = [
            ((1, 3, 32, 32), conv(3, 12, 3, 1, same)),
            ((2, 16, 16, 16), conv(16, 8, 3, 1, Padding::Symmetric(1))),
            ((1, 5, 9, 14), conv(5, 7, 3, 1, same)),
            ((3, 4, 7, 31), conv(4, 9, 3, 1, same)),
            ((1, 4, 5, 5), conv(4, 4, 3, 1, same)),
            ((1, 2, 1, 1), conv(2, 3, 3, 1, same)),
            ((1, 4, 12, 12), conv(4, 6, 3, 2, same)),
            ((1, 4, 12, 12), conv(4, 6, 5, 1, same)),
            ((1, 4, 12, 12), conv(4, 6, 3, 1, Padding::Symmetric(0))),
        ];
        for (shape, conv) in &convs {
            let (n, c, h, w) = *shape;
            let xs = r(&[n, c, h, w]);
            let got = conv.forward_bordered(&Bordered::new(&xs).unwrap()).unwrap();
            let want = conv.forward(&xs).unwrap();
            let err = relative_error(&got.to_tensor().unwrap(), &want);
            assert!(err < 1e-5, "{shape:?} {:?}: {err}", conv.spec());
            // The border is zero, as a fresh copy of the output has it.
            let err = relative_error(&got.values, &Bordered::new(&want).unwrap().values);
            assert!(err < 1e-5, "{shape:?} {:?} bordered: {err}", conv.spec());
        }
        // Pooling in place (2x2, stride 2, even planes) and on a plain copy (others).
        let pools = [
            ((2, 3, 8, 6), Pool2d::average(2, 2)),
            ((1, 2, 4, 32), Pool2d::max(2, 2)),
            ((1, 2, 5, 6), Pool2d::average(2, 2)),
            ((1, 2, 6, 6), Pool2d::max(3, 2).with_padding(same)),
        ];
        for (shape, pool) in pools {
            let (n, c, h, w) = shape;
            let xs = r(&[n, c, h, w]);
            let got = pool.forward_bordered(&Bordered::new(&xs).unwrap()).unwrap();
            let want = Bordered::new(&pool.forward(&xs).unwrap()).unwrap();
            assert_eq!(got.dims4(), want.dims4(), "{shape:?} {pool:?}");
            let err = relative_error(&got.values, &want.values);
            assert!(err < 1e-6, "{shape:?} {pool:?}: {err}");
        }
    }

    #[test]
    fn pyramid_layers_on_bordered_activations_match_plain_ones() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let slopes = |o: usize| Activation::PRelu(r(&[o]).affine(0.1, 0.).unwrap());
        let conv = |c: usize, o: usize, k: usize, act: Activation| {
            let spec = Conv2dSpec::new(c, o, k, 1).with_padding(Padding::Same);
            Conv2d::from_tensors(r(&[o, c, k, k]), Some(r(&[o])), spec, act).unwrap()
        };
        // 1x1 convolutions (BlazeFace's lateral and head layers: one pixel, one row, odd
        // sizes, a batch, one output channel, per-channel slopes), then a 3x3 one, which runs
        // on plain copies; residuals before and after the activation, one with fewer channels.
        let cases = [
            ((1, 3, 1, 1), conv(3, 5, 1, Activation::Relu)),
            ((1, 4, 1, 9), conv(4, 1, 1, Activation::Identity)),
            ((2, 6, 7, 5), conv(6, 16, 1, slopes(16))),
            ((1, 64, 48, 48), conv(64, 48, 1, Activation::Relu)),
            ((1, 4, 6, 7), conv(4, 6, 3, Activation::Relu)),
        ];
        for ((n, c, h, w), conv) in &cases {
            let (n, c, h, w) = (*n, *c, *h, *w);
            let o = conv.spec().out_channels;
            let xs = r(&[n, c, h, w]);
            let bordered = Bordered::new(&xs).unwrap();
            let name = format!("{:?} on {:?}", conv.spec(), xs.dims());
            for rc in [o, o.div_ceil(2)] {
                let top = r(&[n, rc, h, w]);
                let top_bordered = Bordered::new(&top).unwrap();
                for after in [false, true] {
                    let (plain, residual) = match after {
                        true => (
                            Residual::AfterActivation(&top),
                            Residual::AfterActivation(&top_bordered),
                        ),
                        false => (
                            Residual::BeforeActivation(&top),
                            Residual::BeforeActivation(&top_bordered),
                        ),
                    };
                    let got = conv.forward_bordered_add(&bordered, residual).unwrap();
                    let want = Bordered::new(&conv.forward_add(&xs, plain).unwrap()).unwrap();
                    assert_eq!(got.dims4(), want.dims4(), "{name}");
                    // The border is zero, as a fresh copy of the output has it.
                    let err = relative_error(&got.values, &want.values);
                    assert!(err < 1e-5, "{name}, residual of {rc}, after {after}: {err}");
                }
            }
            let got = conv.forward_channels_last(&bordered).unwrap();
            let want = conv.forward(&xs).unwrap().permute((0, 2, 3, 1)).unwrap();
            assert_eq!(got.dims(), [n, h, w, o], "{name}");
            let err = relative_error(&got, &want.contiguous().unwrap());
            assert!(err < 1e-5, "{name} channels last: {err}");
            // Misfits: input channels, a residual's channels, sides or batch.
            let wrong = Bordered::new(&r(&[n, c + 1, h, w])).unwrap();
            assert!(conv.forward_channels_last(&wrong).is_err(), "{name}");
            for shape in [[n, o + 1, h, w], [n, o, h + 1, w], [n + 1, o, h, w]] {
                let misfit = Bordered::new(&r(&shape)).unwrap();
                let residual = Residual::AfterActivation(&misfit);
                assert!(conv.forward_bordered_add(&bordered, residual).is_err());
                assert!(conv.forward_bordered_add(&wrong, residual).is_err());
            }
        }
        // The resize of bordered input writes its bordered output exactly as a copy of the
        // plain one holds it: 2x upsamplings (BlazeFace's pyramid), other ratios, one pixel.
        for ((n, c, h, w), (oh, ow)) in [
            ((1, 96, 6, 6), (12, 12)),
            ((2, 3, 24, 24), (48, 48)),
            ((1, 2, 5, 7), (3, 11)),
            ((1, 1, 1, 1), (2, 3)),
        ] {
            let xs = r(&[n, c, h, w]);
            let got = resize_bilinear_bordered(&Bordered::new(&xs).unwrap(), oh, ow).unwrap();
            let want = Bordered::new(&resize_bilinear(&xs, oh, ow).unwrap()).unwrap();
            assert_eq!(got.dims4(), want.dims4());
            assert_eq!(
                bits(&got.values),
                bits(&want.values),
                "{h}x{w} to {oh}x{ow}"
            );
        }
        let xs = Bordered::new(&r(&[1, 2, 3, 3])).unwrap();
        assert!(resize_bilinear_bordered(&xs, 0, 4).is_err());
        assert!(resize_bilinear_bordered(&xs, 2, 0).is_err());
    }

    #[test]
    fn halving_layers_read_bordered_planes_as_plain_ones_compute() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let depthwise = |c: usize, k: usize, stride: usize, act: Activation| {
            let spec = Conv2dSpec::depthwise(c, k, stride).with_padding(Padding::Same);
            Conv2d::from_tensors(r(&[c, 1, k, k]), Some(r(&[c])), spec, act).unwrap()
        };
        // In place: the 3x3 stride-2 depthwise of even planes (one row per run at 98 wide,
        // with a 64- and a 16-block and single outputs; several rows per run, their last run
        // shorter, on narrower planes; a batch; one 2x2 plane) and the 2x2 pooling;
        // on a plain copy: odd planes, other strides and kernels, a dense convolution.
        let relu = Activation::Relu;
        let cases = [
            ((1, 3, 96, 98), depthwise(3, 3, 2, Activation::Identity)),
            ((1, 4, 48, 48), depthwise(4, 3, 2, relu.clone())),
            ((1, 2, 14, 24), depthwise(2, 3, 2, relu.clone())),
            ((2, 5, 12, 6), depthwise(5, 3, 2, relu.clone())),
            ((1, 2, 2, 2), depthwise(2, 3, 2, Activation::Relu6)),
            ((1, 4, 7, 6), depthwise(4, 3, 2, relu.clone())),
            ((1, 4, 8, 8), depthwise(4, 3, 1, relu.clone())),
            ((1, 4, 8, 8), depthwise(4, 5, 2, relu.clone())),
            (
                (1, 4, 8, 8),
                Conv2d::from_tensors(
                    r(&[6, 4, 3, 3]),
                    None,
                    Conv2dSpec::new(4, 6, 3, 2).with_padding(Padding::Same),
                    relu,
                )
                .unwrap(),
            ),
        ];
        for ((n, c, h, w), conv) in &cases {
            let xs = r(&[*n, *c, *h, *w]);
            let bordered = Bordered::new(&xs).unwrap();
            let got = conv.forward_from_bordered(&bordered).unwrap();
            let want = conv.forward(&xs).unwrap();
            assert_eq!(got.dims(), want.dims(), "{:?}", conv.spec());
            assert_eq!(
                bits(&got),
                bits(&want),
                "{:?} on {:?}",
                conv.spec(),
                xs.dims()
            );
            // Bordered, as a copy of the plain output holds it (the border included).
            let got = conv.forward_bordered(&bordered).unwrap();
            let want = Bordered::new(&want).unwrap();
            assert_eq!(got.dims4(), want.dims4(), "{:?}", conv.spec());
            assert_eq!(bits(&got.values), bits(&want.values), "{:?}", conv.spec());
            for pool in [Pool2d::max(2, 2), Pool2d::average(2, 2)] {
                let got = pool.forward_from_bordered(&bordered).unwrap();
                let want = pool.forward(&xs).unwrap();
                assert_eq!(bits(&got), bits(&want), "{pool:?} on {:?}", xs.dims());
            }
        }
        let wrong = Bordered::new(&r(&[1, 3, 8, 8])).unwrap();
        assert!(cases[3].1.forward_from_bordered(&wrong).is_err());
        assert!(cases[3].1.forward_bordered(&wrong).is_err());
    }

    #[test]
    fn convolutions_write_bordered_outputs_as_a_copy_would_hold_them() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let conv = |c: usize, o: usize, k: usize, stride: usize| {
            let spec = Conv2dSpec::new(c, o, k, stride).with_padding(Padding::Same);
            Conv2d::from_tensors(r(&[o, c, k, k]), Some(r(&[o])), spec, Activation::Relu).unwrap()
        };
        // The stems on the direct kernel (BlazeFace's 3x3 and 5x5, stride 2; odd sizes, a
        // group and a partial one, a batch), then convolutions that run on a plain copy (a
        // 1x1, a depthwise one, a plane too small for the direct kernel).
        let cases = [
            ((1, 3, 192, 192), conv(3, 32, 3, 2)),
            ((2, 3, 31, 20), conv(3, 12, 5, 2)),
            ((1, 4, 9, 7), conv(4, 9, 3, 1)),
            ((1, 4, 9, 7), conv(4, 6, 1, 1)),
            ((1, 2, 2, 2), conv(2, 3, 3, 1)),
            (
                (1, 5, 8, 8),
                Conv2d::from_tensors(
                    r(&[5, 1, 3, 3]),
                    None,
                    Conv2dSpec::depthwise(5, 3, 1).with_padding(Padding::Same),
                    Activation::Identity,
                )
                .unwrap(),
            ),
        ];
        for ((n, c, h, w), conv) in &cases {
            let xs = r(&[*n, *c, *h, *w]);
            let got = conv.forward_to_bordered(&xs).unwrap();
            let want = Bordered::new(&conv.forward(&xs).unwrap()).unwrap();
            assert_eq!(got.dims4(), want.dims4(), "{:?}", conv.spec());
            assert_eq!(
                max_abs_diff(&got.values, &want.values),
                0.,
                "{:?}",
                conv.spec()
            );
        }
        assert!(cases[0].1.forward_to_bordered(&r(&[1, 4, 8, 8])).is_err());
    }

    /// The bits of `t`'s values, for comparisons that must be exact.
    fn bits(t: &Tensor) -> Vec<u32> {
        let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        values.into_iter().map(f32::to_bits).collect()
    }

    /// Candle's own convolution with the bias and activation applied by candle ops.
    fn candle_reference(conv: &Conv2d, xs: &Tensor) -> Tensor {
        let (h, w) = (xs.dim(2).unwrap(), xs.dim(3).unwrap());
        conv.forward_candle(xs, conv.padding(h, w), None).unwrap()
    }

    /// `err / max(1, max |want|)`: the error relative to the output's scale.
    fn relative_error(got: &Tensor, want: &Tensor) -> f32 {
        let scale: f32 = want
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        max_abs_diff(got, want) / scale.max(1.)
    }

    #[test]
    fn kernels_match_candle_convolution() {
        let dev = Device::Cpu;
        // (batch, in, out, groups, height, width, kernel, stride)
        let shapes = [
            (1, 3, 8, 1, 17, 13, 3, 2),
            (2, 5, 7, 1, 9, 11, 3, 1),
            (1, 4, 6, 1, 12, 12, 1, 1),
            (3, 6, 4, 1, 7, 9, 1, 2),
            (1, 3, 16, 1, 23, 19, 7, 2),
            (2, 8, 8, 1, 10, 7, 5, 1),
            (1, 32, 32, 1, 20, 20, 3, 1),
            (2, 8, 12, 4, 9, 9, 3, 1),
            (1, 6, 6, 2, 11, 8, 3, 2),
            (2, 12, 6, 3, 6, 5, 1, 1),
            (1, 3, 3, 3, 7, 9, 3, 1),
            (2, 4, 4, 4, 8, 8, 3, 2),
            (1, 5, 5, 5, 11, 6, 5, 2),
            (1, 2, 2, 2, 1, 1, 3, 1),
            (3, 8, 8, 8, 13, 13, 7, 1),
            (1, 4, 4, 4, 9, 10, 6, 1),
            // Larger than the depthwise kernel takes: a grouped convolution.
            (1, 3, 3, 3, 12, 11, 9, 1),
            (1, 4, 4, 4, 5, 93, 3, 1),
            (1, 3, 3, 3, 6, 190, 5, 2),
            (1, 2, 2, 2, 5, 1, 3, 3),
            (2, 3, 5, 1, 4, 2, 3, 3),
        ];
        let activations = |c: usize| {
            [
                Activation::Identity,
                Activation::Relu,
                Activation::Relu6,
                Activation::LeakyRelu(0.1),
                Activation::PRelu(Tensor::randn(0f32, 1., c, &dev).unwrap()),
                Activation::Sigmoid,
            ]
        };
        for (i, (n, cin, cout, groups, h, w, k, stride)) in shapes.into_iter().enumerate() {
            let xs = Tensor::randn(0f32, 1., (n, cin, h, w), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1., (cout, cin / groups, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., cout, &dev).unwrap();
            for padding in [
                Padding::Symmetric(k / 2),
                Padding::Symmetric(0),
                Padding::Symmetric(k),
                Padding::Same,
            ] {
                if padding == Padding::Symmetric(0) && (h < k || w < k) {
                    continue;
                }
                let spec = Conv2dSpec {
                    in_channels: cin,
                    out_channels: cout,
                    kernel: k,
                    stride,
                    padding,
                    groups,
                };
                let activation = activations(cout)[i % 6].clone();
                let bias = (i % 2 == 0).then(|| bias.clone());
                let conv = Conv2d::from_tensors(wt.clone(), bias, spec, activation).unwrap();
                let got = conv.forward(&xs).unwrap();
                let want = candle_reference(&conv, &xs);
                let err = relative_error(&got, &want);
                assert!(err < 1e-5, "{spec:?} on {:?}: {err}", xs.dims());
            }
        }
    }

    #[test]
    fn dense_kxk_convolutions_take_the_direct_kernel_where_it_pays() {
        let dev = Device::Cpu;
        let conv = |cin: usize, cout: usize, k: usize, groups: usize| {
            let spec = Conv2dSpec {
                groups,
                ..Conv2dSpec::new(cin, cout, k, 1)
            };
            let w = Tensor::randn(0f32, 1., (cout, cin / groups, k, k), &dev).unwrap();
            Conv2d::from_tensors(w, None, spec, Activation::Identity).unwrap()
        };
        // Packed at load: dense kernels from 3x3 to 7x7 only.
        for (cin, cout, k, groups, packed) in [
            (4, 9, 3, 1, true),
            (3, 8, 7, 1, true),
            (4, 8, 1, 1, false),
            (4, 8, 2, 1, false),
            (4, 8, 9, 1, false),
            (4, 8, 3, 2, false),
            (4, 4, 3, 4, false),
        ] {
            let c = conv(cin, cout, k, groups);
            assert_eq!(c.direct.is_some(), packed, "{:?}", c.spec);
        }
        // Run on planes it computes with little waste; a plane of 2 x 2 or less goes to
        // `gemm`, as does a geometry that is not the packed weight's.
        let c = conv(4, 9, 3, 1);
        let direct = c.direct.as_ref().unwrap();
        let run = |(h, w): (usize, usize), channels: usize| {
            let g = Geometry::new((1, channels, h, w), 3, 1, (1, 1, 1, 1)).unwrap();
            let input = vec![1f32; channels * h * w];
            let layer = (&[][..], &Epilogue::Identity);
            kernels::conv2d_direct(&g, &input, direct, layer, None, false)
        };
        assert!(run((12, 12), 4).is_some());
        assert!(run((2, 2), 4).is_none());
        assert!(run((12, 12), 5).is_none());
    }

    #[test]
    fn winograd_matches_candle_convolution() {
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let conv = |c: usize, o: usize, activation: Activation| {
            let spec = Conv2dSpec::new(c, o, 3, 1);
            Conv2d::from_tensors(r(&[o, c, 3, 3]), Some(r(&[o])), spec, activation).unwrap()
        };
        let lanes = pulp::Arch::new().dispatch(kernels::Lanes);
        // Gender's two shapes; a partial group of outputs with one segment of tiles per row
        // and an odd number of segments in the block; several blocks, the last one of one
        // tile row; a batch; a per-channel activation.
        let cases = [
            ((1, 32, 32, 32), conv(32, 32, Activation::Relu)),
            ((1, 64, 16, 16), conv(64, 64, Activation::Relu)),
            ((1, 16, 10, 16), conv(16, 9, Activation::Relu6)),
            ((1, 16, 34, 16), conv(16, 8, Activation::Identity)),
            ((3, 24, 4, 32), conv(24, 17, Activation::PRelu(r(&[17])))),
        ];
        for ((n, c, h, w), conv) in &cases {
            let xs = r(&[*n, *c, *h, *w]);
            let bordered = Bordered::new(&xs).unwrap();
            let shape = Bordered::shape_of(bordered.dims);
            let weight = conv.winograd(&shape).unwrap();
            let run = |shape: &kernels::BorderedShape| {
                with_f32_slice(&bordered.values, |input| {
                    let (bias, epilogue) = (&conv.bias_values, &conv.epilogue);
                    kernels::conv2d_winograd_bordered(shape, input, weight, bias, epilogue, None)
                })
                .unwrap()
            };
            // Planes whose width is not a whole number of vectors go to the direct kernel.
            let taken = kernels::winograd_takes(*w, lanes);
            assert_eq!(run(&shape).is_some(), taken, "{:?}", (n, c, h, w));
            if !taken {
                continue;
            }
            let got = conv.forward_bordered(&bordered).unwrap();
            let want = candle_reference(conv, &xs);
            let err = relative_error(&got.to_tensor().unwrap(), &want);
            assert!(err < 1e-5, "{:?}: {err}", (n, c, h, w));
            let err = relative_error(&got.values, &Bordered::new(&want).unwrap().values);
            assert!(err < 1e-5, "{:?} bordered: {err}", (n, c, h, w));
            // Each 2x2 tile pooled as it is computed.
            for pool in [Pool2d::average(2, 2), Pool2d::max(2, 2)] {
                let got = conv.forward_bordered_pooled(&bordered, &pool).unwrap();
                let want = Bordered::new(&pool.forward(&want).unwrap()).unwrap();
                assert_eq!(got.dims4(), want.dims4());
                let err = relative_error(&got.values, &want.values);
                assert!(err < 1e-5, "{:?} {pool:?}: {err}", (n, c, h, w));
            }
            // Not for other channels, nor an odd height.
            let other = kernels::BorderedShape {
                channels: c + 1,
                ..shape
            };
            assert!(run(&other).is_none());
        }
        let odd = Bordered::new(&r(&[1, 16, 7, 16])).unwrap();
        let eight = conv(16, 8, Activation::Relu);
        assert!(eight.winograd(&Bordered::shape_of(odd.dims)).is_none());
        // Convolutions or poolings the fused layer does not take run one after the other.
        let xs = r(&[1, 16, 8, 16]);
        let bordered = Bordered::new(&xs).unwrap();
        for (conv, pool) in [
            (conv(8, 8, Activation::Relu), Pool2d::average(2, 2)),
            (conv(16, 8, Activation::Relu), Pool2d::max(3, 2)),
        ] {
            let xs = xs.narrow(1, 0, conv.spec().in_channels).unwrap();
            let bordered = Bordered::new(&xs).unwrap();
            let got = conv.forward_bordered_pooled(&bordered, &pool).unwrap();
            let want = pool.forward(&conv.forward(&xs).unwrap()).unwrap();
            let err = relative_error(&got.to_tensor().unwrap(), &want);
            assert!(err < 1e-5, "{:?} {pool:?}: {err}", conv.spec());
        }
        let wrong = conv(8, 8, Activation::Relu);
        assert!(wrong
            .forward_bordered_pooled(&bordered, &Pool2d::average(2, 2))
            .is_err());
        // Fewer than 16 input channels: the direct kernel, where it is faster.
        let few = Bordered::new(&r(&[1, 8, 16, 16])).unwrap();
        let narrow = conv(8, 8, Activation::Relu);
        assert!(narrow.winograd(&Bordered::shape_of(few.dims)).is_none());
        assert!(kernels::WinogradWeight::new(&[0.; 17], (2, 1)).is_none());
        assert!(kernels::WinogradWeight::new(&[], (0, 0)).is_none());
    }

    #[test]
    fn kernels_match_candle_on_every_small_geometry() {
        let dev = Device::Cpu;
        for stride in 1..=3 {
            for k in 1..=4 {
                for width in 1..=6 {
                    for pad in 0..=k {
                        if width + 2 * pad < k {
                            continue;
                        }
                        let xs = Tensor::randn(0f32, 1., (1, 2, 3 + pad, width), &dev).unwrap();
                        for groups in [1, 2] {
                            let wt = Tensor::randn(0f32, 1., (2, 2 / groups, k, k), &dev).unwrap();
                            let spec = Conv2dSpec {
                                groups,
                                ..Conv2dSpec::new(2, 2, k, stride)
                                    .with_padding(Padding::Symmetric(pad))
                            };
                            let conv =
                                Conv2d::from_tensors(wt, None, spec, Activation::Identity).unwrap();
                            let got = conv.forward(&xs);
                            if (3 + 2 * pad) < k {
                                assert!(got.is_err());
                                continue;
                            }
                            let err = relative_error(&got.unwrap(), &candle_reference(&conv, &xs));
                            assert!(err < 1e-5, "{spec:?} on {:?}: {err}", xs.dims());
                        }
                        if pad == 0 && width >= k && 3 >= k {
                            let got = Pool2d::max(k, stride).forward(&xs).unwrap();
                            let want = xs.max_pool2d_with_stride(k, stride).unwrap();
                            assert_eq!(max_abs_diff(&got, &want), 0.);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn residuals_match_candle_ops() {
        let dev = Device::Cpu;
        // (batch, in, out, groups, size, kernel, stride, residual channels)
        let shapes = [
            (1, 6, 10, 1, 9, 1, 1, 6),
            (2, 5, 7, 1, 8, 3, 2, 7),
            (1, 4, 4, 4, 7, 3, 1, 4),
            (2, 6, 6, 6, 10, 5, 2, 3),
            (1, 6, 8, 2, 6, 3, 1, 8),
            // The direct kernel: two groups of output channels, the second partial, and a
            // residual with fewer channels.
            (2, 6, 12, 1, 12, 3, 1, 5),
        ];
        for (i, (n, cin, cout, groups, size, k, stride, rc)) in shapes.into_iter().enumerate() {
            let xs = Tensor::randn(0f32, 1., (n, cin, size, size), &dev).unwrap();
            let wt = Tensor::randn(0f32, 1., (cout, cin / groups, k, k), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., cout, &dev).unwrap();
            let spec = Conv2dSpec {
                groups,
                ..Conv2dSpec::new(cin, cout, k, stride).with_padding(Padding::Same)
            };
            let activation = if i % 2 == 0 {
                Activation::Relu
            } else {
                Activation::PRelu(Tensor::randn(0f32, 1., cout, &dev).unwrap())
            };
            let conv = Conv2d::from_tensors(wt, Some(bias), spec, activation).unwrap();
            let out = size.div_ceil(stride);
            let r = Tensor::randn(0f32, 1., (n, rc, out, out), &dev).unwrap();
            for residual in [
                Residual::BeforeActivation(&r),
                Residual::AfterActivation(&r),
            ] {
                let got = conv.forward_add(&xs, residual).unwrap();
                let want = conv
                    .forward_candle(&xs, conv.padding(size, size), Some(residual))
                    .unwrap();
                let err = relative_error(&got, &want);
                assert!(err < 1e-5, "{spec:?} {residual:?}: {err}");
            }
            let wrong = Tensor::zeros((n, cout + 1, out, out), DType::F32, &dev).unwrap();
            assert!(conv
                .forward_add(&xs, Residual::BeforeActivation(&wrong))
                .is_err());
            let wrong = Tensor::zeros((n, rc, out + 1, out), DType::F32, &dev).unwrap();
            assert!(conv
                .forward_add(&xs, Residual::AfterActivation(&wrong))
                .is_err());
        }
    }

    #[test]
    fn dense_layers_match_candle() {
        let dev = Device::Cpu;
        for (shape, inputs, outputs, bias) in [
            // Single rows: fewer inputs than the row product's chains, whole vectors of
            // columns and a part of one, inputs past a whole number of chains.
            (vec![1, 7], 7, 3, true),
            (vec![1, 64], 64, 16, false),
            (vec![1, 4100], 4100, 40, true),
            (vec![4, 5, 16], 16, 9, false),
            (vec![2, 3, 64], 64, 130, true),
        ] {
            let xs = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (outputs, inputs), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1., outputs, &dev).unwrap());
            let ours = Linear::new(w.clone(), b.clone()).unwrap();
            let theirs = candle_nn::Linear::new(w, b);
            let err = relative_error(&ours.forward(&xs).unwrap(), &theirs.forward(&xs).unwrap());
            assert!(err < 1e-5, "{shape:?} -> {outputs}: {err}");
            let transposed = xs.transpose(0, 1).unwrap();
            if transposed.dims().last() == Some(&inputs) {
                let want = theirs.forward(&transposed.contiguous().unwrap()).unwrap();
                let err = relative_error(&ours.forward(&transposed).unwrap(), &want);
                assert!(err < 1e-5, "transposed {shape:?}: {err}");
            }
        }
        let ours = Linear::new(Tensor::zeros((3, 4), DType::F32, &dev).unwrap(), None).unwrap();
        assert!(ours
            .forward(&Tensor::zeros((2, 5), DType::F32, &dev).unwrap())
            .is_err());
        let bad_bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
        let weight = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        assert!(Linear::new(weight, Some(bad_bias)).is_err());
    }

    /// A layer with a pseudo-random int8 weight of `outputs x inputs` in blocks of `block`,
    /// and its weight dequantised here as a tensor.
    fn quantized_layer(
        (outputs, inputs, block): (usize, usize, usize),
        seed: u32,
        bias: Option<Vec<f32>>,
    ) -> (QuantizedLinear, Tensor) {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8 as i8
        };
        let values: Vec<i8> = (0..outputs * inputs).map(|_| next()).collect();
        let blocks = outputs * inputs / block;
        let zero_points: Vec<i8> = (0..blocks).map(|_| next()).collect();
        let scales: Vec<f32> = (0..blocks).map(|_| (next() as f32 + 130.) * 1e-4).collect();
        let dequantized: Vec<f32> = values
            .iter()
            .enumerate()
            .map(|(i, &q)| {
                let b = i / block;
                (q as f32 - zero_points[b] as f32) * scales[b]
            })
            .collect();
        let w = Tensor::from_vec(dequantized, (outputs, inputs), &Device::Cpu).unwrap();
        let quantization = (&scales[..], &zero_points[..], block);
        let layer = QuantizedLinear::new(&values, (outputs, inputs), quantization, bias).unwrap();
        (layer, w)
    }

    #[test]
    fn quantized_dense_layers_match_candle_on_the_dequantized_weight() {
        let dev = Device::Cpu;
        // Rows in tiles of 4 and 1, outputs in one panel of 16 or several with the last one
        // padded, blocks of whole 4-input steps and with a remainder.
        for (shape, outputs, block) in [
            (vec![1, 200], 10, 20),
            (vec![5, 40], 37, 8),
            (vec![9, 64], 8, 64),
            (vec![2, 3, 48], 5, 16),
            (vec![1, 5], 3, 5),
            (vec![6, 7], 1, 7),
        ] {
            let inputs = shape[shape.len() - 1];
            let bias = Tensor::randn(0f32, 1., outputs, &dev).unwrap();
            let shape_of_weight = (outputs, inputs, block);
            let (ours, w) = quantized_layer(shape_of_weight, 7, Some(bias.to_vec1().unwrap()));
            let theirs = candle_nn::Linear::new(w, Some(bias));
            let xs = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap();
            let got = ours.forward(&xs).unwrap();
            let err = relative_error(&got, &theirs.forward(&xs).unwrap());
            assert!(
                err < 1e-5,
                "{shape:?} -> {outputs}, blocks of {block}: {err}"
            );
        }
        let layer = |values: usize, scales: usize, block: usize, bias: usize| {
            let bias = (bias > 0).then(|| vec![0.; bias]);
            let quantization = (&vec![1.; scales][..], &vec![0; scales][..], block);
            QuantizedLinear::new(&vec![0; values], (3, 20), quantization, bias)
        };
        assert!(layer(60, 6, 10, 3).is_ok());
        assert!(layer(60, 6, 10, 0).is_ok());
        assert!(layer(60, 9, 7, 3).is_err(), "7 does not divide 20");
        assert!(layer(59, 6, 10, 3).is_err());
        assert!(layer(60, 5, 10, 3).is_err());
        assert!(layer(60, 6, 10, 4).is_err());
        assert!(layer(60, 6, 0, 3).is_err());
        let ok = layer(60, 6, 10, 3).unwrap();
        let wrong = Tensor::zeros((2, 21), DType::F32, &dev).unwrap();
        assert!(ok.forward(&wrong).is_err());
        let scalar = Tensor::new(1f32, &dev).unwrap();
        assert!(ok.forward(&scalar).is_err());
    }

    #[test]
    fn f16_dense_layers_match_candle_on_the_f32_weight() {
        let dev = Device::Cpu;
        // Outputs in one panel of 16 or several with the last one padded; inputs in whole
        // steps of 8 and with a remainder; FaceMesh's landmark head.
        for (shape, outputs) in [
            (vec![1, 512], 1434),
            (vec![5, 40], 37),
            (vec![2, 3, 48], 16),
            (vec![1, 5], 3),
            (vec![6, 7], 1),
        ] {
            let inputs = shape[shape.len() - 1];
            let w = Tensor::randn(0f32, 0.1, (outputs, inputs), &dev).unwrap();
            let w = w.to_dtype(DType::F16).unwrap();
            let bias = Tensor::randn(0f32, 1., outputs, &dev).unwrap();
            let ours = QuantizedLinear::from_f16(&w, Some(&bias)).unwrap();
            let theirs = candle_nn::Linear::new(w.to_dtype(DType::F32).unwrap(), Some(bias));
            let xs = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap();
            let err = relative_error(&ours.forward(&xs).unwrap(), &theirs.forward(&xs).unwrap());
            assert!(err < 1e-5, "{shape:?} -> {outputs}: {err}");
        }
        let w = Tensor::zeros((3, 20), DType::F16, &dev).unwrap();
        let upcast = (w.to_dtype(DType::F32).unwrap() + 0.5).unwrap();
        assert!(QuantizedLinear::from_f16(&upcast, None).is_ok());
        let inexact = (upcast + 1e-4).unwrap();
        let err = QuantizedLinear::from_f16(&inexact, None).unwrap_err();
        assert!(err.to_string().contains("at (0, 0)"), "{err}");
        let bad_bias = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(QuantizedLinear::from_f16(&w, Some(&bad_bias)).is_err());
        let ok = QuantizedLinear::from_f16(&w, None).unwrap();
        assert_eq!(ok.dims(), (3, 20));
        let wrong = Tensor::zeros((2, 21), DType::F32, &dev).unwrap();
        assert!(ok.forward(&wrong).is_err());
    }

    #[test]
    fn bilinear_resizing_matches_candle() {
        let dev = Device::Cpu;
        for ((n, c, h, w), (oh, ow)) in [
            ((1, 3, 6, 6), (12, 12)),
            ((2, 4, 12, 7), (24, 14)),
            ((1, 2, 5, 9), (13, 4)),
            ((1, 1, 1, 1), (3, 2)),
            ((1, 2, 8, 8), (8, 8)),
        ] {
            let xs = Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap();
            let got = resize_bilinear(&xs, oh, ow).unwrap();
            let want = xs.upsample_bilinear2d(oh, ow, false).unwrap();
            let err = relative_error(&got, &want);
            assert!(err < 1e-5, "{h}x{w} -> {oh}x{ow}: {err}");
        }
        let xs = Tensor::zeros((1, 1, 4, 4), DType::F32, &dev).unwrap();
        assert!(resize_bilinear(&xs, 0, 4).is_err());
        assert!(resize_bilinear(&xs.flatten_all().unwrap(), 2, 2).is_err());
    }

    #[test]
    fn layer_norms_match_candle() {
        let dev = Device::Cpu;
        for (shape, offset) in [(vec![1, 7], true), (vec![2, 97, 64], false)] {
            let c = *shape.last().unwrap();
            let xs = Tensor::randn(1f32, 3., shape.as_slice(), &dev).unwrap();
            let scale = Tensor::randn(0f32, 1., c, &dev).unwrap();
            let o = Tensor::randn(0f32, 1., c, &dev).unwrap();
            let zeros = o.zeros_like().unwrap();
            let want = if offset {
                candle_nn::LayerNorm::new(scale.clone(), o.clone(), 1e-5)
            } else {
                candle_nn::LayerNorm::new(scale.clone(), zeros, 1e-5)
            }
            .forward(&xs)
            .unwrap();
            let ours = LayerNorm::new(scale, offset.then_some(o), 1e-5).unwrap();
            let err = relative_error(&ours.forward(&xs).unwrap(), &want);
            assert!(err < 1e-5, "{shape:?}: {err}");
            let wrong = Tensor::zeros((2, c + 1), DType::F32, &dev).unwrap();
            assert!(ours.forward(&wrong).is_err());
        }
        let three = Tensor::ones(3, DType::F32, &dev).unwrap();
        let two = Tensor::ones(2, DType::F32, &dev).unwrap();
        assert!(LayerNorm::new(three, Some(two), 1e-5).is_err());
    }

    #[test]
    fn dense_columns_activations_and_residuals_match_candle() {
        let dev = Device::Cpu;
        for (shape, outputs, bias) in [
            (vec![1, 7, 1], 3, true),
            (vec![2, 16, 5], 9, false),
            (vec![3, 97, 64], 130, true),
        ] {
            let inputs = shape[1];
            let xs = Tensor::randn(0f32, 1., shape.as_slice(), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (outputs, inputs), &dev).unwrap();
            let b = bias.then(|| Tensor::randn(0f32, 1., outputs, &dev).unwrap());
            let theirs = candle_nn::Linear::new(w.clone(), b.clone());
            let ours = Linear::new(w, b)
                .unwrap()
                .with_activation(Activation::Relu)
                .unwrap();
            let rows = |t: &Tensor| t.transpose(1, 2).unwrap().contiguous().unwrap();
            let want = rows(&theirs.forward(&rows(&xs)).unwrap().relu().unwrap());
            let residual = Tensor::randn(0f32, 1., want.dims(), &dev).unwrap();
            let got = ours.forward_columns(&xs, None).unwrap();
            assert!(relative_error(&got, &want) < 1e-5, "{shape:?}");
            let got = ours.forward_columns(&xs, Some(&residual)).unwrap();
            let err = relative_error(&got, &(&want + &residual).unwrap());
            assert!(err < 1e-5, "{shape:?} with a residual: {err}");
            let flat = rows(&xs);
            let want = (theirs.forward(&flat).unwrap().relu().unwrap() + rows(&residual)).unwrap();
            let got = ours.forward_add(&flat, &rows(&residual)).unwrap();
            assert!(relative_error(&got, &want) < 1e-5, "{shape:?} rows");
            let wrong = Tensor::zeros((1, inputs + 1, 2), DType::F32, &dev).unwrap();
            assert!(ours.forward_columns(&wrong, None).is_err());
            assert!(ours.forward_add(&flat, &residual).is_err());
        }
        let w = Tensor::zeros((3, 4), DType::F32, &dev).unwrap();
        let slopes = Tensor::zeros(3, DType::F32, &dev).unwrap();
        let dense = Linear::new(w, None).unwrap();
        assert!(dense.with_activation(Activation::PRelu(slopes)).is_err());
    }

    #[test]
    fn pooling_matches_candle() {
        let dev = Device::Cpu;
        for (n, c, h, w, k, stride) in [
            (1, 3, 8, 8, 2, 2),
            (2, 4, 9, 7, 2, 2),
            (1, 2, 11, 13, 3, 2),
            (2, 3, 6, 6, 3, 1),
        ] {
            let xs = Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap();
            let max = Pool2d::max(k, stride).forward(&xs).unwrap();
            let want = xs.max_pool2d_with_stride(k, stride).unwrap();
            assert_eq!(max_abs_diff(&max, &want), 0.);
            let avg = Pool2d::average(k, stride).forward(&xs).unwrap();
            let want = xs.avg_pool2d_with_stride(k, stride).unwrap();
            assert!(max_abs_diff(&avg, &want) < 1e-6);
        }
        let tiny = Tensor::zeros((1, 1, 1, 1), DType::F32, &dev).unwrap();
        assert!(Pool2d::max(2, 2).forward(&tiny).is_err());
    }

    #[test]
    fn same_pooling_ignores_the_padding() {
        let xs = Tensor::new(&[[-1f32, -2.], [-3., -4.]], &Device::Cpu)
            .unwrap()
            .reshape((1, 1, 2, 2))
            .unwrap();
        let values = |kind: Pool2d| -> Vec<f32> {
            let p = kind.with_padding(Padding::Same).forward(&xs).unwrap();
            assert_eq!(p.dims(), &[1, 1, 1, 1]);
            p.flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(values(Pool2d::max(3, 2)), vec![-1.0]);
        assert_eq!(values(Pool2d::average(3, 2)), vec![-2.5]);
    }

    #[test]
    fn kernels_accept_strided_and_narrowed_inputs() {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 1., (2, 6, 9, 9), &dev).unwrap();
        let transposed = xs.transpose(2, 3).unwrap();
        let narrowed = xs.narrow(1, 1, 4).unwrap();
        for (xs, c) in [(transposed, 6), (narrowed, 4)] {
            let wt = Tensor::randn(0f32, 1., (3, c, 3, 3), &dev).unwrap();
            let conv =
                Conv2d::from_tensors(wt, None, Conv2dSpec::new(c, 3, 3, 1), Activation::Relu)
                    .unwrap();
            let err = relative_error(&conv.forward(&xs).unwrap(), &candle_reference(&conv, &xs));
            assert!(err < 1e-5, "{err}");
        }
    }

    #[test]
    fn kernels_reject_bad_shapes() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((4, 3, 5, 5), candle_core::DType::F32, &dev).unwrap();
        let spec = Conv2dSpec::new(3, 4, 5, 1).with_padding(Padding::Symmetric(0));
        let conv = Conv2d::from_tensors(wt, None, spec, Activation::Identity).unwrap();
        let small = Tensor::zeros((1, 3, 4, 9), candle_core::DType::F32, &dev).unwrap();
        assert!(conv.forward(&small).is_err());
        let channels = Tensor::zeros((1, 2, 9, 9), candle_core::DType::F32, &dev).unwrap();
        assert!(conv.forward(&channels).is_err());
        let empty = Tensor::zeros((1, 3, 0, 9), candle_core::DType::F32, &dev).unwrap();
        assert!(conv.forward(&empty).is_err());
        let none = Tensor::zeros((0, 3, 9, 9), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(conv.forward(&none).unwrap().dims(), &[0, 4, 5, 5]);
        let bad_groups = Conv2dSpec {
            groups: 2,
            ..Conv2dSpec::new(3, 4, 1, 1)
        };
        let wt = Tensor::zeros((4, 1, 1, 1), candle_core::DType::F32, &dev).unwrap();
        assert!(Conv2d::from_tensors(wt, None, bad_groups, Activation::Identity).is_err());
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

    #[test]
    fn activation_kernels_match_candle_ops() {
        let dev = Device::Cpu;
        let xs = Tensor::randn(0f32, 2., (2, 5, 3, 4), &dev).unwrap();
        let rows = Tensor::randn(0f32, 2., (3, 5), &dev).unwrap();
        let slope = Tensor::randn(0f32, 1., 5, &dev).unwrap();
        for a in [
            Activation::Relu,
            Activation::Relu6,
            Activation::LeakyRelu(0.2),
            Activation::PRelu(slope),
            Activation::Sigmoid,
        ] {
            let err = max_abs_diff(&a.apply(&xs).unwrap(), &a.apply_candle(&xs).unwrap());
            assert!(err < 1e-6, "{a:?}: {err}");
            let transposed = xs.transpose(2, 3).unwrap();
            let err = max_abs_diff(
                &a.apply(&transposed).unwrap(),
                &a.apply_candle(&transposed).unwrap(),
            );
            assert!(err < 1e-6, "{a:?} transposed: {err}");
            if !matches!(a, Activation::PRelu(_)) {
                let err = max_abs_diff(&a.apply(&rows).unwrap(), &a.apply_candle(&rows).unwrap());
                assert!(err < 1e-6, "{a:?} on rows: {err}");
            }
            let other = Tensor::randn(0f32, 2., (2, 5, 4, 3), &dev).unwrap();
            let want = a.apply_candle(&(&transposed + &other).unwrap()).unwrap();
            let err = max_abs_diff(&a.apply_sum(&transposed, &other).unwrap(), &want);
            assert!(err < 1e-6, "{a:?} of a sum: {err}");
        }
        let other = Tensor::zeros((2, 5, 4, 3), DType::F32, &dev).unwrap();
        assert!(Activation::Relu.apply_sum(&xs, &other).is_err());
    }

    #[test]
    fn kernels_on_a_team_match_one_thread() {
        use crate::threads::ThreadPool;
        let dev = Device::Cpu;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1., shape, &dev).unwrap();
        let conv = |cin: usize, cout: usize, k: usize, stride: usize, groups: usize| {
            let spec = Conv2dSpec {
                groups,
                ..Conv2dSpec::new(cin, cout, k, stride).with_padding(Padding::Same)
            };
            let w = r(&[cout, cin / groups, k, k]);
            Conv2d::from_tensors(w, Some(r(&[cout])), spec, Activation::Relu6).unwrap()
        };
        // Large enough that each layer splits on a team: products over several of its
        // threads' rows, planes over tasks, a batch by image.
        let xs = r(&[2, 32, 40, 40]);
        let (dense, strided) = (conv(32, 48, 3, 1, 1), conv(32, 48, 3, 2, 1));
        let (pointwise, depthwise, grouped) = (
            conv(32, 64, 1, 1, 1),
            conv(32, 32, 5, 2, 32),
            conv(32, 32, 3, 1, 4),
        );
        let one_image = xs.narrow(0, 0, 1).unwrap();
        let other = xs.sin().unwrap();
        let pool = Pool2d::max(3, 2).with_padding(Padding::Same);
        // Products of one row split by columns, of several rows wider than tall by column
        // blocks, of several rows no wider than tall by rows (2 + 2 + 1).
        let narrow = Linear::new(r(&[4, 10_000]), None).unwrap();
        let tall = r(&[5, 10_000]);
        let linear = Linear::new(r(&[500, 600]), Some(r(&[500]))).unwrap();
        let (row, rows) = (r(&[1, 600]), r(&[5, 600]));
        let (quantized, _) = quantized_layer((500, 600, 60), 3, None);
        let half_weight = Tensor::randn(0f32, 0.1, (500, 600), &dev).unwrap();
        let half_weight = half_weight.to_dtype(DType::F16).unwrap();
        let half = QuantizedLinear::from_f16(&half_weight, None).unwrap();
        let (dw, pw) = separable_pair(32, 48, Activation::Relu);
        let separable = Separable::new(dw, pw).unwrap();
        // An image that fits one tile splits by output channels (three groups of 128, 128 and
        // 126 here), its residual covering some of them.
        let (dw, pw) = separable_pair(96, 382, Activation::Relu);
        let small = Separable::new(dw, pw).unwrap();
        let small_input = Bordered::new(&r(&[1, 96, 6, 6])).unwrap();
        // A widening layer on small planes splits by output channels too, though it takes two
        // tiles; its residual covers some of them.
        let (dw, pw) = separable_pair(48, 200, Activation::Relu);
        let widening = Separable::new(dw, pw).unwrap();
        let (widening_input, widening_residual) = (
            Bordered::new(&r(&[1, 48, 20, 20])).unwrap(),
            Bordered::new(&r(&[1, 150, 20, 20])).unwrap(),
        );
        // One image in spans of values that end inside rows (384 + 384 + 379 of 37 x 31).
        let (dw, pw) = separable_pair(32, 24, Activation::Relu);
        let spans = Separable::new(dw, pw).unwrap();
        let spans_input = Bordered::new(&r(&[1, 32, 37, 29])).unwrap();
        let bordered = Bordered::new(&xs).unwrap();
        let one_bordered = Bordered::new(&one_image).unwrap();
        // Planes a whole number of vectors wide: Winograd's F(2x2, 3x3).
        let wide = Bordered::new(&r(&[2, 32, 20, 32])).unwrap();
        let one_wide = Bordered::new(&r(&[1, 32, 20, 32])).unwrap();
        let average = Pool2d::average(2, 2);
        type Layer<'a> = Box<dyn Fn() -> Tensor + Sync + 'a>;
        let layers: Vec<(&str, Layer)> = vec![
            ("3x3", Box::new(|| dense.forward(&xs).unwrap())),
            (
                "3x3 batch 1",
                Box::new(|| strided.forward(&one_image).unwrap()),
            ),
            ("1x1", Box::new(|| pointwise.forward(&xs).unwrap())),
            ("depthwise", Box::new(|| depthwise.forward(&xs).unwrap())),
            ("grouped", Box::new(|| grouped.forward(&xs).unwrap())),
            ("pool", Box::new(|| pool.forward(&xs).unwrap())),
            (
                "separable",
                Box::new(|| {
                    let ys = separable.forward(&bordered, Some(&bordered)).unwrap();
                    ys.to_tensor().unwrap()
                }),
            ),
            (
                "separable, one tile",
                Box::new(|| {
                    let ys = small.forward(&small_input, Some(&small_input)).unwrap();
                    ys.to_tensor().unwrap()
                }),
            ),
            (
                "separable, widening on small planes",
                Box::new(|| {
                    let ys = widening.forward(&widening_input, Some(&widening_residual));
                    ys.unwrap().to_tensor().unwrap()
                }),
            ),
            (
                "separable, spans inside rows",
                Box::new(|| spans.forward(&spans_input, None).unwrap().values),
            ),
            (
                "3x3 bordered",
                Box::new(|| dense.forward_bordered(&bordered).unwrap().values),
            ),
            (
                "3x3 bordered, batch 1",
                Box::new(|| dense.forward_bordered(&one_bordered).unwrap().values),
            ),
            (
                "3x3 Winograd",
                Box::new(|| dense.forward_bordered(&wide).unwrap().values),
            ),
            (
                "3x3 Winograd, batch 1",
                Box::new(|| dense.forward_bordered(&one_wide).unwrap().values),
            ),
            (
                "3x3 Winograd pooled, batch 1",
                Box::new(|| {
                    let ys = dense.forward_bordered_pooled(&one_wide, &average);
                    ys.unwrap().values
                }),
            ),
            (
                "pool bordered",
                Box::new(|| average.forward_bordered(&bordered).unwrap().values),
            ),
            ("resize", Box::new(|| resize_bilinear(&xs, 57, 31).unwrap())),
            (
                "resize bordered",
                Box::new(|| resize_bilinear_bordered(&bordered, 57, 31).unwrap().values),
            ),
            (
                "1x1 channels last",
                Box::new(|| pointwise.forward_channels_last(&bordered).unwrap()),
            ),
            (
                "1x1 channels last, batch 1",
                Box::new(|| pointwise.forward_channels_last(&one_bordered).unwrap()),
            ),
            (
                "1x1 bordered with a residual",
                Box::new(|| {
                    let residual = Residual::BeforeActivation(&bordered);
                    let ys = pointwise.forward_bordered_add(&bordered, residual);
                    ys.unwrap().values
                }),
            ),
            (
                "sum",
                Box::new(|| Activation::Relu.apply_sum(&xs, &other).unwrap()),
            ),
            ("dense row", Box::new(|| linear.forward(&row).unwrap())),
            ("dense rows", Box::new(|| linear.forward(&rows).unwrap())),
            ("dense narrow", Box::new(|| narrow.forward(&tall).unwrap())),
            (
                "quantized row",
                Box::new(|| quantized.forward(&row).unwrap()),
            ),
            (
                "quantized rows",
                Box::new(|| quantized.forward(&rows).unwrap()),
            ),
            ("f16 row", Box::new(|| half.forward(&row).unwrap())),
            ("f16 rows", Box::new(|| half.forward(&rows).unwrap())),
        ];
        let (one, team) = (ThreadPool::new(1).unwrap(), ThreadPool::new(3).unwrap());
        for (name, layer) in &layers {
            let want = one.install(layer);
            // Several runs: the helpers take different shares each time.
            for _ in 0..5 {
                let err = relative_error(&team.install(layer), &want);
                assert!(err < 1e-5, "{name}: {err}");
            }
        }
    }
}
