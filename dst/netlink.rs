// SPDX-License-Identifier: GPL-2.0

//! The generic netlink family `dst`: registration and command handlers.
//!
//! The family, its strict attribute policy and the message marshalling live in
//! the C shim (`shim.c`), because `struct genl_family`, the policies and the
//! `genlmsg_*`/`nla_*` helpers are C tables and inline functions that bindgen
//! does not expose. The shim parses attributes into [`NlRequest`] and calls
//! the `dst_nl_*` functions here, so the decisions are made in Rust and the
//! shim only converts. Refusals carry a message for the extended ACK.
//!
//! ABI: `include/uapi/linux/dst.h`.

use kernel::{
    error::to_result,
    ffi::{c_char, c_int, c_ulong},
    prelude::*,
    str::CString,
    sync::{atomic::Relaxed, Arc},
};

use crate::{
    acl::{self, AllowList},
    crypto::Key,
    error::Refusal,
    export::{Export, ExportConfig},
    local_node::{
        Device, DeviceConfig, SettingsUpdate, LOSS_TIMEOUT_INFINITE, LOSS_TIMEOUT_MAX_MS,
    },
    netns::{HomeNet, Net},
    proto::{self, Name, Protection, Security},
    registry::{self, Registry},
    rekey,
    security::{self, ClientKeys, SecurityConfig},
    socket::SockAddr,
    thread_pool,
};

/// Status filled in by [`dst_nl_status`] for the `DST_CMD_STATUS` reply.
///
/// Mirrors `struct dst_nl_status` in `shim.h`.
#[repr(C)]
pub(crate) struct DstNlStatus {
    /// NUL-terminated module version with static lifetime.
    version: *const c_char,
    /// Wire protocol version.
    proto_version: u32,
    /// Workers of the crypto pool.
    crypto_threads: u32,
    /// A connection's key is replaced after this many MiB...
    rekey_mib: u32,
    /// ... or this many seconds.
    rekey_seconds: u32,
}

/// A parsed configuration request. Mirrors `struct dst_nl_req` in `shim.h`.
#[repr(C)]
pub(crate) struct NlRequest {
    net: *mut kernel::bindings::net,
    extack: *mut kernel::bindings::netlink_ext_ack,
    path: *const c_char,
    size: u64,
    addr_len: u32,
    addr: [u8; 16],
    port: u16,
    read_only: bool,
    /// `DST_CMD_DEV_DEL`: delete even if the device is open.
    force: bool,
    /// `DST_CMD_EXPORT_ADD`: any number of writers.
    shared: bool,
    has_index: bool,
    index: u32,
    max_io_pages: u32,
    queue_depth: u32,
    /// Bit `i` set: `settings[i]` was given (order: see `Request::settings`).
    settings_mask: u32,
    settings: [u32; SETTINGS],
    queues: u32,
    client_id: u64,
    has_protection: bool,
    protection: u32,
    alg: *const c_char,
    name: *const c_char,
    client_name: *const c_char,
    key_len: u32,
    key: [u8; KEY_MAX],
    has_crypto_threads: bool,
    crypto_threads: u32,
    /// 0 if absent (the policy allows 1 and more).
    rekey_mib: u32,
    /// 0 if absent (the policy allows 1 and more).
    rekey_seconds: u32,
    allow_len: u32,
    allow: [NlAllow; acl::MAX_ENTRIES],
    clients_len: u32,
    clients: [NlClient; CLIENTS_MAX],
}

/// Largest pre-shared key (`DST_NL_KEY_MAX`).
const KEY_MAX: usize = 64;

/// Most clients with keys of their own per export (`DST_NL_CLIENTS_MAX`).
const CLIENTS_MAX: usize = 16;

/// One client with a key of its own. Mirrors `struct dst_nl_client`.
#[repr(C)]
pub(crate) struct NlClient {
    name: [u8; proto::NAME_LEN],
    key_len: u32,
    key: [u8; KEY_MAX],
    read_only: bool,
}

/// One allow-list entry. Mirrors `struct dst_nl_allow` in `shim.h`.
#[repr(C)]
pub(crate) struct NlAllow {
    pub(crate) addr_len: u8,
    pub(crate) prefix_len: u8,
    pub(crate) read_only: bool,
    pub(crate) addr: [u8; 16],
}

