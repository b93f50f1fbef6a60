//! dlib's aligned face chips: `get_face_chip_details` and `extract_image_chip` for the
//! 5-point landmark layout of dlib's `shape_predictor_5_face_landmarks`.
//!
//! Coordinates follow dlib: a point `(x, y)` is in pixel-index units, the centre of pixel
//! `(i, j)` being `(i, j)` (not `(i + 0.5, j + 0.5)` as elsewhere in [`crate::geometry`]);
//! dlib's landmarks are used exactly as dlib returns them.
//!
//! [`chip_transform`] reproduces `get_face_chip_details` (the similarity fit of dlib's
//! normalised 5-point template onto the landmarks, then the chip rectangle and angle) and
//! returns the image-to-chip map of dlib's `get_mapping_to_chip`. [`extract_chip`] reproduces
//! `extract_image_chip`: when the chip is much smaller than the face, dlib first halves the
//! image region with its 5x5 Gaussian `pyramid_down<2>` until one more halving would make
//! the region smaller than the chip, then samples bilinearly (black outside the source,
//! values truncated to integers as dlib's `assign_pixel` does). The pyramid is reproduced,
//! with its integer arithmetic; the parity test checks the chips against dlib's Python
//! module. dlib's shortcut for a chip that needs neither rotation nor scaling (a plain
//! copy) is not reproduced: a bilinear sample at integer positions gives the same pixels.

use image::{Rgb, RgbImage};

use crate::geometry::{Affine2, Keypoints5, Point};
use crate::{Error, Result};

/// The five landmarks of dlib's `shape_predictor_5_face_landmarks`, in its order:
///
/// | index | point |
/// | --- | --- |
/// | 0 | outer corner of the eye on the image's right (the subject's left eye) |
/// | 1 | inner corner of that eye |
/// | 2 | outer corner of the eye on the image's left (the subject's right eye) |
/// | 3 | inner corner of that eye |
/// | 4 | base of the nose, at the top of the philtrum |
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DlibPoints5(pub [Point; 5]);

/// dlib's normalised 5-point face template (`get_face_chip_details`, 5-point branch), in
/// [`DlibPoints5`] order; the unit square is the chip without padding.
// Source: dlib/image_transforms/interpolation.h, get_face_chip_details.
pub const DLIB_TEMPLATE5: [[f64; 2]; 5] = [
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
];

/// The points of the [`Keypoints5`] layout (eye centres, nose tip, mouth corners) on dlib's
/// mean face, in the frame of [`DLIB_TEMPLATE5`]: eye centres are the means of the 68-point
/// mean shape's points 36-41 and 42-47, the nose tip is its point 30, the mouth corners its
/// points 48 and 54.
// Source: dlib/image_transforms/interpolation.h, get_face_chip_details, mean_face_shape_x/y.
pub const MEAN_FACE_KEYPOINTS5: [[f64; 2]; 5] = [
    [0.225491833, 0.215990333],
    [0.754761333, 0.215990333],
    [0.490127, 0.515625],
    [0.254149, 0.780233],
    [0.726104, 0.780233],
];

impl DlibPoints5 {
    /// dlib's 5 points estimated from the workspace's [`Keypoints5`] (an approximation).
    ///
    /// The two layouts mark different places (eye centres, nose tip and mouth corners against
    /// eye corners and the nose base), so the map goes through dlib's own mean face: the
    /// similarity that best carries [`MEAN_FACE_KEYPOINTS5`] onto the keypoints (Umeyama, least
    /// squares) is applied to [`DLIB_TEMPLATE5`]. A chip made from the result equals the chip
    /// dlib would make from landmarks lying exactly on its mean face; on a real face it differs
    /// by how far that face's proportions are from the mean and by the two landmark models'
    /// conventions. Measured on the 7 faces of the sample images (RetinaFace's keypoints against
    /// dlib's `shape_predictor_5` on the same faces): the points land 4-6 % of the eye-corner
    /// distance from dlib's, and the chip's face scale is 0.90-0.97 of dlib's (the face fills a
    /// little more of the chip), rotated by up to 6 degrees. Keypoints that all coincide give
    /// the template placed at the first point.
    pub fn from_keypoints5(k: &Keypoints5) -> DlibPoints5 {
        let mean: Vec<Point> = MEAN_FACE_KEYPOINTS5
            .iter()
            .map(|p| Point::new(p[0] as f32, p[1] as f32))
            .collect();
        let fit = Affine2::estimate_similarity(&mean, k.points())
            .unwrap_or(Affine2([[0.0, 0.0, k.0[0].x], [0.0, 0.0, k.0[0].y]]));
        DlibPoints5(DLIB_TEMPLATE5.map(|p| fit.apply(Point::new(p[0] as f32, p[1] as f32))))
    }

