//! Carries out a validated [`Command`] against the kernel module.
//!
//! Every error is given the action's name as context, so it prints as
//! `dstcfg: ACTION: <errno text> (<ERRNO>): <kernel message>`; kernel errors
//! with an obvious remedy for this action get a hint (see [`hint_for`]).

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::{ClientKeySource, ClientRule, Command, Security, MAX_INDEX, MAX_PATH_LEN};
use crate::client::DstClient;
use crate::connect::{self, is_in_use, Wanted};
use crate::json::{event_json, exists_json, list_json, status_json};
use crate::message::{
    ClientSecret, DeviceRequest, EntryKind, ExportClient, ExportRequest, ListEntry, SecurityAttrs,
    Writer,
};
use crate::netlink::{errno_text, KernelError};
use crate::output::{
    check, config_text, event_line, exists_line, human_size, list_table, protection_name,
    status_text, writer_text, CheckResult, Timestamp,
};
use crate::secret;
use crate::uapi;

/// Exit status of `-a check` for a device that exists but is not connected.
pub const CHECK_NOT_CONNECTED: u8 = 1;
/// Exit status of `-a check` on an error (and of usage errors).
pub const CHECK_ERROR: u8 = 2;

/// How long `-a delete` (without `--force`) asks again while the module
/// refuses the device as open: udev's probes (blkid) open a new device for a
/// moment after it appears, and a program that just closed it may still be
/// ending.
const DELETE_OPEN_RETRY: Duration = Duration::from_secs(5);
/// The pause between those attempts.
const DELETE_OPEN_POLL: Duration = Duration::from_millis(200);

/// Runs `cmd`; returns the exit status (0 unless `-a check` finds the
/// device not connected). The error says what went wrong and, where known,
/// what to do.
pub fn run(cmd: Command) -> Result<u8> {
    let name = cmd.action_name();
    execute(&cmd)
        .map_err(|err| add_hint(err, &cmd))
        .context(name)
}

fn execute(cmd: &Command) -> Result<u8> {
    match cmd {
        Command::Status { json } => {
            let mut client = DstClient::connect()?;
            let status = client.status()?;
            let entries = client.list()?;
            if *json {
                print!("{}", status_json(&status, &entries));
            } else {
                print!("{}", status_text(&status, &entries));
            }
        }
        Command::Export { .. } => {
            let req = export_request(cmd)?;
            DstClient::connect()?.export_add(&req)?;
            println!("{}", export_message(&req));
        }
        Command::Unexport { remote, name } => {
            DstClient::connect()?.export_del(*remote, name.as_deref())?;
            match name {
                Some(name) => println!("stopped the export {name} on {remote}"),
                None => println!("stopped the export on {remote}"),
            }
        }
        Command::Release { remote, name } => {
            let mut client = DstClient::connect()?;
            // Who held it, for the message; the kernel's reply says nothing.
            let holder = client
                .list()
                .ok()
                .and_then(|entries| writer_of(&entries, *remote));
            client.export_release(*remote, name.as_deref())?;
            println!("{}", release_message(*remote, holder.as_ref()));
        }
        Command::Resize { remote, size } => {
            let size = DstClient::connect()?.export_resize(*remote, *size)?;
            println!(
                "the export on {remote} is {} ({size} bytes)",
                human_size(size)
            );
        }
        Command::Local {
            remote,
            export_name,
            client_name,
            read_only,
            index,
            client_id,
            wait,
            duplicate,
            ..
        } => {
            let req = device_request(cmd)?;
            let wanted = Wanted {
                addr: *remote,
                export_name: export_name.clone(),
                index: *index,
                client_id: *client_id,
                client_name: client_name.clone(),
                read_only: *read_only,
            };
            let path = connect::create(&req, &wanted, *wait, *duplicate)?;
            // Only the path on stdout, so that scripts can capture it.
            println!("{path}");
        }
        Command::Delete { index, force } => {
            delete_device(&mut DstClient::connect()?, *index, *force)?;
            println!("deleted /dev/dst{index}");
        }
        Command::Set { index, settings } => {
            DstClient::connect()?.dev_set(*index, settings)?;
            println!("updated /dev/dst{index}");
        }
        Command::Config { settings } => {
            DstClient::connect()?.config(settings)?;
            print!("{}", config_text(settings));
        }
        Command::List { json } => {
            let entries = DstClient::connect()?.list()?;
            if *json {
                print!("{}", list_json(&entries));
            } else {
                print!("{}", list_table(&entries));
            }
        }
        Command::Monitor { json, now, count } => monitor(*json, *now, *count)?,
        Command::Check { index } => {
            let entries = DstClient::connect()?.list()?;
            match check(*index, &entries) {
                CheckResult::Connected(line) => println!("{line}"),
                CheckResult::NotConnected(line) => {
                    println!("{line}");
                    return Ok(CHECK_NOT_CONNECTED);
                }
                CheckResult::Missing(msg) => bail!(msg),
            }
        }
        Command::Genkey { file } => {
            secret::genkey(file)?;
            println!(
                "wrote a new {}-byte key to {} (mode 0600); give the other node the same \
                 file over a secure channel",
                crate::cli::GENKEY_LEN,
                file.display()
            );
        }
        Command::Apply {
            file,
            dry_run,
            wait,
        } => return crate::apply::apply(file, *dry_run, *wait),
        Command::Save { file, force } => return crate::apply::save(file, *force),
        Command::Discover { remote, json } => {
            let names = crate::discover::discover(*remote)?;
            if *json {
                print!("{}", crate::discover::json(&names));
            } else {
                print!("{}", crate::discover::text(&names));
                if names.is_empty() {
                    eprintln!("dstcfg: discover: no export at {remote} admits this node");
                }
            }
        }
        Command::Down {
            file,
            force,
            dry_run,
        } => return crate::apply::down(file, *force, *dry_run),
    }
    Ok(0)
}

/// The `DST_CMD_EXPORT_ADD` request of `cmd`, a [`Command::Export`]: the
/// backing path checked, the key files read.
pub(crate) fn export_request(cmd: &Command) -> Result<ExportRequest> {
    let Command::Export {
        remote,
        file,
        name,
        read_only,
        shared,
        size,
        max_io_pages,
        security,
        allow,
        clients,
    } = cmd
    else {
        bail!("not an export: {cmd:?}");
    };
    Ok(ExportRequest {
        addr: *remote,
        path: path_attr(&backing_path(file)?)?,
        read_only: *read_only,
        shared: *shared,
        size: *size,
        max_io_pages: *max_io_pages,
        security: security_attrs(security)?,
        allow: allow.clone(),
        clients: export_clients(clients)?,
        name: name.clone(),
    })
}

/// The `DST_CMD_DEV_ADD` request of `cmd`, a [`Command::Local`]: the key
/// file read.
pub(crate) fn device_request(cmd: &Command) -> Result<DeviceRequest> {
    let Command::Local {
        remote,
        export_name,
        client_name,
        read_only,
        index,
        max_io_pages,
        queue_depth,
        queues,
        client_id,
        settings,
        security,
        ..
    } = cmd
    else {
        bail!("not a device: {cmd:?}");
    };
    Ok(DeviceRequest {
        addr: *remote,
        index: *index,
        max_io_pages: *max_io_pages,
        queue_depth: *queue_depth,
        settings: *settings,
        queues: *queues,
        security: security_attrs(security)?,
        client_id: *client_id,
        export_name: export_name.clone(),
        client_name: client_name.clone(),
        read_only: *read_only,
    })
}