/// A `DST_CMD_EVENT` notification. Mirrors `struct dst_nl_event` in `shim.h`.
#[repr(C)]
struct NlEvent {
    kind: u32,
    index: u32,
    event: u32,
    peer_len: u32,
    peer: [u8; 16],
    peer_port: u16,
    message: *const c_char,
}

/// Number of per-device settings carried as `DST_A_*_MS`/`MAX_RESENDS`.
const SETTINGS: usize = 6;

/// One export or device for `DST_CMD_LIST`. Mirrors `struct dst_nl_entry`.
#[repr(C)]
pub(crate) struct NlEntry {
    kind: u32,
    index: u32,
    state: u32,
    sessions: u32,
    queue_depth: u32,
    addr_len: u32,
    addr: [u8; 16],
    port: u16,
    read_only: bool,
    size: u64,
    reconnects: u64,
    resends: u64,
    timeouts: u64,
    io_errors: u64,
    bytes_read: u64,
    bytes_written: u64,
    in_flight: u32,
    settings: [u32; SETTINGS],
    path: [u8; 256],
    queues: u32,
    protection: u32,
    alg: [u8; proto::ALG_LEN],
    integrity_errors: u64,
    refused: u64,
    client_id: u64,
    allow_len: u32,
    allow: [NlAllow; acl::MAX_ENTRIES],
    name: [u8; proto::NAME_LEN],
    client_name: [u8; proto::NAME_LEN],
    shared: bool,
    writer_name: [u8; proto::NAME_LEN],
    writer_addr_len: u32,
    writer_addr: [u8; 16],
    writer_port: u16,
}

// Values of `enum dst_kind` in the uapi header.
const KIND_EXPORT: u32 = 1;
const KIND_DEVICE: u32 = 2;
/// `DST_STATE_CONNECTED`, which an export reports while it listens.
const STATE_LISTENING: u32 = 1;

mod ffi {
    use kernel::{bindings, ffi::c_char, ffi::c_int};

    extern "C" {
        pub(super) fn dst_genl_register() -> c_int;
        pub(super) fn dst_genl_unregister();
        pub(super) fn dst_shim_extack(extack: *mut bindings::netlink_ext_ack, msg: *const c_char);

        pub(super) fn dst_shim_event(net: *mut bindings::net, ev: *const super::NlEvent);
        pub(super) fn dst_shim_nodename(buf: *mut c_char, len: usize);
    }
}

/// Values of `enum dst_event` in the uapi header.
pub(crate) mod event {
    /// Created and connected.
    pub(crate) const CONNECTED: u32 = 1;
    /// Connection lost; reconnecting, IO waits.
    pub(crate) const LOST: u32 = 2;
    /// Connection back; waiting IO resent.
    pub(crate) const RECONNECTED: u32 = 3;
    /// Lost past the loss timeout: IO fails.
    pub(crate) const FAILED: u32 = 4;
    /// Deleted.
    pub(crate) const DELETED: u32 = 5;
    /// Export: a client connected.
    pub(crate) const SESSION_OPENED: u32 = 6;
    /// Export: a client's session ended.
    pub(crate) const SESSION_CLOSED: u32 = 7;
    /// Export: a client was refused.
    pub(crate) const SESSION_REFUSED: u32 = 8;
}

/// Multicasts `ev` to the "events" group of namespace `net`. Best effort;
/// may run on the IO path.
fn send_event(net: HomeNet, ev: &NlEvent) {
    // SAFETY: `net` is live (see `HomeNet`) and `ev` a valid event
    // whose message, if any, is NUL-terminated and outlives the call; the
    // shim allocates with GFP_NOIO and drops the event if it cannot.
    unsafe { ffi::dst_shim_event(net.as_raw(), ev) };
}

/// Multicasts `DST_CMD_EVENT` (`event::*`) about /dev/dst<index>.
pub(crate) fn notify(net: HomeNet, index: u32, event: u32) {
    send_event(
        net,
        &NlEvent {
            kind: KIND_DEVICE,
            index,
            event,
            peer_len: 0,
            peer: [0; 16],
            peer_port: 0,
            message: core::ptr::null(),
        },
    );
}

