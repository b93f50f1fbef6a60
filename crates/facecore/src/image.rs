//! From images to model input tensors, and from model coordinates back to image pixels.
//!
//! [`image_to_tensor`] resizes (stretch or letterbox, bilinear with half-pixel centres and no
//! antialiasing, as OpenCV's `INTER_LINEAR`), orders the channels (RGB or BGR), normalises with a
//! per-channel mean and standard deviation, and returns an NCHW f32 tensor together with the
//! [`InputTransform`] that maps every model-space coordinate back to original-image pixels.

use candle_core::{Device, Tensor};
use image::RgbImage;

use crate::geometry::{Affine2, BBox, Point};
use crate::{Error, Result};

/// The order of the colour channels a model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
}

/// How pixel values (0 to 255) become model inputs: `(pixel - mean) / std` per output channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Channel order of the tensor.
    pub order: ChannelOrder,
    /// Per-channel mean, in the tensor's channel order, in 0–255 units.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in the tensor's channel order, in 0–255 units.
    pub std: [f32; 3],
}

impl Normalization {
    /// RGB scaled to `[-1, 1]`: `x / 127.5 - 1`.
    pub const RGB_SIGNED_UNIT: Normalization = Normalization {
        order: ChannelOrder::Rgb,
        mean: [127.5; 3],
        std: [127.5; 3],
    };
}

/// How an image is brought to a model's input size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Keep the image's size.
    Keep,
    /// Stretch to exactly `width` x `height`.
    Exact {
        /// Target width in pixels.
        width: u32,
        /// Target height in pixels.
        height: u32,
    },
    /// Scale by `min(width / w, height / h)`, keeping the aspect ratio, and centre the result in
    /// a `width` x `height` canvas filled with `pad` (a pixel value in 0–255 units, before
    /// normalisation).
    Letterbox {
        /// Target width in pixels.
        width: u32,
        /// Target height in pixels.
        height: u32,
        /// Value of the padding pixels, 0–255 units.
        pad: f32,
    },
}

/// The map from original-image pixels to model-input pixels: `model = original * scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputTransform {
    /// Horizontal scale.
    pub scale_x: f32,
    /// Vertical scale.
    pub scale_y: f32,
    /// Horizontal offset in model pixels (letterbox padding on the left).
    pub offset_x: f32,
    /// Vertical offset in model pixels (letterbox padding at the top).
    pub offset_y: f32,
    /// Model input width.
    pub input_width: u32,
    /// Model input height.
    pub input_height: u32,
}

impl InputTransform {
    /// Maps a model-input point back to original-image pixels.
    pub fn to_original(&self, p: Point) -> Point {
        Point::new(
            (p.x - self.offset_x) / self.scale_x,
            (p.y - self.offset_y) / self.scale_y,
        )
    }

    /// Maps a model-input box back to original-image pixels.
    pub fn box_to_original(&self, b: &BBox) -> BBox {
        let p0 = self.to_original(Point::new(b.x0, b.y0));
        let p1 = self.to_original(Point::new(b.x1, b.y1));
        BBox::new(p0.x, p0.y, p1.x, p1.y)
    }
}

