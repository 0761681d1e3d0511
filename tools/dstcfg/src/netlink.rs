//! Generic netlink transport: a blocking `NETLINK_GENERIC` socket that sends
//! one request and collects its replies, family-id resolution through the
//! genl controller, and decoding of kernel errors with their extended ACK.
//!
//! Nothing here is specific to `dst`; see `client.rs` for that.

use std::fmt::{self, Debug};
use std::io;

use anyhow::{anyhow, bail, Context, Result};
use netlink_packet_core::{
    parse_string, parse_u32, DecodeError, DefaultNla, Emitable, NetlinkBuffer, NetlinkMessage,
    NetlinkPayload, Nla, NlaBuffer, NlasIterator, Parseable, ParseableParametrized, NLA_TYPE_MASK,
    NLM_F_ACK, NLM_F_ACK_TLVS, NLM_F_CAPPED, NLM_F_REQUEST,
};
use netlink_packet_generic::{
    ctrl::{nlas::GenlCtrlAttrs, nlas::McastGrpAttrs, nlas::OpAttrs, GenlCtrl, GenlCtrlCmd},
    GenlFamily, GenlHeader, GenlMessage,
};
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

/// Size of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
/// Size of `struct genlmsghdr`.
const GENL_HDRLEN: usize = 4;

