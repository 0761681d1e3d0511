//! Typed messages of the `dst` generic netlink family.
//!
//! [`DstMessage`] is one genl message (command + attributes) and implements
//! [`GenlFamily`], so it can be wrapped in a `GenlMessage` and sent with
//! [`crate::netlink::GenlSocket`]. Attributes are one typed enum per nesting
//! level, rust-netlink style (`Nla` to emit, `Parseable` to parse), with an
//! `Other(DefaultNla)` fallback so newer modules' attributes do not break
//! parsing.
//!
//! Adding a command: a constant in `uapi.rs`, a variant in [`DstCmd`].
//! Adding an attribute: a constant in `uapi.rs`, a variant in [`DstAttr`] and
//! one arm in each `match` below.

use std::net::{IpAddr, SocketAddr};

use anyhow::{anyhow, bail, Result};
use netlink_packet_core::{
    emit_u16, emit_u32, emit_u64, parse_ip, parse_string, parse_u16, parse_u32, parse_u64,
    parse_u8, DecodeError, DefaultNla, Emitable, ErrorContext, Nla, NlaBuffer, NlasIterator,
    Parseable, ParseableParametrized, NLA_F_NESTED,
};
use netlink_packet_generic::{GenlFamily, GenlHeader};

use crate::args::AllowRule;
use crate::secret::SecretKey;
use crate::uapi;

/// A command of the `dst` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstCmd {
    /// `DST_CMD_STATUS`: module status.
    Status,
    /// `DST_CMD_EXPORT_ADD`: start an export.
    ExportAdd,
    /// `DST_CMD_EXPORT_DEL`: stop an export.
    ExportDel,
    /// `DST_CMD_DEV_ADD`: connect to an export and create `/dev/dstN`.
    DevAdd,
    /// `DST_CMD_DEV_DEL`: delete `/dev/dstN`.
    DevDel,
    /// `DST_CMD_LIST`: dump of every export and device.
    List,
    /// `DST_CMD_DEV_SET`: change the timeouts of a live device.
    DevSet,
    /// `DST_CMD_EVENT`: multicast notification about a device or an export.
    Event,
    /// `DST_CMD_CONFIG`: module-wide settings.
    Config,
    /// `DST_CMD_EXPORT_RELEASE`: take an export's write access from its
    /// holder.
    ExportRelease,
    /// `DST_CMD_EXPORT_RESIZE`: grow an export.
    ExportResize,
    /// A command number this tool does not know.
    Other(u8),
}

impl From<DstCmd> for u8 {
    fn from(cmd: DstCmd) -> u8 {
        match cmd {
            DstCmd::Status => uapi::DST_CMD_STATUS,
            DstCmd::ExportAdd => uapi::DST_CMD_EXPORT_ADD,
            DstCmd::ExportDel => uapi::DST_CMD_EXPORT_DEL,
            DstCmd::DevAdd => uapi::DST_CMD_DEV_ADD,
            DstCmd::DevDel => uapi::DST_CMD_DEV_DEL,
            DstCmd::List => uapi::DST_CMD_LIST,
            DstCmd::DevSet => uapi::DST_CMD_DEV_SET,
            DstCmd::Event => uapi::DST_CMD_EVENT,
            DstCmd::Config => uapi::DST_CMD_CONFIG,
            DstCmd::ExportRelease => uapi::DST_CMD_EXPORT_RELEASE,
            DstCmd::ExportResize => uapi::DST_CMD_EXPORT_RESIZE,
            DstCmd::Other(n) => n,
        }
    }
}

impl From<u8> for DstCmd {
    fn from(n: u8) -> Self {
        match n {
            uapi::DST_CMD_STATUS => DstCmd::Status,
            uapi::DST_CMD_EXPORT_ADD => DstCmd::ExportAdd,
            uapi::DST_CMD_EXPORT_DEL => DstCmd::ExportDel,
            uapi::DST_CMD_DEV_ADD => DstCmd::DevAdd,
            uapi::DST_CMD_DEV_DEL => DstCmd::DevDel,
            uapi::DST_CMD_LIST => DstCmd::List,
            uapi::DST_CMD_DEV_SET => DstCmd::DevSet,
            uapi::DST_CMD_EVENT => DstCmd::Event,
            uapi::DST_CMD_CONFIG => DstCmd::Config,
            uapi::DST_CMD_EXPORT_RELEASE => DstCmd::ExportRelease,
            uapi::DST_CMD_EXPORT_RESIZE => DstCmd::ExportResize,
            n => DstCmd::Other(n),
        }
    }
}

/// A top-level attribute of the `dst` family (`enum dst_attr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DstAttr {
    /// `DST_A_VERSION`: module version (NUL-terminated string).
    Version(String),
    /// `DST_A_PROTO_VERSION`: wire protocol version (u32).
    ProtoVersion(u32),
    /// `DST_A_ADDR`: IPv4 (4 bytes) or IPv6 (16 bytes), network order.
    Addr(IpAddr),
    /// `DST_A_PORT`: TCP port (u16, host order).
    Port(u16),
    /// `DST_A_PATH`: backing block device of an export (string).
    Path(String),
    /// `DST_A_READ_ONLY`: flag, no payload.
    ReadOnly,
    /// `DST_A_SIZE`: bytes (u64).
    Size(u64),
    /// `DST_A_MAX_IO_PAGES`: largest request in 4 KiB pages (u32).
    MaxIoPages(u32),
    /// `DST_A_INDEX`: N of `/dev/dstN` (u32).
    Index(u32),
    /// `DST_A_KIND`: `enum dst_kind` (u32).
    Kind(u32),
    /// `DST_A_DISK_NAME`: "dstN" (string).
    DiskName(String),
    /// `DST_A_STATE`: `enum dst_state` (u32).
    State(u32),
    /// `DST_A_SESSIONS`: connected local nodes of an export (u32).
    Sessions(u32),
    /// `DST_A_QUEUE_DEPTH`: requests in flight per queue (u32).
    QueueDepth(u32),
    /// `DST_A_REQ_TIMEOUT_MS`: unanswered this long: reconnect, resend (u32).
    ReqTimeoutMs(u32),
    /// `DST_A_MAX_RESENDS`: resends of one request before it fails (u32).
    MaxResends(u32),
    /// `DST_A_RECONNECT_DELAY_MS`: pause between reconnect attempts (u32).
    ReconnectDelayMs(u32),
    /// `DST_A_PING_INTERVAL_MS`: ping an idle connection this often, 0 =
    /// never (u32).
    PingIntervalMs(u32),
    /// `DST_A_PING_TIMEOUT_MS`: no answer to a ping this long: reconnect
    /// (u32).
    PingTimeoutMs(u32),
    /// `DST_A_LOSS_TIMEOUT_MS`: disconnected this long: IO fails (u32).
    LossTimeoutMs(u32),
    /// `DST_A_RECONNECTS`: counter (u64).
    Reconnects(u64),
    /// `DST_A_RESENDS`: counter (u64).
    Resends(u64),
    /// `DST_A_EVENT`: `enum dst_event` (u32).
    Event(u32),
    /// `DST_A_IN_FLIGHT`: requests queued or sent (u32).
    InFlight(u32),
    /// `DST_A_TIMEOUTS`: counter of request or ping timeouts (u64).
    Timeouts(u64),
    /// `DST_A_IO_ERRORS`: counter of requests ended with an error (u64).
    IoErrors(u64),
    /// `DST_A_BYTES_READ`: counter (u64).
    BytesRead(u64),
    /// `DST_A_BYTES_WRITTEN`: counter (u64).
    BytesWritten(u64),
    /// `DST_A_QUEUES`: hardware queues (connections) of a device (u32).
    Queues(u32),
    /// `DST_A_PROTECTION`: `enum dst_protection` (u32).
    Protection(u32),
    /// `DST_A_ALG`: kernel crypto name (string).
    Alg(String),
    /// `DST_A_KEY`: pre-shared key (binary); zeroed when dropped.
    Key(SecretKey),
    /// `DST_A_ALLOW`: one allow-list entry (nested `DST_ALLOW_A_*`).
    Allow(Vec<AllowAttr>),
    /// `DST_A_CRYPTO_THREADS`: workers of the crypto pool (u32).
    CryptoThreads(u32),
    /// `DST_A_PEER_ADDR`: address of an export's client (binary).
    PeerAddr(IpAddr),
    /// `DST_A_PEER_PORT`: port of an export's client (u16).
    PeerPort(u16),
    /// `DST_A_MESSAGE`: why a client was refused (string).
    Message(String),
    /// `DST_A_INTEGRITY_ERRORS`: counter (u64).
    IntegrityErrors(u64),
    /// `DST_A_REFUSED`: export: counter of refused clients (u64).
    Refused(u64),
    /// `DST_A_CLIENT_ID`: device: the identity the export fences by (u64).
    ClientId(u64),
    /// `DST_A_FORCE`: flag: delete the device even if it is open.
    Force,
    /// `DST_A_NAME`: an export's identity (string): of the export, or the
    /// one a device accepts.
    Name(String),
    /// `DST_A_CLIENT_NAME`: a device's own identity (string).
    ClientName(String),
    /// `DST_A_REKEY_MIB`: a keyed connection replaces its key after
    /// protecting this many MiB (u32, module-wide).
    RekeyMib(u32),
    /// `DST_A_REKEY_SECONDS`: ... or after this many seconds (u32,
    /// module-wide).
    RekeySeconds(u32),
    /// `DST_A_KEY_DESC`: instead of [`DstAttr::Key`], the description of a
    /// logon (or user) key in the caller's keyrings (string).
    KeyDesc(String),
    /// `DST_A_CLIENT`: one client identity with a key of its own (nested
    /// `DST_CLIENT_A_*`).
    Client(Vec<ClientAttr>),
    /// `DST_A_SHARED`: flag: the export takes any number of writers.
    Shared,
    /// `DST_A_WRITER_NAME`: the identity holding an export's write access
    /// (string).
    WriterName(String),
    /// `DST_A_WRITER_ADDR`: the address it last connected from (binary).
    WriterAddr(IpAddr),
    /// `DST_A_WRITER_PORT`: the port it last connected from (u16).
    WriterPort(u16),
    /// Any other attribute, including `DST_A_PAD`.
    Other(DefaultNla),
}

