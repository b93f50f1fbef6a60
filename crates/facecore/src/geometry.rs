//! Geometry in original-image pixels: points, boxes, the 5-point layout, IoU, non-maximum
//! suppression, similarity transforms and the affine warp that crops aligned face chips.
//!
//! Coordinates are `f32` pixels with the origin at the top-left corner of the top-left pixel:
//! the centre of pixel `(i, j)` is `(i + 0.5, j + 0.5)`.

use nalgebra::{Matrix2, Vector2};

use crate::{Error, Result};

/// A point in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Point {
    /// Horizontal coordinate, growing to the right.
    pub x: f32,
    /// Vertical coordinate, growing downwards.
    pub y: f32,
}

impl Point {
    /// A point at `(x, y)`.
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// A 3D point: `x`, `y` in image pixels like [`Point`], `z` a depth in the same pixel scale
/// (MediaPipe's convention: smaller is closer to the camera, relative to the face's centre).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Point3 {
    /// Horizontal coordinate, growing to the right.
    pub x: f32,
    /// Vertical coordinate, growing downwards.
    pub y: f32,
    /// Depth, growing away from the camera.
    pub z: f32,
}

impl Point3 {
    /// A point at `(x, y, z)`.
    pub const fn new(x: f32, y: f32, z: f32) -> Self {
        Self { x, y, z }
    }

    /// The point without its depth.
    pub const fn xy(&self) -> Point {
        Point::new(self.x, self.y)
    }
}

/// An axis-aligned box `[x0, y0, x1, y1]` in image pixels, `x0 <= x1`, `y0 <= y1`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BBox {
    /// Left edge.
    pub x0: f32,
    /// Top edge.
    pub y0: f32,
    /// Right edge.
    pub x1: f32,
    /// Bottom edge.
    pub y1: f32,
}

impl BBox {
    /// A box from its corners.
    pub const fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// Width in pixels (0 for an inverted box).
    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    /// Height in pixels (0 for an inverted box).
    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    /// Area in square pixels.
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// The centre.
    pub fn center(&self) -> Point {
        Point::new((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)
    }

    /// Intersection over union with `other`, in `[0, 1]`.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = BBox::new(
            self.x0.max(other.x0),
            self.y0.max(other.y0),
            self.x1.min(other.x1),
            self.y1.min(other.y1),
        )
        .area();
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }

    /// Whether `p` lies inside the box (edges included).
    pub fn contains(&self, p: Point) -> bool {
        p.x >= self.x0 && p.x <= self.x1 && p.y >= self.y0 && p.y <= self.y1
    }

    /// The box clipped to an image of `width` x `height` pixels.
    pub fn clip(&self, width: u32, height: u32) -> BBox {
        let (w, h) = (width as f32, height as f32);
        BBox::new(
            self.x0.clamp(0.0, w),
            self.y0.clamp(0.0, h),
            self.x1.clamp(0.0, w),
            self.y1.clamp(0.0, h),
        )
    }

    /// The smallest box holding every point (`None` for no points).
    pub fn enclosing(points: &[Point]) -> Option<BBox> {
        let first = points.first()?;
        Some(
            points
                .iter()
                .fold(BBox::new(first.x, first.y, first.x, first.y), |b, p| {
                    BBox::new(b.x0.min(p.x), b.y0.min(p.y), b.x1.max(p.x), b.y1.max(p.y))
                }),
        )
    }
}

/// The five facial keypoints every detector and aligner of the workspace shares, in this order:
///
/// | index | point |
/// | --- | --- |
/// | 0 | eye on the image's left (the subject's right eye in a frontal photo) |
/// | 1 | eye on the image's right (the subject's left eye) |
/// | 2 | nose tip |
/// | 3 | mouth corner on the image's left |
/// | 4 | mouth corner on the image's right |
///
/// This is the order of RetinaFace's output and of the ArcFace alignment template.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Keypoints5(pub [Point; 5]);

impl Keypoints5 {
    /// Index of the eye on the image's left.
    pub const LEFT_EYE: usize = 0;
    /// Index of the eye on the image's right.
    pub const RIGHT_EYE: usize = 1;
    /// Index of the nose tip.
    pub const NOSE: usize = 2;
    /// Index of the mouth corner on the image's left.
    pub const LEFT_MOUTH: usize = 3;
    /// Index of the mouth corner on the image's right.
    pub const RIGHT_MOUTH: usize = 4;

    /// The points as a slice.
    pub fn points(&self) -> &[Point] {
        &self.0
    }
}

/// Greedy non-maximum suppression. Returns the indices of the kept boxes, highest score first;
/// a box is dropped when its IoU with a kept box exceeds `iou_threshold`.
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut keep: Vec<usize> = Vec::new();
    for i in order {
        if keep
            .iter()
            .all(|&k| boxes[k].iou(&boxes[i]) <= iou_threshold)
        {
            keep.push(i);
        }
    }
    keep
}

/// A 2-D affine map `p -> A p + t`, stored row-major as `[[a, b, tx], [c, d, ty]]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine2(pub [[f32; 3]; 2]);

