//! MediaPipe BlazeFace, short range (128x128) and full range (192x192), ported from the
//! original `.tflite` files and numerically equal to LiteRT.
//!
//! The network ([`BlazeFace`] as a [`Module`]) maps a `N x 3 x S x S` tensor of RGB values in
//! `[-1, 1]` to per-anchor regressors and face logits. [`BlazeFace::detect`] (the
//! [`FaceDetector`] impl) adds MediaPipe's pre- and post-processing: letterbox to `S x S`
//! (aspect kept, centred, black padding, bilinear with half-pixel centres), SSD anchors
//! ([`ssd_anchors`]), box and keypoint decoding ([`decode`]), the sigmoid with MediaPipe's
//! clipping ([`score`]), weighted non-maximum suppression ([`weighted_nms`]) and letterbox
//! removal to original-image pixels.
//!
//! # Keypoints
//!
//! Every detection carries six keypoints, in MediaPipe's order (indices in [`BlazeFaceKeypoint`]):
//!
//! | index | point | in a frontal, unmirrored photo |
//! | --- | --- | --- |
//! | 0 | subject's right eye | the eye on the image's left |
//! | 1 | subject's left eye | the eye on the image's right |
//! | 2 | nose tip | |
//! | 3 | mouth centre | |
//! | 4 | subject's right ear tragion | on the image's left |
//! | 5 | subject's left ear tragion | on the image's right |
//!
//! (Checked on the sample images: keypoint 0 lies left of keypoint 1 on every upright face.)
//!
//! # Weights
//!
//! `weights/blazeface_{short,full}_range.safetensors`, written by `tools/convert/blazeface.py`
//! from the pinned `.tflite` files: every convolution's `<layer>/Kernel` and `<layer>/Bias`
//! under its TFLite name, fp16 as in the source (upcast to f32 at load; the `.tflite` models
//! dequantize the same fp16 values to f32 and compute in f32). Kernels are stored in PyTorch
//! layout (`[O, I, kh, kw]`, depthwise `[C, 1, kh, kw]`).
//!
//! # Architecture
//!
//! Short range: a 5x5/2 stem convolution (3→24) and 16 BlazeBlocks (depthwise 3x3 `SAME` then
//! pointwise 1x1; the shortcut is max-pooled 2x2 when the block strides and zero-padded in
//! channels when it widens; add, ReLU), 24→88 channels at 16x16 and 88→96 at 8x8. Heads: 1x1
//! convolutions for 2 anchors per cell at 16x16 and 6 per cell at 8x8 (896 anchors).
//!
//! Full range: a 3x3/2 stem (3→32), 15 double BlazeBlocks (depthwise, pointwise down + ReLU,
//! depthwise, pointwise up, shortcut as above) down to 6x6x384, then a feature pyramid back to
//! 48x48 (1x1 convolution + ReLU, 2x bilinear upsampling with half-pixel centres, plus a
//! ReLU'd 1x1 lateral from the backbone, then double BlazeBlocks), and 1x1 heads with one
//! anchor per 48x48 cell (2304 anchors).

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use facecore::geometry::{BBox, Point};
use facecore::image::{image_to_tensor, InputTransform, Normalization, Resize};
use facecore::layers::{
    resize_bilinear_bordered, Activation, Bordered, Conv2d, Conv2dSpec, Padding, Pool2d, Residual,
    Separable,
};
use facecore::weights::{WeightFile, WeightsSource};
use image::RgbImage;

use crate::{Detection, DetectorKind, DetectorOptions, Error, FaceDetector, Result};

/// The short-range weights file.
pub const SHORT_RANGE_WEIGHTS: WeightFile = WeightFile {
    name: "blazeface_short_range.safetensors",
    embedded: include_bytes!("../../../weights/blazeface_short_range.safetensors"),
};

/// The full-range weights file.
pub const FULL_RANGE_WEIGHTS: WeightFile = WeightFile {
    name: "blazeface_full_range.safetensors",
    embedded: include_bytes!("../../../weights/blazeface_full_range.safetensors"),
};

/// Number of regressor values per anchor: box centre x, y, width, height, then 6 keypoints x, y.
pub const NUM_COORDS: usize = 16;

/// Number of keypoints per detection.
pub const NUM_KEYPOINTS: usize = 6;

