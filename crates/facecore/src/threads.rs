//! How many threads the library uses.
//!
//! Every kernel of [`layers`](crate::layers) runs on the rayon thread pool it is called from.
//! The pool is rayon's global one (all cores, or `RAYON_NUM_THREADS`) unless the caller runs
//! the work inside [`ThreadPool::install`]:
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
//! Inside `install` the pool's other threads form a team for the duration of the work: they
//! spin between the kernels' parallel loops (briefly; then they sleep until the next loop), so
//! that the many small layers of a small model split over the threads without a wake-up
//! through the operating system each. Called outside `install`, the kernels split only large
//! layers, over rayon's pool.
//!
//! The per-face networks run a batch image by image ([`each_image`]): each image whole on one
//! of the pool's threads, the images shared out over them.
//!
//! Work is only ever split at one level at a time (a loop inside a task of another loop runs
//! serially, and a threaded `gemm` never runs inside a loop), so the pool's size bounds the
//! number of busy threads: there is no nested oversubscription.
//!
//! One thing escapes the pool: candle 0.11 splits its own element-wise operations on tensors of
//! 64K values or more over a private pool sized once, at first use, from `CANDLE_NUM_THREADS`
//! (else `RAYON_NUM_THREADS`, else the physical cores). The models do their large additions and
//! activations with the kernels ([`Activation::apply_sum`](crate::layers::Activation::apply_sum)),
//! but set `CANDLE_NUM_THREADS=1` in the environment to keep a one-thread pool's work on one
//! core.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
            Some(pool) => pool.install(|| with_team(work)),
            None => rayon::scope(|_| with_team(work)),
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

/// The multiply-adds of a layer's batch below which its images are not split across threads
/// on rayon's pool: less work than waking the other threads costs.
pub(crate) const PARALLEL_MACS: usize = 4 << 20;

/// The same on a team, whose helpers are awake: from 512K (measured against 4M at batch 8,
/// two threads: mini-Xception −17..−20 %, FaceMesh −3..−12 %, the others within the noise).
const TEAM_PARALLEL_MACS: usize = 512 << 10;

/// Whether a layer of `macs` multiply-adds over a batch of `batch` images splits by image.
pub(crate) fn split_batch(batch: usize, macs: usize) -> bool {
    let least = if in_team() {
        TEAM_PARALLEL_MACS
    } else {
        PARALLEL_MACS
    };
    batch > 1 && current_threads() > 1 && macs >= least
}

/// The multiply-adds below which one product runs on one thread. Higher than
/// [`PARALLEL_MACS`]: `gemm` starts a parallel region per call and its threads share one
/// product, so on two cores a threaded product of 4M–16M multiply-adds lost more to waking
/// and waiting than it gained (batch-1 age, gender and dlib ResNet measured slower at two
/// threads than at one).
pub(crate) const GEMM_PARALLEL_MACS: usize = 16 << 20;

