//! What `dstcfg` prints: sizes for humans, and the `-a list` table and JSON.
//!
//! Everything here is a pure function of decoded entries, so the exact output
//! is pinned by golden tests.

use serde_json::Value;

use crate::message::{DeviceCounters, EntryKind, EntryState, ListEntry};

/// `n` bytes for humans, in binary units: `512 B`, `1.0 KiB`, `512.0 MiB`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    // One decimal; 1023.96 MiB would print as "1024.0 MiB": show 1.0 GiB.
    if format!("{value:.1}") == "1024.0" && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The state as a word: an export's connected listener is "listening".
pub fn state_name(entry: &ListEntry) -> String {
    match (entry.state, &entry.kind) {
        (EntryState::Connected, EntryKind::Export { .. }) => "listening".into(),
        (EntryState::Connected, EntryKind::Device { .. }) => "connected".into(),
        (EntryState::Reconnecting, _) => "reconnecting".into(),
        (EntryState::Closing, _) => "closing".into(),
        (EntryState::Failed, _) => "failed".into(),
        (EntryState::Other(n), _) => format!("unknown({n})"),
    }
}

/// "1 reconnect", "2 reconnects".
fn count(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The DETAIL column of a device: the queue depth, then the reconnect,
/// resend and IO error counters that are reported and not zero.
fn device_detail(queue_depth: u32, counters: &DeviceCounters) -> String {
    let mut parts = vec![format!("depth {queue_depth}")];
    for (value, what) in [
        (counters.reconnects, "reconnect"),
        (counters.resends, "resend"),
        (counters.io_errors, "IO error"),
    ] {
        if let Some(n) = value.filter(|n| *n > 0) {
            parts.push(count(n, what));
        }
    }
    parts.join(", ")
}

fn kind_name(entry: &ListEntry) -> &'static str {
    match entry.kind {
        EntryKind::Export { .. } => "export",
        EntryKind::Device { .. } => "device",
    }
}

/// Column headings of the `-a list` table.
const HEADINGS: [&str; 7] = [
    "KIND",
    "NAME",
    "PEER/LISTEN",
    "SIZE",
    "MODE",
    "STATE",
    "DETAIL",
];

fn table_row(entry: &ListEntry) -> [String; 7] {
    let (name, detail) = match &entry.kind {
        EntryKind::Export { path, sessions } => {
            (path.clone(), count((*sessions).into(), "session"))
        }
        EntryKind::Device {
            disk_name,
            queue_depth,
            counters,
            ..
        } => (
            format!("/dev/{disk_name}"),
            device_detail(*queue_depth, counters),
        ),
    };
    [
        kind_name(entry).to_string(),
        name,
        entry.addr.to_string(),
        human_size(entry.size),
        if entry.read_only { "ro" } else { "rw" }.to_string(),
        state_name(entry),
        detail,
    ]
}

