//! face-api.js's shared face network: the `FaceFeatureExtractor` backbone with a fully connected
//! head (`FaceProcessor`), and face-api's way of turning a face box into the network's input.
//!
//! face-api.js (Vincent Mühler, MIT; here the `@vladmandic/face-api@1.7.15` build) runs its
//! 68-point landmark net and its expression net on the same backbone, trained separately:
//!
//! - input `N x 3 x 112 x 112`: RGB `(pixel - [122.782, 117.001, 104.298]) / 255`;
//! - four dense blocks (`dense0` 3→32, `dense1` →64, `dense2` →128, `dense3` →256 channels,
//!   112 → 56 → 28 → 14 → 7 pixels). A block's first convolution strides by 2 (a dense 3x3 in
//!   `dense0`, a depthwise-separable one in the others), the next three are depthwise-separable
//!   3x3 convolutions whose inputs are the ReLU of the sum of all earlier outputs of the block;
//!   every convolution is TensorFlow `SAME`-padded with a bias after the pointwise step;
//! - a 7x7 average pool (the global mean) to `N x 256`, then a fully connected layer to the
//!   head's outputs (136 landmark coordinates or 7 expression logits).
//!
//! Preprocessing of a face box (`extractFaceTensors` and `NetInput.toBatchTensor` in face-api's
//! `src/dom/`): the box is clipped to the image and its corner and size floored
//! ([`FaceCrop::from_box`]); the crop is zero-padded to a square, centred
//! ([`FaceCrop::square_padding`]); the square is resized to 112x112 with TensorFlow's legacy
//! bilinear resampling (`align_corners = false`, `half_pixel_centers = false`), then normalised
//! ([`input_tensor`]).

use candle_core::{Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use image::RgbImage;

use crate::geometry::{BBox, Point};
use crate::layers::{Activation, Conv2d, Conv2dSpec, Linear, Padding};
use crate::{Error, Result};

/// Side of the square network input, in pixels (`FaceFeatureExtractor.forwardInput`).
pub const INPUT_SIZE: usize = 112;

/// Per-channel RGB mean subtracted before dividing by 255
/// (`src/faceFeatureExtractor/FaceFeatureExtractor.ts`).
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// Output channels of the four dense blocks (`src/faceFeatureExtractor/extractParams.ts`).
const DENSE_CHANNELS: [usize; 4] = [32, 64, 128, 256];

/// Features out of the backbone, into the fully connected head (`FaceLandmark68Net.ts`).
pub const FEATURES: usize = 256;

/// A depthwise-separable convolution as TensorFlow's `separableConv2d` + bias: a 3x3 depthwise
/// convolution without bias, then a pointwise one with the bias.
#[derive(Debug, Clone)]
struct SeparableConv {
    depthwise: Conv2d,
    pointwise: Conv2d,
}

impl SeparableConv {
    /// Loads `<prefix>/depthwise_filter`, `<prefix>/pointwise_filter` and `<prefix>/bias`.
    fn load(
        vb: &VarBuilder,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        stride: usize,
    ) -> candle_core::Result<Self> {
        let dw_spec = Conv2dSpec::depthwise(in_channels, 3, stride).with_padding(Padding::Same);
        let dw = vb.get(
            dw_spec.weight_shape(),
            &format!("{prefix}/depthwise_filter"),
        )?;
        let pw_spec = Conv2dSpec::new(in_channels, out_channels, 1, 1);
        let pw = vb.get(
            pw_spec.weight_shape(),
            &format!("{prefix}/pointwise_filter"),
        )?;
        let bias = vb.get(out_channels, &format!("{prefix}/bias"))?;
        Ok(Self {
            depthwise: Conv2d::from_tensors(dw, None, dw_spec, Activation::Identity)?,
            pointwise: Conv2d::from_tensors(pw, Some(bias), pw_spec, Activation::Identity)?,
        })
    }
}

impl Module for SeparableConv {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.apply(&self.depthwise)?.apply(&self.pointwise)
    }
}

