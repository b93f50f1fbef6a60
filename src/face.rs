//! What [`crate::FaceAnalyzer::analyze`] returns: one [`Face`] per face, with the parts that were
//! asked for, and the [`Part`] names of the JSON shape.

use std::str::FromStr;

use faceattrs::{Age, Gender};
use facecore::geometry::{BBox, Keypoints5, Point};
use faceembed::Embedding;
use faceexpr::action_units::ActionUnits;
use faceexpr::blendshapes::Blendshapes;
use faceexpr::Emotion;
use facegaze::Gaze;
use facelandmarks::{HeadPose, Landmarks478, Landmarks68};

use crate::Error;

/// A part of the analysis beyond the box, score and keypoints, named as in the JSON shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The 478-point FaceMesh with iris ([`Landmarks478`]).
    Landmarks,
    /// The 68-point iBUG layout ([`Landmarks68`]).
    Landmarks68,
    /// Yaw, pitch and roll from the mesh ([`HeadPose`]).
    HeadPose,
    /// Gaze direction from the iris and the head pose ([`Gaze`]).
    Gaze,
    /// An identity vector ([`Embedding`]).
    Embedding,
    /// Age in years ([`Age`]).
    Age,
    /// Gender ([`Gender`]).
    Gender,
    /// The seven basic emotions ([`Emotion`]).
    Emotion,
    /// MediaPipe's 52 blendshapes ([`Blendshapes`]).
    Blendshapes,
    /// FACS action units derived from the blendshapes ([`ActionUnits`]).
    ActionUnits,
}

impl Part {
    /// Every part, in the order of the JSON shape.
    pub const ALL: [Part; 10] = [
        Part::Landmarks,
        Part::Landmarks68,
        Part::HeadPose,
        Part::Gaze,
        Part::Embedding,
        Part::Age,
        Part::Gender,
        Part::Emotion,
        Part::Blendshapes,
        Part::ActionUnits,
    ];

    /// The part's name in the JSON shape (`"head_pose"`, `"action_units"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Part::Landmarks => "landmarks",
            Part::Landmarks68 => "landmarks68",
            Part::HeadPose => "head_pose",
            Part::Gaze => "gaze",
            Part::Embedding => "embedding",
            Part::Age => "age",
            Part::Gender => "gender",
            Part::Emotion => "emotion",
            Part::Blendshapes => "blendshapes",
            Part::ActionUnits => "action_units",
        }
    }

    /// Whether the part is computed from the 478-point mesh.
    pub fn needs_mesh(self) -> bool {
        matches!(
            self,
            Part::Landmarks | Part::HeadPose | Part::Gaze | Part::Blendshapes | Part::ActionUnits
        )
    }
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Part {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Part::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Part::ALL.iter().map(|p| p.name()).collect();
                Error::InvalidOption(format!(
                    "unknown part {s:?}; the parts are {}",
                    names.join(", ")
                ))
            })
    }
}

/// A part that was asked for but left out for one face, and why (a face too small for the
/// mesh, no 5-point layout to align with, a degenerate pose...).
#[derive(Debug, Clone, PartialEq)]
pub struct Omission {
    /// The part left out.
    pub part: Part,
    /// Why, in words.
    pub reason: String,
}

/// One face and everything computed for it. Parts that were not asked for are `None`; a part
/// that was asked for but could not be computed for this face is `None` with an entry in
/// [`Face::omitted`].
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// The face box, in original-image pixels.
    pub bbox: BBox,
    /// The detector's confidence in `[0, 1]` (1 for a face assumed with
    /// [`crate::FaceAnalyzerBuilder::assume_face`]).
    pub score: f32,
    /// The 5-point layout ([`Keypoints5`]): the detector's when it gives one (RetinaFace),
    /// otherwise read off the mesh ([`Landmarks478::keypoints5`]) when the mesh ran.
    pub keypoints: Option<Keypoints5>,
    /// The detector's own keypoints in its own order (see each detector's documentation).
    pub detector_keypoints: Vec<Point>,
    /// The 478-point mesh with iris and its presence score.
    pub landmarks: Option<Landmarks478>,
    /// The 68 points in iBUG/300-W order.
    pub landmarks68: Option<Landmarks68>,
    /// The head pose.
    pub head_pose: Option<HeadPose>,
    /// Where the eyes look.
    pub gaze: Option<Gaze>,
    /// The identity vector.
    pub embedding: Option<Embedding>,
    /// The age.
    pub age: Option<Age>,
    /// The gender.
    pub gender: Option<Gender>,
    /// The emotion.
    pub emotion: Option<Emotion>,
    /// The 52 blendshapes.
    pub blendshapes: Option<Blendshapes>,
    /// FACS action units derived from the blendshapes.
    pub action_units: Option<ActionUnits>,
    /// Parts asked for but left out for this face, with the reason.
    pub omitted: Vec<Omission>,
}

impl Face {
    /// A face with a box, a score and keypoints, and no part computed yet.
    pub fn new(
        bbox: BBox,
        score: f32,
        keypoints: Option<Keypoints5>,
        detector_keypoints: Vec<Point>,
    ) -> Self {
        Self {
            bbox,
            score,
            keypoints,
            detector_keypoints,
            landmarks: None,
            landmarks68: None,
            head_pose: None,
            gaze: None,
            embedding: None,
            age: None,
            gender: None,
            emotion: None,
            blendshapes: None,
            action_units: None,
            omitted: Vec::new(),
        }
    }

