//! `dstcfg local`: creating a device idempotently, and waiting for an
//! export that is not there yet (`--wait`).
//!
//! Idempotent: before it creates a device, `local` looks for one this node
//! has for the same export ([`Wanted::find`]); if there is one, it prints
//! that device's path instead, as a second `nvme connect` or `iscsiadm
//! --login` would refuse to make a duplicate. It is a check before the
//! request, not a lock: two `local` run at the same moment can both create.
//!
//! `--wait`: the kernel reconnects a device only once it connected a
//! first time, so at boot a device configured before its export node is
//! up would fail for good. [`create`] keeps asking while the failure is
//! one the export's side can end ([`may_come_up`]): no route, nothing
//! listening, busy, or a refusal in the handshake, which is not
//! authenticated and may be forged by anyone on the path; an error of this
//! node (options, keys, module, permissions) ends it at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::args::Wait;
use crate::client::DstClient;
use crate::message::{DeviceRequest, EntryKind, EntryState, ListEntry};
use crate::netlink::KernelError;

/// The first pause between attempts; each failure doubles it, up to
/// [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between attempts: a device comes up at most this long
/// after its export did.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How often, at most, `--wait` says on stderr what it is waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// What makes an existing device the one a `local` request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The export node's address and port.
    pub addr: SocketAddr,
    /// `-n`: the export's identity, if given.
    pub export_name: Option<String>,
    /// `-i`: the device index, if given.
    pub index: Option<u32>,
    /// `--client-id`, if given.
    pub client_id: Option<u64>,
    /// `--client-name`, if given.
    pub client_name: Option<String>,
    /// `--read-only`: only a read-only device will do.
    pub read_only: bool,
}

impl Wanted {
    /// The first device in `entries` that connects to the same address and
    /// port and has what the request names (export name, index, client id
    /// and name, each if given); a device being deleted does not count.
    ///
    /// A `--read-only` request takes only a read-only device: a writable
    /// one is not what it asked for (it may hold the export's write
    /// access). A read-write request takes a read-only device too: the
    /// list reports what the export granted, not what was asked, and an
    /// export may grant only reads (its allow-list, a `,ro` client), so a
    /// read-write request there always makes a read-only device; asked
    /// again, it must find that one rather than make another.
    pub fn find<'a>(&self, entries: &'a [ListEntry]) -> Option<&'a ListEntry> {
        let given = |want: Option<&str>, have: Option<&str>| want.is_none() || want == have;
        entries.iter().find(|e| match &e.kind {
            EntryKind::Device {
                index,
                client_id,
                export_name,
                client_name,
                ..
            } => {
                e.addr == self.addr
                    && e.state != EntryState::Closing
                    && given(self.export_name.as_deref(), export_name.as_deref())
                    && self.index.is_none_or(|i| i == *index)
                    && self.client_id.is_none_or(|id| Some(id) == *client_id)
                    && given(self.client_name.as_deref(), client_name.as_deref())
                    && (!self.read_only || e.read_only)
            }
            EntryKind::Export { .. } => false,
        })
    }
}

/// The device `/dev/dstN` of an entry found by [`Wanted::find`].
fn dev_path(entry: &ListEntry) -> String {
    match &entry.kind {
        EntryKind::Device { disk_name, .. } => format!("/dev/{disk_name}"),
        EntryKind::Export { path, .. } => path.clone(),
    }
}

