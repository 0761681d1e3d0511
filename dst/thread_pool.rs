// SPDX-License-Identifier: GPL-2.0

//! The crypto worker pool: one module-wide workqueue that runs jobs (sealing
//! and opening messages) off the network receive and send threads, so that
//! the messages of one connection are protected in parallel on several CPUs.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)
//!
//! A job is any type that implements the kernel crate's [`WorkItem`] for
//! `Arc<Self>` and embeds a [`kernel::workqueue::Work`] (`impl_has_work!`):
//! see [`Job`]. [`submit`] queues it on the pool's workqueue, which the kernel
//! crate's [`Queue::from_raw`] can target directly, so no C is needed here.
//!
//! - **Ordering**: none. Jobs run in any order and concurrently, up to
//!   [`workers`] at a time; a job that must follow another is submitted by it.
//! - **Memory**: [`submit`] allocates nothing; the job's `Arc` holds its
//!   `work_struct`. It can therefore be called on the IO path.
//! - **Inline mode**: with 0 workers (or before the pool exists) [`submit`]
//!   and [`submit_boxed`] run the job in the caller, which is the cheapest
//!   on a single CPU.
//!
//! The workqueue is `WQ_MEM_RECLAIM` (it serves block IO, so it keeps a
//! rescuer thread and progresses under memory pressure) and `WQ_UNBOUND`
//! (crypto of one request may take milliseconds; unbound workers do not hold
//! up other work on the submitting CPU and spread over idle CPUs).

use core::ptr::{null_mut, NonNull};

use kernel::{
    bindings,
    ffi::c_int,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Relaxed, Release},
        Arc,
    },
    workqueue::{HasWork, Queue, WorkItem},
};

/// Largest number of workers: the workqueue's `max_active` limit.
pub(crate) const MAX_WORKERS: u32 = bindings::wq_consts_WQ_MAX_ACTIVE;

/// A unit of work for the pool. Implemented for every type that can be
/// queued as `Arc<Self>` on a workqueue: give the type a `Work<Self>` field
/// (initialised with `new_work!`), declare it with `impl_has_work!` and
/// implement `WorkItem` with `type Pointer = Arc<Self>`; `WorkItem::run` is
/// the job.
pub(crate) trait Job:
    WorkItem<Pointer = Arc<Self>> + HasWork<Self> + Send + Sync + Sized + 'static
{
}

impl<T> Job for T where T: WorkItem<Pointer = Arc<T>> + HasWork<T> + Send + Sync + 'static {}

/// The pool's workqueue: set by [`Pool::create`], cleared when the [`Pool`]
/// is dropped. Null means "no pool": jobs run inline.
static WQ: Atomic<*mut bindings::workqueue_struct> = Atomic::new(null_mut());

/// How many jobs may run at once; 0: jobs run inline in [`submit`].
static WORKERS: Atomic<u32> = Atomic::new(0);

/// Owner of the pool's workqueue, held in the module state.
///
/// # Invariants
///
/// `wq` was returned by `alloc_workqueue`, is published in [`WQ`] while this
/// value lives, and is destroyed on drop. At most one `Pool` exists.
pub(crate) struct Pool {
    wq: NonNull<bindings::workqueue_struct>,
}

// SAFETY: a workqueue may be used and destroyed from any task.
unsafe impl Send for Pool {}
// SAFETY: `Pool` has no methods that touch the workqueue through `&self`.
unsafe impl Sync for Pool {}

impl Pool {
    /// Creates the pool with `workers` workers (see [`set_workers`]). Called
    /// once, from module init; fails with `EBUSY` if a pool exists.
    pub(crate) fn create(workers: u32) -> Result<Self> {
        // SAFETY: the format is "%s" with a NUL-terminated string argument.
        // A `max_active` of 0 picks the default; `set_workers` sets the limit.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(
                c"%s".as_char_ptr(),
                bindings::wq_flags_WQ_UNBOUND | bindings::wq_flags_WQ_MEM_RECLAIM,
                0,
                c"dst_crypto".as_char_ptr(),
            )
        };
        let wq = NonNull::new(wq).ok_or(ENOMEM)?;
        if WQ.cmpxchg(null_mut(), wq.as_ptr(), Release).is_err() {
            // SAFETY: `wq` was never published; nothing else uses it.
            unsafe { bindings::destroy_workqueue(wq.as_ptr()) };
            return Err(EBUSY);
        }
        // INVARIANT: allocated and published above.
        let pool = Pool { wq };
        set_workers(workers);
        Ok(pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        WQ.store(null_mut(), Release);
        // SAFETY: we own the workqueue (type invariant); destroying it runs
        // every queued job first. The module drops the pool only after every
        // device and export, the only submitters, has stopped, so no
        // `submit` still uses the pointer it loaded before the store above.
        unsafe { bindings::destroy_workqueue(self.wq.as_ptr()) };
    }
}