/// One `denseBlock4` (`src/faceFeatureExtractor/denseBlock.ts`).
#[derive(Debug, Clone)]
struct DenseBlock {
    /// The strided first convolution, ReLU fused.
    conv0: Conv0,
    /// The three depthwise-separable convolutions after it.
    convs: [SeparableConv; 3],
}

/// The first convolution of a dense block: dense in `dense0`, separable in the others.
#[derive(Debug, Clone)]
enum Conv0 {
    Dense(Conv2d),
    Separable(SeparableConv),
}

impl DenseBlock {
    fn load(
        vb: &VarBuilder,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
    ) -> candle_core::Result<Self> {
        let conv0 = if in_channels == 3 {
            let spec = Conv2dSpec::new(in_channels, out_channels, 3, 2).with_padding(Padding::Same);
            let w = vb.get(spec.weight_shape(), &format!("{prefix}/conv0/filters"))?;
            let b = vb.get(out_channels, &format!("{prefix}/conv0/bias"))?;
            Conv0::Dense(Conv2d::from_tensors(
                w,
                Some(b),
                spec,
                Activation::Identity,
            )?)
        } else {
            let p = format!("{prefix}/conv0");
            Conv0::Separable(SeparableConv::load(vb, &p, in_channels, out_channels, 2)?)
        };
        let sep = |i: usize| {
            SeparableConv::load(
                vb,
                &format!("{prefix}/conv{i}"),
                out_channels,
                out_channels,
                1,
            )
        };
        Ok(Self {
            conv0,
            convs: [sep(1)?, sep(2)?, sep(3)?],
        })
    }
}

impl Module for DenseBlock {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let out1 = match &self.conv0 {
            Conv0::Dense(c) => xs.apply(c)?,
            Conv0::Separable(c) => xs.apply(c)?,
        }
        .relu()?;
        // TF.js sums the outputs as out1 + (out2 + (out3 + out4)); the order is kept.
        let (sum, relu) = (Activation::Identity, Activation::Relu);
        let out2 = out1.apply(&self.convs[0])?;
        let in3 = relu.apply_sum(&out1, &out2)?;
        let out3 = in3.apply(&self.convs[1])?;
        let in4 = relu.apply_sum(&out1, &sum.apply_sum(&out2, &out3)?)?;
        let out4 = in4.apply(&self.convs[2])?;
        let out34 = sum.apply_sum(&out3, &out4)?;
        relu.apply_sum(&out1, &sum.apply_sum(&out2, &out34)?)
    }
}

/// face-api's `FaceFeatureExtractor`: four dense blocks and a global average pool, mapping a
/// normalised `N x 3 x 112 x 112` tensor to `N x 256` features.
#[derive(Debug, Clone)]
pub struct FaceFeatureExtractor {
    blocks: Vec<DenseBlock>,
}

impl FaceFeatureExtractor {
    /// Loads `dense0/…` to `dense3/…` (the manifest's names) from `vb`.
    pub fn new(vb: &VarBuilder) -> candle_core::Result<Self> {
        let mut in_channels = 3;
        let mut blocks = Vec::with_capacity(DENSE_CHANNELS.len());
        for (i, &out_channels) in DENSE_CHANNELS.iter().enumerate() {
            blocks.push(DenseBlock::load(
                vb,
                &format!("dense{i}"),
                in_channels,
                out_channels,
            )?);
            in_channels = out_channels;
        }
        Ok(Self { blocks })
    }
}

impl Module for FaceFeatureExtractor {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = xs.clone();
        for block in &self.blocks {
            out = out.apply(block)?;
        }
        // avgPool 7x7, stride 2, VALID on the 7x7 map of a 112 input: the mean over the plane.
        out.mean(D::Minus1)?.mean(D::Minus1)
    }
}

/// face-api's `FaceProcessor`: the feature extractor followed by the fully connected layer `fc`
/// (`fc/weights`, `fc/bias`), mapping `N x 3 x 112 x 112` to `N x outputs` (before any softmax).
#[derive(Debug, Clone)]
pub struct FaceProcessor {
    extractor: FaceFeatureExtractor,
    fc: Linear,
}

