//! What `dstcfg` prints as text: sizes for humans, the `list` table, the
//! `status` report, `monitor` lines and the `check` line (JSON is in
//! `json.rs`).
//!
//! Everything here is a pure function of decoded messages (and, for events,
//! a given time), so the exact output is pinned by the golden tests
//! (`golden.rs`, files in `tests/golden/`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::args::LOSS_TIMEOUT_INFINITE;
use crate::message::{EntryKind, EntryState, Event, ListEntry, ModuleSettings, Status, Writer};
use crate::uapi;

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

/// `mib` MiB exactly, in the largest binary unit that holds it whole:
/// `64 GiB`, `1 TiB`, `1536 MiB` (as `--rekey-after` takes it: 64G, 1T,
/// 1536M).
pub fn mib_text(mib: u32) -> String {
    match mib {
        0 => "0 MiB".into(),
        n if n % (1 << 20) == 0 => format!("{} TiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{} GiB", n >> 10),
        n => format!("{n} MiB"),
    }
}

/// The lines of the key-update limits, each if given: `rekey after: 64
/// GiB`, `rekey interval: 3600 s`.
fn rekey_lines(rekey_mib: Option<u32>, rekey_seconds: Option<u32>) -> String {
    let mut out = String::new();
    if let Some(mib) = rekey_mib {
        out.push_str(&format!("rekey after: {}\n", mib_text(mib)));
    }
    if let Some(secs) = rekey_seconds {
        out.push_str(&format!("rekey interval: {secs} s\n"));
    }
    out
}