    /// The points as a slice.
    pub fn points(&self) -> &[Point] {
        &self.0
    }
}

/// dlib's `chip_details` of a square chip: a rectangle of the source image, rotated by `angle`
/// radians about its centre.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ChipDetails {
    rect: DRect,
    angle: f64,
}

/// An axis-aligned rectangle in dlib's `drectangle` convention (inclusive corners:
/// `width = right - left + 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct DRect {
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
}

impl DRect {
    fn area(&self) -> f64 {
        if self.left > self.right || self.top > self.bottom {
            0.0
        } else {
            (self.right - self.left + 1.0) * (self.bottom - self.top + 1.0)
        }
    }

    fn center(&self) -> (f64, f64) {
        (
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        )
    }

    /// `pyramid_down<2>::rect_down`: both corners through `p / 2 - (1.25, 0.75)`.
    // Source: dlib/image_transforms/image_pyramid.h, pyramid_down_2_1::point_down.
    fn down(&self) -> DRect {
        DRect {
            left: self.left / 2.0 - 1.25,
            top: self.top / 2.0 - 0.75,
            right: self.right / 2.0 - 1.25,
            bottom: self.bottom / 2.0 - 0.75,
        }
    }

    /// The corners top-left, top-right, bottom-left, bottom-right, rotated by `angle` about
    /// the centre (dlib's `rotate_point`).
    fn rotated_corners(&self, angle: f64) -> [(f64, f64); 4] {
        let (cx, cy) = self.center();
        let (s, c) = angle.sin_cos();
        [
            (self.left, self.top),
            (self.right, self.top),
            (self.left, self.bottom),
            (self.right, self.bottom),
        ]
        .map(|(x, y)| {
            let (dx, dy) = (x - cx, y - cy);
            (dx * c - dy * s + cx, dx * s + dy * c + cy)
        })
    }
}

/// dlib's `get_face_chip_details` for 5 points.
fn chip_details(points: &DlibPoints5, size: u32, padding: f32) -> Result<ChipDetails> {
    if size < 2 {
        return Err(Error::InvalidArgument(format!(
            "face chip size must be at least 2 pixels, got {size}"
        )));
    }
    if !(padding >= 0.0 && padding.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "face chip padding must be a finite number >= 0, got {padding}"
        )));
    }
    let (n, pad) = (size as f64, padding as f64);
    let chip_points: Vec<Point> = DLIB_TEMPLATE5
        .iter()
        .map(|p| {
            Point::new(
                ((pad + p[0]) / (2.0 * pad + 1.0) * n) as f32,
                ((pad + p[1]) / (2.0 * pad + 1.0) * n) as f32,
            )
        })
        .collect();
    if points
        .0
        .iter()
        .any(|p| !p.x.is_finite() || !p.y.is_finite())
    {
        return Err(Error::InvalidArgument(format!(
            "face landmarks must be finite, got {points:?}"
        )));
    }
    let tform = Affine2::estimate_similarity(&chip_points, points.points())?;
    let m = &tform.0;
    let (px, py) = (m[0][0] as f64, m[1][0] as f64);
    let angle = py.atan2(px);
    let scale = px.hypot(py);
    if scale.is_nan() || scale <= 1e-9 {
        return Err(Error::Degenerate(format!(
            "face landmarks {points:?} coincide: no face chip"
        )));
    }
    let centre = tform.apply(Point::new(size as f32 / 2.0, size as f32 / 2.0));
    // dlib's centered_drect(p, w, h) spans p -/+ (w - 1) / 2.
    let half = (n * scale - 1.0) / 2.0;
    let (cx, cy) = (centre.x as f64, centre.y as f64);
    Ok(ChipDetails {
        rect: DRect {
            left: cx - half,
            top: cy - half,
            right: cx + half,
            bottom: cy + half,
        },
        angle,
    })
}