impl FaceProcessor {
    /// Loads the backbone and an `fc` layer with `outputs` outputs from `vb`.
    pub fn new(vb: &VarBuilder, outputs: usize) -> candle_core::Result<Self> {
        let extractor = FaceFeatureExtractor::new(vb)?;
        let weight = vb.get((outputs, FEATURES), "fc/weights")?;
        let bias = vb.get(outputs, "fc/bias")?;
        Ok(Self {
            extractor,
            fc: Linear::new(weight, Some(bias))?,
        })
    }
}

impl Module for FaceProcessor {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        crate::threads::by_image(xs, |xs| xs.apply(&self.extractor)?.apply(&self.fc))
    }
}

/// The pixel region face-api cuts out of the image for one face box: the box clipped to the
/// image, with corner and size floored (`Box.clipAtImageBorders` in `src/classes/Box.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaceCrop {
    /// Left column, in image pixels.
    pub x: u32,
    /// Top row, in image pixels.
    pub y: u32,
    /// Width in pixels (at least 1).
    pub width: u32,
    /// Height in pixels (at least 1).
    pub height: u32,
}

impl FaceCrop {
    /// The crop of `bbox` in an image of `image_width` x `image_height` pixels; an error when
    /// nothing of the box lies inside the image or a coordinate is not finite (face-api drops
    /// such boxes silently).
    pub fn from_box(bbox: &BBox, image_width: u32, image_height: u32) -> Result<FaceCrop> {
        let coords = [bbox.x0, bbox.y0, bbox.x1, bbox.y1];
        if coords.iter().any(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "face box {bbox:?} has a non-finite coordinate"
            )));
        }
        let (w, h) = (image_width as f64, image_height as f64);
        let x = (bbox.x0 as f64).max(0.0);
        let y = (bbox.y0 as f64).max(0.0);
        let width = (bbox.x1 as f64 - x).min(w - x).floor();
        let height = (bbox.y1 as f64 - y).min(h - y).floor();
        let (x, y) = (x.floor(), y.floor());
        if width < 1.0 || height < 1.0 || x >= w || y >= h {
            return Err(Error::InvalidArgument(format!(
                "face box {bbox:?} leaves no pixel of the {image_width}x{image_height} image"
            )));
        }
        Ok(FaceCrop {
            x: x as u32,
            y: y as u32,
            width: width as u32,
            height: height as u32,
        })
    }

    /// The zero padding `(left, top, side)` that centres the crop in a square of `side` pixels
    /// (`padToSquare(…, isCenterImage = true)` in `src/ops/padToSquare.ts`): of an odd
    /// difference, the extra pixel goes after the crop (right or bottom).
    pub fn square_padding(&self) -> (u32, u32, u32) {
        let side = self.width.max(self.height);
        let diff = side - self.width.min(self.height);
        // Math.round(diff * 0.5) is appended; the rest is prepended.
        let before = diff - diff.div_ceil(2);
        if self.height > self.width {
            (before, 0, side)
        } else {
            (0, before, side)
        }
    }

    /// Maps a network output point (`x`, `y` in `[0, 1]` of the 112x112 input) back to image
    /// pixels, as `FaceLandmark68NetBase.postProcess` (`src/faceLandmarkNet/`) followed by the
    /// crop's offset. face-api assumes a symmetric padding of `|w - h| / 2` here, which differs
    /// from [`square_padding`](Self::square_padding) by half a padded pixel for odd differences;
    /// this is kept. face-api then shifts by the unclipped, unfloored box corner; this adds the
    /// crop's corner, where the crop's pixels come from.
    pub fn to_image(&self, x: f32, y: f32) -> Point {
        let size = INPUT_SIZE as f64;
        let (w, h) = (self.width as f64, self.height as f64);
        let scale = size / w.max(h);
        let (sw, sh) = (w * scale, h * scale);
        let pad_x = if sw < sh { (sw - sh).abs() / 2.0 } else { 0.0 };
        let pad_y = if sh < sw { (sw - sh).abs() / 2.0 } else { 0.0 };
        // TF.js evaluates this in f32 tensors: output * 112 - padding, divided by the size.
        let rel_x = (x * size as f32 - pad_x as f32) / sw as f32;
        let rel_y = (y * size as f32 - pad_y as f32) / sh as f32;
        Point::new(
            (rel_x as f64 * w + self.x as f64) as f32,
            (rel_y as f64 * h + self.y as f64) as f32,
        )
    }
}

