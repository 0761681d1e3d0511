// SPDX-License-Identifier: GPL-2.0

//! A hand-off from interrupt context to one kernel thread: completion
//! handlers push owned items, the thread takes all that are there at once,
//! in the order they were pushed.
//!
//! C headers: [`include/linux/llist.h`](srctree/include/linux/llist.h),
//! [`include/linux/wait.h`](srctree/include/linux/wait.h)
//!
//! Built on the kernel's lock-free `llist` and a wait queue, both usable
//! from hard interrupt context, so a bio's completion can pass its request
//! straight to the thread that answers it, with no work item in between.
//! The export uses one per session (`export/session.rs`): replies then
//! leave from the session's own sender thread, so a peer that does not read
//! only ever blocks its own sender.
//!
//! The consumer can also be woken without an item ([`Handoff::kick`]), for
//! news that is not an item: the export's sessions learn so that the device
//! grew, and their sender tells its peer.
//!
//! A producer that can consume too ([`Handoff::hold`]) keeps pushes from
//! waking the consumer while it holds, and takes what was pushed when it
//! lets go: the export's receive thread answers a request whose bio
//! completed inline (a RAM disk, a cache hit) itself, with no wake-up and
//! no second thread on the way.
//!
//! Lifetime. A pusher still touches the hand-off (to wake the consumer) after
//! its item is on the list, so the consumer may already have taken and
//! dropped the item, and with it perhaps what kept the hand-off alive. Each
//! push is therefore an RCU read-side section, and [`Handoff::quiesce`]
//! (`synchronize_rcu`) waits for every push under way: the owner calls it
//! after the consumer has taken the last item and before the hand-off may
//! be freed.

use core::{marker::PhantomData, pin::Pin};

use kernel::{bindings, prelude::*, types::Opaque};

/// `shim_bdev.c`.
mod ffi {
    use kernel::bindings;

    extern "C" {
        pub(super) fn dst_handoff_init_list(list: *mut bindings::llist_head);
        pub(super) fn dst_handoff_init_wait(wait: *mut bindings::wait_queue_head);
        pub(super) fn dst_handoff_push(
            list: *mut bindings::llist_head,
            wait: *mut bindings::wait_queue_head,
            held: *mut bindings::atomic_t,
            node: *mut bindings::llist_node,
        );
        pub(super) fn dst_handoff_hold(held: *mut bindings::atomic_t);
        pub(super) fn dst_handoff_unhold(
            list: *mut bindings::llist_head,
            wait: *mut bindings::wait_queue_head,
            held: *mut bindings::atomic_t,
        );
        pub(super) fn dst_handoff_release(
            list: *mut bindings::llist_head,
            held: *mut bindings::atomic_t,
        ) -> *mut bindings::llist_node;
        pub(super) fn dst_handoff_wait(
            list: *mut bindings::llist_head,
            wait: *mut bindings::wait_queue_head,
            kicked: *mut bindings::atomic_t,
        ) -> *mut bindings::llist_node;
        pub(super) fn dst_handoff_kick(
            wait: *mut bindings::wait_queue_head,
            kicked: *mut bindings::atomic_t,
        );
        pub(super) fn dst_handoff_kicked(kicked: *mut bindings::atomic_t) -> bool;
        pub(super) fn dst_handoff_take(
            list: *mut bindings::llist_head,
        ) -> *mut bindings::llist_node;
        pub(super) fn dst_handoff_quiesce();
    }
}

/// The link a [`Linked`] type embeds; only [`Handoff`] uses it.
#[repr(transparent)]
pub(crate) struct Link(Opaque<bindings::llist_node>);

// SAFETY: the node is only written by `llist_add` while its item is being
// handed off, when no one else uses it.
unsafe impl Send for Link {}
// SAFETY: `&Link` gives no access to the node.
unsafe impl Sync for Link {}

impl Link {
    /// A link for a new item; set when the item is pushed.
    pub(crate) fn new() -> Self {
        Link(Opaque::uninit())
    }
}