/// Deletes /dev/dst`index`, asking again for a while if it is refused as
/// open (see [`DELETE_OPEN_RETRY`]).
pub(crate) fn delete_device(client: &mut DstClient, index: u32, force: bool) -> Result<()> {
    retry_while_open(DELETE_OPEN_RETRY, DELETE_OPEN_POLL, || {
        client.dev_del(index, force)
    })
}

/// Runs `work`, the kernel requests of `cmd`, giving a kernel error the
/// hint [`run`] would give it.
pub(crate) fn with_hints<T>(cmd: &Command, work: impl FnOnce() -> Result<T>) -> Result<T> {
    work().map_err(|err| add_hint(err, cmd))
}

/// Runs `delete` until it succeeds, fails otherwise than with the module's
/// refusal of an open device ([`is_open_refusal`]), or `limit` has passed,
/// pausing `poll` in between; returns its last result.
fn retry_while_open(
    limit: Duration,
    poll: Duration,
    mut delete: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match delete() {
            Err(err) if is_open_refusal(&err) && Instant::now() + poll <= deadline => {
                std::thread::sleep(poll)
            }
            result => return result,
        }
    }
}

/// Whether `err` is the module's refusal to delete a device that is open
/// (EBUSY saying so; a delete already under way is EBUSY too, but final).
fn is_open_refusal(err: &anyhow::Error) -> bool {
    err.downcast_ref::<KernelError>().is_some_and(|kerr| {
        kerr.errno == libc::EBUSY
            && kerr
                .extack
                .msg
                .as_deref()
                .is_some_and(|msg| msg.contains("is open"))
    })
}

/// `monitor`: with `now` one line per device and export as it is, then one
/// line per event until interrupted or `count` events.
fn monitor(json: bool, now: bool, count: Option<u64>) -> Result<()> {
    let mut client = DstClient::connect()?;
    client.subscribe_events()?;
    exit_on_interrupt();
    if now {
        // Read after subscribing: what changes meanwhile comes as events
        // after these lines, so nothing falls between them. A socket of
        // its own, for the dump's replies not to mix with events.
        let entries = DstClient::connect()?.list()?;
        let time = Timestamp::now();
        let mut out = std::io::stdout().lock();
        for entry in &entries {
            let line = if json {
                exists_json(entry, &time)
            } else {
                exists_line(entry, &time)
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
        }
    }
    eprintln!("dstcfg: listening for events of the dst module; Ctrl-C stops");
    let mut seen = 0u64;
    loop {
        let Some(events) = client.next_events()? else {
            eprintln!(
                "dstcfg: warning: events were lost (receive buffer full); dstcfg list \
                 shows the current state"
            );
            continue;
        };
        for event in events {
            let now = Timestamp::now();
            let line = if json {
                event_json(&event, &now)
            } else {
                event_line(&event, &now)
            };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(()); // whoever read the output is gone
            }
            seen += 1;
            if count == Some(seen) {
                return Ok(());
            }
        }
    }
}

/// SIGINT and SIGTERM end `-a monitor` with exit status 0. Every line is
/// flushed as it is written, so nothing is lost by exiting at once.
fn exit_on_interrupt() {
    extern "C" fn on_signal(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(0) };
    }
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only calls _exit.
        unsafe { libc::signal(sig, handler as libc::sighandler_t) };
    }
}

/// The security attributes of `security`: the key file read and checked;
/// a keyring key's description passed on as is (the module looks it up,
/// dstcfg never sees the key).
fn security_attrs(security: &Security) -> Result<SecurityAttrs> {
    Ok(SecurityAttrs {
        protection: security.protection.map(|p| p.number()),
        alg: security.alg.clone(),
        key: match &security.key_file {
            Some(path) => Some(secret::read_key_file(path)?),
            None => None,
        },
        key_desc: security.key_desc.clone(),
    })
}

/// The `DST_A_CLIENT` entries of `clients`: each key file read and checked
/// as `--key-file` is; a keyring key's description passed on as is.
fn export_clients(clients: &[ClientRule]) -> Result<Vec<ExportClient>> {
    clients
        .iter()
        .map(|c| {
            let secret = match &c.key {
                ClientKeySource::File(path) => ClientSecret::Key(secret::read_key_file_for(
                    path,
                    &format!("--client {}=", c.name),
                )?),
                ClientKeySource::Keyring(desc) => ClientSecret::KeyDesc(desc.clone()),
            };
            Ok(ExportClient {
                name: c.name.clone(),
                secret,
                read_only: c.read_only,
            })
        })
        .collect()
}

/// What `-a export` prints once the export runs.
fn export_message(req: &ExportRequest) -> String {
    let mut parts = vec![if req.read_only {
        "read-only".to_string()
    } else {
        "read-write".to_string()
    }];
    if req.shared {
        parts.push("shared: any number of writers".to_string());
    }
    if let Some(size) = req.size {
        parts.push(format!("first {}", human_size(size)));
    }
    if let Some(name) = &req.name {
        parts.push(format!("name {name}"));
    }
    match (req.security.protection, &req.security.alg) {
        (Some(p), Some(alg)) => parts.push(format!("{} {alg}", protection_name(p))),
        (Some(p), None) => parts.push(protection_name(p)),
        _ => {}
    }
    if req.security.key.is_some() {
        parts.push("pre-shared key".into());
    }
    if let Some(desc) = &req.security.key_desc {
        parts.push(format!("keyring key {desc}"));
    }
    if !req.allow.is_empty() {
        let rules: Vec<String> = req.allow.iter().map(|r| r.to_string()).collect();
        parts.push(format!("allow {}", rules.join(" ")));
    }
    if !req.clients.is_empty() {
        // Names and access only: never a key, nor where it comes from.
        let clients: Vec<String> = req
            .clients
            .iter()
            .map(|c| format!("{} ({})", c.name, if c.read_only { "ro" } else { "rw" }))
            .collect();
        parts.push(format!("clients {}", clients.join(", ")));
    }
    format!(
        "exporting {} on {} ({})",
        req.path,
        req.addr,
        parts.join(", ")
    )
}

/// Who holds the write access of the export listening on `addr`, as
/// `entries` (a `DST_CMD_LIST` dump) report it.
fn writer_of(entries: &[ListEntry], addr: SocketAddr) -> Option<Writer> {
    entries.iter().find_map(|e| match &e.kind {
        EntryKind::Export { writer, .. } if e.addr == addr => writer.clone(),
        _ => None,
    })
}

/// What `release` prints once the kernel took the write access back.
fn release_message(addr: SocketAddr, holder: Option<&Writer>) -> String {
    match holder {
        Some(w) => format!(
            "took the write access of the export on {addr} from {}; the next local node to \
             attach read-write gets it",
            writer_text(w)
        ),
        None => format!(
            "took the write access of the export on {addr} from its holder; the next local \
             node to attach read-write gets it"
        ),
    }
}

