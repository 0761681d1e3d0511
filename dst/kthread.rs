// SPDX-License-Identifier: GPL-2.0

//! Kernel threads: a handle that starts a thread running a Rust function and
//! stops it (waiting for it to finish) when stopped or dropped.
//!
//! C header: [`include/linux/kthread.h`](srctree/include/linux/kthread.h)
//!
//! Network receive loops block in `recvmsg` and are woken for shutdown by
//! shutting their socket down, so they are threads rather than work items.
//! Every thread body runs with `PF_MEMALLOC_NOIO` set.

use core::ptr::NonNull;

use kernel::{
    bindings,
    error::to_result,
    ffi::{c_int, c_long, c_void},
    fmt,
    prelude::*,
    str::CString, //
};

mod ffi {
    use kernel::ffi::c_int;

    extern "C" {
        pub(super) fn dst_shim_current_run_on(cpu: c_int) -> c_int;
        pub(super) fn dst_shim_current_placed(cpu: c_int, nice: c_int) -> bool;
    }
}

/// What the thread runs: a function and its argument, owned by the handle.
struct Body<T> {
    data: T,
    func: fn(&T),
}

/// A running kernel thread.
///
/// # Invariants
///
/// `task` is a kthread created by `kthread_create_on_node`, on which this
/// handle holds a task reference; `body` is the thread's argument and stays
/// alive (and pinned in its box) until the thread has been stopped, which
/// happens exactly once, in [`Drop`].
pub(crate) struct Thread<T: Send + Sync + 'static> {
    task: NonNull<bindings::task_struct>,
    body: KBox<Body<T>>,
}

// SAFETY: the handle only stops the thread, which may be done from any task;
// the data is `Send + Sync`.
unsafe impl<T: Send + Sync + 'static> Send for Thread<T> {}
// SAFETY: `&Thread` offers no operations.
unsafe impl<T: Send + Sync + 'static> Sync for Thread<T> {}

/// Lets the current thread run only on `cpu`, or with `None` on any CPU
/// kernel threads may use. For the threads of [`Thread`] only: in a
/// process's context it would change the process's affinity. May sleep
/// (it migrates the thread at once); allocates nothing.
pub(crate) fn run_on(cpu: Option<u32>) -> Result {
    let cpu = shim_cpu(cpu)?;
    // SAFETY: `current` is always a valid task, and the caller is in task
    // context (a thread body), where changing its own affinity may sleep.
    to_result(unsafe { ffi::dst_shim_current_run_on(cpu) })
}

/// `cpu` as the shim takes it: -1 for any CPU.
fn shim_cpu(cpu: Option<u32>) -> Result<c_int> {
    cpu.map_or(Ok(-1), c_int::try_from).map_err(|_| EINVAL)
}

/// How the current thread is scheduled beside the tasks whose IO it
/// carries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) enum Priority {
    /// Nice 0, as the tasks that submit IO.
    #[default]
    Normal,
    /// Nice -20, the priority of the `WQ_HIGHPRI` work on which nvme-tcp,
    /// nvmet-tcp and nbd receive: a task this thread wakes does not preempt
    /// it, and it preempts the task running where it is woken.
    High,
}

impl Priority {
    /// The nice value.
    fn nice(self) -> c_int {
        match self {
            Priority::Normal => 0,
            Priority::High => bindings::MIN_NICE as c_int,
        }
    }
}

/// Sets the current thread's priority. For the threads of [`Thread`] only,
/// as [`run_on`]. Neither sleeps nor allocates.
pub(crate) fn set_priority(priority: Priority) {
    // SAFETY: `current` is always a valid task; setting its own nice value
    // only takes its run queue's lock.
    unsafe {
        bindings::set_user_nice(kernel::task::Task::current_raw(), priority.nice() as c_long)
    };
}

/// Whether the current thread still runs where [`run_on`]`(cpu)` put it,
/// at `priority`: false once something else (the admin's `taskset` or
/// `renice`, or CPU hotplug) changed its affinity or nice value. For the
/// threads of [`Thread`] only, as [`run_on`].
pub(crate) fn is_placed(cpu: Option<u32>, priority: Priority) -> bool {
    let Ok(cpu) = shim_cpu(cpu) else {
        return false;
    };
    // SAFETY: reads the current task's own affinity and nice value.
    unsafe { ffi::dst_shim_current_placed(cpu, priority.nice()) }
}

/// Whether the current kthread has been asked to stop.
pub(crate) fn should_stop() -> bool {
    // SAFETY: may be called from any kthread.
    unsafe { bindings::kthread_should_stop() }
}

/// The thread entry point.
///
/// # Safety
///
/// `arg` must point to a live `Body<T>` that outlives the thread.
unsafe extern "C" fn trampoline<T: Send + Sync + 'static>(arg: *mut c_void) -> c_int {
    // SAFETY: guaranteed by the caller (`Thread::spawn`): the body lives in
    // the handle until `kthread_stop` has returned.
    let body = unsafe { &*arg.cast::<Body<T>>() };
    // The whole body runs in a NOIO scope: DST's threads serve block IO
    // (the local node's own device, or the export's), and reclaim entered
    // from one of them must never wait for IO that they carry.
    crate::bdev::noio(|| (body.func)(&body.data));
    // Returning is fine even before `kthread_stop`: the handle holds a task
    // reference, and `kthread_stop` on an exited kthread just reaps it.
    0
}

impl<T: Send + Sync + 'static> Thread<T> {
    /// Starts a thread named `name` running `func(&data)`. The function
    /// should return once [`should_stop`] is true (or its socket is shut down).
    pub(crate) fn spawn(name: fmt::Arguments<'_>, data: T, func: fn(&T)) -> Result<Self> {
        let name = CString::try_from_fmt(name)?;
        let body = KBox::new(Body { data, func }, GFP_KERNEL)?;
        let arg = (&raw const *body).cast_mut().cast::<c_void>();
        // SAFETY: `trampoline::<T>` matches the kthread signature; `arg`
        // points into `body`, which the returned handle keeps alive until the
        // thread is stopped; the format is "%s" with a NUL-terminated string.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(trampoline::<T>),
                arg,
                bindings::NUMA_NO_NODE,
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        };
        // `kthread_create_on_node` returns an ERR_PTR on failure.
        let task = kernel::error::from_err_ptr(task)?;
        let task = NonNull::new(task).ok_or(ENOMEM)?;
        // SAFETY: `task` is a live task we just created.
        unsafe { bindings::get_task_struct(task.as_ptr()) };
        // SAFETY: `task` is a newly created, not yet running kthread.
        unsafe { bindings::wake_up_process(task.as_ptr()) };
        // INVARIANT: we hold a task reference and own `body`.
        Ok(Thread { task, body })
    }

    /// The data the thread works on.
    pub(crate) fn data(&self) -> &T {
        &self.body.data
    }
}

impl<T: Send + Sync + 'static> Drop for Thread<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold a task reference on a
        // kthread; `kthread_stop_put` waits for it to exit and drops the
        // reference. Only then is `body` freed (after this function).
        unsafe { bindings::kthread_stop_put(self.task.as_ptr()) };
    }
}