    /// Records that `part` was left out for this face.
    pub(crate) fn omit(&mut self, part: Part, reason: impl Into<String>) {
        self.omitted.push(Omission {
            part,
            reason: reason.into(),
        });
    }
}

impl From<facedetect::Detection> for Face {
    fn from(d: facedetect::Detection) -> Self {
        Face::new(d.bbox, d.score, d.keypoints, d.native_keypoints)
    }
}

#[cfg(feature = "serde")]
mod json {
    use super::*;
    use serde::ser::{SerializeMap, Serializer};
    use serde::Serialize;

    /// Name/value pairs serialised as a JSON object in their own order.
    struct Ordered<'a, V>(Vec<(&'a str, V)>);

    impl<'a, V> Ordered<'a, V> {
        fn of(pairs: impl IntoIterator<Item = (&'a str, V)>) -> Self {
            Self(pairs.into_iter().collect())
        }
    }

    impl<V: Serialize> Serialize for Ordered<'_, V> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    fn xy(ps: &[Point]) -> Vec<[f32; 2]> {
        ps.iter().map(|p| [p.x, p.y]).collect()
    }

    /// The JSON shape of a face: `{"bbox": [x0, y0, x1, y1], "score": S, "keypoints": [[x, y]
    /// x5], "landmarks": [[x, y, z] x478], "landmarks68": [[x, y] x68], "head_pose": {"yaw",
    /// "pitch", "roll"}, "gaze": {"yaw", "pitch"}, "embedding": [..], "age": YEARS,
    /// "age_group": G, "gender": {"label", "score"}, "emotion": {"label", "scores": {L: P}},
    /// "blendshapes": {NAME: P}, "action_units": {"AU01": I, ...}, "omitted": {PART: REASON}}`,
    /// a part omitted when it was not computed; `detector_keypoints` appear when they are not the
    /// 5-point layout itself. Angles are in degrees, coordinates in original-image pixels.
    impl Serialize for Face {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let b = &self.bbox;
            let mut m = s.serialize_map(None)?;
            m.serialize_entry("bbox", &[b.x0, b.y0, b.x1, b.y1])?;
            m.serialize_entry("score", &self.score)?;
            if let Some(k) = &self.keypoints {
                m.serialize_entry("keypoints", &xy(k.points()))?;
            }
            let own_layout =
                self.keypoints.map(|k| k.0.to_vec()) == Some(self.detector_keypoints.clone());
            if !self.detector_keypoints.is_empty() && !own_layout {
                m.serialize_entry("detector_keypoints", &xy(&self.detector_keypoints))?;
            }
            if let Some(l) = &self.landmarks {
                let pts: Vec<[f32; 3]> = l.points.iter().map(|p| [p.x, p.y, p.z]).collect();
                m.serialize_entry("landmarks", &pts)?;
                m.serialize_entry("landmarks_presence", &l.presence)?;
            }
            if let Some(l) = &self.landmarks68 {
                m.serialize_entry("landmarks68", &xy(&l.points))?;
            }
            if let Some(p) = &self.head_pose {
                let angles = [("yaw", p.yaw), ("pitch", p.pitch), ("roll", p.roll)];
                m.serialize_entry("head_pose", &Ordered::of(angles))?;
            }
            if let Some(g) = &self.gaze {
                let angles = [("yaw", g.combined.yaw), ("pitch", g.combined.pitch)];
                m.serialize_entry("gaze", &Ordered::of(angles))?;
            }
            if let Some(e) = &self.embedding {
                m.serialize_entry("embedding", &e.vector)?;
            }
            if let Some(a) = &self.age {
                m.serialize_entry("age", &a.years)?;
                m.serialize_entry("age_group", a.group)?;
            }
            if let Some(g) = &self.gender {
                let gender = records::LabelScore {
                    label: g.label,
                    score: g.score,
                };
                m.serialize_entry("gender", &gender)?;
            }
            if let Some(e) = &self.emotion {
                let scores = faceexpr::EMOTION_LABELS.into_iter().zip(e.scores);
                let emotion = records::Labelled {
                    label: e.label,
                    scores: Ordered::of(scores),
                };
                m.serialize_entry("emotion", &emotion)?;
            }
            if let Some(bs) = &self.blendshapes {
                m.serialize_entry("blendshapes", &Ordered::of(bs.iter()))?;
            }
            if let Some(au) = &self.action_units {
                m.serialize_entry("action_units", &Ordered::of(au.iter()))?;
            }
            if !self.omitted.is_empty() {
                let reasons = self
                    .omitted
                    .iter()
                    .map(|o| (o.part.name(), o.reason.as_str()));
                m.serialize_entry("omitted", &Ordered::of(reasons))?;
            }
            m.end()
        }
    }

    /// The small keyed records of the JSON shape.
    mod records {
        use serde::Serialize;

        #[derive(Serialize)]
        pub struct LabelScore {
            pub label: &'static str,
            pub score: f32,
        }

        #[derive(Serialize)]
        pub struct Labelled<T: Serialize> {
            pub label: &'static str,
            pub scores: T,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip() {
        for p in Part::ALL {
            assert_eq!(p.name().parse::<Part>().ok(), Some(p));
        }
        assert!("nose".parse::<Part>().is_err());
    }
}