/// Converts `img` into a `1 x 3 x H x W` f32 tensor as described by `resize` and `norm`.
pub fn image_to_tensor(
    img: &RgbImage,
    resize: Resize,
    norm: &Normalization,
    device: &Device,
) -> Result<(Tensor, InputTransform)> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::InvalidImage(format!("image is {w}x{h} pixels")));
    }
    let (out_w, out_h, region) = match resize {
        Resize::Keep => (w, h, (0, 0, w, h)),
        Resize::Exact { width, height } => (width, height, (0, 0, width, height)),
        Resize::Letterbox { width, height, .. } => {
            let s = (width as f64 / w as f64).min(height as f64 / h as f64);
            let rw = ((w as f64 * s).round() as u32).clamp(1, width.max(1));
            let rh = ((h as f64 * s).round() as u32).clamp(1, height.max(1));
            (width, height, ((width - rw) / 2, (height - rh) / 2, rw, rh))
        }
    };
    if out_w == 0 || out_h == 0 {
        return Err(Error::InvalidArgument(format!(
            "model input size {out_w}x{out_h}"
        )));
    }
    let pad = match resize {
        Resize::Letterbox { pad, .. } => pad,
        _ => 0.0,
    };
    let (ox, oy, rw, rh) = region;
    let plane = (out_w * out_h) as usize;
    let mut data = vec![0f32; 3 * plane];
    let channel_of = |c: usize| match norm.order {
        ChannelOrder::Rgb => c,
        ChannelOrder::Bgr => 2 - c,
    };
    if (rw, rh) != (out_w, out_h) {
        for (c, chunk) in data.chunks_exact_mut(plane).enumerate() {
            chunk.fill((pad - norm.mean[c]) / norm.std[c]);
        }
    }
    if (rw, rh) == (w, h) {
        // Sampling at the image's own size reads each pixel with weight 0 on its neighbours,
        // which gives the pixel's value exactly: convert the pixels directly.
        for (c, chunk) in data.chunks_exact_mut(plane).enumerate() {
            let (src, mean, std) = (channel_of(c), norm.mean[c], norm.std[c]);
            let rows = chunk[oy as usize * out_w as usize..].chunks_mut(out_w as usize);
            for (row, pixels) in rows.zip(img.as_raw().chunks_exact(3 * w as usize)) {
                let row = &mut row[ox as usize..ox as usize + w as usize];
                for (v, p) in row.iter_mut().zip(pixels.chunks_exact(3)) {
                    *v = (p[src] as f32 - mean) / std;
                }
            }
        }
    } else {
        let xs = sample_positions(w as usize, rw as usize);
        let ys = sample_positions(h as usize, rh as usize);
        for (dy, &(y0, y1, fy)) in ys.iter().enumerate() {
            let row = (oy as usize + dy) * out_w as usize + ox as usize;
            for (dx, &(x0, x1, fx)) in xs.iter().enumerate() {
                // The indices are below the image's width and height, which are u32.
                let (x0, x1, y0, y1) = (x0 as u32, x1 as u32, y0 as u32, y1 as u32);
                let p00 = img.get_pixel(x0, y0).0;
                let p01 = img.get_pixel(x1, y0).0;
                let p10 = img.get_pixel(x0, y1).0;
                let p11 = img.get_pixel(x1, y1).0;
                for c in 0..3 {
                    let src = channel_of(c);
                    let top = p00[src] as f32 + (p01[src] as f32 - p00[src] as f32) * fx;
                    let bottom = p10[src] as f32 + (p11[src] as f32 - p10[src] as f32) * fx;
                    let v = top + (bottom - top) * fy;
                    data[c * plane + row + dx] = (v - norm.mean[c]) / norm.std[c];
                }
            }
        }
    }
    let tensor = Tensor::from_vec(data, (1, 3, out_h as usize, out_w as usize), device)?;
    let transform = InputTransform {
        scale_x: rw as f32 / w as f32,
        scale_y: rh as f32 / h as f32,
        offset_x: ox as f32,
        offset_y: oy as f32,
        input_width: out_w,
        input_height: out_h,
    };
    Ok((tensor, transform))
}

/// For each of `dst` output positions, the two source indices and the weight of the second, for
/// bilinear resampling with half-pixel centres from `src` positions (`src` non-zero); also the
/// taps of [`layers::resize_bilinear`](crate::layers::resize_bilinear).
pub(crate) fn sample_positions(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            let f = ((d as f64 + 0.5) * ratio - 0.5).clamp(0.0, (src - 1) as f64);
            let i0 = f.floor() as usize;
            let i1 = (i0 + 1).min(src - 1);
            (i0, i1, (f - i0 as f64) as f32)
        })
        .collect()
}