/// MediaPipe's minimum score of a face (`min_score_thresh` of the face detection graphs).
pub const DEFAULT_SCORE: f32 = 0.5;

/// MediaPipe's IoU threshold of the weighted non-maximum suppression.
pub const DEFAULT_NMS_IOU: f32 = 0.3;

/// MediaPipe's `score_clipping_thresh`: logits are clamped to `[-100, 100]` before the sigmoid.
pub const SCORE_CLIPPING: f32 = 100.0;

/// Indices of the six BlazeFace keypoints (MediaPipe order; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlazeFaceKeypoint {
    /// The subject's right eye (the eye on the image's left in an unmirrored photo).
    RightEye = 0,
    /// The subject's left eye.
    LeftEye = 1,
    /// The nose tip.
    NoseTip = 2,
    /// The centre of the mouth.
    MouthCenter = 3,
    /// The subject's right ear tragion.
    RightEarTragion = 4,
    /// The subject's left ear tragion.
    LeftEarTragion = 5,
}

/// The two BlazeFace models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlazeFaceVariant {
    /// 128x128 input, 896 anchors; faces within about 2 m of the camera.
    ShortRange,
    /// 192x192 input, 2304 anchors; faces within about 5 m.
    FullRange,
}

impl BlazeFaceVariant {
    /// The square input size in pixels.
    pub fn input_size(self) -> usize {
        match self {
            Self::ShortRange => 128,
            Self::FullRange => 192,
        }
    }

    /// The variant's anchors (normalised centres), from MediaPipe's SSD anchor options.
    pub fn anchors(self) -> Vec<[f32; 2]> {
        match self {
            Self::ShortRange => ssd_anchors(128, &[8, 16, 16, 16], 1.0),
            Self::FullRange => ssd_anchors(192, &[4], 0.0),
        }
    }

    /// The weights file.
    pub fn weights(self) -> WeightFile {
        match self {
            Self::ShortRange => SHORT_RANGE_WEIGHTS,
            Self::FullRange => FULL_RANGE_WEIGHTS,
        }
    }
}

/// MediaPipe's SSD anchor centres (`SsdAnchorsCalculator` with `fixed_anchor_size`, square
/// input, offsets 0.5), normalised to `[0, 1]`, in the order of the model's outputs.
///
/// Consecutive layers with the same stride share one feature map; each layer contributes one
/// anchor per cell, plus one more when `interpolated_scale_aspect_ratio > 0`. Anchors run over
/// rows, then columns, then the anchors of a cell.
pub fn ssd_anchors(
    input_size: usize,
    strides: &[usize],
    interpolated_scale_aspect_ratio: f32,
) -> Vec<[f32; 2]> {
    let per_layer = if interpolated_scale_aspect_ratio > 0.0 {
        2
    } else {
        1
    };
    let mut anchors = Vec::new();
    let mut layer = 0;
    while layer < strides.len() {
        let stride = strides[layer];
        let same = strides[layer..]
            .iter()
            .take_while(|&&s| s == stride)
            .count();
        let size = input_size / stride;
        for y in 0..size {
            let cy = ((y as f64 + 0.5) / size as f64) as f32;
            for x in 0..size {
                let cx = ((x as f64 + 0.5) / size as f64) as f32;
                anchors.extend(std::iter::repeat_n([cx, cy], same * per_layer));
            }
        }
        layer += same;
    }
    anchors
}

/// One decoded face in the model's normalised input coordinates or, after letterbox removal,
/// in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawDetection {
    /// The face box.
    pub bbox: BBox,
    /// Face probability in `[0, 1]`.
    pub score: f32,
    /// The six keypoints (order in the module documentation).
    pub keypoints: [Point; NUM_KEYPOINTS],
}

/// MediaPipe's score: `sigmoid(clamp(logit, -100, 100))`.
pub fn score(logit: f32) -> f32 {
    let x = logit.clamp(-SCORE_CLIPPING, SCORE_CLIPPING);
    1.0 / (1.0 + (-x).exp())
}