/// Multicasts an export event (`event::SESSION_*`) about export `index` and
/// its client `peer`, with `why` for refusals.
pub(crate) fn notify_export(
    net: HomeNet,
    index: u32,
    event: u32,
    peer: Option<SockAddr>,
    why: Option<&CStr>,
) {
    let mut ev = NlEvent {
        kind: KIND_EXPORT,
        index,
        event,
        peer_len: 0,
        peer: [0; 16],
        peer_port: 0,
        message: why.map_or(core::ptr::null(), |m| m.as_char_ptr()),
    };
    if let Some(peer) = peer {
        let (bytes, port) = peer.parts();
        if let Some(dst) = ev.peer.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
            ev.peer_len = bytes.len() as u32;
            ev.peer_port = port;
        }
    }
    send_event(net, &ev);
}

/// The registered `dst` generic netlink family.
///
/// # Invariants
///
/// The family is registered for as long as this value lives; it is the only
/// value of its type (the module state holds it).
pub(crate) struct Family(());

impl Family {
    /// Registers the family; commands may arrive as soon as this returns.
    pub(crate) fn register() -> Result<Self> {
        // SAFETY: `dst_genl_register` has no preconditions; the family is a
        // static object of the shim, registered at most once because `Family`
        // is only created here, from module init.
        to_result(unsafe { ffi::dst_genl_register() })?;
        // INVARIANT: registration succeeded.
        Ok(Family(()))
    }
}

impl Drop for Family {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the family is registered;
        // `genl_unregister_family` waits for running handlers to finish.
        unsafe { ffi::dst_genl_unregister() };
    }
}

/// Fills the reply of `DST_CMD_STATUS`. Called by the shim's doit handler.
///
/// # Safety
///
/// `out` must be valid for writes of a [`DstNlStatus`].
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_status(out: *mut DstNlStatus) {
    let (bytes, seconds) = rekey::limits();
    let status = DstNlStatus {
        version: crate::VERSION.as_char_ptr(),
        proto_version: proto::VERSION,
        crypto_threads: thread_pool::workers(),
        rekey_mib: u32::try_from(bytes >> 20).unwrap_or(u32::MAX),
        rekey_seconds: seconds,
    };
    // SAFETY: the caller guarantees `out` is valid for writes.
    unsafe { out.write(status) };
}

/// A request taken over from the shim: the namespace reference is owned,
/// and held until the request has been handled (what it creates belongs to
/// the namespace, see [`HomeNet`]).
struct Request<'a> {
    req: &'a NlRequest,
    net: Net,
}

impl<'a> Request<'a> {
    /// # Safety
    ///
    /// `req` must be valid for the call, filled by the shim's parser, which
    /// took one reference on `req.net` for us.
    unsafe fn new(req: *const NlRequest) -> Option<Self> {
        // SAFETY: guaranteed by the caller.
        let req = unsafe { req.as_ref() }?;
        // SAFETY: the shim took a reference on `net` for us.
        let net = unsafe { Net::from_raw(req.net) }?;
        Some(Request { req, net })
    }

    /// Reports a refusal: sets the extended ACK message, returns the errno.
    fn refuse(&self, r: Refusal) -> c_int {
        if let Some(d) = &r.detail {
            // SAFETY: `extack` is the live request's ACK (or NULL, which the
            // macro tolerates); the shim copies the NUL-terminated message.
            unsafe { ffi::dst_shim_extack(self.req.extack, d.as_bytes_with_nul().as_ptr().cast()) };
        } else if !r.msg.is_empty() {
            // SAFETY: `extack` is the live request's ACK (or NULL, which the
            // macro tolerates); `msg` is static, as the ACK keeps the pointer.
            unsafe { ffi::dst_shim_extack(self.req.extack, r.msg.as_char_ptr()) };
        }
        r.err.to_errno()
    }

    fn addr(&self) -> Result<SockAddr, Refusal> {
        let len = self.req.addr_len as usize;
        let bytes = self.req.addr.get(..len).unwrap_or(&[]);
        SockAddr::from_bytes(bytes, self.req.port).map_err(|e| {
            Refusal::new(
                e,
                c"DST_A_ADDR must be an IPv4 (4 bytes) or IPv6 (16 bytes) address",
            )
        })
    }

