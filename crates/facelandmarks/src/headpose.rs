//! Head pose from the FaceMesh landmarks, computed as MediaPipe's face geometry pipeline
//! computes its facial transformation matrix.
//!
//! MediaPipe's Face Landmarker fits a canonical face model (468 vertices in centimetres) to the
//! 468 mesh landmarks of a face (`mediapipe/tasks/cc/vision/face_geometry/libs/
//! geometry_pipeline.cc`, `procrustes_solver.cc`). [`HeadPoseEstimator::estimate`] does the
//! same, step for step:
//!
//! 1. the landmarks (image pixels; the 10 iris points, if present, are ignored) are normalised
//!    by the image size and placed on the near plane of a virtual perspective camera
//!    (vertical field of view 63°, near plane at 1 cm: the Face Landmarker's default
//!    environment);
//! 2. a weighted orthogonal Procrustes fit (rotation, uniform scale, translation; Akca 2003)
//!    of the canonical model onto those points gives a first scale;
//! 3. the points are unprojected to 3D with their depth rescaled by that scale, and a second fit
//!    refines the scale;
//! 4. the points are unprojected with the product of both scales (the *metric landmarks*, in
//!    cm), and a last fit gives the 4x4 transform from the canonical model to the camera.
//!
//! The landmark weights (33 landmarks of the rigid parts of the face) and the canonical model
//! come from MediaPipe's `geometry_pipeline_metadata_landmarks.binarypb`, converted by
//! `tools/convert/face_geometry.py` into `weights/face_geometry.safetensors`.
//!
//! # Frames and angle conventions
//!
//! The camera frame is MediaPipe's metric frame: right-handed, x towards the image's right, y
//! towards the image's top, z from the face towards the camera (the camera sits at the origin
//! and looks along −z); units are centimetres. The canonical model has the same axes for a
//! face looking into the camera: x towards the subject's left (the image's right), y up, z out
//! of the face. [`HeadPose::transform`] maps canonical-model points into the camera frame
//! (`p_camera = transform · [p_model, 1]`), as MediaPipe's `facial_transformation_matrixes`.
//!
//! The angles, in degrees, decompose the rotation as `R = Rz(roll) · Ry(yaw) · Rx(−pitch)`
//! (rotations about the camera's axes, pitch applied first, roll last), so that:
//!
//! * **yaw** > 0: the subject turns their head to their left, the nose moves towards the
//!   image's right;
//! * **pitch** > 0: the subject looks up, the nose moves towards the image's top;
//! * **roll** > 0: the head tilts towards the subject's right shoulder, that is, the face turns
//!   counter-clockwise in the image as displayed.
//!
//! A face looking straight along the camera's axis has yaw = pitch = roll = 0. Mirroring an
//! image negates yaw and roll and keeps pitch; rotating the camera about its axis by θ adds θ to
//! the roll and keeps yaw and pitch (roll is applied last for that reason).

use facecore::geometry::Point3;
use facecore::weights::{WeightFile, WeightsSource};
use nalgebra::{Matrix3, Matrix3xX, Vector3};

use crate::{Error, Result};

/// The canonical face model and Procrustes weights (`tools/convert/face_geometry.py`).
pub const FACE_GEOMETRY_WEIGHTS: WeightFile = WeightFile {
    name: "face_geometry.safetensors",
    embedded: include_bytes!("../../../weights/face_geometry.safetensors"),
};

/// Number of landmarks the canonical model has, and the pipeline uses (the mesh without iris).
pub const CANONICAL_LANDMARKS: usize = 468;

/// Vertical field of view of the virtual camera, in degrees
/// (`face_geometry_from_landmarks_graph.cc`, the Face Landmarker's default environment).
pub const VERTICAL_FOV_DEGREES: f64 = 63.0;

/// Distance of the virtual camera's near plane, in centimetres
/// (`face_geometry_from_landmarks_graph.cc`).
pub const NEAR_CM: f64 = 1.0;

