// SPDX-License-Identifier: GPL-2.0

//! One request's execution: an [`Io`], from its start to its completion.
//!
//! A READ or WRITE goes to the device as a bio, or to a file as an
//! asynchronous kiocb ([`start_bio`]); a protected WRITE may first be
//! verified by a crypto worker (its admitted [`Check`]); FLUSH, DISCARD and
//! WRITE_ZEROES run as a work item on the export's workqueue, since their
//! `blkdev_issue_*` (or `fsync`, `fallocate`) calls block, and so do the
//! READ and WRITE of a file served through the page cache. Each ends by
//! handing the `Io`, with its status, to its session's sender (a WRITE that
//! fails its check instead ends the session: it is never written).
//!
//! This is what runs outside the session's threads, in work items and in
//! bio completions (interrupt context, where nothing may sleep), which is
//! why it is apart from the receive side (`session.rs`) and only hands its
//! result back.

use core::pin::Pin;

use kernel::{
    prelude::*,
    sync::{atomic::Relaxed, Arc},
    workqueue::{
        impl_has_work,
        new_work,
        Work,
        WorkItem, //
    },
};

use crate::{
    bdev::{
        self,
        BioOp,
        BioOwner,
        IoData, //
    },
    handoff::{
        Handoff,
        Link,
        Linked, //
    },
    pages::PageBuf,
    proto::{
        self,
        Header,
        Op,
        Status, //
    },
    security::{self, Check},
};

use super::session::{Charge, End, Session};

/// Starts a READ or WRITE on the device; its completion hands the request
/// to the sender. One that would block (a file served buffered) runs as a
/// work item on the export's workqueue instead, so that neither the receive
/// thread nor a crypto worker waits for the page cache.
pub(super) fn start_bio(io: Pin<KBox<Io>>, op: BioOp) {
    if io.session.backing.blocking_rw() {
        // The queue outlives the work: the export drains it before it goes.
        let session = io.session.clone();
        session.export.wq.queue().enqueue(io);
        return;
    }
    let offset = io.req.offset;
    if let Err((io, e)) = bdev::submit(io, op, offset) {
        Io::complete(io, Err(e));
    }
}

/// Verifies an admitted message whose payload is `data` (decrypting it in
/// place for AEAD).
pub(super) fn verify(check: &Check, data: Option<&mut PageBuf>) -> Result<(), End> {
    let data = match data {
        Some(pages) => pages.segments(),
        None => security::no_data(),
    };
    check.verify(&data).map_err(End::from)
}

/// Maps the result of a device operation to a reply status.
fn status_of(r: Result) -> Status {
    match r {
        Ok(()) => Status::Ok,
        Err(e) if e == ENOSPC => Status::NoSpace,
        Err(e) if bdev::is_not_supported(e) => Status::NotSupported,
        Err(e) if e == ENOMEM || e == EAGAIN || e == EBUSY => Status::Busy,
        Err(_) => Status::IoError,
    }
}

/// One request being executed. A work item for what runs in process context
/// (checking a WRITE on the crypto pool, blocking device operations), then
/// handed to the session's sender ([`Linked`]), which answers it.
#[pin_data]
pub(super) struct Io {
    #[pin]
    work: Work<Io>,
    link: Link,
    session: Arc<Session>,
    pub(super) req: Header,
    /// Pages and device of a READ or WRITE.
    pub(super) data: Option<IoData>,
    /// The memory budget `data` holds; after it, so the pages go back first.
    charge: Option<Charge>,
    /// The result, once the operation has run.
    pub(super) status: Option<Status>,
    /// A WRITE not yet verified: a crypto worker runs it first.
    pending: Option<Check>,
}

impl_has_work! {
    impl HasWork<Self> for Io { self.work }
}

// SAFETY: `link` is a `Link` field of `Io`. The session outlives every push
// to its `replies`: `session_main` quiesces them before the session can go.
unsafe impl Linked for Io {
    const NODE_OFFSET: usize = core::mem::offset_of!(Io, link);

    fn handoff(&self) -> &Handoff<Io> {
        &self.session.replies
    }
}

