// SPDX-License-Identifier: GPL-2.0

//! The module's errors: the errno values it uses that the kernel crate's
//! `kernel::error::code` does not name, and [`Refusal`], a configuration
//! request refused with a message for the user.
//!
//! C header: [`include/uapi/asm-generic/errno.h`](srctree/include/uapi/asm-generic/errno.h)

use kernel::{bindings, ffi::c_int, prelude::*};

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

    /// An export's address family is not supported.
    pub(crate) fn ekeyexpired() -> Error {
        errno(bindings::EKEYEXPIRED)
    }

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
}

impl Refusal {
    /// A refusal with a message.
    pub(crate) fn new(err: Error, msg: &'static CStr) -> Self {
        Refusal { err, msg }
    }
}

impl From<Error> for Refusal {
    fn from(err: Error) -> Self {
        Refusal { err, msg: c"" }
    }
}

impl From<kernel::alloc::AllocError> for Refusal {
    fn from(_: kernel::alloc::AllocError) -> Self {
        Refusal::from(ENOMEM)
    }
}
