// SPDX-License-Identifier: GPL-2.0

//! The module's errors: the errno values it uses that the kernel crate's
//! `kernel::error::code` does not name, and [`Refusal`], a configuration
//! request refused with a message for the user.
//!
//! C header: [`include/uapi/asm-generic/errno.h`](srctree/include/uapi/asm-generic/errno.h)

use kernel::{bindings, ffi::c_int, fmt, prelude::*};

/// Errors `kernel::error::code` does not name.
pub(crate) mod code {
    use super::*;

    /// An error from its positive `bindings::E*` number.
    fn errno(code: u32) -> Error {
        Error::from_errno(-(code as c_int))
    }

    /// The peer closed the connection (a zero-length read).
    pub(crate) fn econnreset() -> Error {
        errno(bindings::ECONNRESET)
    }

    /// The peer broke the protocol, e.g. in the handshake.
    pub(crate) fn eproto() -> Error {
        errno(bindings::EPROTO)
    }

    /// A message failed its integrity check.
    pub(crate) fn ebadmsg() -> Error {
        errno(bindings::EBADMSG)
    }

    /// The export does not support the operation (also the block layer's
    /// `BLK_STS_NOTSUPP`).
    pub(crate) fn eopnotsupp() -> Error {
        errno(bindings::EOPNOTSUPP)
    }

    /// The export's device is full.
    pub(crate) fn enospc() -> Error {
        errno(bindings::ENOSPC)
    }

    /// The export refused the request: a target error, not worth retrying.
    pub(crate) fn eremoteio() -> Error {
        errno(bindings::EREMOTEIO)
    }

    /// An export's address is taken.
    pub(crate) fn eaddrinuse() -> Error {
        errno(bindings::EADDRINUSE)
    }

    /// An export's address is not one of this host's.
    pub(crate) fn eaddrnotavail() -> Error {
        errno(bindings::EADDRNOTAVAIL)
    }

    /// A key's lifetime ended.
    pub(crate) fn ekeyexpired() -> Error {
        errno(bindings::EKEYEXPIRED)
    }

    /// An export's address family is not supported.
    pub(crate) fn eafnosupport() -> Error {
        errno(bindings::EAFNOSUPPORT)
    }
}

/// A refused configuration request: the error and a message for the user,
/// sent back in the extended ACK.
pub(crate) struct Refusal {
    /// The errno returned to userspace.
    pub(crate) err: Error,
    /// Why, in words (at most 79 bytes, the extended ACK's buffer); empty
    /// if the errno says it all.
    pub(crate) msg: &'static CStr,
    /// Why, formatted for this refusal (naming who or what); used instead
    /// of `msg` when set.
    pub(crate) detail: Option<Detail>,
}

impl Refusal {
    /// A refusal with a message.
    pub(crate) fn new(err: Error, msg: &'static CStr) -> Self {
        Refusal {
            err,
            msg,
            detail: None,
        }
    }

    /// A refusal with a message formatted from `args`, cut to what the
    /// extended ACK holds; `msg` if it cannot be formatted.
    pub(crate) fn formatted(err: Error, msg: &'static CStr, args: fmt::Arguments<'_>) -> Self {
        let mut detail = Detail {
            buf: [0; DETAIL_LEN],
            len: 0,
        };
        let _ = fmt::Write::write_fmt(&mut detail, args);
        Refusal {
            err,
            msg,
            detail: (detail.len > 0).then_some(detail),
        }
    }
}

/// Bytes of a formatted message: the extended ACK's buffer
/// (`NETLINK_MAX_FMTMSG_LEN`), its NUL included.
const DETAIL_LEN: usize = 80;

/// A formatted refusal message, NUL-terminated; what does not fit is cut.
pub(crate) struct Detail {
    buf: [u8; DETAIL_LEN],
    len: usize,
}

impl Detail {
    /// The message, NUL-terminated.
    pub(crate) fn as_bytes_with_nul(&self) -> &[u8] {
        self.buf.get(..=self.len).unwrap_or(&[0])
    }
}

impl fmt::Write for Detail {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &c in s.as_bytes() {
            // The last byte stays the NUL.
            if self.len + 1 >= DETAIL_LEN {
                break;
            }
            if let Some(d) = self.buf.get_mut(self.len) {
                *d = if c == 0 { b'?' } else { c };
                self.len += 1;
            }
        }
        Ok(())
    }
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal::new(err, c"")
    }
}

impl From<kernel::alloc::AllocError> for Refusal {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Refusal::from(ENOMEM)
    }
}