/// What `-a set` without `-d` prints once the module took the settings:
/// one line per setting given.
pub fn config_text(settings: &ModuleSettings) -> String {
    let mut out = String::new();
    if let Some(n) = settings.crypto_threads {
        out.push_str(&format!("crypto threads: {n}\n"));
    }
    out.push_str(&rekey_lines(settings.rekey_mib, settings.rekey_seconds));
    out
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

/// The name of an `enum dst_protection` value: `none`, `crc32c`, `hmac`,
/// `aead`, or `unknown(N)`.
pub fn protection_name(n: u32) -> String {
    match n {
        uapi::DST_PROT_NONE => "none".into(),
        uapi::DST_PROT_CRC32C => "crc32c".into(),
        uapi::DST_PROT_HMAC => "hmac".into(),
        uapi::DST_PROT_AEAD => "aead".into(),
        n => format!("unknown({n})"),
    }
}

/// A client id as `-a list` shows it, in the table and in the JSON output:
/// hex with 0x and 16 digits, `0x0123456789abcdef` (`--client-id` takes it
/// as it is). A string in JSON: many JSON readers (jq 1.6, JavaScript) round
/// numbers above 2^53, and a rounded id names another device.
pub fn client_id_text(id: u64) -> String {
    format!("{id:#018x}")
}

/// The holder of an export's write access: `web1 at 192.0.2.7:40112`, or
/// `web1` if its address is not reported.
pub fn writer_text(writer: &Writer) -> String {
    match writer.addr {
        Some(addr) => format!("{} at {addr}", writer.name),
        None => writer.name.clone(),
    }
}

/// The name of an `enum dst_event` value, as `-a monitor` prints it.
pub fn event_name(n: u32) -> String {
    match n {
        uapi::DST_EVENT_CONNECTED => "connected".into(),
        uapi::DST_EVENT_LOST => "lost".into(),
        uapi::DST_EVENT_RECONNECTED => "reconnected".into(),
        uapi::DST_EVENT_FAILED => "failed".into(),
        uapi::DST_EVENT_DELETED => "deleted".into(),
        uapi::DST_EVENT_SESSION_OPENED => "session-opened".into(),
        uapi::DST_EVENT_SESSION_CLOSED => "session-closed".into(),
        uapi::DST_EVENT_SESSION_REFUSED => "session-refused".into(),
        n => format!("unknown({n})"),
    }
}

/// "1 reconnect", "2 reconnects"; "3 refused" (a participle has no plural).
fn count(n: u64, what: &str) -> String {
    let plural = n != 1 && !what.ends_with("ed");
    format!("{n} {what}{}", if plural { "s" } else { "" })
}

/// `count` of the counters that are reported and not zero.
fn nonzero_counts(counts: &[(Option<u64>, &str)]) -> Vec<String> {
    counts
        .iter()
        .filter_map(|(value, what)| value.filter(|n| *n > 0).map(|n| count(n, what)))
        .collect()
}

/// The protection of an entry for the table: `crc32c`, `hmac hmac(sha256)`,
/// `aead gcm(aes)`; nothing for none or when not reported.
fn protection_detail(entry: &ListEntry) -> Option<String> {
    let mode = entry
        .protection
        .filter(|p| *p != uapi::DST_PROT_NONE)
        .map(protection_name);
    match (mode, &entry.alg) {
        (Some(mode), Some(alg)) => Some(format!("{mode} {alg}")),
        (Some(mode), None) => Some(mode),
        (None, Some(alg)) => Some(alg.clone()),
        (None, None) => None,
    }
}

/// The DETAIL column of a device: the queue depth, the queues, the
/// protection, the identities of its export and its own, and the client id
/// when reported, then the reconnect, resend, IO error and integrity error
/// counters that are reported and not zero.
fn device_detail(entry: &ListEntry) -> String {
    let EntryKind::Device {
        queue_depth,
        counters: c,
        queues,
        client_id,
        export_name,
        client_name,
        settings,
        ..
    } = &entry.kind
    else {
        return String::new();
    };
    let mut parts = vec![format!("depth {queue_depth}")];
    parts.extend(queues.map(|n| count(n.into(), "queue")));
    parts.extend(protection_detail(entry));
    parts.extend(export_name.as_ref().map(|n| format!("export {n}")));
    parts.extend(client_name.as_ref().map(|n| format!("client {n}")));
    parts.extend(client_id.map(|id| format!("client-id {}", client_id_text(id))));
    if settings.loss_timeout_ms == Some(LOSS_TIMEOUT_INFINITE) {
        parts.push("loss-timeout infinite".into());
    }
    parts.extend(nonzero_counts(&[
        (c.reconnects, "reconnect"),
        (c.resends, "resend"),
        (c.io_errors, "IO error"),
        (entry.integrity_errors, "integrity error"),
    ]));
    parts.join(", ")
}

/// The DETAIL column of an export: `exportN` and its identity when
/// reported, the sessions, `shared` or who writes (`writer NAME at
/// ADDR:PORT`) when someone does, the protection and the allow-list, then
/// the refused clients and integrity errors that are reported and not
/// zero.
fn export_detail(entry: &ListEntry) -> String {
    let EntryKind::Export {
        sessions,
        index,
        allow,
        refused,
        name,
        shared,
        writer,
        ..
    } = &entry.kind
    else {
        return String::new();
    };
    let mut parts = Vec::new();
    parts.extend(index.map(|n| format!("export{n}")));
    parts.extend(name.as_ref().map(|n| format!("name {n}")));
    parts.push(count((*sessions).into(), "session"));
    if *shared {
        parts.push("shared".into());
    }
    parts.extend(
        writer
            .as_ref()
            .map(|w| format!("writer {}", writer_text(w))),
    );
    parts.extend(protection_detail(entry));
    if !allow.is_empty() {
        let rules: Vec<String> = allow.iter().map(|r| r.to_string()).collect();
        parts.push(format!("allow {}", rules.join(" ")));
    }
    parts.extend(nonzero_counts(&[
        (*refused, "refused"),
        (entry.integrity_errors, "integrity error"),
    ]));
    parts.join(", ")
}

fn kind_name(entry: &ListEntry) -> &'static str {
    match entry.kind {
        EntryKind::Export { .. } => "export",
        EntryKind::Device { .. } => "device",
    }
}

/// Lays out `rows` (the first is the heading) as columns left-aligned and
/// separated by at least two spaces; no trailing blanks.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; n];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
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