/// Crops a `width` x `height` chip from `img` through the affine map `src_to_dst` (source pixels
/// to chip pixels), with bilinear sampling and black outside the source. It follows OpenCV's
/// `warpAffine`: chip pixel `(i, j)` samples the source at `src_to_dst⁻¹(i, j)`, so keypoints
/// are used as the reference pipelines use them.
pub fn warp_affine(
    img: &RgbImage,
    src_to_dst: &Affine2,
    width: u32,
    height: u32,
) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::InvalidImage(format!("image is {w}x{h} pixels")));
    }
    let inv = src_to_dst.inverse()?;
    let row_len = width as usize * 3;
    let mut out = vec![0u8; row_len * height as usize];
    pulp::Arch::new().dispatch(Warp {
        img,
        inv,
        out: &mut out,
        width: width as usize,
    });
    RgbImage::from_raw(width, height, out).ok_or_else(|| {
        Error::InvalidArgument(format!("a {width}x{height} chip does not fit in memory"))
    })
}

/// The rows of [`warp_affine`], compiled for the widest instruction set the CPU has (`pulp`
/// dispatches at run time). Each row runs in three passes so that two of them vectorise: the
/// source positions and weights of all its pixels, then the gather of each pixel's 2x2 source
/// cell into one plane per corner and channel, then the blends and rounding.
struct Warp<'a> {
    img: &'a RgbImage,
    inv: Affine2,
    /// `width x height` RGB pixels, row-major.
    out: &'a mut [u8],
    width: usize,
}

impl pulp::WithSimd for Warp<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Warp {
            img,
            inv,
            out,
            width,
        } = self;
        let (w, h) = (img.width() as i64, img.height() as i64);
        let (src, stride) = (img.as_raw(), img.width() as usize * 3);
        let pixel = |offset: usize| -> [u8; 3] {
            let p = &src[offset..offset + 3];
            [p[0], p[1], p[2]]
        };
        let sample = |x: i64, y: i64| -> [u8; 3] {
            if x < 0 || y < 0 || x >= w || y >= h {
                [0; 3]
            } else {
                pixel(y as usize * stride + x as usize * 3)
            }
        };
        let (mut x0, mut y0) = (vec![0i64; width], vec![0i64; width]);
        let (mut fx, mut fy) = (vec![0f32; width], vec![0f32; width]);
        // corners[corner][channel][i]: the top-left, top-right, bottom-left and bottom-right
        // source pixels of chip pixel i.
        let mut corners = [[(); 3]; 4].map(|c| c.map(|()| vec![0u8; width]));
        // The blended row, one plane per channel, before it is interleaved into RGB.
        let mut channels = [(); 3].map(|()| vec![0u8; width]);
        for (j, row) in out.chunks_exact_mut((width * 3).max(1)).enumerate() {
            for (i, (((x0, y0), fx), fy)) in x0
                .iter_mut()
                .zip(&mut y0)
                .zip(&mut fx)
                .zip(&mut fy)
                .enumerate()
            {
                let s = inv.apply(Point::new(i as f32, j as f32));
                (*x0, *y0) = (floor(s.x), floor(s.y));
                (*fx, *fy) = (s.x - *x0 as f32, s.y - *y0 as f32);
            }
            for (i, (&x, &y)) in x0.iter().zip(&y0).enumerate() {
                // The whole cell inside the source (the usual case): read it in place.
                let cell = if (0..w - 1).contains(&x) && (0..h - 1).contains(&y) {
                    let o = y as usize * stride + x as usize * 3;
                    [
                        pixel(o),
                        pixel(o + 3),
                        pixel(o + stride),
                        pixel(o + stride + 3),
                    ]
                } else {
                    let (x1, y1) = (x.saturating_add(1), y.saturating_add(1));
                    [sample(x, y), sample(x1, y), sample(x, y1), sample(x1, y1)]
                };
                for (corner, values) in corners.iter_mut().zip(cell) {
                    for (plane, v) in corner.iter_mut().zip(values) {
                        plane[i] = v;
                    }
                }
            }
            let [a, b, c, d] = &corners;
            for (k, channel) in channels.iter_mut().enumerate() {
                let blends = a[k].iter().zip(&b[k]).zip(&c[k]).zip(&d[k]);
                let weights = fx.iter().zip(&fy);
                for (v, ((((&a, &b), &c), &d), (fx, fy))) in
                    channel.iter_mut().zip(blends.zip(weights))
                {
                    let [a, b, c, d] = [a, b, c, d].map(f32::from);
                    let top = a + (b - a) * fx;
                    let bottom = c + (d - c) * fx;
                    *v = round_to_u8(top + (bottom - top) * fy);
                }
            }
            let [r, g, b] = &channels;
            for (px, ((&r, &g), &b)) in row.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
                px.copy_from_slice(&[r, g, b]);
            }
        }
    }
}