    fn path(&self) -> Result<CString, Refusal> {
        if self.req.path.is_null() {
            return Err(Refusal::new(EINVAL, c"DST_A_PATH is required"));
        }
        // SAFETY: the policy (NLA_NUL_STRING) guarantees a NUL-terminated
        // string that lives as long as the request.
        let path = unsafe { CStr::from_char_ptr(self.req.path) };
        Ok(CString::try_from_fmt(fmt!("{}", path))?)
    }

    /// The identity in attribute `attr` (`DST_A_NAME` or
    /// `DST_A_CLIENT_NAME`), if given.
    fn name(&self, attr: *const c_char) -> Result<Option<Name>, Refusal> {
        if attr.is_null() {
            return Ok(None);
        }
        // SAFETY: the policy (NLA_NUL_STRING) guarantees a NUL-terminated
        // string that lives as long as the request.
        let name = unsafe { CStr::from_char_ptr(attr) }.to_bytes();
        match Name::new(name) {
            Some(n) if !n.is_empty() => Ok(Some(n)),
            _ => Err(Refusal::new(
                EINVAL,
                c"a name must be 1 to 63 printable ASCII characters, no spaces",
            )),
        }
    }

    /// The settings the request carries, in the shim's fixed order:
    /// request timeout, max resends, reconnect delay, ping interval, ping
    /// timeout, loss timeout.
    fn settings(&self) -> Result<SettingsUpdate, Refusal> {
        let v = |i: usize| (self.req.settings_mask & (1 << i) != 0).then(|| self.req.settings[i]);
        let loss_timeout_ms = v(5);
        if loss_timeout_ms.is_some_and(|ms| ms > LOSS_TIMEOUT_MAX_MS && ms != LOSS_TIMEOUT_INFINITE)
        {
            return Err(Refusal::new(
                EINVAL,
                c"the loss timeout is at most a day (86400000 ms), or infinite (4294967295)",
            ));
        }
        Ok(SettingsUpdate {
            req_timeout_ms: v(0),
            max_resends: v(1),
            reconnect_delay_ms: v(2),
            ping_interval_ms: v(3),
            ping_timeout_ms: v(4),
            loss_timeout_ms,
        })
    }

    /// The export's clients with keys of their own.
    fn clients(&self) -> Result<ClientKeys, Refusal> {
        let n = (self.req.clients_len as usize).min(CLIENTS_MAX);
        let mut clients = ClientKeys::with_capacity(n)?;
        for c in self.req.clients.iter().take(n) {
            let name = c.name.split(|&b| b == 0).next().unwrap_or(&[]);
            let name = Name::new(name)
                .filter(|n| !n.is_empty())
                .ok_or(Refusal::new(
                    EINVAL,
                    c"a client's name must be 1 to 63 printable ASCII characters",
                ))?;
            let key = Key::new(c.key.get(..c.key_len as usize).unwrap_or(&[]))?;
            clients.add(name, key, c.read_only).map_err(|e| match e {
                EEXIST => Refusal::new(e, c"two clients have the same name"),
                e => Refusal::from(e),
            })?;
        }
        Ok(clients)
    }

