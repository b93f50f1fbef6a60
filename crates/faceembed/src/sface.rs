//! OpenCV's SFace face recogniser (`face_recognition_sface_2021dec_int8bq.onnx`, OpenCV model
//! zoo, Apache-2.0; Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
//! Recognition", 2021), ported from the int8 block-quantised ONNX file and numerically equal to
//! onnxruntime on it.
//!
//! The network ([`SFaceNet`], a [`Module`]) maps `N x 3 x 112 x 112` RGB values in `0..=255`
//! (the blob OpenCV's `FaceRecognizerSF::feature` makes: `blobFromImage(chip, 1, 112x112,
//! 0, swapRB=true)`) to `N x 128` raw features. [`SFace`] adds OpenCV's preprocessing:
//!
//! 1. alignment ([`align`]): the least-squares similarity (Umeyama, as OpenCV's
//!    `getSimilarityTransformMatrix`) from the face's five [`Keypoints5`] onto the ArcFace
//!    112x112 template [`ARCFACE_112`], then `warpAffine` to a 112x112 chip with bilinear
//!    interpolation and a black border ([`facecore::image::warp_affine`]);
//! 2. the chip as RGB `0..=255` floats, NCHW; the graph itself computes `(x - 127.5) / 128`;
//! 3. the raw feature L2-normalised into an [`Embedding`].
//!
//! OpenCV takes the points in YuNet's order (right eye, left eye, nose tip, right and left
//! mouth corners, "right" being the subject's), which is [`Keypoints5`]'s image-left-first order
//! on an unmirrored face: point 0 maps to the template point at x = 38.3.
//!
//! # Architecture
//!
//! MobileNet-v1 style, no residuals: a 3x3 convolution (3→32), then 13 pairs of a depthwise 3x3
//! and a pointwise 1x1 convolution (strides 2 at 112, 56, 28 and 14 pixels; 32→1024 channels),
//! each convolution followed by batch norm (folded) and PReLU; then batch norm, flatten
//! (1024x7x7), a fully connected layer to 128 and a last batch norm. Dropout is the identity at
//! inference.
//!
//! # Weights
//!
//! `weights/sface_int8bq.safetensors`, written by `tools/convert/sface.py` under the ONNX
//! initializers' names: float32 batch-norm statistics (`conv_1_batchnorm_gamma`, `_beta`,
//! `_moving_mean`, `_moving_var`), PReLU slopes (`conv_1_relu_gamma`), the input scalars
//! `scalar_op1`, `scalar_op2`; and every convolution kernel and the fully connected layer as
//! int8 with blocked scales: `W_quantized` (int8), `W_scales` (f32), `W_zero_point` (int8),
//! `W_shape` (int64). The convolutions' are dequantised at load exactly as the graph's
//! `DequantizeLinear` and `Reshape` do ([`dequantize_blocked`]), then batch norm is folded into
//! the kernels; the fully connected layer's (6.4M values, whose reads bound the network at
//! batch 1) stays int8, and its zero points and scales are applied to each block's sums as it
//! runs ([`facecore::layers::QuantizedLinear`]; the same products, grouped by block).

use std::borrow::Cow;
use std::collections::HashMap;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{BatchNorm, VarBuilder};
use facecore::geometry::{Affine2, Keypoints5, Point};
use facecore::image::{image_to_tensor, warp_affine, ChannelOrder, Normalization, Resize};
use facecore::layers::{Activation, Conv2d, Conv2dSpec, QuantizedLinear};
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;
use safetensors::{Dtype, SafeTensors};

use crate::embedding::{Embedding, EmbeddingModel};
use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "sface_int8bq.safetensors",
    embedded: include_bytes!("../../../weights/sface_int8bq.safetensors"),
};

/// Side of the square aligned chip, in pixels.
pub const INPUT_SIZE: u32 = 112;

/// Length of the embedding.
pub const EMBEDDING_DIM: usize = 128;

