//! What `dstcfg apply` and `down` must do: the file's entries ([`Desired`])
//! compared with the running state (`DST_CMD_STATUS`, `DST_CMD_LIST`) and
//! the record of what the file manages, giving a [`Plan`]. Pure: nothing is
//! asked of the kernel here, so every rule is unit-tested.
//!
//! Matching: an export is the running export listening on its address; a
//! device is the recorded device of the same entry (export node address
//! and `export_name`), or else a running device to that address (of that
//! export name, if given; read-only, if the entry is) that no file
//! manages, preferring the entry's `index`, then the lowest: it is
//! adopted. Objects another file manages are left alone.
//!
//! Changes: device timeouts and `max_resends` change live (`DST_CMD_DEV_SET`;
//! a key left out means the default of a new device); module settings
//! given change live (`DST_CMD_CONFIG`; a key left out leaves the module's
//! value); anything else that differs is reported as needing a re-create,
//! never done here (a device may be mounted): an export's `shared` among
//! them, and a device's `read_only` (a read-only entry whose device
//! writes; a read-write entry whose device was recorded as asking for
//! reads only: the kernel reports whether a device is read-only, not
//! whether it asked to be, as the export may grant only reads). Only what the record lists
//! for this file is removed; devices before exports.

use std::fmt;

use crate::config::{format_ms, Desired, DesiredDevice, DesiredExport};
use crate::message::{DeviceSettings, EntryKind, ListEntry, ModuleSettings};
use crate::output::{human_size, protection_name};
use crate::record::{Managed, ManagedDevice, ManagedExport, Record};

/// The running state apply compares the file with.
#[derive(Debug, Clone, Default)]
pub struct Running {
    /// The module's settings, as far as `DST_CMD_STATUS` reports them.
    pub module: ModuleSettings,
    /// Every export and device (`DST_CMD_LIST`).
    pub entries: Vec<ListEntry>,
}

/// One thing to do, in the order of [`Plan::steps`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `DST_CMD_CONFIG` with the settings that differ.
    Module {
        /// Only the settings to change.
        settings: ModuleSettings,
        /// What changes, for the message.
        changes: Vec<Change>,
    },
    /// `DST_CMD_DEV_DEL` of a managed device no entry describes any more.
    DeleteDevice(ManagedDevice),
    /// `DST_CMD_EXPORT_DEL` of a managed export no entry describes any more.
    Unexport(ManagedExport),
    /// `DST_CMD_EXPORT_ADD` of `Desired::exports[.0]`.
    CreateExport(usize),
    /// `DST_CMD_DEV_ADD` of `Desired::devices[.0]`.
    CreateDevice(usize),
    /// `DST_CMD_DEV_SET` of a device's settings that differ.
    SetDevice {
        /// Its entry in `Desired::devices`.
        entry: usize,
        /// N of /dev/dstN.
        index: u32,
        /// Only the settings to change.
        settings: DeviceSettings,
        /// What changes, for the message.
        changes: Vec<Change>,
    },
}

/// A value that changes: `loss_timeout 1m -> 30s`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The file's key.
    pub key: &'static str,
    /// The running value.
    pub from: String,
    /// The file's value.
    pub to: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.key, self.from, self.to)
    }
}

/// An object that differs from its entry in what only a re-create changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recreate {
    /// `/dev/dst0 (device for 192.0.2.1:1025)`, `export on ...`.
    pub what: String,
    /// The entry's line.
    pub line: usize,
    /// The differences.
    pub changes: Vec<Change>,
    /// The commands that re-create it.
    pub how: String,
}

/// The running object an entry matched, and the record it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<T> {
    /// Its position in [`Running::entries`].
    pub running: usize,
    /// What the record says of it from now on.
    pub record: T,
    /// It was not managed before: adopted now.
    pub adopted: bool,
}

/// What apply does, and what it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// In order: module settings, device deletes, export deletes, export
    /// creates, device creates, device settings.
    pub steps: Vec<Step>,
    /// Objects that need a re-create to match their entries.
    pub recreate: Vec<Recreate>,
    /// Entries left alone: their object is another file's.
    pub conflicts: Vec<String>,
    /// Per `Desired::exports` entry: the running export it matched.
    pub exports: Vec<Option<Matched<ManagedExport>>>,
    /// Per `Desired::devices` entry: the running device it matched.
    pub devices: Vec<Option<Matched<ManagedDevice>>>,
}

impl Plan {
    /// Nothing to do and nothing that differs: the running state matches.
    pub fn in_sync(&self) -> bool {
        self.steps.is_empty() && self.recreate.is_empty() && self.conflicts.is_empty()
    }
}

/// The running export or device a record entry stands for, if it is still
/// that object.
pub fn export_of(running: &Running, rec: &ManagedExport) -> Option<usize> {
    running.entries.iter().position(|e| {
        matches!(&e.kind, EntryKind::Export { path, name, .. }
            if *path == rec.path && (rec.name.is_none() || *name == rec.name))
            && e.addr == rec.addr
    })
}

/// Which of the running `entries` an export entry stands for: at its
/// address, the one of its name; without a name, the one serving its
/// device, or else the first there.
pub fn export_for(entries: &[ListEntry], d: &DesiredExport) -> Option<usize> {
    let at = |e: &ListEntry| e.addr == d.addr;
    let exports = || {
        entries
            .iter()
            .enumerate()
            .filter_map(|(r, e)| match &e.kind {
                EntryKind::Export { path, name, .. } if at(e) => Some((r, path, name)),
                _ => None,
            })
    };
    match &d.entry.name {
        Some(want) => exports()
            .find(|(_, _, name)| name.as_ref() == Some(want))
            .map(|(r, _, _)| r),
        None => exports()
            .find(|(_, path, _)| **path == d.device_path)
            .or_else(|| exports().next())
            .map(|(r, _, _)| r),
    }
}