/// Sets the hint of a kernel error in `err`, if [`hint_for`] has one.
fn add_hint(err: anyhow::Error, cmd: &Command) -> anyhow::Error {
    match err.downcast::<KernelError>() {
        Ok(mut kerr) => {
            if let Some(hint) = hint_for(cmd, &kerr) {
                kerr.hint = Some(hint);
            }
            kerr.into()
        }
        Err(err) => err,
    }
}

/// The option that sends attribute `kind`, for attributes newer modules
/// added.
fn option_of(kind: u16) -> Option<&'static str> {
    Some(match kind {
        uapi::DST_A_QUEUES => "--queues",
        uapi::DST_A_PROTECTION => "--protection",
        uapi::DST_A_ALG => "--alg",
        uapi::DST_A_KEY => "--key-file",
        uapi::DST_A_KEY_DESC => "--key-desc",
        uapi::DST_A_ALLOW => "--allow",
        uapi::DST_A_CLIENT => "--client",
        uapi::DST_A_SHARED => "--shared",
        uapi::DST_A_CRYPTO_THREADS => "--crypto-threads",
        uapi::DST_A_CLIENT_ID => "--client-id",
        uapi::DST_A_FORCE => "--force",
        uapi::DST_A_NAME => "--name",
        uapi::DST_A_CLIENT_NAME => "--client-name",
        uapi::DST_A_REKEY_MIB => "--rekey-after",
        uapi::DST_A_REKEY_SECONDS => "--rekey-interval",
        _ => return None,
    })
}

/// The hint for EPERM of the actions that add or remove exports and devices.
const SYS_ADMIN_HINT: &str = "needs CAP_SYS_ADMIN and CAP_NET_ADMIN; run as root";

/// The module's message when it finds no `--key-desc` key it may use
/// (ENOKEY: none; EACCES: one without search permission).
const KEYRING_MISSING: &str = "no logon or user key of that description in your keyrings";

/// The hint for ENOKEY: no key of the `--key-desc` description.
const KEYRING_ENOKEY_HINT: &str = "no such key: add it with keyctl, e.g. keyctl padd logon \
                                   dst:NAME @u < KEYFILE (a logon key cannot be read back by \
                                   any process)";

/// The hint for EACCES of the keyring lookup: the key is there, but this
/// process may not search it.
const KEYRING_EACCES_HINT: &str = "the key of that description is not one dstcfg may search: \
                                   add it as the user that runs dstcfg (root), e.g. keyctl \
                                   padd logon dst:NAME @u < KEYFILE, and check that keyctl \
                                   show @s lists it";

/// The hint for the module's refusal of a keyring key of the wrong size.
const KEYRING_SIZE_HINT: &str = "the key's payload must be 16..64 bytes: make a key file with \
                                 dstcfg genkey -f KEYFILE and load it with keyctl padd logon \
                                 DESC @u < KEYFILE (padd replaces a key of the same description \
                                 in that keyring)";

