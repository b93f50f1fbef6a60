//! A gallery of named identities, each with one or more embeddings of one model, searchable by
//! similarity and stored in one small binary file.
//!
//! # File format (version 1)
//!
//! Little-endian, no padding:
//!
//! | field | type | value |
//! | --- | --- | --- |
//! | magic | 8 bytes | `FACEGAL\0` |
//! | version | u32 | 1 |
//! | model id length, model id | u16, UTF-8 | [`EmbeddingModel::id`], e.g. `sface-2021dec-int8bq` |
//! | dim | u32 | the model's embedding length |
//! | identities | u32 | count |
//! | then per identity: name length, name | u16, UTF-8 | non-empty, unique |
//! | embedding count | u32 | at least 1 |
//! | vectors | count x dim f32 | unit-length embeddings |
//!
//! and nothing after the last identity. Reading checks every field: a wrong magic, an unknown
//! version or model id, a model other than the one asked for, a dimension that is not the
//! model's, a truncated file, invalid UTF-8, an empty or repeated name, a vector that is not
//! finite and of unit length, and trailing bytes are each an [`Error::GalleryFormat`] naming the byte offset.

use std::path::{Path, PathBuf};

use crate::embedding::{Embedding, EmbeddingModel};
use crate::{Error, Result};

/// The first eight bytes of a gallery file.
pub const MAGIC: [u8; 8] = *b"FACEGAL\0";

/// The file format version this crate writes and reads.
pub const VERSION: u32 = 1;

/// How far from 1 the norm of a stored vector may be (float32 rounding of a normalised vector is
/// far smaller; anything more is corruption).
const UNIT_NORM_TOL: f32 = 1e-3;

/// How an identity with several embeddings scores against a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Score {
    /// The highest cosine similarity between the query and any of the identity's embeddings
    /// (robust to a few unusual photos among many).
    #[default]
    Best,
    /// The mean of the cosine similarities between the query and each of the identity's
    /// embeddings (the query against the identity's mean vector).
    Mean,
}

/// One search result.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Match {
    /// The identity's name.
    pub name: String,
    /// Its score against the query ([`Score`]), a cosine similarity.
    pub similarity: f32,
}

/// Named identities with their embeddings, all of one model, in the order they were added.
#[derive(Debug, Clone, PartialEq)]
pub struct Gallery {
    model: EmbeddingModel,
    identities: Vec<(String, Vec<Embedding>)>,
}

impl Gallery {
    /// An empty gallery for embeddings of `model`.
    pub fn new(model: EmbeddingModel) -> Self {
        Self {
            model,
            identities: Vec::new(),
        }
    }

    /// The model of every embedding in the gallery.
    pub fn model(&self) -> EmbeddingModel {
        self.model
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    /// Whether the gallery has no identity.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// The identities' names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.identities.iter().map(|(n, _)| n.as_str())
    }