/// Whether a failed `DST_CMD_DEV_ADD` may succeed once the export node is
/// up (or stops refusing): the connection failed (by its errno), or the
/// export node's side of the handshake refused or broke it. The module's
/// messages for those all name the export ("cannot connect to the export
/// node", "the export answered: busy", "the export node failed
/// authentication", ...); its other refusals are about this node.
///
/// Not so the export's refusal because another local node holds its write
/// access ([`is_in_use`]): that lasts until the holder deletes its device
/// or the export node's administrator takes the access back, which waiting
/// here cannot bring about; the node should attach read-only instead.
pub fn may_come_up(err: &anyhow::Error) -> bool {
    let Some(kerr) = err.downcast_ref::<KernelError>() else {
        return false;
    };
    if is_in_use(kerr) {
        return false;
    }
    let network = matches!(
        kerr.errno,
        libc::ECONNREFUSED
            | libc::ETIMEDOUT
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::ENETDOWN
            | libc::ECONNRESET
            | libc::ECONNABORTED
            | libc::EPIPE
            | libc::EAGAIN
    );
    match kerr.extack.msg.as_deref() {
        Some(msg) if msg.contains("cannot connect to the export node") => network,
        Some(msg) => msg.starts_with("the export") || msg.starts_with("connection to the export"),
        // A module that says nothing more: the errno alone.
        None => network || kerr.errno == libc::EBUSY,
    }
}

/// Whether `kerr` is the export's refusal of write access held by another
/// local node identity. The module uses EBUSY for it and for "the export
/// answered: busy" (out of sessions or memory for a moment, which passes);
/// only the message tells them apart: "the export is in use read-write by
/// NAME at ADDR:PORT", or, if the module could not format that, "the export
/// answered: another local node writes to it".
pub fn is_in_use(kerr: &KernelError) -> bool {
    kerr.errno == libc::EBUSY
        && kerr.extack.msg.as_deref().is_some_and(|msg| {
            msg.starts_with("the export is in use read-write by")
                || msg.contains("another local node writes to it")
        })
}

/// The pacing of `--wait`, for `local` and `apply`: pauses that grow from
/// [`FIRST_PAUSE`] to [`MAX_PAUSE`], a deadline, and a progress line on
/// stderr at most every [`PROGRESS_EVERY`]. The caller tries, and asks
/// [`Patience::wait_more`] after a round whose failures [`may_come_up`]
/// says may pass; it decides whether there is time for another round.
pub struct Patience {
    /// The subcommand, for the messages: `local`, `apply`.
    who: &'static str,
    started: Instant,
    deadline: Option<Instant>,
    pause: Duration,
    said: Option<Instant>,
}

impl Patience {
    /// Starts the clock of `wait`, for the subcommand `who`.
    pub fn new(who: &'static str, wait: Wait) -> Self {
        let started = Instant::now();
        Patience {
            who,
            started,
            deadline: match wait {
                Wait::For(limit) => Some(started + limit),
                Wait::Forever => None,
            },
            pause: FIRST_PAUSE,
            said: None,
        }
    }

    /// After a failed round: false once the time is over (saying so, the
    /// caller reports the last error); else says what it waits `for_what`
    /// (and the last error, `last`) if it has not lately, sleeps the next
    /// pause (never past the deadline) and returns true.
    pub fn wait_more(&mut self, for_what: &str, last: &anyhow::Error) -> bool {
        let now = Instant::now();
        let so_far = seconds(now - self.started);
        if self.deadline.is_some_and(|d| now >= d) {
            eprintln!(
                "dstcfg: {}: gave up waiting for {for_what} after {so_far}; the last attempt:",
                self.who
            );
            return false;
        }
        if self.said.is_none_or(|t| now - t >= PROGRESS_EVERY) {
            let limit = match self.deadline {
                Some(d) => format!("for {} more", seconds(d.saturating_duration_since(now))),
                None => "until interrupted".into(),
            };
            eprintln!(
                "dstcfg: {}: waiting for {for_what} ({so_far} so far; {limit}): {last:#}",
                self.who
            );
            self.said = Some(now);
        }
        let sleep = match self.deadline {
            Some(d) => self.pause.min(d.saturating_duration_since(now)),
            None => self.pause,
        };
        std::thread::sleep(sleep);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        true
    }
}

