//! Symmetry checks of the head pose and the gaze on real landmarks, where no labelled data
//! exists: mirroring an image negates yaw, roll and gaze yaw; rotating it in-plane by 15°
//! counter-clockwise adds 15° of roll.
//!
//! The landmarks are MediaPipe's own (fixture `tests/fixtures/mediapipe_variants.safetensors`,
//! written by `tools/reference/face_geometry.py` from the original, mirrored and rotated sample
//! images), so only our geometry is under test, not our FaceMesh port.

mod common;

use common::{Variants, TOLERANCE_DEG};
use facecore::weights::WeightsSource;
use facelandmarks::headpose::HeadPoseEstimator;

#[test]
fn mirroring_negates_yaw_roll_and_gaze_yaw() {
    let fx = Variants::load();
    let est = HeadPoseEstimator::load(&WeightsSource::Embedded).unwrap();
    for image in ["astronaut", "grace_hopper"] {
        let (pose, gaze) = fx.ours(&est, &format!("{image}_orig"));
        let (mpose, mgaze) = fx.ours(&est, &format!("{image}_mirror"));
        eprintln!(
            "{image}: head yaw {:.2} / {:.2}, roll {:.2} / {:.2}, pitch {:.2} / {:.2}; \
             gaze yaw {:.2} / {:.2}, pitch {:.2} / {:.2}",
            pose.yaw,
            mpose.yaw,
            pose.roll,
            mpose.roll,
            pose.pitch,
            mpose.pitch,
            gaze.combined.yaw,
            mgaze.combined.yaw,
            gaze.combined.pitch,
            mgaze.combined.pitch
        );
        assert!((pose.yaw + mpose.yaw).abs() < TOLERANCE_DEG, "{image}: yaw");
        assert!(
            (pose.roll + mpose.roll).abs() < TOLERANCE_DEG,
            "{image}: roll"
        );
        assert!(
            (pose.pitch - mpose.pitch).abs() < TOLERANCE_DEG,
            "{image}: pitch"
        );
        assert!(
            (gaze.combined.yaw + mgaze.combined.yaw).abs() < TOLERANCE_DEG,
            "{image}: combined gaze yaw"
        );
        // The subject's left eye becomes the mirrored subject's right eye.
        assert!(
            (gaze.left.yaw + mgaze.right.yaw).abs() < TOLERANCE_DEG,
            "{image}: per-eye gaze yaw"
        );
        assert!(
            (gaze.combined.pitch - mgaze.combined.pitch).abs() < TOLERANCE_DEG,
            "{image}: gaze pitch"
        );
    }
}

#[test]
fn rotating_the_image_by_15_degrees_adds_15_degrees_of_roll() {
    let fx = Variants::load();
    let est = HeadPoseEstimator::load(&WeightsSource::Embedded).unwrap();
    for image in ["astronaut", "grace_hopper"] {
        let (pose, gaze) = fx.ours(&est, &format!("{image}_orig"));
        let (rpose, rgaze) = fx.ours(&est, &format!("{image}_rot15"));
        eprintln!(
            "{image}: roll {:.2} -> {:.2}; yaw {:.2} -> {:.2}; gaze yaw {:.2} -> {:.2}",
            pose.roll, rpose.roll, pose.yaw, rpose.yaw, gaze.combined.yaw, rgaze.combined.yaw
        );
        let delta = rpose.roll - pose.roll;
        assert!(
            (delta - 15.0).abs() < TOLERANCE_DEG,
            "{image}: roll changed by {delta}"
        );
    }
}

#[test]
fn our_head_pose_matches_mediapipe_on_every_variant() {
    let fx = Variants::load();
    let est = HeadPoseEstimator::load(&WeightsSource::Embedded).unwrap();
    for image in ["astronaut", "grace_hopper"] {
        for variant in ["orig", "mirror", "rot15"] {
            let key = format!("{image}_{variant}");
            let (ours, _) = fx.ours(&est, &key);
            let mp = fx.mediapipe_pose(&key);
            for (a, b) in [
                (ours.yaw, mp.yaw),
                (ours.pitch, mp.pitch),
                (ours.roll, mp.roll),
            ] {
                // Same geometry, f64 here and f32 in MediaPipe (see tests/headpose.rs there).
                assert!((a - b).abs() < 1e-3, "{key}: {ours:?} vs {mp:?}");
            }
        }
    }
}