pub fn device_of(running: &Running, rec: &ManagedDevice) -> Option<usize> {
    running.entries.iter().position(|e| match &e.kind {
        EntryKind::Device {
            index, client_id, ..
        } => {
            *index == rec.index
                && e.addr == rec.addr
                && (rec.client_id.is_none() || client_id.is_none() || *client_id == rec.client_id)
        }
        _ => false,
    })
}

/// The running objects the other files' records hold.
fn others(running: &Running, record: &Record, file: &str) -> Vec<(usize, String)> {
    let mut held = Vec::new();
    for (other, managed) in record.files.iter().filter(|(f, _)| f.as_str() != file) {
        for rec in &managed.exports {
            held.extend(export_of(running, rec).map(|i| (i, other.clone())));
        }
        for rec in &managed.devices {
            held.extend(device_of(running, rec).map(|i| (i, other.clone())));
        }
    }
    held
}

/// The plan of `apply`: make the running state match `desired`; `file` is
/// its key in `record`.
pub fn plan_apply(desired: &Desired, running: &Running, record: &Record, file: &str) -> Plan {
    let mine = record.files.get(file).cloned().unwrap_or_default();
    let held = others(running, record, file);
    let held_by = |i: usize| held.iter().find(|(j, _)| *j == i).map(|(_, f)| f.clone());
    let mut plan = Plan::default();
    let shown = desired.file.display();

    // Module settings given that differ.
    let want = desired.module.settings();
    let mut module = ModuleSettings::default();
    let mut changes = Vec::new();
    let cmp = |key, want: Option<u32>, have: Option<u32>, show: &dyn Fn(u32) -> String| match want {
        Some(w) if have != Some(w) => Some(Change {
            key,
            from: have.map(show).unwrap_or_else(|| "?".into()),
            to: show(w),
        }),
        _ => None,
    };
    if let Some(c) = cmp(
        "crypto_threads",
        want.crypto_threads,
        running.module.crypto_threads,
        &|n| n.to_string(),
    ) {
        module.crypto_threads = want.crypto_threads;
        changes.push(c);
    }
    if let Some(c) = cmp(
        "rekey_after",
        want.rekey_mib,
        running.module.rekey_mib,
        &|mib| human_size(u64::from(mib) << 20),
    ) {
        module.rekey_mib = want.rekey_mib;
        changes.push(c);
    }
    if let Some(c) = cmp(
        "rekey_interval",
        want.rekey_seconds,
        running.module.rekey_seconds,
        &|s| format_ms(s.saturating_mul(1000), false),
    ) {
        module.rekey_seconds = want.rekey_seconds;
        changes.push(c);
    }
    if !changes.is_empty() {
        plan.steps.push(Step::Module {
            settings: module,
            changes,
        });
    }

    // Exports: by address and name.
    let mut creates = Vec::new();
    for (i, d) in desired.exports.iter().enumerate() {
        let Some(r) = export_for(&running.entries, d) else {
            creates.push(Step::CreateExport(i));
            plan.exports.push(None);
            continue;
        };
        if let Some(other) = held_by(r) {
            plan.conflicts.push(format!(
                "{shown}:{}: the {} is managed by {other}; left alone",
                d.line,
                d.label()
            ));
            plan.exports.push(None);
            continue;
        }
        let rec = mine
            .exports
            .iter()
            .find(|rec| export_of(running, rec) == Some(r));
        let known = rec.filter(|rec| rec.known);
        let diffs = export_diffs(d, &running.entries[r], known);
        let record = match (&diffs.is_empty(), rec) {
            // What runs is still what the old record says.
            (false, Some(rec)) => rec.clone(),
            _ => managed_export(d, &running.entries[r], rec.is_none_or(|rec| rec.known)),
        };
        if !diffs.is_empty() {
            let name = match &running.entries[r].kind {
                EntryKind::Export { name: Some(n), .. } => format!(" -n {n}"),
                _ => String::new(),
            };
            plan.recreate.push(Recreate {
                what: format!("the {}", d.label()),
                line: d.line,
                changes: diffs,
                how: format!(
                    "dstcfg unexport -r {}{name}, then dstcfg apply (its devices reconnect)",
                    d.addr
                ),
            });
        }
        plan.exports.push(Some(Matched {
            running: r,
            record,
            adopted: rec.is_none(),
        }));
    }

    // Devices: the recorded one of the entry, or one to adopt.
    let mut claimed: Vec<usize> = Vec::new();
    let recorded: Vec<usize> = record
        .files
        .values()
        .flat_map(|m| m.devices.iter().filter_map(|rec| device_of(running, rec)))
        .collect();
    let mut device_creates = Vec::new();
    let mut sets = Vec::new();
    for (i, d) in desired.devices.iter().enumerate() {
        let own = mine.devices.iter().find_map(|rec| {
            let r = device_of(running, rec)?;
            (rec.addr == d.addr && rec.export_name == d.entry.export_name && !claimed.contains(&r))
                .then_some((r, rec))
        });
        let found = match own {
            Some((r, rec)) => Some((r, Some(rec))),
            None => {
                let mut candidates: Vec<(usize, u32)> = running
                    .entries
                    .iter()
                    .enumerate()
                    .filter_map(|(r, e)| match &e.kind {
                        EntryKind::Device {
                            index, export_name, ..
                        } if e.addr == d.addr
                            && !claimed.contains(&r)
                            && !recorded.contains(&r)
                            && (!d.entry.read_only || e.read_only)
                            && (d.entry.export_name.is_none()
                                || *export_name == d.entry.export_name) =>
                        {
                            Some((r, *index))
                        }
                        _ => None,
                    })
                    .collect();
                candidates.sort_by_key(|&(_, index)| (Some(index) != d.entry.index, index));
                candidates.first().map(|&(r, _)| (r, None))
            }
        };
        let Some((r, rec)) = found else {
            // A device of another file to the same export is not this
            // entry's: say so rather than make a second one.
            if let Some((_, other)) = held.iter().find(|(j, _)| {
                let e = &running.entries[*j];
                matches!(&e.kind, EntryKind::Device { export_name, .. }
                    if e.addr == d.addr
                        && (d.entry.export_name.is_none() || *export_name == d.entry.export_name))
            }) {
                plan.conflicts.push(format!(
                    "{shown}:{}: the {} is managed by {other}; left alone",
                    d.line,
                    d.label()
                ));
            } else {
                device_creates.push(Step::CreateDevice(i));
            }
            plan.devices.push(None);
            continue;
        };
        claimed.push(r);
        let entry = &running.entries[r];
        let EntryKind::Device {
            index,
            settings,
            client_id,
            ..
        } = &entry.kind
        else {
            unreachable!("matched a device");
        };
        let known = rec.filter(|rec| rec.known);
        let diffs = device_diffs(d, entry, known);
        if !diffs.is_empty() {
            plan.recreate.push(Recreate {
                what: format!("/dev/dst{index} ({})", d.label()),
                line: d.line,
                changes: diffs.clone(),
                how: format!("unmount it, dstcfg delete -d dst{index}, then dstcfg apply"),
            });
        }
        let (live, changes) = settings_diff(&d.entry.wanted_settings(), settings);
        if !changes.is_empty() {
            sets.push(Step::SetDevice {
                entry: i,
                index: *index,
                settings: live,
                changes,
            });
        }
        let record = match (diffs.is_empty(), rec) {
            (false, Some(rec)) => rec.clone(),
            _ => managed_device(d, *index, *client_id, rec.is_none_or(|rec| rec.known)),
        };
        plan.devices.push(Some(Matched {
            running: r,
            record,
            adopted: rec.is_none(),
        }));
    }

    // Managed objects no entry matched: removed, devices first.
    for rec in &mine.devices {
        if let Some(r) = device_of(running, rec) {
            if !claimed.contains(&r) {
                plan.steps.push(Step::DeleteDevice(rec.clone()));
            }
        }
    }
    for rec in &mine.exports {
        if let Some(r) = export_of(running, rec) {
            let matched = plan.exports.iter().flatten().any(|m| m.running == r);
            if !matched {
                plan.steps.push(Step::Unexport(rec.clone()));
            }
        }
    }
    plan.steps.extend(creates);
    plan.steps.extend(device_creates);
    plan.steps.extend(sets);
    plan
}

