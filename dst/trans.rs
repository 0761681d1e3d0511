// SPDX-License-Identifier: GPL-2.0

//! The transaction layer's shared pieces, used by both nodes: how a message
//! goes onto a connection (one send path, one `MSG_MORE` rule) and how its
//! trailer comes off one, the state of a connection as a type, and the count
//! of what is in flight on one.
//!
//! Documentation/design.md, "Data path", describes the transactions these
//! carry; Documentation/protocol.md the frames.

use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full, Relaxed, Release},
        CondVar, Mutex,
    },
};

use crate::{
    proto::{Header, HEADER_LEN},
    security::{Opener, Sealer, MAX_TRAILER},
    socket::Socket,
};

/// Sends a message's payload; told whether more bytes follow at once.
pub(crate) type Payload<'a> = &'a dyn Fn(bool) -> Result;

/// Sends one message: its header, its payload (if any: `payload` sends it,
/// told whether more bytes follow at once) and its trailer (empty without
/// protection). `more` says that another message follows at once.
///
/// `MSG_MORE` is set exactly where more bytes follow at once: a message left
/// corked (the trailer is empty with protection none) would wait for TCP's
/// probe timer, 200 ms.
pub(crate) fn send_frame(
    sock: &Socket,
    header: &[u8; HEADER_LEN],
    payload: Option<Payload<'_>>,
    trailer: &[u8],
    more: bool,
) -> Result {
    let after_payload = more || !trailer.is_empty();
    sock.send_all(header, payload.is_some() || after_payload)?;
    if let Some(send) = payload {
        send(after_payload)?;
    }
    if !trailer.is_empty() {
        sock.send_all(trailer, more)?;
    }
    Ok(())
}

/// Before a message is sealed with `sealer` and sent on `sock`: if the key is
/// due for replacement, sends a KEY_UPDATE under it and moves `sealer` to the
/// next key. Returns whether it did. No memory for the next key leaves the
/// key as it is, to be replaced before a later message; a failure to send
/// is the connection's.
pub(crate) fn update_key_if_due(sock: &Socket, sealer: &mut Sealer) -> Result<bool> {
    if !sealer.update_due() {
        return Ok(false);
    }
    let hb = Header::key_update().encode();
    let mut trailer = [0u8; MAX_TRAILER];
    let n = match sealer.update_key(&hb, &mut trailer) {
        Ok(n) => n,
        Err(e) if e == ENOMEM => return Ok(false),
        Err(e) => return Err(e),
    };
    // The message the caller sends follows at once.
    send_frame(sock, &hb, None, trailer.get(..n).unwrap_or(&[]), true)?;
    Ok(true)
}

/// A received message's trailer (its protection's sequence number and tag),
/// kept until the message is checked, on a crypto worker perhaps.
#[derive(Clone, Copy)]
pub(crate) struct Trailer {
    buf: [u8; MAX_TRAILER],
    len: usize,
}

impl Trailer {
    /// Receives the trailer of the message just read from `sock`; `None` on
    /// a connection without protection, whose messages have none.
    pub(crate) fn recv(sock: &Socket, opener: &Opener) -> Result<Option<Self>> {
        if !opener.protected() {
            return Ok(None);
        }
        let mut t = Trailer {
            buf: [0; MAX_TRAILER],
            len: opener.trailer_len(),
        };
        sock.recv_exact(t.buf.get_mut(..t.len).ok_or(EINVAL)?)?;
        Ok(Some(t))
    }

    /// The trailer's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// A local device queue's connection state. The values are the uapi's
/// `enum dst_state`.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum ConnState {
    /// Connected: requests are sent.
    Up = 1,
    /// Lost: reconnecting; requests wait, up to the loss timeout.
    Reconnecting = 2,
    /// Being deleted: nothing more is sent or reconnected.
    Closing = 3,
    /// Lost for longer than the loss timeout: requests fail until a
    /// reconnect succeeds.
    Failed = 4,
}