/// The ArcFace 5-point template in 112x112 chip pixels, in [`Keypoints5`] order
/// (OpenCV `modules/objdetect/src/face_recognize.cpp`, `getSimilarityTransformMatrix`).
pub const ARCFACE_112: [Point; 5] = [
    Point::new(38.2946, 51.6963),
    Point::new(73.5318, 51.5014),
    Point::new(56.0252, 71.7366),
    Point::new(41.5493, 92.3655),
    Point::new(70.7299, 92.2041),
];

/// Epsilon of the convolutions' batch norms (the ONNX graph's `BatchNormalization` nodes).
const CONV_BN_EPS: f64 = 1e-3;

/// Epsilon of `bn1` and `fc1` (the ONNX graph's last two `BatchNormalization` nodes).
const HEAD_BN_EPS: f64 = 2e-5;

/// Chips per forward pass in [`SFace::features`]; bounds the activations' memory.
const BATCH: usize = 16;

/// The 13 depthwise + pointwise pairs `conv_2` .. `conv_14`: input channels, output channels,
/// depthwise stride (the ONNX graph's `Conv` nodes).
const BLOCKS: [(usize, usize, usize); 13] = [
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 2),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
];

/// The map from image pixels to chip pixels that puts `face`'s keypoints on [`ARCFACE_112`].
pub fn alignment_transform(face: &Keypoints5) -> Result<Affine2> {
    Ok(Affine2::estimate_similarity(face.points(), &ARCFACE_112)?)
}

/// The 112x112 aligned chip of `face` (OpenCV's `FaceRecognizerSF::alignCrop`).
pub fn align(img: &RgbImage, face: &Keypoints5) -> Result<RgbImage> {
    let m = alignment_transform(face)?;
    Ok(warp_affine(img, &m, INPUT_SIZE, INPUT_SIZE)?)
}

/// Dequantises an int8 tensor with blocked scales and zero points, as ONNX `DequantizeLinear`:
/// `(q - zero_point) * scale`, where along every axis a block of `q_shape[a] / s_shape[a]`
/// consecutive values shares one scale and zero point (`block_size` on the quantised axis, 1 on
/// the others). `scales` and `zero_points` have shape `s_shape`, of the same rank as `q_shape`.
pub fn dequantize_blocked(
    q: &[i8],
    q_shape: &[usize],
    scales: &[f32],
    zero_points: &[i8],
    s_shape: &[usize],
) -> std::result::Result<Vec<f32>, String> {
    if q_shape.len() != s_shape.len() {
        return Err(format!(
            "scales of shape {s_shape:?} for values of shape {q_shape:?}"
        ));
    }
    let mut blocks = Vec::with_capacity(q_shape.len());
    for (&n, &s) in q_shape.iter().zip(s_shape) {
        if s == 0 || n % s != 0 {
            return Err(format!(
                "shape {q_shape:?} does not split into blocks of scales {s_shape:?}"
            ));
        }
        blocks.push(n / s);
    }
    let (n_q, n_s) = (
        q_shape.iter().product::<usize>(),
        s_shape.iter().product::<usize>(),
    );
    if q.len() != n_q || scales.len() != n_s || zero_points.len() != n_s {
        return Err(format!(
            "{} values, {} scales and {} zero points for shapes {q_shape:?} and {s_shape:?}",
            q.len(),
            scales.len(),
            zero_points.len()
        ));
    }
    let mut s_strides = vec![1; s_shape.len()];
    for a in (0..s_shape.len().saturating_sub(1)).rev() {
        s_strides[a] = s_strides[a + 1] * s_shape[a + 1];
    }
    let mut index = vec![0usize; q_shape.len()];
    let mut out = Vec::with_capacity(n_q);
    for &v in q {
        let s: usize = index
            .iter()
            .zip(&blocks)
            .zip(&s_strides)
            .map(|((i, b), st)| i / b * st)
            .sum();
        out.push((v as i32 - zero_points[s] as i32) as f32 * scales[s]);
        for a in (0..index.len()).rev() {
            index[a] += 1;
            if index[a] < q_shape[a] {
                break;
            }
            index[a] = 0;
        }
    }
    Ok(out)
}