/// A type whose boxes can be handed off: it embeds a [`Link`] and knows
/// its hand-off.
///
/// # Safety
///
/// `NODE_OFFSET` is the offset of a field of type [`Link`] in `Self`. The
/// hand-off [`Linked::handoff`] returns is not freed until its
/// [`Handoff::quiesce`] has returned after the consumer took the item (the
/// item may hold what keeps the hand-off alive).
pub(crate) unsafe trait Linked: Sized + Send {
    /// Offset of the link field.
    const NODE_OFFSET: usize;

    /// The hand-off the item goes to.
    fn handoff(&self) -> &Handoff<Self>;
}

/// Items of type `T` handed from any context to one consuming thread.
///
/// # Invariants
///
/// Every node on `list` is the node of a `T` leaked from a `Pin<KBox<T>>`
/// by [`Handoff::push`], owned by the list until taken.
#[pin_data(PinnedDrop)]
pub(crate) struct Handoff<T: Linked> {
    #[pin]
    list: Opaque<bindings::llist_head>,
    #[pin]
    wait: Opaque<bindings::wait_queue_head>,
    /// Set by [`Handoff::kick`], cleared by [`Handoff::kicked`].
    #[pin]
    kicked: Opaque<bindings::atomic_t>,
    /// The number of [`Hold`]s: pushes wake the consumer only when 0.
    #[pin]
    held: Opaque<bindings::atomic_t>,
    _items: PhantomData<Pin<KBox<T>>>,
}

// SAFETY: the list and the wait queue are safe to use from any context
// (that is their purpose); the items are `Send`.
unsafe impl<T: Linked> Send for Handoff<T> {}
// SAFETY: as for `Send`; all operations take `&self` and are thread-safe
// (`llist_add` is lock-free, `llist_del_all` an atomic exchange).
unsafe impl<T: Linked> Sync for Handoff<T> {}

impl<T: Linked> Handoff<T> {
    /// An empty hand-off.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `p` points to the field, pinned with the struct.
            list <- Opaque::ffi_init(|p| unsafe { ffi::dst_handoff_init_list(p) }),
            // SAFETY: as above.
            wait <- Opaque::ffi_init(|p| unsafe { ffi::dst_handoff_init_wait(p) }),
            // An `atomic_t` of 0: not kicked.
            kicked: Opaque::zeroed(),
            // An `atomic_t` of 0: not held.
            held: Opaque::zeroed(),
            _items: PhantomData,
        })
    }

    /// Hands `item` to the consumer of its hand-off and wakes it, unless a
    /// [`Hold`] will take it. Callable in any context, hard interrupts
    /// included.
    pub(crate) fn push(item: Pin<KBox<T>>) {
        let this: *const Self = item.handoff();
        // SAFETY: the item is not moved out of its box: it comes back
        // pinned, exactly once, in `Batch::next` or on drop.
        let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(item) });
        // SAFETY: `NODE_OFFSET` is the offset of a `Link`, a transparent
        // `llist_node`, within `T` (trait contract): within the item.
        let node = unsafe { raw.byte_add(T::NODE_OFFSET) }.cast::<bindings::llist_node>();
        // SAFETY: the hand-off outlives this push, even if the consumer
        // frees the item first (`Linked` contract); its list and wait queue
        // are initialised and pinned. The node is unused until taken.
        // INVARIANT: the list now owns the leaked item.
        unsafe {
            let this = &*this;
            ffi::dst_handoff_push(this.list.get(), this.wait.get(), this.held.get(), node);
        }
    }

    /// Waits until there are items, the consumer was kicked, or the calling
    /// kthread is asked to stop, and takes all the items there are (perhaps
    /// none). Sleeps in `TASK_IDLE`, so an idle consumer is not a hung task.
    pub(crate) fn wait(&self) -> Batch<T> {
        // SAFETY: list, wait queue and flag are initialised and pinned.
        let first =
            unsafe { ffi::dst_handoff_wait(self.list.get(), self.wait.get(), self.kicked.get()) };
        Batch {
            next: first,
            _items: PhantomData,
        }
    }

    /// Wakes the consumer without an item; its next [`Handoff::kicked`]
    /// says so. Process or softirq context, by a caller that holds what
    /// keeps the hand-off alive (so no grace period is needed).
    pub(crate) fn kick(&self) {
        // SAFETY: wait queue and flag are initialised and pinned, and live
        // for the call (the caller's reference).
        unsafe { ffi::dst_handoff_kick(self.wait.get(), self.kicked.get()) };
    }

    /// Whether [`Handoff::kick`] was called since the last call of this;
    /// for the consumer, after [`Handoff::wait`].
    pub(crate) fn kicked(&self) -> bool {
        // SAFETY: the flag is initialised and pinned.
        unsafe { ffi::dst_handoff_kicked(self.kicked.get()) }
    }

    /// Keeps pushes from waking the consumer until the hold is released,
    /// which takes what they pushed: for a producer that would rather
    /// consume its own items when they come at once.
    pub(crate) fn hold(&self) -> Hold<'_, T> {
        // SAFETY: the counter is initialised and pinned.
        unsafe { ffi::dst_handoff_hold(self.held.get()) };
        Hold(self)
    }

    /// Waits until every push that has begun has returned (see the module
    /// documentation). Sleeps.
    pub(crate) fn quiesce(&self) {
        // SAFETY: no precondition; waits for an RCU grace period.
        unsafe { ffi::dst_handoff_quiesce() };
    }
}

