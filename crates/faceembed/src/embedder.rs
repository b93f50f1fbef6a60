//! Both identity models behind one type, aligned from the workspace's 5-point layout.

use facecore::chip::DlibPoints5;
use facecore::geometry::Keypoints5;
use facecore::weights::WeightsSource;
use image::RgbImage;

use crate::dlib_resnet::DlibResNet;
use crate::embedding::{Embedding, EmbeddingModel};
use crate::sface::SFace;
use crate::Result;

/// One of the identity models, chosen by [`EmbeddingModel`].
#[derive(Debug, Clone)]
pub enum Embedder {
    /// OpenCV's SFace ([`SFace`]).
    SFace(SFace),
    /// dlib's ResNet ([`DlibResNet`]).
    DlibResNet(DlibResNet),
}

impl Embedder {
    /// Loads `model` from `source`.
    pub fn load(model: EmbeddingModel, source: &WeightsSource) -> Result<Self> {
        Ok(match model {
            EmbeddingModel::SFace => Self::SFace(SFace::load(source)?),
            EmbeddingModel::DlibResNet => Self::DlibResNet(DlibResNet::load(source)?),
        })
    }

    /// The model this embedder runs.
    pub fn model(&self) -> EmbeddingModel {
        match self {
            Self::SFace(_) => EmbeddingModel::SFace,
            Self::DlibResNet(_) => EmbeddingModel::DlibResNet,
        }
    }

    /// The embeddings of the faces of `img` given by their 5-point layouts, in one batch:
    /// SFace aligns them to the ArcFace template, the dlib ResNet to dlib's chip through
    /// [`DlibPoints5::from_keypoints5`].
    pub fn embed(&self, img: &RgbImage, faces: &[Keypoints5]) -> Result<Vec<Embedding>> {
        match self {
            Self::SFace(m) => m.embed(img, faces),
            Self::DlibResNet(m) => {
                let points: Vec<DlibPoints5> =
                    faces.iter().map(DlibPoints5::from_keypoints5).collect();
                m.embed(img, &points)
            }
        }
    }
}