/// Decodes the anchors whose score is at least `min_score` (MediaPipe's
/// `TensorsToDetectionsCalculator` with `reverse_output_order` and all scales equal to the input
/// size `input_size`). `regressors` holds `anchors.len() * 16` values and `logits` one per
/// anchor. Boxes with a non-positive width or height are dropped. Coordinates are normalised
/// to the model input (`[0, 1]` over `input_size` pixels).
pub fn decode(
    regressors: &[f32],
    logits: &[f32],
    anchors: &[[f32; 2]],
    input_size: usize,
    min_score: f32,
) -> Result<Vec<RawDetection>> {
    if regressors.len() != anchors.len() * NUM_COORDS || logits.len() != anchors.len() {
        return Err(Error::Core(facecore::Error::InvalidArgument(format!(
            "BlazeFace decode: {} regressor values and {} logits for {} anchors",
            regressors.len(),
            logits.len(),
            anchors.len()
        ))));
    }
    let s = input_size as f32;
    let mut out = Vec::new();
    for (i, (r, &[ax, ay])) in regressors.chunks_exact(NUM_COORDS).zip(anchors).enumerate() {
        let p = score(logits[i]);
        if p < min_score {
            continue;
        }
        let (cx, cy) = (r[0] / s + ax, r[1] / s + ay);
        let (w, h) = (r[2] / s, r[3] / s);
        if w <= 0.0 || h <= 0.0 {
            continue;
        }
        let bbox = BBox::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0);
        let mut keypoints = [Point::default(); NUM_KEYPOINTS];
        for (k, kp) in keypoints.iter_mut().enumerate() {
            *kp = Point::new(r[4 + 2 * k] / s + ax, r[5 + 2 * k] / s + ay);
        }
        out.push(RawDetection {
            bbox,
            score: p,
            keypoints,
        });
    }
    Ok(out)
}

/// MediaPipe's weighted non-maximum suppression (`NonMaxSuppressionCalculator`, `WEIGHTED`,
/// intersection over union). Repeatedly takes the highest-scoring remaining detection, gathers
/// every remaining detection whose IoU with it exceeds `iou_threshold` (itself included), and
/// outputs their score-weighted mean box and keypoints with the top score. Stops at a top score
/// below `min_score`.
pub fn weighted_nms(
    detections: &[RawDetection],
    iou_threshold: f32,
    min_score: f32,
) -> Vec<RawDetection> {
    let mut remaining: Vec<usize> = (0..detections.len()).collect();
    // Stable: equal scores keep their anchor order, as in the reference.
    remaining.sort_by(|&a, &b| detections[b].score.total_cmp(&detections[a].score));
    let mut out = Vec::new();
    while let Some(&top) = remaining.first() {
        let top = &detections[top];
        if top.score < min_score {
            break;
        }
        let (candidates, rest): (Vec<usize>, Vec<usize>) = remaining
            .iter()
            .partition(|&&i| detections[i].bbox.iou(&top.bbox) > iou_threshold);
        let mut merged = *top;
        if !candidates.is_empty() {
            let mut acc = [0f32; 4 + 2 * NUM_KEYPOINTS];
            let mut total = 0f32;
            for &i in &candidates {
                let d = &detections[i];
                total += d.score;
                let b = d.bbox;
                for (a, v) in acc.iter_mut().zip([b.x0, b.y0, b.x1, b.y1]) {
                    *a += v * d.score;
                }
                for (k, p) in d.keypoints.iter().enumerate() {
                    acc[4 + 2 * k] += p.x * d.score;
                    acc[5 + 2 * k] += p.y * d.score;
                }
            }
            let v = acc.map(|a| a / total);
            merged.bbox = BBox::new(v[0], v[1], v[2], v[3]);
            for (k, p) in merged.keypoints.iter_mut().enumerate() {
                *p = Point::new(v[4 + 2 * k], v[5 + 2 * k]);
            }
        }
        out.push(merged);
        if rest.len() == remaining.len() {
            break;
        }
        remaining = rest;
    }
    out
}

/// Maps a detection in normalised model coordinates to original-image pixels.
pub fn remove_letterbox(d: &RawDetection, transform: &InputTransform) -> RawDetection {
    let (sw, sh) = (transform.input_width as f32, transform.input_height as f32);
    let px = |p: Point| transform.to_original(Point::new(p.x * sw, p.y * sh));
    let p0 = px(Point::new(d.bbox.x0, d.bbox.y0));
    let p1 = px(Point::new(d.bbox.x1, d.bbox.y1));
    RawDetection {
        bbox: BBox::new(p0.x, p0.y, p1.x, p1.y),
        score: d.score,
        keypoints: d.keypoints.map(px),
    }
}