/// An attribute nested in `DST_A_ALLOW` (`enum dst_allow_attr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowAttr {
    /// `DST_ALLOW_A_ADDR`: IPv4 (4 bytes) or IPv6 (16 bytes) prefix.
    Addr(IpAddr),
    /// `DST_ALLOW_A_PREFIX_LEN`: u8.
    PrefixLen(u8),
    /// `DST_ALLOW_A_READ_ONLY`: flag.
    ReadOnly,
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for AllowAttr {
    fn value_len(&self) -> usize {
        match self {
            AllowAttr::Addr(IpAddr::V4(_)) => 4,
            AllowAttr::Addr(IpAddr::V6(_)) => 16,
            AllowAttr::PrefixLen(_) => 1,
            AllowAttr::ReadOnly => 0,
            AllowAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            AllowAttr::Addr(_) => uapi::DST_ALLOW_A_ADDR,
            AllowAttr::PrefixLen(_) => uapi::DST_ALLOW_A_PREFIX_LEN,
            AllowAttr::ReadOnly => uapi::DST_ALLOW_A_READ_ONLY,
            AllowAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            AllowAttr::Addr(IpAddr::V4(ip)) => buffer.copy_from_slice(&ip.octets()),
            AllowAttr::Addr(IpAddr::V6(ip)) => buffer.copy_from_slice(&ip.octets()),
            AllowAttr::PrefixLen(n) => buffer[0] = *n,
            AllowAttr::ReadOnly => {}
            AllowAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for AllowAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            uapi::DST_ALLOW_A_ADDR => {
                AllowAttr::Addr(parse_ip(payload).context("invalid DST_ALLOW_A_ADDR")?)
            }
            uapi::DST_ALLOW_A_PREFIX_LEN => {
                AllowAttr::PrefixLen(parse_u8(payload).context("invalid DST_ALLOW_A_PREFIX_LEN")?)
            }
            uapi::DST_ALLOW_A_READ_ONLY => AllowAttr::ReadOnly,
            _ => AllowAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The nested attributes of one allow-list entry.
pub fn allow_attrs(rule: &AllowRule) -> Vec<AllowAttr> {
    let mut attrs = vec![
        AllowAttr::Addr(rule.addr),
        AllowAttr::PrefixLen(rule.prefix_len),
    ];
    if rule.read_only {
        attrs.push(AllowAttr::ReadOnly);
    }
    attrs
}

/// The allow-list entry of nested attributes `attrs` (as `DST_CMD_LIST`
/// reports it); the prefix length defaults to the whole address.
pub fn allow_rule(attrs: &[AllowAttr]) -> Result<AllowRule> {
    let (mut addr, mut prefix_len, mut read_only) = (None, None, false);
    for attr in attrs {
        match attr {
            AllowAttr::Addr(a) => addr = Some(*a),
            AllowAttr::PrefixLen(n) => prefix_len = Some(*n),
            AllowAttr::ReadOnly => read_only = true,
            AllowAttr::Other(_) => {}
        }
    }
    let addr = addr.ok_or_else(|| anyhow!("allow-list entry lacks DST_ALLOW_A_ADDR"))?;
    let full = if addr.is_ipv4() { 32 } else { 128 };
    Ok(AllowRule {
        addr,
        prefix_len: prefix_len.unwrap_or(full),
        read_only,
    })
}

/// An attribute nested in `DST_A_CLIENT` (`enum dst_client_attr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAttr {
    /// `DST_CLIENT_A_NAME`: the client's identity (string).
    Name(String),
    /// `DST_CLIENT_A_KEY`: its key (binary); zeroed when dropped, as
    /// [`DstAttr::Key`].
    Key(SecretKey),
    /// `DST_CLIENT_A_KEY_DESC`: instead of [`ClientAttr::Key`], a keyring
    /// key's description (string).
    KeyDesc(String),
    /// `DST_CLIENT_A_READ_ONLY`: flag.
    ReadOnly,
    /// Anything else.
    Other(DefaultNla),
}

impl Nla for ClientAttr {
    fn value_len(&self) -> usize {
        match self {
            ClientAttr::Name(s) | ClientAttr::KeyDesc(s) => s.len() + 1,
            ClientAttr::Key(key) => key.len(),
            ClientAttr::ReadOnly => 0,
            ClientAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ClientAttr::Name(_) => uapi::DST_CLIENT_A_NAME,
            ClientAttr::Key(_) => uapi::DST_CLIENT_A_KEY,
            ClientAttr::KeyDesc(_) => uapi::DST_CLIENT_A_KEY_DESC,
            ClientAttr::ReadOnly => uapi::DST_CLIENT_A_READ_ONLY,
            ClientAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            ClientAttr::Name(s) | ClientAttr::KeyDesc(s) => emit_string(buffer, s),
            ClientAttr::Key(key) => buffer.copy_from_slice(key.bytes()),
            ClientAttr::ReadOnly => {}
            ClientAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ClientAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        Ok(match buf.kind() {
            uapi::DST_CLIENT_A_NAME => {
                ClientAttr::Name(parse_string(payload).context("invalid DST_CLIENT_A_NAME")?)
            }
            uapi::DST_CLIENT_A_KEY => ClientAttr::Key(SecretKey::new(payload)),
            uapi::DST_CLIENT_A_KEY_DESC => {
                ClientAttr::KeyDesc(parse_string(payload).context("invalid DST_CLIENT_A_KEY_DESC")?)
            }
            uapi::DST_CLIENT_A_READ_ONLY => ClientAttr::ReadOnly,
            _ => ClientAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The key of an export's client: read from its key file, or a keyring
/// key's description for the module to look up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSecret {
    /// `DST_CLIENT_A_KEY`: the key itself; zeroed when dropped.
    Key(SecretKey),
    /// `DST_CLIENT_A_KEY_DESC`: the description of a logon (or user) key
    /// in the caller's keyrings.
    KeyDesc(String),
}

/// One client of an export with a key of its own, as `DST_A_CLIENT` sends
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportClient {
    /// The client's identity.
    pub name: String,
    /// Its key.
    pub secret: ClientSecret,
    /// Its device is read-only.
    pub read_only: bool,
}

impl ExportClient {
    /// The nested attributes of its `DST_A_CLIENT` entry: name, key (or
    /// description), then the flag if read-only.
    pub fn attrs(&self) -> Vec<ClientAttr> {
        let mut attrs = vec![
            ClientAttr::Name(self.name.clone()),
            match &self.secret {
                ClientSecret::Key(key) => ClientAttr::Key(key.clone()),
                ClientSecret::KeyDesc(desc) => ClientAttr::KeyDesc(desc.clone()),
            },
        ];
        if self.read_only {
            attrs.push(ClientAttr::ReadOnly);
        }
        attrs
    }
}

impl Nla for DstAttr {
    fn value_len(&self) -> usize {
        match self {
            DstAttr::Version(s)
            | DstAttr::Path(s)
            | DstAttr::DiskName(s)
            | DstAttr::Alg(s)
            | DstAttr::Message(s)
            | DstAttr::Name(s)
            | DstAttr::ClientName(s)
            | DstAttr::KeyDesc(s)
            | DstAttr::WriterName(s) => s.len() + 1,
            DstAttr::Addr(IpAddr::V4(_))
            | DstAttr::PeerAddr(IpAddr::V4(_))
            | DstAttr::WriterAddr(IpAddr::V4(_)) => 4,
            DstAttr::Addr(IpAddr::V6(_))
            | DstAttr::PeerAddr(IpAddr::V6(_))
            | DstAttr::WriterAddr(IpAddr::V6(_)) => 16,
            DstAttr::Port(_) | DstAttr::PeerPort(_) | DstAttr::WriterPort(_) => 2,
            DstAttr::Key(key) => key.len(),
            DstAttr::Allow(nested) => nested.as_slice().buffer_len(),
            DstAttr::Client(nested) => nested.as_slice().buffer_len(),
            DstAttr::ReadOnly | DstAttr::Force | DstAttr::Shared => 0,
            DstAttr::Size(_)
            | DstAttr::Reconnects(_)
            | DstAttr::Resends(_)
            | DstAttr::Timeouts(_)
            | DstAttr::IoErrors(_)
            | DstAttr::BytesRead(_)
            | DstAttr::BytesWritten(_)
            | DstAttr::IntegrityErrors(_)
            | DstAttr::Refused(_)
            | DstAttr::ClientId(_) => 8,
            DstAttr::ProtoVersion(_)
            | DstAttr::MaxIoPages(_)
            | DstAttr::Index(_)
            | DstAttr::Kind(_)
            | DstAttr::State(_)
            | DstAttr::Sessions(_)
            | DstAttr::QueueDepth(_)
            | DstAttr::ReqTimeoutMs(_)
            | DstAttr::MaxResends(_)
            | DstAttr::ReconnectDelayMs(_)
            | DstAttr::PingIntervalMs(_)
            | DstAttr::PingTimeoutMs(_)
            | DstAttr::LossTimeoutMs(_)
            | DstAttr::Event(_)
            | DstAttr::InFlight(_)
            | DstAttr::Queues(_)
            | DstAttr::Protection(_)
            | DstAttr::CryptoThreads(_)
            | DstAttr::RekeyMib(_)
            | DstAttr::RekeySeconds(_) => 4,
            DstAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            DstAttr::Version(_) => uapi::DST_A_VERSION,
            DstAttr::ProtoVersion(_) => uapi::DST_A_PROTO_VERSION,
            DstAttr::Addr(_) => uapi::DST_A_ADDR,
            DstAttr::Port(_) => uapi::DST_A_PORT,
            DstAttr::Path(_) => uapi::DST_A_PATH,
            DstAttr::ReadOnly => uapi::DST_A_READ_ONLY,
            DstAttr::Size(_) => uapi::DST_A_SIZE,
            DstAttr::MaxIoPages(_) => uapi::DST_A_MAX_IO_PAGES,
            DstAttr::Index(_) => uapi::DST_A_INDEX,
            DstAttr::Kind(_) => uapi::DST_A_KIND,
            DstAttr::DiskName(_) => uapi::DST_A_DISK_NAME,
            DstAttr::State(_) => uapi::DST_A_STATE,
            DstAttr::Sessions(_) => uapi::DST_A_SESSIONS,
            DstAttr::QueueDepth(_) => uapi::DST_A_QUEUE_DEPTH,
            DstAttr::ReqTimeoutMs(_) => uapi::DST_A_REQ_TIMEOUT_MS,
            DstAttr::MaxResends(_) => uapi::DST_A_MAX_RESENDS,
            DstAttr::ReconnectDelayMs(_) => uapi::DST_A_RECONNECT_DELAY_MS,
            DstAttr::PingIntervalMs(_) => uapi::DST_A_PING_INTERVAL_MS,
            DstAttr::PingTimeoutMs(_) => uapi::DST_A_PING_TIMEOUT_MS,
            DstAttr::LossTimeoutMs(_) => uapi::DST_A_LOSS_TIMEOUT_MS,
            DstAttr::Reconnects(_) => uapi::DST_A_RECONNECTS,
            DstAttr::Resends(_) => uapi::DST_A_RESENDS,
            DstAttr::Event(_) => uapi::DST_A_EVENT,
            DstAttr::InFlight(_) => uapi::DST_A_IN_FLIGHT,
            DstAttr::Timeouts(_) => uapi::DST_A_TIMEOUTS,
            DstAttr::IoErrors(_) => uapi::DST_A_IO_ERRORS,
            DstAttr::BytesRead(_) => uapi::DST_A_BYTES_READ,
            DstAttr::BytesWritten(_) => uapi::DST_A_BYTES_WRITTEN,
            DstAttr::Queues(_) => uapi::DST_A_QUEUES,
            DstAttr::Protection(_) => uapi::DST_A_PROTECTION,
            DstAttr::Alg(_) => uapi::DST_A_ALG,
            DstAttr::Key(_) => uapi::DST_A_KEY,
            // The strict policy wants nested attributes flagged as such.
            DstAttr::Allow(_) => uapi::DST_A_ALLOW | NLA_F_NESTED,
            DstAttr::CryptoThreads(_) => uapi::DST_A_CRYPTO_THREADS,
            DstAttr::PeerAddr(_) => uapi::DST_A_PEER_ADDR,
            DstAttr::PeerPort(_) => uapi::DST_A_PEER_PORT,
            DstAttr::Message(_) => uapi::DST_A_MESSAGE,
            DstAttr::IntegrityErrors(_) => uapi::DST_A_INTEGRITY_ERRORS,
            DstAttr::Refused(_) => uapi::DST_A_REFUSED,
            DstAttr::ClientId(_) => uapi::DST_A_CLIENT_ID,
            DstAttr::Force => uapi::DST_A_FORCE,
            DstAttr::Name(_) => uapi::DST_A_NAME,
            DstAttr::ClientName(_) => uapi::DST_A_CLIENT_NAME,
            DstAttr::RekeyMib(_) => uapi::DST_A_REKEY_MIB,
            DstAttr::RekeySeconds(_) => uapi::DST_A_REKEY_SECONDS,
            DstAttr::KeyDesc(_) => uapi::DST_A_KEY_DESC,
            DstAttr::Client(_) => uapi::DST_A_CLIENT | NLA_F_NESTED,
            DstAttr::Shared => uapi::DST_A_SHARED,
            DstAttr::WriterName(_) => uapi::DST_A_WRITER_NAME,
            DstAttr::WriterAddr(_) => uapi::DST_A_WRITER_ADDR,
            DstAttr::WriterPort(_) => uapi::DST_A_WRITER_PORT,
            DstAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            DstAttr::Version(s)
            | DstAttr::Path(s)
            | DstAttr::DiskName(s)
            | DstAttr::Alg(s)
            | DstAttr::Message(s)
            | DstAttr::Name(s)
            | DstAttr::ClientName(s)
            | DstAttr::KeyDesc(s)
            | DstAttr::WriterName(s) => emit_string(buffer, s),
            DstAttr::Addr(IpAddr::V4(ip))
            | DstAttr::PeerAddr(IpAddr::V4(ip))
            | DstAttr::WriterAddr(IpAddr::V4(ip)) => buffer.copy_from_slice(&ip.octets()),
            DstAttr::Addr(IpAddr::V6(ip))
            | DstAttr::PeerAddr(IpAddr::V6(ip))
            | DstAttr::WriterAddr(IpAddr::V6(ip)) => buffer.copy_from_slice(&ip.octets()),
            DstAttr::Port(v) | DstAttr::PeerPort(v) | DstAttr::WriterPort(v) => {
                emit_u16(buffer, *v).unwrap()
            }
            DstAttr::Key(key) => buffer.copy_from_slice(key.bytes()),
            DstAttr::Allow(nested) => nested.as_slice().emit(buffer),
            DstAttr::Client(nested) => nested.as_slice().emit(buffer),
            DstAttr::ReadOnly | DstAttr::Force | DstAttr::Shared => {}
            DstAttr::Size(v)
            | DstAttr::Reconnects(v)
            | DstAttr::Resends(v)
            | DstAttr::Timeouts(v)
            | DstAttr::IoErrors(v)
            | DstAttr::BytesRead(v)
            | DstAttr::BytesWritten(v)
            | DstAttr::IntegrityErrors(v)
            | DstAttr::Refused(v)
            | DstAttr::ClientId(v) => emit_u64(buffer, *v).unwrap(),
            DstAttr::ProtoVersion(v)
            | DstAttr::MaxIoPages(v)
            | DstAttr::Index(v)
            | DstAttr::Kind(v)
            | DstAttr::State(v)
            | DstAttr::Sessions(v)
            | DstAttr::QueueDepth(v)
            | DstAttr::ReqTimeoutMs(v)
            | DstAttr::MaxResends(v)
            | DstAttr::ReconnectDelayMs(v)
            | DstAttr::PingIntervalMs(v)
            | DstAttr::PingTimeoutMs(v)
            | DstAttr::LossTimeoutMs(v)
            | DstAttr::Event(v)
            | DstAttr::InFlight(v)
            | DstAttr::Queues(v)
            | DstAttr::Protection(v)
            | DstAttr::CryptoThreads(v)
            | DstAttr::RekeyMib(v)
            | DstAttr::RekeySeconds(v) => emit_u32(buffer, *v).unwrap(),
            DstAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for DstAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let payload = buf.value();
        let u32_of = |name: &str| parse_u32(payload).context(format!("invalid {name}"));
        let u64_of = |name: &str| parse_u64(payload).context(format!("invalid {name}"));
        Ok(match buf.kind() {
            uapi::DST_A_VERSION => {
                DstAttr::Version(parse_string(payload).context("invalid DST_A_VERSION")?)
            }
            uapi::DST_A_PROTO_VERSION => DstAttr::ProtoVersion(u32_of("DST_A_PROTO_VERSION")?),
            uapi::DST_A_ADDR => DstAttr::Addr(parse_ip(payload).context("invalid DST_A_ADDR")?),
            uapi::DST_A_PORT => DstAttr::Port(parse_u16(payload).context("invalid DST_A_PORT")?),
            uapi::DST_A_PATH => DstAttr::Path(parse_string(payload).context("invalid DST_A_PATH")?),
            uapi::DST_A_READ_ONLY => DstAttr::ReadOnly,
            uapi::DST_A_SIZE => DstAttr::Size(parse_u64(payload).context("invalid DST_A_SIZE")?),
            uapi::DST_A_MAX_IO_PAGES => DstAttr::MaxIoPages(u32_of("DST_A_MAX_IO_PAGES")?),
            uapi::DST_A_INDEX => DstAttr::Index(u32_of("DST_A_INDEX")?),
            uapi::DST_A_KIND => DstAttr::Kind(u32_of("DST_A_KIND")?),
            uapi::DST_A_DISK_NAME => {
                DstAttr::DiskName(parse_string(payload).context("invalid DST_A_DISK_NAME")?)
            }
            uapi::DST_A_STATE => DstAttr::State(u32_of("DST_A_STATE")?),
            uapi::DST_A_SESSIONS => DstAttr::Sessions(u32_of("DST_A_SESSIONS")?),
            uapi::DST_A_QUEUE_DEPTH => DstAttr::QueueDepth(u32_of("DST_A_QUEUE_DEPTH")?),
            uapi::DST_A_REQ_TIMEOUT_MS => DstAttr::ReqTimeoutMs(u32_of("DST_A_REQ_TIMEOUT_MS")?),
            uapi::DST_A_MAX_RESENDS => DstAttr::MaxResends(u32_of("DST_A_MAX_RESENDS")?),
            uapi::DST_A_RECONNECT_DELAY_MS => {
                DstAttr::ReconnectDelayMs(u32_of("DST_A_RECONNECT_DELAY_MS")?)
            }
            uapi::DST_A_PING_INTERVAL_MS => {
                DstAttr::PingIntervalMs(u32_of("DST_A_PING_INTERVAL_MS")?)
            }
            uapi::DST_A_PING_TIMEOUT_MS => DstAttr::PingTimeoutMs(u32_of("DST_A_PING_TIMEOUT_MS")?),
            uapi::DST_A_LOSS_TIMEOUT_MS => DstAttr::LossTimeoutMs(u32_of("DST_A_LOSS_TIMEOUT_MS")?),
            uapi::DST_A_RECONNECTS => DstAttr::Reconnects(u64_of("DST_A_RECONNECTS")?),
            uapi::DST_A_RESENDS => DstAttr::Resends(u64_of("DST_A_RESENDS")?),
            uapi::DST_A_EVENT => DstAttr::Event(u32_of("DST_A_EVENT")?),
            uapi::DST_A_IN_FLIGHT => DstAttr::InFlight(u32_of("DST_A_IN_FLIGHT")?),
            uapi::DST_A_TIMEOUTS => DstAttr::Timeouts(u64_of("DST_A_TIMEOUTS")?),
            uapi::DST_A_IO_ERRORS => DstAttr::IoErrors(u64_of("DST_A_IO_ERRORS")?),
            uapi::DST_A_BYTES_READ => DstAttr::BytesRead(u64_of("DST_A_BYTES_READ")?),
            uapi::DST_A_BYTES_WRITTEN => DstAttr::BytesWritten(u64_of("DST_A_BYTES_WRITTEN")?),
            uapi::DST_A_QUEUES => DstAttr::Queues(u32_of("DST_A_QUEUES")?),
            uapi::DST_A_PROTECTION => DstAttr::Protection(u32_of("DST_A_PROTECTION")?),
            uapi::DST_A_ALG => DstAttr::Alg(parse_string(payload).context("invalid DST_A_ALG")?),
            uapi::DST_A_KEY => DstAttr::Key(SecretKey::new(payload)),
            uapi::DST_A_ALLOW => DstAttr::Allow(
                NlasIterator::new(payload)
                    .map(|nla| nla.and_then(|nla| AllowAttr::parse(&nla)))
                    .collect::<Result<Vec<_>, _>>()
                    .context("invalid DST_A_ALLOW")?,
            ),
            uapi::DST_A_CRYPTO_THREADS => DstAttr::CryptoThreads(u32_of("DST_A_CRYPTO_THREADS")?),
            uapi::DST_A_PEER_ADDR => {
                DstAttr::PeerAddr(parse_ip(payload).context("invalid DST_A_PEER_ADDR")?)
            }
            uapi::DST_A_PEER_PORT => {
                DstAttr::PeerPort(parse_u16(payload).context("invalid DST_A_PEER_PORT")?)
            }
            uapi::DST_A_MESSAGE => {
                DstAttr::Message(parse_string(payload).context("invalid DST_A_MESSAGE")?)
            }
            uapi::DST_A_INTEGRITY_ERRORS => {
                DstAttr::IntegrityErrors(u64_of("DST_A_INTEGRITY_ERRORS")?)
            }
            uapi::DST_A_REFUSED => DstAttr::Refused(u64_of("DST_A_REFUSED")?),
            uapi::DST_A_CLIENT_ID => DstAttr::ClientId(u64_of("DST_A_CLIENT_ID")?),
            uapi::DST_A_FORCE => DstAttr::Force,
            uapi::DST_A_NAME => DstAttr::Name(parse_string(payload).context("invalid DST_A_NAME")?),
            uapi::DST_A_CLIENT_NAME => {
                DstAttr::ClientName(parse_string(payload).context("invalid DST_A_CLIENT_NAME")?)
            }
            uapi::DST_A_REKEY_MIB => DstAttr::RekeyMib(u32_of("DST_A_REKEY_MIB")?),
            uapi::DST_A_REKEY_SECONDS => DstAttr::RekeySeconds(u32_of("DST_A_REKEY_SECONDS")?),
            uapi::DST_A_KEY_DESC => {
                DstAttr::KeyDesc(parse_string(payload).context("invalid DST_A_KEY_DESC")?)
            }
            uapi::DST_A_CLIENT => DstAttr::Client(
                NlasIterator::new(payload)
                    .map(|nla| nla.and_then(|nla| ClientAttr::parse(&nla)))
                    .collect::<Result<Vec<_>, _>>()
                    .context("invalid DST_A_CLIENT")?,
            ),
            uapi::DST_A_SHARED => DstAttr::Shared,
            uapi::DST_A_WRITER_NAME => {
                DstAttr::WriterName(parse_string(payload).context("invalid DST_A_WRITER_NAME")?)
            }
            uapi::DST_A_WRITER_ADDR => {
                DstAttr::WriterAddr(parse_ip(payload).context("invalid DST_A_WRITER_ADDR")?)
            }
            uapi::DST_A_WRITER_PORT => {
                DstAttr::WriterPort(parse_u16(payload).context("invalid DST_A_WRITER_PORT")?)
            }
            _ => DstAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// Writes `s` NUL-terminated into `buffer` (exactly `s.len() + 1` bytes).
fn emit_string(buffer: &mut [u8], s: &str) {
    buffer[..s.len()].copy_from_slice(s.as_bytes());
    buffer[s.len()] = 0;
}

/// One message of the `dst` family: a command and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DstMessage {
    /// The command (genl header `cmd`).
    pub cmd: DstCmd,
    /// Top-level attributes, in order.
    pub attrs: Vec<DstAttr>,
}

impl DstMessage {
    /// A request for `cmd` carrying `attrs`.
    pub fn new(cmd: DstCmd, attrs: Vec<DstAttr>) -> Self {
        Self { cmd, attrs }
    }
}

impl GenlFamily for DstMessage {
    fn family_name() -> &'static str {
        uapi::DST_GENL_NAME
    }

    fn command(&self) -> u8 {
        self.cmd.into()
    }

    fn version(&self) -> u8 {
        uapi::DST_GENL_VERSION
    }
}

impl Emitable for DstMessage {
    fn buffer_len(&self) -> usize {
        self.attrs.as_slice().buffer_len()
    }

    fn emit(&self, buffer: &mut [u8]) {
        self.attrs.as_slice().emit(buffer)
    }
}

impl ParseableParametrized<[u8], GenlHeader> for DstMessage {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        let attrs = NlasIterator::new(buf)
            .map(|nla| nla.and_then(|nla| DstAttr::parse(&nla)))
            .collect::<Result<Vec<_>, _>>()
            .context("failed to parse dst attributes")?;
        Ok(Self {
            cmd: header.cmd.into(),
            attrs,
        })
    }
}

/// The decoded reply of `DST_CMD_STATUS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Module version (`DST_A_VERSION`).
    pub version: String,
    /// Wire protocol version (`DST_A_PROTO_VERSION`).
    pub protocol: u32,
    /// Workers of the crypto pool (`DST_A_CRYPTO_THREADS`), if reported.
    pub crypto_threads: Option<u32>,
    /// MiB after which a keyed connection replaces its key
    /// (`DST_A_REKEY_MIB`), if reported.
    pub rekey_mib: Option<u32>,
    /// Seconds after which it does (`DST_A_REKEY_SECONDS`), if reported.
    pub rekey_seconds: Option<u32>,
}

impl Status {
    /// Extracts the status from the reply messages of `DST_CMD_STATUS`.
    pub fn from_replies(replies: &[DstMessage]) -> Result<Self> {
        let [reply] = replies else {
            bail!("expected one status reply, got {}", replies.len());
        };
        let mut version = None;
        let mut protocol = None;
        let mut crypto_threads = None;
        let mut rekey_mib = None;
        let mut rekey_seconds = None;
        for attr in &reply.attrs {
            match attr {
                DstAttr::Version(v) => version = Some(v.clone()),
                DstAttr::ProtoVersion(p) => protocol = Some(*p),
                DstAttr::CryptoThreads(n) => crypto_threads = Some(*n),
                DstAttr::RekeyMib(n) => rekey_mib = Some(*n),
                DstAttr::RekeySeconds(n) => rekey_seconds = Some(*n),
                _ => {}
            }
        }
        Ok(Self {
            version: version.ok_or_else(|| anyhow!("status reply lacks DST_A_VERSION"))?,
            protocol: protocol.ok_or_else(|| anyhow!("status reply lacks DST_A_PROTO_VERSION"))?,
            crypto_threads,
            rekey_mib,
            rekey_seconds,
        })
    }

    /// Human-readable form.
    pub fn to_text(&self) -> String {
        format!(
            "dst module {}, wire protocol {}",
            self.version, self.protocol
        )
    }
}

/// Attributes of an address and port (`DST_A_ADDR`, `DST_A_PORT`).
fn addr_attrs(addr: SocketAddr) -> [DstAttr; 2] {
    [DstAttr::Addr(addr.ip()), DstAttr::Port(addr.port())]
}

/// The security attributes of an export or a device: each only when given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityAttrs {
    /// `DST_A_PROTECTION` (`enum dst_protection`).
    pub protection: Option<u32>,
    /// `DST_A_ALG`.
    pub alg: Option<String>,
    /// `DST_A_KEY`.
    pub key: Option<SecretKey>,
    /// `DST_A_KEY_DESC`: the module takes the key from the caller's
    /// keyrings instead (never together with `key`).
    pub key_desc: Option<String>,
}

impl SecurityAttrs {
    /// The attributes given, in attribute order.
    pub fn attrs(&self) -> Vec<DstAttr> {
        let mut attrs = Vec::new();
        attrs.extend(self.protection.map(DstAttr::Protection));
        attrs.extend(self.alg.clone().map(DstAttr::Alg));
        attrs.extend(self.key.clone().map(DstAttr::Key));
        attrs.extend(self.key_desc.clone().map(DstAttr::KeyDesc));
        attrs
    }
}

/// What `DST_CMD_EXPORT_ADD` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// Local address and port to listen on.
    pub addr: SocketAddr,
    /// Absolute path of the block device or regular file to serve.
    pub path: String,
    /// Serve read-only.
    pub read_only: bool,
    /// Serve at most this many bytes (none: the whole device).
    pub size: Option<u64>,
    /// Largest request in 4 KiB pages (none: the module's default).
    pub max_io_pages: Option<u32>,
    /// Protection, algorithm and key (each none: not sent).
    pub security: SecurityAttrs,
    /// Allow-list (empty: not sent; any client may connect).
    pub allow: Vec<AllowRule>,
    /// Clients with keys of their own, one `DST_A_CLIENT` each (empty: not
    /// sent).
    pub clients: Vec<ExportClient>,
    /// The export's identity (none: not sent, the module's default
    /// `<host name>:<device name>`).
    pub name: Option<String>,
    /// Any number of local nodes may write (`DST_A_SHARED`); else one
    /// identity at a time.
    pub shared: bool,
}

impl ExportRequest {
    /// The request's attributes; optional ones only when given.
    pub fn attrs(&self) -> Vec<DstAttr> {
        let mut attrs = addr_attrs(self.addr).to_vec();
        attrs.push(DstAttr::Path(self.path.clone()));
        if self.read_only {
            attrs.push(DstAttr::ReadOnly);
        }
        attrs.extend(self.size.map(DstAttr::Size));
        attrs.extend(self.max_io_pages.map(DstAttr::MaxIoPages));
        attrs.extend(self.security.attrs());
        attrs.extend(self.allow.iter().map(|r| DstAttr::Allow(allow_attrs(r))));
        attrs.extend(self.clients.iter().map(|c| DstAttr::Client(c.attrs())));
        attrs.extend(self.name.clone().map(DstAttr::Name));
        if self.shared {
            attrs.push(DstAttr::Shared);
        }
        attrs
    }
}

/// Attributes of `DST_CMD_EXPORT_DEL` (and `DST_CMD_EXPORT_RELEASE`): the
/// address, and the export's name where given (needed where several
/// exports listen on the address).
pub fn export_del_attrs(addr: SocketAddr, name: Option<&str>) -> Vec<DstAttr> {
    let mut attrs = addr_attrs(addr).to_vec();
    attrs.extend(name.map(|n| DstAttr::Name(n.to_string())));
    attrs
}

/// Attributes of `DST_CMD_EXPORT_RESIZE`: the export's address, and the new
/// size if given (none: what the export's device holds now).
pub fn export_resize_attrs(addr: SocketAddr, size: Option<u64>) -> Vec<DstAttr> {
    let mut attrs = addr_attrs(addr).to_vec();
    attrs.extend(size.map(DstAttr::Size));
    attrs
}

/// The size in the reply of `DST_CMD_EXPORT_RESIZE`.
pub fn resize_reply(replies: &[DstMessage]) -> Result<u64> {
    let [reply] = replies else {
        bail!("expected one reply, got {}", replies.len());
    };
    reply
        .attrs
        .iter()
        .find_map(|a| match a {
            DstAttr::Size(s) => Some(*s),
            _ => None,
        })
        .ok_or_else(|| anyhow!("reply lacks DST_A_SIZE"))
}

/// What `DST_CMD_DEV_ADD` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRequest {
    /// Export node to connect to.
    pub addr: SocketAddr,
    /// N of `/dev/dstN` (none: the module picks the lowest free one).
    pub index: Option<u32>,
    /// Largest request in 4 KiB pages (none: the module's default).
    pub max_io_pages: Option<u32>,
    /// Requests in flight (none: the module's default).
    pub queue_depth: Option<u32>,
    /// Timeouts and retry limits (each none: the module's default).
    pub settings: DeviceSettings,
    /// Hardware queues (none: not sent, the module's default).
    pub queues: Option<u32>,
    /// Protection, algorithm and key (each none: not sent).
    pub security: SecurityAttrs,
    /// The identity the export fences by, not 0 (none: not sent, the module
    /// picks a random one).
    pub client_id: Option<u64>,
    /// The identity of the export to accept (none: not sent, the module
    /// pins the first one it reaches).
    pub export_name: Option<String>,
    /// This node's identity (none: not sent, the module's default, the host
    /// name).
    pub client_name: Option<String>,
    /// Ask for reads only (`DST_A_READ_ONLY`): the device is read-only and
    /// never holds the export's write access.
    pub read_only: bool,
}

impl DeviceRequest {
    /// The request's attributes; optional ones only when given.
    pub fn attrs(&self) -> Vec<DstAttr> {
        let mut attrs = addr_attrs(self.addr).to_vec();
        attrs.extend(self.index.map(DstAttr::Index));
        attrs.extend(self.max_io_pages.map(DstAttr::MaxIoPages));
        attrs.extend(self.queue_depth.map(DstAttr::QueueDepth));
        attrs.extend(self.settings.attrs());
        attrs.extend(self.queues.map(DstAttr::Queues));
        attrs.extend(self.security.attrs());
        attrs.extend(self.client_id.map(DstAttr::ClientId));
        attrs.extend(self.export_name.clone().map(DstAttr::Name));
        attrs.extend(self.client_name.clone().map(DstAttr::ClientName));
        if self.read_only {
            attrs.push(DstAttr::ReadOnly);
        }
        attrs
    }
}

/// The settings of a device that `DST_CMD_DEV_ADD` takes, `DST_CMD_DEV_SET`
/// changes on a live device and `DST_CMD_LIST` reports: timeouts in
/// milliseconds and the resend limit. `None`: not given (requests), not
/// reported (replies).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceSettings {
    /// `DST_A_REQ_TIMEOUT_MS`.
    pub req_timeout_ms: Option<u32>,
    /// `DST_A_MAX_RESENDS`.
    pub max_resends: Option<u32>,
    /// `DST_A_RECONNECT_DELAY_MS`.
    pub reconnect_delay_ms: Option<u32>,
    /// `DST_A_PING_INTERVAL_MS` (0: no pings).
    pub ping_interval_ms: Option<u32>,
    /// `DST_A_PING_TIMEOUT_MS`.
    pub ping_timeout_ms: Option<u32>,
    /// `DST_A_LOSS_TIMEOUT_MS`.
    pub loss_timeout_ms: Option<u32>,
}

impl DeviceSettings {
    /// The settings with their JSON names (also the documented names), in
    /// attribute order.
    pub fn named(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("req_timeout_ms", self.req_timeout_ms),
            ("max_resends", self.max_resends),
            ("reconnect_delay_ms", self.reconnect_delay_ms),
            ("ping_interval_ms", self.ping_interval_ms),
            ("ping_timeout_ms", self.ping_timeout_ms),
            ("loss_timeout_ms", self.loss_timeout_ms),
        ]
    }

    /// True if no setting is given.
    pub fn is_empty(&self) -> bool {
        self.named().iter().all(|(_, v)| v.is_none())
    }

    /// The attributes of the settings given, in attribute order.
    pub fn attrs(&self) -> Vec<DstAttr> {
        let mut attrs = Vec::new();
        attrs.extend(self.req_timeout_ms.map(DstAttr::ReqTimeoutMs));
        attrs.extend(self.max_resends.map(DstAttr::MaxResends));
        attrs.extend(self.reconnect_delay_ms.map(DstAttr::ReconnectDelayMs));
        attrs.extend(self.ping_interval_ms.map(DstAttr::PingIntervalMs));
        attrs.extend(self.ping_timeout_ms.map(DstAttr::PingTimeoutMs));
        attrs.extend(self.loss_timeout_ms.map(DstAttr::LossTimeoutMs));
        attrs
    }

    /// Takes the value of `attr` if it is one of the settings; false if not.
    fn absorb(&mut self, attr: &DstAttr) -> bool {
        let slot = match attr {
            DstAttr::ReqTimeoutMs(v) => (&mut self.req_timeout_ms, *v),
            DstAttr::MaxResends(v) => (&mut self.max_resends, *v),
            DstAttr::ReconnectDelayMs(v) => (&mut self.reconnect_delay_ms, *v),
            DstAttr::PingIntervalMs(v) => (&mut self.ping_interval_ms, *v),
            DstAttr::PingTimeoutMs(v) => (&mut self.ping_timeout_ms, *v),
            DstAttr::LossTimeoutMs(v) => (&mut self.loss_timeout_ms, *v),
            _ => return false,
        };
        *slot.0 = Some(slot.1);
        true
    }
}

/// What `DST_CMD_LIST` reports about a device's activity: requests in
/// flight and counters since the device was created. `None`: not reported
/// (an older module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// `DST_A_IN_FLIGHT`: requests queued or sent.
    pub in_flight: Option<u32>,
    /// `DST_A_RECONNECTS`: connections re-established.
    pub reconnects: Option<u64>,
    /// `DST_A_RESENDS`: requests resent.
    pub resends: Option<u64>,
    /// `DST_A_TIMEOUTS`: request or ping timeouts.
    pub timeouts: Option<u64>,
    /// `DST_A_IO_ERRORS`: requests ended with an error.
    pub io_errors: Option<u64>,
    /// `DST_A_BYTES_READ`.
    pub bytes_read: Option<u64>,
    /// `DST_A_BYTES_WRITTEN`.
    pub bytes_written: Option<u64>,
}

impl DeviceCounters {
    /// Takes the value of `attr` if it is one of the counters; false if not.
    fn absorb(&mut self, attr: &DstAttr) -> bool {
        let (slot, value) = match attr {
            DstAttr::InFlight(v) => {
                self.in_flight = Some(*v);
                return true;
            }
            DstAttr::Reconnects(v) => (&mut self.reconnects, *v),
            DstAttr::Resends(v) => (&mut self.resends, *v),
            DstAttr::Timeouts(v) => (&mut self.timeouts, *v),
            DstAttr::IoErrors(v) => (&mut self.io_errors, *v),
            DstAttr::BytesRead(v) => (&mut self.bytes_read, *v),
            DstAttr::BytesWritten(v) => (&mut self.bytes_written, *v),
            _ => return false,
        };
        *slot = Some(value);
        true
    }
}

/// The module-wide settings `DST_CMD_CONFIG` changes (any non-empty
/// subset) and `DST_CMD_STATUS` reports. `None`: not given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleSettings {
    /// `DST_A_CRYPTO_THREADS`: workers of the crypto pool (0: inline).
    pub crypto_threads: Option<u32>,
    /// `DST_A_REKEY_MIB`: a keyed connection replaces its key after
    /// protecting this many MiB.
    pub rekey_mib: Option<u32>,
    /// `DST_A_REKEY_SECONDS`: ... or after this many seconds.
    pub rekey_seconds: Option<u32>,
}