/// The quantised weight kept as int8 and read so by [`QuantizedLinear`]: the fully connected
/// layer's, 6.4M values, whose f32 reads bound the network at batch 1. Every other quantised
/// tensor is dequantised at load.
const KEPT_QUANTIZED: &str = "pre_fc1_weight";

/// The weights file's tensors: as f32, every `W_quantized` group replaced by the dequantised,
/// reshaped `W`, except [`KEPT_QUANTIZED`], returned as the file holds it.
struct Tensors {
    floats: HashMap<String, Tensor>,
    pre_fc1_weight: Option<QuantizedMatrix>,
}

/// A quantised matrix as the file holds it: `(values, [rows, columns], scales, zero points,
/// scales' shape)`.
type QuantizedMatrix = (Vec<i8>, Vec<usize>, Vec<f32>, Vec<i8>, Vec<usize>);

/// Reads the weights file (see [`Tensors`]).
fn load_tensors(source: &WeightsSource, device: &Device) -> Result<Tensors> {
    let file = WEIGHTS.name;
    let bytes: Cow<[u8]> = match source {
        WeightsSource::Embedded => Cow::Borrowed(WEIGHTS.embedded),
        WeightsSource::Dir(dir) => {
            let path = dir.join(file);
            Cow::Owned(
                std::fs::read(&path)
                    .map_err(|source| facecore::Error::WeightsIo { path, source })?,
            )
        }
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| facecore::Error::WeightsCorrupt {
        file: file.to_string(),
        reason: e.to_string(),
    })?;
    let tensor_err = |tensor: &str, reason: String| facecore::Error::WeightsTensor {
        file: file.to_string(),
        tensor: tensor.to_string(),
        reason,
    };
    let view = |name: &str, dtype: Dtype| {
        let v = st
            .tensor(name)
            .map_err(|_| tensor_err(name, "missing".to_string()))?;
        if v.dtype() != dtype {
            return Err(tensor_err(
                name,
                format!("expected {dtype:?}, found {:?}", v.dtype()),
            ));
        }
        Ok(v)
    };
    let (mut out, mut pre_fc1_weight) = (HashMap::new(), None);
    for name in st.names() {
        if let Some(base) = name.strip_suffix("_quantized") {
            let q = view(name, Dtype::I8)?;
            let s = view(&format!("{base}_scales"), Dtype::F32)?;
            let z = view(&format!("{base}_zero_point"), Dtype::I8)?;
            let shape_name = format!("{base}_shape");
            let shape: Vec<usize> = view(&shape_name, Dtype::I64)?
                .data()
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .map(|d| usize::try_from(d).map_err(|_| tensor_err(&shape_name, format!("{d}"))))
                .collect::<std::result::Result<_, _>>()?;
            let i8s = |d: &[u8]| d.iter().map(|&b| b as i8).collect::<Vec<_>>();
            let (values, scales) = (i8s(q.data()), f32s(s.data()));
            if let Some(bad) = scales.iter().find(|v| !v.is_finite()) {
                return Err(tensor_err(name, format!("has a non-finite scale ({bad})")).into());
            }
            if base == KEPT_QUANTIZED {
                let matrix_of_rows = |dims: &[usize]| dims.len() == 2 && dims[0] == shape[0];
                if shape != q.shape() || !matrix_of_rows(&shape) || !matrix_of_rows(s.shape()) {
                    return Err(tensor_err(
                        name,
                        format!(
                            "a matrix of shape {shape:?} stored as {:?} with scales {:?}",
                            q.shape(),
                            s.shape()
                        ),
                    )
                    .into());
                }
                let matrix = (values, shape, scales, i8s(z.data()), s.shape().to_vec());
                pre_fc1_weight = Some(matrix);
                continue;
            }
            let values = dequantize_blocked(&values, q.shape(), &scales, &i8s(z.data()), s.shape())
                .map_err(|reason| tensor_err(name, reason))?;
            if values.len() != shape.iter().product::<usize>() {
                return Err(tensor_err(
                    name,
                    format!("{} values cannot take shape {shape:?}", values.len()),
                )
                .into());
            }
            out.insert(base.to_string(), (values, shape));
        } else {
            let v = st
                .tensor(name)
                .map_err(|e| tensor_err(name, e.to_string()))?;
            if v.dtype() == Dtype::F32 {
                out.insert(name.to_string(), (f32s(v.data()), v.shape().to_vec()));
            }
        }
    }
    let floats = out
        .into_iter()
        .map(|(name, (values, shape))| {
            if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
                return Err(tensor_err(&name, format!("holds a non-finite value ({bad})")).into());
            }
            let t = Tensor::from_vec(values, shape, device)?;
            Ok((name, t))
        })
        .collect::<Result<_>>()?;
    Ok(Tensors {
        floats,
        pre_fc1_weight,
    })
}

