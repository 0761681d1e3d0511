// SPDX-License-Identifier: GPL-2.0

//! Kernel TCP sockets: a small owner over `struct socket` for the transport
//! code.
//!
//! C header: [`include/linux/net.h`](srctree/include/linux/net.h)
//!
//! Every transfer loops until the whole buffer has moved, uses `MSG_NOSIGNAL`,
//! and turns a zero-length read (peer closed) into `ECONNRESET`. Socket options
//! are set in one place, [`Socket::configure`], through the C shim because
//! `struct sock` is opaque to Rust.

use core::ptr::NonNull;

use kernel::{
    bindings,
    error::to_result,
    ffi::{c_int, c_uint, c_ulong},
    prelude::*,
    time::{Instant, Monotonic}, //
};

use crate::{error::code, netns::HomeNet};

mod ffi {
    use kernel::{
        bindings,
        ffi::{c_int, c_void},
    };

    extern "C" {
        pub(super) fn dst_shim_sock_configure(sock: *mut c_void, memalloc: bool);
        pub(super) fn dst_shim_sock_release(sock: *mut c_void, memalloc: bool);
        pub(super) fn dst_shim_noreclaim_save() -> c_int;
        pub(super) fn dst_shim_noreclaim_restore(flags: c_int);
        pub(super) fn dst_shim_sock_timeouts(sock: *mut c_void, snd_ms: u32, rcv_ms: u32);
        pub(super) fn dst_shim_sock_has_data(sock: *mut c_void) -> bool;
        pub(super) fn dst_shim_sock_send_room(sock: *mut c_void) -> c_int;
        pub(super) fn dst_shim_sock_incoming_cpu(sock: *mut c_void) -> c_int;
        pub(super) fn sock_set_reuseaddr(sk: *mut bindings::sock);
    }
}

const AF_INET6: u16 = 10;

/// A TCP endpoint: IPv4 or IPv6 address and port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SockAddr {
    /// IPv4 address (network order bytes) and port.
    V4([u8; 4], u16),
    /// IPv6 address (network order bytes) and port.
    V6([u8; 16], u16),
}

/// `struct sockaddr_in`, which bindgen does not generate here.
#[repr(C)]
struct SockaddrIn {
    family: u16,
    port: [u8; 2],
    addr: [u8; 4],
    zero: [u8; 8],
}

/// Storage big enough for either address family, in C layout.
#[repr(C)]
union SockaddrBuf {
    v4: core::mem::ManuallyDrop<SockaddrIn>,
    v6: bindings::sockaddr_in6,
    storage: bindings::__kernel_sockaddr_storage,
}

impl SockAddr {
    /// Builds an address from its netlink form: 4 or 16 address bytes.
    pub(crate) fn from_bytes(addr: &[u8], port: u16) -> Result<Self> {
        if let Ok(a) = <[u8; 4]>::try_from(addr) {
            Ok(SockAddr::V4(a, port))
        } else if let Ok(a) = <[u8; 16]>::try_from(addr) {
            Ok(SockAddr::V6(a, port))
        } else {
            Err(EINVAL)
        }
    }

    /// Whether the address is a loopback address (127.0.0.0/8, ::1, or
    /// ::ffff:127.0.0.0/104): one that only this host can use.
    pub(crate) fn is_loopback(&self) -> bool {
        const MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
        match self {
            SockAddr::V4(a, _) => a[0] == 127,
            SockAddr::V6(a, _) => {
                *a == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
                    || (a[..12] == MAPPED && a[12] == 127)
            }
        }
    }

    /// The address bytes (4 or 16) and the port, for netlink replies.
    pub(crate) fn parts(&self) -> (&[u8], u16) {
        match self {
            SockAddr::V4(a, p) => (a, *p),
            SockAddr::V6(a, p) => (a, *p),
        }
    }