impl ModuleSettings {
    /// True if no setting is given.
    pub fn is_empty(&self) -> bool {
        self.attrs().is_empty()
    }

    /// The attributes of the settings given, in attribute order.
    pub fn attrs(&self) -> Vec<DstAttr> {
        let mut attrs = Vec::new();
        attrs.extend(self.crypto_threads.map(DstAttr::CryptoThreads));
        attrs.extend(self.rekey_mib.map(DstAttr::RekeyMib));
        attrs.extend(self.rekey_seconds.map(DstAttr::RekeySeconds));
        attrs
    }
}

/// Attributes of `DST_CMD_CONFIG`: the settings given.
pub fn config_attrs(settings: &ModuleSettings) -> Vec<DstAttr> {
    settings.attrs()
}

/// Attributes of `DST_CMD_DEV_DEL`: the device, and `DST_A_FORCE` to delete
/// it even if it is open.
pub fn dev_del_attrs(index: u32, force: bool) -> Vec<DstAttr> {
    let mut attrs = vec![DstAttr::Index(index)];
    if force {
        attrs.push(DstAttr::Force);
    }
    attrs
}

/// Attributes of `DST_CMD_DEV_SET`: the device, then the settings to change.
pub fn dev_set_attrs(index: u32, settings: &DeviceSettings) -> Vec<DstAttr> {
    let mut attrs = vec![DstAttr::Index(index)];
    attrs.extend(settings.attrs());
    attrs
}