/// `gemm`'s parallelism for a product of `macs` multiply-adds called from here: the current
/// pool's threads, or none for a product under [`GEMM_PARALLEL_MACS`] or on a team (which
/// splits products itself, see [`team_share`]).
pub(crate) fn gemm_parallelism(macs: usize) -> gemm::Parallelism {
    match current_threads() {
        0 | 1 => gemm::Parallelism::None,
        _ if macs < GEMM_PARALLEL_MACS || in_team() => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// The multiply-adds of a product's share below which a team does not split it further.
pub(crate) const TEAM_MACS: usize = 1 << 16;

/// How many items of `work` values each task of a parallel loop takes at least: about 8K
/// values on a team (a few microseconds of work: more than handing a task to a spinning
/// helper costs), 256K on rayon's pool, so that the small layers of the small models run on
/// the calling thread rather than wake the pool's other threads for less work than the
/// wake-up costs (measured there: a quarter of FaceMesh's time at two threads went to the
/// scheduler with 32K).
pub(crate) fn grain(work: usize) -> usize {
    let values = if in_team() { 8 << 10 } else { 256 << 10 };
    (values / work.max(1)).max(1)
}

/// On a team, how many of the `len` parts (rows or column blocks) of a product of `macs`
/// multiply-adds each task takes (each of the team's threads runs one `gemm` on its parts);
/// `None` when the product is not worth splitting or no team runs here.
pub(crate) fn team_share(macs: usize, len: usize) -> Option<usize> {
    if !in_team() {
        return None;
    }
    let tasks = tasks_for(macs, TEAM_MACS).min(len);
    (tasks > 1).then(|| len.div_ceil(tasks))
}

/// Whether a parallel loop started here runs on a team (see [`ThreadPool::install`]).
fn in_team() -> bool {
    !IN_TASK.get() && TEAM.with_borrow(Option::is_some)
}

/// How long a team's helper spins for the next parallel loop before it sleeps: longer than
/// the gaps between one forward pass's parallel layers (the serial layers and candle's
/// reshapes between them), so that within a forward pass no helper is ever woken through the
/// kernel; short enough that an idle helper soon gives its core back.
const SPIN: Duration = Duration::from_micros(500);

thread_local! {
    /// The team of the pool installed on this thread, if any (see [`ThreadPool::install`]).
    static TEAM: RefCell<Option<Arc<Team>>> = const { RefCell::new(None) };
    /// Whether this thread is running one task of a parallel loop: loops inside it run serially.
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// Runs `work` on the current pool with the pool's other threads as a [`Team`] for the
/// parallel loops of the kernels it calls. Without other threads, or when this thread already
/// leads a team, `work` just runs.
fn with_team<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let threads = current_threads();
    if threads <= 1 || TEAM.with_borrow(Option::is_some) {
        return work();
    }
    let team = Arc::new(Team::new());
    rayon::scope(|scope| {
        for _ in 1..threads {
            let helper = Arc::clone(&team);
            scope.spawn(move |_| helper.help());
        }
        // Set for `work` and taken away again however `work` ends, so that the helpers stop
        // (and the scope can end) even when it panics.
        struct Lead(Arc<Team>);
        impl Drop for Lead {
            fn drop(&mut self) {
                TEAM.set(None);
                self.0.stop();
            }
        }
        TEAM.set(Some(Arc::clone(&team)));
        let _lead = Lead(team);
        work()
    })
}

/// Runs `task(i)` for every `i` in `0..tasks`, spread over the threads of the current pool's
/// team when there is one (else over rayon's pool). Runs them in order on this thread when
/// there is one task or when this thread is itself running a task. A panicking task makes
/// this panic once all tasks have ended.
pub(crate) fn run_tasks(tasks: usize, task: &(dyn Fn(usize) + Sync)) {
    if tasks <= 1 || IN_TASK.get() {
        (0..tasks).for_each(task);
        return;
    }
    let team = TEAM.with_borrow(Option::clone);
    match team {
        Some(team) => team.run(tasks, task),
        None => {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(|i| as_task(|| task(i)));
        }
    }
}

/// Runs `f` marked as a task, so that parallel loops inside it run serially.
fn as_task<R>(f: impl FnOnce() -> R) -> R {
    struct Mark(bool);
    impl Drop for Mark {
        fn drop(&mut self) {
            IN_TASK.set(self.0);
        }
    }
    let _mark = Mark(IN_TASK.replace(true));
    f()
}

/// Calls `f(i, chunk)` for each of the `chunk`-long chunks of `out` (the last one may be
/// shorter), `i` counting from 0: in parallel (see [`run_tasks`]) in at most as many tasks as
/// the pool has threads, each of at least `min_chunks` chunks.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    chunk: usize,
    min_chunks: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk = chunk.max(1);
    let chunks = out.len().div_ceil(chunk);
    let tasks = tasks_for(chunks, min_chunks);
    if tasks <= 1 {
        out.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i, c));
        return;
    }
    let per_task = chunks.div_ceil(tasks);
    let parts: Vec<_> = out
        .chunks_mut(per_task * chunk)
        .map(|part| Mutex::new(Some(part)))
        .collect();
    run_tasks(parts.len(), &|t| {
        let part = parts[t]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        for (i, c) in part
            .into_iter()
            .flat_map(|p| p.chunks_mut(chunk))
            .enumerate()
        {
            f(t * per_task + i, c)
        }
    });
}