/// Loads `<name>/Kernel` and `<name>/Bias` as a convolution.
fn conv(
    vb: &VarBuilder,
    name: &str,
    spec: Conv2dSpec,
    act: Activation,
) -> candle_core::Result<Conv2d> {
    let w = vb.get(spec.weight_shape(), &format!("{name}/Kernel"))?;
    let b = vb.get(spec.out_channels, &format!("{name}/Bias"))?;
    Conv2d::from_tensors(w, Some(b), spec, act)
}

/// The running numbering of the TFLite layer names (`conv2d`, `conv2d_1`, ...).
struct Names {
    conv: usize,
    depthwise: usize,
}

impl Names {
    fn nth(base: &str, i: usize) -> String {
        if i == 0 {
            base.to_string()
        } else {
            format!("{base}_{i}")
        }
    }

    fn conv(&mut self) -> String {
        self.conv += 1;
        Self::nth("conv2d", self.conv - 1)
    }

    fn depthwise(&mut self) -> String {
        self.depthwise += 1;
        Self::nth("depthwise_conv2d", self.depthwise - 1)
    }
}

/// A 1x1 convolution (`VALID`).
fn pointwise(
    vb: &VarBuilder,
    name: &str,
    cin: usize,
    cout: usize,
    act: Activation,
) -> candle_core::Result<Conv2d> {
    conv(vb, name, Conv2dSpec::new(cin, cout, 1, 1), act)
}

/// A 3x3 depthwise convolution with TensorFlow `SAME` padding.
fn depthwise(vb: &VarBuilder, name: &str, c: usize, stride: usize) -> candle_core::Result<Conv2d> {
    let spec = Conv2dSpec::depthwise(c, 3, stride).with_padding(Padding::Same);
    conv(vb, name, spec, Activation::Identity)
}

/// A residual BlazeBlock: its convolutions, then `relu(convs(x) + shortcut(x))` with the
/// shortcut max-pooled 2x2 when the block strides and zero-padded to the output channels (the
/// last convolution fuses the addition and the ReLU). Both kinds run on bordered activations.
#[derive(Debug, Clone)]
enum Block {
    /// A block that halves the resolution.
    Strided(Box<Strided>),
    /// A stride-1 block: its depthwise and pointwise pairs.
    Separable(Vec<Separable>),
}

/// A BlazeBlock that halves the resolution: its stride-2 depthwise convolution, its first
/// pointwise convolution, and for a double block the depthwise and pointwise pair after them.
#[derive(Debug, Clone)]
struct Strided {
    depthwise: Conv2d,
    pointwise: Conv2d,
    pair: Option<Separable>,
}

impl Block {
    /// A single block: depthwise (stride `stride`), pointwise `cin → cout`.
    fn single(
        vb: &VarBuilder,
        n: &mut Names,
        cin: usize,
        cout: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let dw = depthwise(vb, &n.depthwise(), cin, stride)?;
        let pw = pointwise(vb, &n.conv(), cin, cout, Activation::Relu)?;
        Ok(match stride {
            1 => Self::Separable(vec![Separable::new(dw, pw)?]),
            _ => Self::Strided(Box::new(Strided {
                depthwise: dw,
                pointwise: pw,
                pair: None,
            })),
        })
    }

    /// A double block: depthwise (stride `stride`), pointwise `cin → mid` + ReLU, depthwise,
    /// pointwise `mid → cout`.
    fn double(
        vb: &VarBuilder,
        n: &mut Names,
        cin: usize,
        mid: usize,
        cout: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let dw1 = depthwise(vb, &n.depthwise(), cin, stride)?;
        let pw1 = pointwise(vb, &n.conv(), cin, mid, Activation::Relu)?;
        let dw2 = depthwise(vb, &n.depthwise(), mid, 1)?;
        let pw2 = pointwise(vb, &n.conv(), mid, cout, Activation::Relu)?;
        let pair = Separable::new(dw2, pw2)?;
        Ok(match stride {
            1 => Self::Separable(vec![Separable::new(dw1, pw1)?, pair]),
            _ => Self::Strided(Box::new(Strided {
                depthwise: dw1,
                pointwise: pw1,
                pair: Some(pair),
            })),
        })
    }
}