/// The map from image pixels to the pixels of the `size` x `size` chip that dlib's
/// `get_face_chip_details(points, size, padding)` describes (dlib's `get_mapping_to_chip`):
/// the chip's corners `(0, 0)`, `(size - 1, 0)`, `(size - 1, size - 1)` are the rotated chip
/// rectangle's corners. `padding` is the margin around dlib's template as a fraction of the
/// face (dlib's default 0.2; `get_face_chip` uses 0.25).
pub fn chip_transform(points: &DlibPoints5, size: u32, padding: f32) -> Result<Affine2> {
    let d = chip_details(points, size, padding)?;
    let [tl, tr, _, br] = d.rect.rotated_corners(d.angle);
    let last = (size - 1) as f64;
    // The chip-to-image map sends (u, v) to tl + u (tr - tl) / last + v (br - tr) / last;
    // its inverse is the image-to-chip map.
    let (ax, ay) = ((tr.0 - tl.0) / last, (tr.1 - tl.1) / last);
    let (bx, by) = ((br.0 - tr.0) / last, (br.1 - tr.1) / last);
    Affine2([
        [ax as f32, bx as f32, tl.0 as f32],
        [ay as f32, by as f32, tl.1 as f32],
    ])
    .inverse()
}

/// The `size` x `size` face chip dlib's `extract_image_chip(img, get_face_chip_details(points,
/// size, padding))` (Python: `dlib.get_face_chip(img, det, size, padding)`) makes, pyramid
/// downsampling included; pixels outside the image are black.
pub fn extract_chip(
    img: &RgbImage,
    points: &DlibPoints5,
    size: u32,
    padding: f32,
) -> Result<RgbImage> {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::InvalidImage(format!("image is {w}x{h} pixels")));
    }
    let d = chip_details(points, size, padding)?;
    let chip_area = size as f64 * size as f64;

    // How many pyramid levels the chip may need, and the margin they need around it.
    let (mut depth, mut grow) = (0usize, 2.0f64);
    let mut r = d.rect.down();
    while r.area() > chip_area {
        r = r.down();
        depth += 1;
        grow = grow * 2.0 + 2.0;
    }
    let corners = d.rect.rotated_corners(d.angle);
    let fold = |f: fn(f64, f64) -> f64, init: f64, pick: fn(&(f64, f64)) -> f64| {
        corners.iter().map(pick).fold(init, f)
    };
    let grown = DRect {
        left: (fold(f64::min, f64::INFINITY, |p| p.0) - grow).max(0.0),
        top: (fold(f64::min, f64::INFINITY, |p| p.1) - grow).max(0.0),
        right: (fold(f64::max, f64::NEG_INFINITY, |p| p.0) + grow).min((w - 1) as f64),
        bottom: (fold(f64::max, f64::NEG_INFINITY, |p| p.1) + grow).min((h - 1) as f64),
    };
    // dlib rounds the region to whole pixels (drectangle -> rectangle: floor(x + 0.5)).
    let round = |v: f64| (v + 0.5).floor();
    let (bl, bt, br, bb) = (
        round(grown.left),
        round(grown.top),
        round(grown.right),
        round(grown.bottom),
    );
    if !(bl <= br && bt <= bb) {
        return Ok(RgbImage::new(size, size));
    }
    let region = image::imageops::crop_imm(
        img,
        bl as u32,
        bt as u32,
        (br - bl) as u32 + 1,
        (bb - bt) as u32 + 1,
    )
    .to_image();

    // The level to sample: the last one whose region is still larger than the chip.
    let mut rect = DRect {
        left: d.rect.left - bl,
        top: d.rect.top - bt,
        right: d.rect.right - bl,
        bottom: d.rect.bottom - bt,
    };
    let mut source = region;
    let mut level = 0usize;
    while rect.down().area() > chip_area && level < depth {
        rect = rect.down();
        source = pyramid_down(&source);
        level += 1;
    }

    let [tl, tr, bl_corner, _] = rect.rotated_corners(d.angle);
    let last = (size - 1) as f64;
    let (ux, uy) = ((tr.0 - tl.0) / last, (tr.1 - tl.1) / last);
    let (vx, vy) = ((bl_corner.0 - tl.0) / last, (bl_corner.1 - tl.1) / last);
    Ok(RgbImage::from_fn(size, size, |c, r| {
        let (c, r) = (c as f64, r as f64);
        bilinear(&source, tl.0 + c * ux + r * vx, tl.1 + c * uy + r * vy)
    }))
}