    /// The protection settings and key of an export or device; an export
    /// whose clients have keys of their own (`client_keys`) needs none.
    fn security(&self, client_keys: bool) -> Result<SecurityConfig, Refusal> {
        let req = self.req;
        let protection = if req.has_protection {
            u8::try_from(req.protection)
                .ok()
                .and_then(Protection::from_u8)
                .ok_or(Refusal::new(EINVAL, c"unknown protection mode"))?
        } else {
            Protection::None
        };
        let key = match req.key.get(..req.key_len as usize) {
            Some([]) | None => None,
            Some(k) => Some(Key::new(k)?),
        };
        if protection.needs_key() && key.is_none() && !client_keys {
            return Err(Refusal::new(
                EINVAL,
                c"protection hmac and aead need a pre-shared key (DST_A_KEY)",
            ));
        }
        let alg = if req.alg.is_null() {
            protection.default_alg().as_bytes()
        } else if !protection.has_alg() {
            return Err(Refusal::new(
                EINVAL,
                c"an algorithm (DST_A_ALG) is only used with protection hmac or aead",
            ));
        } else {
            // SAFETY: the policy (NLA_NUL_STRING) guarantees a NUL-terminated
            // string that lives as long as the request.
            unsafe { CStr::from_char_ptr(req.alg) }.to_bytes()
        };
        let alg = Name::new(alg).ok_or(Refusal::new(
            EINVAL,
            c"the algorithm name must be printable ASCII without spaces",
        ))?;
        let security = Security {
            protection,
            auth: key.is_some() || client_keys,
            alg,
        };
        security::check_alg(&security).map_err(|e| match e {
            EPERM => Refusal::new(
                EINVAL,
                c"algorithm not allowed: see dstcfg --help for the list",
            ),
            e => Refusal::new(e, c"the kernel has no such crypto algorithm"),
        })?;
        Ok(SecurityConfig { security, key })
    }

    /// The export's allow-list.
    fn allow_list(&self) -> Result<AllowList, Refusal> {
        let n = (self.req.allow_len as usize).min(acl::MAX_ENTRIES);
        let mut entries = KVec::with_capacity(n, GFP_KERNEL)?;
        for a in self.req.allow.iter().take(n) {
            let addr = a.addr.get(..usize::from(a.addr_len)).unwrap_or(&[]);
            let e = acl::Entry::new(addr, a.prefix_len, a.read_only).ok_or(Refusal::new(
                EINVAL,
                c"allow-list entry: the address must be 4 or 16 bytes and the prefix fit it",
            ))?;
            entries.push(e, GFP_KERNEL)?;
        }
        Ok(AllowList::new(entries))
    }

    /// The namespace the request was sent from, which it acts in.
    fn home(&self) -> HomeNet {
        self.net.home()
    }
}

/// The default identity: the caller's host name (`dst` if it has none),
/// followed by `:` and `suffix` if given, the host name shortened to fit;
/// characters a name may not hold become `_`.
fn default_name(suffix: Option<&[u8]>) -> Name {
    let mut buf = [0u8; 65];
    // SAFETY: `buf` is writable for its length.
    unsafe { ffi::dst_shim_nodename(buf.as_mut_ptr().cast(), buf.len()) };
    let host = match buf.iter().position(|&c| c == 0) {
        Some(n) if n > 0 => buf.get(..n).unwrap_or(b"dst"),
        _ => b"dst",
    };
    let (colon, suffix): (&[u8], &[u8]) = match suffix {
        Some(s) if !s.is_empty() => (b":", s),
        _ => (b"", b""),
    };
    let mut name = [0u8; proto::NAME_LEN - 1];
    let room = name.len().saturating_sub(colon.len() + suffix.len());
    let mut len = 0;
    let chars = Iterator::chain(Iterator::chain(host.iter().take(room), colon), suffix);
    for (d, &c) in name.iter_mut().zip(chars) {
        *d = if c.is_ascii_graphic() { c } else { b'_' };
        len += 1;
    }
    Name::new(name.get(..len).unwrap_or(b"dst")).unwrap_or(Name::EMPTY)
}

/// Runs `f` on the request, under the registry lock, and converts its
/// result for the shim.
fn handle(
    r: Option<Request<'_>>,
    f: impl FnOnce(&mut Request<'_>, &mut Registry) -> Result<(), Refusal>,
) -> c_int {
    let Some(mut r) = r else {
        return EINVAL.to_errno();
    };
    let mut reg = registry::lock();
    match f(&mut r, &mut reg) {
        Ok(()) => 0,
        Err(e) => r.refuse(e),
    }
}

/// `DST_CMD_EXPORT_ADD`.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_export_add(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { Request::new(req) };
    handle(r, |r, reg| {
        let addr = r.addr()?;
        let port = reg.port_at(r.home(), &addr);
        let path = r.path()?;
        let device = path.to_bytes().rsplit(|&c| c == b'/').next();
        let name = match r.name(r.req.name)? {
            Some(name) => name,
            None => default_name(device),
        };
        let clients = r.clients()?;
        let cfg = ExportConfig {
            index: reg
                .free_export_index()
                .ok_or(Refusal::new(ENOSPC, c"too many exports"))?,
            net: r.home(),
            addr,
            name,
            path,
            read_only: r.req.read_only,
            size_cap: r.req.size,
            max_io_pages: r.req.max_io_pages,
            security: r.security(clients.has_any())?,
            clients,
            allow: r.allow_list()?,
            shared: r.req.shared,
        };
        let export = Export::start(cfg, port)?;
        reg.add_export(export).map_err(Refusal::from)
    })
}

