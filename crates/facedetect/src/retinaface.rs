//! RetinaFace with a MobileNet-0.25 backbone (Deng et al., "RetinaFace: Single-stage Dense Face
//! Localisation in the Wild", CVPR 2020), in the layout of the widely used PyTorch port
//! (`body.stage1…`, `fpn…`, `ssh1…`, `ClassHead`, `BboxHead`, `LandmarkHead`).
//!
//! Input: `1 x 3 x H x W`, BGR, minus the per-channel mean (104, 117, 123), any size. Output: for
//! each of the priors of the three levels (strides 8, 16, 32, two anchors per cell), box offsets
//! (`N x 4`), face/background probabilities after softmax (`N x 2`) and five keypoint offsets
//! (`N x 10`). Keypoints come in the workspace's [`Keypoints5`] order.

use candle_core::{Module, Tensor, D};
use candle_nn::VarBuilder;
use facecore::geometry::{nms, BBox, Keypoints5, Point};
use facecore::image::{image_to_tensor, ChannelOrder, InputTransform, Normalization, Resize};
use facecore::layers::{Activation, Conv2d, Conv2dSpec, Residual};
use facecore::weights::{WeightFile, WeightsSource};
use facecore::Device;
use image::RgbImage;

use crate::{Detection, DetectorKind, DetectorOptions, FaceDetector, Result};

/// The converted checkpoint (see `weights/README.md`).
pub const WEIGHTS: WeightFile = WeightFile {
    name: "retinaface_mnet025.safetensors",
    embedded: include_bytes!("../../../weights/retinaface_mnet025.safetensors"),
};

/// Input normalisation of the reference implementation: BGR minus (104, 117, 123).
pub const NORMALIZATION: Normalization = Normalization {
    order: ChannelOrder::Bgr,
    mean: [104.0, 117.0, 123.0],
    std: [1.0, 1.0, 1.0],
};

/// Anchor sizes per level, in input pixels (`cfg_mnet["min_sizes"]`).
const MIN_SIZES: [[f32; 2]; 3] = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]];
/// Strides of the three levels (`cfg_mnet["steps"]`).
const STEPS: [usize; 3] = [8, 16, 32];
/// Box-decoding variances (`cfg_mnet["variance"]`).
const VARIANCES: [f32; 2] = [0.1, 0.2];
/// Batch-norm epsilon of PyTorch's `BatchNorm2d`.
const BN_EPS: f64 = 1e-5;
/// Published defaults of the reference `detect.py`: NMS IoU 0.4, 5000 boxes before NMS, 750 after.
const DEFAULT_NMS_IOU: f32 = 0.4;
const TOP_K: usize = 5000;
const KEEP_TOP_K: usize = 750;
/// Default score threshold (insightface's RetinaFace default).
const DEFAULT_SCORE: f32 = 0.5;
/// Default cap on the input's long side, as insightface's 640 detection size.
const DEFAULT_MAX_SIDE: u32 = 640;

/// `conv → BN → LeakyReLU` (or no activation), as the checkpoint's `nn.Sequential` blocks:
/// the convolution at index `conv`, its batch norm right after it.
fn conv_bn(
    vb: &VarBuilder,
    conv: usize,
    spec: Conv2dSpec,
    act: Activation,
) -> candle_core::Result<Conv2d> {
    Conv2d::load_bn(vb.pp(conv), vb.pp(conv + 1), spec, BN_EPS, act)
}

/// `conv_dw` of MobileNetV1: depthwise 3x3 then pointwise 1x1, each with BN and LeakyReLU(0.1).
#[derive(Debug, Clone)]
struct DepthwiseSeparable {
    depthwise: Conv2d,
    pointwise: Conv2d,
}

impl DepthwiseSeparable {
    fn new(vb: VarBuilder, inp: usize, out: usize, stride: usize) -> candle_core::Result<Self> {
        let act = || Activation::LeakyRelu(0.1);
        Ok(Self {
            depthwise: conv_bn(&vb, 0, Conv2dSpec::depthwise(inp, 3, stride), act())?,
            pointwise: conv_bn(&vb, 3, Conv2dSpec::new(inp, out, 1, 1), act())?,
        })
    }
}