/// For each of `dst` output positions, the two source indices and the weight of the second, for
/// TensorFlow's legacy bilinear resize (`resizeBilinear` with `alignCorners = false`,
/// `halfPixelCenters = false`, tfjs-backend-cpu `ResizeBilinear.ts`): output `i` samples source
/// `i * src / dst`.
fn legacy_bilinear_taps(src: usize, dst: usize) -> Vec<(usize, usize, f64)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|i| {
            let f = ratio * i as f64;
            let lo = f.floor().max(0.0);
            let hi = (f.ceil() as usize).min(src.saturating_sub(1));
            (lo as usize, hi, f - lo)
        })
        .collect()
}

/// The face of `crop` as face-api feeds it to its networks, before normalisation: zero-padded to
/// a centred square and resized to 112x112, as `112 * 112 * 3` RGB values (HWC, 0–255 scale,
/// not rounded).
pub fn face_pixels(img: &RgbImage, crop: &FaceCrop) -> Result<Vec<f32>> {
    let (iw, ih) = img.dimensions();
    if crop.width == 0
        || crop.height == 0
        || crop.x.saturating_add(crop.width) > iw
        || crop.y.saturating_add(crop.height) > ih
    {
        return Err(Error::InvalidArgument(format!(
            "face crop {crop:?} exceeds the {iw}x{ih} image"
        )));
    }
    let (left, top, side) = crop.square_padding();
    // The padded square's pixel (px, py), zero outside the crop.
    let padded = |px: usize, py: usize| -> [f64; 3] {
        let (cx, cy) = (px as i64 - left as i64, py as i64 - top as i64);
        if cx < 0 || cy < 0 || cx >= crop.width as i64 || cy >= crop.height as i64 {
            return [0.0; 3];
        }
        let p = img.get_pixel(crop.x + cx as u32, crop.y + cy as u32).0;
        [p[0] as f64, p[1] as f64, p[2] as f64]
    };
    let taps = legacy_bilinear_taps(side as usize, INPUT_SIZE);
    let mut out = Vec::with_capacity(INPUT_SIZE * INPUT_SIZE * 3);
    for &(y0, y1, fy) in &taps {
        for &(x0, x1, fx) in &taps {
            let (tl, tr, bl, br) = (
                padded(x0, y0),
                padded(x1, y0),
                padded(x0, y1),
                padded(x1, y1),
            );
            for c in 0..3 {
                let top = tl[c] + (tr[c] - tl[c]) * fx;
                let bottom = bl[c] + (br[c] - bl[c]) * fx;
                out.push((top + (bottom - top) * fy) as f32);
            }
        }
    }
    Ok(out)
}

/// The `N x 3 x 112 x 112` network input for the faces `crops` of `img`: [`face_pixels`] of each,
/// normalised as `(value - MEAN_RGB) / 255` in f32, in one batch.
pub fn input_tensor(img: &RgbImage, crops: &[FaceCrop], device: &Device) -> Result<Tensor> {
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut data = vec![0f32; crops.len() * 3 * plane];
    for (crop, dst) in crops.iter().zip(data.chunks_exact_mut(3 * plane)) {
        let hwc = face_pixels(img, crop)?;
        for (i, px) in hwc.chunks_exact(3).enumerate() {
            for c in 0..3 {
                dst[c * plane + i] = (px[c] - MEAN_RGB[c]) / 255.0;
            }
        }
    }
    Ok(Tensor::from_vec(
        data,
        (crops.len(), 3, INPUT_SIZE, INPUT_SIZE),
        device,
    )?)
}