/// `DST_CMD_EXPORT_DEL`.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_export_del(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { Request::new(req) };
    handle(r, |r, reg| {
        let addr = r.addr()?;
        let name = r.name(r.req.name)?;
        let export = reg.remove_export(r.home(), &addr, name.as_ref())?;
        export.stop();
        Ok(())
    })
}

/// `DST_CMD_EXPORT_RELEASE`: takes the write access of an export from the
/// local node that holds it (whose device is gone for good, say): its
/// sessions end, and the next local node to ask gets it.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_export_release(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let Some(r) = (unsafe { Request::new(req) }) else {
        return EINVAL.to_errno();
    };
    // Without the registry lock: ending the holder's sessions waits for
    // their IO.
    let export = r.addr().and_then(|addr| {
        let name = r.name(r.req.name)?;
        registry::lock()
            .export_at(r.home(), &addr, name.as_ref())
            .cloned()
    });
    let released = export.and_then(|export| {
        if export.shared() {
            return Err(Refusal::new(
                EINVAL,
                c"the export is shared: every local node may write, none holds it",
            ));
        }
        export.release().map(|_| ()).ok_or(Refusal::new(
            ENOENT,
            c"no local node holds the write access",
        ))
    });
    match released {
        Ok(()) => 0,
        Err(e) => r.refuse(e),
    }
}

/// Why a device index was not found: devices of other namespaces are not
/// seen.
const NO_DEVICE: &CStr = c"no such device in this network namespace";

/// Why a device creation failed while the module was being unloaded.
pub(crate) const UNLOADING: &CStr = c"the dst module is being unloaded";

/// `DST_CMD_DEV_ADD`; the new device's index goes to `index`. The registry
/// lock is held only to reserve the index and to add the device, not while
/// it connects.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser; `index` writable.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_dev_add(req: *mut NlRequest, index: *mut u32) -> c_int {
    // SAFETY: guaranteed by the caller.
    let Some(r) = (unsafe { Request::new(req) }) else {
        return EINVAL.to_errno();
    };
    let reserved = (|| {
        let mut reg = registry::lock();
        if reg.unloading() {
            return Err(Refusal::new(ENODEV, UNLOADING));
        }
        let n = if r.req.has_index {
            if reg.index_used(r.req.index) {
                return Err(Refusal::new(EEXIST, c"this device index is in use"));
            }
            r.req.index
        } else {
            reg.free_index()
                .ok_or(Refusal::new(ENOSPC, c"no free device index"))?
        };
        let cfg = DeviceConfig {
            net: r.home(),
            addr: r.addr()?,
            index: n,
            max_io_pages: r.req.max_io_pages,
            queue_depth: r.req.queue_depth,
            queues: r.req.queues,
            client_id: r.req.client_id,
            client: r
                .name(r.req.client_name)?
                .unwrap_or_else(|| default_name(None)),
            export: r.name(r.req.name)?.unwrap_or(Name::EMPTY),
            read_only: r.req.read_only,
            settings: r.settings()?,
            security: r.security(false)?,
        };
        reg.reserve_index(n)?;
        Ok((n, cfg))
    })();
    let (n, cfg) = match reserved {
        Ok(x) => x,
        Err(e) => return r.refuse(e),
    };
    let dev = Device::create(cfg)
        .and_then(|d| Arc::new(d, GFP_KERNEL).map_err(|_| Refusal::from(ENOMEM)));
    let mut reg = registry::lock();
    reg.release_index(n);
    // Unloading cut the handshake short: say so rather than how it failed.
    let dev = dev.map_err(|e| {
        if reg.unloading() {
            Refusal::new(ENODEV, UNLOADING)
        } else {
            e
        }
    });
    match dev.and_then(|d| Ok(reg.add_device(d)?)) {
        Ok(()) => {
            // SAFETY: the caller guarantees `index` is writable.
            unsafe { index.write(n) };
            0
        }
        Err(e) => r.refuse(e),
    }
}