fn table_row(entry: &ListEntry) -> Vec<String> {
    let (name, detail) = match &entry.kind {
        EntryKind::Export { path, .. } => (path.clone(), export_detail(entry)),
        EntryKind::Device { disk_name, .. } => (format!("/dev/{disk_name}"), device_detail(entry)),
    };
    vec![
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
    let mut rows = vec![HEADINGS.map(String::from).to_vec()];
    rows.extend(entries.iter().map(table_row));
    columns(&rows)
}

/// A counter for the status tables: the number, or `-` if not reported.
fn cell(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// `name`, or `-` if not reported, for the identity columns of `-a status`.
fn name_cell(name: &Option<String>) -> String {
    name.clone().unwrap_or_else(|| "-".to_string())
}

/// The `-a status` report: the module line, the crypto threads and the
/// key-update limits if reported, then a table of the exports and one of the devices with their
/// counters (`-`: not reported by this module). The identities close each
/// table (exports: NAME; devices: EXPORT and CLIENT) if the module reports
/// them for one of its rows.
pub fn status_text(status: &Status, entries: &[ListEntry]) -> String {
    let mut out = format!("{}\n", status.to_text());
    if let Some(n) = status.crypto_threads {
        let what = if n == 0 {
            "0 (inline)".to_string()
        } else {
            n.to_string()
        };
        out.push_str(&format!("crypto threads: {what}\n"));
    }
    out.push_str(&rekey_lines(status.rekey_mib, status.rekey_seconds));
    let mut exports = vec![[
        "EXPORT",
        "LISTEN",
        "STATE",
        "SESSIONS",
        "REFUSED",
        "INTEGRITY-ERRORS",
    ]
    .map(String::from)
    .to_vec()];
    let mut devices = vec![[
        "DEVICE",
        "PEER",
        "STATE",
        "IN-FLIGHT",
        "READ",
        "WRITTEN",
        "RECONNECTS",
        "RESENDS",
        "TIMEOUTS",
        "IO-ERRORS",
        "INTEGRITY-ERRORS",
    ]
    .map(String::from)
    .to_vec()];
    let export_names = entries
        .iter()
        .any(|e| matches!(&e.kind, EntryKind::Export { name: Some(_), .. }));
    let device_names = entries.iter().any(|e| {
        matches!(
            &e.kind,
            EntryKind::Device { export_name, client_name, .. }
                if export_name.is_some() || client_name.is_some()
        )
    });
    if export_names {
        exports[0].push("NAME".into());
    }
    if device_names {
        devices[0].extend(["EXPORT".into(), "CLIENT".into()]);
    }
    for entry in entries {
        match &entry.kind {
            EntryKind::Export {
                path,
                sessions,
                refused,
                name,
                ..
            } => {
                let mut row = vec![
                    path.clone(),
                    entry.addr.to_string(),
                    state_name(entry),
                    sessions.to_string(),
                    cell(*refused),
                    cell(entry.integrity_errors),
                ];
                if export_names {
                    row.push(name_cell(name));
                }
                exports.push(row);
            }
            EntryKind::Device {
                disk_name,
                counters: c,
                export_name,
                client_name,
                ..
            } => {
                let mut row = vec![
                    format!("/dev/{disk_name}"),
                    entry.addr.to_string(),
                    state_name(entry),
                    cell(c.in_flight.map(u64::from)),
                    c.bytes_read.map_or_else(|| "-".into(), human_size),
                    c.bytes_written.map_or_else(|| "-".into(), human_size),
                    cell(c.reconnects),
                    cell(c.resends),
                    cell(c.timeouts),
                    cell(c.io_errors),
                    cell(entry.integrity_errors),
                ];
                if device_names {
                    row.extend([name_cell(export_name), name_cell(client_name)]);
                }
                devices.push(row);
            }
        }
    }
    if exports.len() == 1 && devices.len() == 1 {
        out.push_str("no exports, no devices\n");
        return out;
    }
    for table in [exports, devices] {
        if table.len() > 1 {
            out.push('\n');
            out.push_str(&columns(&table));
        }
    }
    out
}

/// A wall-clock time with the local UTC offset, as `-a monitor` stamps
/// events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the Unix epoch (UTC).
    pub secs: i64,
    /// Milliseconds within the second.
    pub millis: u32,
    /// Offset of local time from UTC, in seconds (east positive).
    pub utc_offset: i32,
}

impl Timestamp {
    /// Now, with the local time zone's offset.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs() as i64;
        Self {
            secs,
            millis: since.subsec_millis(),
            utc_offset: local_offset(secs),
        }
    }
}