    fn family(&self) -> c_int {
        match self {
            SockAddr::V4(..) => bindings::AF_INET as c_int,
            SockAddr::V6(..) => AF_INET6.into(),
        }
    }

    fn to_c(self) -> (SockaddrBuf, c_int) {
        match self {
            SockAddr::V4(addr, port) => (
                SockaddrBuf {
                    v4: core::mem::ManuallyDrop::new(SockaddrIn {
                        family: bindings::AF_INET as u16,
                        port: port.to_be_bytes(),
                        addr,
                        zero: [0; 8],
                    }),
                },
                size_of::<SockaddrIn>() as c_int,
            ),
            SockAddr::V6(addr, port) => {
                let mut v6 = bindings::sockaddr_in6 {
                    sin6_family: AF_INET6,
                    sin6_port: u16::from_ne_bytes(port.to_be_bytes()),
                    ..Default::default()
                };
                v6.sin6_addr.in6_u.u6_addr8 = addr;
                (
                    SockaddrBuf { v6 },
                    size_of::<bindings::sockaddr_in6>() as c_int,
                )
            }
        }
    }

    fn from_c(buf: &SockaddrBuf) -> Option<Self> {
        // SAFETY: every variant starts with the family field, and the buffer
        // was filled by the kernel (or zeroed), so reading it is defined.
        let family = unsafe { buf.v4.family };
        match family {
            f if f == bindings::AF_INET as u16 => {
                // SAFETY: the family says the buffer holds a `sockaddr_in`.
                let v4 = unsafe { &buf.v4 };
                Some(SockAddr::V4(v4.addr, u16::from_be_bytes(v4.port)))
            }
            AF_INET6 => {
                // SAFETY: the family says the buffer holds a `sockaddr_in6`.
                let v6 = unsafe { &buf.v6 };
                // SAFETY: all union variants of `in6_u` are plain bytes.
                let addr = unsafe { v6.sin6_addr.in6_u.u6_addr8 };
                Some(SockAddr::V6(addr, u16::from_be(v6.sin6_port)))
            }
            _ => None,
        }
    }
}

impl SockAddr {
    /// Writes `a.b.c.d:port` or `[x:x:...:x]:port`.
    pub(crate) fn write_to(&self, f: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result {
        match self {
            SockAddr::V4(_, p) => {
                self.write_ip_to(f)?;
                write!(f, ":{}", p)
            }
            SockAddr::V6(_, p) => {
                f.write_str("[")?;
                self.write_ip_to(f)?;
                write!(f, "]:{}", p)
            }
        }
    }

    /// Writes the address alone: `a.b.c.d` or `x:x:...:x`.
    pub(crate) fn write_ip_to(&self, f: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result {
        match self {
            SockAddr::V4(a, _) => write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3]),
            SockAddr::V6(a, _) => {
                for (i, pair) in a.chunks_exact(2).enumerate() {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", u16::from_be_bytes([pair[0], pair[1]]))?;
                }
                Ok(())
            }
        }
    }
}

impl kernel::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        self.write_to(f)
    }
}

/// An address that may be unknown, for log lines and messages
/// (`kernel::fmt::Display`, which `pr_*!` needs).
#[derive(Clone, Copy)]
pub(crate) struct Peer(pub(crate) Option<SockAddr>);

impl kernel::fmt::Display for Peer {
    fn fmt(&self, f: &mut kernel::fmt::Formatter<'_>) -> kernel::fmt::Result {
        match &self.0 {
            Some(a) => kernel::fmt::Display::fmt(a, f),
            None => f.write_str("(unknown address)"),
        }
    }
}

/// A kernel TCP socket.
///
/// # Invariants
///
/// `sock` is a socket created by `sock_create_kern` or `kernel_accept` and
/// owned by this value; it is released on drop. Kernel sockets hold no
/// reference on their namespace: it outlives the socket because the export
/// or device the socket serves does (see [`HomeNet`]). `memalloc` says
/// whether it was configured with `sk_set_memalloc`.
pub(crate) struct Socket {
    sock: NonNull<bindings::socket>,
    memalloc: bool,
}