impl Module for DepthwiseSeparable {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply(&self.depthwise)?.apply(&self.pointwise)
    }
}

/// MobileNetV1 x0.25, the `body` of the checkpoint; returns the outputs of its three stages.
#[derive(Debug, Clone)]
struct Body {
    stem: Conv2d,
    stage1: Vec<DepthwiseSeparable>,
    stage2: Vec<DepthwiseSeparable>,
    stage3: Vec<DepthwiseSeparable>,
}

impl Body {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let s1 = vb.pp("stage1");
        let stem = conv_bn(
            &s1.pp(0),
            0,
            Conv2dSpec::new(3, 8, 3, 2),
            Activation::LeakyRelu(0.1),
        )?;
        let stage = |vb: VarBuilder, first: usize, layers: &[(usize, usize, usize)]| {
            layers
                .iter()
                .enumerate()
                .map(|(i, &(a, b, s))| DepthwiseSeparable::new(vb.pp(first + i), a, b, s))
                .collect::<candle_core::Result<Vec<_>>>()
        };
        Ok(Self {
            stem,
            stage1: stage(
                s1,
                1,
                &[
                    (8, 16, 1),
                    (16, 32, 2),
                    (32, 32, 1),
                    (32, 64, 2),
                    (64, 64, 1),
                ],
            )?,
            stage2: stage(
                vb.pp("stage2"),
                0,
                &[
                    (64, 128, 2),
                    (128, 128, 1),
                    (128, 128, 1),
                    (128, 128, 1),
                    (128, 128, 1),
                    (128, 128, 1),
                ],
            )?,
            stage3: stage(vb.pp("stage3"), 0, &[(128, 256, 2), (256, 256, 1)])?,
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<[Tensor; 3]> {
        let run = |xs: Tensor, stage: &[DepthwiseSeparable]| {
            stage.iter().try_fold(xs, |xs, layer| xs.apply(layer))
        };
        let c1 = run(xs.apply(&self.stem)?, &self.stage1)?;
        let c2 = run(c1.clone(), &self.stage2)?;
        let c3 = run(c2.clone(), &self.stage3)?;
        Ok([c1, c2, c3])
    }
}

/// The feature pyramid: 1x1 lateral convolutions, nearest upsampling, 3x3 merges.
#[derive(Debug, Clone)]
struct Fpn {
    outputs: [Conv2d; 3],
    merge1: Conv2d,
    merge2: Conv2d,
}

impl Fpn {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let act = || Activation::LeakyRelu(0.1);
        let lateral =
            |name: &str, inp| conv_bn(&vb.pp(name), 0, Conv2dSpec::new(inp, 64, 1, 1), act());
        let merge = |name: &str| conv_bn(&vb.pp(name), 0, Conv2dSpec::new(64, 64, 3, 1), act());
        Ok(Self {
            outputs: [
                lateral("output1", 64)?,
                lateral("output2", 128)?,
                lateral("output3", 256)?,
            ],
            merge1: merge("merge1")?,
            merge2: merge("merge2")?,
        })
    }

    fn forward(&self, inputs: &[Tensor; 3]) -> candle_core::Result<[Tensor; 3]> {
        // Each level's lateral convolution adds the coarser level, upsampled, after its
        // activation.
        let up = |small: &Tensor, like: &Tensor| {
            small.upsample_nearest2d(like.dim(D::Minus2)?, like.dim(D::Minus1)?)
        };
        let o3 = inputs[2].apply(&self.outputs[2])?;
        let o2 = self.outputs[1]
            .forward_add(&inputs[1], Residual::AfterActivation(&up(&o3, &inputs[1])?))?
            .apply(&self.merge2)?;
        let o1 = self.outputs[0]
            .forward_add(&inputs[0], Residual::AfterActivation(&up(&o2, &inputs[0])?))?
            .apply(&self.merge1)?;
        Ok([o1, o2, o3])
    }
}

/// The SSH context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated, ReLU.
#[derive(Debug, Clone)]
struct Ssh {
    conv3x3: Conv2d,
    conv5x5_1: Conv2d,
    conv5x5_2: Conv2d,
    conv7x7_2: Conv2d,
    conv7x7_3: Conv2d,
}

impl Ssh {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let leaky = || Activation::LeakyRelu(0.1);
        let spec = |inp, out| Conv2dSpec::new(inp, out, 3, 1);
        Ok(Self {
            // The ReLU after the concatenation runs in each branch's last convolution.
            conv3x3: conv_bn(&vb.pp("conv3X3"), 0, spec(64, 32), Activation::Relu)?,
            conv5x5_1: conv_bn(&vb.pp("conv5X5_1"), 0, spec(64, 16), leaky())?,
            conv5x5_2: conv_bn(&vb.pp("conv5X5_2"), 0, spec(16, 16), Activation::Relu)?,
            conv7x7_2: conv_bn(&vb.pp("conv7X7_2"), 0, spec(16, 16), leaky())?,
            // The checkpoint spells this one with a lower-case x.
            conv7x7_3: conv_bn(&vb.pp("conv7x7_3"), 0, spec(16, 16), Activation::Relu)?,
        })
    }
}

