//! FACS action-unit intensities derived from MediaPipe's blendshapes.
//!
//! **These are not the output of a FACS-trained network.** Each intensity is read off the 52
//! ARKit-style [`Blendshapes`] through the fixed table
//! [`ACTION_UNIT_TABLE`], following the usual correspondence between ARKit's blendshapes and
//! FACS action units: Apple's descriptions of `ARFaceAnchor.BlendShapeLocation` (each blendshape
//! is defined as one facial movement, e.g. `mouthSmileLeft`, "upward movement of the left corner
//! of the mouth") matched to the action units of the FACS manual (Ekman, Friesen & Hager 2002),
//! as tabulated in Melinda Ozel's widely used "ARKit to FACS" cheat sheet and in the
//! FACS-based ARKit rigs built from it. Their quality is bounded by the blendshape model's (which
//! was trained to drive avatars, not to code FACS) and they carry no FACS intensity letters
//! (A–E): an intensity is a score in `[0, 1]`.
//!
//! Bilateral action units take the mean of the subject's left and right blendshapes, so a
//! one-sided movement counts half. AU23 (lip tightener) is absent: no ARKit blendshape carries
//! it (`mouthPress` is AU24, `mouthRoll` AU28). AU43 (eyes closed) and AU45 (blink) are the
//! same movement in a still image and are reported once, as `AU45`.
//!
//! | AU | name | from the blendshapes |
//! | --- | --- | --- |
//! | AU01 | inner brow raiser | `browInnerUp` |
//! | AU02 | outer brow raiser | mean of `browOuterUpLeft`, `browOuterUpRight` |
//! | AU04 | brow lowerer | mean of `browDownLeft`, `browDownRight` |
//! | AU05 | upper lid raiser | mean of `eyeWideLeft`, `eyeWideRight` |
//! | AU06 | cheek raiser | mean of `cheekSquintLeft`, `cheekSquintRight` |
//! | AU07 | lid tightener | mean of `eyeSquintLeft`, `eyeSquintRight` |
//! | AU09 | nose wrinkler | mean of `noseSneerLeft`, `noseSneerRight` |
//! | AU10 | upper lip raiser | mean of `mouthUpperUpLeft`, `mouthUpperUpRight` |
//! | AU12 | lip corner puller | mean of `mouthSmileLeft`, `mouthSmileRight` |
//! | AU14 | dimpler | mean of `mouthDimpleLeft`, `mouthDimpleRight` |
//! | AU15 | lip corner depressor | mean of `mouthFrownLeft`, `mouthFrownRight` |
//! | AU17 | chin raiser | `mouthShrugLower` |
//! | AU20 | lip stretcher | mean of `mouthStretchLeft`, `mouthStretchRight` |
//! | AU24 | lip pressor | mean of `mouthPressLeft`, `mouthPressRight` |
//! | AU25 | lips part | the larger of `jawOpen − mouthClose` (at least 0) and the mean of `mouthLowerDownLeft`, `mouthLowerDownRight` |
//! | AU26 | jaw drop | `jawOpen` |
//! | AU28 | lip suck | the larger of `mouthRollLower`, `mouthRollUpper` |
//! | AU45 | blink / eyes closed (AU43) | mean of `eyeBlinkLeft`, `eyeBlinkRight` |
//!
//! MediaPipe's model leaves some blendshapes at about 0 whatever the face does: `cheekSquint`
//! and `noseSneer` (MediaPipe issue #4450; their 99th percentile is below 0.005 on 921 FER-2013
//! faces and on the smiling sample portrait), so AU06 and AU09 are in practice never present;
//! `eyeWide` (AU05) rarely exceeds 0.4. On those FER-2013 faces (MediaPipe's meshes, labels of
//! the dataset) the AU intensity separates its emotion from the others with an ROC AUC of 0.90
//! for AU12 (happy), 0.82 for AU26 (surprise) and 0.65 for AU04 (angry).
//!
//! ARKit's `mouthClose` closes the lips *despite* an open jaw, so `jawOpen − mouthClose` is the
//! part of the jaw opening that actually parts the lips; `mouthLowerDown` (AU16) parts them with
//! the jaw closed.

use crate::blendshapes::Blendshapes;

/// How an action unit's intensity is computed from the blendshapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// One blendshape's score.
    One(&'static str),
    /// The mean of the subject's left and right blendshapes.
    MeanPair(&'static str, &'static str),
    /// The larger of two blendshapes.
    Max(&'static str, &'static str),
    /// `first − second`, at least 0.
    Minus(&'static str, &'static str),
    /// The larger of two rules' values.
    MaxOf(&'static Rule, &'static Rule),
}

impl Rule {
    /// The rule's value on `b`, clamped to `[0, 1]`. A name that is not a blendshape counts as 0
    /// (the table's names are checked by a test).
    pub fn apply(&self, b: &Blendshapes) -> f32 {
        let s = |name: &str| b.get(name).unwrap_or(0.0);
        let v = match self {
            Self::One(a) => s(a),
            Self::MeanPair(l, r) => 0.5 * (s(l) + s(r)),
            Self::Max(a, c) => s(a).max(s(c)),
            Self::Minus(a, c) => s(a) - s(c),
            Self::MaxOf(a, c) => a.apply(b).max(c.apply(b)),
        };
        v.clamp(0.0, 1.0)
    }
}