/// What to do about the kernel error `kerr` returned for `cmd`, where it is
/// clear.
fn hint_for(cmd: &Command, kerr: &KernelError) -> Option<String> {
    let errno = kerr.errno;
    let msg = kerr.extack.msg.as_deref().unwrap_or("");
    // A module older than this dstcfg refuses the attributes it lacks.
    if errno == libc::EINVAL
        && (msg.contains("Unknown attribute") || msg.contains("Unsupported attribute"))
    {
        if let Some(option) = kerr.bad_attr.and_then(option_of) {
            // Without it the key is still needed: from a file.
            let instead = match option {
                "--key-desc" => "give the key with --key-file PATH instead".to_string(),
                "--client" => "leave --client out and give the clients the export's own key \
                               (--key-file or --key-desc)"
                    .to_string(),
                _ => format!("leave {option} out"),
            };
            return Some(format!(
                "the loaded dst module does not know {option}; load the dst module that \
                 matches this dstcfg, or {instead}"
            ));
        }
    }
    let unreachable = |addr: &SocketAddr| {
        format!("cannot reach {addr}; check the address, the port and the network")
    };
    // A --client with a keyring key counts as --key-desc for the hints.
    let keyring = match cmd {
        Command::Export {
            security, clients, ..
        } => {
            security.key_desc.is_some()
                || clients
                    .iter()
                    .any(|c| matches!(c.key, ClientKeySource::Keyring(_)))
        }
        Command::Local { security, .. } => security.key_desc.is_some(),
        _ => false,
    };
    // A module older than --loss-timeout infinite refuses u32::MAX by the
    // attribute's range.
    let infinite = matches!(
        cmd,
        Command::Local { settings, .. } | Command::Set { settings, .. }
            if settings.loss_timeout_ms == Some(crate::cli::LOSS_TIMEOUT_INFINITE)
    );
    if infinite && kerr.bad_attr == Some(uapi::DST_A_LOSS_TIMEOUT_MS) {
        return Some(
            "the loaded dst module does not take --loss-timeout infinite; load the dst module \
             that matches this dstcfg, or give a time of at most 24h"
                .into(),
        );
    }
    // Another identity holds the write access (before the hints of
    // other refusals by the export, whose words the holder's name could
    // contain): waiting would not help, and only the export node's
    // administrator can take it back.
    if let Command::Local { remote, .. } = cmd {
        if is_in_use(kerr) {
            let r = remote_arg(remote);
            return Some(format!(
                "another local node writes to this export, and an export takes one writer at \
                 a time: attach it read-only with dstcfg local -r {r} --read-only; or, if that \
                 node is gone for good (powered off, or its device deleted), take its write \
                 access back on the export node with dstcfg release -r {r}"
            ));
        }
    }
    Some(match (cmd, errno) {
        (Command::Export { .. }, libc::EEXIST) if msg.contains("same name") => {
            "give each --client name once".to_string()
        }
        (Command::Export { remote, .. }, libc::EEXIST) => format!(
            "an export already listens on {remote}; stop it first with: dstcfg unexport -r {remote}"
        ),
        (Command::Export { remote, .. }, libc::EADDRINUSE) => format!(
            "port {} is taken on {}; choose another port with -p",
            remote.port(),
            remote.ip()
        ),
        (Command::Export { remote, .. }, libc::EADDRNOTAVAIL) => format!(
            "{} is not an address of this machine; export listens on a local address",
            remote.ip()
        ),
        // Before the ENOENT of a missing algorithm: the export's refusal of
        // another identity is ENOENT too.
        (
            Command::Local {
                export_name: Some(name),
                ..
            },
            _,
        ) if errno != libc::EPERM
            && ["identity", "export of that name", "requested name"]
                .iter()
                .any(|m| msg.contains(m)) =>
        {
            format!(
                "the export node did not answer as {name}: dstcfg list on the export node \
                 shows the name of each export; give that with -n, or leave -n out to accept \
                 the export that answers (then only that one)"
            )
        }
        // Without -n, the export's "no export of that name" means that
        // several exports listen there.
        (
            Command::Local {
                export_name: None,
                remote,
                ..
            },
            _,
        ) if errno != libc::EPERM && msg.contains("export of that name") => format!(
            "several exports listen at {remote}; list those this node may use with: dstcfg \
             discover -r {}, and give one with -n NAME",
            remote_arg(remote)
        ),
        // The module found no key of the --key-desc description (ENOKEY),
        // or one it may not search (EACCES, before the export's refusal).
        (Command::Export { .. } | Command::Local { .. }, libc::ENOKEY) => {
            KEYRING_ENOKEY_HINT.into()
        }
        (Command::Export { .. } | Command::Local { .. }, libc::EACCES)
            if keyring && msg.contains(KEYRING_MISSING) =>
        {
            KEYRING_EACCES_HINT.into()
        }
        (Command::Export { .. } | Command::Local { .. }, libc::EINVAL)
            if keyring && msg.contains("16 to 64 bytes") =>
        {
            KEYRING_SIZE_HINT.into()
        }
        (Command::Export { security, .. } | Command::Local { security, .. }, libc::ENOENT)
            if security.alg.is_some() || security.protection.is_some() =>
        {
            "the kernel lacks the crypto algorithm; see /proc/crypto, load its module or \
             choose another --alg"
                .to_string()
        }
        (
            Command::Unexport {
                remote,
                name: Some(name),
            },
            libc::ENOENT,
        ) => format!("no export named {name} listens on {remote}; see dstcfg list"),
        (Command::Unexport { remote, .. }, libc::ENOENT) => {
            format!("no export listens on {remote} in this network namespace; see dstcfg list")
        }
        (Command::Unexport { remote, name: None }, libc::EINVAL) if msg.contains("name one") => {
            format!(
                "several exports listen on {remote}; say which with -n NAME (dstcfg list \
                 shows their names): dstcfg unexport -r {} -n NAME",
                remote_arg(remote)
            )
        }
        (Command::Release { remote, .. }, libc::ENOENT) if msg.contains("holds") => format!(
            "no local node holds the write access of the export on {remote}: the next one to \
             attach read-write gets it; dstcfg list shows the writer of each export"
        ),
        (Command::Release { remote, .. }, libc::ENOENT) => {
            format!("no export listens on {remote} in this network namespace; see dstcfg list")
        }
        (Command::Release { remote, .. }, libc::EINVAL) if msg.contains("shared") => format!(
            "the export on {remote} was made --shared: every local node may write to it, so \
             there is no write access to take back"
        ),
        (Command::Resize { remote, .. }, libc::ENOENT) => {
            format!("no export listens on {remote} in this network namespace; see dstcfg list")
        }
        (Command::Resize { .. }, libc::EINVAL) if msg.contains("shrink") => {
            "dstcfg list shows the export's size; to serve less of the device, unexport it and \
             export it again with --size (its devices must then be deleted and created again)"
                .to_string()
        }

        (Command::Local { remote, .. }, libc::ECONNREFUSED) => format!(
            "no export listens at {remote}; start one there with: dstcfg export -r {} -f PATH",
            remote_arg(remote)
        ),
        (
            Command::Local { remote, .. },
            libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENETUNREACH,
        ) => unreachable(remote),
        (Command::Local { .. }, libc::EACCES) => "the export node refused this node: is its \
             address on the export's allow-list (--allow), and do both nodes use the same \
             pre-shared key (--key-file or --key-desc), or, if the export has a --client entry \
             for this node's identity (--client-name, default the host name), that entry's \
             key?"
            .to_string(),
        (Command::Local { .. }, libc::EINVAL) if msg.contains("differs") => {
            "give both nodes the same --protection and --alg, and the same pre-shared key \
             (--key-file or --key-desc) or none; dstcfg list on the export node shows its \
             protection"
                .to_string()
        }
        (Command::Local { index: Some(n), .. }, libc::EEXIST) => {
            format!("/dev/dst{n} exists already; choose another -i N or leave -i out")
        }
        (Command::Local { .. }, libc::ENOSPC) => {
            format!("every device index 0..{MAX_INDEX} is in use; delete a device first")
        }
        (Command::Delete { index, .. }, libc::ENOENT) => {
            format!(
                "there is no such device /dev/dst{index} in this network namespace; see \
                 dstcfg list"
            )
        }
        (Command::Set { index, .. }, libc::ENOENT) => {
            format!(
                "there is no such device /dev/dst{index} in this network namespace; see \
                 dstcfg list"
            )
        }
        (Command::Delete { index, .. }, libc::EBUSY) if msg.contains("is open") => format!(
            "/dev/dst{index} is still mounted or open after {} s: unmount it and stop the \
             programs using it (findmnt /dev/dst{index}; fuser -vm /dev/dst{index}; an md or \
             LVM member: mdadm --stop, vgchange -an), then delete it again; or delete it with \
             --force, which fails its IO and loses the data not yet written",
            DELETE_OPEN_RETRY.as_secs()
        ),
        (Command::Delete { index, .. }, libc::EBUSY) => {
            format!("/dev/dst{index} is being deleted already; see dstcfg list")
        }
        // These give block device access: CAP_SYS_ADMIN on top of the
        // family's CAP_NET_ADMIN (the kernel's message says which is missing).
        (
            Command::Export { .. }
            | Command::Unexport { .. }
            | Command::Release { .. }
            | Command::Resize { .. }
            | Command::Local { .. }
            | Command::Delete { .. },
            libc::EPERM,
        ) => SYS_ADMIN_HINT.to_string(),
        _ => return None,
    })
}