// SAFETY: socket operations lock the socket internally; concurrent send and
// receive from different threads are supported by TCP. Callers serialise
// their senders (and their receivers) themselves.
unsafe impl Send for Socket {}
// SAFETY: see `Send`; `&Socket` only offers operations that are safe to call
// concurrently with one another (shutdown may race with any of them).
unsafe impl Sync for Socket {}

/// Runs `f` with memory reclaim disabled, so that socket allocations never
/// recurse into the block layer we are serving (the nbd idiom), and may use
/// the reserves. Also for setting up a connection that carries this host's
/// block IO, which reclaim may be waiting for.
pub(crate) fn noreclaim<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: saves and sets PF_MEMALLOC on the current task; restored below.
    let flags = unsafe { ffi::dst_shim_noreclaim_save() };
    let r = f();
    // SAFETY: `flags` came from the matching save on this task.
    unsafe { ffi::dst_shim_noreclaim_restore(flags) };
    r
}

impl Socket {
    fn create(net: HomeNet, family: c_int) -> Result<NonNull<bindings::socket>> {
        let mut sock = core::ptr::null_mut();
        // SAFETY: `net` is live while its export or device exists (see
        // `HomeNet`), which the caller is part of; `sock` is a valid out
        // pointer.
        to_result(unsafe {
            bindings::sock_create_kern(
                net.as_raw(),
                family,
                bindings::sock_type_SOCK_STREAM as c_int,
                0,
                &mut sock,
            )
        })?;
        NonNull::new(sock).ok_or(ENOMEM)
    }

    /// A socket in namespace `net` to connect to `addr` with
    /// [`Socket::connect`] (made first, so that others can shut the connect
    /// down); `memalloc` marks a socket that carries block IO of this host
    /// (it may dip into reserves). The connect, and every send and receive
    /// until changed, waits at most `timeout_ms`.
    pub(crate) fn client(
        net: HomeNet,
        addr: SockAddr,
        memalloc: bool,
        timeout_ms: u32,
    ) -> Result<Self> {
        // A socket for this host's block IO is made like it is used: with
        // reclaim disabled (reconnecting may be what writeback waits for).
        let create = || Self::create(net, addr.family());
        let sock = if memalloc {
            noreclaim(create)
        } else {
            create()
        }?;
        // INVARIANT: `sock` was just created and is owned here.
        let this = Socket { sock, memalloc };
        this.configure();
        this.set_timeouts(timeout_ms, timeout_ms);
        Ok(this)
    }

    /// Connects a socket from [`Socket::client`] to `addr`. A
    /// [`Socket::shutdown`] ends a connect under way; one that comes before
    /// the connect begins does not stop it.
    pub(crate) fn connect(&self, addr: SockAddr) -> Result {
        let (mut buf, len) = addr.to_c();
        // SAFETY: the socket is valid; `buf` holds a sockaddr of `len` bytes.
        to_result(self.op(|| unsafe {
            bindings::kernel_connect(self.sock.as_ptr(), (&raw mut buf).cast(), len, 0)
        }))
    }

    /// Creates a socket listening on `addr` in namespace `net`.
    pub(crate) fn listen(net: HomeNet, addr: SockAddr, backlog: c_int) -> Result<Self> {
        let sock = Self::create(net, addr.family())?;
        // INVARIANT: `sock` was just created and is owned here.
        let this = Socket {
            sock,
            memalloc: false,
        };
        // SAFETY: the socket is valid.
        unsafe { ffi::sock_set_reuseaddr((*this.sock.as_ptr()).sk) };
        let (mut buf, len) = addr.to_c();
        // SAFETY: the socket is valid; `buf` holds a sockaddr of `len` bytes.
        to_result(unsafe {
            bindings::kernel_bind(this.sock.as_ptr(), (&raw mut buf).cast(), len)
        })?;
        // SAFETY: the socket is valid and bound.
        to_result(unsafe { bindings::kernel_listen(this.sock.as_ptr(), backlog) })?;
        Ok(this)
    }