/// Values of each vertex in the canonical mesh's vertex buffer: position x, y, z and texture
/// u, v (`mesh_3d.proto`, `VERTEX_PT`).
const VERTEX_SIZE: usize = 5;

/// A landmark set whose normalised points all lie within this distance of their mean is
/// rejected (`geometry_pipeline.cc`, `kIsScreenLandmarkListTooCompactThreshold`).
const TOO_COMPACT: f64 = 1e-3;

/// Smallest accepted norm or denominator in the Procrustes solver (`procrustes_solver.cc`,
/// `kAbsoluteErrorEps`).
const ABSOLUTE_ERROR_EPS: f64 = 1e-9;

/// Smallest accepted ratio of the smaller to the larger principal variance of the weighted
/// landmarks in the image: below it the points are (nearly) collinear and the rotation about
/// their line is undetermined. Real faces, even in profile, are far above it.
const MIN_SPREAD_RATIO: f64 = 1e-4;

/// The pose of a head in the camera frame (see the [module documentation](self) for the frame
/// and the sign of each angle).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeadPose {
    /// The rotation from the canonical face model to the camera frame (orthonormal,
    /// row-major: `rotation[row][column]`).
    pub rotation: [[f32; 3]; 3],
    /// MediaPipe's facial transformation matrix, row-major: scale · rotation in the top-left
    /// 3x3 block, the translation of the model's origin in centimetres in the last column.
    pub transform: [[f32; 4]; 4],
    /// Yaw in degrees: positive when the subject turns to their left (nose towards the image's
    /// right).
    pub yaw: f32,
    /// Pitch in degrees: positive when the subject looks up.
    pub pitch: f32,
    /// Roll in degrees: positive when the head tilts towards the subject's right shoulder
    /// (counter-clockwise in the displayed image).
    pub roll: f32,
}

impl HeadPose {
    /// The pose of a facial transformation matrix (row-major, MediaPipe's
    /// `facial_transformation_matrixes` layout): the top-left 3x3 block must be a uniformly
    /// scaled rotation, as MediaPipe's is; it is divided by its scale (the first column's norm).
    pub fn from_transform(transform: [[f32; 4]; 4]) -> Result<Self> {
        let scale = transform
            .iter()
            .take(3)
            .map(|r| r[0] * r[0])
            .sum::<f32>()
            .sqrt();
        if !(scale.is_finite() && scale > 0.0) || transform.iter().flatten().any(|v| !v.is_finite())
        {
            return Err(Error::InvalidArgument(format!(
                "transform {transform:?} is not a finite scaled rotation"
            )));
        }
        let rotation = std::array::from_fn(|i| std::array::from_fn(|j| transform[i][j] / scale));
        let (yaw, pitch, roll) = rotation_to_angles(&rotation);
        Ok(Self {
            rotation,
            transform,
            yaw,
            pitch,
            roll,
        })
    }

    /// The unit vector pointing out of the face (the canonical model's +z axis) in the camera
    /// frame: `(0, 0, 1)` for a face looking along the camera's axis into the camera.
    pub fn forward(&self) -> [f32; 3] {
        let r = &self.rotation;
        [r[0][2], r[1][2], r[2][2]]
    }
}

/// Yaw, pitch and roll in degrees of a rotation matrix (row-major), in this module's
/// convention `R = Rz(roll) · Ry(yaw) · Rx(−pitch)`. Yaw lies in [−90°, 90°].
pub fn rotation_to_angles(rotation: &[[f32; 3]; 3]) -> (f32, f32, f32) {
    let r = rotation;
    let yaw = (-r[2][0]).clamp(-1.0, 1.0).asin();
    let pitch = -r[2][1].atan2(r[2][2]);
    let roll = r[1][0].atan2(r[0][0]);
    (yaw.to_degrees(), pitch.to_degrees(), roll.to_degrees())
}

