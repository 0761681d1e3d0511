//! `dstcfg apply`, `save` and `down`: the configuration file (`config.rs`)
//! against the kernel, through the plan of `plan.rs`, the record of
//! `record.rs` and the requests `action.rs` builds for `export`,
//! `local`, `set`, `delete` and `unexport`.
//!
//! `apply` reads and checks the whole file before it asks the kernel
//! anything, so a bad file changes nothing. It then does each step of the
//! plan, printing one line per step (`--dry-run`: only the plan), goes on
//! past a step that fails, records what the file now manages, and exits 0
//! only if the running state matches the file.
//!
//! `apply --wait` is for boot, where an export node may come up after this
//! node: a device whose first connect fails in a way the export's side can
//! end (`connect::may_come_up`) is not a failure yet. Once every step was
//! tried, the devices still waiting are tried again together, paced by
//! `connect::Patience` as `local --wait` is, so each one is created as soon
//! as its own export node answers and one node that stays down holds up
//! none of the others; what still waits when the time is over fails.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use crate::action::{delete_device, device_request, export_request, with_hints};
use crate::args::Wait;
use crate::cli::{ClientKeySource, ClientRule, Command, Security};
use crate::client::DstClient;
use crate::config::{self, Desired, DesiredDevice, DesiredExport};
use crate::connect::{may_come_up, Patience};
use crate::message::{EntryKind, ModuleSettings};
use crate::plan::{
    managed_device, managed_export, next_record, plan_apply, plan_down, Plan, Running, Step,
};
use crate::record::{file_key, LockedRecord, Managed, RECORD_PATH};
use crate::save;

/// The running state, as the kernel reports it.
fn running(client: &mut DstClient) -> Result<Running> {
    let status = client.status()?;
    Ok(Running {
        module: ModuleSettings {
            crypto_threads: status.crypto_threads,
            rekey_mib: status.rekey_mib,
            rekey_seconds: status.rekey_seconds,
        },
        entries: client.list()?,
    })
}

/// The `export` command of an entry.
fn export_command(d: &DesiredExport) -> Command {
    let e = &d.entry;
    Command::Export {
        remote: d.addr,
        file: e.path.clone(),
        name: e.name.clone(),
        read_only: e.read_only,
        shared: e.shared,
        size: e.size,
        max_io_pages: e.max_io_pages,
        security: Security {
            protection: e.protection,
            alg: e.alg.clone(),
            key_file: e.key_file.clone(),
            key_desc: e.key_desc.clone(),
        },
        allow: e.allow.iter().map(|a| a.0).collect(),
        clients: e
            .clients
            .iter()
            .map(|c| ClientRule {
                name: c.name.clone(),
                key: match (&c.key_file, &c.key_desc) {
                    (Some(path), _) => ClientKeySource::File(path.clone()),
                    (None, desc) => ClientKeySource::Keyring(desc.clone().unwrap_or_default()),
                },
                read_only: c.read_only,
            })
            .collect(),
    }
}

/// The `local` command of an entry.
fn device_command(d: &DesiredDevice) -> Command {
    let e = &d.entry;
    Command::Local {
        remote: d.addr,
        export_name: e.export_name.clone(),
        client_name: e.client_name.clone(),
        read_only: e.read_only,
        index: e.index,
        max_io_pages: e.max_io_pages,
        queue_depth: e.queue_depth,
        queues: e.queues,
        client_id: e.client_id,
        settings: e.given_settings(),
        security: Security {
            protection: e.protection,
            alg: e.alg.clone(),
            key_file: e.key_file.clone(),
            key_desc: e.key_desc.clone(),
        },
        // apply creates with DST_CMD_DEV_ADD itself, once: a device that
        // exists is one the plan matched, not one to look for again.
        wait: None,
        duplicate: true,
    }
}