fn f32s(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The SFace network: `N x 3 x 112 x 112` RGB `0..=255` to `N x 128` raw features.
#[derive(Debug, Clone)]
pub struct SFaceNet {
    input_mean: Tensor,
    input_scale: Tensor,
    conv_1: Conv2d,
    blocks: Vec<(Conv2d, Conv2d)>,
    bn1: BatchNorm,
    pre_fc1: QuantizedLinear,
    fc1: BatchNorm,
}

/// A convolution (`<name>_conv2d_weight`), its batch norm (`<name>_batchnorm_*`) folded in, and
/// its PReLU (`<name>_relu_gamma`), under the ONNX names.
fn conv_bn_prelu(
    vb: &VarBuilder<'static>,
    name: &str,
    spec: Conv2dSpec,
) -> candle_core::Result<Conv2d> {
    let c = spec.out_channels;
    let slope = vb
        .get((c, 1, 1), &format!("{name}_relu_gamma"))?
        .flatten_all()?;
    Conv2d::load_bn(
        onnx_names(vb).pp(format!("{name}_conv2d")),
        mxnet_batch_norm(vb).pp(format!("{name}_batchnorm")),
        spec,
        CONV_BN_EPS,
        Activation::PRelu(slope),
    )
}

/// `a.weight` → `a_weight`: the ONNX file joins names with `_`.
fn onnx_names(vb: &VarBuilder<'static>) -> VarBuilder<'static> {
    vb.clone().rename_f(|name| name.replace('.', "_"))
}

/// PyTorch's batch-norm names (`weight`, `bias`, `running_mean`, `running_var`), which
/// [`Conv2d::load_bn`] and [`candle_nn::batch_norm`] ask for, to MXNet's (`gamma`, `beta`,
/// `moving_mean`, `moving_var`) as the ONNX file has them.
fn mxnet_batch_norm(vb: &VarBuilder<'static>) -> VarBuilder<'static> {
    vb.clone().rename_f(|name| match name.rsplit_once('.') {
        Some((prefix, leaf)) => {
            let leaf = match leaf {
                "weight" => "gamma",
                "bias" => "beta",
                "running_mean" => "moving_mean",
                "running_var" => "moving_var",
                other => other,
            };
            format!("{prefix}_{leaf}")
        }
        None => name.to_string(),
    })
}

impl SFaceNet {
    /// Builds the network from dequantised tensors under the ONNX initializers' names and the
    /// fully connected layer `pre_fc1` (1024 x 7 x 7 → 128, kept as int8 by [`SFace::load`]).
    pub fn new(vb: VarBuilder<'static>, pre_fc1: QuantizedLinear) -> candle_core::Result<Self> {
        let conv_1 = conv_bn_prelu(&vb, "conv_1", Conv2dSpec::new(3, 32, 3, 1))?;
        let blocks = BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, stride))| {
                let name = format!("conv_{}", i + 2);
                let dw = conv_bn_prelu(
                    &vb,
                    &format!("{name}_dw"),
                    Conv2dSpec::depthwise(cin, 3, stride),
                )?;
                let pw = conv_bn_prelu(&vb, &name, Conv2dSpec::new(cin, cout, 1, 1))?;
                Ok((dw, pw))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let bn = mxnet_batch_norm(&vb);
        let (channels, cells) = (1024, 7 * 7);
        if pre_fc1.dims() != (EMBEDDING_DIM, channels * cells) {
            candle_core::bail!(
                "pre_fc1 maps {} inputs to {}, expected {} to {EMBEDDING_DIM}",
                pre_fc1.dims().1,
                pre_fc1.dims().0,
                channels * cells
            );
        }
        Ok(Self {
            input_mean: vb.get(1, "scalar_op1")?,
            input_scale: vb.get(1, "scalar_op2")?,
            conv_1,
            blocks,
            bn1: candle_nn::batch_norm(channels, HEAD_BN_EPS, bn.pp("bn1"))?,
            pre_fc1,
            fc1: candle_nn::batch_norm(EMBEDDING_DIM, HEAD_BN_EPS, bn.pp("fc1"))?,
        })
    }
}

impl Module for SFaceNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        facecore::threads::by_image(xs, |xs| self.forward_one(xs))
    }
}

