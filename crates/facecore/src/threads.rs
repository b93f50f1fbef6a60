//! How many threads the library uses.
//!
//! Every kernel of [`layers`](crate::layers) runs on the rayon thread pool it is called from:
//! its own loops are rayon iterators, and its matrix products hand `gemm` as many threads as that
//! pool has (none when it has one). The pool is rayon's global one (all cores, or
//! `RAYON_NUM_THREADS`) unless the caller runs the work inside [`ThreadPool::install`]:
//!
//! ```
//! use facecore::threads::ThreadPool;
//!
//! let pool = ThreadPool::new(1)?;
//! let threads = pool.install(facecore::threads::current_threads);
//! assert_eq!(threads, 1);
//! # Ok::<(), facecore::Error>(())
//! ```
//!
//! Work is only ever split at one level at a time (a kernel either runs its own rayon loop or a
//! threaded `gemm`, never a threaded `gemm` inside a rayon loop), so the pool's size bounds the
//! number of busy threads: there is no nested oversubscription.
//!
//! One thing escapes the pool: candle 0.11 splits its own element-wise operations on tensors of
//! 64K values or more (the residual additions and poolings of the models) over a private pool
//! sized once, at first use, from `CANDLE_NUM_THREADS` (else `RAYON_NUM_THREADS`, else the
//! physical cores). Set `CANDLE_NUM_THREADS=1` in the environment to keep a one-thread pool's
//! work on one core.

use std::sync::Arc;

use crate::{Error, Result};

/// A pool of threads the library's kernels run on.
#[derive(Debug, Clone)]
pub struct ThreadPool {
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl ThreadPool {
    /// A dedicated pool of `threads` threads; `0` means rayon's global pool (all cores, or
    /// `RAYON_NUM_THREADS`).
    pub fn new(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Ok(Self::global());
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("facecore-{i}"))
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start {threads} worker threads: {e}"))
            })?;
        Ok(Self {
            pool: Some(Arc::new(pool)),
        })
    }

    /// Rayon's global pool.
    pub fn global() -> Self {
        Self { pool: None }
    }

    /// The number of threads work installed in this pool runs on.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(pool) => pool.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `work` with every kernel it calls on this pool's threads. For rayon's global pool,
    /// `work` runs on one of its threads (or on the calling thread when that already is a
    /// worker of some pool, whose threads the kernels then use), so that the kernels' parallel
    /// loops start from inside the pool instead of each handing its work over to the pool
    /// from outside and waiting (measured: `analyze` 12–15 % slower that way on two cores).
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => rayon::scope(|_| work()),
        }
    }
}

impl Default for ThreadPool {
    fn default() -> Self {
        Self::global()
    }
}

/// The number of threads the kernels called from here run on.
pub fn current_threads() -> usize {
    rayon::current_num_threads()
}

/// The multiply-adds of a layer's batch below which its images are not split across threads:
/// less work than waking the other threads costs.
pub(crate) const PARALLEL_MACS: usize = 4 << 20;

/// The multiply-adds below which one product runs on one thread. Higher than
/// [`PARALLEL_MACS`]: `gemm` starts a parallel region per call and its threads share one
/// product, so on two cores a threaded product of 4M–16M multiply-adds lost more to waking
/// and waiting than it gained (batch-1 age, gender and dlib ResNet measured slower at two
/// threads than at one).
pub(crate) const GEMM_PARALLEL_MACS: usize = 16 << 20;

/// `gemm`'s parallelism for a product of `macs` multiply-adds called from here: the current
/// pool's threads, or none for a product under [`GEMM_PARALLEL_MACS`].
pub(crate) fn gemm_parallelism(macs: usize) -> gemm::Parallelism {
    match current_threads() {
        0 | 1 => gemm::Parallelism::None,
        _ if macs < GEMM_PARALLEL_MACS => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dedicated_pool_sets_the_thread_count() {
        let pool = ThreadPool::new(3).unwrap();
        assert_eq!(pool.threads(), 3);
        assert_eq!(pool.install(current_threads), 3);
        assert!(matches!(
            pool.install(|| gemm_parallelism(1 << 30)),
            gemm::Parallelism::Rayon(3)
        ));
        let one = ThreadPool::new(1).unwrap();
        assert!(matches!(
            one.install(|| gemm_parallelism(1 << 30)),
            gemm::Parallelism::None
        ));
        assert!(matches!(
            pool.install(|| gemm_parallelism(GEMM_PARALLEL_MACS - 1)),
            gemm::Parallelism::None
        ));
        assert_eq!(ThreadPool::new(0).unwrap().threads(), current_threads());
    }
}