// enum nlmsgerr_attrs (linux/netlink.h): TLVs after an NLMSG_ERROR/DONE.
/// String: error or warning message.
pub const NLMSGERR_ATTR_MSG: u16 = 1;
/// u32: offset of the offending attribute in the request.
pub const NLMSGERR_ATTR_OFFS: u16 = 2;
/// Binary: cookie.
pub const NLMSGERR_ATTR_COOKIE: u16 = 3;
/// u32: type of a missing required attribute.
pub const NLMSGERR_ATTR_MISS_TYPE: u16 = 5;
/// u32: offset of the nest the missing attribute belongs in.
pub const NLMSGERR_ATTR_MISS_NEST: u16 = 6;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One extended-ACK attribute (`enum nlmsgerr_attrs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtAckAttr {
    /// `NLMSGERR_ATTR_MSG`.
    Msg(String),
    /// `NLMSGERR_ATTR_OFFS`.
    Offset(u32),
    /// `NLMSGERR_ATTR_COOKIE`.
    Cookie(Vec<u8>),
    /// `NLMSGERR_ATTR_MISS_TYPE`.
    MissType(u32),
    /// `NLMSGERR_ATTR_MISS_NEST`.
    MissNest(u32),
    /// Anything else (e.g. `NLMSGERR_ATTR_POLICY`).
    Other(DefaultNla),
}

impl Nla for ExtAckAttr {
    fn value_len(&self) -> usize {
        match self {
            ExtAckAttr::Msg(s) => s.len() + 1,
            ExtAckAttr::Offset(_) | ExtAckAttr::MissType(_) | ExtAckAttr::MissNest(_) => 4,
            ExtAckAttr::Cookie(c) => c.len(),
            ExtAckAttr::Other(nla) => nla.value_len(),
        }
    }

    fn kind(&self) -> u16 {
        match self {
            ExtAckAttr::Msg(_) => NLMSGERR_ATTR_MSG,
            ExtAckAttr::Offset(_) => NLMSGERR_ATTR_OFFS,
            ExtAckAttr::Cookie(_) => NLMSGERR_ATTR_COOKIE,
            ExtAckAttr::MissType(_) => NLMSGERR_ATTR_MISS_TYPE,
            ExtAckAttr::MissNest(_) => NLMSGERR_ATTR_MISS_NEST,
            ExtAckAttr::Other(nla) => nla.kind(),
        }
    }

    fn emit_value(&self, buffer: &mut [u8]) {
        match self {
            ExtAckAttr::Msg(s) => {
                buffer[..s.len()].copy_from_slice(s.as_bytes());
                buffer[s.len()] = 0;
            }
            ExtAckAttr::Offset(v) | ExtAckAttr::MissType(v) | ExtAckAttr::MissNest(v) => {
                buffer.copy_from_slice(&v.to_ne_bytes())
            }
            ExtAckAttr::Cookie(c) => buffer.copy_from_slice(c),
            ExtAckAttr::Other(nla) => nla.emit_value(buffer),
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Parseable<NlaBuffer<&'a T>> for ExtAckAttr {
    fn parse(buf: &NlaBuffer<&'a T>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            NLMSGERR_ATTR_MSG => ExtAckAttr::Msg(parse_string(v)?),
            NLMSGERR_ATTR_OFFS => ExtAckAttr::Offset(parse_u32(v)?),
            NLMSGERR_ATTR_COOKIE => ExtAckAttr::Cookie(v.to_vec()),
            NLMSGERR_ATTR_MISS_TYPE => ExtAckAttr::MissType(parse_u32(v)?),
            NLMSGERR_ATTR_MISS_NEST => ExtAckAttr::MissNest(parse_u32(v)?),
            _ => ExtAckAttr::Other(DefaultNla::parse(buf)?),
        })
    }
}

/// The extended ACK of an error or ACK: what the kernel said beyond errno.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtAck {
    /// Human-readable message.
    pub msg: Option<String>,
    /// Offset of the offending attribute from the start of the request.
    pub offset: Option<u32>,
    /// Type of a missing attribute.
    pub miss_type: Option<u32>,
    /// Offset of the nest a missing attribute belongs in (none: top level).
    pub miss_nest: Option<u32>,
}

impl ExtAck {
    /// Decodes extack TLVs; malformed ones are ignored (the errno still
    /// stands).
    pub fn from_tlvs(tlvs: &[u8]) -> Self {
        let mut ack = ExtAck::default();
        for attr in NlasIterator::new(tlvs).map_while(|nla| nla.ok()) {
            match ExtAckAttr::parse(&attr) {
                Ok(ExtAckAttr::Msg(m)) => ack.msg = Some(m),
                Ok(ExtAckAttr::Offset(o)) => ack.offset = Some(o),
                Ok(ExtAckAttr::MissType(t)) => ack.miss_type = Some(t),
                Ok(ExtAckAttr::MissNest(n)) => ack.miss_nest = Some(n),
                _ => {}
            }
        }
        ack
    }

    /// Decodes the extack of an `NLMSG_ERROR`. `flags` are the error
    /// message's header flags, `payload` what follows its error code: the
    /// echoed request (only its header if `NLM_F_CAPPED`), then TLVs if
    /// `NLM_F_ACK_TLVS`.
    pub fn from_error(flags: u16, payload: &[u8]) -> Self {
        if flags & NLM_F_ACK_TLVS == 0 || payload.len() < NLMSG_HDRLEN {
            return Self::default();
        }
        let echoed = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDRLEN
        } else {
            let len = u32::from_ne_bytes(payload[..4].try_into().unwrap()) as usize;
            align4(len.max(NLMSG_HDRLEN))
        };
        payload
            .get(echoed..)
            .map(Self::from_tlvs)
            .unwrap_or_default()
    }
}

/// Symbolic name of a Linux errno.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    const NAMES: &[(i32, &str)] = &[
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::ENOTBLK, "ENOTBLK"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::EMSGSIZE, "EMSGSIZE"),
        (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
        (libc::EADDRINUSE, "EADDRINUSE"),
        (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (libc::ENETUNREACH, "ENETUNREACH"),
        (libc::ENOBUFS, "ENOBUFS"),
        (libc::ENOTCONN, "ENOTCONN"),
        (libc::ETIMEDOUT, "ETIMEDOUT"),
        (libc::ECONNREFUSED, "ECONNREFUSED"),
        (libc::EHOSTUNREACH, "EHOSTUNREACH"),
        (libc::EALREADY, "EALREADY"),
        (libc::EINPROGRESS, "EINPROGRESS"),
        (libc::ENOLINK, "ENOLINK"),
        (libc::EPROTO, "EPROTO"),
        (libc::ENOKEY, "ENOKEY"),
        (524, "ENOTSUPP"), // kernel-internal, not in libc
    ];
    NAMES.iter().find(|(n, _)| *n == errno).map(|(_, s)| *s)
}

/// `strerror` text of an errno, without std's " (os error N)" suffix.
pub fn errno_text(errno: i32) -> String {
    if errno == 524 {
        return "Operation not supported".to_string();
    }
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// An error the kernel returned for a request (`NLMSG_ERROR` or a failed
/// `NLMSG_DONE`).
#[derive(Debug, Clone)]
pub struct KernelError {
    /// Positive errno.
    pub errno: i32,
    /// What the extended ACK said.
    pub extack: ExtAck,
    /// Type of the top-level attribute [`ExtAck::offset`] points at.
    pub bad_attr: Option<u16>,
    /// Names attribute types for messages; set by the family's client.
    pub attr_names: Option<fn(u16) -> Option<&'static str>>,
    /// What to do about it, when the caller knows better than the errno
    /// alone (e.g. ENOENT of a delete: no such device); see [`Self::hint`].
    pub hint: Option<String>,
}

impl KernelError {
    /// Builds the error; `request` is the request as sent, used to find the
    /// attribute the extack offset points at.
    pub fn new(errno: i32, extack: ExtAck, request: &[u8]) -> Self {
        let bad_attr = extack
            .offset
            .and_then(|off| top_level_attr_at(request, off as usize));
        Self {
            errno,
            extack,
            bad_attr,
            attr_names: None,
            hint: None,
        }
    }

    /// A hint on what to do: the one the caller set, else one for errors
    /// that have an obvious remedy whatever the request.
    pub fn hint(&self) -> Option<String> {
        if let Some(hint) = &self.hint {
            return Some(hint.clone());
        }
        match self.errno {
            libc::EPERM => Some("needs CAP_NET_ADMIN; run as root".into()),
            // EACCES with a message is the module's own refusal, not ours.
            libc::EACCES if self.extack.msg.is_none() => {
                Some("needs CAP_NET_ADMIN; run as root".into())
            }
            _ => None,
        }
    }

    fn attr_label(&self, kind: u16) -> String {
        match self.attr_names.and_then(|names| names(kind)) {
            Some(name) => name.to_string(),
            None => format!("type {kind}"),
        }
    }
}

/// Type of the top-level attribute of a genl `request` starting exactly at
/// byte `offset`, if any.
fn top_level_attr_at(request: &[u8], offset: usize) -> Option<u16> {
    let start = NLMSG_HDRLEN + GENL_HDRLEN;
    let attrs = request.get(start..)?;
    let mut pos = start;
    for nla in NlasIterator::new(attrs) {
        let nla = nla.ok()?;
        if pos == offset {
            return Some(nla.kind() & NLA_TYPE_MASK);
        }
        pos += align4(nla.length() as usize);
    }
    None
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&errno_text(self.errno))?;
        if let Some(name) = errno_name(self.errno) {
            write!(f, " ({name})")?;
        }
        if let Some(msg) = &self.extack.msg {
            write!(f, ": {msg}")?;
        }
        if let Some(kind) = self.bad_attr {
            write!(f, " [attribute {}]", self.attr_label(kind))?;
        } else if let Some(off) = self.extack.offset {
            write!(f, " [at byte {off} of the request]")?;
        }
        if let Some(kind) = self.extack.miss_type {
            match (self.extack.miss_nest, u16::try_from(kind)) {
                (None, Ok(kind)) => write!(f, " [missing attribute {}]", self.attr_label(kind))?,
                _ => write!(f, " [missing nested attribute type {kind}]")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for KernelError {}

/// The genl controller has no family of the requested name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyNotFound(pub &'static str);

impl fmt::Display for FamilyNotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "generic netlink family \"{}\" not found", self.0)
    }
}

impl std::error::Error for FamilyNotFound {}

/// A resolved generic netlink family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    /// Dynamically assigned id (the netlink message type).
    pub id: u16,
    /// Family version the kernel registered.
    pub version: u32,
    /// Commands the kernel implements.
    pub ops: Vec<u32>,
    /// Multicast groups: name and id.
    pub groups: Vec<(String, u32)>,
}

impl Family {
    /// Whether the kernel implements command `cmd`.
    pub fn supports(&self, cmd: u8) -> bool {
        self.ops.contains(&u32::from(cmd))
    }

    /// The id of multicast group `name`, if the family has it.
    pub fn group(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| *id)
    }

    fn from_ctrl(nlas: &[GenlCtrlAttrs]) -> Result<Self> {
        let mut id = None;
        let mut version = 0;
        let mut ops = Vec::new();
        let mut groups = Vec::new();
        for nla in nlas {
            match nla {
                GenlCtrlAttrs::FamilyId(v) => id = Some(*v),
                GenlCtrlAttrs::Version(v) => version = *v,
                GenlCtrlAttrs::Ops(list) => {
                    ops.extend(list.iter().flatten().filter_map(|a| match a {
                        OpAttrs::Id(id) => Some(*id),
                        _ => None,
                    }))
                }
                GenlCtrlAttrs::McastGroups(list) => {
                    for group in list {
                        let mut name = None;
                        let mut gid = None;
                        for attr in group {
                            match attr {
                                McastGrpAttrs::Name(n) => name = Some(n.clone()),
                                McastGrpAttrs::Id(i) => gid = Some(*i),
                            }
                        }
                        if let (Some(name), Some(gid)) = (name, gid) {
                            groups.push((name, gid));
                        }
                    }
                }
                _ => {}
            }
        }
        let id = id.ok_or_else(|| anyhow!("controller reply lacks CTRL_ATTR_FAMILY_ID"))?;
        Ok(Self {
            id,
            version,
            ops,
            groups,
        })
    }
}

/// A byte buffer that is zeroed when dropped: requests may carry keys.
struct Wiped(Vec<u8>);

impl Drop for Wiped {
    fn drop(&mut self) {
        crate::secret::zeroize(&mut self.0);
    }
}

/// What one receive on a multicast subscription gave.
#[derive(Debug)]
pub enum Received<F> {
    /// The messages of one datagram that belong to the family.
    Messages(Vec<F>),
    /// The socket's receive buffer overflowed: notifications were lost.
    Overrun,
}

/// A blocking generic netlink socket connected to the kernel.
pub struct GenlSocket {
    sock: Socket,
    seq: u32,
}

impl GenlSocket {
    /// Opens and binds the socket, and asks for capped ACKs with extended ACK
    /// TLVs (kernels too old for either just send less detail).
    pub fn open() -> Result<Self> {
        let mut sock =
            Socket::new(NETLINK_GENERIC).context("cannot open a generic netlink socket")?;
        sock.bind_auto()
            .context("cannot bind the generic netlink socket")?;
        sock.connect(&SocketAddr::new(0, 0))
            .context("cannot connect the generic netlink socket")?;
        let _ = sock.set_ext_ack(true);
        let _ = sock.set_cap_ack(true);
        Ok(Self { sock, seq: 0 })
    }

    /// Resolves `name` to its family through `CTRL_CMD_GETFAMILY`. An unknown
    /// family is a [`FamilyNotFound`] error.
    pub fn resolve_family(&mut self, name: &'static str) -> Result<Family> {
        let request = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
        };
        let replies = match self.request(request.family_id(), request, 0) {
            Ok(replies) => replies,
            Err(err) => {
                if let Some(kerr) = err.downcast_ref::<KernelError>() {
                    if kerr.errno == libc::ENOENT {
                        return Err(FamilyNotFound(name).into());
                    }
                }
                return Err(err.context(format!("resolving generic netlink family \"{name}\"")));
            }
        };
        let reply = replies
            .first()
            .ok_or_else(|| anyhow!("no reply to CTRL_CMD_GETFAMILY \"{name}\""))?;
        Family::from_ctrl(&reply.nlas)
    }

    /// Sends `payload` to family `family_id` with `NLM_F_REQUEST | NLM_F_ACK
    /// | extra_flags` and returns the replies, up to the ACK (or
    /// `NLMSG_DONE` of a dump). A kernel error is a [`KernelError`].
    pub fn request<F>(&mut self, family_id: u16, payload: F, extra_flags: u16) -> Result<Vec<F>>
    where
        F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut genl = GenlMessage::from_payload(payload);
        genl.set_resolved_family_id(family_id);
        let mut msg = NetlinkMessage::from(genl);
        msg.header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        msg.header.sequence_number = seq;
        msg.finalize();
        let mut request = Wiped(vec![0u8; msg.buffer_len()]);
        msg.serialize(&mut request.0);
        drop(msg);
        let request = &request.0;

        self.sock
            .send(request, 0)
            .context("cannot send the netlink request")?;

        let mut replies = Vec::new();
        loop {
            let (datagram, from) = self
                .sock
                .recv_from_full()
                .context("cannot receive the netlink reply")?;
            // An uncapped error echoes the request, key included.
            let datagram = Wiped(datagram);
            let datagram = &datagram.0;
            if from.port_number() != 0 {
                continue; // not from the kernel
            }
            let mut off = 0;
            while off < datagram.len() {
                let buf = &datagram[off..];
                let header = NetlinkBuffer::new_checked(buf)
                    .map_err(|e| anyhow!("malformed netlink reply: {e}"))?;
                let len = header.length() as usize;
                let msg_seq = header.sequence_number();
                off += align4(len);
                if msg_seq != seq {
                    continue; // a stale answer to an earlier request
                }
                let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&buf[..len])
                    .map_err(|e| anyhow!("malformed netlink reply: {e}"))?;
                match msg.payload {
                    NetlinkPayload::InnerMessage(genl) => replies.push(genl.payload),
                    NetlinkPayload::Error(err) => {
                        let extack = ExtAck::from_error(msg.header.flags, &err.header);
                        match err.code {
                            None => {
                                warn(&extack);
                                return Ok(replies);
                            }
                            Some(code) => {
                                let errno = code.get().saturating_abs();
                                return Err(KernelError::new(errno, extack, request).into());
                            }
                        }
                    }
                    NetlinkPayload::Done(done) => {
                        let extack = if msg.header.flags & NLM_F_ACK_TLVS != 0 {
                            ExtAck::from_tlvs(&done.extended_ack)
                        } else {
                            ExtAck::default()
                        };
                        if done.code != 0 {
                            let errno = done.code.saturating_abs();
                            return Err(KernelError::new(errno, extack, request).into());
                        }
                        warn(&extack);
                        return Ok(replies);
                    }
                    NetlinkPayload::Overrun(_) => bail!("netlink reply overrun"),
                    _ => {}
                }
            }
        }
    }
}

