//! What dstcfg prints as JSON: `list --json`, `status --json` and `monitor
//! --json`, from serde-derived structs.
//!
//! The structs borrow from the decoded messages and list their fields in
//! the order the output has always had (the keys of the first dstcfg
//! first, then those newer modules added, each only when reported), so
//! that readers that go by position keep working; golden tests pin the
//! bytes. The layout is serde_json's compact one with a space after each
//! `:` and `,` ([`Spaced`]), one object per line.

use std::io;

use serde::{Serialize, Serializer};

use crate::args::LOSS_TIMEOUT_INFINITE;
use crate::message::{EntryKind, Event, EventSubject, ListEntry, Status};
use crate::output::{client_id_text, event_name, protection_name, state_name, Timestamp};

/// serde_json's compact layout with a space after `:` and `,`:
/// `{"kind": "device", "index": 0}`.
struct Spaced;

impl serde_json::ser::Formatter for Spaced {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// `value` as one line of JSON in the [`Spaced`] layout.
pub fn to_line<T: Serialize>(value: &T) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, Spaced);
    value
        .serialize(&mut ser)
        .expect("plain structs of strings and numbers always serialize");
    String::from_utf8(buf).expect("serde_json writes UTF-8")
}

/// A device's loss timeout: milliseconds, or `"infinite"` for
/// [`LOSS_TIMEOUT_INFINITE`] (a string where a number would be 49 days,
/// so that a script cannot take it for a finite time).
#[derive(Debug, Clone, Copy)]
struct LossTimeout(u32);

impl Serialize for LossTimeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == LOSS_TIMEOUT_INFINITE {
            s.serialize_str("infinite")
        } else {
            s.serialize_u32(self.0)
        }
    }
}

/// One `--allow` entry of an export.
#[derive(Serialize)]
struct AllowJson {
    prefix: String,
    read_only: bool,
}

/// An export, as `list --json` prints it (after `"kind": "export"`).
#[derive(Serialize)]
struct ExportJson<'a> {
    path: &'a str,
    address: String,
    port: u16,
    size: u64,
    read_only: bool,
    state: String,
    sessions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alg: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allow: Vec<AllowJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    integrity_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Any number of writers; always present (false for a module older
    /// than the one-writer rule, whose exports took any number).
    shared: bool,
    /// Who holds the write access; `null` when nobody does (always for a
    /// shared export).
    writer: Option<WriterJson<'a>>,
}

/// The holder of an export's write access: its identity, and the address
/// and port it last connected from (`null` if not reported).
#[derive(Serialize)]
struct WriterJson<'a> {
    name: &'a str,
    address: Option<String>,
    port: Option<u16>,
}

/// A device, as `list --json` prints it (after `"kind": "device"`): its
/// settings and counters as far as the module reports them.
#[derive(Serialize)]
struct DeviceJson<'a> {
    device: String,
    index: u32,
    address: String,
    port: u16,
    size: u64,
    read_only: bool,
    state: String,
    queue_depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    req_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_resends: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnect_delay_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_interval_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ping_timeout_ms: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    loss_timeout_ms: Option<LossTimeout>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reconnects: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resends: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeouts: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    io_errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queues: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    integrity_errors: Option<u64>,
    /// A string: many JSON readers round numbers above 2^53.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<&'a str>,
}