/// The rotation matrix (row-major) of yaw, pitch and roll in degrees, in this module's
/// convention `R = Rz(roll) · Ry(yaw) · Rx(−pitch)`; the inverse of [`rotation_to_angles`].
pub fn angles_to_rotation(yaw: f32, pitch: f32, roll: f32) -> [[f32; 3]; 3] {
    let m = angles_matrix(yaw.into(), pitch.into(), roll.into());
    std::array::from_fn(|i| std::array::from_fn(|j| m[(i, j)] as f32))
}

fn angles_matrix(yaw: f64, pitch: f64, roll: f64) -> Matrix3<f64> {
    let rz = nalgebra::Rotation3::from_axis_angle(&Vector3::z_axis(), roll.to_radians());
    let ry = nalgebra::Rotation3::from_axis_angle(&Vector3::y_axis(), yaw.to_radians());
    let rx = nalgebra::Rotation3::from_axis_angle(&Vector3::x_axis(), -pitch.to_radians());
    (rz * ry * rx).into_inner()
}

/// A similarity transform `target ≈ scale · rotation · source + translation`.
#[derive(Debug, Clone, Copy)]
struct Similarity {
    rotation: Matrix3<f64>,
    scale: f64,
    translation: Vector3<f64>,
}

/// The perspective camera's near-plane rectangle, in centimetres (`geometry_pipeline.cc`,
/// `PerspectiveCameraFrustum`).
#[derive(Debug, Clone, Copy)]
struct Frustum {
    left: f64,
    bottom: f64,
    width: f64,
    height: f64,
    near: f64,
}

impl Frustum {
    fn new(image_width: u32, image_height: u32) -> Self {
        let height = 2.0 * NEAR_CM * (0.5 * VERTICAL_FOV_DEGREES.to_radians()).tan();
        let width = f64::from(image_width) * height / f64::from(image_height);
        Self {
            left: -0.5 * width,
            bottom: -0.5 * height,
            width,
            height,
            near: NEAR_CM,
        }
    }
}

/// Estimates [`HeadPose`]s by fitting MediaPipe's canonical face model to FaceMesh landmarks.
#[derive(Debug, Clone)]
pub struct HeadPoseEstimator {
    /// Canonical model positions in centimetres, one column per landmark.
    canonical: Matrix3xX<f64>,
    /// Square roots of the Procrustes landmark weights, one per landmark.
    sqrt_weights: Vec<f64>,
}

impl HeadPoseEstimator {
    /// Loads the canonical face model and the Procrustes weights from `source`
    /// ([`WeightsSource::Embedded`] needs no files).
    pub fn load(source: &WeightsSource) -> Result<Self> {
        let file = FACE_GEOMETRY_WEIGHTS.name;
        let weights = FACE_GEOMETRY_WEIGHTS.load(source, &candle_core::Device::Cpu)?;
        let tensor = |name: &str| {
            weights.get(name).ok_or_else(|| {
                Error::Core(facecore::Error::WeightsTensor {
                    file: file.to_string(),
                    tensor: name.to_string(),
                    reason: "missing".to_string(),
                })
            })
        };
        let vertices = tensor("canonical_mesh.vertex_buffer")?
            .flatten_all()?
            .to_vec1()?;
        let basis = tensor("procrustes_landmark_basis.weight")?.to_vec1()?;
        Self::new(&vertices, &basis).map_err(|reason| {
            Error::Core(facecore::Error::WeightsCorrupt {
                file: file.to_string(),
                reason,
            })
        })
    }