    /// The embeddings of the identity called `name`.
    pub fn embeddings(&self, name: &str) -> Option<&[Embedding]> {
        self.identities
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.as_slice())
    }

    /// Adds `embedding` to the identity `name`, creating it if new. Errors when the embedding's
    /// model is not the gallery's or the name is empty or longer than 65,535 bytes.
    pub fn add(&mut self, name: &str, embedding: Embedding) -> Result<()> {
        if embedding.model != self.model {
            return Err(Error::ModelMismatch {
                expected: self.model.id().to_string(),
                found: embedding.model.id().to_string(),
            });
        }
        if name.is_empty() || name.len() > u16::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "identity name of {} bytes (1 to 65535 allowed)",
                name.len()
            )));
        }
        match self.identities.iter_mut().find(|(n, _)| n == name) {
            Some((_, list)) => list.push(embedding),
            None => self.identities.push((name.to_string(), vec![embedding])),
        }
        Ok(())
    }

    /// Removes the identity `name`; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.identities.len();
        self.identities.retain(|(n, _)| n != name);
        self.identities.len() != before
    }

    /// The `k` identities most similar to `query`, best first (ties by name), scored as `score`
    /// says. Errors when the query's model is not the gallery's.
    pub fn search(&self, query: &Embedding, k: usize, score: Score) -> Result<Vec<Match>> {
        if query.model != self.model {
            return Err(Error::ModelMismatch {
                expected: self.model.id().to_string(),
                found: query.model.id().to_string(),
            });
        }
        let mut matches = Vec::with_capacity(self.identities.len());
        for (name, list) in &self.identities {
            let sims = list
                .iter()
                .map(|e| query.cosine(e))
                .collect::<Result<Vec<f32>>>()?;
            let similarity = match score {
                Score::Best => sims.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                Score::Mean => sims.iter().sum::<f32>() / sims.len().max(1) as f32,
            };
            matches.push(Match {
                name: name.clone(),
                similarity,
            });
        }
        matches.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.name.cmp(&b.name))
        });
        matches.truncate(k);
        Ok(matches)
    }

    /// The gallery in the file format of this module.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.model.id().as_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&(self.model.dim() as u32).to_le_bytes());
        out.extend_from_slice(&(self.identities.len() as u32).to_le_bytes());
        for (name, list) in &self.identities {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for v in list.iter().flat_map(|e| &e.vector) {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// Reads a gallery from bytes in the file format of this module, expecting embeddings of
    /// `model`.
    pub fn from_bytes(bytes: &[u8], model: EmbeddingModel) -> Result<Self> {
        parse(bytes, model, Path::new("<bytes>"))
    }

    /// Writes the gallery to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()).map_err(|source| Error::GalleryIo {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads a gallery file, expecting embeddings of `model`: a gallery of another model is an
    /// [`Error::GalleryFormat`].
    pub fn load(path: impl AsRef<Path>, model: EmbeddingModel) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Error::GalleryIo {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&bytes, model, path)
    }
}

/// A cursor over a gallery file that reports where it went wrong.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn fail(&self, reason: String) -> Error {
        Error::GalleryFormat {
            path: PathBuf::from(self.path),
            reason,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(self.fail(format!(
                "truncated: {what} at byte {} needs {n} bytes, {left} left",
                self.pos
            )));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.u16(what)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| self.fail(format!("{what} at byte {at} is not UTF-8")))
    }
}