impl ConnState {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => ConnState::Up,
            2 => ConnState::Reconnecting,
            4 => ConnState::Failed,
            // Only the values above are ever stored.
            _ => ConnState::Closing,
        }
    }

    /// The uapi number.
    pub(crate) fn as_u32(self) -> u32 {
        self as u32
    }

    /// The name `dstcfg` and sysfs show.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnState::Up => "connected",
            ConnState::Reconnecting => "reconnecting",
            ConnState::Closing => "closing",
            ConnState::Failed => "failed",
        }
    }

    /// How bad it is: a device reports its worst queue's state.
    pub(crate) fn severity(self) -> u8 {
        match self {
            ConnState::Up => 0,
            ConnState::Reconnecting => 1,
            ConnState::Closing => 2,
            ConnState::Failed => 3,
        }
    }
}

/// A [`ConnState`] shared between threads: loads acquire, stores release,
/// exchanges are fully ordered.
pub(crate) struct AtomicConnState(Atomic<u32>);

impl AtomicConnState {
    pub(crate) fn new(s: ConnState) -> Self {
        AtomicConnState(Atomic::new(s.as_u32()))
    }

    pub(crate) fn get(&self) -> ConnState {
        ConnState::from_u32(self.0.load(Acquire))
    }

    pub(crate) fn set(&self, s: ConnState) {
        self.0.store(s.as_u32(), Release)
    }

    /// Sets the state and returns the one it replaced.
    pub(crate) fn replace(&self, s: ConnState) -> ConnState {
        ConnState::from_u32(self.0.xchg(s.as_u32(), Full))
    }

    /// Moves from `from` to `to`; whether the state was `from`.
    pub(crate) fn advance(&self, from: ConnState, to: ConnState) -> bool {
        self.0.cmpxchg(from.as_u32(), to.as_u32(), Full).is_ok()
    }
}

/// What is in flight on a connection (an export session's requests, a local
/// queue's replies being checked): a count others wait on, and a gate that
/// closes it to new work (a fenced session). Whoever counts one in ends it.
#[pin_data]
pub(crate) struct InFlight {
    #[pin]
    count: Mutex<u32>,
    /// Signalled when the count drops, and when the gate closes.
    #[pin]
    changed: CondVar,
    /// Set under `count`'s lock: no `begin` succeeds after a `close` that
    /// has returned.
    closed: Atomic<bool>,
}

/// The gate of an [`InFlight`] was closed.
pub(crate) struct Closed;

impl InFlight {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(InFlight {
            count <- new_mutex!(0, "InFlight::count"),
            changed <- new_condvar!("InFlight::changed"),
            closed: Atomic::new(false),
        })
    }

    /// Counts one more in, unless the gate is closed; how many are in
    /// flight now, this one included.
    pub(crate) fn begin(&self) -> Result<u32, Closed> {
        let mut n = self.count.lock();
        if self.closed.load(Relaxed) {
            return Err(Closed);
        }
        *n += 1;
        Ok(*n)
    }

    /// How many are in flight (a snapshot).
    pub(crate) fn count(&self) -> u32 {
        *self.count.lock()
    }

    /// Counts one out; wakes those waiting for room or for none.
    pub(crate) fn end(&self) {
        let mut n = self.count.lock();
        *n = n.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Closes the gate: `begin` and `wait_below` fail from now on.
    pub(crate) fn close(&self) {
        let _n = self.count.lock();
        self.closed.store(true, Relaxed);
        self.changed.notify_all();
    }

    /// Whether the gate is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Waits until fewer than `limit` are in flight; fails once the gate
    /// is closed.
    pub(crate) fn wait_below(&self, limit: u32) -> Result<(), Closed> {
        let mut n = self.count.lock();
        while *n >= limit {
            if self.closed.load(Relaxed) {
                return Err(Closed);
            }
            self.changed.wait(&mut n);
        }
        Ok(())
    }

    /// Waits until none is in flight.
    pub(crate) fn wait_idle(&self) {
        let mut n = self.count.lock();
        while *n > 0 {
            self.changed.wait(&mut n);
        }
    }
}