    /// Builds an estimator from MediaPipe's vertex buffer (x, y, z, u, v per landmark) and the
    /// dense per-landmark Procrustes weights.
    fn new(vertex_buffer: &[f32], weights: &[f32]) -> std::result::Result<Self, String> {
        if vertex_buffer.len() != CANONICAL_LANDMARKS * VERTEX_SIZE {
            return Err(format!(
                "canonical vertex buffer holds {} values, expected {CANONICAL_LANDMARKS} x {VERTEX_SIZE}",
                vertex_buffer.len()
            ));
        }
        if weights.len() != CANONICAL_LANDMARKS {
            return Err(format!(
                "{} Procrustes weights, expected {CANONICAL_LANDMARKS}",
                weights.len()
            ));
        }
        if weights.iter().any(|w| *w < 0.0) || weights.iter().sum::<f32>() <= 0.0 {
            return Err("Procrustes weights must be non-negative with a positive sum".into());
        }
        let canonical = Matrix3xX::from_iterator(
            CANONICAL_LANDMARKS,
            vertex_buffer
                .chunks_exact(VERTEX_SIZE)
                .flat_map(|v| v.iter().take(3).map(|c| f64::from(*c))),
        );
        let sqrt_weights = weights.iter().map(|w| f64::from(*w).sqrt()).collect();
        Ok(Self {
            canonical,
            sqrt_weights,
        })
    }

    /// The head pose of one face from its mesh landmarks in image pixels (468 points, or 478
    /// with the iris points, which are ignored; `z` scaled like `x`, as MediaPipe's landmarks)
    /// in an image of `image_width` x `image_height` pixels.
    ///
    /// Errors: a mesh of another length, a non-finite coordinate, an empty image
    /// ([`Error::InvalidArgument`]); landmarks too compact or collinear to fix a pose
    /// ([`facecore::Error::Degenerate`] inside [`Error::Core`]).
    pub fn estimate(
        &self,
        mesh: &[Point3],
        image_width: u32,
        image_height: u32,
    ) -> Result<HeadPose> {
        let screen = self.screen_landmarks(mesh, image_width, image_height)?;
        let frustum = Frustum::new(image_width, image_height);
        // geometry_pipeline.cc, ScreenToMetricSpaceConverter::Convert.
        let mut projected = screen;
        for mut c in projected.column_iter_mut() {
            c.x = c.x * frustum.width + frustum.left;
            c.y = (1.0 - c.y) * frustum.height + frustum.bottom;
            c.z *= frustum.width;
        }
        let depth_offset = projected.row(2).mean();
        let mut intermediate = projected.clone();
        change_handedness(&mut intermediate);
        let first_scale = self.solve(&intermediate)?.scale;
        let intermediate = unproject(&projected, &frustum, depth_offset, first_scale);
        let second_scale = self.solve(&intermediate)?.scale;
        let metric = unproject(
            &projected,
            &frustum,
            depth_offset,
            first_scale * second_scale,
        );
        let fit = self.solve(&metric)?;

        let rs = fit.rotation * fit.scale;
        let mut transform = [[0.0f32; 4]; 4];
        for (i, row) in transform.iter_mut().enumerate().take(3) {
            for (j, v) in row.iter_mut().enumerate().take(3) {
                *v = rs[(i, j)] as f32;
            }
            row[3] = fit.translation[i] as f32;
        }
        transform[3][3] = 1.0;
        let rotation =
            std::array::from_fn(|i| std::array::from_fn(|j| fit.rotation[(i, j)] as f32));
        let (yaw, pitch, roll) = rotation_to_angles(&rotation);
        Ok(HeadPose {
            rotation,
            transform,
            yaw,
            pitch,
            roll,
        })
    }