impl GenlSocket {
    /// Subscribes to multicast group `group` (`NETLINK_ADD_MEMBERSHIP`). A
    /// refusal (e.g. EPERM without CAP_NET_ADMIN) is a [`KernelError`].
    pub fn join_group(&mut self, group: u32) -> Result<()> {
        self.sock
            .add_membership(group)
            .map_err(|e| match e.raw_os_error() {
                Some(errno) => KernelError::new(errno, ExtAck::default(), &[]).into(),
                None => anyhow::Error::new(e),
            })
    }

    /// Waits for the next datagram and returns its messages of family
    /// `family_id` (others, e.g. of other families, are skipped).
    pub fn receive<F>(&mut self, family_id: u16) -> Result<Received<F>>
    where
        F: ParseableParametrized<[u8], GenlHeader> + Debug,
    {
        let (datagram, _) = match self.sock.recv_from_full() {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Received::Overrun),
            Err(e) => return Err(e).context("cannot receive netlink notifications"),
        };
        Ok(Received::Messages(parse_datagram(&datagram, family_id)?))
    }
}

/// The messages of type `family_id` in one netlink datagram.
pub fn parse_datagram<F>(datagram: &[u8], family_id: u16) -> Result<Vec<F>>
where
    F: ParseableParametrized<[u8], GenlHeader> + Debug,
{
    let mut out = Vec::new();
    let mut off = 0;
    while off < datagram.len() {
        let buf = &datagram[off..];
        let header = NetlinkBuffer::new_checked(buf)
            .map_err(|e| anyhow!("malformed netlink notification: {e}"))?;
        let len = header.length() as usize;
        let kind = header.message_type();
        off += align4(len);
        if kind != family_id {
            continue;
        }
        let msg = NetlinkMessage::<GenlMessage<F>>::deserialize(&buf[..len])
            .map_err(|e| anyhow!("malformed netlink notification: {e}"))?;
        if let NetlinkPayload::InnerMessage(genl) = msg.payload {
            out.push(genl.payload);
        }
    }
    Ok(out)
}