/// The `-a list` table: a heading line, then one line per entry, columns
/// left-aligned and separated by at least two spaces; no trailing blanks.
/// With no entries, only the heading line.
pub fn list_table(entries: &[ListEntry]) -> String {
    let mut rows: Vec<[String; 7]> = vec![HEADINGS.map(String::from)];
    rows.extend(entries.iter().map(table_row));
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One entry as a JSON object, keys in a fixed order.
fn json_object(entry: &ListEntry) -> String {
    let string = |s: &str| Value::String(s.to_string()).to_string();
    let mut fields: Vec<(&str, String)> = vec![("kind", string(kind_name(entry)))];
    match &entry.kind {
        EntryKind::Export { path, .. } => fields.push(("path", string(path))),
        EntryKind::Device {
            index, disk_name, ..
        } => {
            fields.push(("device", string(&format!("/dev/{disk_name}"))));
            fields.push(("index", index.to_string()));
        }
    }
    fields.push(("address", string(&entry.addr.ip().to_string())));
    fields.push(("port", entry.addr.port().to_string()));
    fields.push(("size", entry.size.to_string()));
    fields.push(("read_only", entry.read_only.to_string()));
    fields.push(("state", string(&state_name(entry))));
    match &entry.kind {
        EntryKind::Export { sessions, .. } => fields.push(("sessions", sessions.to_string())),
        EntryKind::Device {
            queue_depth,
            settings,
            counters,
            ..
        } => {
            fields.push(("queue_depth", queue_depth.to_string()));
            for (name, value) in settings.named() {
                if let Some(v) = value {
                    fields.push((name, v.to_string()));
                }
            }
            for (name, value) in counters.named() {
                if let Some(v) = value {
                    fields.push((name, v.to_string()));
                }
            }
        }
    }
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// The `-a list --json` output: a JSON array, one object per line; `[]`
/// when empty. Ends with a newline.
pub fn list_json(entries: &[ListEntry]) -> String {
    if entries.is_empty() {
        return "[]\n".to_string();
    }
    let objects: Vec<String> = entries
        .iter()
        .map(|e| format!("  {}", json_object(e)))
        .collect();
    format!("[\n{}\n]\n", objects.join(",\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{DeviceCounters, DeviceSettings};
    use std::net::SocketAddr;

    /// The kernel's defaults, as a module reports them.
    fn defaults() -> DeviceSettings {
        DeviceSettings {
            req_timeout_ms: Some(15000),
            max_resends: Some(10),
            reconnect_delay_ms: Some(1000),
            ping_interval_ms: Some(5000),
            ping_timeout_ms: Some(10000),
            loss_timeout_ms: Some(60000),
        }
    }

    fn entries() -> Vec<ListEntry> {
        vec![
            ListEntry {
                kind: EntryKind::Export {
                    path: "/dev/sdb".into(),
                    sessions: 2,
                },
                addr: "10.0.0.2:1025".parse().unwrap(),
                size: 512 << 20,
                read_only: false,
                state: EntryState::Connected,
            },
            ListEntry {
                kind: EntryKind::Export {
                    path: "/dev/mapper/vg0-\"data\"".into(),
                    sessions: 1,
                },
                addr: "[2001:db8::2]:2000".parse().unwrap(),
                size: 10 << 30,
                read_only: true,
                state: EntryState::Closing,
            },
            ListEntry {
                kind: EntryKind::Device {
                    index: 0,
                    disk_name: "dst0".into(),
                    queue_depth: 128,
                    settings: defaults(),
                    counters: DeviceCounters {
                        in_flight: Some(0),
                        reconnects: Some(2),
                        resends: Some(0),
                        timeouts: Some(1),
                        io_errors: Some(0),
                        bytes_read: Some(1 << 20),
                        bytes_written: Some(2 << 20),
                    },
                },
                addr: "10.0.0.1:1025".parse().unwrap(),
                size: 1536 << 20,
                read_only: false,
                state: EntryState::Connected,
            },
            ListEntry {
                // As an older module reports it: no settings, no counters.
                kind: EntryKind::Device {
                    index: 12,
                    disk_name: "dst12".into(),
                    queue_depth: 64,
                    settings: DeviceSettings::default(),
                    counters: DeviceCounters::default(),
                },
                addr: "192.0.2.7:9000".parse().unwrap(),
                size: 4096,
                read_only: true,
                state: EntryState::Reconnecting,
            },
            ListEntry {
                kind: EntryKind::Device {
                    index: 3,
                    disk_name: "dst3".into(),
                    queue_depth: 32,
                    settings: DeviceSettings {
                        ping_interval_ms: Some(0),
                        loss_timeout_ms: Some(5000),
                        ..defaults()
                    },
                    counters: DeviceCounters {
                        reconnects: Some(1),
                        resends: Some(17),
                        io_errors: Some(4),
                        ..Default::default()
                    },
                },
                addr: "10.9.0.1:1025".parse().unwrap(),
                size: 512 << 20,
                read_only: false,
                state: EntryState::Failed,
            },
        ]
    }

    #[test]
    fn human_sizes() {
        for (n, text) in [
            (0, "0 B"),
            (512, "512 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (512 << 20, "512.0 MiB"),
            ((1 << 30) - 1, "1.0 GiB"),
            (10 << 30, "10.0 GiB"),
            (3 << 40, "3.0 TiB"),
            (u64::MAX, "16.0 EiB"),
        ] {
            assert_eq!(human_size(n), text, "{n}");
        }
    }

    #[test]
    fn golden_table() {
        let table = list_table(&entries());
        let expected = r#"KIND    NAME                    PEER/LISTEN         SIZE       MODE  STATE         DETAIL
export  /dev/sdb                10.0.0.2:1025       512.0 MiB  rw    listening     2 sessions
export  /dev/mapper/vg0-"data"  [2001:db8::2]:2000  10.0 GiB   ro    closing       1 session
device  /dev/dst0               10.0.0.1:1025       1.5 GiB    rw    connected     depth 128, 2 reconnects
device  /dev/dst12              192.0.2.7:9000      4.0 KiB    ro    reconnecting  depth 64
device  /dev/dst3               10.9.0.1:1025       512.0 MiB  rw    failed        depth 32, 1 reconnect, 17 resends, 4 IO errors
"#;
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn golden_table_empty() {
        assert_eq!(
            list_table(&[]),
            "KIND  NAME  PEER/LISTEN  SIZE  MODE  STATE  DETAIL\n"
        );
    }

    #[test]
    fn golden_json() {
        let json = list_json(&entries());
        let expected = r#"[
  {"kind": "export", "path": "/dev/sdb", "address": "10.0.0.2", "port": 1025, "size": 536870912, "read_only": false, "state": "listening", "sessions": 2},
  {"kind": "export", "path": "/dev/mapper/vg0-\"data\"", "address": "2001:db8::2", "port": 2000, "size": 10737418240, "read_only": true, "state": "closing", "sessions": 1},
  {"kind": "device", "device": "/dev/dst0", "index": 0, "address": "10.0.0.1", "port": 1025, "size": 1610612736, "read_only": false, "state": "connected", "queue_depth": 128, "req_timeout_ms": 15000, "max_resends": 10, "reconnect_delay_ms": 1000, "ping_interval_ms": 5000, "ping_timeout_ms": 10000, "loss_timeout_ms": 60000, "in_flight": 0, "reconnects": 2, "resends": 0, "timeouts": 1, "io_errors": 0, "bytes_read": 1048576, "bytes_written": 2097152},
  {"kind": "device", "device": "/dev/dst12", "index": 12, "address": "192.0.2.7", "port": 9000, "size": 4096, "read_only": true, "state": "reconnecting", "queue_depth": 64},
  {"kind": "device", "device": "/dev/dst3", "index": 3, "address": "10.9.0.1", "port": 1025, "size": 536870912, "read_only": false, "state": "failed", "queue_depth": 32, "req_timeout_ms": 15000, "max_resends": 10, "reconnect_delay_ms": 1000, "ping_interval_ms": 0, "ping_timeout_ms": 10000, "loss_timeout_ms": 5000, "reconnects": 1, "resends": 17, "io_errors": 4}
]
"#;
        assert_eq!(json, expected, "\n{json}");
        // And it is valid JSON with the documented fields.
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value[0]["path"], "/dev/sdb");
        assert_eq!(value[1]["path"], "/dev/mapper/vg0-\"data\"");
        assert_eq!(value[2]["device"], "/dev/dst0");
        assert_eq!(value[3]["queue_depth"], 64);
        assert_eq!(value[2]["reconnects"], 2);
        assert_eq!(value[2]["loss_timeout_ms"], 60000);
        assert!(value[3].get("reconnects").is_none());
        assert!(value[3].get("req_timeout_ms").is_none());
        assert_eq!(value[4]["state"], "failed");
        assert_eq!(value[4]["ping_interval_ms"], 0);
        assert_eq!(value[4]["resends"], 17);
        assert_eq!(value[4]["io_errors"], 4);
        assert!(value[4].get("bytes_read").is_none());
        assert_eq!(value[2]["bytes_written"], 2 << 20);
        assert_eq!(value[2]["in_flight"], 0);
        assert!(value[0].get("queue_depth").is_none());
        assert!(value[0].get("reconnects").is_none());
    }

    #[test]
    fn state_names() {
        let device = entries().remove(2);
        let export = entries().remove(0);
        for (state, as_device, as_export) in [
            (EntryState::Connected, "connected", "listening"),
            (EntryState::Reconnecting, "reconnecting", "reconnecting"),
            (EntryState::Closing, "closing", "closing"),
            (EntryState::Failed, "failed", "failed"),
            (EntryState::Other(0), "unknown(0)", "unknown(0)"),
        ] {
            let mut d = device.clone();
            d.state = state;
            assert_eq!(state_name(&d), as_device);
            let mut e = export.clone();
            e.state = state;
            assert_eq!(state_name(&e), as_export);
        }
    }

    #[test]
    fn device_details() {
        let c = |reconnects, resends, io_errors| DeviceCounters {
            reconnects,
            resends,
            io_errors,
            in_flight: Some(5),
            timeouts: Some(5),
            bytes_read: Some(5),
            bytes_written: Some(5),
        };
        assert_eq!(device_detail(128, &DeviceCounters::default()), "depth 128");
        assert_eq!(
            device_detail(128, &c(Some(0), Some(0), Some(0))),
            "depth 128"
        );
        assert_eq!(
            device_detail(1, &c(Some(1), None, None)),
            "depth 1, 1 reconnect"
        );
        assert_eq!(
            device_detail(1, &c(None, Some(1), None)),
            "depth 1, 1 resend"
        );
        assert_eq!(
            device_detail(1, &c(None, None, Some(1))),
            "depth 1, 1 IO error"
        );
        assert_eq!(
            device_detail(8, &c(Some(u64::MAX), Some(2), Some(3))),
            "depth 8, 18446744073709551615 reconnects, 2 resends, 3 IO errors"
        );
    }

    #[test]
    fn golden_json_empty() {
        assert_eq!(list_json(&[]), "[]\n");
        let value: serde_json::Value = serde_json::from_str(&list_json(&[])).unwrap();
        assert_eq!(value, serde_json::json!([]));
    }

    #[test]
    fn unknown_state_is_shown_with_its_number() {
        let mut entry = entries().remove(0);
        entry.state = EntryState::Other(9);
        assert_eq!(state_name(&entry), "unknown(9)");
        let addr: SocketAddr = "[::1]:7".parse().unwrap();
        entry.addr = addr;
        assert!(list_json(&[entry]).contains(r#""address": "::1", "port": 7"#));
    }
}
