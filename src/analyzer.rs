//! [`FaceAnalyzer`]: the models chosen once, then the whole pipeline on each image.

use std::collections::BTreeSet;

use faceattrs::AgeGender;
use facecore::chip::DlibPoints5;
use facecore::geometry::{BBox, Keypoints5, Point, Point3};
use facecore::threads::ThreadPool;
use facecore::weights::WeightsSource;
use faceembed::{Embedder, EmbeddingModel};
use faceexpr::action_units::ActionUnits;
use faceexpr::blendshapes::FaceBlendshapes;
use faceexpr::{EmotionModel, EmotionRecognizer};
use facelandmarks::facemesh::MIN_ROI_SIZE;
use facelandmarks::{FaceLandmarks68, FaceMesh, HeadPoseEstimator, Landmarks478, MeshRoi};
use image::{DynamicImage, RgbImage};

use facedetect::{DetectorKind, DetectorOptions};

use crate::face::{Face, Part};
use crate::{Error, Result};

/// Where the 68-point layout comes from. The default is the one with the lower error on HELEN
/// (`docs/ACCURACY.md`): the mesh, 5.04 % NME against face-api's 5.41 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Landmarks68Source {
    /// face-api.js's 68-point network on the face box.
    FaceApi,
    /// Read off the 478-point mesh ([`Landmarks478::landmarks68`]).
    #[default]
    Mesh,
}

/// Configures and builds a [`FaceAnalyzer`].
#[derive(Debug, Clone)]
pub struct FaceAnalyzerBuilder {
    detector: DetectorKind,
    detector_options: DetectorOptions,
    weights: WeightsSource,
    assume_face: bool,
    parts: BTreeSet<Part>,
    embedding_model: EmbeddingModel,
    emotion_model: EmotionModel,
    emotion_flip: bool,
    age_gender_flip: bool,
    landmarks68: Landmarks68Source,
    threads: usize,
}

impl Default for FaceAnalyzerBuilder {
    fn default() -> Self {
        Self {
            detector: DetectorKind::default(),
            detector_options: DetectorOptions::default(),
            weights: WeightsSource::default(),
            assume_face: false,
            parts: Part::ALL.into_iter().collect(),
            embedding_model: EmbeddingModel::SFace,
            emotion_model: EmotionModel::default(),
            emotion_flip: true,
            age_gender_flip: true,
            landmarks68: Landmarks68Source::default(),
            threads: 0,
        }
    }
}

impl FaceAnalyzerBuilder {
    /// The face detector (default: RetinaFace).
    pub fn detector(mut self, kind: DetectorKind) -> Self {
        self.detector = kind;
        self
    }

    /// Detector options: thresholds, minimum size, maximum faces, input resolution.
    pub fn detector_options(mut self, options: DetectorOptions) -> Self {
        self.detector_options = options;
        self
    }

    /// Where weights come from (default: compiled into the library).
    pub fn weights(mut self, source: WeightsSource) -> Self {
        self.weights = source;
        self
    }

    /// Skip detection: every image is one face crop, its box the whole image.
    pub fn assume_face(mut self, yes: bool) -> Self {
        self.assume_face = yes;
        self
    }

    /// The parts to compute (default: all of [`Part::ALL`]). The box, score and keypoints are
    /// always there; an empty list runs the detector alone.
    pub fn parts(mut self, parts: impl IntoIterator<Item = Part>) -> Self {
        self.parts = parts.into_iter().collect();
        self
    }

    /// The identity model (default: SFace).
    pub fn embedding_model(mut self, model: EmbeddingModel) -> Self {
        self.embedding_model = model;
        self
    }

    /// The emotion model (default: [`EmotionModel::default`]).
    pub fn emotion_model(mut self, model: EmotionModel) -> Self {
        self.emotion_model = model;
        self
    }

    /// Average the emotion over each face and its mirror image (twice the work; default on: it
    /// adds about one point of FER2013 accuracy, `docs/ACCURACY.md`).
    pub fn emotion_flip(mut self, yes: bool) -> Self {
        self.emotion_flip = yes;
        self
    }

    /// Average age and gender over each chip and its mirror image (twice the work; default on:
    /// it lowers the UTKFace age error and raises gender accuracy, `docs/ACCURACY.md`).
    pub fn age_gender_flip(mut self, yes: bool) -> Self {
        self.age_gender_flip = yes;
        self
    }