/// The plan of `down`: remove what the record lists for `file` and, if the
/// file could be read, the running objects its entries match (unless
/// another file manages them); devices first.
pub fn plan_down(
    desired: Option<&Desired>,
    running: &Running,
    record: &Record,
    file: &str,
) -> Vec<Step> {
    let mine = record.files.get(file).cloned().unwrap_or_default();
    let mut devices: Vec<ManagedDevice> = mine
        .devices
        .iter()
        .filter(|rec| device_of(running, rec).is_some())
        .cloned()
        .collect();
    let mut exports: Vec<ManagedExport> = mine
        .exports
        .iter()
        .filter(|rec| export_of(running, rec).is_some())
        .cloned()
        .collect();
    if let Some(desired) = desired {
        let plan = plan_apply(desired, running, record, file);
        for m in plan.devices.into_iter().flatten() {
            if !devices
                .iter()
                .any(|d| device_of(running, d) == Some(m.running))
            {
                devices.push(m.record);
            }
        }
        for m in plan.exports.into_iter().flatten() {
            if !exports
                .iter()
                .any(|e| export_of(running, e) == Some(m.running))
            {
                exports.push(m.record);
            }
        }
    }
    let mut steps: Vec<Step> = devices.into_iter().map(Step::DeleteDevice).collect();
    steps.extend(exports.into_iter().map(Step::Unexport));
    steps
}

/// The record of an export entry matched or created.
pub fn managed_export(d: &DesiredExport, running: &ListEntry, known: bool) -> ManagedExport {
    let (path, name) = match &running.kind {
        EntryKind::Export { path, name, .. } => (path.clone(), name.clone()),
        EntryKind::Device { .. } => (String::new(), None),
    };
    ManagedExport {
        addr: d.addr,
        name,
        path,
        size: d.entry.size,
        max_io_pages: d.entry.max_io_pages,
        key_file: d.entry.key_file.clone(),
        key_desc: d.entry.key_desc.clone(),
        clients: d.entry.clients.clone(),
        known,
    }
}