/// Prints a warning the kernel attached to a successful ACK.
fn warn(extack: &ExtAck) {
    if let Some(msg) = &extack.msg {
        eprintln!("dstcfg: warning from the kernel: {msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlvs(attrs: &[ExtAckAttr]) -> Vec<u8> {
        let mut buf = vec![0; attrs.buffer_len()];
        attrs.emit(&mut buf);
        buf
    }

    /// A request header + genl header + two u32 attributes (types 2 and 3).
    fn request() -> Vec<u8> {
        let mut r = vec![0u8; NLMSG_HDRLEN + GENL_HDRLEN];
        r[..4].copy_from_slice(&36u32.to_ne_bytes());
        for kind in [2u16, 3] {
            r.extend_from_slice(&8u16.to_ne_bytes());
            r.extend_from_slice(&kind.to_ne_bytes());
            r.extend_from_slice(&7u32.to_ne_bytes());
        }
        r
    }

    #[test]
    fn extack_from_uncapped_error() {
        let req = request();
        let mut payload = req.clone();
        payload.extend(tlvs(&[
            ExtAckAttr::Msg("Attribute failed policy validation".into()),
            ExtAckAttr::Offset(28),
        ]));
        let ack = ExtAck::from_error(NLM_F_ACK_TLVS, &payload);
        assert_eq!(
            ack.msg.as_deref(),
            Some("Attribute failed policy validation")
        );
        assert_eq!(ack.offset, Some(28));

        let mut err = KernelError::new(libc::EINVAL, ack, &req);
        assert_eq!(err.bad_attr, Some(3));
        err.attr_names = Some(crate::uapi::attr_name);
        assert_eq!(
            err.to_string(),
            "Invalid argument (EINVAL): Attribute failed policy validation \
             [attribute DST_A_PROTO_VERSION]"
        );
        assert_eq!(err.hint(), None);
    }

    #[test]
    fn extack_from_capped_error() {
        let mut payload = request()[..NLMSG_HDRLEN].to_vec();
        payload.extend(tlvs(&[
            ExtAckAttr::Cookie(vec![1, 2, 3]),
            ExtAckAttr::Msg("Missing attribute".into()),
            ExtAckAttr::MissType(2),
        ]));
        let ack = ExtAck::from_error(NLM_F_ACK_TLVS | NLM_F_CAPPED, &payload);
        assert_eq!(ack.msg.as_deref(), Some("Missing attribute"));
        assert_eq!(ack.miss_type, Some(2));
        let mut err = KernelError::new(libc::EINVAL, ack, &request());
        err.attr_names = Some(crate::uapi::attr_name);
        assert_eq!(
            err.to_string(),
            "Invalid argument (EINVAL): Missing attribute [missing attribute DST_A_VERSION]"
        );
    }

    #[test]
    fn no_tlvs_without_flag() {
        let mut payload = request();
        payload.extend(tlvs(&[ExtAckAttr::Msg("ignored".into())]));
        assert_eq!(ExtAck::from_error(0, &payload), ExtAck::default());
        assert_eq!(
            ExtAck::from_error(NLM_F_ACK_TLVS, &[1, 2]),
            ExtAck::default()
        );
    }

    #[test]
    fn eperm_has_hint() {
        let err = KernelError::new(libc::EPERM, ExtAck::default(), &[]);
        assert_eq!(err.to_string(), "Operation not permitted (EPERM)");
        assert_eq!(
            err.hint().as_deref(),
            Some("needs CAP_NET_ADMIN; run as root")
        );
    }

    #[test]
    fn offset_not_on_a_top_level_attribute() {
        let ack = ExtAck {
            offset: Some(30),
            ..ExtAck::default()
        };
        let err = KernelError::new(libc::ERANGE, ack, &request());
        assert_eq!(err.bad_attr, None);
        assert!(
            err.to_string().ends_with("[at byte 30 of the request]"),
            "{err}"
        );
    }

    #[test]
    fn errno_names_and_texts() {
        assert_eq!(errno_name(libc::ENOENT), Some("ENOENT"));
        assert_eq!(errno_text(libc::ENOENT), "No such file or directory");
        assert_eq!(errno_name(4000), None);
    }

    #[test]
    fn family_from_ctrl_reply() {
        let nlas = vec![
            GenlCtrlAttrs::FamilyName("dst".into()),
            GenlCtrlAttrs::FamilyId(0x22),
            GenlCtrlAttrs::Version(1),
            GenlCtrlAttrs::Ops(vec![vec![OpAttrs::Id(1), OpAttrs::Flags(0)]]),
            GenlCtrlAttrs::McastGroups(vec![
                vec![McastGrpAttrs::Name("events".into()), McastGrpAttrs::Id(9)],
                vec![McastGrpAttrs::Id(10)],
            ]),
        ];
        let family = Family::from_ctrl(&nlas).unwrap();
        assert_eq!(family.id, 0x22);
        assert_eq!(family.group("events"), Some(9));
        assert_eq!(family.group("other"), None);
        assert_eq!(family.groups.len(), 1);
        assert!(family.supports(crate::uapi::DST_CMD_STATUS));
        assert!(!family.supports(2));
        assert!(Family::from_ctrl(&[]).is_err());
    }
}

#[cfg(test)]
mod live_tests {
    //! Against the running kernel's genl controller (always present).
    use super::*;
    use crate::message::{DstAttr, DstCmd, DstMessage};

    fn socket() -> Option<GenlSocket> {
        match GenlSocket::open() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("skipped: no generic netlink here: {e:#}");
                None
            }
        }
    }

    #[test]
    fn resolves_the_controller_itself() {
        let Some(mut sock) = socket() else { return };
        let family = sock.resolve_family("nlctrl").unwrap();
        assert_eq!(family.id, 0x10);
        assert!(family.supports(3), "CTRL_CMD_GETFAMILY: {family:?}");
    }

    #[test]
    fn dump_collects_every_message_up_to_done() {
        let Some(mut sock) = socket() else { return };
        // The same flags as DST_CMD_LIST: NLM_F_REQUEST | NLM_F_ACK | NLM_F_DUMP.
        let request = GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![],
        };
        let families = sock
            .request(0x10, request, netlink_packet_core::NLM_F_DUMP)
            .unwrap();
        let names: Vec<&str> = families
            .iter()
            .flat_map(|f| &f.nlas)
            .filter_map(|a| match a {
                GenlCtrlAttrs::FamilyName(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert!(names.contains(&"nlctrl"), "{names:?}");
        assert_eq!(names.len(), families.len());
        // The socket is still in step: the next request gets its own answer.
        assert_eq!(sock.resolve_family("nlctrl").unwrap().id, 0x10);
    }

    #[test]
    fn joins_a_multicast_group() {
        let Some(mut sock) = socket() else { return };
        let family = sock.resolve_family("nlctrl").unwrap();
        let group = family.group("notify").expect("nlctrl has a notify group");
        // Anybody may join nlctrl's group; the dst group needs CAP_NET_ADMIN.
        sock.join_group(group).unwrap();
        let err = sock.join_group(0xfff_ffff).unwrap_err();
        assert!(err.downcast_ref::<KernelError>().is_some(), "{err:#}");
    }

    #[test]
    fn datagrams_are_split_into_messages_of_the_family() {
        // Two messages of family 0x10 around one of family 0x11.
        let msg = |family: u16, cmd: u8| {
            let mut m = 24u32.to_ne_bytes().to_vec();
            m.extend(family.to_ne_bytes());
            m.extend([0u8; 10]);
            m.extend([cmd, 1, 0, 0]);
            m.extend([4, 0, 1, 0]); // an empty attribute of type 1
            m
        };
        let datagram = [msg(0x10, 1), msg(0x11, 2), msg(0x10, 3)].concat();
        let got: Vec<DstMessage> = parse_datagram(&datagram, 0x10).unwrap();
        let cmds: Vec<u8> = got.iter().map(|m| u8::from(m.cmd)).collect();
        assert_eq!(cmds, [1, 3]);
        assert!(parse_datagram::<DstMessage>(&datagram[..20], 0x10).is_err());
    }

    #[test]
    fn unknown_family_is_family_not_found() {
        let Some(mut sock) = socket() else { return };
        let err = sock.resolve_family("dstcfg-no-such").unwrap_err();
        assert!(err.is::<FamilyNotFound>(), "{err:#}");
    }

    #[test]
    fn kernel_errors_carry_errno_and_extack() {
        let Some(mut sock) = socket() else { return };
        let unknown_cmd = DstMessage::new(DstCmd::Other(250), vec![]);
        let err = sock.request(0x10, unknown_cmd, 0).unwrap_err();
        let kerr = err.downcast_ref::<KernelError>().expect("a KernelError");
        assert_eq!(kerr.errno, libc::EOPNOTSUPP, "{kerr}");

        // CTRL_CMD_GETFAMILY with CTRL_ATTR_FAMILY_NAME (2) not NUL-terminated:
        // the controller's policy refuses it and points at the attribute.
        let bad_name = DstMessage::new(
            DstCmd::Other(3),
            vec![DstAttr::Other(DefaultNla::new(2, b"xy".to_vec()))],
        );
        let err = sock.request(0x10, bad_name, 0).unwrap_err();
        let kerr = err.downcast_ref::<KernelError>().expect("a KernelError");
        assert_eq!(kerr.errno, libc::EINVAL, "{kerr}");
        if kerr.extack.msg.is_some() {
            assert_eq!(kerr.bad_attr, Some(2), "{kerr}");
            assert!(
                kerr.to_string().starts_with("Invalid argument (EINVAL): "),
                "{kerr}"
            );
        }
    }
}