    /// Waits for a connection on a listening socket. Fails once the
    /// listener is shut down.
    ///
    /// A connection from a loopback address is this host's own block IO
    /// (a local node on the same machine, swap on it included), so it is
    /// made a memalloc socket like the local node's: its replies may then be
    /// sent from the reserves when reclaim waits for them. A peer on another
    /// host never gets that (it must not drive allocations from the
    /// reserves).
    pub(crate) fn accept(&self) -> Result<Socket> {
        let mut new = core::ptr::null_mut();
        // SAFETY: the socket is valid and listening; `new` is an out pointer.
        to_result(unsafe { bindings::kernel_accept(self.sock.as_ptr(), &mut new, 0) })?;
        let sock = NonNull::new(new).ok_or(ENOMEM)?;
        // INVARIANT: `kernel_accept` handed us ownership of `sock`.
        let mut this = Socket {
            sock,
            memalloc: false,
        };
        this.memalloc = this.peer().is_some_and(|a| a.is_loopback());
        this.configure();
        Ok(this)
    }

    /// Whether the socket carries this host's own block IO (see
    /// [`Socket::connect`] and [`Socket::accept`]).
    pub(crate) fn memalloc(&self) -> bool {
        self.memalloc
    }

    fn configure(&self) {
        // SAFETY: the socket is valid (type invariant).
        unsafe { ffi::dst_shim_sock_configure(self.sock.as_ptr().cast(), self.memalloc) };
    }

    /// Runs a socket operation: with reclaim disabled on a socket that
    /// serves this host's block IO (reclaim could wait on that very IO), as
    /// it is on a remote peer's behalf: a peer must not drive allocations
    /// from the emergency reserves.
    fn op(&self, f: impl FnOnce() -> c_int) -> c_int {
        if self.memalloc {
            noreclaim(f)
        } else {
            f()
        }
    }

    /// Sets the send and receive timeouts in milliseconds; 0 waits forever.
    /// A timed-out transfer fails with `EAGAIN`.
    pub(crate) fn set_timeouts(&self, send_ms: u32, recv_ms: u32) {
        // SAFETY: the socket is valid (type invariant).
        unsafe { ffi::dst_shim_sock_timeouts(self.sock.as_ptr().cast(), send_ms, recv_ms) };
    }

    /// Whether bytes have arrived that were not read yet (a snapshot).
    pub(crate) fn has_data(&self) -> bool {
        // SAFETY: the socket is valid (type invariant); the check takes no
        // lock and only reads.
        unsafe { ffi::dst_shim_sock_has_data(self.sock.as_ptr().cast()) }
    }

    /// The CPU that handled the last segment this socket received, if any
    /// (a snapshot).
    pub(crate) fn incoming_cpu(&self) -> Option<u32> {
        // SAFETY: the socket is valid (type invariant); a lockless read.
        let cpu = unsafe { ffi::dst_shim_sock_incoming_cpu(self.sock.as_ptr().cast()) };
        u32::try_from(cpu).ok()
    }

    /// How many bytes a send can queue now without waiting for socket
    /// memory (a snapshot: for the only sender, a lower bound).
    pub(crate) fn send_room(&self) -> usize {
        // SAFETY: the socket is valid (type invariant); the check takes no
        // lock and only reads.
        let room = unsafe { ffi::dst_shim_sock_send_room(self.sock.as_ptr().cast()) };
        usize::try_from(room).unwrap_or(0)
    }

