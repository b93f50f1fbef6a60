//! Grouping a collection of faces by identity.
//!
//! [`cluster`] runs Chinese whispers (Biemann, 2006; the algorithm of dlib's
//! `chinese_whispers`, which `face_recognition` uses for the same task) on the graph whose
//! nodes are the embeddings and whose edges join every pair with a cosine similarity at or above
//! the verification threshold, weighted by that similarity. Every node starts in its own group;
//! each pass visits the nodes in input order and moves each to the group with the largest total
//! edge weight among its neighbours (ties to the smaller group label), until a pass changes
//! nothing. dlib visits the nodes in random order; the fixed order here makes the result a
//! function of the input alone.

use crate::embedding::Embedding;
use crate::{Error, Result};

/// Passes after which [`cluster`] stops even if labels still change.
pub const MAX_PASSES: usize = 100;

/// Groups `embeddings` (all of one model) at their model's verification threshold.
/// Returns the groups as indices into `embeddings`: each group ascending, groups by decreasing
/// size, then by their first index. Every embedding is in exactly one group.
pub fn cluster(embeddings: &[Embedding]) -> Result<Vec<Vec<usize>>> {
    match embeddings.first() {
        Some(first) => cluster_at(embeddings, first.model.threshold()),
        None => Ok(Vec::new()),
    }
}

/// [`cluster`] at your own cosine `threshold`.
pub fn cluster_at(embeddings: &[Embedding], threshold: f32) -> Result<Vec<Vec<usize>>> {
    if !threshold.is_finite() {
        return Err(Error::InvalidArgument(format!(
            "clustering threshold {threshold}"
        )));
    }
    let n = embeddings.len();
    let mut neighbours: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in i + 1..n {
            let sim = embeddings[i].cosine(&embeddings[j])?;
            if sim >= threshold {
                neighbours[i].push((j, sim));
                neighbours[j].push((i, sim));
            }
        }
    }
    let mut labels: Vec<usize> = (0..n).collect();
    for _ in 0..MAX_PASSES {
        let mut changed = false;
        for (i, edges) in neighbours.iter().enumerate() {
            let mut totals: Vec<(usize, f32)> = Vec::new();
            for &(j, w) in edges {
                match totals.iter_mut().find(|(l, _)| *l == labels[j]) {
                    Some((_, t)) => *t += w,
                    None => totals.push((labels[j], w)),
                }
            }
            let best = totals
                .into_iter()
                .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)));
            if let Some((label, _)) = best {
                if label != labels[i] {
                    labels[i] = label;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of_label: Vec<Option<usize>> = vec![None; n];
    for (i, &l) in labels.iter().enumerate() {
        match group_of_label[l] {
            Some(g) => groups[g].push(i),
            None => {
                group_of_label[l] = Some(groups.len());
                groups.push(vec![i]);
            }
        }
    }
    groups.sort_by(|a, b| b.len().cmp(&a.len()).then(a[0].cmp(&b[0])));
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::EmbeddingModel;

    /// A deterministic pseudo-random unit vector: `centre` plus noise of size `noise`.
    fn noisy(centre: usize, seed: u64, noise: f32) -> Embedding {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let raw = (0..128)
            .map(|i| {
                let base = if i % 4 == centre { 1.0 } else { 0.0 };
                base + noise * next()
            })
            .collect();
        Embedding::new(EmbeddingModel::SFace, raw).unwrap()
    }

    #[test]
    fn separates_synthetic_identities_in_a_fixed_order() {
        // Identities 0, 1, 2 (orthogonal centres) interleaved, plus one far-off outlier.
        let mut es = Vec::new();
        for k in 0..15u64 {
            es.push(noisy((k % 3) as usize, k, 0.3));
        }
        es.push(noisy(3, 99, 0.3));
        let groups = cluster(&es).unwrap();
        assert_eq!(groups.len(), 4, "{groups:?}");
        assert_eq!(groups[0], vec![0, 3, 6, 9, 12]);
        assert_eq!(groups[1], vec![1, 4, 7, 10, 13]);
        assert_eq!(groups[2], vec![2, 5, 8, 11, 14]);
        assert_eq!(groups[3], vec![15]);
        assert_eq!(cluster(&es).unwrap(), groups, "deterministic");
    }

    #[test]
    fn threshold_controls_merging() {
        let es: Vec<Embedding> = (0..4).map(|k| noisy(k % 2, k as u64, 0.3)).collect();
        // Weak edges between the two identities do not merge them; only missing edges split.
        assert_eq!(cluster_at(&es, 0.0).unwrap(), vec![vec![0, 2], vec![1, 3]]);
        assert_eq!(cluster_at(&es, 1.0).unwrap().len(), 4);
        assert!(cluster_at(&es, f32::NAN).is_err());
        assert!(cluster(&[]).unwrap().is_empty());
    }

    #[test]
    fn models_never_mix() {
        let a = noisy(0, 1, 0.1);
        let b = Embedding::new(EmbeddingModel::DlibResNet, a.vector.clone()).unwrap();
        assert!(matches!(cluster(&[a, b]), Err(Error::ModelMismatch { .. })));
    }
}