#[pinned_drop]
impl<T: Linked> PinnedDrop for Handoff<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: the list is initialised; nobody pushes any more (we are
        // being dropped, so no reference remains).
        let first = unsafe { ffi::dst_handoff_take(self.list.get()) };
        drop(Batch::<T> {
            next: first,
            _items: PhantomData,
        });
    }
}

/// A [`Handoff::hold`]: pushes meanwhile leave the consumer asleep;
/// [`Hold::release`] (or drop, which wakes the consumer instead) ends it.
#[must_use]
pub(crate) struct Hold<'a, T: Linked>(&'a Handoff<T>);

impl<T: Linked> Hold<'_, T> {
    /// Ends the hold and takes every item there is, the holder's to consume
    /// (a push after this wakes the consumer again).
    pub(crate) fn release(self) -> Batch<T> {
        let h = self.0;
        core::mem::forget(self);
        // SAFETY: list and counter are initialised and pinned; this ends
        // the hold `Handoff::hold` began.
        let first = unsafe { ffi::dst_handoff_release(h.list.get(), h.held.get()) };
        Batch {
            next: first,
            _items: PhantomData,
        }
    }
}

impl<T: Linked> Drop for Hold<'_, T> {
    fn drop(&mut self) {
        // Not released: what was pushed meanwhile is the consumer's.
        let h = self.0;
        // SAFETY: list, wait queue and counter are initialised and pinned;
        // this ends the hold `Handoff::hold` began.
        unsafe { ffi::dst_handoff_unhold(h.list.get(), h.wait.get(), h.held.get()) };
    }
}

/// Items taken from a [`Handoff`], oldest first; dropping the batch drops
/// the items not iterated.
///
/// # Invariants
///
/// `next` is null or the first node of a chain taken off a [`Handoff<T>`]'s
/// list, each node owned by this batch.
pub(crate) struct Batch<T: Linked> {
    next: *mut bindings::llist_node,
    _items: PhantomData<Pin<KBox<T>>>,
}

impl<T: Linked> Batch<T> {
    /// Whether no item is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.next.is_null()
    }
}

impl<T: Linked> Iterator for Batch<T> {
    type Item = Pin<KBox<T>>;

    fn next(&mut self) -> Option<Pin<KBox<T>>> {
        if self.next.is_null() {
            return None;
        }
        let node = self.next;
        // SAFETY: `node` is a node we own (type invariant); read its link
        // before its item can be freed.
        self.next = unsafe { (*node).next };
        // SAFETY: the node sits at `NODE_OFFSET` inside a `T` leaked by
        // `Handoff::push` from a pinned box; we take that box back once.
        let item = unsafe { KBox::from_raw(node.byte_sub(T::NODE_OFFSET).cast::<T>()) };
        // SAFETY: the item was pinned when pushed and never moved since.
        Some(unsafe { Pin::new_unchecked(item) })
    }
}

impl<T: Linked> Drop for Batch<T> {
    fn drop(&mut self) {
        for item in self.by_ref() {
            drop(item);
        }
    }
}

// SAFETY: the batch owns its items, which are `Send`.
unsafe impl<T: Linked> Send for Batch<T> {}