/// `local`: the path of the device for `req`, existing (unless
/// `duplicate`) or created; with `wait`, trying again while
/// [`may_come_up`] says the failure may pass.
pub fn create(
    req: &DeviceRequest,
    wanted: &Wanted,
    wait: Option<Wait>,
    duplicate: bool,
) -> Result<String> {
    let mut client = DstClient::connect()?;
    let mut patience = wait.map(|w| Patience::new("local", w));
    let for_what = format!("the export node at {}", wanted.addr);
    loop {
        if !duplicate {
            let entries = client.list()?;
            if let Some(entry) = wanted.find(&entries) {
                let path = dev_path(entry);
                eprintln!(
                    "dstcfg: local: {path} connects to {} already; printing its path, not \
                     creating another (the settings of this request are not applied to it: \
                     change them with dstcfg set -d {}; --duplicate creates another device)",
                    wanted.addr,
                    path.trim_start_matches("/dev/")
                );
                return Ok(path);
            }
        }
        let err = match client.dev_add(req) {
            Ok(dev) => return Ok(dev.dev_path()),
            Err(err) => err,
        };
        let again = match patience.as_mut() {
            Some(p) => may_come_up(&err) && p.wait_more(&for_what, &err),
            None => false,
        };
        if !again {
            return Err(err);
        }
    }
}

