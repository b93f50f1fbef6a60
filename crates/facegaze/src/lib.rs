//! Gaze: the direction of each eye and of both together, from the FaceMesh iris and eye points and
//! the head pose, through an eyeball model.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use facecore::geometry::Point3;
//! use facelandmarks::headpose::HeadPoseEstimator;
//!
//! # let (mesh, width, height): (Vec<Point3>, u32, u32) = (Vec::new(), 640, 480);
//! // `mesh`: the 478 FaceMesh landmarks (with iris) of one face, in image pixels.
//! let pose = HeadPoseEstimator::load(&Default::default())?.estimate(&mesh, width, height)?;
//! let gaze = facegaze::estimate(&mesh, &pose)?;
//! println!("looking {:.0}° right, {:.0}° up", gaze.combined.yaw, gaze.combined.pitch);
//! # Ok(())
//! # }
//! ```
//!
//! # The model
//!
//! Each eye is a sphere of diameter [`EYEBALL_DIAMETER_MM`] carrying an iris disc of diameter
//! [`IRIS_DIAMETER_MM`]; the iris centre lies on the sphere's axis of sight, at
//! `d = sqrt(R² − r²)` ≈ 10.5 mm from the eyeball's centre (R, r: eyeball and iris radii).
//!
//! 1. **Scale.** The iris is about the same size in every adult, so its radius in pixels
//!    fixes the pixels per millimetre: the larger of the horizontal and vertical iris semi-axes
//!    (points 469–472 and 474–477 around the iris centres 468 and 473; a turned iris looks
//!    narrower along one axis only), averaged over both eyes.
//! 2. **Eyeball centre.** When the eye looks straight ahead (along the head's forward axis, from
//!    [`HeadPose::forward`]), the iris centre sits in the middle of the eye opening, taken as
//!    the mean of the two eye corners and the middles of the upper and lower lids (3D mesh
//!    points). The eyeball's centre is `d` behind that point along the head's forward axis.
//! 3. **Direction.** The mesh's x and y are (locally) an orthographic view, so the iris centre's
//!    image offset from the eyeball centre's image position, divided by `d`, gives the gaze
//!    direction's x and y components; its depth component follows from unit length, pointing
//!    out of the face. With the iris in the middle of the eye opening, the gaze is the head's
//!    forward axis.
//! 4. **Both eyes.** [`Gaze::combined`] is the normalised sum of both eyes' unit vectors.
//!
//! Assumptions and limits: the optical axis is taken as the line of sight (the ~5° angle kappa
//! between them is ignored); the upper lid partly follows vertical eye movements, so pitch is
//! underestimated for large up or down glances; blinks are not detected (a closed eye still
//! gets the direction FaceMesh's predicted iris implies). Without labelled gaze data, the model
//! is checked by its symmetries (mirroring negates gaze yaw) and by hand-built meshes.
//!
//! # Frame and angles
//!
//! [`EyeGaze::vector`] is a unit vector in the head pose's camera frame
//! ([`facelandmarks::headpose`]): x towards the image's right, y towards the image's top, z
//! towards the camera. Angles are in degrees: **yaw** = `atan2(x, z)`, positive when the
//! subject looks towards their left (the image's right, as the head pose's yaw); **pitch** =
//! `atan2(y, hypot(x, z))`, positive when looking up. A subject looking along the camera's axis
//! (straight into a camera in front of them) gets yaw ≈ 0, pitch ≈ 0 and vector ≈ (0, 0, 1).
//!
//! `left` and `right` are the subject's own eyes (MediaPipe's naming): in an unmirrored photo
//! the left eye appears on the image's right.

#![warn(missing_docs)]

use facecore::geometry::Point3;
use facelandmarks::headpose::HeadPose;
use nalgebra::Vector3;

/// Human horizontal visible iris diameter in mm, nearly constant across adults (11.7 ± 0.5 mm;
/// Ablavatski et al. 2020, "Real-time Pupil Tracking from Monocular Video for Digital
/// Puppetry", arXiv:2006.11341, the MediaPipe Iris paper).
pub const IRIS_DIAMETER_MM: f32 = 11.7;

/// Human adult eyeball diameter in mm (about 24 mm; Bekerman, Gottlieb & Vaiman 2014,
/// "Variations in eyeball diameters of the healthy adults", Journal of Ophthalmology 503645).
pub const EYEBALL_DIAMETER_MM: f32 = 24.0;