impl SFaceNet {
    /// The network on a batch (of one image, from `forward`).
    fn forward_one(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let xs = xs
            .broadcast_sub(&self.input_mean)?
            .broadcast_mul(&self.input_scale)?;
        let mut xs = xs.apply(&self.conv_1)?;
        for (dw, pw) in &self.blocks {
            xs = xs.apply(dw)?.apply(pw)?;
        }
        xs.apply_t(&self.bn1, false)?
            .flatten_from(1)?
            .apply(&self.pre_fc1)?
            .apply_t(&self.fc1, false)
    }
}

/// SFace with OpenCV's alignment: images and keypoints in, [`Embedding`]s out.
#[derive(Debug, Clone)]
pub struct SFace {
    net: SFaceNet,
    device: Device,
}

impl SFace {
    /// Loads and dequantises the weights (CPU).
    pub fn load(source: &WeightsSource) -> Result<Self> {
        let device = Device::Cpu;
        let tensors = load_tensors(source, &device)?;
        let vb = VarBuilder::from_tensors(tensors.floats, DType::F32, &device);
        let Some((values, shape, scales, zero_points, scale_shape)) = tensors.pre_fc1_weight else {
            return Err(facecore::Error::WeightsTensor {
                file: WEIGHTS.name.to_string(),
                tensor: format!("{KEPT_QUANTIZED}_quantized"),
                reason: "missing".to_string(),
            }
            .into());
        };
        let block = shape[1] / scale_shape[1].max(1);
        let pre_fc1 = QuantizedLinear::new(
            &values,
            (shape[0], shape[1]),
            (&scales, &zero_points, block),
            Some(vb.get(EMBEDDING_DIM, "pre_fc1_bias")?.to_vec1()?),
        )?;
        let net = SFaceNet::new(vb, pre_fc1)?;
        Ok(Self { net, device })
    }

    /// The network.
    pub fn net(&self) -> &SFaceNet {
        &self.net
    }

