// SPDX-License-Identifier: GPL-2.0

//! Page buffers for IO data, and the reserve that lets the export make
//! progress when the page allocator has nothing to give.
//!
//! C header: [`include/linux/gfp.h`](srctree/include/linux/gfp.h)
//!
//! A [`PageBuf`] is `len` bytes in whole pages, described by a `bio_vec`
//! array built when the buffer is made, so receiving, sending, checking and
//! submitting it allocate nothing more.
//!
//! Forward progress. The export allocates a buffer for every READ and WRITE
//! it serves. Under memory pressure (swap on a DST device, or writeback
//! through one) the page allocator may have nothing until those very IOs
//! complete, and an order-0 allocation in NOIO context does not fail: it
//! loops in reclaim that cannot make progress. So a [`PagePool`] first asks
//! the allocator without direct reclaim (`GFP_NOWAIT`: what is free at once;
//! even one round of reclaim per page, `__GFP_NORETRY`, kept the export's
//! receiver in reclaim, a largest IO being 256 pages, until the local
//! node's requests timed out under swap pressure), and on failure lends a
//! whole buffer from its reserve: buffers of the largest IO, allocated when
//! the export starts. A lent buffer goes back to the reserve
//! when dropped, that is when its IO has been answered, which needs no
//! memory. If the reserve is empty too, the caller waits for a buffer to come
//! back (retrying the allocator now and then). Lending whole buffers, never
//! single pages, means two sessions can never each hold half of what both
//! need: this is `mempool_t`'s guarantee, for multi-page elements.
//!
//! Lent pages are reused as soon as they are back, so they are never spliced
//! into a socket (which would keep referencing them for retransmission): a
//! lent buffer is sent by copying. [`Bounce`], the local node's per-queue
//! buffer for encrypted WRITEs, is reused the same way.

use core::mem;

use kernel::{
    bindings,
    ffi::c_uint,
    new_condvar, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, CondVar, SpinLock},
    time::msecs_to_jiffies,
};

use crate::{bdev::noio, security::Segments, socket::Socket};

/// `shim_bdev.c`. A `struct page *` is passed as `*mut c_void`: its bindgen
/// type holds a zero-sized field that the FFI-safety lint refuses.
mod ffi {
    use kernel::ffi::c_void;

    extern "C" {
        pub(super) fn dst_bdev_page_alloc(retry: bool) -> *mut c_void;
        pub(super) fn dst_bdev_page_free(page: *mut c_void);
    }
}

/// How long a caller waiting for the reserve sleeps before it asks the page
/// allocator again.
const RETRY_MS: u32 = 100;

/// The data of one IO: `len` bytes in whole pages.
///
/// # Invariants
///
/// Every `bv_page` in `vecs` is a page this buffer owns (allocated by
/// [`ffi::dst_bdev_page_alloc`], freed on drop unless lent). The first
/// `used` entries describe the data: `len` bytes, every entry a whole page
/// at offset 0 except that the last may be shorter; `len` is not 0 and
/// `used == len.div_ceil(PAGE_SIZE) <= vecs.len()`. `lender` is set while
/// the buffer belongs to that pool's reserve.
pub(crate) struct PageBuf {
    vecs: KVec<bindings::bio_vec>,
    used: usize,
    len: usize,
    lender: Option<Arc<PagePool>>,
}