/// Number of landmarks the gaze needs: the 468-point mesh and the 10 iris points.
pub const MESH_LANDMARKS: usize = 478;

/// The smallest iris radius, in pixels, from which a direction is computed.
const MIN_IRIS_RADIUS_PX: f32 = 0.5;

/// FaceMesh landmark indices of one eye (`mediapipe/python/solutions/face_mesh_connections.py`,
/// `FACEMESH_{LEFT,RIGHT}_EYE` and `FACEMESH_{LEFT,RIGHT}_IRIS`).
#[derive(Debug, Clone, Copy)]
struct EyeIndices {
    outer_corner: usize,
    inner_corner: usize,
    upper_lid: usize,
    lower_lid: usize,
    iris_centre: usize,
    /// Iris contour: image-right, top, image-left, bottom of an upright face.
    iris: [usize; 4],
}

/// The subject's right eye (on the image's left in an unmirrored photo).
const RIGHT_EYE: EyeIndices = EyeIndices {
    outer_corner: 33,
    inner_corner: 133,
    upper_lid: 159,
    lower_lid: 145,
    iris_centre: 468,
    iris: [469, 470, 471, 472],
};

/// The subject's left eye.
const LEFT_EYE: EyeIndices = EyeIndices {
    outer_corner: 263,
    inner_corner: 362,
    upper_lid: 386,
    lower_lid: 374,
    iris_centre: 473,
    iris: [474, 475, 476, 477],
};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the shared core (weights, image, geometry).
    #[error(transparent)]
    Core(#[from] facecore::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// An argument is out of range or inconsistent; the message names it.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The gaze direction of one eye, or of both together.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct EyeGaze {
    /// Degrees, positive when looking towards the subject's left (the image's right).
    pub yaw: f32,
    /// Degrees, positive when looking up.
    pub pitch: f32,
    /// Unit direction in the camera frame: x image-right, y image-up, z towards the camera.
    pub vector: [f32; 3],
}

impl EyeGaze {
    /// The gaze along a (not necessarily unit) direction in the camera frame.
    fn from_direction(v: Vector3<f32>) -> Self {
        let v = v.normalize();
        Self {
            yaw: v.x.atan2(v.z).to_degrees(),
            pitch: v.y.atan2(v.x.hypot(v.z)).to_degrees(),
            vector: [v.x, v.y, v.z],
        }
    }
}

/// The gaze of a face: each of the subject's eyes and both together.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Gaze {
    /// The subject's left eye (on the image's right in an unmirrored photo).
    pub left: EyeGaze,
    /// The subject's right eye.
    pub right: EyeGaze,
    /// Both eyes: the normalised sum of their unit vectors.
    pub combined: EyeGaze,
}