/// The record of a device entry matched or created.
pub fn managed_device(
    d: &DesiredDevice,
    index: u32,
    client_id: Option<u64>,
    known: bool,
) -> ManagedDevice {
    ManagedDevice {
        index,
        addr: d.addr,
        client_id: client_id.or(d.entry.client_id),
        export_name: d.entry.export_name.clone(),
        queue_depth: d.entry.queue_depth,
        max_io_pages: d.entry.max_io_pages,
        key_file: d.entry.key_file.clone(),
        key_desc: d.entry.key_desc.clone(),
        read_only: d.entry.read_only,
        known,
    }
}

/// `queue_depth` of a device that was given none.
const DEFAULT_QUEUE_DEPTH: u32 = 128;
/// `max_io_pages` of an export or device that was given none.
const DEFAULT_MAX_IO_PAGES: u32 = 256;

/// `max_io_pages`, left out as its default.
fn pages(v: Option<u32>) -> String {
    v.unwrap_or(DEFAULT_MAX_IO_PAGES).to_string()
}

/// Shows an optional value of the file: the value, or `(none)`.
fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "(none)".into())
}

fn opt_path(v: &Option<std::path::PathBuf>) -> String {
    opt(&v.as_ref().map(|p| p.display().to_string()))
}

/// What an export or a device was asked for that the kernel does not
/// report: `max_io_pages`, `key_file`, `key_desc`.
type Unreported<'a> = (
    Option<u32>,
    &'a Option<std::path::PathBuf>,
    &'a Option<String>,
);

/// The values of a running object that differ from its entry.
#[derive(Default)]
struct Diffs(Vec<Change>);

impl Diffs {
    /// Notes `key` if `from`, the running value, is not `to`, the file's.
    fn differ(&mut self, key: &'static str, from: String, to: String) {
        if from != to {
            self.0.push(Change { key, from, to });
        }
    }

    /// Protection (left out: none) and, if given, the algorithm.
    fn security(
        &mut self,
        protection: Option<crate::cli::Protection>,
        alg: &Option<String>,
        r: &ListEntry,
    ) {
        if let Some(have) = r.protection {
            let want = protection.unwrap_or(crate::cli::Protection::None).number();
            self.differ("protection", protection_name(have), protection_name(want));
        }
        if let (Some(want), Some(have)) = (alg, &r.alg) {
            self.differ("alg", have.clone(), want.clone());
        }
    }

    /// What the record says the object was made with against the entry.
    fn unreported(&mut self, recorded: Unreported, wanted: Unreported) {
        self.differ("max_io_pages", pages(recorded.0), pages(wanted.0));
        self.differ("key_file", opt_path(recorded.1), opt_path(wanted.1));
        self.differ("key_desc", opt(recorded.2), opt(wanted.2));
    }
}

/// The differences of an export from its entry; `rec`: the record, if it
/// knows what the export was created with.
fn export_diffs(d: &DesiredExport, r: &ListEntry, rec: Option<&ManagedExport>) -> Vec<Change> {
    let e = &d.entry;
    let mut diffs = Diffs::default();
    let EntryKind::Export {
        path,
        allow,
        name,
        shared,
        ..
    } = &r.kind
    else {
        return diffs.0;
    };
    diffs.differ("path", path.clone(), d.device_path.clone());
    diffs.differ(
        "read_only",
        r.read_only.to_string(),
        e.read_only.to_string(),
    );
    diffs.differ("shared", shared.to_string(), e.shared.to_string());
    match (e.size, rec) {
        (Some(size), _) => diffs.differ("size", human_size(r.size), human_size(size)),
        (None, Some(rec)) if rec.size.is_some() => {
            diffs.differ("size", human_size(r.size), "(whole device)".into())
        }
        _ => {}
    }
    if let (Some(want), Some(have)) = (&e.name, name) {
        diffs.differ("name", have.clone(), want.clone());
    }
    diffs.security(e.protection, &e.alg, r);
    let mut have: Vec<String> = allow.iter().map(ToString::to_string).collect();
    let mut want: Vec<String> = e.allow.iter().map(|a| a.0.to_string()).collect();
    have.sort();
    want.sort();
    diffs.differ(
        "allow",
        format!("[{}]", have.join(", ")),
        format!("[{}]", want.join(", ")),
    );
    if let Some(rec) = rec {
        diffs.unreported(
            (rec.max_io_pages, &rec.key_file, &rec.key_desc),
            (e.max_io_pages, &e.key_file, &e.key_desc),
        );
        if rec.clients != e.clients {
            let names = |c: &[crate::config::ClientEntry]| {
                let n: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
                format!("[{}]", n.join(", "))
            };
            let (from, to) = (names(&rec.clients), names(&e.clients));
            if from == to {
                diffs.differ("client", "(other keys or access)".into(), to);
            } else {
                diffs.differ("client", from, to);
            }
        }
    }
    diffs.0
}