/// Runs `blocks` on `xs`: a strided block reads the bordered activations in place (its first
/// depthwise convolution and its pooled shortcut) and writes them, as the stride-1 blocks do.
fn run(blocks: &[Block], mut xs: Bordered) -> candle_core::Result<Bordered> {
    for block in blocks {
        xs = match block {
            Block::Strided(block) => {
                let Strided {
                    depthwise,
                    pointwise,
                    pair,
                } = block.as_ref();
                let shortcut = Pool2d::max(2, 2).forward_bordered(&xs)?;
                let ys = depthwise.forward_bordered(&xs)?;
                match pair {
                    None => pointwise
                        .forward_bordered_add(&ys, Residual::BeforeActivation(&shortcut))?,
                    Some(pair) => {
                        pair.forward(&pointwise.forward_bordered(&ys)?, Some(&shortcut))?
                    }
                }
            }
            Block::Separable(pairs) => {
                let Some((last, first)) = pairs.split_last() else {
                    continue;
                };
                let ys = first
                    .iter()
                    .try_fold(xs.clone(), |h, p| p.forward(&h, None))?;
                last.forward(&ys, Some(&xs))?
            }
        };
    }
    Ok(xs)
}

/// One level of the full-range feature pyramid: `relu(top(coarser))` upsampled 2x, plus
/// `relu(lateral(backbone))`, then blocks.
#[derive(Debug, Clone)]
struct PyramidLevel {
    top: Conv2d,
    lateral: Conv2d,
    blocks: Vec<Block>,
}

/// A detection head pair on one feature map.
#[derive(Debug, Clone)]
struct Head {
    classifier: Conv2d,
    regressor: Conv2d,
}

impl Head {
    fn load(
        vb: &VarBuilder,
        cls: &str,
        reg: &str,
        cin: usize,
        anchors: usize,
    ) -> candle_core::Result<Self> {
        Ok(Self {
            classifier: pointwise(vb, cls, cin, anchors, Activation::Identity)?,
            regressor: pointwise(vb, reg, cin, anchors * NUM_COORDS, Activation::Identity)?,
        })
    }

    /// `(regressors [N, H*W*A, 16], logits [N, H*W*A, 1])`, in TFLite's NHWC order (the
    /// convolutions write their outputs channels last).
    fn forward(&self, xs: &Bordered) -> candle_core::Result<(Tensor, Tensor)> {
        let n = xs.dims4().0;
        Ok((
            self.regressor
                .forward_channels_last(xs)?
                .reshape((n, (), NUM_COORDS))?,
            self.classifier
                .forward_channels_last(xs)?
                .reshape((n, (), 1))?,
        ))
    }
}

#[derive(Debug, Clone)]
enum Body {
    /// Stage 1 (to 16x16x88) feeds the first head, stage 2 (to 8x8x96) the second.
    Short {
        stage1: Vec<Block>,
        stage2: Vec<Block>,
        heads: Box<[Head; 2]>,
    },
    /// Backbone stages ending at 48x48x64, 24x24x128, 12x12x256 and 6x6x384; pyramid levels at
    /// 12, 24 and 48.
    Full {
        stages: [Vec<Block>; 4],
        pyramid: Vec<PyramidLevel>,
        head: Box<Head>,
    },
}

/// The BlazeFace network and its decoding parameters.
#[derive(Debug, Clone)]
pub struct BlazeFace {
    variant: BlazeFaceVariant,
    stem: Conv2d,
    body: Body,
    anchors: Vec<[f32; 2]>,
    device: Device,
}