fn parse(bytes: &[u8], model: EmbeddingModel, path: &Path) -> Result<Gallery> {
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };
    if r.take(MAGIC.len(), "magic")? != MAGIC {
        return Err(r.fail("not a gallery file (wrong magic bytes)".into()));
    }
    let version = r.u32("version")?;
    if version != VERSION {
        return Err(r.fail(format!(
            "format version {version}, this library reads version {VERSION}"
        )));
    }
    let id = r.string("model id")?;
    let found = EmbeddingModel::from_id(&id)
        .ok_or_else(|| r.fail(format!("unknown embedding model {id:?}")))?;
    if found != model {
        return Err(r.fail(format!(
            "the gallery holds {found} embeddings, {model} embeddings were expected"
        )));
    }
    let dim = r.u32("dimension")? as usize;
    if dim != model.dim() {
        return Err(r.fail(format!(
            "dimension {dim}, but {model} embeddings have {}",
            model.dim()
        )));
    }
    let count = r.u32("identity count")?;
    let mut gallery = Gallery::new(model);
    for i in 0..count {
        let at = r.pos;
        let name = r.string(&format!("name of identity {i}"))?;
        if name.is_empty() || gallery.embeddings(&name).is_some() {
            return Err(r.fail(format!(
                "identity {i} at byte {at}: empty or repeated name {name:?}"
            )));
        }
        let n = r.u32(&format!("embedding count of {name:?}"))? as usize;
        if n == 0 {
            return Err(r.fail(format!("identity {name:?} at byte {at} has no embedding")));
        }
        for j in 0..n {
            let at = r.pos;
            let raw: Vec<f32> = r
                .take(dim * 4, &format!("embedding {j} of {name:?}"))?
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
            if !(norm - 1.0).abs().lt(&UNIT_NORM_TOL) {
                return Err(r.fail(format!(
                    "embedding {j} of {name:?} at byte {at} is not a finite unit vector \
                     (norm {norm})"
                )));
            }
            gallery.add(&name, Embedding { model, vector: raw })?;
        }
    }
    if r.pos != bytes.len() {
        return Err(r.fail(format!(
            "{} unexpected bytes after the last identity, at byte {}",
            bytes.len() - r.pos,
            r.pos
        )));
    }
    Ok(gallery)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emb(model: EmbeddingModel, seed: usize) -> Embedding {
        let raw = (0..model.dim())
            .map(|i| ((i * 7 + seed * 13) % 17) as f32 - 8.0)
            .collect();
        Embedding::new(model, raw).unwrap()
    }

    fn sample() -> Gallery {
        let mut g = Gallery::new(EmbeddingModel::SFace);
        g.add("ada", emb(EmbeddingModel::SFace, 1)).unwrap();
        g.add("ada", emb(EmbeddingModel::SFace, 2)).unwrap();
        g.add("grace", emb(EmbeddingModel::SFace, 3)).unwrap();
        g
    }

    #[test]
    fn bytes_round_trip_exactly() {
        let g = sample();
        let back = Gallery::from_bytes(&g.to_bytes(), EmbeddingModel::SFace).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.names().collect::<Vec<_>>(), ["ada", "grace"]);
        assert_eq!(back.embeddings("ada").map(|e| e.len()), Some(2));
    }

    #[test]
    fn files_round_trip() {
        let path = std::env::temp_dir().join(format!("gallery-{}.bin", std::process::id()));
        sample().save(&path).unwrap();
        let back = Gallery::load(&path, EmbeddingModel::SFace).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, sample());
        let err = Gallery::load(&path, EmbeddingModel::SFace).unwrap_err();
        assert!(matches!(err, Error::GalleryIo { .. }), "{err}");
    }

    #[test]
    fn search_ranks_by_best_or_mean_similarity() {
        let g = sample();
        let q = emb(EmbeddingModel::SFace, 2);
        let best = g.search(&q, 5, Score::Best).unwrap();
        assert_eq!(best[0].name, "ada");
        assert!((best[0].similarity - 1.0).abs() < 1e-5);
        let mean = g.search(&q, 1, Score::Mean).unwrap();
        assert_eq!(mean.len(), 1);
        let ada = g.embeddings("ada").unwrap();
        let want = (q.cosine(&ada[0]).unwrap() + 1.0) / 2.0;
        assert!((mean[0].similarity - want).abs() < 1e-5);
        let other = emb(EmbeddingModel::DlibResNet, 2);
        assert!(matches!(
            g.search(&other, 1, Score::Best),
            Err(Error::ModelMismatch { .. })
        ));
    }

    #[test]
    fn adding_checks_model_and_name() {
        let mut g = sample();
        assert!(g.add("x", emb(EmbeddingModel::DlibResNet, 1)).is_err());
        assert!(g.add("", emb(EmbeddingModel::SFace, 1)).is_err());
        assert!(g.remove("ada") && !g.remove("ada"));
        assert_eq!(g.len(), 1);
    }

    fn format_error(bytes: &[u8], model: EmbeddingModel) -> String {
        match Gallery::from_bytes(bytes, model) {
            Err(e @ Error::GalleryFormat { .. }) => e.to_string(),
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn truncated_and_corrupt_files_are_clear_errors() {
        let good = sample().to_bytes();
        for cut in [0, 5, 8, 13, 30, 45, good.len() - 1] {
            let msg = format_error(&good[..cut], EmbeddingModel::SFace);
            assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(format_error(&bad, EmbeddingModel::SFace).contains("magic"));
        let mut bad = good.clone();
        bad[8] = 2;
        assert!(format_error(&bad, EmbeddingModel::SFace).contains("version 2"));
        let mut bad = good.clone();
        bad.push(0);
        assert!(format_error(&bad, EmbeddingModel::SFace).contains("unexpected bytes"));
        let msg = format_error(&good, EmbeddingModel::DlibResNet);
        assert!(msg.contains("sface-2021dec-int8bq"), "{msg}");
        let mut bad = good.clone();
        let first_vector = 8 + 4 + 2 + 20 + 4 + 4 + 2 + 3 + 4;
        bad[first_vector..first_vector + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(format_error(&bad, EmbeddingModel::SFace).contains("embedding 0 of \"ada\""));
        let mut bad = good;
        bad[14] = b'X';
        assert!(format_error(&bad, EmbeddingModel::SFace).contains("unknown embedding model"));
    }
}