/// `DST_CMD_DEV_DEL`: deletes the device, draining its IO first. A device
/// that is open (mounted, or open in a program) is refused with EBUSY and
/// left as it was, unless `DST_A_FORCE` is given: then those who have it open
/// see their IO fail, and what a file system had not written yet is lost. An
/// accepted delete first closes the disk to new opens, under the disk's open
/// lock, together with the check. The device stays listed, as closing, while
/// it drains (at most its loss timeout, which `DST_CMD_DEV_SET` may shorten
/// meanwhile); the registry lock is held neither across the open check nor
/// across the drain.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_dev_del(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let Some(r) = (unsafe { Request::new(req) }) else {
        return EINVAL.to_errno();
    };
    let index = r.req.index;
    let being_deleted = Refusal::new(EBUSY, c"the device is being deleted");
    let dev = {
        let reg = registry::lock();
        match reg.device(r.home(), index) {
            None => return r.refuse(Refusal::new(ENOENT, NO_DEVICE)),
            Some(d) if d.deleting() => return r.refuse(being_deleted),
            Some(d) => d.clone(),
        }
    };
    // Without the registry lock: the disk's open lock may be held by a last
    // close writing back its dirty pages, which a lost connection keeps
    // waiting for up to the loss timeout. Before `begin_delete`, so that a
    // refused delete changes nothing.
    if !dev.close_opens(r.req.force) {
        return r.refuse(Refusal::new(
            EBUSY,
            c"the device is open (mounted or in use); close it, or delete with --force",
        ));
    }
    // Another delete may have begun meanwhile; it goes on.
    if !dev.begin_delete() {
        return r.refuse(being_deleted);
    }
    dev.drain();
    let removed = registry::lock().remove_device(index);
    // The last reference: stops the threads and frees the device.
    drop(removed);
    drop(dev);
    0
}

/// `DST_CMD_DEV_SET`: changes the timeouts of a running device.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_dev_set(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { Request::new(req) };
    handle(r, |r, reg| {
        if r.req.settings_mask == 0 {
            return Err(Refusal::new(EINVAL, c"no setting to change"));
        }
        let dev = reg
            .device(r.home(), r.req.index)
            .ok_or(Refusal::new(ENOENT, NO_DEVICE))?;
        dev.update(&r.settings()?);
        Ok(())
    })
}

/// `DST_CMD_EXPORT_RESIZE`: grows the export listening on the address to
/// `DST_A_SIZE` (its new cap), or without it to what its device holds now
/// (within its cap); the size exported goes to `size`. Never shrinks.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser; `size` writable.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_export_resize(req: *mut NlRequest, size: *mut u64) -> c_int {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { Request::new(req) };
    let mut exported = 0;
    let rc = handle(r, |r, reg| {
        let addr = r.addr()?;
        let name = r.name(r.req.name)?;
        let export = reg.export_at(r.home(), &addr, name.as_ref())?;
        // 0: the attribute was absent (a size of 0 means nothing else).
        exported = export.resize((r.req.size != 0).then_some(r.req.size))?;
        Ok(())
    });
    if rc == 0 {
        // SAFETY: the caller guarantees `size` is writable.
        unsafe { size.write(exported) };
    }
    rc
}

/// `DST_CMD_CONFIG`: module-wide settings.
///
/// # Safety
///
/// `req` must be a request filled by the shim's parser.
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_config(req: *mut NlRequest) -> c_int {
    // SAFETY: guaranteed by the caller.
    let r = unsafe { Request::new(req) };
    handle(r, |r, _| {
        if r.req.has_crypto_threads {
            thread_pool::set_workers(r.req.crypto_threads);
        }
        let given = |v: u32| (v > 0).then_some(v);
        rekey::set(
            given(r.req.rekey_mib).map(|mib| u64::from(mib) << 20),
            given(r.req.rekey_seconds),
        );
        Ok(())
    })
}