/// What a step does, for its line: `create the export on ...`. `done`
/// gives the past tense.
fn describe(step: &Step, desired: Option<&Desired>, done: bool) -> String {
    let (verb_done, verb_plan) = match step {
        Step::Module { .. } | Step::SetDevice { .. } => ("changed", "change"),
        Step::DeleteDevice(_) => ("deleted", "delete"),
        Step::Unexport(_) => ("stopped", "stop"),
        Step::CreateExport(_) | Step::CreateDevice(_) => ("created", "create"),
    };
    let verb = if done { verb_done } else { verb_plan };
    let changes = |c: &[crate::plan::Change]| {
        c.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match step {
        Step::Module { changes: c, .. } => format!("{verb} the module: {}", changes(c)),
        Step::SetDevice {
            index, changes: c, ..
        } => format!("{verb} /dev/dst{index}: {}", changes(c)),
        Step::DeleteDevice(rec) => {
            format!("{verb} /dev/dst{} (device for {})", rec.index, rec.addr)
        }
        // As before names: the address and device tell the export apart
        // on this node (scripts match these lines).
        Step::Unexport(rec) => format!("{verb} the export on {} ({})", rec.addr, rec.path),
        Step::CreateExport(i) => {
            let d = &desired.expect("apply has a file").exports[*i];
            format!(
                "{verb} the {} ({}, line {})",
                d.label(),
                d.entry.path.display(),
                d.line
            )
        }
        Step::CreateDevice(i) => {
            let d = &desired.expect("apply has a file").devices[*i];
            format!("{verb} a {} (line {})", d.label(), d.line)
        }
    }
}

/// Prints a line and flushes it at once, so that the lines of the steps
/// done come out even if a later one hangs.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `dstcfg apply [-f FILE] [--dry-run] [--wait[=TIME]]`.
pub fn apply(file: &Path, dry_run: bool, wait: Option<Wait>) -> Result<u8> {
    let desired = config::load(file)?;
    let key = file_key(file);
    let mut client = DstClient::connect()?;
    let mut locked = LockedRecord::open(Path::new(RECORD_PATH))?;
    let before = running(&mut client)?;
    let plan = plan_apply(&desired, &before, &locked.record, &key);
    let shown = file.display();

    for (d, m) in desired.devices.iter().zip(&plan.devices) {
        if let Some(m) = m.as_ref().filter(|m| m.adopted) {
            let verb = if dry_run { "would adopt" } else { "adopted" };
            say(&format!(
                "{verb} /dev/dst{} as the {} (line {}): it was made before, by hand",
                m.record.index,
                d.label(),
                d.line
            ));
        }
    }
    for (d, m) in desired.exports.iter().zip(&plan.exports) {
        if m.as_ref().is_some_and(|m| m.adopted) {
            let verb = if dry_run { "would adopt" } else { "adopted" };
            say(&format!(
                "{verb} the export on {} (line {}): it was made before, by hand",
                d.addr, d.line
            ));
        }
    }
    if dry_run {
        for step in &plan.steps {
            say(&format!("would {}", describe(step, Some(&desired), false)));
        }
        report(&plan);
        return if plan.in_sync() {
            say(&format!("{shown}: the running state matches"));
            Ok(0)
        } else {
            Ok(1)
        };
    }

    let mut failed = 0;
    let mut created = Managed::default();
    let mut kept = Managed::default();
    let cannot = |step: &Step, err: &anyhow::Error| {
        eprintln!(
            "dstcfg: apply: cannot {}: {err:#}",
            describe(step, Some(&desired), false)
        );
    };
    // Device steps that may succeed once their export node is up, with
    // their last error (only with --wait).
    let mut waiting: Vec<(&Step, anyhow::Error)> = Vec::new();
    for step in &plan.steps {
        match run_step(&mut client, step, &desired, &mut created) {
            Ok(detail) => say(&format!("{}{detail}", describe(step, Some(&desired), true))),
            Err(err) if wait.is_some() && waits(step, &err) => waiting.push((step, err)),
            Err(err) => {
                failed += 1;
                cannot(step, &err);
                match step {
                    Step::DeleteDevice(rec) => kept.devices.push(rec.clone()),
                    Step::Unexport(rec) => kept.exports.push(rec.clone()),
                    _ => {}
                }
            }
        }
    }
    if let Some(wait) = wait.filter(|_| !waiting.is_empty()) {
        let mut patience = Patience::new("apply", wait);
        loop {
            let for_what = waiting_for(&waiting, &desired);
            if !patience.wait_more(&for_what, &waiting[0].1) {
                break;
            }
            let mut still = Vec::new();
            for (step, _) in waiting.drain(..) {
                match run_step(&mut client, step, &desired, &mut created) {
                    Ok(detail) => say(&format!("{}{detail}", describe(step, Some(&desired), true))),
                    Err(err) if waits(step, &err) => still.push((step, err)),
                    Err(err) => {
                        failed += 1;
                        cannot(step, &err);
                    }
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
        }
    }
    for (step, err) in &waiting {
        failed += 1;
        cannot(step, err);
    }
    // The ids of the devices created, which the reply does not carry.
    if let Ok(entries) = client.list() {
        for rec in &mut created.devices {
            rec.client_id = rec.client_id.or_else(|| {
                entries.iter().find_map(|e| match &e.kind {
                    EntryKind::Device {
                        index, client_id, ..
                    } if *index == rec.index && e.addr == rec.addr => *client_id,
                    _ => None,
                })
            });
        }
    }
    let managed = next_record(&plan, created, kept);
    if managed.exports.is_empty() && managed.devices.is_empty() {
        locked.record.files.remove(&key);
    } else {
        locked.record.files.insert(key, managed);
    }
    locked.save()?;

    report(&plan);
    if failed > 0 {
        bail!(
            "{failed} of {} steps failed; the running state does not match {shown}",
            plan.steps.len()
        );
    }
    if !plan.recreate.is_empty() || !plan.conflicts.is_empty() {
        bail!(
            "the running state does not match {shown}: {} to re-create, {} left alone",
            plan.recreate.len(),
            plan.conflicts.len()
        );
    }
    if plan.steps.is_empty() {
        say(&format!("{shown}: the running state matches"));
    }
    Ok(0)
}

/// Whether `apply --wait` tries `step` again after `err`: the creation of a
/// device whose export node may yet come up.
fn waits(step: &Step, err: &anyhow::Error) -> bool {
    matches!(step, Step::CreateDevice(_)) && may_come_up(err)
}

/// What the devices of `waiting` wait for, for the progress line: `the
/// export node at 192.0.2.1:1025`, `the export nodes at A, B`.
fn waiting_for(waiting: &[(&Step, anyhow::Error)], desired: &Desired) -> String {
    let mut addrs: Vec<String> = Vec::new();
    for (step, _) in waiting {
        if let Step::CreateDevice(i) = step {
            let addr = desired.devices[*i].addr.to_string();
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    let nodes = if addrs.len() == 1 { "node" } else { "nodes" };
    format!("the export {nodes} at {}", addrs.join(", "))
}

/// Prints what apply leaves as it is: objects to re-create, entries of
/// objects another file manages.
fn report(plan: &Plan) {
    for r in &plan.recreate {
        let changes: Vec<String> = r.changes.iter().map(ToString::to_string).collect();
        eprintln!(
            "dstcfg: apply: {} (line {}) differs in what only a re-create changes: {}; to \
             re-create it: {}",
            r.what,
            r.line,
            changes.join(", "),
            r.how
        );
    }
    for c in &plan.conflicts {
        eprintln!("dstcfg: apply: {c}");
    }
}

/// Does one step; the objects created go into `created`. Returns what to
/// add to the step's line (the path of a device created).
fn run_step(
    client: &mut DstClient,
    step: &Step,
    desired: &Desired,
    created: &mut Managed,
) -> Result<String> {
    match step {
        Step::Module { settings, .. } => {
            let cmd = Command::Config {
                settings: *settings,
            };
            with_hints(&cmd, || client.config(settings)).map(|()| String::new())
        }
        Step::DeleteDevice(rec) => {
            let cmd = Command::Delete {
                index: rec.index,
                force: false,
            };
            with_hints(&cmd, || delete_device(client, rec.index, false)).map(|()| String::new())
        }
        Step::Unexport(rec) => {
            let cmd = Command::Unexport {
                remote: rec.addr,
                name: rec.name.clone(),
            };
            with_hints(&cmd, || client.export_del(rec.addr, rec.name.as_deref()))
                .map(|()| String::new())
        }
        Step::CreateExport(i) => {
            let d = &desired.exports[*i];
            let cmd = export_command(d);
            with_hints(&cmd, || client.export_add(&export_request(&cmd)?))?;
            let listed = client.list()?;
            let entry = crate::plan::export_for(&listed, d)
                .and_then(|r| listed.get(r))
                .ok_or_else(|| anyhow!("the {} is not listed after it was made", d.label()))?;
            created.exports.push(managed_export(d, entry, true));
            Ok(String::new())
        }
        Step::CreateDevice(i) => {
            let d = &desired.devices[*i];
            let cmd = device_command(d);
            let dev = with_hints(&cmd, || {
                let req = device_request(&cmd)?;
                client.dev_add(&req)
            })?;
            created
                .devices
                .push(managed_device(d, dev.index, None, true));
            Ok(format!(": {}", dev.dev_path()))
        }
        Step::SetDevice {
            index, settings, ..
        } => {
            let cmd = Command::Set {
                index: *index,
                settings: *settings,
            };
            with_hints(&cmd, || client.dev_set(*index, settings)).map(|()| String::new())
        }
    }
}

/// `dstcfg down [-f FILE] [--force] [--dry-run]`: removes the devices, then
/// the exports, that the file manages. A file that no longer parses does
/// not stop it: the record says what to remove.
pub fn down(file: &Path, force: bool, dry_run: bool) -> Result<u8> {
    let desired = match config::load(file) {
        Ok(desired) => Some(desired),
        Err(err) => {
            eprintln!(
                "dstcfg: down: warning: {err:#}\ndstcfg: down: removing what the record of \
                 {RECORD_PATH} lists for it"
            );
            None
        }
    };
    let key = file_key(file);
    let mut client = DstClient::connect()?;
    let mut locked = LockedRecord::open(Path::new(RECORD_PATH))?;
    let before = running(&mut client)?;
    let steps = plan_down(desired.as_ref(), &before, &locked.record, &key);
    if dry_run {
        for step in &steps {
            say(&format!(
                "would {}",
                describe(step, desired.as_ref(), false)
            ));
        }
        return Ok(0);
    }
    let mut kept = Managed::default();
    for step in &steps {
        let result = match step {
            Step::DeleteDevice(rec) => {
                let cmd = Command::Delete {
                    index: rec.index,
                    force,
                };
                with_hints(&cmd, || delete_device(&mut client, rec.index, force))
            }
            Step::Unexport(rec) => {
                let cmd = Command::Unexport {
                    remote: rec.addr,
                    name: rec.name.clone(),
                };
                with_hints(&cmd, || client.export_del(rec.addr, rec.name.as_deref()))
            }
            _ => unreachable!("down only removes"),
        };
        match result {
            Ok(()) => say(&describe(step, desired.as_ref(), true)),
            Err(err) => {
                eprintln!(
                    "dstcfg: down: cannot {}: {err:#}",
                    describe(step, desired.as_ref(), false)
                );
                match step {
                    Step::DeleteDevice(rec) => kept.devices.push(rec.clone()),
                    Step::Unexport(rec) => kept.exports.push(rec.clone()),
                    _ => {}
                }
            }
        }
    }
    let failed = kept.devices.len() + kept.exports.len();
    if failed == 0 {
        locked.record.files.remove(&key);
    } else {
        locked.record.files.insert(key, kept);
    }
    locked.save()?;
    if failed > 0 {
        bail!(
            "{failed} of {} objects could not be removed (a device that is open needs \
             --force, or unmount it first)",
            steps.len()
        );
    }
    if steps.is_empty() {
        say(&format!("{}: nothing to remove", file.display()));
    }
    Ok(0)
}

/// `dstcfg save [-f FILE] [--force]`: writes the running state to FILE
/// (`-`: standard output); an existing FILE is replaced only with
/// `--force`.
pub fn save(file: &Path, force: bool) -> Result<u8> {
    let mut client = DstClient::connect()?;
    let locked = LockedRecord::open(Path::new(RECORD_PATH))?;
    let state = running(&mut client)?;
    let text = save::render(&state.module, &state, &locked.record);
    if file == Path::new("-") {
        print!("{text}");
        return Ok(0);
    }
    if file.exists() && !force {
        bail!(
            "{} exists; give --force to replace it, or -f - to print the running state",
            file.display()
        );
    }
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = file.with_extension("toml.tmp");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .with_context(|| format!("cannot write {}", file.display()))?;
    let exports = state
        .entries
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Export { .. }))
        .count();
    say(&format!(
        "wrote {} exports and {} devices to {}",
        exports,
        state.entries.len() - exports,
        file.display()
    ));
    Ok(0)
}
