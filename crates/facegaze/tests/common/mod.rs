//! The MediaPipe fixture shared by the gaze tests (`tests/fixtures/mediapipe_variants.safetensors`,
//! written by `tools/reference/face_geometry.py`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use facecore::geometry::Point3;
use facegaze::Gaze;
use facelandmarks::headpose::{HeadPose, HeadPoseEstimator};

/// The tolerance for the symmetry checks, in degrees.
pub const TOLERANCE_DEG: f32 = 3.0;

/// MediaPipe's results on the sample images' variants (`<image>_<variant>.<tensor>`).
pub struct Variants(HashMap<String, Tensor>);

impl Variants {
    /// Loads the fixture.
    pub fn load() -> Self {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mediapipe_variants.safetensors");
        Self(
            candle_core::safetensors::load(&path, &Device::Cpu)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
        )
    }

    /// MediaPipe's own head pose of `key` (e.g. `astronaut_orig`), from its matrix.
    pub fn mediapipe_pose(&self, key: &str) -> HeadPose {
        let m: Vec<Vec<f32>> = self.0[&format!("{key}.transformation_matrix")]
            .to_vec2()
            .unwrap();
        HeadPose::from_transform(std::array::from_fn(|i| std::array::from_fn(|j| m[i][j]))).unwrap()
    }

    /// Our head pose and gaze from MediaPipe's landmarks of `key`.
    pub fn ours(&self, est: &HeadPoseEstimator, key: &str) -> (HeadPose, Gaze) {
        let size: Vec<f32> = self.0[&format!("{key}.image_size")].to_vec1().unwrap();
        let lm: Vec<Vec<f32>> = self.0[&format!("{key}.landmarks_px")].to_vec2().unwrap();
        let mesh: Vec<Point3> = lm.iter().map(|p| Point3::new(p[0], p[1], p[2])).collect();
        let pose = est.estimate(&mesh, size[0] as u32, size[1] as u32).unwrap();
        let gaze = facegaze::estimate(&mesh, &pose).unwrap();
        (pose, gaze)
    }
}