    /// The peer's address, if it is IPv4 or IPv6.
    pub(crate) fn peer(&self) -> Option<SockAddr> {
        // SAFETY: an all-zero sockaddr buffer is valid.
        let mut buf: SockaddrBuf = unsafe { core::mem::zeroed() };
        // SAFETY: the socket is valid; `buf` is large enough for any address.
        let r = unsafe { bindings::kernel_getpeername(self.sock.as_ptr(), (&raw mut buf).cast()) };
        if r < 0 {
            return None;
        }
        SockAddr::from_c(&buf)
    }

    /// Shuts the connection down in both directions: blocked senders and
    /// receivers return with an error. Safe to call more than once.
    pub(crate) fn shutdown(&self) {
        // SAFETY: the socket is valid.
        unsafe {
            bindings::kernel_sock_shutdown(
                self.sock.as_ptr(),
                bindings::sock_shutdown_cmd_SHUT_RDWR,
            )
        };
    }

    /// Sends all of `buf`; `more` hints that more data follows at once.
    pub(crate) fn send_all(&self, buf: &[u8], more: bool) -> Result {
        let mut done = 0;
        while done < buf.len() {
            let rest = &buf[done..];
            let mut vec = bindings::kvec {
                iov_base: rest.as_ptr().cast_mut().cast(),
                iov_len: rest.len(),
            };
            let mut msg = bindings::msghdr {
                msg_flags: bindings::MSG_NOSIGNAL | if more { bindings::MSG_MORE } else { 0 },
                ..Default::default()
            };
            // SAFETY: the socket is valid; `vec` describes `rest`, which the
            // kernel only reads.
            let n = self.op(|| unsafe {
                bindings::kernel_sendmsg(self.sock.as_ptr(), &mut msg, &mut vec, 1, rest.len())
            });
            done += Self::progress(n)?;
        }
        Ok(())
    }

    /// Receives exactly `buf.len()` bytes by `deadline`, however the peer
    /// trickles them: each wait is cut to the time left. Past the deadline:
    /// `EAGAIN`. Leaves the send and receive timeouts at the time that was
    /// left; the caller sets them afterwards.
    pub(crate) fn recv_exact_by(&self, buf: &mut [u8], deadline: Instant<Monotonic>) -> Result {
        let mut done = 0;
        while done < buf.len() {
            let left = (deadline - Instant::<Monotonic>::now()).as_millis();
            if left <= 0 {
                return Err(EAGAIN);
            }
            // Sends are bounded by the deadline too.
            let ms = u32::try_from(left).unwrap_or(u32::MAX);
            self.set_timeouts(ms, ms);
            let rest = buf.get_mut(done..).ok_or(EINVAL)?;
            let n = rest.len().min(1 << 16);
            let part = rest.get_mut(..n).ok_or(EINVAL)?;
            // One receive: it returns what arrived when its wait ends.
            done += self.recv_some(part)?;
        }
        Ok(())
    }

    /// One receive of at most `buf.len()` bytes; the bytes received.
    fn recv_some(&self, buf: &mut [u8]) -> Result<usize> {
        let mut vec = bindings::kvec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg = bindings::msghdr::default();
        let flags = (bindings::MSG_NOSIGNAL | bindings::MSG_WAITALL) as c_int;
        // SAFETY: the socket is valid; `vec` describes `buf`, which is
        // exclusively borrowed for the call.
        let n = self.op(|| unsafe {
            bindings::kernel_recvmsg(self.sock.as_ptr(), &mut msg, &mut vec, 1, buf.len(), flags)
        });
        Self::progress(n)
    }

    /// Receives exactly `buf.len()` bytes.
    pub(crate) fn recv_exact(&self, buf: &mut [u8]) -> Result {
        let mut done = 0;
        while done < buf.len() {
            let rest = &mut buf[done..];
            let mut vec = bindings::kvec {
                iov_base: rest.as_mut_ptr().cast(),
                iov_len: rest.len(),
            };
            let mut msg = bindings::msghdr::default();
            let flags = (bindings::MSG_NOSIGNAL | bindings::MSG_WAITALL) as c_int;
            // SAFETY: the socket is valid; `vec` describes `rest`, which is
            // exclusively borrowed for the call.
            let n = self.op(|| unsafe {
                bindings::kernel_recvmsg(
                    self.sock.as_ptr(),
                    &mut msg,
                    &mut vec,
                    1,
                    rest.len(),
                    flags,
                )
            });
            done += Self::progress(n)?;
        }
        Ok(())
    }