/// The crops of the face boxes `boxes` of `img` ([`FaceCrop::from_box`]) and their network input
/// ([`input_tensor`]), one batch; an error when a box has no pixel inside the image.
pub fn face_batch(
    img: &RgbImage,
    boxes: &[BBox],
    device: &Device,
) -> Result<(Tensor, Vec<FaceCrop>)> {
    let (w, h) = img.dimensions();
    let crops = boxes
        .iter()
        .map(|b| FaceCrop::from_box(b, w, h))
        .collect::<Result<Vec<_>>>()?;
    Ok((input_tensor(img, &crops, device)?, crops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn crop_is_clipped_and_floored() {
        let c = FaceCrop::from_box(&BBox::new(-5.5, 10.7, 50.2, 40.9), 40, 100).unwrap();
        // x = max(-5.5, 0) = 0, width = min(50.2 - 0, 40 - 0) = 40; y = 10.7 -> 10,
        // height = floor(40.9 - 10.7) = 30.
        assert_eq!(
            c,
            FaceCrop {
                x: 0,
                y: 10,
                width: 40,
                height: 30
            }
        );
        assert!(FaceCrop::from_box(&BBox::new(50., 0., 60., 10.), 40, 100).is_err());
        assert!(FaceCrop::from_box(&BBox::new(0., 0., f32::NAN, 10.), 40, 100).is_err());
    }

    #[test]
    fn square_padding_puts_the_odd_pixel_after() {
        let crop = |width, height| FaceCrop {
            x: 0,
            y: 0,
            width,
            height,
        };
        // diff 5: Math.round(2.5) = 3 appended, 2 prepended.
        assert_eq!(crop(10, 15).square_padding(), (2, 0, 15));
        assert_eq!(crop(15, 10).square_padding(), (0, 2, 15));
        assert_eq!(crop(10, 14).square_padding(), (2, 0, 14));
        assert_eq!(crop(7, 7).square_padding(), (0, 0, 7));
    }

    #[test]
    fn legacy_bilinear_samples_at_i_times_ratio() {
        let taps = legacy_bilinear_taps(224, 112);
        assert_eq!(taps[3], (6, 6, 0.0));
        let taps = legacy_bilinear_taps(56, 112);
        assert_eq!(taps[3], (1, 2, 0.5));
        assert_eq!(taps[111], (55, 55, 0.5));
    }

    #[test]
    fn face_pixels_pad_and_resize() {
        // A 224-wide, 112-tall crop: 56 rows of zeros above (and below), then halved.
        let img = RgbImage::from_fn(300, 200, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let crop = FaceCrop {
            x: 10,
            y: 20,
            width: 224,
            height: 112,
        };
        let px = face_pixels(&img, &crop).unwrap();
        let at = |x: usize, y: usize| &px[(y * INPUT_SIZE + x) * 3..(y * INPUT_SIZE + x) * 3 + 3];
        assert_eq!(at(5, 0), &[0.0, 0.0, 0.0]);
        // Output row 28 samples padded row 56, the crop's first row (image row 20); output
        // column 5 samples crop column 10 (image column 20).
        assert_eq!(at(5, 28), &[20.0, 20.0, 7.0]);
        assert_eq!(at(5, 29), &[20.0, 22.0, 7.0]);
        let too_big = FaceCrop { x: 100, ..crop };
        assert!(face_pixels(&img, &too_big).is_err());
    }

    #[test]
    fn output_points_map_through_the_padding() {
        let crop = FaceCrop {
            x: 100,
            y: 50,
            width: 50,
            height: 100,
        };
        // The input's centre is the crop's centre.
        let p = crop.to_image(0.5, 0.5);
        assert!(
            (p.x - 125.0).abs() < 1e-4 && (p.y - 100.0).abs() < 1e-4,
            "{p:?}"
        );
        // x = 0.25 of the input is the left edge of the crop (25 padded pixels of 100).
        let p = crop.to_image(0.25, 0.0);
        assert!(
            (p.x - 100.0).abs() < 1e-4 && (p.y - 50.0).abs() < 1e-4,
            "{p:?}"
        );
    }
}