/// An entry of `list --json`, `"kind"` first.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum EntryJson<'a> {
    Export(ExportJson<'a>),
    Device(DeviceJson<'a>),
}

impl<'a> EntryJson<'a> {
    fn new(entry: &'a ListEntry) -> Self {
        let address = entry.addr.ip().to_string();
        let port = entry.addr.port();
        let state = state_name(entry);
        let protection = entry.protection.map(protection_name);
        let alg = entry.alg.as_deref();
        match &entry.kind {
            EntryKind::Export {
                path,
                sessions,
                index,
                allow,
                refused,
                name,
                shared,
                writer,
            } => EntryJson::Export(ExportJson {
                path,
                address,
                port,
                size: entry.size,
                read_only: entry.read_only,
                state,
                sessions: *sessions,
                index: *index,
                protection,
                alg,
                allow: allow
                    .iter()
                    .map(|r| AllowJson {
                        prefix: r.prefix(),
                        read_only: r.read_only,
                    })
                    .collect(),
                refused: *refused,
                integrity_errors: entry.integrity_errors,
                name: name.as_deref(),
                shared: *shared,
                writer: writer.as_ref().map(|w| WriterJson {
                    name: &w.name,
                    address: w.addr.map(|a| a.ip().to_string()),
                    port: w.addr.map(|a| a.port()),
                }),
            }),
            EntryKind::Device {
                index,
                disk_name,
                queue_depth,
                settings: s,
                counters: c,
                queues,
                client_id,
                export_name,
                client_name,
            } => EntryJson::Device(DeviceJson {
                device: format!("/dev/{disk_name}"),
                index: *index,
                address,
                port,
                size: entry.size,
                read_only: entry.read_only,
                state,
                queue_depth: *queue_depth,
                req_timeout_ms: s.req_timeout_ms,
                max_resends: s.max_resends,
                reconnect_delay_ms: s.reconnect_delay_ms,
                ping_interval_ms: s.ping_interval_ms,
                ping_timeout_ms: s.ping_timeout_ms,
                loss_timeout_ms: s.loss_timeout_ms.map(LossTimeout),
                in_flight: c.in_flight,
                reconnects: c.reconnects,
                resends: c.resends,
                timeouts: c.timeouts,
                io_errors: c.io_errors,
                bytes_read: c.bytes_read,
                bytes_written: c.bytes_written,
                queues: *queues,
                protection,
                alg,
                integrity_errors: entry.integrity_errors,
                client_id: client_id.map(client_id_text),
                export: export_name.as_deref(),
                client: client_name.as_deref(),
            }),
        }
    }
}

/// The `list --json` output: a JSON array, one object per line; `[]` when
/// empty. Ends with a newline.
pub fn list_json(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "[]\n".to_string();
    }
    let objects: Vec<String> = entries
        .iter()
        .map(|e| format!("  {}", to_line(&EntryJson::new(e))))
        .collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

/// The `status --json` object: the module's values, then every export and
/// every device with all its counters, as `list --json` has them.
#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'a str,
    protocol: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    crypto_threads: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rekey_mib: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rekey_seconds: Option<u32>,
    exports: Vec<EntryJson<'a>>,
    devices: Vec<EntryJson<'a>>,
}

/// The `status --json` output: one object on one line, with a newline.
pub fn status_json(status: &Status, entries: &[ListEntry]) -> String {
    let of = |export: bool| {
        entries
            .iter()
            .filter(|e| matches!(e.kind, EntryKind::Export { .. }) == export)
            .map(EntryJson::new)
            .collect()
    };
    let json = StatusJson {
        version: &status.version,
        protocol: status.protocol,
        crypto_threads: status.crypto_threads,
        rekey_mib: status.rekey_mib,
        rekey_seconds: status.rekey_seconds,
        exports: of(true),
        devices: of(false),
    };
    format!("{}\n", to_line(&json))
}

/// One line of `monitor --json`: an event, or with `--now` an entry as it
/// is (`"event": "exists"`, with its state and address).
#[derive(Serialize)]
struct EventJson<'a> {
    time: String,
    kind: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    event: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<&'a str>,
}

/// One `monitor --json` line: `time`, `kind`, `name`, `index`, `event`,
/// then `peer_address`, `peer_port` and `message` when the event carries
/// them.
pub fn event_json(event: &Event, time: &Timestamp) -> String {
    to_line(&EventJson {
        time: time.to_string(),
        kind: match event.subject {
            EventSubject::Device => "device",
            EventSubject::Export => "export",
        },
        name: event.name(),
        index: Some(event.index),
        event: event_name(event.event),
        peer_address: event.peer_addr.map(|a| a.to_string()),
        peer_port: event.peer_port,
        message: event.message.as_deref(),
        state: None,
        address: None,
        port: None,
        path: None,
    })
}

/// One `monitor --now --json` line for an entry as it is: `time`, `kind`,
/// `name`, `index` (an export's only if reported), `"event": "exists"`,
/// `state`, `address`, `port`, and an export's `path`.
pub fn exists_json(entry: &ListEntry, time: &Timestamp) -> String {
    let (kind, index, path) = match &entry.kind {
        EntryKind::Export { index, path, .. } => ("export", *index, Some(path.as_str())),
        EntryKind::Device { index, .. } => ("device", Some(*index), None),
    };
    to_line(&EventJson {
        time: time.to_string(),
        kind,
        name: crate::output::entry_name(entry),
        index,
        event: "exists".into(),
        peer_address: None,
        peer_port: None,
        message: None,
        state: Some(state_name(entry)),
        address: Some(entry.addr.ip().to_string()),
        port: Some(entry.addr.port()),
        path,
    })
}