impl BlazeFace {
    /// Builds the network of `variant` from a [`VarBuilder`] over the tensors of its weights file
    /// (names as in the `.tflite`: `conv2d/Kernel`, `depthwise_conv2d_3/Bias`, ...).
    pub fn new(variant: BlazeFaceVariant, vb: VarBuilder) -> candle_core::Result<Self> {
        let mut n = Names {
            conv: 0,
            depthwise: 0,
        };
        let device = vb.device().clone();
        let relu = Activation::Relu;
        let (stem, body) = match variant {
            BlazeFaceVariant::ShortRange => {
                let spec = Conv2dSpec::new(3, 24, 5, 2).with_padding(Padding::Same);
                let stem = conv(&vb, &n.conv(), spec, relu)?;
                let widths = [
                    (24, 24, 1),
                    (24, 28, 1),
                    (28, 32, 2),
                    (32, 36, 1),
                    (36, 42, 1),
                    (42, 48, 2),
                    (48, 56, 1),
                    (56, 64, 1),
                    (64, 72, 1),
                    (72, 80, 1),
                    (80, 88, 1),
                    (88, 96, 2),
                    (96, 96, 1),
                    (96, 96, 1),
                    (96, 96, 1),
                    (96, 96, 1),
                ];
                let mut blocks = widths
                    .iter()
                    .map(|&(i, o, s)| Block::single(&vb, &mut n, i, o, s))
                    .collect::<candle_core::Result<Vec<_>>>()?;
                let stage2 = blocks.split_off(11);
                let heads = Box::new([
                    Head::load(&vb, "classificator_8", "regressor_8", 88, 2)?,
                    Head::load(&vb, "classificator_16", "regressor_16", 96, 6)?,
                ]);
                (
                    stem,
                    Body::Short {
                        stage1: blocks,
                        stage2,
                        heads,
                    },
                )
            }
            BlazeFaceVariant::FullRange => {
                let spec = Conv2dSpec::new(3, 32, 3, 2).with_padding(Padding::Same);
                let stem = conv(&vb, &n.conv(), spec, relu.clone())?;
                let mut stage = |widths: &[(usize, usize, usize, usize)]| {
                    widths
                        .iter()
                        .map(|&(i, m, o, s)| Block::double(&vb, &mut n, i, m, o, s))
                        .collect::<candle_core::Result<Vec<_>>>()
                };
                let stages = [
                    stage(&[
                        (32, 8, 32, 1),
                        (32, 8, 32, 1),
                        (32, 12, 48, 2),
                        (48, 12, 48, 1),
                        (48, 16, 64, 1),
                    ])?,
                    stage(&[(64, 24, 96, 2), (96, 32, 128, 1), (128, 32, 128, 1)])?,
                    stage(&[(128, 36, 144, 2), (144, 48, 192, 1), (192, 64, 256, 1)])?,
                    stage(&[
                        (256, 96, 384, 2),
                        (384, 96, 384, 1),
                        (384, 96, 384, 1),
                        (384, 96, 384, 1),
                    ])?,
                ];
                // (coarser channels, backbone channels, level channels, block mid, blocks)
                let levels = [
                    (384, 256, 96, 48, 2),
                    (96, 128, 64, 32, 2),
                    (64, 64, 48, 24, 1),
                ];
                let mut pyramid = Vec::with_capacity(3);
                for (coarse, lateral, c, mid, count) in levels {
                    let top = pointwise(&vb, &n.conv(), coarse, c, relu.clone())?;
                    let lateral = pointwise(&vb, &n.conv(), lateral, c, relu.clone())?;
                    let blocks = (0..count)
                        .map(|_| Block::double(&vb, &mut n, c, mid, c, 1))
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    pyramid.push(PyramidLevel {
                        top,
                        lateral,
                        blocks,
                    });
                }
                let head = Box::new(Head::load(
                    &vb,
                    "classifier_face_4",
                    "regressor_face_4",
                    48,
                    1,
                )?);
                (
                    stem,
                    Body::Full {
                        stages,
                        pyramid,
                        head,
                    },
                )
            }
        };
        Ok(Self {
            variant,
            stem,
            body,
            anchors: variant.anchors(),
            device,
        })
    }

    /// The short-range model (128x128) with weights from `weights`.
    pub fn short_range(weights: &WeightsSource) -> Result<Self> {
        Self::load(BlazeFaceVariant::ShortRange, weights)
    }

    /// The full-range model (192x192) with weights from `weights`.
    pub fn full_range(weights: &WeightsSource) -> Result<Self> {
        Self::load(BlazeFaceVariant::FullRange, weights)
    }

    /// The model of `variant` with weights from `weights`, on the CPU.
    pub fn load(variant: BlazeFaceVariant, weights: &WeightsSource) -> Result<Self> {
        Ok(variant
            .weights()
            .build(weights, &Device::Cpu, |vb| Self::new(variant, vb))?)
    }

    /// Which model this is.
    pub fn variant(&self) -> BlazeFaceVariant {
        self.variant
    }

    /// The square input size in pixels (128 or 192).
    pub fn input_size(&self) -> usize {
        self.variant.input_size()
    }

    /// The anchors (normalised centres), one per output row.
    pub fn anchors(&self) -> &[[f32; 2]] {
        &self.anchors
    }