    /// The raw features (`N x 128`, not normalised) of aligned 112x112 chips.
    pub fn features(&self, chips: &[RgbImage]) -> Result<Tensor> {
        if chips.is_empty() {
            return Ok(Tensor::zeros((0, EMBEDDING_DIM), DType::F32, &self.device)?);
        }
        let raw = Normalization {
            order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let mut out = Vec::with_capacity(chips.len().div_ceil(BATCH));
        for batch in chips.chunks(BATCH) {
            let inputs = batch
                .iter()
                .map(|chip| {
                    if chip.dimensions() != (INPUT_SIZE, INPUT_SIZE) {
                        return Err(Error::InvalidArgument(format!(
                            "an SFace chip is {INPUT_SIZE}x{INPUT_SIZE} pixels, got {}x{}",
                            chip.width(),
                            chip.height()
                        )));
                    }
                    Ok(image_to_tensor(chip, Resize::Keep, &raw, &self.device)?.0)
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(self.net.forward(&Tensor::cat(&inputs, 0)?)?);
        }
        Ok(Tensor::cat(&out, 0)?)
    }

    /// The embeddings of aligned 112x112 chips.
    pub fn embed_chips(&self, chips: &[RgbImage]) -> Result<Vec<Embedding>> {
        self.features(chips)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|raw| Embedding::new(EmbeddingModel::SFace, raw))
            .collect()
    }

    /// The embeddings of the faces of `img` given by their keypoints, one per face.
    pub fn embed(&self, img: &RgbImage, faces: &[Keypoints5]) -> Result<Vec<Embedding>> {
        let chips = faces
            .iter()
            .map(|f| align(img, f))
            .collect::<Result<Vec<_>>>()?;
        self.embed_chips(&chips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dequantize_uses_one_scale_per_block() {
        // 2 rows of 4 values, blocks of 2 along axis 1: scales [[1, 2], [0.5, 4]].
        let q = [1i8, 2, 3, 4, -1, -2, 127, -128];
        let scales = [1.0f32, 2.0, 0.5, 4.0];
        let zero = [0i8, 1, -1, 0];
        let v = dequantize_blocked(&q, &[2, 4], &scales, &zero, &[2, 2]).unwrap();
        assert_eq!(v, vec![1.0, 2.0, 4.0, 6.0, 0.0, -0.5, 508.0, -512.0]);
        // One block along axis 0 (a bias of 4 values in 2 blocks).
        let v = dequantize_blocked(&[10, 20, 30, 40], &[4], &[0.1, 1.0], &[10, 0], &[2]).unwrap();
        assert_eq!(v, vec![0.0, 1.0, 30.0, 40.0]);
    }

    #[test]
    fn dequantize_rejects_inconsistent_blocks() {
        assert!(dequantize_blocked(&[0; 6], &[2, 3], &[1.0; 2], &[0; 2], &[1, 2]).is_err());
        assert!(dequantize_blocked(&[0; 6], &[2, 3], &[1.0; 2], &[0; 2], &[2]).is_err());
        assert!(dequantize_blocked(&[0; 5], &[2, 3], &[1.0; 2], &[0; 2], &[2, 1]).is_err());
    }

    #[test]
    fn template_keypoints_align_to_the_identity() {
        let m = alignment_transform(&Keypoints5(ARCFACE_112)).unwrap();
        for (r, e) in
            m.0.iter()
                .flatten()
                .zip(Affine2::IDENTITY.0.iter().flatten())
        {
            assert!((r - e).abs() < 1e-4, "{m:?}");
        }
        // A face at twice the template's scale, shifted by (10, 20): the chip is half-size.
        let face = Keypoints5(ARCFACE_112.map(|p| Point::new(2.0 * p.x + 10.0, 2.0 * p.y + 20.0)));
        let m = alignment_transform(&face).unwrap();
        let expect = [[0.5, 0.0, -5.0], [0.0, 0.5, -10.0]];
        for (r, e) in m.0.iter().flatten().zip(expect.iter().flatten()) {
            assert!((r - e).abs() < 1e-4, "{m:?}");
        }
    }

    #[test]
    fn a_missing_weights_file_is_named() {
        let err = SFace::load(&WeightsSource::Dir("/nonexistent".into())).unwrap_err();
        assert!(err.to_string().contains(WEIGHTS.name), "{err}");
    }

    #[test]
    fn chips_of_the_wrong_size_are_errors() {
        let sface = SFace::load(&WeightsSource::Embedded).unwrap();
        let err = sface.features(&[RgbImage::new(100, 112)]).unwrap_err();
        assert!(err.to_string().contains("112x112"), "{err}");
        assert_eq!(sface.features(&[]).unwrap().dims(), &[0, EMBEDDING_DIM]);
    }
}