/// Fills list entry `pos` (exports first, then devices) of those that
/// belong to namespace `net`, the dump's caller's. Returns 1 if filled, 0
/// past the end.
///
/// # Safety
///
/// `net` must be the live namespace of the dump's socket; `out` must be
/// valid for writes of an [`NlEntry`].
#[no_mangle]
pub(crate) unsafe extern "C" fn dst_nl_list_entry(
    net: *mut kernel::bindings::net,
    pos: c_ulong,
    out: *mut NlEntry,
) -> c_int {
    let reg = registry::lock();
    // About 1 KiB: filled in place, in the caller's buffer, not built on the
    // stack. Every field is an integer, a bool or an array of them, for
    // which all-zero bytes are a valid value.
    // SAFETY: the caller guarantees `out` is valid for writes of an entry.
    unsafe { core::ptr::write_bytes(out, 0, 1) };
    // SAFETY: `out` is valid, initialised just above, and only ours until
    // we return.
    let e = unsafe { &mut *out };
    e.state = STATE_LISTENING;
    let Some(net) = core::ptr::NonNull::new(net) else {
        return 0;
    };
    let mine = |home: HomeNet| home.as_raw() == net.as_ptr();
    let exports = || reg.exports().iter().filter(|x| mine(x.net()));
    let devices = || reg.devices().iter().filter(|d| mine(d.net()));
    let addr = if let Some(x) = exports().nth(pos) {
        e.kind = KIND_EXPORT;
        e.index = x.index();
        e.sessions = x.sessions();
        e.refused = x.refused();
        e.allow_len = x.allow().fill(&mut e.allow) as u32;
        e.integrity_errors = x.integrity_errors();
        let sec = x.security();
        e.protection = sec.protection.as_u8().into();
        e.alg = *sec.alg.padded();
        e.name = *x.name().padded();
        e.size = x.size();
        e.read_only = x.read_only();
        e.shared = x.shared();
        if let Some(w) = x.writer() {
            e.writer_name = *w.client.padded();
            if let Some(a) = w.peer {
                let (bytes, port) = a.parts();
                if let Some(d) = e.writer_addr.get_mut(..bytes.len()) {
                    d.copy_from_slice(bytes);
                    e.writer_addr_len = bytes.len() as u32;
                    e.writer_port = port;
                }
            }
        }
        let path = x.path().to_bytes();
        let n = path.len().min(e.path.len() - 1);
        e.path[..n].copy_from_slice(&path[..n]);
        x.addr()
    } else if let Some(d) = devices().nth(pos - exports().count()) {
        e.kind = KIND_DEVICE;
        e.index = d.index();
        e.state = d.state().as_u32();
        let c = d.counters();
        (e.reconnects, e.resends, e.timeouts, e.io_errors) =
            (c.reconnects, c.resends, c.timeouts, c.io_errors);
        (e.bytes_read, e.bytes_written, e.in_flight) = (c.bytes_read, c.bytes_written, c.in_flight);
        let s = d.settings();
        e.settings = [
            s.req_timeout_ms.load(Relaxed),
            s.max_resends.load(Relaxed),
            s.reconnect_delay_ms.load(Relaxed),
            s.ping_interval_ms.load(Relaxed),
            s.ping_timeout_ms.load(Relaxed),
            s.loss_timeout_ms.load(Relaxed),
        ];
        e.size = d.size();
        e.read_only = d.read_only();
        e.queue_depth = d.queue_depth();
        e.queues = d.queues();
        e.integrity_errors = c.integrity_errors;
        e.client_id = d.client_id();
        let sec = d.security();
        e.protection = sec.protection.as_u8().into();
        e.alg = *sec.alg.padded();
        e.name = *d.export_name().padded();
        e.client_name = *d.client_name().padded();
        d.addr()
    } else {
        return 0;
    };
    let (bytes, port) = addr.parts();
    e.addr[..bytes.len()].copy_from_slice(bytes);
    e.addr_len = bytes.len() as u32;
    e.port = port;
    1
}