/// The local time zone's offset from UTC at `secs`, in seconds.
fn local_offset(secs: i64) -> i32 {
    let t = secs as libc::time_t;
    // SAFETY: `tm` is plain data; localtime_r only writes into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        tm.tm_gmtoff as i32
    } else {
        0
    }
}

/// Year, month, day of day `days` since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl std::fmt::Display for Timestamp {
    /// ISO 8601 local time with milliseconds and offset:
    /// `2026-11-24T10:15:02.123+01:00`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let local = self.secs + i64::from(self.utc_offset);
        let (y, mo, d) = civil_from_days(local.div_euclid(86_400));
        let s = local.rem_euclid(86_400);
        let sign = if self.utc_offset < 0 { '-' } else { '+' };
        let off = self.utc_offset.unsigned_abs() / 60;
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
            s / 3600,
            s / 60 % 60,
            s % 60,
            self.millis,
            off / 60,
            off % 60
        )
    }
}

/// The peer of an export event: `ADDR:PORT`, or `ADDR`.
fn peer(event: &Event) -> Option<String> {
    match (event.peer_addr, event.peer_port) {
        (Some(a), Some(p)) => Some(std::net::SocketAddr::new(a, p).to_string()),
        (Some(a), None) => Some(a.to_string()),
        _ => None,
    }
}

/// One `-a monitor` line: `TIME NAME EVENT[ peer ADDR:PORT][: MESSAGE]`.
pub fn event_line(event: &Event, time: &Timestamp) -> String {
    let mut line = format!("{time} {} {}", event.name(), event_name(event.event));
    if let Some(p) = peer(event) {
        line.push_str(&format!(" peer {p}"));
    }
    if let Some(m) = &event.message {
        line.push_str(&format!(": {m}"));
    }
    line
}

/// The name of an entry as `monitor` prints it: `dst0`, `export0` (an
/// export's path if the module reports no index).
pub fn entry_name(entry: &ListEntry) -> String {
    match &entry.kind {
        EntryKind::Device { disk_name, .. } => disk_name.clone(),
        EntryKind::Export { index: Some(n), .. } => format!("export{n}"),
        EntryKind::Export { path, .. } => path.clone(),
    }
}

/// One `monitor --now` line for an entry as it is: `TIME dst0 exists:
/// connected to 10.0.0.2:1025`, `TIME export0 exists: listening on
/// 10.0.0.2:1025, /dev/ram0`.
pub fn exists_line(entry: &ListEntry, time: &Timestamp) -> String {
    let state = state_name(entry);
    let place = match &entry.kind {
        EntryKind::Device { .. } => format!("{state} to {}", entry.addr),
        EntryKind::Export { path, .. } => format!("{state} on {}, {path}", entry.addr),
    };
    format!("{time} {} exists: {place}", entry_name(entry))
}

/// What `-a check -d dstN` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Connected: exit status 0.
    Connected(String),
    /// Exists, not connected: exit status 1.
    NotConnected(String),
    /// No such device: exit status 2.
    Missing(String),
}