impl Affine2 {
    /// The identity map.
    pub const IDENTITY: Affine2 = Affine2([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);

    /// Maps a point.
    pub fn apply(&self, p: Point) -> Point {
        let m = &self.0;
        Point::new(
            m[0][0] * p.x + m[0][1] * p.y + m[0][2],
            m[1][0] * p.x + m[1][1] * p.y + m[1][2],
        )
    }

    /// The inverse map, or an error when the map is singular.
    pub fn inverse(&self) -> Result<Affine2> {
        let m = &self.0;
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        if det.abs() < 1e-12 || !det.is_finite() {
            return Err(Error::Degenerate(format!(
                "affine map with determinant {det} cannot be inverted"
            )));
        }
        let (a, b, c, d) = (m[1][1] / det, -m[0][1] / det, -m[1][0] / det, m[0][0] / det);
        Ok(Affine2([
            [a, b, -(a * m[0][2] + b * m[1][2])],
            [c, d, -(c * m[0][2] + d * m[1][2])],
        ]))
    }

    /// The similarity (rotation, uniform scale, translation) that maps `src` onto `dst` with the
    /// least squared error, by Umeyama's method (as `skimage.transform.SimilarityTransform`, which
    /// insightface uses for alignment). Needs at least two distinct points.
    pub fn estimate_similarity(src: &[Point], dst: &[Point]) -> Result<Affine2> {
        if src.len() != dst.len() || src.len() < 2 {
            return Err(Error::InvalidArgument(format!(
                "similarity estimation needs two equal lists of at least 2 points, got {} and {}",
                src.len(),
                dst.len()
            )));
        }
        let n = src.len() as f64;
        let v = |p: &Point| Vector2::new(p.x as f64, p.y as f64);
        let src_mean = src.iter().map(v).sum::<Vector2<f64>>() / n;
        let dst_mean = dst.iter().map(v).sum::<Vector2<f64>>() / n;
        let mut cov = Matrix2::zeros();
        let mut src_var = 0.0;
        for (s, d) in src.iter().zip(dst) {
            let (s, d) = (v(s) - src_mean, v(d) - dst_mean);
            cov += d * s.transpose();
            src_var += s.norm_squared();
        }
        cov /= n;
        src_var /= n;
        if src_var < 1e-12 || !src_var.is_finite() {
            return Err(Error::Degenerate(
                "similarity estimation: the source points coincide or are not finite".into(),
            ));
        }
        let svd = cov.svd(true, true);
        let (u, vt) = match (svd.u, svd.v_t) {
            (Some(u), Some(vt)) => (u, vt),
            _ => {
                return Err(Error::Degenerate(
                    "SVD failed in similarity estimation".into(),
                ))
            }
        };
        let mut sign = Vector2::new(1.0, 1.0);
        if cov.determinant() < 0.0 {
            sign[1] = -1.0;
        }
        let r = u * Matrix2::from_diagonal(&sign) * vt;
        let scale = svd.singular_values.dot(&sign) / src_var;
        let t = dst_mean - scale * r * src_mean;
        let m = scale * r;
        Ok(Affine2([
            [m[(0, 0)] as f32, m[(0, 1)] as f32, t[0] as f32],
            [m[(1, 0)] as f32, m[(1, 1)] as f32, t[1] as f32],
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_boxes() {
        let a = BBox::new(0., 0., 10., 10.);
        let b = BBox::new(5., 0., 15., 10.);
        assert!((a.iou(&b) - 50. / 150.).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(20., 20., 30., 30.)), 0.0);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let boxes = [
            BBox::new(0., 0., 10., 10.),
            BBox::new(1., 1., 11., 11.),
            BBox::new(50., 50., 60., 60.),
        ];
        assert_eq!(nms(&boxes, &[0.8, 0.9, 0.5], 0.4), vec![1, 2]);
        assert_eq!(nms(&boxes, &[0.8, 0.9, 0.5], 0.9), vec![1, 0, 2]);
    }

    #[test]
    fn similarity_maps_a_template_onto_itself_and_recovers_a_known_map() {
        let pts = [
            Point::new(38.29, 51.69),
            Point::new(73.53, 51.50),
            Point::new(56.02, 71.73),
            Point::new(41.54, 92.36),
            Point::new(70.72, 92.20),
        ];
        let id = Affine2::estimate_similarity(&pts, &pts).unwrap();
        for (r, e) in
            id.0.iter()
                .flatten()
                .zip(Affine2::IDENTITY.0.iter().flatten())
        {
            assert!((r - e).abs() < 1e-4, "{id:?}");
        }
        let (c, s) = (2.0 * 0.5f32.cos(), 2.0 * 0.5f32.sin());
        let known = Affine2([[c, -s, 10.0], [s, c, -3.0]]);
        let moved: Vec<Point> = pts.iter().map(|p| known.apply(*p)).collect();
        let est = Affine2::estimate_similarity(&pts, &moved).unwrap();
        for (r, e) in est.0.iter().flatten().zip(known.0.iter().flatten()) {
            assert!((r - e).abs() < 1e-3, "{est:?}");
        }
        let back = est.inverse().unwrap().apply(moved[2]);
        assert!((back.x - pts[2].x).abs() < 1e-3 && (back.y - pts[2].y).abs() < 1e-3);
    }

    #[test]
    fn degenerate_similarity_is_an_error() {
        let p = [Point::new(1., 1.); 3];
        assert!(Affine2::estimate_similarity(&p, &p).is_err());
        assert!(Affine2::estimate_similarity(&p[..1], &p[..1]).is_err());
    }
}