/// The gaze of one face from its 478 FaceMesh landmarks (image pixels, with the iris points)
/// and its head pose (see the [crate documentation](crate) for the model and conventions).
///
/// Errors ([`Error::InvalidArgument`]): a mesh without exactly 478 points, a non-finite
/// coordinate or head pose, an iris smaller than half a pixel.
pub fn estimate(mesh: &[Point3], pose: &HeadPose) -> Result<Gaze> {
    if mesh.len() != MESH_LANDMARKS {
        return Err(Error::InvalidArgument(format!(
            "gaze needs the {MESH_LANDMARKS} FaceMesh landmarks with iris, got {}",
            mesh.len()
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
    let forward = pose.forward();
    if forward.iter().any(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "head pose is not finite: {pose:?}"
        )));
    }
    // The head's forward axis in the mesh's frame (x right, y down, z away from the camera).
    let forward = Vector3::new(forward[0], -forward[1], -forward[2]);
    let point = |i: usize| {
        mesh.get(i)
            .map(|p| Vector3::new(p.x, p.y, p.z))
            .ok_or_else(|| Error::InvalidArgument(format!("mesh has no landmark {i}")))
    };
    let iris_radius = |eye: &EyeIndices| -> Result<f32> {
        let [right, top, left, bottom] = eye.iris;
        let horizontal = (point(right)? - point(left)?).xy().norm() / 2.0;
        let vertical = (point(top)? - point(bottom)?).xy().norm() / 2.0;
        Ok(horizontal.max(vertical))
    };
    let radius_px = (iris_radius(&RIGHT_EYE)? + iris_radius(&LEFT_EYE)?) / 2.0;
    if radius_px < MIN_IRIS_RADIUS_PX {
        return Err(Error::InvalidArgument(format!(
            "iris radius {radius_px} px is too small to measure a gaze"
        )));
    }
    // Distance from the eyeball's centre to the iris plane, in pixels.
    let (eyeball_r, iris_r) = (EYEBALL_DIAMETER_MM / 2.0, IRIS_DIAMETER_MM / 2.0);
    let depth_px = (eyeball_r * eyeball_r - iris_r * iris_r).sqrt() * radius_px / iris_r;

    let eye = |eye: &EyeIndices| -> Result<Vector3<f32>> {
        let opening = (point(eye.outer_corner)?
            + point(eye.inner_corner)?
            + point(eye.upper_lid)?
            + point(eye.lower_lid)?)
            / 4.0;
        let centre = opening - forward * depth_px;
        let offset = (point(eye.iris_centre)? - centre).xy() / depth_px;
        let lateral = offset.norm();
        // Beyond 90° the iris would be behind the eyeball's rim: clamp to the rim.
        let offset = if lateral > 1.0 {
            offset / lateral
        } else {
            offset
        };
        let toward_camera = (1.0 - offset.norm_squared()).max(0.0).sqrt();
        // Mesh frame to camera frame: y and z flip.
        Ok(Vector3::new(offset.x, -offset.y, toward_camera))
    };
    let left = eye(&LEFT_EYE)?;
    let right = eye(&RIGHT_EYE)?;
    Ok(Gaze {
        left: EyeGaze::from_direction(left),
        right: EyeGaze::from_direction(right),
        combined: EyeGaze::from_direction(left + right),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use facelandmarks::headpose::angles_to_rotation;

    /// Pixels per mm of the synthetic faces.
    const SCALE: f32 = 2.0;

    fn pose(yaw: f32, pitch: f32, roll: f32) -> HeadPose {
        let rotation = angles_to_rotation(yaw, pitch, roll);
        HeadPose::from_transform(std::array::from_fn(|i| {
            std::array::from_fn(|j| match (rotation.get(i), j) {
                (Some(row), 0..=2) => row[j],
                _ => f32::from(u8::from(i == j)),
            })
        }))
        .unwrap()
    }

    /// A mesh whose eyes look along `gaze` (camera frame) for a head of pose `head`: eye
    /// openings at fixed points, the iris where the eyeball model puts it. Every other point
    /// is spread over a disc so that nothing is degenerate.
    fn mesh(head: &HeadPose, gaze: Vector3<f32>) -> Vec<Point3> {
        let mut pts: Vec<Point3> = (0..MESH_LANDMARKS)
            .map(|i| {
                let a = i as f32 * 0.7;
                Point3::new(300.0 + 80.0 * a.cos(), 300.0 + 80.0 * a.sin(), 0.0)
            })
            .collect();
        let f = head.forward();
        let forward = Vector3::new(f[0], -f[1], -f[2]);
        let gaze = Vector3::new(gaze.x, -gaze.y, -gaze.z).normalize();
        let iris_r = IRIS_DIAMETER_MM / 2.0 * SCALE;
        let depth = (144.0f32 - 5.85 * 5.85).sqrt() * SCALE;
        for (eye, cx) in [(RIGHT_EYE, 260.0), (LEFT_EYE, 340.0)] {
            let opening = Vector3::new(cx, 280.0, 0.0);
            let put =
                |p: &mut Vec<Point3>, i: usize, v: Vector3<f32>| p[i] = Point3::new(v.x, v.y, v.z);
            put(
                &mut pts,
                eye.outer_corner,
                opening + Vector3::new(-15.0, 1.0, 0.0),
            );
            put(
                &mut pts,
                eye.inner_corner,
                opening + Vector3::new(15.0, -1.0, 0.0),
            );
            put(
                &mut pts,
                eye.upper_lid,
                opening + Vector3::new(0.0, -6.0, 0.0),
            );
            put(
                &mut pts,
                eye.lower_lid,
                opening + Vector3::new(0.0, 6.0, 0.0),
            );
            let iris = opening - forward * depth + gaze * depth;
            put(&mut pts, eye.iris_centre, iris);
            let [r, t, l, b] = eye.iris;
            put(&mut pts, r, iris + Vector3::new(iris_r, 0.0, 0.0));
            put(&mut pts, t, iris + Vector3::new(0.0, -iris_r, 0.0));
            put(&mut pts, l, iris + Vector3::new(-iris_r * 0.8, 0.0, 0.0));
            put(&mut pts, b, iris + Vector3::new(0.0, iris_r, 0.0));
        }
        pts
    }

    fn direction(yaw: f32, pitch: f32) -> Vector3<f32> {
        let (y, p) = (yaw.to_radians(), pitch.to_radians());
        Vector3::new(y.sin() * p.cos(), p.sin(), y.cos() * p.cos())
    }

    fn assert_gaze(g: &EyeGaze, yaw: f32, pitch: f32) {
        assert!(
            (g.yaw - yaw).abs() < 0.05 && (g.pitch - pitch).abs() < 0.05,
            "{g:?} vs {yaw}, {pitch}"
        );
        let n: f32 = g.vector.iter().map(|v| v * v).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }

    #[test]
    fn looking_into_the_camera_is_zero() {
        let head = pose(0.0, 0.0, 0.0);
        let g = estimate(&mesh(&head, Vector3::z()), &head).unwrap();
        for e in [g.left, g.right, g.combined] {
            assert_gaze(&e, 0.0, 0.0);
            assert!((e.vector[2] - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn eye_rotations_are_recovered() {
        let head = pose(0.0, 0.0, 0.0);
        for (yaw, pitch) in [
            (20.0, 0.0),
            (-15.0, 0.0),
            (0.0, 10.0),
            (0.0, -25.0),
            (12.0, 8.0),
        ] {
            let g = estimate(&mesh(&head, direction(yaw, pitch)), &head).unwrap();
            assert_gaze(&g.left, yaw, pitch);
            assert_gaze(&g.right, yaw, pitch);
            assert_gaze(&g.combined, yaw, pitch);
        }
    }

    #[test]
    fn eyes_looking_ahead_follow_the_head() {
        // Iris in the middle of the eye opening: the gaze is the head's forward axis.
        for (yaw, pitch, roll) in [(30.0, 0.0, 0.0), (0.0, -20.0, 0.0), (15.0, 10.0, 25.0)] {
            let head = pose(yaw, pitch, roll);
            let f = head.forward();
            let g = estimate(&mesh(&head, Vector3::new(f[0], f[1], f[2])), &head).unwrap();
            let want = EyeGaze::from_direction(Vector3::new(f[0], f[1], f[2]));
            assert_gaze(&g.combined, want.yaw, want.pitch);
        }
        let head = pose(30.0, 0.0, 0.0);
        let g = estimate(&mesh(&head, direction(30.0, 0.0)), &head).unwrap();
        assert_gaze(&g.combined, 30.0, 0.0);
    }

    #[test]
    fn combined_is_between_the_eyes() {
        let head = pose(0.0, 0.0, 0.0);
        let mut m = mesh(&head, direction(10.0, 0.0));
        let other = mesh(&head, direction(-10.0, 0.0));
        for i in [LEFT_EYE.iris_centre].into_iter().chain(LEFT_EYE.iris) {
            m[i] = other[i];
        }
        let g = estimate(&m, &head).unwrap();
        assert_gaze(&g.right, 10.0, 0.0);
        assert_gaze(&g.left, -10.0, 0.0);
        assert_gaze(&g.combined, 0.0, 0.0);
    }

    #[test]
    fn bad_input_is_an_error() {
        let head = pose(0.0, 0.0, 0.0);
        let good = mesh(&head, Vector3::z());
        assert!(estimate(&good[..468], &head).is_err());
        let mut nan = good.clone();
        nan[473].x = f32::NAN;
        assert!(estimate(&nan, &head).is_err());
        let mut tiny = good.clone();
        for eye in [LEFT_EYE, RIGHT_EYE] {
            for i in eye.iris {
                tiny[i] = tiny[eye.iris_centre];
            }
        }
        assert!(estimate(&tiny, &head).is_err());
        let mut bad_pose = head;
        bad_pose.rotation[0][2] = f32::INFINITY;
        assert!(estimate(&good, &bad_pose).is_err());
    }
}