/// The decoded reply of `DST_CMD_DEV_ADD`: the new device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// N of `/dev/dstN`.
    pub index: u32,
    /// Disk name, `dstN`.
    pub disk_name: String,
}

impl NewDevice {
    /// Extracts the new device from the replies of `DST_CMD_DEV_ADD`. The
    /// disk name defaults to `dst<index>` if the reply lacks it.
    pub fn from_replies(replies: &[DstMessage]) -> Result<Self> {
        let [reply] = replies else {
            bail!("expected one reply, got {}", replies.len());
        };
        let mut index = None;
        let mut disk_name = None;
        for attr in &reply.attrs {
            match attr {
                DstAttr::Index(i) => index = Some(*i),
                DstAttr::DiskName(n) => disk_name = Some(n.clone()),
                _ => {}
            }
        }
        let index = index.ok_or_else(|| anyhow!("reply lacks DST_A_INDEX"))?;
        let disk_name = disk_name.unwrap_or_else(|| format!("dst{index}"));
        if disk_name.is_empty() || disk_name.contains('/') {
            bail!("reply has a bad DST_A_DISK_NAME {disk_name:?}");
        }
        Ok(Self { index, disk_name })
    }

    /// The device node, `/dev/dstN`.
    pub fn dev_path(&self) -> String {
        format!("/dev/{}", self.disk_name)
    }
}

/// State of a device or of an export's listener (`enum dst_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryState {
    /// `DST_STATE_CONNECTED`: device connected, export listening.
    Connected,
    /// `DST_STATE_RECONNECTING`: device lost its connection; IO waits.
    Reconnecting,
    /// `DST_STATE_CLOSING`: being deleted.
    Closing,
    /// `DST_STATE_FAILED`: lost past the loss timeout; IO fails.
    Failed,
    /// A state this tool does not know.
    Other(u32),
}

impl From<u32> for EntryState {
    fn from(n: u32) -> Self {
        match n {
            uapi::DST_STATE_CONNECTED => EntryState::Connected,
            uapi::DST_STATE_RECONNECTING => EntryState::Reconnecting,
            uapi::DST_STATE_CLOSING => EntryState::Closing,
            uapi::DST_STATE_FAILED => EntryState::Failed,
            n => EntryState::Other(n),
        }
    }
}

/// What a `DST_CMD_LIST` entry describes, with the kind's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// `DST_KIND_EXPORT`.
    Export {
        /// Block device served (`DST_A_PATH`).
        path: String,
        /// Connected local nodes (`DST_A_SESSIONS`).
        sessions: u32,
        /// N of `exportN` in events (`DST_A_INDEX`), if reported.
        index: Option<u32>,
        /// The allow-list (`DST_A_ALLOW` entries); empty: any client.
        allow: Vec<AllowRule>,
        /// Clients refused (`DST_A_REFUSED`), if reported.
        refused: Option<u64>,
        /// The export's identity (`DST_A_NAME`), if reported and not empty.
        name: Option<String>,
        /// Any number of local nodes may write (`DST_A_SHARED`); false also
        /// for a module older than the one-writer rule.
        shared: bool,
        /// Who holds the write access (`DST_A_WRITER_*`), if anyone does
        /// and the module reports it.
        writer: Option<Writer>,
    },
    /// `DST_KIND_DEVICE`.
    Device {
        /// N of `/dev/dstN` (`DST_A_INDEX`).
        index: u32,
        /// `dstN` (`DST_A_DISK_NAME`).
        disk_name: String,
        /// Requests in flight (`DST_A_QUEUE_DEPTH`).
        queue_depth: u32,
        /// Timeouts and resend limit, as far as reported.
        settings: DeviceSettings,
        /// Requests in flight and counters, as far as reported.
        counters: DeviceCounters,
        /// Hardware queues (`DST_A_QUEUES`), if reported.
        queues: Option<u32>,
        /// The identity the export fences by (`DST_A_CLIENT_ID`), if
        /// reported.
        client_id: Option<u64>,
        /// The identity of the export the device accepts (`DST_A_NAME`),
        /// pinned or given, if reported and not empty.
        export_name: Option<String>,
        /// The device's own identity (`DST_A_CLIENT_NAME`), if reported and
        /// not empty.
        client_name: Option<String>,
    },
}

/// The local node that holds an export's write access, as `DST_CMD_LIST`
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writer {
    /// Its identity (`DST_A_WRITER_NAME`, its `--client-name`).
    pub name: String,
    /// The address and port it last connected from (`DST_A_WRITER_ADDR`,
    /// `DST_A_WRITER_PORT`), if known.
    pub addr: Option<SocketAddr>,
}

/// One export or device, decoded from a `DST_CMD_LIST` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// Export or device, and its own fields.
    pub kind: EntryKind,
    /// Export: listening address; device: the export node's address.
    pub addr: SocketAddr,
    /// Size in bytes.
    pub size: u64,
    /// Served or provided read-only.
    pub read_only: bool,
    /// Connection state.
    pub state: EntryState,
    /// Protection mode (`DST_A_PROTECTION`), if reported.
    pub protection: Option<u32>,
    /// Crypto algorithm (`DST_A_ALG`), if reported and not empty.
    pub alg: Option<String>,
    /// Frames that failed their checksum, tag or sequence check
    /// (`DST_A_INTEGRITY_ERRORS`), if reported.
    pub integrity_errors: Option<u64>,
}