/// dlib's `interpolate_bilinear` for RGB: black unless all four neighbours are inside the
/// image, the weighted sum truncated to an integer.
fn bilinear(img: &RgbImage, x: f64, y: f64) -> Rgb<u8> {
    let (left, top) = (x.floor(), y.floor());
    let (w, h) = img.dimensions();
    if !(left >= 0.0 && top >= 0.0 && left + 1.0 < w as f64 && top + 1.0 < h as f64) {
        return Rgb([0, 0, 0]);
    }
    let (fx, fy) = (x - left, y - top);
    let (l, t) = (left as u32, top as u32);
    let (p00, p01) = (img.get_pixel(l, t).0, img.get_pixel(l + 1, t).0);
    let (p10, p11) = (img.get_pixel(l, t + 1).0, img.get_pixel(l + 1, t + 1).0);
    Rgb(std::array::from_fn(|k| {
        let v = (1.0 - fy) * ((1.0 - fx) * p00[k] as f64 + fx * p01[k] as f64)
            + fy * ((1.0 - fx) * p10[k] as f64 + fx * p11[k] as f64);
        v.clamp(0.0, 255.0) as u8
    }))
}

/// dlib's `pyramid_down<2>` for RGB images: a separable `[1 4 6 4 1]` filter, every other row
/// and column kept, integer division by 256; the output is `(w - 3) / 2` x `(h - 3) / 2`, and
/// empty for an input of 8 pixels or fewer on a side.
// Source: dlib/image_transforms/image_pyramid.h, pyramid_down_2_1 (RGB overload).
fn pyramid_down(img: &RgbImage) -> RgbImage {
    let (w, h) = img.dimensions();
    if w <= 8 || h <= 8 {
        return RgbImage::new(0, 0);
    }
    let (ow, oh) = ((w - 3) / 2, (h - 3) / 2);
    const TAPS: [u32; 5] = [1, 4, 6, 4, 1];
    let mut rows = vec![[0u32; 3]; (ow * h) as usize];
    for r in 0..h {
        for c in 0..ow {
            let mut acc = [0u32; 3];
            for (k, tap) in TAPS.iter().enumerate() {
                let p = img.get_pixel(2 * c + k as u32, r).0;
                for ch in 0..3 {
                    acc[ch] += tap * p[ch] as u32;
                }
            }
            rows[(r * ow + c) as usize] = acc;
        }
    }
    RgbImage::from_fn(ow, oh, |c, dr| {
        let mut acc = [0u32; 3];
        for (k, tap) in TAPS.iter().enumerate() {
            let t = rows[((2 * dr + k as u32) * ow + c) as usize];
            for ch in 0..3 {
                acc[ch] += tap * t[ch];
            }
        }
        Rgb(acc.map(|v| (v / 256) as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template_points(size: f32, padding: f32) -> DlibPoints5 {
        DlibPoints5(DLIB_TEMPLATE5.map(|p| {
            Point::new(
                (padding + p[0] as f32) / (2.0 * padding + 1.0) * size,
                (padding + p[1] as f32) / (2.0 * padding + 1.0) * size,
            )
        }))
    }

    #[test]
    fn template_landmarks_give_a_half_pixel_shift() {
        // Landmarks already on the chip template: scale 1, angle 0, centre (75, 75); dlib's
        // centred rectangle of width 150 spans 0.5..149.5, which becomes chip 0..149.
        let t = chip_transform(&template_points(150.0, 0.25), 150, 0.25).unwrap();
        let want = [[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]];
        for (got, want) in t.0.iter().flatten().zip(want.iter().flatten()) {
            assert!((got - want).abs() < 1e-4, "{t:?}");
        }
    }

    #[test]
    fn doubled_landmarks_halve_the_chip_scale() {
        let p = template_points(64.0, 0.2);
        let doubled = DlibPoints5(p.0.map(|q| Point::new(2.0 * q.x + 10.0, 2.0 * q.y)));
        let t = chip_transform(&doubled, 64, 0.2).unwrap();
        let a = doubled.0[4];
        let chip = t.apply(a);
        // Centre (74, 64), rectangle 10.5..137.5 x 0.5..127.5 onto chip 0..63.
        let s = 63.0 / 127.0;
        assert!(
            (t.0[0][0] - s).abs() < 1e-4 && t.0[0][1].abs() < 1e-5,
            "{t:?}"
        );
        let want = Point::new((a.x - 10.5) * s, (a.y - 0.5) * s);
        assert!((chip.x - want.x).abs() < 1e-2 && (chip.y - want.y).abs() < 1e-2);
    }

    #[test]
    fn keypoints_on_the_mean_face_map_to_the_template() {
        let s = 100.0f32;
        let k =
            Keypoints5(MEAN_FACE_KEYPOINTS5.map(|p| Point::new(p[0] as f32 * s, p[1] as f32 * s)));
        let d = DlibPoints5::from_keypoints5(&k);
        for (got, want) in d.0.iter().zip(DLIB_TEMPLATE5) {
            assert!((got.x - want[0] as f32 * s).abs() < 1e-3);
            assert!((got.y - want[1] as f32 * s).abs() < 1e-3);
        }
    }

    #[test]
    fn pyramid_down_of_a_constant_image_keeps_its_value_less_truncation() {
        let img = RgbImage::from_pixel(21, 12, Rgb([200, 16, 255]));
        let down = pyramid_down(&img);
        assert_eq!(down.dimensions(), (9, 4));
        // 256 * v / 256 is exact.
        assert!(down.pixels().all(|p| p.0 == [200, 16, 255]));
        assert_eq!(pyramid_down(&RgbImage::new(8, 40)).dimensions(), (0, 0));
    }

    #[test]
    fn bilinear_is_black_at_the_last_row_and_column() {
        let img = RgbImage::from_fn(4, 4, |x, y| Rgb([(10 * x + y) as u8, 0, 0]));
        assert_eq!(bilinear(&img, 1.5, 1.0).0[0], 16);
        assert_eq!(bilinear(&img, 2.999, 0.0).0[0], 29);
        assert_eq!(bilinear(&img, 3.0, 0.0).0, [0, 0, 0]);
        assert_eq!(bilinear(&img, -0.1, 0.0).0, [0, 0, 0]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let p = template_points(64.0, 0.2);
        assert!(chip_transform(&p, 1, 0.2).is_err());
        assert!(chip_transform(&p, 64, -0.1).is_err());
        assert!(extract_chip(&RgbImage::new(0, 3), &p, 64, 0.2).is_err());
        let same = DlibPoints5([Point::new(3.0, 3.0); 5]);
        assert!(extract_chip(&RgbImage::new(10, 10), &same, 64, 0.2).is_err());
    }
}