/// Looks up `/dev/dst<index>` in `entries` and says how it is.
pub fn check(index: u32, entries: &[ListEntry]) -> CheckResult {
    let found = entries
        .iter()
        .find(|e| matches!(&e.kind, EntryKind::Device { index: i, .. } if *i == index));
    let Some(entry) = found else {
        return CheckResult::Missing(format!(
            "there is no device /dev/dst{index}; see dstcfg list"
        ));
    };
    let EntryKind::Device { disk_name, .. } = &entry.kind else {
        unreachable!("found a device");
    };
    let line = format!(
        "/dev/{disk_name} {} (export node {})",
        state_name(entry),
        entry.addr
    );
    if entry.state == EntryState::Connected {
        CheckResult::Connected(line)
    } else {
        CheckResult::NotConnected(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn mib_texts() {
        for (mib, text) in [
            (1, "1 MiB"),
            (1023, "1023 MiB"),
            (1024, "1 GiB"),
            (1536, "1536 MiB"),
            (65536, "64 GiB"),
            (1 << 20, "1 TiB"),
            ((1 << 20) + 1024, "1025 GiB"),
            (0, "0 MiB"),
        ] {
            assert_eq!(mib_text(mib), text, "{mib}");
        }
        // What -a status prints, --rekey-after takes back.
        for mib in [1, 1536, 65536, 1 << 20] {
            let text = mib_text(mib).replace(' ', "");
            assert_eq!(crate::args::parse_rekey_after(&text), Ok(mib), "{text}");
        }
    }

    #[test]
    fn config_texts() {
        let mut settings = ModuleSettings {
            crypto_threads: Some(4),
            ..Default::default()
        };
        assert_eq!(config_text(&settings), "crypto threads: 4\n");
        settings.crypto_threads = Some(0);
        assert_eq!(config_text(&settings), "crypto threads: 0\n");
        settings.rekey_mib = Some(16 << 10);
        settings.rekey_seconds = Some(600);
        assert_eq!(
            config_text(&settings),
            "crypto threads: 0\nrekey after: 16 GiB\nrekey interval: 600 s\n"
        );
        settings.crypto_threads = None;
        settings.rekey_mib = None;
        assert_eq!(config_text(&settings), "rekey interval: 600 s\n");
        assert_eq!(config_text(&ModuleSettings::default()), "");
    }

    #[test]
    fn client_ids() {
        assert_eq!(client_id_text(1), "0x0000000000000001");
        assert_eq!(client_id_text(0x1234), "0x0000000000001234");
        assert_eq!(client_id_text(0x0123_4567_89ab_cdef), "0x0123456789abcdef");
        assert_eq!(client_id_text(u64::MAX), "0xffffffffffffffff");
        // What -a list prints, --client-id takes back.
        for id in [1, 0x1234, 1 << 53 | 1, u64::MAX] {
            assert_eq!(crate::args::parse_client_id(&client_id_text(id)), Ok(id));
        }
    }

    #[test]
    fn names() {
        assert_eq!(protection_name(0), "none");
        assert_eq!(protection_name(3), "aead");
        assert_eq!(protection_name(7), "unknown(7)");
        assert_eq!(event_name(1), "connected");
        assert_eq!(event_name(8), "session-refused");
        assert_eq!(event_name(0), "unknown(0)");
    }

    #[test]
    fn timestamps() {
        let t = |secs, millis, utc_offset| {
            Timestamp {
                secs,
                millis,
                utc_offset,
            }
            .to_string()
        };
        assert_eq!(t(0, 0, 0), "1970-01-01T00:00:00.000+00:00");
        assert_eq!(t(1_795_511_702, 7, 3600), "2026-11-24T10:15:02.007+01:00");
        assert_eq!(
            t(1_795_511_702, 999, -5 * 3600 - 1800),
            "2026-11-24T03:45:02.999-05:30"
        );
        // Leap day, and the end of a year.
        assert_eq!(t(951_782_400, 0, 0), "2000-02-29T00:00:00.000+00:00");
        assert_eq!(t(1_767_225_599, 0, 0), "2025-12-31T23:59:59.000+00:00");
        assert_eq!(t(-1, 0, 0), "1969-12-31T23:59:59.000+00:00");
        // The live clock gives something of the same shape.
        let now = Timestamp::now().to_string();
        assert_eq!(now.len(), "2026-11-24T10:15:02.007+01:00".len(), "{now}");
    }
}