/// `addr` as `-r` takes it, with the port only if it is not the default.
fn remote_arg(addr: &SocketAddr) -> String {
    if addr.port() == crate::cli::DEFAULT_PORT {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// Checks that `path` names a block device or a regular file and returns
/// its absolute path (the kernel opens it, so it must not depend on our
/// working directory).
fn backing_path(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let abs = std::fs::canonicalize(path).map_err(|e| match e.raw_os_error() {
        Some(errno) => anyhow::anyhow!("{shown}: {}", errno_text(errno)),
        None => anyhow::anyhow!("{shown}: {e}"),
    })?;
    let meta = std::fs::metadata(&abs).with_context(|| format!("{shown}"))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        bail!(
            "{shown} is a directory; -f needs a block device such as /dev/sdb or a regular \
             file such as an image"
        );
    }
    if !kind.is_block_device() && !kind.is_file() {
        bail!(
            "{shown} is neither a block device nor a regular file; -f needs a block device \
             such as /dev/sdb or a regular file such as an image"
        );
    }
    Ok(abs)
}

/// The path as `DST_A_PATH` carries it: UTF-8, at most 255 bytes.
fn path_attr(path: &Path) -> Result<String> {
    let Some(s) = path.to_str() else {
        bail!("{}: the path is not valid UTF-8", path.display());
    };
    if s.len() > MAX_PATH_LEN {
        bail!(
            "{s}: the path is {} bytes long; the module takes at most {MAX_PATH_LEN}",
            s.len()
        );
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn local(remote: &str, index: Option<u32>) -> Command {
        Command::Local {
            read_only: false,
            remote: addr(remote),
            index,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            client_id: None,
            export_name: None,
            client_name: None,
            settings: Default::default(),
            security: Default::default(),
            wait: None,
            duplicate: false,
        }
    }

    /// The hint for `errno` without an extended ACK.
    fn h(cmd: &Command, errno: i32) -> Option<String> {
        hint_for(cmd, &KernelError::new(errno, Default::default(), &[]))
    }

    #[test]
    fn export_file_must_be_a_block_device_or_regular_file() {
        let err = backing_path(Path::new("/nonexistent/dstcfg-test")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/dstcfg-test: No such file or directory"
        );
        let err = backing_path(Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let err = backing_path(Path::new("/dev/null")).unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a block device nor a regular file"),
            "{err}"
        );
        let file = std::env::temp_dir().join(format!("dstcfg-test-{}.img", std::process::id()));
        std::fs::write(&file, [0u8; 512]).unwrap();
        let r = backing_path(&file);
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            r.unwrap(),
            std::fs::canonicalize(std::env::temp_dir())
                .unwrap()
                .join(file.file_name().unwrap())
        );
    }

    #[test]
    fn path_attr_limits() {
        assert_eq!(path_attr(Path::new("/dev/sdb")).unwrap(), "/dev/sdb");
        let long = format!("/{}", "x".repeat(MAX_PATH_LEN));
        let err = path_attr(Path::new(&long)).unwrap_err();
        assert!(err.to_string().contains("at most 255"), "{err}");
        let exact = format!("/{}", "x".repeat(MAX_PATH_LEN - 1));
        assert!(path_attr(Path::new(&exact)).is_ok());
    }

    #[test]
    fn export_messages() {
        let mut req = ExportRequest {
            shared: false,
            addr: addr("10.0.0.2:1025"),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write)"
        );
        req.shared = true;
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, shared: any number of writers)"
        );
        req.shared = false;
        req.read_only = true;
        req.size = Some(512 << 20);
        req.addr = addr("[2001:db8::1]:2000");
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on [2001:db8::1]:2000 (read-only, first 512.0 MiB)"
        );
        req.name = Some("store1:sdb".into());
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on [2001:db8::1]:2000 (read-only, first 512.0 MiB, name \
             store1:sdb)"
        );
    }

    #[test]
    fn hints() {
        let delete = Command::Delete {
            index: 3,
            force: false,
        };
        assert_eq!(
            h(&delete, libc::ENOENT).unwrap(),
            "there is no such device /dev/dst3 in this network namespace; see dstcfg list"
        );
        assert_eq!(
            h(&local("10.0.0.2:1025", None), libc::ECONNREFUSED).unwrap(),
            "no export listens at 10.0.0.2:1025; start one there with: \
             dstcfg export -r 10.0.0.2 -f PATH"
        );
        let hint = h(&local("[2001:db8::1]:2000", None), libc::ECONNREFUSED).unwrap();
        assert!(
            hint.contains("dstcfg export -r [2001:db8::1]:2000"),
            "{hint}"
        );
        assert!(h(&local("10.0.0.2:1025", Some(4)), libc::EEXIST)
            .unwrap()
            .contains("/dev/dst4 exists already"));
        assert_eq!(h(&local("10.0.0.2:1025", None), libc::EEXIST), None);
        let unexport = Command::Unexport {
            remote: addr("10.0.0.2:1025"),
            name: None,
        };
        assert!(h(&unexport, libc::ENOENT)
            .unwrap()
            .starts_with("no export listens on 10.0.0.2:1025"));
        let several = refusal(
            libc::EINVAL,
            "several exports listen on this address and port: name one",
        );
        assert_eq!(
            hint_for(&unexport, &several).unwrap(),
            "several exports listen on 10.0.0.2:1025; say which with -n NAME (dstcfg list shows \
             their names): dstcfg unexport -r 10.0.0.2 -n NAME"
        );
        let named = Command::Unexport {
            remote: addr("10.0.0.2:1025"),
            name: Some("beta".into()),
        };
        assert_eq!(
            h(&named, libc::ENOENT).unwrap(),
            "no export named beta listens on 10.0.0.2:1025; see dstcfg list"
        );
        assert_eq!(h(&Command::List { json: false }, libc::ENOENT), None);
        let set = Command::Set {
            index: 2,
            settings: crate::message::DeviceSettings {
                loss_timeout_ms: Some(3000),
                ..Default::default()
            },
        };
        assert_eq!(
            h(&set, libc::ENOENT).unwrap(),
            "there is no such device /dev/dst2 in this network namespace; see dstcfg list"
        );
        assert_eq!(h(&set, libc::EINVAL), None);
        assert_eq!(set.action_name(), "set");
    }

    /// The refusal of a second writer: a hint on read-only access and on
    /// `release`, whatever the holder is called; and the hints of
    /// `release` itself.
    #[test]
    fn one_writer_hints() {
        let kerr = |errno, msg: &str| {
            let extack = crate::netlink::ExtAck {
                msg: Some(msg.to_string()),
                ..Default::default()
            };
            KernelError::new(errno, extack, &[])
        };
        let in_use = kerr(
            libc::EBUSY,
            "the export is in use read-write by identity at 10.0.0.7:40112",
        );
        let mut named = local("10.0.0.2:1025", None);
        if let Command::Local { export_name, .. } = &mut named {
            *export_name = Some("store1:sdb".into());
        }
        for cmd in [local("10.0.0.2:1025", None), named] {
            let hint = hint_for(&cmd, &in_use).unwrap();
            assert!(
                hint.contains("dstcfg local -r 10.0.0.2 --read-only")
                    && hint.contains("dstcfg release -r 10.0.0.2"),
                "{hint}"
            );
        }
        let hint = hint_for(
            &local("10.0.0.2:2000", None),
            &kerr(
                libc::EBUSY,
                "the export answered: another local node writes to it",
            ),
        )
        .unwrap();
        assert!(hint.contains("release -r 10.0.0.2:2000"), "{hint}");
        // Busy for a moment is not that.
        let busy = kerr(libc::EBUSY, "the export answered: busy");
        assert_eq!(hint_for(&local("10.0.0.2:1025", None), &busy), None);

        let release = Command::Release {
            remote: addr("10.0.0.2:1025"),
            name: None,
        };
        let nobody = kerr(libc::ENOENT, "no local node holds the write access");
        assert!(hint_for(&release, &nobody)
            .unwrap()
            .starts_with("no local node holds the write access of the export on 10.0.0.2:1025"));
        let none = kerr(libc::ENOENT, "no export listens on this address and port");
        assert!(hint_for(&release, &none)
            .unwrap()
            .starts_with("no export listens on 10.0.0.2:1025 in this network namespace"));
        let shared = kerr(
            libc::EINVAL,
            "the export is shared: every local node may write, none holds it",
        );
        assert!(hint_for(&release, &shared).unwrap().contains("--shared"));
        assert_eq!(h(&release, libc::EPERM).as_deref(), Some(SYS_ADMIN_HINT));
    }

    #[test]
    fn release_says_whom_it_took_the_access_from() {
        let w = Writer {
            name: "web1".into(),
            addr: Some(addr("10.0.0.7:40112")),
        };
        assert_eq!(
            release_message(addr("10.0.0.2:1025"), Some(&w)),
            "took the write access of the export on 10.0.0.2:1025 from web1 at \
             10.0.0.7:40112; the next local node to attach read-write gets it"
        );
        assert!(release_message(addr("10.0.0.2:1025"), None).contains("from its holder"));
    }

    #[test]
    fn kernel_errors_get_the_action_and_the_hint() {
        let kerr = KernelError::new(libc::ENOENT, Default::default(), &[]);
        let cmd = Command::Delete {
            index: 0,
            force: false,
        };
        let err = add_hint(kerr.into(), &cmd).context(cmd.action_name());
        assert_eq!(
            format!("{err:#}"),
            "delete: No such file or directory (ENOENT)"
        );
        let kerr = err.downcast_ref::<KernelError>().unwrap();
        assert_eq!(
            kerr.hint().as_deref(),
            Some("there is no such device /dev/dst0 in this network namespace; see dstcfg list")
        );
        // EPERM of a delete names CAP_SYS_ADMIN too; that of a status or a
        // set keeps the generic hint.
        let eperm = |cmd: &Command| {
            let kerr = KernelError::new(libc::EPERM, Default::default(), &[]);
            let err = add_hint(kerr.into(), cmd);
            err.downcast_ref::<KernelError>().unwrap().hint()
        };
        assert_eq!(
            eperm(&cmd).as_deref(),
            Some("needs CAP_SYS_ADMIN and CAP_NET_ADMIN; run as root")
        );
        assert_eq!(
            eperm(&Command::Unexport {
                remote: addr("10.0.0.2:1025"),
                name: None,
            })
            .as_deref(),
            Some("needs CAP_SYS_ADMIN and CAP_NET_ADMIN; run as root")
        );
        assert_eq!(
            eperm(&Command::Status { json: false }).as_deref(),
            Some("needs CAP_NET_ADMIN; run as root")
        );
    }

    /// The kernel's refusal `errno` with extended-ack message `msg`.
    fn refusal(errno: i32, msg: &str) -> KernelError {
        let extack = crate::netlink::ExtAck {
            msg: Some(msg.into()),
            ..Default::default()
        };
        KernelError::new(errno, extack, &[])
    }

    /// [`refusal`] as the error an action returns.
    fn kernel_error(errno: i32, msg: &str) -> anyhow::Error {
        refusal(errno, msg).into()
    }

    /// The refusal of a module that does not know attribute `attr`.
    fn unknown_attribute(attr: u16) -> KernelError {
        let extack = crate::netlink::ExtAck {
            msg: Some("Unknown attribute type".into()),
            ..Default::default()
        };
        let mut e = KernelError::new(libc::EINVAL, extack, &[]);
        e.bad_attr = Some(attr);
        e
    }

    const OPEN: &str = "the device is open (mounted or in use); close it, or delete with --force";

    #[test]
    fn delete_retries_an_open_device() {
        let poll = Duration::from_millis(1);
        // Open for two attempts (a udev probe), then deleted.
        let mut calls = 0;
        retry_while_open(Duration::from_secs(5), poll, || {
            calls += 1;
            if calls < 3 {
                Err(kernel_error(libc::EBUSY, OPEN))
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(calls, 3);
        // Still open when the time is up: the module's refusal is returned.
        let mut calls = 0;
        let start = Instant::now();
        let err = retry_while_open(Duration::from_millis(30), poll, || {
            calls += 1;
            Err(kernel_error(libc::EBUSY, OPEN))
        })
        .unwrap_err();
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "gave up early"
        );
        assert!(calls > 1, "{calls}");
        assert!(is_open_refusal(&err));
        // Other errors, a delete under way included, are final.
        for (errno, msg) in [
            (libc::EBUSY, "the device is being deleted"),
            (libc::ENOENT, "no such device"),
        ] {
            let mut calls = 0;
            let err = retry_while_open(Duration::from_secs(5), poll, || {
                calls += 1;
                Err(kernel_error(errno, msg))
            })
            .unwrap_err();
            assert_eq!(calls, 1, "{msg}");
            assert!(!is_open_refusal(&err), "{msg}");
        }
        assert!(!is_open_refusal(&anyhow::anyhow!("device is open")));
    }

    #[test]
    fn delete_hints() {
        let delete = Command::Delete {
            index: 2,
            force: false,
        };
        let hint = |err: anyhow::Error| {
            hint_for(&delete, err.downcast_ref::<KernelError>().unwrap()).unwrap()
        };
        let open = hint(kernel_error(libc::EBUSY, OPEN));
        assert!(
            open.contains("unmount") && open.contains("--force") && open.contains("/dev/dst2"),
            "{open}"
        );
        assert_eq!(
            hint(kernel_error(libc::EBUSY, "the device is being deleted")),
            "/dev/dst2 is being deleted already; see dstcfg list"
        );
        // A module older than --force refuses the attribute.
        let unknown = unknown_attribute(uapi::DST_A_FORCE);
        assert!(hint_for(&delete, &unknown)
            .unwrap()
            .contains("does not know --force"));
    }

    #[test]
    fn export_message_with_security() {
        let req = ExportRequest {
            shared: false,
            addr: addr("10.0.0.2:1025"),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: SecurityAttrs {
                protection: Some(uapi::DST_PROT_AEAD),
                alg: Some("gcm(aes)".into()),
                key: Some(crate::secret::SecretKey::new(&[7; 32])),
                key_desc: None,
            },
            allow: vec![
                crate::cli::parse_allow("192.0.2.0/24").unwrap(),
                crate::cli::parse_allow("2001:db8::/32:ro").unwrap(),
            ],
            clients: Vec::new(),
            name: None,
        };
        let text = export_message(&req);
        assert_eq!(
            text,
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, aead gcm(aes), pre-shared key, \
             allow 192.0.2.0/24:rw 2001:db8::/32:ro)"
        );
        // The key never shows, not even in the request's debug form.
        assert!(!format!("{req:?}").contains("7, 7"), "{req:?}");
    }

    #[test]
    fn hints_for_security_and_older_modules() {
        let mut local = local("10.0.0.2:1025", None);
        let refused = refusal(
            libc::EACCES,
            "this address is not on the export's allow-list",
        );
        let hint = hint_for(&local, &refused).unwrap();
        assert!(
            hint.contains("allow-list") && hint.contains("--key-file"),
            "{hint}"
        );
        // The module's own EACCES is not a missing capability.
        assert_eq!(refused.hint(), None);
        let mismatch = refusal(
            libc::EINVAL,
            "protection mode, algorithm or key use differs from the export's",
        );
        assert!(hint_for(&local, &mismatch)
            .unwrap()
            .contains("the same --protection"));
        // An older module refuses --queues as an unknown attribute.
        let mut unknown = unknown_attribute(uapi::DST_A_QUEUES);
        assert_eq!(
            hint_for(&local, &unknown).unwrap(),
            "the loaded dst module does not know --queues; load the dst module that matches \
             this dstcfg, or leave --queues out"
        );
        // So does a module before DST_A_CLIENT_ID refuse --client-id.
        unknown.bad_attr = Some(uapi::DST_A_CLIENT_ID);
        assert_eq!(
            hint_for(&local, &unknown).unwrap(),
            "the loaded dst module does not know --client-id; load the dst module that \
             matches this dstcfg, or leave --client-id out"
        );
        // And one before identities -n and --client-name.
        unknown.bad_attr = Some(uapi::DST_A_NAME);
        assert_eq!(
            hint_for(&local, &unknown).unwrap(),
            "the loaded dst module does not know --name; load the dst module that \
             matches this dstcfg, or leave --name out"
        );
        unknown.bad_attr = Some(uapi::DST_A_CLIENT_NAME);
        assert!(hint_for(&local, &unknown)
            .unwrap()
            .contains("does not know --client-name"));
        unknown.bad_attr = Some(uapi::DST_A_PORT);
        assert_eq!(hint_for(&local, &unknown), None);
        if let Command::Local { security, .. } = &mut local {
            security.alg = Some("gcm(nope)".into());
        }
        assert!(h(&local, libc::ENOENT).unwrap().contains("/proc/crypto"));
        let config = Command::Config {
            settings: crate::message::ModuleSettings {
                crypto_threads: Some(1),
                ..Default::default()
            },
        };
        assert_eq!(config.action_name(), "set");
    }

    #[test]
    fn export_message_with_keyring_key() {
        let mut req = ExportRequest {
            shared: false,
            addr: addr("10.0.0.2:1025"),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
            security: SecurityAttrs {
                protection: Some(uapi::DST_PROT_HMAC),
                alg: None,
                key: None,
                key_desc: Some("dst:pair1".into()),
            },
            allow: Vec::new(),
            clients: Vec::new(),
            name: None,
        };
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, hmac, keyring key dst:pair1)"
        );
        req.security.protection = None;
        req.allow = vec![crate::cli::parse_allow("192.0.2.0/24").unwrap()];
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, keyring key dst:pair1, allow \
             192.0.2.0/24:rw)"
        );
    }

    #[test]
    fn security_attrs_pass_the_description_on() {
        // dstcfg reads no key for --key-desc: the description goes as given.
        let security = Security {
            protection: Some(crate::cli::Protection::Aead),
            alg: None,
            key_file: None,
            key_desc: Some("dst:pair1".into()),
        };
        let attrs = security_attrs(&security).unwrap();
        assert_eq!(attrs.key, None);
        assert_eq!(attrs.key_desc.as_deref(), Some("dst:pair1"));
        assert_eq!(attrs.protection, Some(uapi::DST_PROT_AEAD));
    }

    #[test]
    fn hints_for_keyring_keys() {
        let with_desc = |mut cmd: Command| {
            if let Command::Export { security, .. } | Command::Local { security, .. } = &mut cmd {
                security.protection = Some(crate::cli::Protection::Aead);
                security.key_desc = Some("dst:pair1".into());
            }
            cmd
        };
        let plain = local("10.0.0.2:1025", None);
        let local = with_desc(plain.clone());
        let export = with_desc(Command::Export {
            shared: false,
            remote: addr("10.0.0.2:1025"),
            file: "/dev/sdb".into(),
            name: None,
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
        });
        let missing = |errno| refusal(errno, KEYRING_MISSING);
        for cmd in [&local, &export] {
            // No key of that description.
            assert_eq!(
                hint_for(cmd, &missing(libc::ENOKEY)).unwrap(),
                "no such key: add it with keyctl, e.g. keyctl padd logon dst:NAME @u < \
                 KEYFILE (a logon key cannot be read back by any process)"
            );
            assert_eq!(h(cmd, libc::ENOKEY).as_deref(), Some(KEYRING_ENOKEY_HINT));
            // One that may not be searched: not the export's refusal.
            let hint = hint_for(cmd, &missing(libc::EACCES)).unwrap();
            assert!(
                hint.contains("may search") && hint.contains("keyctl padd logon"),
                "{hint}"
            );
            // A payload of the wrong size.
            let size = refusal(libc::EINVAL, "the keyring key must hold 16 to 64 bytes");
            let hint = hint_for(cmd, &size).unwrap();
            assert!(
                hint.contains("16..64 bytes") && hint.contains("dstcfg genkey"),
                "{hint}"
            );
            // A module before DST_A_KEY_DESC refuses it.
            assert_eq!(
                hint_for(cmd, &unknown_attribute(uapi::DST_A_KEY_DESC)).unwrap(),
                "the loaded dst module does not know --key-desc; load the dst module that \
                 matches this dstcfg, or give the key with --key-file PATH instead"
            );
        }
        // Without --key-desc, EACCES of a device is still the export's
        // refusal, whose hint names both ways to give the key.
        let hint = hint_for(&plain, &missing(libc::EACCES)).unwrap();
        assert!(
            hint.starts_with("the export node refused this node"),
            "{hint}"
        );
        assert!(hint.contains("--key-file or --key-desc"), "{hint}");
        let refused = refusal(
            libc::EACCES,
            "this address is not on the export's allow-list",
        );
        assert!(hint_for(&local, &refused)
            .unwrap()
            .starts_with("the export node refused this node"));
        // ENOKEY prints with its name.
        let err = add_hint(missing(libc::ENOKEY).into(), &local).context("local");
        assert_eq!(
            format!("{err:#}"),
            format!("local: Required key not available (ENOKEY): {KEYRING_MISSING}")
        );
        assert_eq!(
            err.downcast_ref::<KernelError>().unwrap().hint().as_deref(),
            Some(KEYRING_ENOKEY_HINT)
        );
    }

    #[test]
    fn hints_for_module_settings() {
        let config = Command::Config {
            settings: crate::message::ModuleSettings {
                rekey_mib: Some(1024),
                rekey_seconds: Some(600),
                ..Default::default()
            },
        };
        // A module before key updates refuses either attribute.
        assert_eq!(
            hint_for(&config, &unknown_attribute(uapi::DST_A_REKEY_MIB)).unwrap(),
            "the loaded dst module does not know --rekey-after; load the dst module that \
             matches this dstcfg, or leave --rekey-after out"
        );
        assert_eq!(
            hint_for(&config, &unknown_attribute(uapi::DST_A_REKEY_SECONDS)).unwrap(),
            "the loaded dst module does not know --rekey-interval; load the dst module that \
             matches this dstcfg, or leave --rekey-interval out"
        );
        assert!(
            hint_for(&config, &unknown_attribute(uapi::DST_A_CRYPTO_THREADS))
                .unwrap()
                .contains("does not know --crypto-threads")
        );
        // The module's own range check has nothing to add.
        assert_eq!(h(&config, libc::EINVAL), None);
        let kerr = add_hint(unknown_attribute(uapi::DST_A_REKEY_MIB).into(), &config)
            .context(config.action_name());
        assert!(format!("{kerr:#}").starts_with("set: "), "{kerr:#}");
    }

    #[test]
    fn hint_for_another_export() {
        let refused = |msg: &str| refusal(libc::ENOENT, msg);
        let kerr = refused("the export answered: no export of that name here");
        let mut cmd = local("10.0.0.2:1025", None);
        // Without -n: several exports listen there.
        assert_eq!(
            hint_for(&cmd, &kerr).unwrap(),
            "several exports listen at 10.0.0.2:1025; list those this node may use with: \
             dstcfg discover -r 10.0.0.2, and give one with -n NAME"
        );
        let identity = refused("the export node is not the export asked for: its identity differs");
        assert_eq!(hint_for(&cmd, &identity), None);
        if let Command::Local { export_name, .. } = &mut cmd {
            *export_name = Some("store1:sdb".into());
        }
        let hint = hint_for(&cmd, &kerr).unwrap();
        assert!(
            hint.starts_with("the export node did not answer as store1:sdb")
                && hint.contains("dstcfg list"),
            "{hint}"
        );
        let kerr = refused("the export node is not the export asked for: its identity differs");
        assert!(hint_for(&cmd, &kerr).is_some());
        assert_eq!(hint_for(&cmd, &refused("something else")), None);
        // Even with a protection given, whose ENOENT is otherwise a missing
        // algorithm.
        if let Command::Local { security, .. } = &mut cmd {
            security.protection = Some(crate::cli::Protection::Aead);
        }
        let kerr = refused("the export answered: no export of that name here");
        assert!(hint_for(&cmd, &kerr).unwrap().contains("did not answer as"));
        let other = hint_for(&cmd, &refused("something else")).unwrap();
        assert!(other.contains("/proc/crypto"), "{other}");
    }

    fn export_cmd(clients: Vec<ClientRule>) -> Command {
        Command::Export {
            shared: false,
            remote: addr("10.0.0.2:1025"),
            file: "/dev/sdb".into(),
            name: None,
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients,
        }
    }

    #[test]
    fn export_message_with_clients() {
        let mut req = ExportRequest {
            shared: false,
            addr: addr("10.0.0.2:1025"),
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
                    secret: ClientSecret::Key(secret::SecretKey::new(&[0x5a; 32])),
                    read_only: false,
                },
                ExportClient {
                    name: "backup".into(),
                    secret: ClientSecret::KeyDesc("dst:backup".into()),
                    read_only: true,
                },
            ],
            name: None,
        };
        let text = export_message(&req);
        assert_eq!(
            text,
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, aead, clients web1 (rw), backup \
             (ro))"
        );
        // Names and access only: no key, nor where it comes from.
        assert!(
            !text.contains("dst:backup") && !text.contains('Z'),
            "{text}"
        );
        // After the export's own key and the allow-list; one client alone.
        req.security.key_desc = Some("dst:pair1".into());
        req.allow = vec![crate::cli::parse_allow("192.0.2.0/24:ro").unwrap()];
        req.clients.truncate(1);
        req.clients[0].read_only = true;
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write, aead, keyring key dst:pair1, \
             allow 192.0.2.0/24:ro, clients web1 (ro))"
        );
    }

    /// A fresh, empty folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dstcfg-action-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_key(path: &Path, bytes: &[u8], mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn client_keys_are_read_as_key_files() {
        let dir = scratch("clients");
        let key: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
        let web1 = dir.join("web1.key");
        write_key(&web1, &key, 0o600);
        let rule = |name: &str, key: ClientKeySource, read_only| ClientRule {
            name: name.into(),
            key,
            read_only,
        };
        let clients = export_clients(&[
            rule("web1", ClientKeySource::File(web1.clone()), false),
            rule(
                "backup",
                ClientKeySource::Keyring("dst:backup".into()),
                true,
            ),
        ])
        .unwrap();
        assert_eq!(
            clients,
            [
                ExportClient {
                    name: "web1".into(),
                    secret: ClientSecret::Key(secret::SecretKey::new(&key)),
                    read_only: false,
                },
                ExportClient {
                    name: "backup".into(),
                    secret: ClientSecret::KeyDesc("dst:backup".into()),
                    read_only: true,
                },
            ]
        );
        assert_eq!(export_clients(&[]).unwrap(), []);

        // The checks of --key-file, each message naming the client.
        let shown = web1.display().to_string();
        let one = |path: &Path| {
            export_clients(&[rule("web1", ClientKeySource::File(path.into()), false)])
                .unwrap_err()
                .to_string()
        };
        write_key(&web1, &key, 0o644);
        assert_eq!(
            one(&web1),
            format!(
                "--client web1={shown} is readable by group or others (mode 0644); a key must \
                 be private: chmod 600 {shown}"
            )
        );
        write_key(&web1, &key[..8], 0o600);
        assert_eq!(
            one(&web1),
            format!(
                "--client web1={shown}: 8 bytes; a key has 16..64 bytes (make one with: \
                 dstcfg genkey -f PATH)"
            )
        );
        write_key(&web1, b"password", 0o600);
        assert!(one(&web1).starts_with(&format!("--client web1={shown}: 8 bytes")));
        write_key(&web1, b"correct horse battery", 0o600);
        assert!(
            one(&web1).contains("look like a password"),
            "{}",
            one(&web1)
        );
        let missing = dir.join("missing.key");
        assert_eq!(
            one(&missing),
            format!(
                "--client web1={}: No such file or directory; make a key with: dstcfg \
                 genkey -f PATH",
                missing.display()
            )
        );
        assert!(one(&dir).ends_with(": not a regular file"), "{}", one(&dir));
        // --key-file's own messages are unchanged.
        let err = secret::read_key_file(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("--key-file {}: ", missing.display())),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hints_for_clients() {
        let with_keyring = export_cmd(vec![
            crate::cli::parse_client("backup=@dst:backup,ro").unwrap()
        ]);
        let with_file = export_cmd(vec![
            crate::cli::parse_client("web1=/etc/dst/web1.key").unwrap()
        ]);
        let kerr = |errno, msg: &str| refusal(errno, msg);
        // The module's refusal of a name given twice is not a taken address.
        for cmd in [&with_keyring, &with_file] {
            assert_eq!(
                hint_for(cmd, &kerr(libc::EEXIST, "two clients have the same name")).unwrap(),
                "give each --client name once"
            );
            assert!(h(cmd, libc::EEXIST)
                .unwrap()
                .starts_with("an export already listens on 10.0.0.2:1025"));
            // A module before DST_A_CLIENT.
            assert_eq!(
                hint_for(cmd, &unknown_attribute(uapi::DST_A_CLIENT)).unwrap(),
                "the loaded dst module does not know --client; load the dst module that \
                 matches this dstcfg, or leave --client out and give the clients the export's \
                 own key (--key-file or --key-desc)"
            );
        }
        // A client's keyring key is looked up as --key-desc's is.
        let missing = kerr(libc::EACCES, KEYRING_MISSING);
        assert_eq!(
            hint_for(&with_keyring, &missing).as_deref(),
            Some(KEYRING_EACCES_HINT)
        );
        let size = kerr(libc::EINVAL, "the keyring key must hold 16 to 64 bytes");
        assert_eq!(
            hint_for(&with_keyring, &size).as_deref(),
            Some(KEYRING_SIZE_HINT)
        );
        assert_eq!(hint_for(&with_file, &size), None);
        assert_eq!(
            h(&with_keyring, libc::ENOKEY).as_deref(),
            Some(KEYRING_ENOKEY_HINT)
        );
        // A local node refused by the export: the hint names --client-name.
        let hint = h(&local("10.0.0.2:1025", None), libc::EACCES);
        assert!(
            hint.as_deref()
                .unwrap()
                .contains("--client entry for this node's identity (--client-name"),
            "{hint:?}"
        );
    }
}