/// `x.floor()` as an integer, without the libm call the baseline target makes of `floor`
/// (equal for every float: the truncation is exact, and a negative non-integer steps down).
#[inline(always)]
fn floor(x: f32) -> i64 {
    let t = x as i64;
    if (t as f32) > x {
        t - 1
    } else {
        t
    }
}

/// `v.round().clamp(0, 255) as u8` (halves away from zero) without the libm call: adding the
/// largest float below one half and truncating is LLVM's own lowering of `round`, and equals
/// it for every float (checked exhaustively over [-300, 300] when it was written).
#[inline(always)]
fn round_to_u8(v: f32) -> u8 {
    // Through i32, a single conversion instruction (the value is below 256, so the truncation
    // to u8 keeps it); a direct `as u8` adds its own saturation. NaN gives 0 either way.
    (v.clamp(0.0, 255.0) + 0.499_999_97) as i32 as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 10) as u8, (y * 10) as u8, 200]))
    }

    #[test]
    fn fast_floor_and_rounding_match_the_std_ones() {
        let mut v = -300f32;
        while v < 300. {
            for x in [
                v,
                v.next_up(),
                v.next_down(),
                v + 0.5,
                (v + 0.5).next_down(),
            ] {
                assert_eq!(floor(x), x.floor() as i64, "{x}");
                assert_eq!(round_to_u8(x), x.round().clamp(0., 255.) as u8, "{x}");
            }
            v += 0.25;
        }
        assert_eq!(round_to_u8(0.499_999_97), 0);
        assert_eq!(round_to_u8(0.5), 1);
        assert_eq!(round_to_u8(f32::NAN), 0);
    }

    #[test]
    fn keep_normalises_and_orders_channels() {
        let img = ramp(3, 2);
        let norm = Normalization {
            order: ChannelOrder::Bgr,
            mean: [100.0, 0.0, 0.0],
            std: [2.0, 1.0, 1.0],
        };
        let (t, tr) = image_to_tensor(&img, Resize::Keep, &norm, &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[1, 3, 2, 3]);
        let v: Vec<Vec<Vec<f32>>> = t.squeeze(0).unwrap().to_vec3().unwrap();
        assert_eq!(v[0][0], vec![50.0, 50.0, 50.0]);
        assert_eq!(v[1][1], vec![10.0, 10.0, 10.0]);
        assert_eq!(v[2][0], vec![0.0, 10.0, 20.0]);
        assert_eq!(tr.scale_x, 1.0);
    }

    #[test]
    fn letterbox_records_scale_and_offset() {
        let img = ramp(40, 20);
        let (t, tr) = image_to_tensor(
            &img,
            Resize::Letterbox {
                width: 16,
                height: 16,
                pad: 127.5,
            },
            &Normalization::RGB_SIGNED_UNIT,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(t.dims(), &[1, 3, 16, 16]);
        assert_eq!((tr.scale_x, tr.scale_y), (0.4, 0.4));
        assert_eq!((tr.offset_x, tr.offset_y), (0.0, 4.0));
        let p = tr.to_original(Point::new(8.0, 8.0));
        assert_eq!((p.x, p.y), (20.0, 10.0));
        let v: Vec<Vec<Vec<f32>>> = t.squeeze(0).unwrap().to_vec3().unwrap();
        assert_eq!(v[0][0][0], 0.0, "padding is 127.5 before normalisation");
    }

    #[test]
    fn letterbox_at_the_image_size_copies_pixels_between_the_bands() {
        let img = ramp(4, 2);
        let norm = Normalization {
            order: ChannelOrder::Rgb,
            mean: [10.0, 0.0, 0.0],
            std: [2.0, 1.0, 1.0],
        };
        let letterbox = Resize::Letterbox {
            width: 4,
            height: 4,
            pad: 0.0,
        };
        let (t, tr) = image_to_tensor(&img, letterbox, &norm, &Device::Cpu).unwrap();
        assert_eq!((tr.scale_x, tr.offset_y), (1.0, 1.0));
        let v: Vec<Vec<Vec<f32>>> = t.squeeze(0).unwrap().to_vec3().unwrap();
        for (y, row) in v[0].iter().enumerate() {
            let expected: Vec<f32> = (0..4)
                .map(|x| match y {
                    1 | 2 => (img.get_pixel(x, y as u32 - 1)[0] as f32 - 10.0) / 2.0,
                    _ => -5.0,
                })
                .collect();
            assert_eq!(row, &expected, "row {y}");
        }
        assert_eq!(
            v[1][2],
            vec![10.0; 4],
            "the image's second row, one band down"
        );
        assert_eq!(v[1][3], vec![0.0; 4]);
    }

    #[test]
    fn downscale_by_two_averages_pixel_pairs() {
        let img = ramp(4, 4);
        let norm = Normalization {
            order: ChannelOrder::Rgb,
            mean: [0.0; 3],
            std: [1.0; 3],
        };
        let (t, _) = image_to_tensor(
            &img,
            Resize::Exact {
                width: 2,
                height: 2,
            },
            &norm,
            &Device::Cpu,
        )
        .unwrap();
        let v: Vec<Vec<Vec<f32>>> = t.squeeze(0).unwrap().to_vec3().unwrap();
        assert_eq!(v[0][0], vec![5.0, 25.0]);
    }

    #[test]
    fn empty_image_is_an_error() {
        let img = RgbImage::new(0, 5);
        assert!(image_to_tensor(
            &img,
            Resize::Keep,
            &Normalization::RGB_SIGNED_UNIT,
            &Device::Cpu
        )
        .is_err());
        assert!(warp_affine(&img, &Affine2::IDENTITY, 4, 4).is_err());
    }

    #[test]
    fn warp_with_a_translation_shifts_pixels() {
        let img = ramp(8, 8);
        let shift = Affine2([[1.0, 0.0, -2.0], [0.0, 1.0, -1.0]]);
        let chip = warp_affine(&img, &shift, 4, 4).unwrap();
        assert_eq!(chip.get_pixel(0, 0).0, img.get_pixel(2, 1).0);
        assert_eq!(chip.get_pixel(3, 2).0, img.get_pixel(5, 3).0);
        let outside =
            warp_affine(&img, &Affine2([[1.0, 0.0, 20.0], [0.0, 1.0, 0.0]]), 4, 4).unwrap();
        assert_eq!(outside.get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn warp_matches_sampling_every_pixel_through_get_pixel() {
        let img = RgbImage::from_fn(37, 29, |x, y| {
            Rgb([(x * 7 + y * 3) as u8, (x * y) as u8, (255 - x * 5) as u8])
        });
        // Rotated, scaled and shifted so that the chip covers the inside, the borders and the
        // outside of the image.
        let (c, s) = (0.3f32.cos() * 1.3, 0.3f32.sin() * 1.3);
        let map = Affine2([[c, -s, 4.5], [s, c, -6.25]]);
        let got = warp_affine(&img, &map, 48, 40).unwrap();
        let inv = map.inverse().unwrap();
        let value = |x: i64, y: i64, k: usize| -> f32 {
            let inside = (0..37).contains(&x) && (0..29).contains(&y);
            if inside {
                img.get_pixel(x as u32, y as u32).0[k] as f32
            } else {
                0.
            }
        };
        for (i, j, px) in got.enumerate_pixels() {
            let p = inv.apply(Point::new(i as f32, j as f32));
            let (x0, y0) = (p.x.floor() as i64, p.y.floor() as i64);
            let (fx, fy) = (p.x - x0 as f32, p.y - y0 as f32);
            for k in 0..3 {
                let top = value(x0, y0, k) + (value(x0 + 1, y0, k) - value(x0, y0, k)) * fx;
                let bottom =
                    value(x0, y0 + 1, k) + (value(x0 + 1, y0 + 1, k) - value(x0, y0 + 1, k)) * fx;
                let want = (top + (bottom - top) * fy).round().clamp(0., 255.) as u8;
                assert_eq!(px.0[k], want, "pixel ({i}, {j}) channel {k}");
            }
        }
    }
}