impl Module for Ssh {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let b3 = xs.apply(&self.conv3x3)?;
        let c5 = xs.apply(&self.conv5x5_1)?;
        let b5 = c5.apply(&self.conv5x5_2)?;
        let b7 = c5.apply(&self.conv7x7_2)?.apply(&self.conv7x7_3)?;
        Tensor::cat(&[b3, b5, b7], 1)
    }
}

/// The three heads of one kind (class, box or landmark): a 1x1 convolution per level whose
/// output is flattened to `B x (H * W * 2) x width`.
#[derive(Debug, Clone)]
struct Heads {
    convs: Vec<Conv2d>,
    width: usize,
}

impl Heads {
    fn new(vb: VarBuilder, width: usize) -> candle_core::Result<Self> {
        let convs = (0..3)
            .map(|i| {
                let spec = Conv2dSpec::new(64, 2 * width, 1, 1);
                Conv2d::load(vb.pp(i).pp("conv1x1"), spec, true, Activation::Identity)
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(Self { convs, width })
    }

    fn forward(&self, features: &[Tensor; 3]) -> candle_core::Result<Tensor> {
        let outs = features
            .iter()
            .zip(&self.convs)
            .map(|(f, conv)| {
                let o = f.apply(conv)?.permute((0, 2, 3, 1))?;
                let b = o.dim(0)?;
                o.contiguous()?.reshape((b, (), self.width))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Tensor::cat(&outs, 1)
    }
}

/// Raw outputs of the network for a batch: box offsets `B x N x 4`, face/background
/// probabilities `B x N x 2` (after softmax) and keypoint offsets `B x N x 10`.
#[derive(Debug, Clone)]
pub struct RawOutput {
    /// Box regressions.
    pub loc: Tensor,
    /// Softmax over (background, face).
    pub conf: Tensor,
    /// Keypoint regressions.
    pub landms: Tensor,
}

/// The RetinaFace network.
#[derive(Debug, Clone)]
pub struct RetinaFaceNet {
    body: Body,
    fpn: Fpn,
    ssh: [Ssh; 3],
    class_head: Heads,
    bbox_head: Heads,
    landmark_head: Heads,
}

impl RetinaFaceNet {
    /// Builds the network from a checkpoint in the PyTorch layout.
    pub fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            body: Body::new(vb.pp("body"))?,
            fpn: Fpn::new(vb.pp("fpn"))?,
            ssh: [
                Ssh::new(vb.pp("ssh1"))?,
                Ssh::new(vb.pp("ssh2"))?,
                Ssh::new(vb.pp("ssh3"))?,
            ],
            class_head: Heads::new(vb.pp("ClassHead"), 2)?,
            bbox_head: Heads::new(vb.pp("BboxHead"), 4)?,
            landmark_head: Heads::new(vb.pp("LandmarkHead"), 10)?,
        })
    }

    /// Runs the network on a normalised `B x 3 x H x W` batch.
    pub fn forward_raw(&self, xs: &Tensor) -> candle_core::Result<RawOutput> {
        let pyramid = self.fpn.forward(&self.body.forward(xs)?)?;
        let features = [
            pyramid[0].apply(&self.ssh[0])?,
            pyramid[1].apply(&self.ssh[1])?,
            pyramid[2].apply(&self.ssh[2])?,
        ];
        Ok(RawOutput {
            loc: self.bbox_head.forward(&features)?,
            conf: candle_nn::ops::softmax_last_dim(&self.class_head.forward(&features)?)?,
            landms: self.landmark_head.forward(&features)?,
        })
    }
}

impl Module for RetinaFaceNet {
    /// The face probabilities, `B x N`; use [`RetinaFaceNet::forward_raw`] for every output.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_raw(xs)?
            .conf
            .narrow(D::Minus1, 1, 1)?
            .squeeze(D::Minus1)
    }
}