    /// Sends the data of the pages `vecs` describes, with one iterator over
    /// all of them; `more` hints that more data follows. With `splice` the
    /// socket takes page references instead of copying (`MSG_SPLICE_PAGES`).
    ///
    /// # Safety
    ///
    /// The pages must stay valid for the call; with `splice` they must be
    /// spliceable (`sendpage_ok`) and must not change until the socket is
    /// done with them.
    pub(crate) unsafe fn send_pages(
        &self,
        vecs: &[bindings::bio_vec],
        more: bool,
        splice: bool,
    ) -> Result {
        let mut flags = bindings::MSG_NOSIGNAL;
        if more {
            flags |= bindings::MSG_MORE;
        }
        if splice {
            flags |= bindings::MSG_SPLICE_PAGES;
        }
        // SAFETY: guaranteed by the caller.
        unsafe { self.transfer(vecs, bindings::ITER_SOURCE, flags) }
    }

    /// Receives exactly as many bytes as the pages `vecs` describes hold,
    /// straight into them.
    ///
    /// # Safety
    ///
    /// The pages must stay valid, and nobody else may use them, for the
    /// call.
    pub(crate) unsafe fn recv_pages(&self, vecs: &[bindings::bio_vec]) -> Result {
        let flags = bindings::MSG_NOSIGNAL | bindings::MSG_WAITALL;
        // SAFETY: guaranteed by the caller.
        unsafe { self.transfer(vecs, bindings::ITER_DEST, flags) }
    }

    /// Moves all bytes of `vecs` in direction `dir` (`ITER_SOURCE`: send),
    /// looping until done. A closed connection is `ECONNRESET`.
    ///
    /// # Safety
    ///
    /// As for [`Socket::send_pages`] and [`Socket::recv_pages`].
    unsafe fn transfer(&self, vecs: &[bindings::bio_vec], dir: c_uint, flags: c_uint) -> Result {
        let len: usize = vecs.iter().map(|v| v.bv_len as usize).sum();
        let mut msg = bindings::msghdr {
            msg_flags: flags,
            ..Default::default()
        };
        // SAFETY: `msg.msg_iter` is writable; `vecs` describes `len` bytes
        // of valid pages and outlives every use of the iterator (the calls
        // below, within this function).
        unsafe {
            bindings::iov_iter_bvec(
                &mut msg.msg_iter,
                dir,
                vecs.as_ptr(),
                vecs.len() as c_ulong,
                len,
            )
        };
        let mut done = 0;
        while done < len {
            // SAFETY: the socket is valid; `msg` carries the iterator, which
            // each call advances by the bytes it moved.
            let n = self.op(|| unsafe {
                if dir == bindings::ITER_SOURCE {
                    bindings::sock_sendmsg(self.sock.as_ptr(), &mut msg)
                } else {
                    bindings::sock_recvmsg(self.sock.as_ptr(), &mut msg, flags as c_int)
                }
            });
            done += Self::progress(n)?;
        }
        Ok(())
    }

    /// Turns a send/receive return value into bytes moved or an error.
    fn progress(n: c_int) -> Result<usize> {
        match n {
            n if n > 0 => Ok(n as usize),
            // The peer closed the connection.
            0 => Err(code::econnreset()),
            n => Err(Error::from_errno(n)),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own the socket, configured with
        // `sk_set_memalloc` iff `memalloc`; nothing uses it after this point.
        unsafe { ffi::dst_shim_sock_release(self.sock.as_ptr().cast(), self.memalloc) };
    }
}