    /// Runs the network on `xs` (`N x 3 x S x S`, RGB in `[-1, 1]`) and returns the raw
    /// `(regressors [N, A, 16], logits [N, A, 1])` exactly as the `.tflite` outputs them.
    pub fn forward_raw(&self, xs: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let s = self.input_size();
        let (_, c, h, w) = xs.dims4()?;
        if (c, h, w) != (3, s, s) {
            candle_core::bail!(
                "BlazeFace {:?} expects N x 3 x {s} x {s} input, got {:?}",
                self.variant,
                xs.dims()
            );
        }
        // The whole network runs on bordered activations: the stem writes them so.
        let xs = self.stem.forward_to_bordered(xs)?;
        match &self.body {
            Body::Short {
                stage1,
                stage2,
                heads,
            } => {
                let f16 = run(stage1, xs)?;
                let f8 = run(stage2, f16.clone())?;
                let (r1, c1) = heads[0].forward(&f16)?;
                let (r2, c2) = heads[1].forward(&f8)?;
                Ok((Tensor::cat(&[r1, r2], 1)?, Tensor::cat(&[c1, c2], 1)?))
            }
            Body::Full {
                stages,
                pyramid,
                head,
            } => {
                // Each stage's output feeds the next stage and its pyramid level.
                let f48 = run(&stages[0], xs)?;
                let f24 = run(&stages[1], f48.clone())?;
                let f12 = run(&stages[2], f24.clone())?;
                let mut x = run(&stages[3], f12.clone())?;
                for (level, skip) in pyramid.iter().zip([f12, f24, f48]) {
                    let (_, _, h, w) = skip.dims4();
                    let top = level.top.forward_bordered(&x)?;
                    let top = resize_bilinear_bordered(&top, h, w)?;
                    let lateral = level
                        .lateral
                        .forward_bordered_add(&skip, Residual::AfterActivation(&top))?;
                    x = run(&level.blocks, lateral)?;
                }
                head.forward(&x)
            }
        }
    }

    /// Letterboxes `img` to the model input as MediaPipe does (aspect kept, centred, black
    /// padding, bilinear with half-pixel centres, `x / 127.5 - 1`). Returns the `1 x 3 x S x S`
    /// tensor and the map back to image pixels.
    pub fn preprocess(&self, img: &RgbImage) -> Result<(Tensor, InputTransform)> {
        let s = self.input_size() as u32;
        Ok(image_to_tensor(
            img,
            Resize::Letterbox {
                width: s,
                height: s,
                pad: 0.0,
            },
            &Normalization::RGB_SIGNED_UNIT,
            &self.device,
        )?)
    }

    /// Detects faces: preprocessing, network, decoding with `min_score`, weighted NMS with
    /// `iou_threshold`, letterbox removal. Boxes and keypoints are in `img` pixels, highest
    /// score first. MediaPipe uses [`DEFAULT_SCORE`] and [`DEFAULT_NMS_IOU`].
    pub fn detect_raw(
        &self,
        img: &RgbImage,
        min_score: f32,
        iou_threshold: f32,
    ) -> Result<Vec<RawDetection>> {
        let (xs, transform) = self.preprocess(img)?;
        let (reg, logits) = self.forward_raw(&xs)?;
        let reg: Vec<f32> = reg.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let logits: Vec<f32> = logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?;
        let dets = decode(&reg, &logits, &self.anchors, self.input_size(), min_score)?;
        Ok(weighted_nms(&dets, iou_threshold, min_score)
            .iter()
            .map(|d| remove_letterbox(d, &transform))
            .collect())
    }
}

impl FaceDetector for BlazeFace {
    fn name(&self) -> &'static str {
        match self.variant {
            BlazeFaceVariant::ShortRange => DetectorKind::BlazeFaceShort.name(),
            BlazeFaceVariant::FullRange => DetectorKind::BlazeFaceFull.name(),
        }
    }

    /// BlazeFace detections carry no [`Keypoints5`](facecore::geometry::Keypoints5) (the model
    /// gives the mouth centre, not its corners); `native_keypoints` holds the six points in the
    /// order of [`BlazeFaceKeypoint`].
    fn detect(&self, img: &RgbImage, opts: &DetectorOptions) -> Result<Vec<Detection>> {
        opts.validate()?;
        let dets = self.detect_raw(
            img,
            opts.score_threshold.unwrap_or(DEFAULT_SCORE),
            opts.nms_iou.unwrap_or(DEFAULT_NMS_IOU),
        )?;
        Ok(opts.finish(
            dets.into_iter()
                .map(|d| Detection {
                    bbox: d.bbox,
                    score: d.score,
                    keypoints: None,
                    native_keypoints: d.keypoints.to_vec(),
                })
                .collect(),
        ))
    }
}