// SAFETY: the bio_vecs only describe the buffer's own pages, which no one
// else references while it lives; the buffer may move between threads.
unsafe impl Send for PageBuf {}
// SAFETY: shared access only reads the descriptors and the pages.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// Allocates `len` bytes (not 0), NOIO. `retry`: try as hard as the
    /// allocator can (for buffers made once, at set-up); otherwise fail
    /// fast, without direct reclaim, for a caller with a reserve to fall
    /// back on. The contents are undefined until received or read into.
    pub(crate) fn alloc(len: usize, retry: bool) -> Result<Self> {
        if len == 0 {
            return Err(EINVAL);
        }
        let n = len.div_ceil(PAGE_SIZE);
        let flags = if retry {
            GFP_KERNEL
        } else {
            GFP_NOWAIT | __GFP_NOWARN
        };
        let vecs = noio(|| KVec::with_capacity(n, flags))?;
        // INVARIANT: no pages yet; dropping it on failure frees those added.
        let mut buf = PageBuf {
            vecs,
            used: 0,
            len: 0,
            lender: None,
        };
        for _ in 0..n {
            // SAFETY: allocates one page (NOIO), or returns null.
            let page = unsafe { ffi::dst_bdev_page_alloc(retry) }.cast::<bindings::page>();
            if page.is_null() {
                return Err(ENOMEM);
            }
            let vec = bindings::bio_vec {
                bv_page: page,
                bv_len: PAGE_SIZE as c_uint,
                bv_offset: 0,
            };
            // Within the capacity reserved above: does not allocate.
            buf.vecs.push_within_capacity(vec).map_err(|_| ENOMEM)?;
        }
        buf.describe(len)?;
        Ok(buf)
    }

    /// Makes the buffer describe `len` bytes (not 0, not more than it has
    /// pages for).
    fn describe(&mut self, len: usize) -> Result {
        let n = len.div_ceil(PAGE_SIZE);
        if len == 0 || n > self.vecs.len() {
            return Err(EINVAL);
        }
        for (i, v) in self.vecs.iter_mut().enumerate().take(n) {
            // At most PAGE_SIZE.
            v.bv_len = (len - i * PAGE_SIZE).min(PAGE_SIZE) as c_uint;
        }
        // INVARIANT: the first `n` entries describe `len` bytes.
        self.used = n;
        self.len = len;
        Ok(())
    }

    /// Bytes in the buffer.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pages holding the data, as bio_vecs.
    pub(crate) fn bvecs(&self) -> &[bindings::bio_vec] {
        self.vecs.get(..self.used).unwrap_or(&[])
    }

    /// The data, for the crypto layer to protect or check (in place for
    /// AEAD).
    pub(crate) fn segments(&mut self) -> Segments<'_> {
        // SAFETY: the pages are this buffer's (type invariant) and `&mut
        // self` keeps every other user of the buffer out while the result
        // lives. The one user outside the buffer, a socket reading pages
        // spliced into it, cannot be there: a buffer is sent last (see
        // `send`).
        unsafe { Segments::from_raw(self.bvecs()) }
    }

    /// Fills the whole buffer from `sock`, directly into the pages.
    pub(crate) fn recv(&mut self, sock: &Socket) -> Result {
        // SAFETY: the pages are this buffer's, exclusively borrowed.
        unsafe { sock.recv_pages(self.bvecs()) }
    }

    /// Sends the whole buffer on `sock`; `more` hints that more data
    /// follows. The buffer may be dropped as soon as this returns: its own
    /// pages are spliced (the socket takes page references), a reserve's
    /// are copied, since the reserve reuses them at once.
    pub(crate) fn send(&self, sock: &Socket, more: bool) -> Result {
        let splice = self.lender.is_none();
        // SAFETY: the pages are this buffer's, whole pages from the page
        // allocator (spliceable). Spliced pages are not written again: the
        // buffer is sent once, then dropped and its pages freed, which only
        // drops our reference.
        unsafe { sock.send_pages(self.bvecs(), more, splice) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        if let Some(pool) = self.lender.take() {
            let vecs = mem::take(&mut self.vecs);
            // INVARIANT: the pages move on to the reserve's buffer.
            pool.give_back(PageBuf {
                vecs,
                used: 0,
                len: 0,
                lender: None,
            });
            return;
        }
        for v in self.vecs.iter() {
            // SAFETY: the page is ours (type invariant) and is freed once.
            unsafe { ffi::dst_bdev_page_free(v.bv_page.cast()) };
        }
    }
}

/// Page buffers with a reserve: see the module documentation.
#[pin_data]
pub(crate) struct PagePool {
    /// Buffers of `max_len` bytes kept for when the allocator fails; the
    /// vector's capacity holds all of them, so giving one back never
    /// allocates. Only taken in process context.
    #[pin]
    reserve: SpinLock<KVec<PageBuf>>,
    /// Signalled when a buffer comes back to the reserve.
    #[pin]
    returned: CondVar,
    max_len: usize,
}