/// Prior boxes `(cx, cy, w, h)` in input pixels for an input of `width` x `height`, in the order
/// of the network's outputs (level, row, column, anchor).
pub fn priors(width: usize, height: usize) -> Vec<[f32; 4]> {
    let mut out = Vec::new();
    for (step, sizes) in STEPS.iter().zip(MIN_SIZES) {
        let (rows, cols) = (height.div_ceil(*step), width.div_ceil(*step));
        for i in 0..rows {
            for j in 0..cols {
                for size in sizes {
                    let cx = (j as f32 + 0.5) * *step as f32;
                    let cy = (i as f32 + 0.5) * *step as f32;
                    out.push([cx, cy, size, size]);
                }
            }
        }
    }
    out
}

/// Decodes the raw outputs of one image (`N x 4`, `N x 2`, `N x 10` as flat rows) into
/// detections in original-image pixels: threshold, decode, top-k, NMS, keep-top-k.
pub fn decode(
    loc: &[f32],
    conf: &[f32],
    landms: &[f32],
    transform: &InputTransform,
    score_threshold: f32,
    nms_iou: f32,
) -> Vec<Detection> {
    let pri = priors(
        transform.input_width as usize,
        transform.input_height as usize,
    );
    let mut cands: Vec<(usize, f32)> = pri
        .iter()
        .enumerate()
        .filter_map(|(i, _)| conf.get(2 * i + 1).map(|&s| (i, s)))
        .filter(|&(_, s)| s > score_threshold)
        .collect();
    cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cands.truncate(TOP_K);
    let [v0, v1] = VARIANCES;
    let dets: Vec<Detection> = cands
        .iter()
        .filter_map(|&(i, score)| {
            let [pcx, pcy, pw, ph] = pri[i];
            let l = loc.get(4 * i..4 * i + 4)?;
            let cx = pcx + l[0] * v0 * pw;
            let cy = pcy + l[1] * v0 * ph;
            let (w, h) = (pw * (l[2] * v1).exp(), ph * (l[3] * v1).exp());
            let bbox = transform.box_to_original(&BBox::new(
                cx - w / 2.0,
                cy - h / 2.0,
                cx + w / 2.0,
                cy + h / 2.0,
            ));
            let k = landms.get(10 * i..10 * i + 10)?;
            let mut points = [Point::default(); 5];
            for (p, o) in points.iter_mut().zip(k.chunks_exact(2)) {
                *p = transform.to_original(Point::new(pcx + o[0] * v0 * pw, pcy + o[1] * v0 * ph));
            }
            Some(Detection {
                bbox,
                score,
                keypoints: Some(Keypoints5(points)),
                native_keypoints: points.to_vec(),
            })
        })
        .collect();
    let boxes: Vec<BBox> = dets.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = dets.iter().map(|d| d.score).collect();
    nms(&boxes, &scores, nms_iou)
        .into_iter()
        .take(KEEP_TOP_K)
        .map(|i| dets[i].clone())
        .collect()
}