    /// Where the 68-point layout comes from (default: [`Landmarks68Source::Mesh`]).
    pub fn landmarks68_source(mut self, source: Landmarks68Source) -> Self {
        self.landmarks68 = source;
        self
    }

    /// How many threads `analyze` uses (default 0: all cores). Every kernel of every model
    /// runs on this many threads, without nesting; see `facecore::threads` for the one
    /// exception (candle's own element-wise operations, bounded by `CANDLE_NUM_THREADS`).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Checks every option and loads every model the chosen parts need.
    pub fn build(self) -> Result<FaceAnalyzer> {
        self.detector_options.validate()?;
        let wants = |p: Part| self.parts.contains(&p);
        let src = &self.weights;
        let mesh_from_parts = self.parts.iter().any(|p| p.needs_mesh())
            || (wants(Part::Landmarks68) && self.landmarks68 == Landmarks68Source::Mesh);
        // Alignment needs the 5-point layout: without it from the detector, the mesh gives it.
        let needs_keypoints = wants(Part::Embedding) || wants(Part::Age) || wants(Part::Gender);
        let detector_has_keypoints =
            !self.assume_face && matches!(self.detector, DetectorKind::RetinaFace);
        let mesh = if mesh_from_parts || (needs_keypoints && !detector_has_keypoints) {
            Some(FaceMesh::load(src)?)
        } else {
            None
        };
        let head_pose = if wants(Part::HeadPose) || wants(Part::Gaze) {
            Some(HeadPoseEstimator::load(src)?)
        } else {
            None
        };
        let landmarks68 =
            if wants(Part::Landmarks68) && self.landmarks68 == Landmarks68Source::FaceApi {
                Some(FaceLandmarks68::load(src)?)
            } else {
                None
            };
        let blendshapes = if wants(Part::Blendshapes) || wants(Part::ActionUnits) {
            Some(FaceBlendshapes::load(src)?)
        } else {
            None
        };
        let embedder = if wants(Part::Embedding) {
            Some(Embedder::load(self.embedding_model, src)?)
        } else {
            None
        };
        let age_gender = if wants(Part::Age) || wants(Part::Gender) {
            Some(AgeGender::load(src)?.with_flip(self.age_gender_flip))
        } else {
            None
        };
        let emotion = if wants(Part::Emotion) {
            Some(EmotionRecognizer::load(
                src,
                self.emotion_model,
                self.emotion_flip,
            )?)
        } else {
            None
        };
        Ok(FaceAnalyzer {
            pool: ThreadPool::new(self.threads)?,
            detector: self.detector.load(src)?,
            detector_kind: self.detector,
            detector_options: self.detector_options,
            assume_face: self.assume_face,
            parts: self.parts,
            mesh,
            head_pose,
            landmarks68,
            blendshapes,
            embedder,
            age_gender,
            emotion,
        })
    }
}

/// Runs the chosen models on images. Build it once, then share it: it is `Send + Sync`.
pub struct FaceAnalyzer {
    pool: ThreadPool,
    detector: Box<dyn facedetect::FaceDetector>,
    detector_kind: DetectorKind,
    detector_options: DetectorOptions,
    assume_face: bool,
    parts: BTreeSet<Part>,
    mesh: Option<FaceMesh>,
    head_pose: Option<HeadPoseEstimator>,
    landmarks68: Option<FaceLandmarks68>,
    blendshapes: Option<FaceBlendshapes>,
    embedder: Option<Embedder>,
    age_gender: Option<AgeGender>,
    emotion: Option<EmotionRecognizer>,
}

impl std::fmt::Debug for FaceAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceAnalyzer")
            .field("detector", &self.detector.name())
            .field("detector_options", &self.detector_options)
            .field("assume_face", &self.assume_face)
            .field("parts", &self.parts)
            .field("threads", &self.pool.threads())
            .finish()
    }
}

impl FaceAnalyzer {
    /// An analyzer with every default: RetinaFace, every part, embedded weights.
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// A builder to choose models, parts and options.
    pub fn builder() -> FaceAnalyzerBuilder {
        FaceAnalyzerBuilder::default()
    }