/// Runs `forward` on each image of the batch `xs` (`[N, ...]`) as a batch of one, the images
/// shared out over the current pool's threads, and returns the outputs in the batch's order.
/// Each image runs whole on one thread (its kernels serially), so that the thread keeps the
/// image's activations in its own cache from layer to layer and no layer waits for another
/// thread; a network whose activations outgrow the cache at batch 8 runs the batch no slower
/// per image than one image alone. A batch of one runs on `xs` as it is.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let xs = Tensor::arange(0f32, 6., &Device::Cpu)?.reshape((3, 2))?;
/// let sums = facecore::threads::each_image(&xs, |x| x.sum_all()?.to_scalar::<f32>())?;
/// assert_eq!(sums, [1., 5., 9.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn each_image<T: Send>(
    xs: &candle_core::Tensor,
    forward: impl Fn(&candle_core::Tensor) -> candle_core::Result<T> + Sync,
) -> candle_core::Result<Vec<T>> {
    let n = xs.dim(0)?;
    if n == 1 {
        return Ok(vec![forward(xs)?]);
    }
    let mut outputs: Vec<Option<candle_core::Result<T>>> = (0..n).map(|_| None).collect();
    for_each_chunk(&mut outputs, 1, 1, |i, slot| {
        slot[0] = Some(xs.narrow(0, i, 1).and_then(|x| forward(&x)));
    });
    outputs
        .into_iter()
        .map(|out| {
            out.unwrap_or_else(|| Err(candle_core::Error::Msg("an image was not run".into())))
        })
        .collect()
}

/// [`each_image`] for a network with one output: the images' outputs concatenated along the
/// first dimension (a batch of one's output as it is).
pub fn by_image(
    xs: &candle_core::Tensor,
    forward: impl Fn(&candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> + Sync,
) -> candle_core::Result<candle_core::Tensor> {
    candle_core::Tensor::cat(&each_image(xs, forward)?, 0)
}

/// How many tasks `items` items make at `min_items` or more each, at most one per thread.
pub(crate) fn tasks_for(items: usize, min_items: usize) -> usize {
    if IN_TASK.get() {
        return 1;
    }
    (items / min_items.max(1)).clamp(1, current_threads())
}

/// One parallel loop being run by a team: its tasks and how far they got.
struct Job<'a> {
    task: &'a (dyn Fn(usize) + Sync),
    tasks: usize,
    /// The next task to take.
    next: AtomicUsize,
    /// The tasks not yet finished.
    left: AtomicUsize,
    panicked: AtomicBool,
}

impl Job<'_> {
    /// Takes and runs tasks until none is left to take.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.tasks {
                return;
            }
            let run = panic::catch_unwind(AssertUnwindSafe(|| as_task(|| (self.task)(i))));
            if run.is_err() {
                self.panicked.store(true, Ordering::Relaxed);
            }
            // Release: the task's writes happen before the leader sees it finished.
            self.left.fetch_sub(1, Ordering::Release);
        }
    }
}

/// A pool's threads held for one [`ThreadPool::install`]: the installing thread leads and
/// publishes each parallel loop as a [`Job`]; the others spin on [`Team::generation`] between
/// loops (for [`SPIN`], then sleep), so that a loop starts on them without waking a thread
/// through the kernel (rayon's idle workers sleep at once, and waking one took longer than a
/// small model's layer).
struct Team {
    /// The job being run, or null: a `*const Job` whose lifetime [`Team::run`] guards.
    current: AtomicPtr<()>,
    /// Bumped for every job published.
    generation: AtomicUsize,
    /// Helpers between reading [`Team::current`] and leaving the job it points to.
    busy: AtomicUsize,
    stop: AtomicBool,
    /// Helpers asleep (or about to be) on `wake`; changed only with `sleep` locked.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
}

impl Team {
    fn new() -> Self {
        Self {
            current: AtomicPtr::new(std::ptr::null_mut()),
            generation: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
        }
    }