/// One row of [`ACTION_UNIT_TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionUnitRule {
    /// FACS code, zero-padded: `"AU01"`.
    pub id: &'static str,
    /// FACS name.
    pub name: &'static str,
    /// How the intensity is computed.
    pub rule: Rule,
}

/// Number of action units reported.
pub const NUM_ACTION_UNITS: usize = 18;

const fn au(id: &'static str, name: &'static str, rule: Rule) -> ActionUnitRule {
    ActionUnitRule { id, name, rule }
}

/// The action units, in AU order, and how each is derived (see the module documentation for
/// the sources of the correspondence).
pub const ACTION_UNIT_TABLE: [ActionUnitRule; NUM_ACTION_UNITS] = [
    au("AU01", "inner brow raiser", Rule::One("browInnerUp")),
    au(
        "AU02",
        "outer brow raiser",
        Rule::MeanPair("browOuterUpLeft", "browOuterUpRight"),
    ),
    au(
        "AU04",
        "brow lowerer",
        Rule::MeanPair("browDownLeft", "browDownRight"),
    ),
    au(
        "AU05",
        "upper lid raiser",
        Rule::MeanPair("eyeWideLeft", "eyeWideRight"),
    ),
    au(
        "AU06",
        "cheek raiser",
        Rule::MeanPair("cheekSquintLeft", "cheekSquintRight"),
    ),
    au(
        "AU07",
        "lid tightener",
        Rule::MeanPair("eyeSquintLeft", "eyeSquintRight"),
    ),
    au(
        "AU09",
        "nose wrinkler",
        Rule::MeanPair("noseSneerLeft", "noseSneerRight"),
    ),
    au(
        "AU10",
        "upper lip raiser",
        Rule::MeanPair("mouthUpperUpLeft", "mouthUpperUpRight"),
    ),
    au(
        "AU12",
        "lip corner puller",
        Rule::MeanPair("mouthSmileLeft", "mouthSmileRight"),
    ),
    au(
        "AU14",
        "dimpler",
        Rule::MeanPair("mouthDimpleLeft", "mouthDimpleRight"),
    ),
    au(
        "AU15",
        "lip corner depressor",
        Rule::MeanPair("mouthFrownLeft", "mouthFrownRight"),
    ),
    au("AU17", "chin raiser", Rule::One("mouthShrugLower")),
    au(
        "AU20",
        "lip stretcher",
        Rule::MeanPair("mouthStretchLeft", "mouthStretchRight"),
    ),
    au(
        "AU24",
        "lip pressor",
        Rule::MeanPair("mouthPressLeft", "mouthPressRight"),
    ),
    au(
        "AU25",
        "lips part",
        Rule::MaxOf(
            &Rule::Minus("jawOpen", "mouthClose"),
            &Rule::MeanPair("mouthLowerDownLeft", "mouthLowerDownRight"),
        ),
    ),
    au("AU26", "jaw drop", Rule::One("jawOpen")),
    au(
        "AU28",
        "lip suck",
        Rule::Max("mouthRollLower", "mouthRollUpper"),
    ),
    au(
        "AU45",
        "blink / eyes closed",
        Rule::MeanPair("eyeBlinkLeft", "eyeBlinkRight"),
    ),
];

/// The default threshold of [`ActionUnits::present`]: 0.5, the midpoint of the sigmoid scores
/// the blendshapes come from (where the model rates a movement as nearer its full extent than
/// its absence). Checked on 921 FER-2013 PublicTest faces (48x48 grayscale upscaled to 192,
/// MediaPipe's meshes): AU12 ≥ 0.5 on 60% of the `happy` faces and 7% of the others; AU26 ≥ 0.5
/// on 30% of the `surprise` faces and 5% of the others. A lower threshold (0.3: AU12 on 70% and
/// 11%) trades false alarms for recall.
pub const DEFAULT_PRESENCE_THRESHOLD: f32 = 0.5;

/// FACS action-unit intensities of one face, each in `[0, 1]`, in the order of
/// [`ACTION_UNIT_TABLE`]. Derived from blendshapes, not measured by a FACS-trained model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionUnits {
    /// Intensities in the order of [`ACTION_UNIT_TABLE`].
    pub intensities: [f32; NUM_ACTION_UNITS],
}

impl ActionUnits {
    /// Applies [`ACTION_UNIT_TABLE`] to `blendshapes`.
    pub fn from_blendshapes(blendshapes: &Blendshapes) -> Self {
        Self {
            intensities: ACTION_UNIT_TABLE.map(|row| row.rule.apply(blendshapes)),
        }
    }

    /// The intensity of the action unit `id` (`"AU12"`), if it is reported.
    pub fn get(&self, id: &str) -> Option<f32> {
        let i = ACTION_UNIT_TABLE.iter().position(|row| row.id == id)?;
        self.intensities.get(i).copied()
    }