/// The RetinaFace detector: network plus pre- and post-processing.
///
/// Keypoints: the workspace's 5-point layout ([`Keypoints5`]): eye on the image's left, eye on
/// the image's right, nose tip, mouth corner on the image's left, mouth corner on the image's
/// right. `native_keypoints` holds the same five points.
#[derive(Debug, Clone)]
pub struct RetinaFace {
    net: RetinaFaceNet,
}

impl RetinaFace {
    /// Loads the network's weights from `source`.
    pub fn new(source: &WeightsSource) -> Result<Self> {
        Ok(Self {
            net: WEIGHTS.build(source, &Device::Cpu, RetinaFaceNet::new)?,
        })
    }

    /// The network.
    pub fn net(&self) -> &RetinaFaceNet {
        &self.net
    }

    /// The network input for `img`: scaled down to `max_side` on its long side (never up), BGR,
    /// minus the mean, and the transform back to original pixels.
    pub fn preprocess(img: &RgbImage, max_side: u32) -> Result<(Tensor, InputTransform)> {
        let (w, h) = img.dimensions();
        let long = w.max(h);
        let resize = if long > max_side {
            let s = max_side as f64 / long as f64;
            Resize::Exact {
                width: ((w as f64 * s).round() as u32).max(1),
                height: ((h as f64 * s).round() as u32).max(1),
            }
        } else {
            Resize::Keep
        };
        Ok(image_to_tensor(img, resize, &NORMALIZATION, &Device::Cpu)?)
    }
}

impl FaceDetector for RetinaFace {
    fn name(&self) -> &'static str {
        DetectorKind::RetinaFace.name()
    }

    fn detect(&self, img: &RgbImage, opts: &DetectorOptions) -> Result<Vec<Detection>> {
        opts.validate()?;
        let (input, transform) = Self::preprocess(img, opts.max_side.unwrap_or(DEFAULT_MAX_SIDE))?;
        let raw = self.net.forward_raw(&input)?;
        let flat = |t: &Tensor| t.squeeze(0)?.flatten_all()?.to_vec1::<f32>();
        let dets = decode(
            &flat(&raw.loc)?,
            &flat(&raw.conf)?,
            &flat(&raw.landms)?,
            &transform,
            opts.score_threshold.unwrap_or(DEFAULT_SCORE),
            opts.nms_iou.unwrap_or(DEFAULT_NMS_IOU),
        );
        Ok(opts.finish(dets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prior_grid_of_a_small_input() {
        let p = priors(64, 32);
        // Level sizes: 8x4 at stride 8, 4x2 at 16, 2x1 at 32; two anchors each.
        assert_eq!(p.len(), 2 * (32 + 8 + 2));
        assert_eq!(p[0], [4.0, 4.0, 16.0, 16.0]);
        assert_eq!(p[1], [4.0, 4.0, 32.0, 32.0]);
        assert_eq!(p[2], [12.0, 4.0, 16.0, 16.0]);
        assert_eq!(p[64], [8.0, 8.0, 64.0, 64.0]);
        assert_eq!(p[p.len() - 1], [48.0, 16.0, 512.0, 512.0]);
    }

    #[test]
    fn zero_offsets_decode_to_the_prior() {
        let transform = InputTransform {
            scale_x: 0.5,
            scale_y: 0.5,
            offset_x: 0.0,
            offset_y: 0.0,
            input_width: 32,
            input_height: 32,
        };
        let n = priors(32, 32).len();
        let mut conf = vec![0.0; 2 * n];
        conf[1] = 0.9;
        let dets = decode(
            &vec![0.0; 4 * n],
            &conf,
            &vec![0.0; 10 * n],
            &transform,
            0.5,
            0.4,
        );
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].bbox, BBox::new(-8.0, -8.0, 24.0, 24.0));
        assert_eq!(dets[0].native_keypoints[4], Point::new(8.0, 8.0));
    }
}