impl Module for BlazeFace {
    /// `N x 3 x S x S` → `[N, A, 17]`: the 16 regressors of each anchor followed by its logit
    /// (see [`BlazeFace::forward_raw`] for the two tensors apart).
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let (reg, logits) = self.forward_raw(xs)?;
        Tensor::cat(&[reg, logits], D::Minus1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_by_hand() {
        // 8x8 input, stride 4 → 2x2 cells at 0.25 / 0.75, one anchor each.
        let a = ssd_anchors(8, &[4], 0.0);
        assert_eq!(
            a,
            vec![[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
        );
        // 16x16, strides [8, 16, 16]: 2x2 cells x 2 anchors, then 1x1 cell x (2 layers x 2).
        let a = ssd_anchors(16, &[8, 16, 16], 1.0);
        assert_eq!(a.len(), 2 * 2 * 2 + 4);
        assert_eq!(
            &a[..4],
            &[[0.25, 0.25], [0.25, 0.25], [0.75, 0.25], [0.75, 0.25]]
        );
        assert!(a[8..].iter().all(|&p| p == [0.5, 0.5]));
    }

    #[test]
    fn mediapipe_anchor_counts() {
        let short = BlazeFaceVariant::ShortRange.anchors();
        assert_eq!(short.len(), 896);
        assert_eq!(short[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(short[512], [0.0625, 0.0625]);
        let full = BlazeFaceVariant::FullRange.anchors();
        assert_eq!(full.len(), 2304);
        assert_eq!(full[49], [1.5 / 48.0, 1.5 / 48.0]);
    }

    #[test]
    fn score_clips_like_mediapipe() {
        assert_eq!(score(0.0), 0.5);
        assert_eq!(score(1e9), 1.0);
        // exp(100) overflows f32, so the clipped minimum scores exactly 0 (as in MediaPipe).
        assert_eq!(score(-1e9), 0.0);
        assert!(score(-80.0) > 0.0 && score(-80.0) < 1e-34);
    }

    fn det(x: f32, s: f32) -> RawDetection {
        RawDetection {
            bbox: BBox::new(x, 0.0, x + 1.0, 1.0),
            score: s,
            keypoints: [Point::new(x, 0.5); NUM_KEYPOINTS],
        }
    }

    #[test]
    fn weighted_nms_merges_overlaps() {
        // Two overlapping boxes (IoU 0.82) merge with weights 0.9 / 0.6; a far one survives.
        let d = [det(0.1, 0.6), det(0.0, 0.9), det(5.0, 0.7)];
        let out = weighted_nms(&d, 0.3, 0.5);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        let x0 = (0.0 * 0.9 + 0.1 * 0.6) / 1.5;
        assert!((out[0].bbox.x0 - x0).abs() < 1e-6);
        assert!((out[0].keypoints[3].x - x0).abs() < 1e-6);
        assert_eq!(out[1].bbox, d[2].bbox);
        // Scores below the threshold stop the loop.
        assert_eq!(weighted_nms(&d, 0.3, 0.95).len(), 0);
    }

    #[test]
    fn decode_applies_anchor_and_scale() {
        let mut r = vec![0f32; NUM_COORDS];
        r[0] = 12.8; // +0.1 of a 128 input
        r[2] = 25.6;
        r[3] = 12.8;
        r[4] = -12.8;
        let d = decode(&r, &[2.0], &[[0.5, 0.5]], 128, 0.5).unwrap();
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        assert!((b.x0 - 0.5).abs() < 1e-6 && (b.x1 - 0.7).abs() < 1e-6);
        assert!((b.y0 - 0.45).abs() < 1e-6 && (b.y1 - 0.55).abs() < 1e-6);
        assert!((d[0].keypoints[0].x - 0.4).abs() < 1e-6);
        assert!(decode(&r, &[-2.0], &[[0.5, 0.5]], 128, 0.5)
            .unwrap()
            .is_empty());
        assert!(decode(&r, &[], &[[0.5, 0.5]], 128, 0.5).is_err());
    }
}