    /// Runs the job of `tasks` tasks with the helpers (the leader's side).
    fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let job = Job {
            task,
            tasks,
            next: AtomicUsize::new(0),
            left: AtomicUsize::new(tasks),
            panicked: AtomicBool::new(false),
        };
        self.current
            .store(std::ptr::from_ref(&job).cast_mut().cast(), Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            let _sleep = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
            self.wake.notify_all();
        }
        job.work();
        while job.left.load(Ordering::Acquire) > 0 {
            std::hint::spin_loop();
        }
        // No helper may still hold `job` when it goes out of scope: after this store a helper
        // that reads `current` gets null; one that read the job before it had already counted
        // itself in `busy` (both sides are sequentially consistent, so either the helper's
        // increment comes before this store and the wait below sees it, or its read of
        // `current` comes after this store and sees null).
        self.current.store(std::ptr::null_mut(), Ordering::SeqCst);
        while self.busy.load(Ordering::SeqCst) > 0 {
            std::hint::spin_loop();
        }
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a task of a parallel kernel loop panicked");
        }
    }

    /// A helper's loop: runs its share of every job published until [`Team::stop`].
    fn help(&self) {
        let mut seen = 0;
        let mut idle = Instant::now();
        let mut spins = 0u32;
        loop {
            let generation = self.generation.load(Ordering::SeqCst);
            if generation != seen {
                seen = generation;
                self.busy.fetch_add(1, Ordering::SeqCst);
                let job = self
                    .current
                    .load(Ordering::SeqCst)
                    .cast::<Job<'_>>()
                    .cast_const();
                // SAFETY: a non-null `current` points to the `Job` on the stack of a `run`
                // that is still in progress: `run` sets it to null before the job goes out of
                // scope and then waits until `busy` is zero, and this helper counted itself in
                // `busy` before reading the pointer (see `run`), so the job outlives this use.
                if let Some(job) = unsafe { job.as_ref() } {
                    job.work();
                }
                // Release: this helper's last read of the job happens before `run` returns.
                self.busy.fetch_sub(1, Ordering::Release);
                idle = Instant::now();
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || idle.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let mut sleep = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
            self.sleepers.fetch_add(1, Ordering::SeqCst);
            // A job published after the increment above finds `sleepers` non-zero and
            // notifies under the lock; one published before it shows in `generation`.
            while self.generation.load(Ordering::SeqCst) == seen
                && !self.stop.load(Ordering::SeqCst)
            {
                sleep = self
                    .wake
                    .wait(sleep)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            self.sleepers.fetch_sub(1, Ordering::SeqCst);
            drop(sleep);
            idle = Instant::now();
        }
    }

    /// Ends every helper's loop.
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _sleep = self.sleep.lock().unwrap_or_else(PoisonError::into_inner);
        self.wake.notify_all();
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
        // Installed, the pool's threads are a team, which splits products itself.
        assert!(matches!(
            pool.install(|| gemm_parallelism(1 << 30)),
            gemm::Parallelism::None
        ));
        assert_eq!(pool.install(|| team_share(1 << 30, 64)), Some(22));
        assert_eq!(pool.install(|| team_share(TEAM_MACS, 64)), None);
        // Without a team, `gemm` gets the pool's threads from GEMM_PARALLEL_MACS.
        let rayon = pool.pool.as_deref().unwrap();
        assert!(matches!(
            rayon.install(|| gemm_parallelism(1 << 30)),
            gemm::Parallelism::Rayon(3)
        ));
        assert!(matches!(
            rayon.install(|| gemm_parallelism(GEMM_PARALLEL_MACS - 1)),
            gemm::Parallelism::None
        ));
        assert_eq!(rayon.install(|| team_share(1 << 30, 64)), None);
        let one = ThreadPool::new(1).unwrap();
        assert!(matches!(
            one.install(|| gemm_parallelism(1 << 30)),
            gemm::Parallelism::None
        ));
        assert_eq!(one.install(|| team_share(1 << 30, 64)), None);
        assert_eq!(ThreadPool::new(0).unwrap().threads(), current_threads());
    }

    /// Runs `tasks` tasks and returns how often each ran.
    fn counts(tasks: usize) -> Vec<usize> {
        let counts: Vec<_> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
        run_tasks(tasks, &|i| {
            counts[i].fetch_add(1, Ordering::Relaxed);
        });
        counts.into_iter().map(AtomicUsize::into_inner).collect()
    }

    #[test]
    fn a_team_runs_every_task_once() {
        let pool = ThreadPool::new(3).unwrap();
        pool.install(|| {
            assert!(in_team());
            for round in 0..3000 {
                let tasks = round % 9;
                assert_eq!(counts(tasks), vec![1; tasks], "round {round}");
            }
        });
        // The same on rayon's pool (no team) and on one thread.
        let rayon = pool.pool.as_deref().unwrap();
        rayon.install(|| assert_eq!(counts(50), vec![1; 50]));
        ThreadPool::new(1)
            .unwrap()
            .install(|| assert_eq!(counts(50), vec![1; 50]));
    }

    #[test]
    fn a_helper_takes_tasks_while_the_leader_works() {
        let pool = ThreadPool::new(2).unwrap();
        let (leader, helper) = pool.install(|| {
            let second = Mutex::new(None);
            run_tasks(2, &|i| {
                if i == 1 {
                    *second.lock().unwrap() = Some(std::thread::current().id());
                    return;
                }
                // Task 0 holds its thread until task 1 has started elsewhere (bounded).
                let start = Instant::now();
                while second.lock().unwrap().is_none() && start.elapsed() < Duration::from_secs(10)
                {
                    std::thread::yield_now();
                }
            });
            (std::thread::current().id(), second.into_inner().unwrap())
        });
        let helper = helper.expect("task 1 ran");
        assert_ne!(
            leader, helper,
            "task 1 ran on the leader: no helper took it"
        );
    }

    #[test]
    fn loops_inside_a_task_run_serially_and_completely() {
        let pool = ThreadPool::new(3).unwrap();
        pool.install(|| {
            let inner: Vec<_> = (0..6).map(|_| AtomicUsize::new(0)).collect();
            run_tasks(6, &|i| {
                assert!(!in_team());
                assert_eq!(tasks_for(1000, 1), 1);
                let mut out = vec![0usize; 37];
                for_each_chunk(&mut out, 5, 1, |c, chunk| chunk.fill(c + 1));
                let want: Vec<_> = (0..37).map(|j| j / 5 + 1).collect();
                assert_eq!(out, want);
                inner[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(inner.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        });
    }

    #[test]
    fn chunks_are_numbered_and_cover_the_slice() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads).unwrap();
            for (len, chunk, min_chunks) in [(103, 10, 1), (100, 10, 3), (7, 10, 1), (0, 4, 1)] {
                let mut out = vec![usize::MAX; len];
                pool.install(|| {
                    for_each_chunk(&mut out, chunk, min_chunks, |c, part| {
                        assert!(part.len() == chunk || (c + 1) * chunk >= len);
                        part.fill(c)
                    })
                });
                let want: Vec<_> = (0..len).map(|j| j / chunk).collect();
                assert_eq!(out, want, "{threads} threads, {len} by {chunk}");
            }
        }
    }

    #[test]
    fn a_panicking_task_panics_the_loop_and_the_team_goes_on() {
        let pool = ThreadPool::new(2).unwrap();
        pool.install(|| {
            let ran = AtomicUsize::new(0);
            let result = panic::catch_unwind(AssertUnwindSafe(|| {
                run_tasks(8, &|i| {
                    ran.fetch_add(1, Ordering::Relaxed);
                    assert_ne!(i, 5, "task 5 fails");
                })
            }));
            assert!(result.is_err());
            assert_eq!(ran.into_inner(), 8, "the other tasks still ran");
            assert_eq!(counts(8), vec![1; 8]);
        });
        // A panic out of the installed work stops the helpers (the install returns) and
        // leaves the pool usable.
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.install(|| -> usize { panic!("the work fails") })
        }));
        assert!(result.is_err());
        assert_eq!(pool.install(|| counts(5)), vec![1; 5]);
    }

    #[test]
    fn idle_helpers_sleep_and_wake_for_the_next_loop() {
        let pool = ThreadPool::new(3).unwrap();
        pool.install(|| {
            assert_eq!(counts(4), vec![1; 4]);
            let team = TEAM.with_borrow(Option::clone).unwrap();
            let start = Instant::now();
            while team.sleepers.load(Ordering::SeqCst) < 2 {
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "helpers never slept"
                );
                std::thread::sleep(SPIN);
            }
            for _ in 0..100 {
                assert_eq!(counts(6), vec![1; 6]);
            }
        });
    }

    #[test]
    fn images_run_whole_on_one_thread_each_in_the_batch_order() {
        use candle_core::{Device, Tensor};
        let xs = Tensor::arange(0f32, 10., &Device::Cpu).unwrap();
        let xs = xs.reshape((5, 2)).unwrap();
        let pool = ThreadPool::new(3).unwrap();
        let (outputs, doubled, failed) = pool.install(|| {
            // Inside an image, a loop that would split runs as one task.
            let outputs = each_image(&xs, |x| {
                Ok((x.sum_all()?.to_scalar::<f32>()?, tasks_for(1 << 20, 1)))
            });
            let doubled = by_image(&xs, |x| x.affine(2., 0.));
            let failed = each_image(&xs, |x| match x.sum_all()?.to_scalar::<f32>()? {
                9. => Err(candle_core::Error::Msg("the third image".into())),
                sum => Ok(sum),
            });
            (outputs, doubled, failed)
        });
        assert_eq!(outputs.unwrap(), [1., 5., 9., 13., 17.].map(|s| (s, 1)));
        let want = xs.affine(2., 0.).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(doubled.unwrap().to_vec2::<f32>().unwrap(), want);
        assert!(failed.is_err());
        // A batch of one runs as it is.
        let one = xs.narrow(0, 1, 1).unwrap();
        let same = by_image(&one, |x| Ok(x.clone())).unwrap();
        assert_eq!(same.to_vec2::<f32>().unwrap(), [[2., 3.]]);
    }
}
