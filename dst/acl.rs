// SPDX-License-Identifier: GPL-2.0

//! The allow-list of an export: which client addresses may connect, and
//! whether they may write.
//!
//! An empty list allows every client with the export's own permissions. A
//! non-empty list allows only clients whose address lies in one of its
//! prefixes; the longest matching prefix decides read-only or read-write.
//! The export applies the result to the grant of each connection, and
//! [`crate::proto::validate_request`] enforces that grant on every request.

use kernel::prelude::*;

use crate::socket::SockAddr;

/// Largest number of entries (`DST_NL_ALLOW_MAX` in the shim).
pub(crate) const MAX_ENTRIES: usize = 32;

/// One allowed prefix.
///
/// # Invariants
///
/// `len` is 4 or 16 and `prefix_len` at most `len * 8`.
#[derive(Clone, Copy)]
pub(crate) struct Entry {
    addr: [u8; 16],
    len: u8,
    prefix_len: u8,
    read_only: bool,
}

impl Entry {
    /// An entry for `addr` (4 or 16 bytes) / `prefix_len`; `None` if the
    /// lengths are inconsistent.
    pub(crate) fn new(addr: &[u8], prefix_len: u8, read_only: bool) -> Option<Self> {
        let len = addr.len();
        if (len != 4 && len != 16) || usize::from(prefix_len) > len * 8 {
            return None;
        }
        let mut a = [0u8; 16];
        a.get_mut(..len)?.copy_from_slice(addr);
        // INVARIANT: checked above.
        Some(Entry {
            addr: a,
            len: len as u8,
            prefix_len,
            read_only,
        })
    }

    /// Whether `addr` lies in this prefix (same family, equal leading bits).
    fn contains(&self, addr: &[u8]) -> bool {
        if addr.len() != usize::from(self.len) {
            return false;
        }
        let bits = usize::from(self.prefix_len);
        let (whole, rest) = (bits / 8, bits % 8);
        let a = self.addr.iter().zip(addr);
        for (i, (x, y)) in a.enumerate() {
            if i < whole {
                if x != y {
                    return false;
                }
            } else {
                let mask = if i == whole && rest > 0 {
                    0xffu8 << (8 - rest)
                } else {
                    0
                };
                return x & mask == y & mask;
            }
        }
        true
    }
}

/// What the allow-list says about a client.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Verdict {
    /// Not on the list: refuse the connection.
    Refused,
    /// Allowed to read only.
    ReadOnly,
    /// Allowed with the export's permissions.
    ReadWrite,
}

/// An export's allow-list.
pub(crate) struct AllowList {
    entries: KVec<Entry>,
}

impl AllowList {
    /// A list of `entries` (at most [`MAX_ENTRIES`]).
    pub(crate) fn new(entries: KVec<Entry>) -> Self {
        AllowList { entries }
    }

    /// Whether the list is empty (every client allowed).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Copies the entries into `out` for a netlink reply; returns how many.
    pub(crate) fn fill(&self, out: &mut [crate::netlink::NlAllow]) -> usize {
        let mut n = 0;
        for (e, o) in self.entries.iter().zip(out.iter_mut()) {
            *o = crate::netlink::NlAllow {
                addr_len: e.len,
                prefix_len: e.prefix_len,
                read_only: e.read_only,
                addr: e.addr,
            };
            n += 1;
        }
        n
    }

    /// Writes the list, one `ADDR/LEN rw|ro` entry per line; `all rw` when
    /// empty.
    pub(crate) fn write_to(&self, out: &mut dyn kernel::fmt::Write) -> kernel::fmt::Result {
        if self.entries.is_empty() {
            return out.write_str("all rw");
        }
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                out.write_str("\n")?;
            }
            let len = usize::from(e.len);
            let addr = SockAddr::from_bytes(e.addr.get(..len).unwrap_or(&[]), 0);
            match addr {
                Ok(a) => a.write_ip_to(out)?,
                Err(_) => out.write_str("?")?,
            }
            write!(
                out,
                "/{} {}",
                e.prefix_len,
                if e.read_only { "ro" } else { "rw" }
            )?;
        }
        Ok(())
    }

    /// The verdict for a client at `peer` (`None`: address unknown, which
    /// a non-empty list refuses).
    pub(crate) fn check(&self, peer: Option<&SockAddr>) -> Verdict {
        if self.entries.is_empty() {
            return Verdict::ReadWrite;
        }
        let Some(peer) = peer else {
            return Verdict::Refused;
        };
        let (addr, _) = peer.parts();
        let best = self
            .entries
            .iter()
            .filter(|e| e.contains(addr))
            .max_by_key(|e| e.prefix_len);
        match best {
            None => Verdict::Refused,
            Some(e) if e.read_only => Verdict::ReadOnly,
            Some(_) => Verdict::ReadWrite,
        }
    }
}