    /// Validates the mesh and normalises its first 468 points as MediaPipe's normalised
    /// landmarks: `x / width`, `y / height`, `z / width`.
    fn screen_landmarks(&self, mesh: &[Point3], width: u32, height: u32) -> Result<Matrix3xX<f64>> {
        if mesh.len() != CANONICAL_LANDMARKS && mesh.len() != CANONICAL_LANDMARKS + 10 {
            return Err(Error::InvalidArgument(format!(
                "head pose needs a mesh of {CANONICAL_LANDMARKS} or {} landmarks, got {}",
                CANONICAL_LANDMARKS + 10,
                mesh.len()
            )));
        }
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "image size {width}x{height} is empty"
            )));
        }
        if let Some((i, p)) = mesh
            .iter()
            .enumerate()
            .find(|(_, p)| !(p.x.is_finite() && p.y.is_finite() && p.z.is_finite()))
        {
            return Err(Error::InvalidArgument(format!(
                "mesh landmark {i} is not finite: {p:?}"
            )));
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let screen = Matrix3xX::from_iterator(
            CANONICAL_LANDMARKS,
            mesh.iter()
                .take(CANONICAL_LANDMARKS)
                .flat_map(|p| [f64::from(p.x) / w, f64::from(p.y) / h, f64::from(p.z) / w]),
        );
        let mean = screen.column_mean();
        let spread = screen
            .column_iter()
            .map(|c| (c.x - mean.x).hypot(c.y - mean.y))
            .fold(0.0, f64::max);
        if spread <= TOO_COMPACT {
            return Err(degenerate(format!(
                "the landmarks lie within {spread:.2e} of their mean (normalised image units)"
            )));
        }
        self.check_spread(&screen)?;
        Ok(screen)
    }

    /// Rejects landmark sets whose weighted points are (nearly) collinear in the image.
    fn check_spread(&self, screen: &Matrix3xX<f64>) -> Result<()> {
        let total: f64 = self.sqrt_weights.iter().map(|s| s * s).sum();
        let (mut mx, mut my) = (0.0, 0.0);
        for (c, s) in screen.column_iter().zip(&self.sqrt_weights) {
            mx += s * s * c.x;
            my += s * s * c.y;
        }
        let (mx, my) = (mx / total, my / total);
        let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
        for (c, s) in screen.column_iter().zip(&self.sqrt_weights) {
            let (dx, dy) = (c.x - mx, c.y - my);
            sxx += s * s * dx * dx;
            sxy += s * s * dx * dy;
            syy += s * s * dy * dy;
        }
        let mid = 0.5 * (sxx + syy);
        let radius = (0.25 * (sxx - syy).powi(2) + sxy * sxy).sqrt();
        let (large, small) = (mid + radius, mid - radius);
        if small <= MIN_SPREAD_RATIO * large {
            return Err(degenerate(format!(
                "the weighted landmarks are collinear in the image (principal variances \
                 {large:.3e} and {small:.3e})"
            )));
        }
        Ok(())
    }

    /// MediaPipe's weighted orthogonal Procrustes fit of the canonical model onto `targets`
    /// (`procrustes_solver.cc`, after Akca 2003, section 2.4; reflections are excluded).
    fn solve(&self, targets: &Matrix3xX<f64>) -> Result<Similarity> {
        let sw = &self.sqrt_weights;
        let total: f64 = sw.iter().map(|s| s * s).sum();
        let weighted = |m: &Matrix3xX<f64>| {
            let mut out = m.clone();
            for (mut c, s) in out.column_iter_mut().zip(sw) {
                c *= *s;
            }
            out
        };
        let weighted_sources = weighted(&self.canonical);
        let weighted_targets = weighted(targets);
        let centre = weighted(&weighted_sources).column_sum() / total;
        let mut centred_sources = weighted_sources.clone();
        for (mut c, s) in centred_sources.column_iter_mut().zip(sw) {
            c -= centre * *s;
        }

        let design = &weighted_targets * centred_sources.transpose();
        if design.norm() <= ABSOLUTE_ERROR_EPS {
            return Err(degenerate(
                "Procrustes design matrix norm is too small".into(),
            ));
        }
        let svd = design.svd(true, true);
        let (Some(mut u), Some(v_t)) = (svd.u, svd.v_t) else {
            return Err(degenerate(
                "the SVD of the Procrustes design matrix failed".into(),
            ));
        };
        if u.determinant() * v_t.determinant() < 0.0 {
            // Flip the direction of the least singular value so that det(rotation) = +1.
            let least = svd.singular_values.imin();
            let mut col = u.column_mut(least);
            col *= -1.0;
        }
        let rotation = u * v_t;

        let numerator = (rotation * &centred_sources)
            .component_mul(&weighted_targets)
            .sum();
        let denominator = centred_sources.component_mul(&weighted_sources).sum();
        if denominator <= ABSOLUTE_ERROR_EPS || numerator / denominator <= ABSOLUTE_ERROR_EPS {
            return Err(degenerate(format!(
                "Procrustes scale {numerator:.3e} / {denominator:.3e} is too small"
            )));
        }
        let scale = numerator / denominator;
        let diffs = weighted_targets - (rotation * scale) * weighted_sources;
        let mut translation = Vector3::zeros();
        for (c, s) in diffs.column_iter().zip(sw) {
            translation += c * *s;
        }
        Ok(Similarity {
            rotation,
            scale,
            translation: translation / total,
        })
    }
}