    /// `(id, intensity)` pairs in AU order: `("AU01", 0.12)`.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f32)> + '_ {
        ACTION_UNIT_TABLE
            .iter()
            .map(|row| row.id)
            .zip(self.intensities.iter().copied())
    }

    /// The ids of the action units whose intensity is at least `threshold`, in AU order
    /// ([`DEFAULT_PRESENCE_THRESHOLD`] is 0.5).
    pub fn present(&self, threshold: f32) -> Vec<&'static str> {
        self.iter()
            .filter(|&(_, v)| v >= threshold)
            .map(|(id, _)| id)
            .collect()
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for ActionUnits {
    /// A map from AU id to intensity, in AU order.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(NUM_ACTION_UNITS))?;
        for (id, v) in self.iter() {
            map.serialize_entry(id, &v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blendshapes::{BLENDSHAPE_NAMES, NUM_BLENDSHAPES};

    fn shapes(values: &[(&str, f32)]) -> Blendshapes {
        let mut scores = [0.0; NUM_BLENDSHAPES];
        for (name, v) in values {
            let i = BLENDSHAPE_NAMES.iter().position(|n| n == name).unwrap();
            scores[i] = *v;
        }
        Blendshapes { scores }
    }

    fn names(rule: &Rule) -> Vec<&'static str> {
        match rule {
            Rule::One(a) => vec![a],
            Rule::MeanPair(a, b) | Rule::Max(a, b) | Rule::Minus(a, b) => vec![a, b],
            Rule::MaxOf(a, b) => [names(a), names(b)].concat(),
        }
    }

    #[test]
    fn table_names_exist_and_ids_are_ordered() {
        for row in &ACTION_UNIT_TABLE {
            for name in names(&row.rule) {
                assert!(BLENDSHAPE_NAMES.contains(&name), "{}: {name}", row.id);
            }
        }
        let ids: Vec<u32> = ACTION_UNIT_TABLE
            .iter()
            .map(|r| r.id[2..].parse().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }

    #[test]
    fn smile_gives_au12_and_au06() {
        let b = shapes(&[
            ("mouthSmileLeft", 0.9),
            ("mouthSmileRight", 0.7),
            ("cheekSquintLeft", 0.6),
            ("cheekSquintRight", 0.4),
        ]);
        let au = ActionUnits::from_blendshapes(&b);
        assert!((au.get("AU12").unwrap() - 0.8).abs() < 1e-6);
        assert!((au.get("AU06").unwrap() - 0.5).abs() < 1e-6);
        assert_eq!(au.get("AU04"), Some(0.0));
        assert_eq!(au.get("AU23"), None);
        assert_eq!(au.present(DEFAULT_PRESENCE_THRESHOLD), vec!["AU06", "AU12"]);
        assert_eq!(au.present(0.6), vec!["AU12"]);
    }

    #[test]
    fn one_sided_movement_counts_half() {
        let au = ActionUnits::from_blendshapes(&shapes(&[("browDownLeft", 0.8)]));
        assert!((au.get("AU04").unwrap() - 0.4).abs() < 1e-6);
    }

    #[test]
    fn lips_part_and_jaw_drop() {
        // Jaw open with the lips held closed: AU26 but not AU25.
        let au = ActionUnits::from_blendshapes(&shapes(&[("jawOpen", 0.6), ("mouthClose", 0.5)]));
        assert!((au.get("AU26").unwrap() - 0.6).abs() < 1e-6);
        assert!((au.get("AU25").unwrap() - 0.1).abs() < 1e-6);
        // Lower lip pulled down with the jaw closed: AU25 only.
        let au = ActionUnits::from_blendshapes(&shapes(&[
            ("mouthLowerDownLeft", 0.7),
            ("mouthLowerDownRight", 0.5),
            ("mouthClose", 0.3),
        ]));
        assert!((au.get("AU25").unwrap() - 0.6).abs() < 1e-6);
        assert_eq!(au.get("AU26"), Some(0.0));
        // Lip suck takes the larger roll; blink the mean.
        let au = ActionUnits::from_blendshapes(&shapes(&[
            ("mouthRollUpper", 0.3),
            ("mouthRollLower", 0.9),
            ("eyeBlinkLeft", 1.0),
            ("eyeBlinkRight", 0.8),
        ]));
        assert!((au.get("AU28").unwrap() - 0.9).abs() < 1e-6);
        assert!((au.get("AU45").unwrap() - 0.9).abs() < 1e-6);
    }

    #[test]
    fn iter_is_in_au_order_and_in_range() {
        let b = Blendshapes {
            scores: [1.0; NUM_BLENDSHAPES],
        };
        let au = ActionUnits::from_blendshapes(&b);
        let ids: Vec<&str> = au.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.first(), Some(&"AU01"));
        assert_eq!(ids.last(), Some(&"AU45"));
        assert_eq!(ids.len(), NUM_ACTION_UNITS);
        // jawOpen − mouthClose is 0 here, but mouthLowerDown is 1.
        assert!(au.iter().all(|(_, v)| v == 1.0));
        let neutral = ActionUnits::from_blendshapes(&shapes(&[]));
        assert!(neutral.present(DEFAULT_PRESENCE_THRESHOLD).is_empty());
    }
}
