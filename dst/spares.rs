// SPDX-License-Identifier: GPL-2.0

//! Spare memory for pinned per-request state: allocated when a connection
//! is set up, one piece per request it may have in flight, and reused for
//! every request, so that the IO path allocates nothing for it.
//!
//! The state is pinned (it embeds a `work_struct` or a list link that C
//! points at), so it lives in a `Pin<KBox<T>>`; [`Spares::put`] drops the
//! value in place and keeps only its memory, which [`Spares::init`] fills
//! again. A take beyond the spares allocates (the caller chose the depth,
//! so this is only a fallback), and a put beyond the room made at
//! [`Spares::fill`] frees.

use core::{mem::MaybeUninit, pin::Pin};

use kernel::{alloc::AllocError, new_spinlock, prelude::*, sync::SpinLock};

/// Spare memory for values of type `T`.
#[pin_data]
pub(crate) struct Spares<T> {
    #[pin]
    free: SpinLock<KVec<KBox<MaybeUninit<T>>>>,
}

impl<T> Spares<T> {
    /// No spares yet ([`Spares::fill`] makes them).
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Spares {
            free <- new_spinlock!(KVec::new(), "Spares::free"),
        })
    }

    /// Makes `n` spares (replacing any there were), with room for `n` to
    /// be put back. Called before the first value is taken.
    pub(crate) fn fill(&self, n: usize) -> Result {
        let mut free = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            free.push(KBox::new_uninit(GFP_KERNEL)?, GFP_KERNEL)?;
        }
        *self.free.lock() = free;
        Ok(())
    }

    /// Initialises a value in a spare, or in new memory if none is left.
    pub(crate) fn init<E: From<AllocError>>(
        &self,
        init: impl PinInit<T, E>,
    ) -> Result<Pin<KBox<T>>, E> {
        let slot = match self.free.lock().pop() {
            Some(slot) => slot,
            None => KBox::new_uninit(GFP_KERNEL)?,
        };
        slot.write_pin_init(init)
    }

    /// Drops `value` and keeps its memory as a spare.
    pub(crate) fn put(&self, value: Pin<KBox<T>>) {
        // SAFETY: `drop_contents` drops the value in place before its
        // memory can be used again, which is all pinning asks.
        let slot = KBox::drop_contents(unsafe { Pin::into_inner_unchecked(value) });
        // Full only when the value's memory was allocated beyond the
        // spares: it is freed then.
        let _ = self.free.lock().push_within_capacity(slot);
    }
}