impl Io {
    /// The request state, in one of the session's spares: there is one for
    /// every request the queue depth lets in, so allocating (in the receive
    /// thread's NOIO scope) is only a fallback.
    pub(super) fn new(
        session: Arc<Session>,
        req: Header,
        data: Option<IoData>,
        charge: Option<Charge>,
        pending: Option<Check>,
    ) -> Result<Pin<KBox<Self>>> {
        session.clone().spare_ios.init(try_pin_init!(Io {
            work <- new_work!("Io::work"),
            link: Link::new(),
            session,
            req,
            data,
            charge,
            status: None,
            pending,
        }))
    }

    /// Ends the request: what it holds (pages, memory budget) goes back,
    /// and its memory to its session's spares.
    pub(super) fn recycle(this: Pin<KBox<Self>>) {
        let session = this.session.clone();
        session.spare_ios.put(this);
    }

    /// The READ or WRITE this request is, if it is one.
    fn rw_op(&self) -> Option<BioOp> {
        match self.req.op {
            Some(Op::Read) => Some(BioOp::Read),
            Some(Op::Write) => Some(BioOp::Write {
                fua: self.req.flags & proto::FLAG_FUA != 0,
            }),
            _ => None,
        }
    }

    /// Runs a READ or WRITE that blocks (see [`start_bio`]).
    fn rw_blocking(&self, op: BioOp) -> Status {
        let r = match &self.data {
            Some(data) => bdev::rw_blocking(data, op, self.req.offset),
            None => Err(EINVAL),
        };
        status_of(r)
    }

    /// Runs a FLUSH, DISCARD or WRITE_ZEROES on the device. Blocks.
    fn execute(&self) -> Status {
        let dev = &self.session.backing;
        let (offset, len) = (self.req.offset, u64::from(self.req.length));
        let r = match self.req.op {
            Some(Op::Flush) => dev.flush(),
            Some(Op::Discard) => dev.discard(offset, len),
            Some(Op::WriteZeroes) => {
                dev.write_zeroes(offset, len, self.req.flags & proto::FLAG_NO_UNMAP == 0)
            }
            _ => Err(EINVAL),
        };
        let fua = self.req.flags & proto::FLAG_FUA != 0 && self.req.op != Some(Op::Flush);
        status_of(r.and_then(|()| if fua { dev.flush() } else { Ok(()) }))
    }
}

impl WorkItem for Io {
    type Pointer = Pin<KBox<Io>>;

    fn run(mut this: Pin<KBox<Io>>) {
        bdev::noio(|| {
            if let Some(check) = this.as_mut().project().pending.take() {
                let pages = this.as_mut().project().data.as_mut().map(IoData::pages_mut);
                if let Err(end) = verify(&check, pages) {
                    // Never written: end the session, which the local node
                    // sees as a lost connection, and resends.
                    let s = &this.session;
                    if matches!(end, End::Integrity(_)) {
                        s.export.integrity_errors.add(1, Relaxed);
                    }
                    if s.export.may_log() {
                        pr_warn!(
                            "export {}: session {} with {}: {}\n",
                            s.export.shown(),
                            s.id,
                            s.peer,
                            end
                        );
                    }
                    s.sock.shutdown();
                    let s = s.clone();
                    Io::recycle(this);
                    s.inflight.end();
                    return;
                }
                let fua = this.req.flags & proto::FLAG_FUA != 0;
                start_bio(this, BioOp::Write { fua });
                return;
            }
            // A READ or WRITE here was queued by `start_bio`: it blocks.
            let status = match this.rw_op() {
                Some(op) => this.rw_blocking(op),
                None => this.execute(),
            };
            *this.as_mut().project().status = Some(status);
            Handoff::push(this);
        })
    }
}

impl BioOwner for Io {
    fn io_data(&self) -> Option<&IoData> {
        self.data.as_ref()
    }

    fn complete(mut this: Pin<KBox<Self>>, result: Result) {
        *this.as_mut().project().status = Some(status_of(result));
        Handoff::push(this);
    }
}