/// Sets how many jobs may run at once, clamped to [`MAX_WORKERS`]; 0 makes
/// [`submit`] run jobs inline in the caller. Takes effect for jobs queued
/// from now on; jobs already queued still run. Returns the value set.
pub(crate) fn set_workers(n: u32) -> u32 {
    let n = n.min(MAX_WORKERS);
    let wq = WQ.load(Acquire);
    if n > 0 && !wq.is_null() {
        // SAFETY: a published workqueue lives until the pool is dropped,
        // after the last user of the pool (see `Pool::drop`); `n` is in
        // 1..=WQ_MAX_ACTIVE, so it fits a c_int.
        unsafe { bindings::workqueue_set_max_active(wq, n as c_int) };
    }
    WORKERS.store(n, Relaxed);
    n
}

/// How many jobs may run at once; 0: inline.
pub(crate) fn workers() -> u32 {
    WORKERS.load(Relaxed)
}

/// Calls `f` with the pool's queue, or `None` in inline mode (the caller
/// then runs the work itself). The queue is only lent for the call: the
/// pool, and its workqueue, may go once every device and export is gone.
fn with_queue<R>(f: impl FnOnce(Option<&Queue>) -> R) -> R {
    let wq = WQ.load(Acquire);
    if wq.is_null() || workers() == 0 {
        return f(None);
    }
    // SAFETY: a published workqueue lives until the pool is dropped, after
    // the last submitter has stopped (see `Pool::drop`); the reference
    // does not outlive this call, made by such a submitter.
    f(Some(unsafe { Queue::from_raw(wq) }))
}

/// Runs `job` on the pool, or at once in the caller in inline mode.
/// Returns the job back, not run, if it is already queued and has not
/// started yet (its `work_struct` is in use). A job may be submitted again
/// once its run has started, so a caller can keep one job per request slot
/// and allocate nothing per message.
pub(crate) fn submit<T: Job>(job: Arc<T>) -> Result<(), Arc<T>> {
    with_queue(|q| match q {
        Some(q) => q.enqueue(job),
        None => {
            T::run(job);
            Ok(())
        }
    })
}

/// Runs a job owned by a `Pin<KBox<_>>` (work that moves through several
/// stages, or is kept for reuse) on the pool, or at once in the caller in
/// inline mode. A box is never queued twice, so the job always runs.
pub(crate) fn submit_boxed<T>(job: Pin<KBox<T>>)
where
    T: WorkItem<Pointer = Pin<KBox<T>>> + HasWork<T> + Send + 'static,
{
    with_queue(|q| match q {
        Some(q) => q.enqueue(job),
        None => T::run(job),
    })
}

/// Self-test: 64 jobs on 2 workers, then 8 inline (0 workers), each job
/// counting itself; the last one completes the waiter. Restores the worker
/// count.
pub(crate) fn self_test() -> Result {
    let saved = workers();
    let r = [(2, 64), (0, 8)].into_iter().try_for_each(|(w, n)| {
        set_workers(w);
        match run_counting_jobs(n)? {
            ran if ran == n => Ok(()),
            ran => {
                pr_err!(
                    "pool self-test: {} of {} jobs ran on {} workers\n",
                    ran,
                    n,
                    w
                );
                Err(EIO)
            }
        }
    });
    set_workers(saved);
    r
}

/// Shared by the jobs of [`self_test`].
#[pin_data]
struct Counter {
    left: Atomic<u32>,
    ran: Atomic<u32>,
    #[pin]
    done: kernel::sync::Completion,
}

/// One job of [`self_test`].
#[pin_data]
struct CountJob {
    counter: Arc<Counter>,
    #[pin]
    work: kernel::workqueue::Work<CountJob>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for CountJob { self.work }
}

impl WorkItem for CountJob {
    type Pointer = Arc<Self>;

    fn run(this: Arc<Self>) {
        let c = &this.counter;
        c.ran.fetch_add(1, Relaxed);
        // The last job to finish wakes the waiter.
        if c.left.fetch_sub(1, Release) == 1 {
            c.done.complete_all();
        }
    }
}

/// Runs `n` (not 0) jobs and returns how many ran.
fn run_counting_jobs(n: u32) -> Result<u32> {
    let counter = Arc::pin_init(
        pin_init!(Counter {
            left: Atomic::new(n),
            ran: Atomic::new(0),
            done <- kernel::sync::Completion::new(),
        }),
        GFP_KERNEL,
    )?;
    for _ in 0..n {
        // On an allocation failure the jobs already queued still hold the
        // counter, so returning without waiting for them is safe.
        let shared = counter.clone();
        let job = Arc::pin_init(
            pin_init!(CountJob {
                counter: shared,
                work <- kernel::new_work!("dst_crypto_selftest"),
            }),
            GFP_KERNEL,
        )?;
        // A new job is never already queued, so this cannot hand it back.
        drop(submit(job));
    }
    counter.done.wait_for_completion();
    Ok(counter.ran.load(Acquire))
}