impl PagePool {
    /// A pool for buffers of up to `max_len` bytes with `reserved` of them
    /// kept in reserve (allocated now, trying hard).
    pub(crate) fn new(max_len: usize, reserved: usize) -> Result<Arc<Self>> {
        let mut bufs = KVec::with_capacity(reserved, GFP_KERNEL)?;
        for _ in 0..reserved {
            bufs.push(PageBuf::alloc(max_len, true)?, GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(PagePool {
                reserve <- new_spinlock!(bufs, "PagePool::reserve"),
                returned <- new_condvar!("PagePool::returned"),
                max_len,
            }),
            GFP_KERNEL,
        )
    }

    /// A buffer of `len` bytes (1 to `max_len`): from the allocator if it
    /// has pages at once, else lent from the reserve, else once a lent
    /// buffer comes back. Sleeps; process context only.
    pub(crate) fn alloc(self: &Arc<Self>, len: usize) -> Result<PageBuf> {
        if len == 0 || len > self.max_len {
            return Err(EINVAL);
        }
        loop {
            if let Ok(buf) = PageBuf::alloc(len, false) {
                return Ok(buf);
            }
            let mut reserve = self.reserve.lock();
            if let Some(mut buf) = reserve.pop() {
                drop(reserve);
                buf.describe(len)?;
                buf.lender = Some(self.clone());
                return Ok(buf);
            }
            // Woken by a buffer coming back, or after a while to try the
            // allocator again.
            let _ = self
                .returned
                .wait_interruptible_timeout(&mut reserve, msecs_to_jiffies(RETRY_MS));
        }
    }

    /// Takes a lent buffer back into the reserve.
    fn give_back(&self, buf: PageBuf) {
        let mut reserve = self.reserve.lock();
        // Every buffer given back was taken out, so there is room.
        if let Err(e) = reserve.push_within_capacity(buf) {
            drop(reserve);
            drop(e);
            return;
        }
        drop(reserve);
        self.returned.notify_one();
    }
}

/// Pages allocated once and reused for one message at a time, so that a
/// message is protected or checked only in pages the kernel owns (never in
/// a request's own pages, which may be a process's O_DIRECT buffer that it
/// changes at any time): the local node's WRITE data is copied or encrypted
/// into one before it is protected and sent, and its READ data received
/// into one and checked there before it is copied to the request. No
/// allocation per request.
pub(crate) struct Bounce {
    buf: PageBuf,
    /// The buffer's full length, what [`Bounce::describe`] may ask for.
    capacity: usize,
}

impl Bounce {
    /// A buffer for messages of up to `len` bytes.
    pub(crate) fn new(len: usize) -> Result<Self> {
        Ok(Bounce {
            buf: PageBuf::alloc(len, true)?,
            capacity: len,
        })
    }

    /// Uses the first `len` bytes (1 to the buffer's size) for the next
    /// message, and describes them for the crypto layer to write into.
    pub(crate) fn segments(&mut self, len: usize) -> Result<Segments<'_>> {
        if len > self.capacity {
            return Err(EINVAL);
        }
        self.buf.describe(len)?;
        Ok(self.data())
    }

    /// The bytes in use, for the crypto layer.
    pub(crate) fn data(&mut self) -> Segments<'_> {
        // Never spliced (see `send`), so `PageBuf::segments` holds.
        self.buf.segments()
    }

    /// Receives the next message's `len` bytes (1 to the buffer's size)
    /// from `sock`.
    pub(crate) fn recv(&mut self, sock: &Socket, len: usize) -> Result {
        if len > self.capacity {
            return Err(EINVAL);
        }
        self.buf.describe(len)?;
        self.buf.recv(sock)
    }

    /// Sends the bytes in use, copied into the socket: the pages are
    /// reused for the next message as soon as this returns.
    pub(crate) fn send(&self, sock: &Socket, more: bool) -> Result {
        // SAFETY: the pages are this buffer's and stay valid for the call;
        // without splicing the socket keeps no reference to them.
        unsafe { sock.send_pages(self.buf.bvecs(), more, false) }
    }
}