/// A duration in whole seconds, for the progress lines: `0s`, `42s`.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DeviceCounters, DeviceSettings};
    use crate::netlink::ExtAck;

    fn device(index: u32, addr: &str, export: Option<&str>, state: EntryState) -> ListEntry {
        ListEntry {
            kind: EntryKind::Device {
                index,
                disk_name: format!("dst{index}"),
                queue_depth: 128,
                settings: DeviceSettings::default(),
                counters: DeviceCounters::default(),
                queues: Some(1),
                client_id: Some(0x1234),
                export_name: export.map(str::to_string),
                client_name: Some("web1".into()),
            },
            addr: addr.parse().unwrap(),
            size: 1 << 20,
            read_only: false,
            state,
            protection: None,
            alg: None,
            integrity_errors: None,
        }
    }

    fn wanted(addr: &str) -> Wanted {
        Wanted {
            read_only: false,
            addr: addr.parse().unwrap(),
            export_name: None,
            index: None,
            client_id: None,
            client_name: None,
        }
    }

    #[test]
    fn finds_the_device_of_the_same_export() {
        let entries = [
            device(0, "10.0.0.2:1026", Some("a"), EntryState::Connected),
            device(1, "10.0.0.2:1025", Some("b"), EntryState::Closing),
            device(2, "10.0.0.2:1025", Some("b"), EntryState::Failed),
        ];
        let found = |w: &Wanted| w.find(&entries).map(dev_path);
        let w = wanted("10.0.0.2:1025");
        // Not the one of another port, nor one being deleted; a failed one
        // counts (it reconnects by itself).
        assert_eq!(found(&w).as_deref(), Some("/dev/dst2"));
        assert_eq!(found(&wanted("10.0.0.3:1025")), None);
        let named = |n: &str| Wanted {
            export_name: Some(n.into()),
            ..w.clone()
        };
        assert_eq!(found(&named("b")).as_deref(), Some("/dev/dst2"));
        assert_eq!(found(&named("c")), None);
        let index = |i| Wanted {
            index: Some(i),
            ..w.clone()
        };
        assert_eq!(found(&index(2)).as_deref(), Some("/dev/dst2"));
        assert_eq!(found(&index(3)), None);
        let id = |id| Wanted {
            client_id: Some(id),
            ..w.clone()
        };
        assert_eq!(found(&id(0x1234)).as_deref(), Some("/dev/dst2"));
        assert_eq!(found(&id(7)), None);
        let client = |n: &str| Wanted {
            client_name: Some(n.into()),
            ..w.clone()
        };
        assert_eq!(found(&client("web1")).as_deref(), Some("/dev/dst2"));
        assert_eq!(found(&client("web2")), None);
    }

    /// `--read-only` takes only a read-only device; a read-write request
    /// takes either (an export may grant only reads).
    #[test]
    fn read_only_is_part_of_the_match() {
        let mut ro = device(3, "10.0.0.2:1025", Some("b"), EntryState::Connected);
        ro.read_only = true;
        let rw = device(2, "10.0.0.2:1025", Some("b"), EntryState::Connected);
        let w = wanted("10.0.0.2:1025");
        let read_only = Wanted {
            read_only: true,
            ..w.clone()
        };
        let found = |w: &Wanted, entries: &[ListEntry]| w.find(entries).map(dev_path);
        assert_eq!(found(&read_only, std::slice::from_ref(&rw)), None);
        assert_eq!(
            found(&read_only, &[rw.clone(), ro.clone()]).as_deref(),
            Some("/dev/dst3")
        );
        assert_eq!(
            found(&w, std::slice::from_ref(&ro)).as_deref(),
            Some("/dev/dst3")
        );
        assert_eq!(found(&w, &[rw, ro]).as_deref(), Some("/dev/dst2"));
    }

    fn kernel(errno: i32, msg: Option<&str>) -> anyhow::Error {
        let extack = ExtAck {
            msg: msg.map(str::to_string),
            ..Default::default()
        };
        KernelError::new(errno, extack, &[]).into()
    }

    #[test]
    fn what_may_come_up() {
        for (errno, msg) in [
            (
                libc::ECONNREFUSED,
                Some("cannot connect to the export node"),
            ),
            (
                libc::EHOSTUNREACH,
                Some("cannot connect to the export node"),
            ),
            (libc::ETIMEDOUT, Some("cannot connect to the export node")),
            (
                libc::ECONNRESET,
                Some("connection to the export node failed during the handshake"),
            ),
            (libc::EBUSY, Some("the export answered: busy")),
            (
                libc::EACCES,
                Some("the export answered: this client is refused"),
            ),
            (
                libc::ENOENT,
                Some("the export answered: no export of that name here"),
            ),
            (
                libc::EINVAL,
                Some("the export answered: mode, algorithm or key use differs from the export's"),
            ),
            (
                libc::EPROTO,
                Some("the export node answered with an invalid handshake"),
            ),
            (
                libc::EACCES,
                Some("the export node failed authentication: its key differs"),
            ),
            (libc::ECONNREFUSED, None),
            (libc::EBUSY, None),
        ] {
            assert!(may_come_up(&kernel(errno, msg)), "{errno} {msg:?}");
        }
        for (errno, msg) in [
            (
                libc::EAFNOSUPPORT,
                Some("cannot connect to the export node"),
            ),
            (libc::EEXIST, Some("this device index is in use")),
            (
                libc::ENOKEY,
                Some("no logon or user key of that description in your keyrings"),
            ),
            (
                libc::EINVAL,
                Some("protection hmac and aead need a pre-shared key (DST_A_KEY)"),
            ),
            (libc::ENODEV, Some("the dst module is being unloaded")),
            (libc::EPERM, None),
            (libc::ENOENT, None),
        ] {
            assert!(!may_come_up(&kernel(errno, msg)), "{errno} {msg:?}");
        }
        assert!(!may_come_up(&anyhow::anyhow!("cannot open the key file")));
    }

    /// Another identity's write access is not waited for; busy is.
    #[test]
    fn in_use_is_not_transient() {
        for msg in [
            "the export is in use read-write by web1 at 10.0.0.7:40112",
            // Cut to the extended ACK's 79 bytes.
            "the export is in use read-write by xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "the export answered: another local node writes to it",
        ] {
            let err = kernel(libc::EBUSY, Some(msg));
            assert!(!may_come_up(&err), "{msg}");
            assert!(is_in_use(err.downcast_ref().unwrap()), "{msg}");
        }
        let busy = kernel(libc::EBUSY, Some("the export answered: busy"));
        assert!(may_come_up(&busy));
        assert!(!is_in_use(busy.downcast_ref().unwrap()));
        // The words alone, with another errno, are not the refusal.
        let other = kernel(libc::ENOENT, Some("the export is in use read-write by x"));
        assert!(!is_in_use(other.downcast_ref().unwrap()));
    }
}