impl ListEntry {
    /// Decodes one `DST_CMD_LIST` message. `Ok(None)`: a kind this tool does
    /// not know (a newer module), to be skipped.
    pub fn from_message(msg: &DstMessage) -> Result<Option<Self>> {
        let (mut kind, mut ip, mut port, mut size, mut read_only, mut state) =
            (None, None, None, 0, false, EntryState::Connected);
        let (mut path, mut sessions, mut index, mut disk_name, mut queue_depth) =
            (None, 0, None, None, 0);
        let (mut settings, mut counters) = (DeviceSettings::default(), DeviceCounters::default());
        let (mut allow, mut refused, mut queues, mut client_id) = (Vec::new(), None, None, None);
        let (mut protection, mut alg, mut integrity_errors) = (None, None, None);
        let (mut name, mut client_name) = (None, None);
        let (mut shared, mut writer_name, mut writer_ip, mut writer_port) =
            (false, None, None, None);
        for attr in &msg.attrs {
            if settings.absorb(attr) || counters.absorb(attr) {
                continue;
            }
            match attr {
                DstAttr::Kind(k) => kind = Some(*k),
                DstAttr::Addr(a) => ip = Some(*a),
                DstAttr::Port(p) => port = Some(*p),
                DstAttr::Size(s) => size = *s,
                DstAttr::ReadOnly => read_only = true,
                DstAttr::State(s) => state = EntryState::from(*s),
                DstAttr::Path(p) => path = Some(p.clone()),
                DstAttr::Sessions(n) => sessions = *n,
                DstAttr::Index(i) => index = Some(*i),
                DstAttr::DiskName(n) => disk_name = Some(n.clone()),
                DstAttr::QueueDepth(d) => queue_depth = *d,
                DstAttr::Allow(nested) => allow.push(allow_rule(nested)?),
                DstAttr::Refused(n) => refused = Some(*n),
                DstAttr::Queues(n) => queues = Some(*n),
                DstAttr::ClientId(id) => client_id = Some(*id),
                DstAttr::Protection(p) => protection = Some(*p),
                DstAttr::Alg(a) if !a.is_empty() => alg = Some(a.clone()),
                DstAttr::IntegrityErrors(n) => integrity_errors = Some(*n),
                DstAttr::Name(n) if !n.is_empty() => name = Some(n.clone()),
                DstAttr::ClientName(n) if !n.is_empty() => client_name = Some(n.clone()),
                DstAttr::Shared => shared = true,
                DstAttr::WriterName(n) if !n.is_empty() => writer_name = Some(n.clone()),
                DstAttr::WriterAddr(a) => writer_ip = Some(*a),
                DstAttr::WriterPort(p) => writer_port = Some(*p),
                _ => {}
            }
        }
        let kind = match kind.ok_or_else(|| anyhow!("list entry lacks DST_A_KIND"))? {
            uapi::DST_KIND_EXPORT => EntryKind::Export {
                path: path.ok_or_else(|| anyhow!("export entry lacks DST_A_PATH"))?,
                sessions,
                index,
                allow,
                refused,
                name,
                shared,
                // An address without a name says nothing: no holder.
                writer: writer_name.map(|name| Writer {
                    name,
                    addr: writer_ip
                        .zip(writer_port)
                        .map(|(ip, port)| SocketAddr::new(ip, port)),
                }),
            },
            uapi::DST_KIND_DEVICE => {
                let index = index.ok_or_else(|| anyhow!("device entry lacks DST_A_INDEX"))?;
                EntryKind::Device {
                    index,
                    disk_name: disk_name.unwrap_or_else(|| format!("dst{index}")),
                    queue_depth,
                    settings,
                    counters,
                    queues,
                    client_id,
                    export_name: name,
                    client_name,
                }
            }
            _ => return Ok(None),
        };
        let ip = ip.ok_or_else(|| anyhow!("list entry lacks DST_A_ADDR"))?;
        let port = port.ok_or_else(|| anyhow!("list entry lacks DST_A_PORT"))?;
        Ok(Some(Self {
            kind,
            addr: SocketAddr::new(ip, port),
            size,
            read_only,
            state,
            protection,
            alg,
            integrity_errors,
        }))
    }

    /// Decodes a whole `DST_CMD_LIST` dump, skipping unknown kinds.
    pub fn from_dump(msgs: &[DstMessage]) -> Result<Vec<Self>> {
        let mut entries = Vec::new();
        for (i, msg) in msgs.iter().enumerate() {
            let entry = Self::from_message(msg).map_err(|e| e.context(format!("entry {i}")))?;
            entries.extend(entry);
        }
        Ok(entries)
    }
}

/// Who a `DST_CMD_EVENT` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSubject {
    /// `/dev/dstN` (device events carry no `DST_A_KIND`, or
    /// `DST_KIND_DEVICE`).
    Device,
    /// An export (`DST_A_KIND` = `DST_KIND_EXPORT`), named `exportN`.
    Export,
}

/// A decoded `DST_CMD_EVENT` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Device or export.
    pub subject: EventSubject,
    /// N of `dstN` or `exportN` (`DST_A_INDEX`).
    pub index: u32,
    /// `DST_A_DISK_NAME`, if sent.
    pub disk_name: Option<String>,
    /// `enum dst_event` (`DST_A_EVENT`).
    pub event: u32,
    /// Address of an export's client (`DST_A_PEER_ADDR`).
    pub peer_addr: Option<IpAddr>,
    /// Port of an export's client (`DST_A_PEER_PORT`).
    pub peer_port: Option<u16>,
    /// Why a client was refused (`DST_A_MESSAGE`).
    pub message: Option<String>,
}

impl Event {
    /// Decodes a multicast message. `Ok(None)`: not a `DST_CMD_EVENT`.
    pub fn from_message(msg: &DstMessage) -> Result<Option<Self>> {
        if msg.cmd != DstCmd::Event {
            return Ok(None);
        }
        let mut subject = EventSubject::Device;
        let (mut index, mut disk_name, mut event) = (None, None, None);
        let (mut peer_addr, mut peer_port, mut message) = (None, None, None);
        for attr in &msg.attrs {
            match attr {
                DstAttr::Kind(uapi::DST_KIND_EXPORT) => subject = EventSubject::Export,
                DstAttr::Index(i) => index = Some(*i),
                DstAttr::DiskName(n) => disk_name = Some(n.clone()),
                DstAttr::Event(e) => event = Some(*e),
                DstAttr::PeerAddr(a) => peer_addr = Some(*a),
                DstAttr::PeerPort(p) => peer_port = Some(*p),
                DstAttr::Message(m) => message = Some(m.clone()),
                _ => {}
            }
        }
        Ok(Some(Self {
            subject,
            index: index.ok_or_else(|| anyhow!("event lacks DST_A_INDEX"))?,
            disk_name,
            event: event.ok_or_else(|| anyhow!("event lacks DST_A_EVENT"))?,
            peer_addr,
            peer_port,
            message,
        }))
    }