/// The differences of a device from its entry that only a re-create
/// changes.
fn device_diffs(d: &DesiredDevice, r: &ListEntry, rec: Option<&ManagedDevice>) -> Vec<Change> {
    let e = &d.entry;
    let mut diffs = Diffs::default();
    let EntryKind::Device {
        index,
        queues,
        client_id,
        client_name,
        ..
    } = &r.kind
    else {
        return diffs.0;
    };
    if let Some(want) = e.index {
        diffs.differ("index", index.to_string(), want.to_string());
    }
    if let (Some(want), Some(have)) = (e.queues, queues) {
        diffs.differ("queues", have.to_string(), want.to_string());
    }
    if let (Some(want), Some(have)) = (e.client_id, client_id) {
        diffs.differ(
            "client_id",
            format!("{have:#018x}"),
            format!("{want:#018x}"),
        );
    }
    if let (Some(want), Some(have)) = (&e.client_name, client_name) {
        diffs.differ("client_name", have.clone(), want.clone());
    }
    // Read-only asked for and the device writes; or read-write asked for
    // and the device was made asking for reads only (a read-only device
    // not recorded so may be all the export grants).
    if e.read_only && !r.read_only {
        diffs.differ("read_only", "false".into(), "true".into());
    } else if !e.read_only && rec.is_some_and(|rec| rec.read_only) {
        diffs.differ("read_only", "true".into(), "false".into());
    }
    diffs.security(e.protection, &e.alg, r);
    if let Some(rec) = rec {
        // Left out is the default: a saved file writes the default out.
        let depth = |v: Option<u32>| v.unwrap_or(DEFAULT_QUEUE_DEPTH).to_string();
        diffs.differ("queue_depth", depth(rec.queue_depth), depth(e.queue_depth));
        diffs.unreported(
            (rec.max_io_pages, &rec.key_file, &rec.key_desc),
            (e.max_io_pages, &e.key_file, &e.key_desc),
        );
    }
    diffs.0
}