    /// The parts this analyzer computes.
    pub fn parts(&self) -> impl Iterator<Item = Part> + '_ {
        self.parts.iter().copied()
    }

    /// The faces of `img`, highest detection score first. Grayscale, RGBA and 16-bit images are
    /// converted to 8-bit RGB first.
    pub fn analyze(&self, img: &DynamicImage) -> Result<Vec<Face>> {
        self.analyze_rgb(&img.to_rgb8())
    }

    /// The faces of an 8-bit RGB image; see [`FaceAnalyzer::analyze`]. Each model runs once per
    /// image on all its faces as one batch.
    pub fn analyze_rgb(&self, img: &RgbImage) -> Result<Vec<Face>> {
        self.pool.install(|| self.analyze_on_pool(img))
    }

    /// The faces of many images, in order; one result per image, so that a bad image does not
    /// stop the others. The images are analysed one after the other, each with every thread.
    pub fn analyze_batch<'a>(
        &self,
        images: impl IntoIterator<Item = &'a DynamicImage>,
    ) -> Vec<Result<Vec<Face>>> {
        images.into_iter().map(|img| self.analyze(img)).collect()
    }

    fn analyze_on_pool(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (width, height) = img.dimensions();
        if width == 0 || height == 0 {
            return Err(Error::EmptyImage { width, height });
        }
        let mut faces: Vec<Face> = if self.assume_face {
            let whole = BBox::new(0.0, 0.0, width as f32, height as f32);
            vec![Face::new(whole, 1.0, None, Vec::new())]
        } else {
            let dets = self.detector.detect(img, &self.detector_options)?;
            dets.into_iter().map(Face::from).collect()
        };
        if faces.is_empty() {
            return Ok(faces);
        }
        let meshes = self.run_mesh(img, &mut faces)?;
        self.run_mesh_parts(img, &mut faces, &meshes)?;
        self.run_landmarks68(img, &mut faces, &meshes)?;
        self.run_embedding(img, &mut faces)?;
        self.run_age_gender(img, &mut faces)?;
        if let Some(model) = &self.emotion {
            let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
            for (face, emotion) in faces.iter_mut().zip(model.predict(img, &boxes)?) {
                face.emotion = Some(emotion);
            }
        }
        Ok(faces)
    }

    fn wants(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// The mesh of every face large enough for it (`None` for the others, with the reason
    /// recorded on each mesh part asked for), in one batch; fills missing 5-point layouts.
    fn run_mesh(&self, img: &RgbImage, faces: &mut [Face]) -> Result<Vec<Option<Landmarks478>>> {
        let Some(model) = &self.mesh else {
            return Ok(vec![None; faces.len()]);
        };
        let rois: Vec<MeshRoi> = faces.iter().map(|f| self.mesh_roi(f)).collect();
        let usable: Vec<usize> = (0..faces.len()).filter(|&i| rois[i].is_usable()).collect();
        let batch: Vec<MeshRoi> = usable.iter().map(|&i| rois[i]).collect();
        let mut meshes = vec![None; faces.len()];
        for (&i, mesh) in usable.iter().zip(model.run(img, &batch)?) {
            meshes[i] = Some(mesh);
        }
        for (face, (mesh, roi)) in faces.iter_mut().zip(meshes.iter().zip(&rois)) {
            match mesh {
                Some(mesh) => {
                    if face.keypoints.is_none() {
                        face.keypoints = Some(mesh.keypoints5());
                    }
                    if self.wants(Part::Landmarks) {
                        face.landmarks = Some(mesh.clone());
                    }
                }
                None => {
                    let reason = format!(
                        "the face region is {:.0} px, below the {MIN_ROI_SIZE} px the mesh needs",
                        roi.width.min(roi.height)
                    );
                    for part in self.parts.iter().filter(|p| p.needs_mesh()) {
                        face.omit(*part, reason.clone());
                    }
                }
            }
        }
        Ok(meshes)
    }

    /// MediaPipe's ROI for a face: the box, and the eye line when the detector gives the eyes.
    fn mesh_roi(&self, face: &Face) -> MeshRoi {
        let eyes = match (&face.keypoints, self.detector_kind) {
            (Some(k), _) => Some((k.0[Keypoints5::LEFT_EYE], k.0[Keypoints5::RIGHT_EYE])),
            // BlazeFace's first two keypoints are the image-left and image-right eyes.
            (None, DetectorKind::BlazeFaceShort | DetectorKind::BlazeFaceFull) => {
                match face.detector_keypoints[..] {
                    [l, r, ..] => Some((l, r)),
                    _ => None,
                }
            }
            _ => None,
        };
        let (l, r): (Option<Point>, Option<Point>) =
            eyes.map_or((None, None), |(l, r)| (Some(l), Some(r)));
        MeshRoi::from_detection(face.bbox, l, r)
    }

    /// Head pose, gaze, blendshapes and action units from the meshes.
    fn run_mesh_parts(
        &self,
        img: &RgbImage,
        faces: &mut [Face],
        meshes: &[Option<Landmarks478>],
    ) -> Result<()> {
        if let Some(estimator) = &self.head_pose {
            for (face, mesh) in faces.iter_mut().zip(meshes) {
                let Some(mesh) = mesh else { continue };
                match estimator.estimate(&mesh.points, img.width(), img.height()) {
                    Ok(pose) => {
                        if self.wants(Part::Gaze) {
                            match facegaze::estimate(&mesh.points, &pose) {
                                Ok(gaze) => face.gaze = Some(gaze),
                                Err(e) => face.omit(Part::Gaze, e.to_string()),
                            }
                        }
                        if self.wants(Part::HeadPose) {
                            face.head_pose = Some(pose);
                        }
                    }
                    Err(e) => {
                        for part in [Part::HeadPose, Part::Gaze] {
                            if self.wants(part) {
                                face.omit(part, format!("no head pose: {e}"));
                            }
                        }
                    }
                }
            }
        }
        if let Some(model) = &self.blendshapes {
            let (idx, pts): (Vec<usize>, Vec<&[Point3]>) = meshes
                .iter()
                .enumerate()
                .filter_map(|(i, m)| m.as_ref().map(|m| (i, m.points.as_slice())))
                .unzip();
            for (&i, bs) in idx.iter().zip(model.predict(&pts)?) {
                if self.wants(Part::ActionUnits) {
                    faces[i].action_units = Some(ActionUnits::from_blendshapes(&bs));
                }
                if self.wants(Part::Blendshapes) {
                    faces[i].blendshapes = Some(bs);
                }
            }
        }
        Ok(())
    }

    fn run_landmarks68(
        &self,
        img: &RgbImage,
        faces: &mut [Face],
        meshes: &[Option<Landmarks478>],
    ) -> Result<()> {
        if !self.wants(Part::Landmarks68) {
            return Ok(());
        }
        match &self.landmarks68 {
            Some(model) => {
                let boxes: Vec<BBox> = faces.iter().map(|f| f.bbox).collect();
                for (face, l) in faces.iter_mut().zip(model.run(img, &boxes)?) {
                    face.landmarks68 = Some(l);
                }
            }
            None => {
                for (face, mesh) in faces.iter_mut().zip(meshes) {
                    if let Some(mesh) = mesh {
                        face.landmarks68 = Some(facelandmarks::Landmarks68 {
                            points: mesh.landmarks68(),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The faces that have a 5-point layout, by index; the others get `part` omitted.
    fn with_keypoints(&self, faces: &mut [Face], parts: &[Part]) -> Vec<(usize, Keypoints5)> {
        let mut out = Vec::with_capacity(faces.len());
        for (i, face) in faces.iter_mut().enumerate() {
            match face.keypoints {
                Some(k) => out.push((i, k)),
                None => {
                    for &part in parts.iter().filter(|p| self.wants(**p)) {
                        face.omit(part, "no 5-point layout to align the face with");
                    }
                }
            }
        }
        out
    }

    fn run_embedding(&self, img: &RgbImage, faces: &mut [Face]) -> Result<()> {
        let Some(embedder) = &self.embedder else {
            return Ok(());
        };
        let (idx, kps): (Vec<usize>, Vec<Keypoints5>) = self
            .with_keypoints(faces, &[Part::Embedding])
            .into_iter()
            .unzip();
        for (i, e) in idx.into_iter().zip(embedder.embed(img, &kps)?) {
            faces[i].embedding = Some(e);
        }
        Ok(())
    }

    fn run_age_gender(&self, img: &RgbImage, faces: &mut [Face]) -> Result<()> {
        let Some(model) = &self.age_gender else {
            return Ok(());
        };
        let (idx, points): (Vec<usize>, Vec<DlibPoints5>) = self
            .with_keypoints(faces, &[Part::Age, Part::Gender])
            .into_iter()
            .map(|(i, k)| (i, DlibPoints5::from_keypoints5(&k)))
            .unzip();
        for (i, (age, gender)) in idx.into_iter().zip(model.predict(img, &points)?) {
            if self.wants(Part::Age) {
                faces[i].age = Some(age);
            }
            if self.wants(Part::Gender) {
                faces[i].gender = Some(gender);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<FaceAnalyzer>();
    }
}