    /// `dst0`, `export2`.
    pub fn name(&self) -> String {
        match self.subject {
            EventSubject::Device => self
                .disk_name
                .clone()
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .unwrap_or_else(|| format!("dst{}", self.index)),
            EventSubject::Export => format!("export{}", self.index),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_generic::GenlMessage;

    fn status_reply() -> DstMessage {
        DstMessage::new(
            DstCmd::Status,
            vec![DstAttr::Version("0.1.0".into()), DstAttr::ProtoVersion(1)],
        )
    }

    fn emit(msg: &DstMessage) -> Vec<u8> {
        let mut buf = vec![0xff; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn status_attrs_wire_format() {
        let bytes = emit(&status_reply());
        #[rustfmt::skip]
        let expected = [
            10, 0, 2, 0, b'0', b'.', b'1', b'.', b'0', 0, 0, 0, // len 10, DST_A_VERSION, pad 2
            8, 0, 3, 0, 1, 0, 0, 0, // len 8, DST_A_PROTO_VERSION, 1
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn status_reply_round_trip() {
        let msg = status_reply();
        let bytes = emit(&msg);
        let header = GenlHeader {
            cmd: uapi::DST_CMD_STATUS,
            version: uapi::DST_GENL_VERSION,
        };
        let parsed = DstMessage::parse_with_param(&bytes, header).unwrap();
        assert_eq!(parsed, msg);
        let status = Status::from_replies(&[parsed]).unwrap();
        assert_eq!(
            status,
            Status {
                version: "0.1.0".into(),
                protocol: 1,
                crypto_threads: None,
                rekey_mib: None,
                rekey_seconds: None,
            }
        );
        assert_eq!(status.to_text(), "dst module 0.1.0, wire protocol 1");
        let json: serde_json::Value =
            serde_json::from_str(&crate::json::status_json(&status, &[])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"version": "0.1.0", "protocol": 1, "exports": [], "devices": []})
        );
    }

    #[test]
    fn full_netlink_message_round_trip() {
        let mut genl = GenlMessage::from_payload(status_reply());
        genl.set_resolved_family_id(0x1234);
        let mut nl = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(genl));
        nl.header.flags = NLM_F_REQUEST;
        nl.header.sequence_number = 7;
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        assert_eq!(u16::from_ne_bytes([buf[4], buf[5]]), 0x1234);
        assert_eq!(buf[16], uapi::DST_CMD_STATUS);
        assert_eq!(buf[17], uapi::DST_GENL_VERSION);

        let back = NetlinkMessage::<GenlMessage<DstMessage>>::deserialize(&buf).unwrap();
        assert_eq!(back.header.sequence_number, 7);
        let NetlinkPayload::InnerMessage(genl) = back.payload else {
            panic!("not an inner message: {:?}", back.payload);
        };
        assert_eq!(genl.payload, status_reply());
    }

    #[test]
    fn unknown_attrs_and_commands_are_kept() {
        let msg = DstMessage::new(
            DstCmd::Other(200),
            vec![
                DstAttr::Other(DefaultNla::new(uapi::DST_A_PAD, vec![])),
                DstAttr::Other(DefaultNla::new(99, vec![1, 2, 3, 4, 5])),
                DstAttr::ProtoVersion(7),
            ],
        );
        let bytes = emit(&msg);
        let header = GenlHeader {
            cmd: 200,
            version: 1,
        };
        let parsed = DstMessage::parse_with_param(&bytes, header).unwrap();
        assert_eq!(parsed, msg);
    }

    #[test]
    fn status_needs_both_attrs() {
        let partial = DstMessage::new(DstCmd::Status, vec![DstAttr::ProtoVersion(1)]);
        let err = Status::from_replies(&[partial]).unwrap_err();
        assert!(err.to_string().contains("DST_A_VERSION"), "{err}");
        assert!(Status::from_replies(&[]).is_err());
    }

    #[test]
    fn config_wire_format() {
        // Each setting only when given, in attribute order.
        let threads = ModuleSettings {
            crypto_threads: Some(4),
            ..Default::default()
        };
        let msg = DstMessage::new(DstCmd::Config, config_attrs(&threads));
        assert_eq!(
            emit(&msg),
            nla(uapi::DST_A_CRYPTO_THREADS, &4u32.to_ne_bytes())
        );
        let rekey = ModuleSettings {
            rekey_mib: Some(65536),
            rekey_seconds: Some(3600),
            ..Default::default()
        };
        let msg = DstMessage::new(DstCmd::Config, config_attrs(&rekey));
        let mut expected = nla(uapi::DST_A_REKEY_MIB, &65536u32.to_ne_bytes());
        expected.extend(nla(uapi::DST_A_REKEY_SECONDS, &3600u32.to_ne_bytes()));
        assert_eq!(emit(&msg), expected);
        #[rustfmt::skip]
        let literal = [
            8, 0, 45, 0, 0, 0, 1, 0, // len 8, DST_A_REKEY_MIB, 65536
            8, 0, 46, 0, 0x10, 0x0e, 0, 0, // len 8, DST_A_REKEY_SECONDS, 3600
        ];
        if cfg!(target_endian = "little") {
            assert_eq!(emit(&msg), literal);
        }
        assert_eq!(parse(&emit(&msg), uapi::DST_CMD_CONFIG), msg);
        let all = ModuleSettings {
            crypto_threads: Some(0),
            rekey_mib: Some(1),
            rekey_seconds: Some(86400),
        };
        assert_eq!(
            config_attrs(&all),
            vec![
                DstAttr::CryptoThreads(0),
                DstAttr::RekeyMib(1),
                DstAttr::RekeySeconds(86400)
            ]
        );
        assert!(!all.is_empty() && !rekey.is_empty() && !threads.is_empty());
        assert!(ModuleSettings::default().is_empty());
        assert!(config_attrs(&ModuleSettings::default()).is_empty());
    }

    #[test]
    fn status_with_module_settings() {
        let mut reply = status_reply();
        reply.attrs.extend([
            DstAttr::CryptoThreads(4),
            DstAttr::RekeyMib(65536),
            DstAttr::RekeySeconds(3600),
        ]);
        let parsed = parse(&emit(&reply), uapi::DST_CMD_STATUS);
        let status = Status::from_replies(&[parsed]).unwrap();
        assert_eq!(status.crypto_threads, Some(4));
        assert_eq!(status.rekey_mib, Some(65536));
        assert_eq!(status.rekey_seconds, Some(3600));
        assert_eq!(
            crate::json::status_json(&status, &[]),
            "{\"version\": \"0.1.0\", \"protocol\": 1, \"crypto_threads\": 4, \"rekey_mib\": 65536, \
             \"rekey_seconds\": 3600, \"exports\": [], \"devices\": []}\n"
        );
        // Each one only if reported.
        let only_seconds = Status {
            crypto_threads: None,
            rekey_mib: None,
            ..status
        };
        assert_eq!(
            crate::json::status_json(&only_seconds, &[]),
            "{\"version\": \"0.1.0\", \"protocol\": 1, \"rekey_seconds\": 3600, \"exports\": [], \
             \"devices\": []}\n"
        );
    }

    #[test]
    fn json_escapes_version() {
        let s = Status {
            version: "1\"x".into(),
            protocol: 2,
            crypto_threads: None,
            rekey_mib: None,
            rekey_seconds: None,
        };
        let json: serde_json::Value =
            serde_json::from_str(&crate::json::status_json(&s, &[])).unwrap();
        assert_eq!(json["version"], "1\"x");
    }

    fn parse(bytes: &[u8], cmd: u8) -> DstMessage {
        let header = GenlHeader {
            cmd,
            version: uapi::DST_GENL_VERSION,
        };
        DstMessage::parse_with_param(bytes, header).unwrap()
    }

    /// One attribute's bytes: header (length, type) and padded payload.
    fn nla(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        out.extend(kind.to_ne_bytes());
        out.extend(payload);
        out.resize((out.len() + 3) & !3, 0);
        out
    }

    #[test]
    fn export_add_wire_format() {
        let req = ExportRequest {
            shared: false,
            addr: "10.0.0.2:1025".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: true,
            size: Some(1 << 30),
            max_io_pages: Some(256),
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        let msg = DstMessage::new(DstCmd::ExportAdd, req.attrs());
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
        expected.extend(nla(uapi::DST_A_READ_ONLY, &[]));
        expected.extend(nla(uapi::DST_A_SIZE, &(1u64 << 30).to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_MAX_IO_PAGES, &256u32.to_ne_bytes()));
        assert_eq!(emit(&msg), expected);
        // Spot-check the layout by hand: the port is 6 bytes padded to 8, the
        // flag a bare 4-byte header, the u64 12 bytes without DST_A_PAD.
        assert_eq!(&expected[8..16], &[6, 0, 5, 0, 1, 4, 0, 0][..]);
        assert_eq!(&expected[32..36], &[4, 0, 7, 0][..]);
        assert_eq!(&expected[36..40], &[12, 0, 8, 0][..]);
        assert_eq!(expected.len(), 56);
        assert_eq!(u8::from(msg.cmd), 2);
    }

    #[test]
    fn optional_attrs_only_when_given() {
        let req = ExportRequest {
            shared: false,
            addr: "[2001:db8::1]:2000".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        let ip: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            req.attrs(),
            vec![
                DstAttr::Addr(ip.into()),
                DstAttr::Port(2000),
                DstAttr::Path("/dev/sdb".into())
            ]
        );
        let bytes = emit(&DstMessage::new(DstCmd::ExportAdd, req.attrs()));
        assert_eq!(&bytes[..4], &[20, 0, 4, 0][..]); // 16-byte address
        assert_eq!(&bytes[4..20], &ip.octets()[..]); // network order
        assert_eq!(
            export_del_attrs("10.0.0.2:7".parse().unwrap(), None),
            vec![DstAttr::Addr([10, 0, 0, 2].into()), DstAttr::Port(7)]
        );
        assert_eq!(
            export_del_attrs("10.0.0.2:7".parse().unwrap(), Some("beta")),
            vec![
                DstAttr::Addr([10, 0, 0, 2].into()),
                DstAttr::Port(7),
                DstAttr::Name("beta".into())
            ]
        );
    }

    #[test]
    fn dev_add_and_del_wire_format() {
        let mut req = DeviceRequest {
            read_only: false,
            addr: "10.0.0.1:1025".parse().unwrap(),
            index: None,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            security: Default::default(),
            settings: DeviceSettings::default(),
            client_id: None,
            export_name: None,
            client_name: None,
        };
        assert_eq!(req.attrs().len(), 2);
        req.index = Some(3);
        req.max_io_pages = Some(1024);
        req.queue_depth = Some(64);
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 1]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_INDEX, &3u32.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_MAX_IO_PAGES, &1024u32.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_QUEUE_DEPTH, &64u32.to_ne_bytes()));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, req.attrs())),
            expected
        );
        // The client id last, a u64 in host order (the policy wants 8 bytes).
        req.client_id = Some(0x0123_4567_89ab_cdef);
        expected.extend(nla(
            uapi::DST_A_CLIENT_ID,
            &0x0123_4567_89ab_cdefu64.to_ne_bytes(),
        ));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, req.attrs())),
            expected
        );
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevDel, dev_del_attrs(5, false))),
            nla(uapi::DST_A_INDEX, &5u32.to_ne_bytes())
        );
        // --force: the flag after the index, without payload.
        let mut forced = nla(uapi::DST_A_INDEX, &5u32.to_ne_bytes());
        forced.extend(nla(uapi::DST_A_FORCE, &[]));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevDel, dev_del_attrs(5, true))),
            forced
        );
        assert_eq!(
            parse(&forced, uapi::DST_CMD_DEV_DEL).attrs,
            vec![DstAttr::Index(5), DstAttr::Force]
        );
    }

    /// `--read-only` of local and `--shared` of export are flags last in
    /// their requests; `release` sends the export's address, as unexport.
    #[test]
    fn one_writer_wire_format() {
        let mut dev = DeviceRequest {
            read_only: true,
            addr: "10.0.0.1:1025".parse().unwrap(),
            index: None,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            security: Default::default(),
            settings: DeviceSettings::default(),
            client_id: None,
            export_name: None,
            client_name: Some("web1".into()),
        };
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 1]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_CLIENT_NAME, b"web1\0"));
        expected.extend(nla(uapi::DST_A_READ_ONLY, &[]));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs())),
            expected
        );
        dev.read_only = false;
        assert!(!dev.attrs().contains(&DstAttr::ReadOnly));
        let mut exp = ExportRequest {
            shared: true,
            addr: "10.0.0.2:1025".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        assert_eq!(exp.attrs().last(), Some(&DstAttr::Shared));
        let bytes = emit(&DstMessage::new(DstCmd::ExportAdd, exp.attrs()));
        assert!(bytes.ends_with(&nla(uapi::DST_A_SHARED, &[])));
        exp.shared = false;
        assert!(!exp.attrs().contains(&DstAttr::Shared));
        assert_eq!(
            u8::from(DstCmd::ExportRelease),
            uapi::DST_CMD_EXPORT_RELEASE
        );
        assert_eq!(DstCmd::from(10), DstCmd::ExportRelease);
    }

    /// An export's holder: name, address and port; a name alone; an
    /// address without a name is no holder; a shared export.
    #[test]
    fn list_entries_with_a_writer() {
        let export = |extra: Vec<u8>| {
            let mut b = nla(uapi::DST_A_KIND, &uapi::DST_KIND_EXPORT.to_ne_bytes());
            b.extend(nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]));
            b.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
            b.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
            b.extend(extra);
            let msg = parse(&b, uapi::DST_CMD_LIST);
            match ListEntry::from_message(&msg).unwrap().unwrap().kind {
                EntryKind::Export { shared, writer, .. } => (shared, writer),
                other => panic!("{other:?}"),
            }
        };
        let ip6: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
        let mut holder = nla(uapi::DST_A_WRITER_NAME, b"web1\0");
        holder.extend(nla(uapi::DST_A_WRITER_ADDR, &ip6.octets()));
        holder.extend(nla(uapi::DST_A_WRITER_PORT, &40112u16.to_ne_bytes()));
        assert_eq!(
            export(holder),
            (
                false,
                Some(Writer {
                    name: "web1".into(),
                    addr: Some("[2001:db8::7]:40112".parse().unwrap()),
                })
            )
        );
        assert_eq!(
            export(nla(uapi::DST_A_WRITER_NAME, b"web1\0")),
            (
                false,
                Some(Writer {
                    name: "web1".into(),
                    addr: None
                })
            )
        );
        let mut nameless = nla(uapi::DST_A_WRITER_ADDR, &[10, 0, 0, 7]);
        nameless.extend(nla(uapi::DST_A_WRITER_PORT, &1u16.to_ne_bytes()));
        assert_eq!(export(nameless), (false, None));
        assert_eq!(export(nla(uapi::DST_A_WRITER_NAME, b"\0")), (false, None));
        assert_eq!(export(nla(uapi::DST_A_SHARED, &[])), (true, None));
        assert_eq!(export(Vec::new()), (false, None));
        // A bad address is an error, not a guess.
        let bad = nla(uapi::DST_A_WRITER_ADDR, &[1, 2, 3]);
        let mut b = nla(uapi::DST_A_KIND, &uapi::DST_KIND_EXPORT.to_ne_bytes());
        b.extend(bad);
        let header = GenlHeader {
            cmd: uapi::DST_CMD_LIST,
            version: uapi::DST_GENL_VERSION,
        };
        assert!(DstMessage::parse_with_param(&b[..], header).is_err());
    }

    fn every_setting() -> DeviceSettings {
        DeviceSettings {
            req_timeout_ms: Some(2000),
            max_resends: Some(0),
            reconnect_delay_ms: Some(10),
            ping_interval_ms: Some(0),
            ping_timeout_ms: Some(3_600_000),
            loss_timeout_ms: Some(86_400_000),
        }
    }

    /// The attributes of [`every_setting`] as bytes, in attribute order.
    fn every_setting_bytes() -> Vec<u8> {
        let mut b = nla(uapi::DST_A_REQ_TIMEOUT_MS, &2000u32.to_ne_bytes());
        b.extend(nla(uapi::DST_A_MAX_RESENDS, &0u32.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_RECONNECT_DELAY_MS, &10u32.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PING_INTERVAL_MS, &0u32.to_ne_bytes()));
        b.extend(nla(
            uapi::DST_A_PING_TIMEOUT_MS,
            &3_600_000u32.to_ne_bytes(),
        ));
        b.extend(nla(
            uapi::DST_A_LOSS_TIMEOUT_MS,
            &86_400_000u32.to_ne_bytes(),
        ));
        b
    }

    #[test]
    fn dev_add_with_settings_wire_format() {
        let req = DeviceRequest {
            read_only: false,
            addr: "10.0.0.1:1025".parse().unwrap(),
            index: None,
            max_io_pages: None,
            queue_depth: Some(8),
            queues: None,
            security: Default::default(),
            settings: every_setting(),
            client_id: None,
            export_name: None,
            client_name: None,
        };
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 1]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_QUEUE_DEPTH, &8u32.to_ne_bytes()));
        expected.extend(every_setting_bytes());
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, req.attrs())),
            expected
        );
        // Each setting is one 8-byte attribute: 4 header + 4 value.
        assert_eq!(every_setting_bytes().len(), 6 * 8);
        assert_eq!(
            &every_setting_bytes()[..8],
            &[8, 0, 16, 0, 0xd0, 0x07, 0, 0][..]
        );
    }

    #[test]
    fn dev_set_wire_format() {
        let msg = DstMessage::new(DstCmd::DevSet, dev_set_attrs(4, &every_setting()));
        assert_eq!(u8::from(msg.cmd), 7);
        let mut expected = nla(uapi::DST_A_INDEX, &4u32.to_ne_bytes());
        expected.extend(every_setting_bytes());
        assert_eq!(emit(&msg), expected);
        // Only what is given is sent.
        let one = DeviceSettings {
            loss_timeout_ms: Some(3000),
            ..Default::default()
        };
        assert_eq!(
            dev_set_attrs(1, &one),
            vec![DstAttr::Index(1), DstAttr::LossTimeoutMs(3000)]
        );
        let mut expected = nla(uapi::DST_A_INDEX, &1u32.to_ne_bytes());
        expected.extend(nla(uapi::DST_A_LOSS_TIMEOUT_MS, &3000u32.to_ne_bytes()));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevSet, dev_set_attrs(1, &one))),
            expected
        );
        assert_eq!(dev_set_attrs(2, &DeviceSettings::default()).len(), 1);
        assert_eq!(DstCmd::from(uapi::DST_CMD_DEV_SET), DstCmd::DevSet);
    }

    #[test]
    fn settings_helpers() {
        assert!(DeviceSettings::default().is_empty());
        assert!(DeviceSettings::default().attrs().is_empty());
        let all = every_setting();
        assert!(!all.is_empty());
        assert_eq!(all.attrs().len(), 6);
        let names: Vec<_> = all.named().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "req_timeout_ms",
                "max_resends",
                "reconnect_delay_ms",
                "ping_interval_ms",
                "ping_timeout_ms",
                "loss_timeout_ms"
            ]
        );
        // A zero is a value, not "not given".
        let zero = DeviceSettings {
            max_resends: Some(0),
            ..Default::default()
        };
        assert!(!zero.is_empty());
        // Attributes back into settings.
        let mut back = DeviceSettings::default();
        for attr in all.attrs() {
            assert!(back.absorb(&attr), "{attr:?}");
        }
        assert_eq!(back, all);
        assert!(!back.absorb(&DstAttr::QueueDepth(1)));
        assert!(!back.absorb(&DstAttr::Reconnects(1)));
        let mut counters = DeviceCounters::default();
        assert!(counters.absorb(&DstAttr::InFlight(3)));
        assert!(counters.absorb(&DstAttr::BytesWritten(9)));
        assert!(!counters.absorb(&DstAttr::LossTimeoutMs(9)));
        assert!(!counters.absorb(&DstAttr::Size(9)));
        assert_eq!(counters.in_flight, Some(3));
        assert_eq!(counters.bytes_written, Some(9));
        assert_eq!(counters.reconnects, None);
    }

    #[test]
    fn every_attribute_round_trips() {
        let attrs = vec![
            DstAttr::Version("1.2".into()),
            DstAttr::ProtoVersion(1),
            DstAttr::Addr([192, 0, 2, 1].into()),
            DstAttr::Addr("::1".parse::<std::net::Ipv6Addr>().unwrap().into()),
            DstAttr::Port(65535),
            DstAttr::Path("/dev/disk/by-id/x".into()),
            DstAttr::ReadOnly,
            DstAttr::Size(u64::MAX - 1),
            DstAttr::MaxIoPages(1024),
            DstAttr::Index(1023),
            DstAttr::Kind(uapi::DST_KIND_DEVICE),
            DstAttr::DiskName("dst1023".into()),
            DstAttr::State(uapi::DST_STATE_CLOSING),
            DstAttr::Sessions(4),
            DstAttr::QueueDepth(128),
            DstAttr::ReqTimeoutMs(15000),
            DstAttr::MaxResends(10),
            DstAttr::ReconnectDelayMs(1000),
            DstAttr::PingIntervalMs(5000),
            DstAttr::PingTimeoutMs(10000),
            DstAttr::LossTimeoutMs(60000),
            DstAttr::Other(DefaultNla::new(uapi::DST_A_PAD, vec![])),
            DstAttr::Reconnects(u64::MAX),
            DstAttr::Other(DefaultNla::new(uapi::DST_A_PAD, vec![])),
            DstAttr::Resends(1 << 40),
            DstAttr::Event(uapi::DST_EVENT_DELETED),
            DstAttr::InFlight(u32::MAX),
            DstAttr::Timeouts(1),
            DstAttr::IoErrors(2),
            DstAttr::BytesRead(3),
            DstAttr::BytesWritten(4),
            DstAttr::State(uapi::DST_STATE_FAILED),
            DstAttr::ClientId(0xfedc_ba98_7654_3210),
            DstAttr::Force,
            DstAttr::Name("store1:sdb".into()),
            DstAttr::ClientName("~".into()),
            DstAttr::CryptoThreads(64),
            DstAttr::RekeyMib(1_048_576),
            DstAttr::RekeySeconds(86_400),
            DstAttr::KeyDesc("dst:pair1".into()),
            DstAttr::Client(vec![
                ClientAttr::Name("web1".into()),
                ClientAttr::Key(SecretKey::new(&[0xa5; 64])),
                ClientAttr::ReadOnly,
                ClientAttr::Other(DefaultNla::new(9, vec![1, 2, 3])),
            ]),
            DstAttr::Client(vec![
                ClientAttr::Name("backup".into()),
                ClientAttr::KeyDesc("dst:backup".into()),
            ]),
        ];
        let msg = DstMessage::new(DstCmd::List, attrs);
        assert_eq!(parse(&emit(&msg), uapi::DST_CMD_LIST), msg);
        for cmd in 0..=uapi::DST_CMD_MAX + 1 {
            assert_eq!(u8::from(DstCmd::from(cmd)), cmd);
        }
        assert_eq!(DstCmd::from(uapi::DST_CMD_DEV_DEL), DstCmd::DevDel);
    }

    #[test]
    fn malformed_attributes_are_refused() {
        for (kind, payload) in [
            (uapi::DST_A_ADDR, &[1, 2, 3, 4, 5][..]),
            (uapi::DST_A_PORT, &[1, 2, 3, 4][..]),
            (uapi::DST_A_SIZE, &[1, 2, 3, 4][..]),
            (uapi::DST_A_INDEX, &[1, 2][..]),
            (uapi::DST_A_REQ_TIMEOUT_MS, &[1, 2][..]),
            (uapi::DST_A_LOSS_TIMEOUT_MS, &[][..]),
            (uapi::DST_A_RECONNECTS, &[1, 2, 3, 4][..]),
            (uapi::DST_A_RESENDS, &[1][..]),
            (uapi::DST_A_IN_FLIGHT, &[1, 2, 3][..]),
            (uapi::DST_A_BYTES_WRITTEN, &[1, 2, 3, 4, 5, 6, 7][..]),
            (uapi::DST_A_DISK_NAME, &[0xff, 0xfe, 0][..]),
            (uapi::DST_A_CLIENT_ID, &[1, 2, 3, 4][..]),
            (uapi::DST_A_NAME, &[b'a', 0xff, 0][..]),
            (uapi::DST_A_CLIENT_NAME, &[0xc3, 0][..]),
            (uapi::DST_A_REKEY_MIB, &[1, 2][..]),
            (uapi::DST_A_REKEY_SECONDS, &[1, 2, 3, 4, 5, 6, 7, 8][..]),
            (uapi::DST_A_KEY_DESC, &[b'd', 0xff, 0][..]),
            (
                uapi::DST_A_CLIENT,
                &nla(uapi::DST_CLIENT_A_NAME, &[0xff, 0])[..],
            ),
            (
                uapi::DST_A_CLIENT,
                &nla(uapi::DST_CLIENT_A_KEY_DESC, &[0xc3, 0])[..],
            ),
            (uapi::DST_A_CLIENT, &[5, 0, 1][..]),
        ] {
            let header = GenlHeader {
                cmd: uapi::DST_CMD_LIST,
                version: 1,
            };
            let err = DstMessage::parse_with_param(&nla(kind, payload), header).unwrap_err();
            let name = uapi::attr_name(kind).unwrap();
            assert!(format!("{err}").contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn dev_add_reply() {
        // As the module sends it: DST_A_INDEX, then DST_A_DISK_NAME.
        let mut bytes = nla(uapi::DST_A_INDEX, &7u32.to_ne_bytes());
        bytes.extend(nla(uapi::DST_A_DISK_NAME, b"dst7\0"));
        let reply = parse(&bytes, uapi::DST_CMD_DEV_ADD);
        assert_eq!(reply.cmd, DstCmd::DevAdd);
        let dev = NewDevice::from_replies(&[reply]).unwrap();
        assert_eq!(
            dev,
            NewDevice {
                index: 7,
                disk_name: "dst7".into()
            }
        );
        assert_eq!(dev.dev_path(), "/dev/dst7");

        // Without the name: derived from the index.
        let only_index = DstMessage::new(DstCmd::DevAdd, vec![DstAttr::Index(2)]);
        let dev = NewDevice::from_replies(std::slice::from_ref(&only_index)).unwrap();
        assert_eq!(dev.dev_path(), "/dev/dst2");

        let no_index = DstMessage::new(DstCmd::DevAdd, vec![DstAttr::DiskName("dst1".into())]);
        let err = NewDevice::from_replies(&[no_index]).unwrap_err();
        assert!(err.to_string().contains("DST_A_INDEX"), "{err}");
        let bad_name = DstMessage::new(
            DstCmd::DevAdd,
            vec![DstAttr::Index(1), DstAttr::DiskName("../sda".into())],
        );
        assert!(NewDevice::from_replies(&[bad_name]).is_err());
        assert!(NewDevice::from_replies(&[]).is_err());
        assert!(NewDevice::from_replies(&[only_index.clone(), only_index]).is_err());
    }

    /// A `DST_CMD_LIST` export message as the module builds it, with the
    /// `DST_A_PAD` that `nla_put_u64_64bit` may insert before `DST_A_SIZE`.
    fn export_entry_bytes() -> Vec<u8> {
        let mut b = nla(uapi::DST_A_KIND, &uapi::DST_KIND_EXPORT.to_ne_bytes());
        b.extend(nla(
            uapi::DST_A_STATE,
            &uapi::DST_STATE_CONNECTED.to_ne_bytes(),
        ));
        b.extend(nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]));
        b.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_SIZE, &(512u64 << 20).to_ne_bytes()));
        b.extend(nla(uapi::DST_A_READ_ONLY, &[]));
        b.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
        b.extend(nla(uapi::DST_A_SESSIONS, &2u32.to_ne_bytes()));
        b
    }

    fn device_entry_bytes() -> Vec<u8> {
        let mut b = nla(uapi::DST_A_KIND, &uapi::DST_KIND_DEVICE.to_ne_bytes());
        b.extend(nla(
            uapi::DST_A_STATE,
            &uapi::DST_STATE_RECONNECTING.to_ne_bytes(),
        ));
        let ip: std::net::Ipv6Addr = "2001:db8::2".parse().unwrap();
        b.extend(nla(uapi::DST_A_ADDR, &ip.octets()));
        b.extend(nla(uapi::DST_A_PORT, &2000u16.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_SIZE, &4096u64.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_INDEX, &3u32.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_DISK_NAME, b"dst3\0"));
        b.extend(nla(uapi::DST_A_QUEUE_DEPTH, &128u32.to_ne_bytes()));
        b
    }

    #[test]
    fn list_entries() {
        let export = parse(&export_entry_bytes(), uapi::DST_CMD_LIST);
        let device = parse(&device_entry_bytes(), uapi::DST_CMD_LIST);
        let future = DstMessage::new(
            DstCmd::List,
            vec![
                DstAttr::Kind(99),
                DstAttr::Other(DefaultNla::new(60, vec![1])),
            ],
        );
        let entries = ListEntry::from_dump(&[export, future, device]).unwrap();
        assert_eq!(
            entries,
            vec![
                ListEntry {
                    kind: EntryKind::Export {
                        shared: false,
                        writer: None,
                        path: "/dev/sdb".into(),
                        sessions: 2,
                        index: None,
                        allow: vec![],
                        refused: None,
                        name: None,
                    },
                    addr: "10.0.0.2:1025".parse().unwrap(),
                    size: 512 << 20,
                    read_only: true,
                    state: EntryState::Connected,
                    protection: None,
                    alg: None,
                    integrity_errors: None,
                },
                ListEntry {
                    kind: EntryKind::Device {
                        index: 3,
                        disk_name: "dst3".into(),
                        queue_depth: 128,
                        settings: DeviceSettings::default(),
                        counters: DeviceCounters::default(),
                        queues: None,
                        client_id: None,
                        export_name: None,
                        client_name: None,
                    },
                    addr: "[2001:db8::2]:2000".parse().unwrap(),
                    size: 4096,
                    read_only: false,
                    state: EntryState::Reconnecting,
                    protection: None,
                    alg: None,
                    integrity_errors: None,
                },
            ]
        );
        assert_eq!(ListEntry::from_dump(&[]).unwrap(), vec![]);
    }

    #[test]
    fn list_entries_need_their_attributes() {
        let full = parse(&export_entry_bytes(), uapi::DST_CMD_LIST);
        for (kind, name) in [
            (uapi::DST_A_KIND, "DST_A_KIND"),
            (uapi::DST_A_ADDR, "DST_A_ADDR"),
            (uapi::DST_A_PORT, "DST_A_PORT"),
            (uapi::DST_A_PATH, "DST_A_PATH"),
        ] {
            let mut msg = full.clone();
            msg.attrs.retain(|a| a.kind() != kind);
            let err = ListEntry::from_dump(&[full.clone(), msg]).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.starts_with("entry 1: "), "{text}");
            assert!(text.contains(name), "{text}");
        }
        let mut device = parse(&device_entry_bytes(), uapi::DST_CMD_LIST);
        device.attrs.retain(|a| a.kind() != uapi::DST_A_INDEX);
        let err = ListEntry::from_message(&device).unwrap_err();
        assert!(err.to_string().contains("DST_A_INDEX"), "{err}");
        // Unknown state numbers are kept, missing optional values default.
        let mut device = parse(&device_entry_bytes(), uapi::DST_CMD_LIST);
        device
            .attrs
            .retain(|a| ![uapi::DST_A_DISK_NAME, uapi::DST_A_QUEUE_DEPTH].contains(&a.kind()));
        device.attrs.push(DstAttr::State(77));
        let entry = ListEntry::from_message(&device).unwrap().unwrap();
        assert_eq!(entry.state, EntryState::Other(77));
        assert_eq!(
            entry.kind,
            EntryKind::Device {
                index: 3,
                disk_name: "dst3".into(),
                queue_depth: 0,
                settings: DeviceSettings::default(),
                counters: DeviceCounters::default(),
                queues: None,
                client_id: None,
                export_name: None,
                client_name: None,
            }
        );
    }

    /// A device entry of a module with the fault-handling settings: the
    /// settings, then the u64 counters, each after a `DST_A_PAD` as
    /// `nla_put_u64_64bit` puts it when the counter would be misaligned.
    fn device_entry_with_settings_bytes() -> Vec<u8> {
        let mut b = nla(uapi::DST_A_KIND, &uapi::DST_KIND_DEVICE.to_ne_bytes());
        b.extend(nla(
            uapi::DST_A_STATE,
            &uapi::DST_STATE_FAILED.to_ne_bytes(),
        ));
        b.extend(nla(uapi::DST_A_ADDR, &[10, 9, 0, 1]));
        b.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_SIZE, &(512u64 << 20).to_ne_bytes()));
        b.extend(nla(uapi::DST_A_INDEX, &0u32.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_DISK_NAME, b"dst0\0"));
        b.extend(nla(uapi::DST_A_QUEUE_DEPTH, &128u32.to_ne_bytes()));
        b.extend(every_setting_bytes());
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_RECONNECTS, &3u64.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_RESENDS, &(1u64 << 33).to_ne_bytes()));
        b.extend(nla(uapi::DST_A_IN_FLIGHT, &16u32.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_TIMEOUTS, &2u64.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_IO_ERRORS, &5u64.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_BYTES_READ, &(7u64 << 30).to_ne_bytes()));
        b.extend(nla(uapi::DST_A_BYTES_WRITTEN, &0u64.to_ne_bytes()));
        b.extend(nla(uapi::DST_A_PAD, &[]));
        b.extend(nla(uapi::DST_A_CLIENT_ID, &u64::MAX.to_ne_bytes()));
        b
    }

    #[test]
    fn list_entry_with_settings_and_counters() {
        let msg = parse(&device_entry_with_settings_bytes(), uapi::DST_CMD_LIST);
        assert!(msg
            .attrs
            .contains(&DstAttr::Other(DefaultNla::new(uapi::DST_A_PAD, vec![]))));
        let entry = ListEntry::from_message(&msg).unwrap().unwrap();
        assert_eq!(
            entry,
            ListEntry {
                kind: EntryKind::Device {
                    index: 0,
                    disk_name: "dst0".into(),
                    queue_depth: 128,
                    settings: every_setting(),
                    counters: DeviceCounters {
                        in_flight: Some(16),
                        reconnects: Some(3),
                        resends: Some(1 << 33),
                        timeouts: Some(2),
                        io_errors: Some(5),
                        bytes_read: Some(7 << 30),
                        bytes_written: Some(0),
                    },
                    queues: None,
                    client_id: Some(u64::MAX),
                    export_name: None,
                    client_name: None,
                },
                addr: "10.9.0.1:1025".parse().unwrap(),
                size: 512 << 20,
                read_only: false,
                state: EntryState::Failed,
                protection: None,
                alg: None,
                integrity_errors: None,
            }
        );
        // Only some reported: the others stay unknown.
        let mut msg = msg;
        msg.attrs.retain(|a| {
            ![
                uapi::DST_A_PING_INTERVAL_MS,
                uapi::DST_A_RESENDS,
                uapi::DST_A_MAX_RESENDS,
            ]
            .contains(&a.kind())
        });
        let entry = ListEntry::from_message(&msg).unwrap().unwrap();
        let EntryKind::Device {
            settings, counters, ..
        } = entry.kind
        else {
            panic!("not a device: {entry:?}");
        };
        assert_eq!(settings.ping_interval_ms, None);
        assert_eq!(settings.max_resends, None);
        assert_eq!(settings.req_timeout_ms, Some(2000));
        assert_eq!(counters.reconnects, Some(3));
        assert_eq!(counters.resends, None);
        assert_eq!(counters.io_errors, Some(5));
    }

    #[test]
    fn every_state_number() {
        for (n, state) in [
            (uapi::DST_STATE_CONNECTED, EntryState::Connected),
            (uapi::DST_STATE_RECONNECTING, EntryState::Reconnecting),
            (uapi::DST_STATE_CLOSING, EntryState::Closing),
            (uapi::DST_STATE_FAILED, EntryState::Failed),
            (0, EntryState::Other(0)),
            (5, EntryState::Other(5)),
        ] {
            assert_eq!(EntryState::from(n), state, "{n}");
        }
    }

    #[test]
    fn identities_wire_format() {
        // EXPORT_ADD: DST_A_NAME last, NUL-terminated, padded to 4 bytes.
        let mut export = ExportRequest {
            shared: false,
            addr: "10.0.0.2:1025".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: Some("store1:sdb".into()),
        };
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
        let mut named = expected.clone();
        named.extend(nla(uapi::DST_A_NAME, b"store1:sdb\0"));
        let bytes = emit(&DstMessage::new(DstCmd::ExportAdd, export.attrs()));
        assert_eq!(bytes, named);
        // 4-byte header + 11 bytes, padded to 16; kind 43.
        assert_eq!(&named[named.len() - 16..][..4], &[15, 0, 43, 0][..]);
        assert_eq!(
            parse(&bytes, uapi::DST_CMD_EXPORT_ADD).attrs.last(),
            Some(&DstAttr::Name("store1:sdb".into()))
        );
        export.name = None;
        assert_eq!(
            emit(&DstMessage::new(DstCmd::ExportAdd, export.attrs())),
            expected
        );

        // DEV_ADD: the export's name (DST_A_NAME), then this node's
        // (DST_A_CLIENT_NAME), after everything else; each only when given.
        let mut dev = DeviceRequest {
            read_only: false,
            addr: "10.0.0.1:1025".parse().unwrap(),
            index: None,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            security: Default::default(),
            settings: DeviceSettings::default(),
            client_id: Some(7),
            export_name: Some("store1:sdb".into()),
            client_name: Some("web1".into()),
        };
        let mut base = nla(uapi::DST_A_ADDR, &[10, 0, 0, 1]);
        base.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        base.extend(nla(uapi::DST_A_CLIENT_ID, &7u64.to_ne_bytes()));
        let mut both = base.clone();
        both.extend(nla(uapi::DST_A_NAME, b"store1:sdb\0"));
        both.extend(nla(uapi::DST_A_CLIENT_NAME, b"web1\0"));
        assert_eq!(emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs())), both);
        // "web1\0" is 5 bytes: 4 + 5 = 9, padded to 12; kind 44.
        assert_eq!(&both[both.len() - 12..][..4], &[9, 0, 44, 0][..]);
        dev.export_name = None;
        let mut client_only = base.clone();
        client_only.extend(nla(uapi::DST_A_CLIENT_NAME, b"web1\0"));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs())),
            client_only
        );
        dev.client_name = None;
        assert_eq!(emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs())), base);
        // The longest name: 63 characters and the NUL, 68 bytes in all.
        let long = "x".repeat(63);
        dev.export_name = Some(long.clone());
        let bytes = emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs()));
        assert_eq!(bytes.len(), base.len() + 68);
        assert_eq!(
            parse(&bytes, uapi::DST_CMD_DEV_ADD).attrs.last(),
            Some(&DstAttr::Name(long))
        );
    }

    #[test]
    fn key_desc_wire_format() {
        // EXPORT_ADD: protection, then DST_A_KEY_DESC in the key's place,
        // NUL-terminated and padded; no DST_A_KEY.
        let security = SecurityAttrs {
            protection: Some(uapi::DST_PROT_AEAD),
            alg: None,
            key: None,
            key_desc: Some("dst:pair1".into()),
        };
        let export = ExportRequest {
            shared: false,
            addr: "10.0.0.2:1025".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: security.clone(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
        expected.extend(nla(
            uapi::DST_A_PROTECTION,
            &uapi::DST_PROT_AEAD.to_ne_bytes(),
        ));
        expected.extend(nla(uapi::DST_A_KEY_DESC, b"dst:pair1\0"));
        let bytes = emit(&DstMessage::new(DstCmd::ExportAdd, export.attrs()));
        assert_eq!(bytes, expected);
        // By hand: 4-byte header + "dst:pair1\0" (10 bytes) = 14, padded to
        // 16; kind 47.
        let tail = &bytes[bytes.len() - 16..];
        assert_eq!(&tail[..4], &[14, 0, 47, 0][..]);
        assert_eq!(&tail[4..], b"dst:pair1\0\0\0");
        assert!(!export.attrs().iter().any(|a| matches!(a, DstAttr::Key(_))));
        assert_eq!(
            parse(&bytes, uapi::DST_CMD_EXPORT_ADD).attrs.last(),
            Some(&DstAttr::KeyDesc("dst:pair1".into()))
        );

        // DEV_ADD: the same attribute after the protection, before the
        // client id and the identities.
        let dev = DeviceRequest {
            read_only: false,
            addr: "10.0.0.1:1025".parse().unwrap(),
            index: None,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            security,
            settings: DeviceSettings::default(),
            client_id: Some(7),
            export_name: Some("store1:sdb".into()),
            client_name: None,
        };
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 1]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(
            uapi::DST_A_PROTECTION,
            &uapi::DST_PROT_AEAD.to_ne_bytes(),
        ));
        expected.extend(nla(uapi::DST_A_KEY_DESC, b"dst:pair1\0"));
        expected.extend(nla(uapi::DST_A_CLIENT_ID, &7u64.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_NAME, b"store1:sdb\0"));
        assert_eq!(
            emit(&DstMessage::new(DstCmd::DevAdd, dev.attrs())),
            expected
        );

        // The longest description: 255 bytes and the NUL, 260 bytes in all
        // (no padding); spaces and UTF-8 go as they are.
        let long = "k".repeat(255);
        let attr = DstAttr::KeyDesc(long.clone());
        let bytes = emit(&DstMessage::new(DstCmd::DevAdd, vec![attr.clone()]));
        assert_eq!(bytes.len(), 260);
        assert_eq!(&bytes[..4], &[4, 1, 47, 0][..]);
        assert_eq!(bytes[259], 0);
        assert_eq!(parse(&bytes, uapi::DST_CMD_DEV_ADD).attrs, vec![attr]);
        let nvme = "NVMe0R01 nqn.x ключ";
        assert_eq!(
            emit(&DstMessage::new(
                DstCmd::DevAdd,
                vec![DstAttr::KeyDesc(nvme.into())]
            )),
            nla(uapi::DST_A_KEY_DESC, &[nvme.as_bytes(), &[0]].concat())
        );
        // Neither a key nor a description: neither is sent.
        assert!(SecurityAttrs::default().attrs().is_empty());
    }

    #[test]
    fn list_entries_with_identities() {
        let mut export = parse(&export_entry_bytes(), uapi::DST_CMD_LIST);
        export.attrs.push(DstAttr::Name("store1:sdb".into()));
        let entry = ListEntry::from_message(&export).unwrap().unwrap();
        let EntryKind::Export { name, .. } = &entry.kind else {
            panic!("{entry:?}");
        };
        assert_eq!(name.as_deref(), Some("store1:sdb"));

        let mut device = parse(&device_entry_bytes(), uapi::DST_CMD_LIST);
        device.attrs.push(DstAttr::Name("store1:sdb".into()));
        device.attrs.push(DstAttr::ClientName("web1".into()));
        let entry = ListEntry::from_message(&device).unwrap().unwrap();
        let EntryKind::Device {
            export_name,
            client_name,
            ..
        } = &entry.kind
        else {
            panic!("{entry:?}");
        };
        assert_eq!(export_name.as_deref(), Some("store1:sdb"));
        assert_eq!(client_name.as_deref(), Some("web1"));

        // Empty (not pinned yet) is the same as not reported.
        let mut device = parse(&device_entry_bytes(), uapi::DST_CMD_LIST);
        device.attrs.push(DstAttr::Name(String::new()));
        device.attrs.push(DstAttr::ClientName(String::new()));
        let entry = ListEntry::from_message(&device).unwrap().unwrap();
        assert!(
            matches!(
                entry.kind,
                EntryKind::Device {
                    export_name: None,
                    client_name: None,
                    ..
                }
            ),
            "{entry:?}"
        );
    }

    #[test]
    fn client_wire_format() {
        // EXPORT_ADD with two clients: one DST_A_CLIENT each, flagged
        // nested, after the protection (and allow-list), before the name.
        let web1_key = [0x5au8; 32];
        let export = ExportRequest {
            shared: false,
            addr: "10.0.0.2:1025".parse().unwrap(),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: SecurityAttrs {
                protection: Some(uapi::DST_PROT_AEAD),
                ..Default::default()
            },
            allow: Vec::new(),
            clients: vec![
                ExportClient {
                    name: "web1".into(),
                    secret: ClientSecret::Key(SecretKey::new(&web1_key)),
                    read_only: false,
                },
                ExportClient {
                    name: "backup".into(),
                    secret: ClientSecret::KeyDesc("dst:backup".into()),
                    read_only: true,
                },
            ],
            name: Some("store1:sdb".into()),
        };
        let mut web1 = nla(uapi::DST_CLIENT_A_NAME, b"web1\0");
        web1.extend(nla(uapi::DST_CLIENT_A_KEY, &web1_key));
        let mut backup = nla(uapi::DST_CLIENT_A_NAME, b"backup\0");
        backup.extend(nla(uapi::DST_CLIENT_A_KEY_DESC, b"dst:backup\0"));
        backup.extend(nla(uapi::DST_CLIENT_A_READ_ONLY, &[]));
        let nested = uapi::DST_A_CLIENT | NLA_F_NESTED;
        let mut expected = nla(uapi::DST_A_ADDR, &[10, 0, 0, 2]);
        expected.extend(nla(uapi::DST_A_PORT, &1025u16.to_ne_bytes()));
        expected.extend(nla(uapi::DST_A_PATH, b"/dev/sdb\0"));
        expected.extend(nla(
            uapi::DST_A_PROTECTION,
            &uapi::DST_PROT_AEAD.to_ne_bytes(),
        ));
        expected.extend(nla(nested, &web1));
        expected.extend(nla(nested, &backup));
        expected.extend(nla(uapi::DST_A_NAME, b"store1:sdb\0"));
        let bytes = emit(&DstMessage::new(DstCmd::ExportAdd, export.attrs()));
        assert_eq!(bytes, expected);
        // By hand: the first entry is 4 + (4 + 5 -> 12) + (4 + 32 = 36) = 52
        // bytes of type 48 with NLA_F_NESTED; inside, the name (9 bytes,
        // padded to 12), then the key as is (type 2, 36 bytes).
        let start = 8 + 8 + 16 + 8;
        let first = &bytes[start..start + 52];
        assert_eq!(&first[..4], &[52, 0, 48, 0x80][..]);
        assert_eq!(
            &first[4..16],
            &[9, 0, 1, 0, b'w', b'e', b'b', b'1', 0, 0, 0, 0][..]
        );
        assert_eq!(&first[16..20], &[36, 0, 2, 0][..]);
        assert_eq!(&first[20..], &web1_key[..]);
        // The second: name (11 -> 12), description (15 -> 16), flag (4).
        let second = &bytes[start + 52..start + 52 + 36];
        assert_eq!(&second[..4], &[36, 0, 48, 0x80][..]);
        assert_eq!(&second[16..20], &[15, 0, 3, 0][..]);
        assert_eq!(&second[32..], &[4, 0, 4, 0][..]);
        // No DST_A_KEY nor DST_A_KEY_DESC of the export's own.
        assert!(!export
            .attrs()
            .iter()
            .any(|a| matches!(a, DstAttr::Key(_) | DstAttr::KeyDesc(_))));
        // It parses back the same.
        assert_eq!(
            parse(&bytes, uapi::DST_CMD_EXPORT_ADD).attrs,
            export.attrs()
        );

        // The key is held as DST_A_KEY's is: a SecretKey, zeroed when dropped
        // and never shown, not even in the debug form of the request, its
        // attributes or a parsed message.
        let [DstAttr::Client(entry), ..] = &export.attrs()[4..] else {
            panic!("{:?}", export.attrs());
        };
        assert!(matches!(&entry[1], ClientAttr::Key(k) if k.bytes() == web1_key));
        let shown = format!(
            "{export:?} {:?} {:?}",
            export.attrs(),
            parse(&bytes, uapi::DST_CMD_EXPORT_ADD)
        );
        assert!(
            shown.contains("SecretKey([32 bytes, not shown])"),
            "{shown}"
        );
        assert!(!shown.contains("90, 90"), "{shown}");
        assert!(!shown.contains("5a"), "{shown}");

        // The longest entry: a 63-byte name and a 64-byte key.
        let long = ExportClient {
            name: "n".repeat(63),
            secret: ClientSecret::Key(SecretKey::new(&[1; 64])),
            read_only: true,
        };
        let bytes = emit(&DstMessage::new(
            DstCmd::ExportAdd,
            vec![DstAttr::Client(long.attrs())],
        ));
        assert_eq!(bytes.len(), 4 + 68 + 68 + 4);
        assert_eq!(&bytes[..4], &[144, 0, 48, 0x80][..]);
        assert_eq!(
            parse(&bytes, uapi::DST_CMD_EXPORT_ADD).attrs,
            vec![DstAttr::Client(long.attrs())]
        );
    }
}