/// The settings of `want` that differ from `have` (those `have` reports),
/// and the changes for the message.
fn settings_diff(want: &DeviceSettings, have: &DeviceSettings) -> (DeviceSettings, Vec<Change>) {
    let mut out = DeviceSettings::default();
    let mut changes = Vec::new();
    let keys: [(&'static str, bool); 6] = [
        ("req_timeout", true),
        ("max_resends", false),
        ("reconnect_delay", true),
        ("ping_interval", true),
        ("ping_timeout", true),
        ("loss_timeout", true),
    ];
    let wants = want.named();
    let haves = have.named();
    let mut slots = [
        &mut out.req_timeout_ms,
        &mut out.max_resends,
        &mut out.reconnect_delay_ms,
        &mut out.ping_interval_ms,
        &mut out.ping_timeout_ms,
        &mut out.loss_timeout_ms,
    ];
    for (i, ((key, is_ms), slot)) in keys.iter().zip(slots.iter_mut()).enumerate() {
        let (Some(w), Some(h)) = (wants[i].1, haves[i].1) else {
            continue;
        };
        if w != h {
            **slot = Some(w);
            let show = |v: u32| {
                if *is_ms {
                    format_ms(v, *key == "loss_timeout")
                } else {
                    v.to_string()
                }
            };
            changes.push(Change {
                key,
                from: show(h),
                to: show(w),
            });
        }
    }
    (out, changes)
}

/// The record of `file` after apply: the matched objects' records, plus
/// `created`, plus the managed objects whose removal failed.
pub fn next_record(plan: &Plan, created: Managed, kept: Managed) -> Managed {
    let mut managed = Managed::default();
    managed
        .exports
        .extend(plan.exports.iter().flatten().map(|m| m.record.clone()));
    managed
        .devices
        .extend(plan.devices.iter().flatten().map(|m| m.record.clone()));
    managed.exports.extend(created.exports);
    managed.devices.extend(created.devices);
    managed.exports.extend(kept.exports);
    managed.devices.extend(kept.devices);
    managed
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{parse, DEVICE_DEFAULTS};
    use crate::message::{DeviceCounters, EntryState};

    pub(crate) const FILE: &str = "/etc/dst/dst.toml";

    pub(crate) fn desired(text: &str) -> Desired {
        parse(text, Path::new(FILE), &crate::cli::parse_remote).unwrap()
    }

    pub(crate) fn export(addr: &str, path: &str) -> ListEntry {
        ListEntry {
            kind: EntryKind::Export {
                shared: false,
                writer: None,
                path: path.into(),
                sessions: 0,
                index: Some(0),
                allow: Vec::new(),
                refused: None,
                name: Some(format!("node1:{}", path.trim_start_matches("/dev/"))),
            },
            addr: addr.parse().unwrap(),
            size: 1 << 30,
            read_only: false,
            state: EntryState::Connected,
            protection: Some(crate::uapi::DST_PROT_NONE),
            alg: None,
            integrity_errors: None,
        }
    }

    pub(crate) fn device(addr: &str, index: u32, client_id: u64) -> ListEntry {
        ListEntry {
            kind: EntryKind::Device {
                index,
                disk_name: format!("dst{index}"),
                queue_depth: 128,
                settings: DEVICE_DEFAULTS,
                counters: DeviceCounters::default(),
                queues: Some(1),
                client_id: Some(client_id),
                export_name: Some("node1:ram0".into()),
                client_name: Some("node1".into()),
            },
            addr: addr.parse().unwrap(),
            size: 1 << 30,
            read_only: false,
            state: EntryState::Connected,
            protection: Some(crate::uapi::DST_PROT_NONE),
            alg: None,
            integrity_errors: None,
        }
    }

    /// What the kernel would look like after `plan` (every step
    /// succeeding), and the record apply would keep.
    pub(crate) fn simulate(
        plan: &Plan,
        d: &Desired,
        running: &Running,
        record: &Record,
    ) -> (Running, Record) {
        let mut after = running.clone();
        let mut created = Managed::default();
        for step in &plan.steps {
            match step {
                Step::Module { settings, .. } => {
                    let m = &mut after.module;
                    m.crypto_threads = settings.crypto_threads.or(m.crypto_threads);
                    m.rekey_mib = settings.rekey_mib.or(m.rekey_mib);
                    m.rekey_seconds = settings.rekey_seconds.or(m.rekey_seconds);
                }
                Step::DeleteDevice(rec) => {
                    let r = device_of(&after, rec).unwrap();
                    after.entries.remove(r);
                }
                Step::Unexport(rec) => {
                    let r = export_of(&after, rec).unwrap();
                    after.entries.remove(r);
                }
                Step::CreateExport(i) => {
                    let e = &d.exports[*i];
                    let mut entry = export(&e.addr.to_string(), &e.device_path);
                    entry.read_only = e.entry.read_only;
                    if let EntryKind::Export {
                        allow,
                        shared,
                        name,
                        ..
                    } = &mut entry.kind
                    {
                        *allow = e.entry.allow.iter().map(|a| a.0).collect();
                        *shared = e.entry.shared;
                        if e.entry.name.is_some() {
                            name.clone_from(&e.entry.name);
                        }
                    }
                    entry.protection = e.entry.protection.map(|p| p.number()).or(entry.protection);
                    created.exports.push(managed_export(e, &entry, true));
                    after.entries.push(entry);
                }
                Step::CreateDevice(i) => {
                    let e = &d.devices[*i];
                    let used: Vec<u32> = after
                        .entries
                        .iter()
                        .filter_map(|x| match x.kind {
                            EntryKind::Device { index, .. } => Some(index),
                            _ => None,
                        })
                        .collect();
                    let index = e
                        .entry
                        .index
                        .unwrap_or_else(|| (0..).find(|n| !used.contains(n)).unwrap());
                    let id = e.entry.client_id.unwrap_or(0xc0de_0000 + u64::from(index));
                    let mut entry = device(&e.addr.to_string(), index, id);
                    entry.read_only = e.entry.read_only;
                    if let EntryKind::Device {
                        settings, queues, ..
                    } = &mut entry.kind
                    {
                        *settings = e.entry.wanted_settings();
                        *queues = Some(e.entry.queues.unwrap_or(1));
                    }
                    after.entries.push(entry);
                    created
                        .devices
                        .push(managed_device(e, index, Some(id), true));
                }
                Step::SetDevice {
                    index,
                    settings: new,
                    ..
                } => {
                    for entry in &mut after.entries {
                        if let EntryKind::Device {
                            index: i, settings, ..
                        } = &mut entry.kind
                        {
                            if i == index {
                                let old = settings.named();
                                let set = new.named();
                                let v = |n: usize| set[n].1.or(old[n].1);
                                *settings = DeviceSettings {
                                    req_timeout_ms: v(0),
                                    max_resends: v(1),
                                    reconnect_delay_ms: v(2),
                                    ping_interval_ms: v(3),
                                    ping_timeout_ms: v(4),
                                    loss_timeout_ms: v(5),
                                };
                            }
                        }
                    }
                }
            }
        }
        let mut record = record.clone();
        let managed = next_record(plan, created, Managed::default());
        record.files.insert(FILE.into(), managed);
        (after, record)
    }

    const BASE: &str = "\
[module]
crypto_threads = 2

[[export]]
listen = \"127.0.0.1\"
path = \"/dev/ram0\"

[[device]]
remote = \"127.0.0.1\"
loss_timeout = \"30s\"
";

    /// Applies `text` to `running` with `record`: the plan, and the state
    /// after it.
    fn apply(text: &str, running: &Running, record: &Record) -> (Plan, Running, Record) {
        let d = desired(text);
        let plan = plan_apply(&d, running, record, FILE);
        let (after, rec) = simulate(&plan, &d, running, record);
        (plan, after, rec)
    }

    fn running(entries: Vec<ListEntry>) -> Running {
        Running {
            module: ModuleSettings {
                crypto_threads: Some(0),
                rekey_mib: Some(64 << 10),
                rekey_seconds: Some(3600),
            },
            entries,
        }
    }

    #[test]
    fn several_exports_on_one_address_by_name() {
        let two = "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nname = \"alpha\"\n\n\
                   [[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram1\"\nname = \"beta\"\n";
        let (plan, after, record) = apply(two, &running(Vec::new()), &Record::default());
        assert_eq!(plan.steps, [Step::CreateExport(0), Step::CreateExport(1)]);
        assert_eq!(after.entries.len(), 2);
        let names: Vec<_> = record.files[FILE]
            .exports
            .iter()
            .map(|e| e.name.as_deref())
            .collect();
        assert_eq!(names, [Some("alpha"), Some("beta")]);
        let (again, _, record) = apply(two, &after, &record);
        assert!(again.in_sync(), "{again:#?}");
        // beta taken out of the file: beta alone stops, by name.
        let alpha = two.split("\n\n").next().unwrap();
        let (plan, after, _) = apply(alpha, &after, &record);
        let [Step::Unexport(rec)] = plan.steps.as_slice() else {
            panic!("{plan:#?}");
        };
        assert_eq!(rec.name.as_deref(), Some("beta"));
        assert!(matches!(&after.entries[..],
            [ListEntry { kind: EntryKind::Export { name: Some(n), .. }, .. }] if n == "alpha"));
        // An export of another name at the address is not the entry's.
        let hand = vec![export("127.0.0.1:1025", "/dev/ram0")];
        let (plan, after, _) = apply(alpha, &running(hand), &Record::default());
        assert_eq!(plan.steps, [Step::CreateExport(0)]);
        assert_eq!(after.entries.len(), 2);
    }

    #[test]
    fn apply_twice_does_nothing_the_second_time() {
        let (plan, after, record) = apply(BASE, &running(Vec::new()), &Record::default());
        assert_eq!(
            plan.steps,
            [
                Step::Module {
                    settings: ModuleSettings {
                        crypto_threads: Some(2),
                        ..Default::default()
                    },
                    changes: vec![Change {
                        key: "crypto_threads",
                        from: "0".into(),
                        to: "2".into()
                    }],
                },
                Step::CreateExport(0),
                Step::CreateDevice(0),
            ]
        );
        assert!(plan.recreate.is_empty() && plan.conflicts.is_empty());
        assert_eq!(after.entries.len(), 2);
        let (again, same, _) = apply(BASE, &after, &record);
        assert!(again.in_sync(), "{again:#?}");
        assert_eq!(same.entries, after.entries);
        assert!(again.devices[0].as_ref().is_some_and(|m| !m.adopted));
        assert!(again.exports[0].as_ref().is_some_and(|m| !m.adopted));
    }

    #[test]
    fn a_changed_timeout_changes_live() {
        let (_, after, record) = apply(BASE, &running(Vec::new()), &Record::default());
        let text = BASE.replace("\"30s\"", "\"5m\"") + "max_resends = 3\n";
        let (plan, after, record) = apply(&text, &after, &record);
        assert_eq!(
            plan.steps,
            [Step::SetDevice {
                entry: 0,
                index: 0,
                settings: DeviceSettings {
                    loss_timeout_ms: Some(300_000),
                    max_resends: Some(3),
                    ..Default::default()
                },
                changes: vec![
                    Change {
                        key: "max_resends",
                        from: "10".into(),
                        to: "3".into()
                    },
                    Change {
                        key: "loss_timeout",
                        from: "30s".into(),
                        to: "5m".into()
                    },
                ],
            }]
        );
        // A key taken out: back to the default of a new device.
        let text = BASE.replace("loss_timeout = \"30s\"\n", "");
        let (plan, _, _) = apply(&text, &after, &record);
        let [Step::SetDevice { changes, .. }] = plan.steps.as_slice() else {
            panic!("{plan:#?}");
        };
        assert_eq!(
            changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["max_resends 3 -> 10", "loss_timeout 5m -> 1m"]
        );
        // "infinite" as the kernel takes it.
        let text = BASE.replace("\"30s\"", "\"infinite\"");
        let (plan, after, record) = apply(&text, &after, &record);
        assert!(plan.steps[0].clone() != Step::CreateDevice(0));
        let (plan, _, _) = apply(&text, &after, &record);
        assert!(plan.in_sync(), "{plan:#?}");
    }

    #[test]
    fn only_what_the_file_made_is_removed() {
        // Made by hand: an export on 1026 and a device of it.
        let hand = vec![
            export("127.0.0.1:1026", "/dev/ram1"),
            device("127.0.0.1:1026", 0, 7),
        ];
        let (plan, after, record) = apply(BASE, &running(hand.clone()), &Record::default());
        assert!(plan.steps.contains(&Step::CreateDevice(0)), "{plan:#?}");
        assert_eq!(after.entries.len(), 4);
        // The device entry taken out: its device goes, nothing else.
        let without = BASE.split("[[device]]").next().unwrap().to_string();
        let (plan, after, record) = apply(&without, &after, &record);
        let [Step::DeleteDevice(rec)] = plan.steps.as_slice() else {
            panic!("{plan:#?}");
        };
        assert_eq!((rec.index, rec.addr.port()), (1, 1025));
        assert_eq!(after.entries.len(), 3);
        // Everything taken out: the export goes too; the hand-made ones stay.
        let (plan, after, record) = apply("", &after, &record);
        assert!(matches!(plan.steps.as_slice(), [Step::Unexport(rec)] if rec.path == "/dev/ram0"));
        assert_eq!(after.entries, hand);
        assert_eq!(record.files[FILE], Managed::default());
    }

    #[test]
    fn an_object_made_by_hand_is_adopted_not_duplicated() {
        let hand = vec![
            export("127.0.0.1:1025", "/dev/ram0"),
            device("127.0.0.1:1025", 4, 9),
        ];
        let (plan, after, record) = apply(BASE, &running(hand), &Record::default());
        // Only the module and the device's loss timeout change.
        assert_eq!(plan.steps.len(), 2, "{plan:#?}");
        assert!(matches!(plan.steps[1], Step::SetDevice { index: 4, .. }));
        assert!(plan.exports[0].as_ref().unwrap().adopted);
        assert!(plan.devices[0].as_ref().unwrap().adopted);
        let (again, _, record) = apply(BASE, &after, &record);
        assert!(again.in_sync(), "{again:#?}");
        assert!(!again.devices[0].as_ref().unwrap().adopted);
        // Adopted, it is the file's: taken out of the file, it is removed.
        let (plan, _, _) = apply("", &after, &record);
        assert_eq!(plan.steps.len(), 2, "{plan:#?}");
        assert!(matches!(
            plan.steps[0],
            Step::DeleteDevice(ManagedDevice { index: 4, .. })
        ));
    }

    #[test]
    fn what_only_a_re_create_changes_is_reported() {
        let (_, after, record) = apply(BASE, &running(Vec::new()), &Record::default());
        let text = BASE.replace(
            "path = \"/dev/ram0\"",
            "path = \"/dev/ram1\"\nmax_io_pages = 8",
        ) + "queues = 4\nprotection = \"crc32c\"\n";
        let (plan, _, new_record) = apply(&text, &after, &record);
        assert!(plan.steps.is_empty(), "{plan:#?}");
        let shown: Vec<String> = plan
            .recreate
            .iter()
            .map(|r| {
                let c: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
                format!("{} (line {}): {}", r.what, r.line, c.join(", "))
            })
            .collect();
        assert_eq!(
            shown,
            [
                "the export on 127.0.0.1:1025 (line 4): path /dev/ram0 -> /dev/ram1, \
                 max_io_pages 256 -> 8",
                "/dev/dst0 (device for 127.0.0.1:1025) (line 9): queues 1 -> 4, protection \
                 none -> crc32c",
            ]
        );
        assert!(plan.recreate[1].how.contains("dstcfg delete -d dst0"));
        assert!(!plan.in_sync());
        // The record keeps what runs, so the next apply says it again.
        assert_eq!(new_record, record);
    }

    /// `shared` of an export and `read_only` of a device: made as the
    /// file says, in sync after, and a change of either needs a
    /// re-create; an export that grants only reads makes a read-write
    /// entry's device read-only without a difference.
    #[test]
    fn shared_and_read_only() {
        let text = BASE.replace("[[device]]", "shared = true\n\n[[device]]") + "read_only = true\n";
        let (plan, after, record) = apply(&text, &running(Vec::new()), &Record::default());
        assert!(plan.steps.contains(&Step::CreateDevice(0)), "{plan:#?}");
        assert!(after.entries.iter().all(|e| match &e.kind {
            EntryKind::Export { shared, .. } => *shared,
            EntryKind::Device { .. } => e.read_only,
        }));
        assert!(record.files[FILE].devices[0].read_only);
        let (again, _, _) = apply(&text, &after, &record);
        assert!(again.in_sync(), "{again:#?}");
        // Both taken out of the file: both differ.
        let (plan, _, _) = apply(BASE, &after, &record);
        let shown: Vec<String> = plan
            .recreate
            .iter()
            .flat_map(|r| r.changes.iter().map(ToString::to_string))
            .collect();
        assert_eq!(shown, ["shared true -> false", "read_only true -> false"]);
        // A read-write device the file wants read-only differs.
        let (_, rw, rw_record) = apply(BASE, &running(Vec::new()), &Record::default());
        let (plan, _, _) = apply(&(BASE.to_string() + "read_only = true\n"), &rw, &rw_record);
        assert_eq!(plan.recreate.len(), 1, "{plan:#?}");
        assert_eq!(
            plan.recreate[0].changes[0].to_string(),
            "read_only false -> true"
        );
        // A device read-only by the export's grant: no difference.
        let mut granted = rw.clone();
        for e in &mut granted.entries {
            if matches!(e.kind, EntryKind::Device { .. }) {
                e.read_only = true;
            }
        }
        let (plan, _, _) = apply(BASE, &granted, &rw_record);
        assert!(plan.in_sync(), "{plan:#?}");
        // Adoption: a read-only entry does not take a writable device.
        let hand = vec![
            export("127.0.0.1:1025", "/dev/ram0"),
            device("127.0.0.1:1025", 4, 9),
        ];
        let ro = BASE.to_string() + "read_only = true\n";
        let (plan, _, _) = apply(&ro, &running(hand.clone()), &Record::default());
        assert!(plan.devices[0].is_none(), "{plan:#?}");
        assert!(plan.steps.contains(&Step::CreateDevice(0)), "{plan:#?}");
        let (plan, _, _) = apply(BASE, &running(hand), &Record::default());
        assert!(plan.devices[0].as_ref().is_some_and(|m| m.adopted));
    }

    #[test]
    fn another_files_objects_are_left_alone() {
        let (_, after, record) = apply(BASE, &running(Vec::new()), &Record::default());
        let mut record = record;
        let mine = record.files.remove(FILE).unwrap();
        record.files.insert("/etc/dst/other.toml".into(), mine);
        let d = desired(BASE);
        let plan = plan_apply(&d, &after, &record, FILE);
        assert_eq!(plan.steps.len(), 0, "{plan:#?}");
        assert_eq!(plan.conflicts.len(), 2, "{plan:#?}");
        assert!(plan.conflicts[0].contains("managed by /etc/dst/other.toml; left alone"));
        // down of this file removes none of them.
        assert_eq!(plan_down(Some(&d), &after, &record, FILE), []);
    }

    #[test]
    fn down_removes_devices_then_exports() {
        let hand = vec![export("127.0.0.1:1026", "/dev/ram1")];
        let (_, after, record) = apply(BASE, &running(hand), &Record::default());
        let d = desired(BASE);
        let steps = plan_down(Some(&d), &after, &record, FILE);
        assert!(
            matches!(steps.as_slice(), [Step::DeleteDevice(dev), Step::Unexport(exp)]
                if dev.index == 0 && exp.addr.port() == 1025),
            "{steps:#?}"
        );
        // From the record alone (the file no longer parses): the same.
        assert_eq!(plan_down(None, &after, &record, FILE), steps);
        // From the file alone (no record): what its entries match.
        assert_eq!(
            plan_down(Some(&d), &after, &Record::default(), FILE).len(),
            2
        );
        // A stale record entry (the device is gone, its index reused by
        // another device) removes nothing.
        let mut other = after.clone();
        other
            .entries
            .retain(|e| !matches!(e.kind, EntryKind::Device { .. }));
        other.entries.push(device("127.0.0.1:1025", 0, 0xdead));
        assert!(matches!(
            plan_down(None, &other, &record, FILE).as_slice(),
            [Step::Unexport(_)]
        ));
    }
}