fn degenerate(reason: String) -> Error {
    Error::Core(facecore::Error::Degenerate(reason))
}

/// Screen (left-handed) to metric (right-handed) coordinates: negate z.
fn change_handedness(m: &mut Matrix3xX<f64>) {
    m.row_mut(2).neg_mut();
}

/// `MoveAndRescaleZ`, `UnprojectXY` and `ChangeHandedness` of `geometry_pipeline.cc`: depth
/// moved onto the near plane and divided by `scale`, x and y scaled by depth / near.
fn unproject(
    projected: &Matrix3xX<f64>,
    frustum: &Frustum,
    depth_offset: f64,
    scale: f64,
) -> Matrix3xX<f64> {
    let mut out = projected.clone();
    for mut c in out.column_iter_mut() {
        c.z = (c.z - depth_offset + frustum.near) / scale;
        c.x = c.x * c.z / frustum.near;
        c.y = c.y * c.z / frustum.near;
    }
    change_handedness(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimator() -> HeadPoseEstimator {
        HeadPoseEstimator::load(&WeightsSource::Embedded).unwrap()
    }

    /// Image-pixel landmarks of the canonical model placed by `pose` (a transform in the camera
    /// frame), seen by the virtual camera in a `w` x `h` image: the inverse of the pipeline's
    /// unprojection, with MediaPipe's relative depth (z scaled like x, mean zero).
    fn render(
        est: &HeadPoseEstimator,
        rotation: Matrix3<f64>,
        t: Vector3<f64>,
        w: u32,
        h: u32,
    ) -> Vec<Point3> {
        let f = Frustum::new(w, h);
        let pts: Vec<Vector3<f64>> = est
            .canonical
            .column_iter()
            .map(|c| rotation * c + t)
            .collect();
        let depth = |p: &Vector3<f64>| -p.z;
        let mean_depth = pts.iter().map(depth).sum::<f64>() / pts.len() as f64;
        pts.iter()
            .map(|p| {
                let d = depth(p);
                let (xn, yn) = (p.x * f.near / d, p.y * f.near / d);
                let x = (xn - f.left) / f.width;
                let y = 1.0 - (yn - f.bottom) / f.height;
                // Relative depth at the near plane's scale, as if the face were at mean depth.
                let z = (d - mean_depth) * f.near / mean_depth / f.width;
                Point3::new(
                    (x * f64::from(w)) as f32,
                    (y * f64::from(h)) as f32,
                    (z * f64::from(w)) as f32,
                )
            })
            .collect()
    }

    fn max_abs(a: &[[f32; 3]; 3], b: &[[f32; 3]; 3]) -> f32 {
        a.iter()
            .flatten()
            .zip(b.iter().flatten())
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn canonical_model_in_front_of_the_camera_is_the_identity_pose() {
        let est = estimator();
        let mesh = render(
            &est,
            Matrix3::identity(),
            Vector3::new(0.0, 0.0, -50.0),
            640,
            480,
        );
        let pose = est.estimate(&mesh, 640, 480).unwrap();
        let id = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        assert!(max_abs(&pose.rotation, &id) < 1e-3, "{pose:?}");
        assert!(pose.yaw.abs() < 0.1 && pose.pitch.abs() < 0.1 && pose.roll.abs() < 0.1);
        // The model's origin 50 cm in front of the camera, scale 1.
        assert!((pose.transform[2][3] + 50.0).abs() < 0.5, "{pose:?}");
        assert!(pose.transform[0][3].abs() < 0.05 && pose.transform[1][3].abs() < 0.05);
        assert!((pose.transform[0][0] - 1.0).abs() < 1e-2);
    }

    #[test]
    fn a_known_rotation_is_recovered() {
        let est = estimator();
        let r = angles_matrix(20.0, -10.0, 15.0);
        let mesh = render(&est, r, Vector3::new(3.0, -2.0, -60.0), 500, 600);
        let pose = est.estimate(&mesh, 500, 600).unwrap();
        // The relative-depth rendering is only approximately a perspective view; half a degree.
        assert!((pose.yaw - 20.0).abs() < 0.5, "{pose:?}");
        assert!((pose.pitch + 10.0).abs() < 0.5, "{pose:?}");
        assert!((pose.roll - 15.0).abs() < 0.5, "{pose:?}");
        let rot: [[f32; 3]; 3] = std::array::from_fn(|i| std::array::from_fn(|j| r[(i, j)] as f32));
        assert!(max_abs(&pose.rotation, &rot) < 1e-2, "{pose:?}");
    }

    #[test]
    fn angles_round_trip_and_signs() {
        for (y, p, r) in [
            (0.0, 0.0, 0.0),
            (30.0, 0.0, 0.0),
            (-25.0, 12.0, 40.0),
            (10.0, -70.0, -170.0),
        ] {
            let (y2, p2, r2) = rotation_to_angles(&angles_to_rotation(y, p, r));
            assert!((y - y2).abs() < 1e-3 && (p - p2).abs() < 1e-3 && (r - r2).abs() < 1e-3);
        }
        // Yaw +90°: the face's forward axis (+z) turns to the camera's +x (image right).
        let r = angles_to_rotation(90.0, 0.0, 0.0);
        assert!((r[0][2] - 1.0).abs() < 1e-6);
        // Pitch +90°: forward turns up (+y).
        let r = angles_to_rotation(0.0, 90.0, 0.0);
        assert!((r[1][2] - 1.0).abs() < 1e-6);
        // Roll +90°: the head's up axis (+y) turns to −x (image left, counter-clockwise).
        let r = angles_to_rotation(0.0, 0.0, 90.0);
        assert!((r[0][1] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn degenerate_meshes_are_errors() {
        let est = estimator();
        let good = render(
            &est,
            Matrix3::identity(),
            Vector3::new(0.0, 0.0, -50.0),
            640,
            480,
        );
        assert!(est.estimate(&good[..400], 640, 480).is_err());
        assert!(est.estimate(&good, 0, 480).is_err());
        let mut nan = good.clone();
        nan[7].y = f32::NAN;
        assert!(matches!(
            est.estimate(&nan, 640, 480),
            Err(Error::InvalidArgument(_))
        ));
        let line: Vec<Point3> = (0..478)
            .map(|i| Point3::new(i as f32, 2.0 * i as f32, 0.0))
            .collect();
        assert!(matches!(
            est.estimate(&line, 640, 480),
            Err(Error::Core(facecore::Error::Degenerate(_)))
        ));
        let point = vec![Point3::new(100.0, 100.0, 0.0); 478];
        assert!(matches!(
            est.estimate(&point, 640, 480),
            Err(Error::Core(facecore::Error::Degenerate(_)))
        ));
    }
}
