//! The persistent configuration file, `/etc/dst/dst.toml`: its serde model
//! ([`Config`]), the checks of every value and of the entries against each
//! other, and errors that name the file, the line and the key
//! ([`ConfigError`]).
//!
//! The file describes this node's module settings (`[module]`), exports
//! (`[[export]]`, each with `[[export.client]]` entries) and devices
//! (`[[device]]`) with every option `dstcfg export`, `local` and
//! `set` take, under the same names without the dashes. Keys are given
//! by path (`key_file`) or keyring description (`key_desc`), never inline.
//! Unknown keys are errors. Reference: `Documentation/dstcfg.md`.
//!
//! Values are checked while serde reads them (each check is the command
//! line's own parser, so the limits and messages are the same), which gives
//! every error the span of its value; [`Locator`] turns a span into a line
//! and a key path. What `apply` does with the result is in `apply.rs`.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::cli::{
    ms_text, parse_alg, parse_allow, parse_client_id, parse_key_desc, parse_loss_timeout,
    parse_name, parse_ping_interval, parse_ping_timeout, parse_reconnect_delay, parse_rekey_after,
    parse_rekey_interval, parse_remote, parse_req_timeout, parse_size, AllowRule, Protection,
    LOSS_TIMEOUT_INFINITE, MAX_ALLOW, MAX_CLIENTS, MAX_CRYPTO_THREADS, MAX_INDEX, MAX_IO_PAGES,
    MAX_QUEUES, MAX_QUEUE_DEPTH, MAX_RESENDS,
};
use crate::message::{DeviceSettings, ModuleSettings};

/// The settings of a new device, which a device entry without the key gets
/// (so that removing a key from the file restores the default).
pub const DEVICE_DEFAULTS: DeviceSettings = DeviceSettings {
    req_timeout_ms: Some(15_000),
    max_resends: Some(10),
    reconnect_delay_ms: Some(1_000),
    ping_interval_ms: Some(5_000),
    ping_timeout_ms: Some(10_000),
    loss_timeout_ms: Some(60_000),
};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[module]`: module-wide settings.
    #[serde(default)]
    pub module: ModuleSection,
    /// `[[export]]` entries.
    #[serde(default, rename = "export")]
    pub exports: Vec<ExportEntry>,
    /// `[[device]]` entries.
    #[serde(default, rename = "device")]
    pub devices: Vec<DeviceEntry>,
}

/// `[module]`: what `dstcfg set` changes without `-d`. A key left out
/// leaves the module's value as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleSection {
    /// `crypto_threads = 4` (`--crypto-threads`).
    #[serde(default, deserialize_with = "crypto_threads")]
    pub crypto_threads: Option<u32>,
    /// `rekey_after = "64G"`, in MiB (`--rekey-after`).
    #[serde(default, deserialize_with = "rekey_after")]
    pub rekey_after: Option<u32>,
    /// `rekey_interval = "1h"`, in seconds (`--rekey-interval`).
    #[serde(default, deserialize_with = "rekey_interval")]
    pub rekey_interval: Option<u32>,
}

impl ModuleSection {
    /// The settings as `DST_CMD_CONFIG` takes them.
    pub fn settings(&self) -> ModuleSettings {
        ModuleSettings {
            crypto_threads: self.crypto_threads,
            rekey_mib: self.rekey_after,
            rekey_seconds: self.rekey_interval,
        }
    }
}

/// `[[export]]`: `dstcfg export -r LISTEN -f PATH ...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportEntry {
    /// `listen = "192.0.2.1"` or `"192.0.2.1:1025"`, `"[2001:db8::1]:1025"`,
    /// a host name (`-r`).
    pub listen: String,
    /// `port = 1025` (`-p`), if `listen` has none.
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    /// `path = "/dev/sdb"` (`-f`).
    pub path: PathBuf,
    /// `name = "store1:sdb"` (`-n`).
    #[serde(default, deserialize_with = "name")]
    pub name: Option<String>,
    /// `read_only = true` (`--read-only`).
    #[serde(default)]
    pub read_only: bool,
    /// `shared = true` (`--shared`): any number of writers.
    #[serde(default)]
    pub shared: bool,
    /// `size = "10G"` or bytes (`--size`).
    #[serde(default, deserialize_with = "size")]
    pub size: Option<u64>,
    /// `max_io_pages = 256` (`--max-io-pages`).
    #[serde(default, deserialize_with = "max_io_pages")]
    pub max_io_pages: Option<u32>,
    /// `protection = "aead"` (`--protection`).
    #[serde(default, deserialize_with = "protection")]
    pub protection: Option<Protection>,
    /// `alg = "gcm(aes)"` (`--alg`).
    #[serde(default, deserialize_with = "alg")]
    pub alg: Option<String>,
    /// `key_file = PATH` (`--key-file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `key_desc = DESC` (`--key-desc`).
    #[serde(default, deserialize_with = "key_desc")]
    pub key_desc: Option<String>,
    /// `allow = ["192.0.2.0/24", "198.51.100.7:ro"]` (`--allow`).
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
    /// `[[export.client]]` entries (`--client`).
    #[serde(default, rename = "client")]
    pub clients: Vec<ClientEntry>,
}

/// `[[export.client]]`: `--client NAME=PATH[,ro]` or `NAME=@DESC[,ro]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// `name = "web1"`: the client's `--client-name`.
    #[serde(deserialize_with = "required_name")]
    pub name: String,
    /// `key_file = PATH` or `key_desc = DESC`: exactly one.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// See `key_file`.
    #[serde(default, deserialize_with = "key_desc")]
    pub key_desc: Option<String>,
    /// `read_only = true`: the client's device is read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// One `allow` entry, `"PREFIX[:ro|:rw]"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowEntry(pub AllowRule);

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_allow(&text)
            .map(AllowEntry)
            .map_err(de::Error::custom)
    }
}

/// `[[device]]`: `dstcfg local -r REMOTE ...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// `remote = "192.0.2.1"` or with `:PORT` (`-r`): the export node.
    pub remote: String,
    /// `port = 1025` (`-p`), if `remote` has none.
    #[serde(default, deserialize_with = "port")]
    pub port: Option<u16>,
    /// `export_name = "store1:sdb"` (`-n`): accept only this export.
    #[serde(default, deserialize_with = "name")]
    pub export_name: Option<String>,
    /// `client_name = "web1"` (`--client-name`).
    #[serde(default, deserialize_with = "name")]
    pub client_name: Option<String>,
    /// `read_only = true` (`--read-only`): ask for reads only.
    #[serde(default)]
    pub read_only: bool,
    /// `index = 3` for /dev/dst3 (`-i`).
    #[serde(default, deserialize_with = "index")]
    pub index: Option<u32>,
    /// `queues = 4` (`--queues`).
    #[serde(default, deserialize_with = "queues")]
    pub queues: Option<u32>,
    /// `queue_depth = 64` (`--queue-depth`).
    #[serde(default, deserialize_with = "queue_depth")]
    pub queue_depth: Option<u32>,
    /// `max_io_pages = 256` (`--max-io-pages`).
    #[serde(default, deserialize_with = "max_io_pages")]
    pub max_io_pages: Option<u32>,
    /// `client_id = "0x5e1f0a1c0de00001"` (`--client-id`).
    #[serde(default, deserialize_with = "client_id")]
    pub client_id: Option<u64>,
    /// `protection = "aead"` (`--protection`).
    #[serde(default, deserialize_with = "protection")]
    pub protection: Option<Protection>,
    /// `alg = "gcm(aes)"` (`--alg`).
    #[serde(default, deserialize_with = "alg")]
    pub alg: Option<String>,
    /// `key_file = PATH` (`--key-file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `key_desc = DESC` (`--key-desc`).
    #[serde(default, deserialize_with = "key_desc")]
    pub key_desc: Option<String>,
    /// `req_timeout = "15s"` (`--req-timeout`).
    #[serde(default, deserialize_with = "req_timeout")]
    pub req_timeout: Option<u32>,
    /// `max_resends = 10` (`--max-resends`).
    #[serde(default, deserialize_with = "max_resends")]
    pub max_resends: Option<u32>,
    /// `reconnect_delay = "1s"` (`--reconnect-delay`).
    #[serde(default, deserialize_with = "reconnect_delay")]
    pub reconnect_delay: Option<u32>,
    /// `ping_interval = "5s"`, 0 = no pings (`--ping-interval`).
    #[serde(default, deserialize_with = "ping_interval")]
    pub ping_interval: Option<u32>,
    /// `ping_timeout = "10s"` (`--ping-timeout`).
    #[serde(default, deserialize_with = "ping_timeout")]
    pub ping_timeout: Option<u32>,
    /// `loss_timeout = "60s"` or `"infinite"` (`--loss-timeout`).
    #[serde(default, deserialize_with = "loss_timeout")]
    pub loss_timeout: Option<u32>,
}

impl DeviceEntry {
    /// The settings the entry gives, the others left out.
    pub fn given_settings(&self) -> DeviceSettings {
        DeviceSettings {
            req_timeout_ms: self.req_timeout,
            max_resends: self.max_resends,
            reconnect_delay_ms: self.reconnect_delay,
            ping_interval_ms: self.ping_interval,
            ping_timeout_ms: self.ping_timeout,
            loss_timeout_ms: self.loss_timeout,
        }
    }

    /// The settings the device should have: those given, the defaults of a
    /// new device for the others.
    pub fn wanted_settings(&self) -> DeviceSettings {
        let given = self.given_settings();
        let d = DEVICE_DEFAULTS;
        DeviceSettings {
            req_timeout_ms: given.req_timeout_ms.or(d.req_timeout_ms),
            max_resends: given.max_resends.or(d.max_resends),
            reconnect_delay_ms: given.reconnect_delay_ms.or(d.reconnect_delay_ms),
            ping_interval_ms: given.ping_interval_ms.or(d.ping_interval_ms),
            ping_timeout_ms: given.ping_timeout_ms.or(d.ping_timeout_ms),
            loss_timeout_ms: given.loss_timeout_ms.or(d.loss_timeout_ms),
        }
    }
}

/// The file's entries with their addresses resolved, ready to compare with
/// the running state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Desired {
    /// The file, as given (for messages and the record of what it manages).
    pub file: PathBuf,
    /// `[module]`.
    pub module: ModuleSection,
    /// `[[export]]` entries, in file order.
    pub exports: Vec<DesiredExport>,
    /// `[[device]]` entries, in file order.
    pub devices: Vec<DesiredDevice>,
}

/// An `[[export]]` entry and where it listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredExport {
    /// The line of its `[[export]]` header.
    pub line: usize,
    /// `listen` and `port`, resolved.
    pub addr: SocketAddr,
    /// `path` as the kernel reports it: symbolic links resolved (by
    /// [`load`]; as written if it does not exist).
    pub device_path: String,
    /// As written.
    pub entry: ExportEntry,
}

/// A `[[device]]` entry and the export node it connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredDevice {
    /// The line of its `[[device]]` header.
    pub line: usize,
    /// `remote` and `port`, resolved.
    pub addr: SocketAddr,
    /// As written.
    pub entry: DeviceEntry,
}

impl DesiredExport {
    /// How messages name it: `export on 192.0.2.1:1025`, `export alpha on
    /// 192.0.2.1:1025` when it has a name.
    pub fn label(&self) -> String {
        match &self.entry.name {
            Some(name) => format!("export {name} on {}", self.addr),
            None => format!("export on {}", self.addr),
        }
    }
}

impl DesiredDevice {
    /// How messages name it: `device for 192.0.2.1:1025` (with ` (export
    /// store1:sdb)` when it names one).
    pub fn label(&self) -> String {
        match &self.entry.export_name {
            Some(name) => format!("device for {} (export {name})", self.addr),
            None => format!("device for {}", self.addr),
        }
    }
}

/// An error in the file: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as given.
    pub file: String,
    /// 1-based line, if known.
    pub line: Option<usize>,
    /// The key, e.g. `device #2: loss_timeout` (empty: the file as a whole).
    pub key: String,
    /// What is wrong and, where clear, what to write instead.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error found in a file (at least one), one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads, parses and checks `file`, resolving addresses with the system
/// resolver; nothing in the kernel is asked or changed.
pub fn load(file: &Path) -> anyhow::Result<Desired> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        let why = match e.raw_os_error() {
            Some(errno) => crate::netlink::errno_text(errno),
            None => e.to_string(),
        };
        anyhow::anyhow!("{}: {why}", file.display())
    })?;
    let mut desired = parse(&text, file, &parse_remote)?;
    for export in &mut desired.exports {
        if let Ok(path) = std::fs::canonicalize(&export.entry.path) {
            export.device_path = path.display().to_string();
        }
    }
    Ok(desired)
}

/// A resolver of `listen`/`remote` with `port` ([`parse_remote`], or a
/// stand-in in tests).
pub type Resolve<'a> = &'a dyn Fn(&str, Option<u16>) -> Result<SocketAddr, String>;

/// Parses and checks the text of `file`.
pub fn parse(text: &str, file: &Path, resolve: Resolve) -> Result<Desired, ConfigErrors> {
    let shown = file.display().to_string();
    let config: Config = toml::from_str(text).map_err(|e| {
        let locator = Locator::new(text);
        let (line, key) = match e.span() {
            Some(span) => (
                Some(line_of(text, span.start)),
                locator
                    .as_ref()
                    .map(|l| l.key_at(span.start))
                    .unwrap_or_else(|| key_of_line(text, span.start)),
            ),
            None => (None, String::new()),
        };
        ConfigErrors(vec![ConfigError {
            file: shown.clone(),
            line,
            key,
            message: tidy_message(e.message()),
        }])
    })?;
    // The text parsed, so it parses again, with spans.
    let locator = Locator::new(text).unwrap_or_default();
    let mut errors = Vec::new();
    let mut error = |path: &[Seg], key: Option<&str>, message: String| {
        let mut full: Vec<Seg> = path.to_vec();
        if let Some(key) = key {
            full.push(Seg::Key(key.to_string()));
        }
        errors.push(ConfigError {
            file: shown.clone(),
            line: locator.line_of(text, &full),
            key: render_path(&full),
            message,
        });
    };

    let mut exports = Vec::new();
    for (i, entry) in config.exports.iter().enumerate() {
        let at = [Seg::Key("export".into()), Seg::Index(i)];
        check_security(
            &mut error,
            &at,
            entry.protection,
            &entry.alg,
            &entry.key_file,
            &entry.key_desc,
            !entry.clients.is_empty(),
        );
        if entry.path.as_os_str().is_empty() {
            error(
                &at,
                Some("path"),
                "empty path; give the block device or file, e.g. /dev/sdb".into(),
            );
        }
        if entry.allow.len() > MAX_ALLOW {
            error(
                &at,
                Some("allow"),
                format!(
                    "{} entries; an export takes at most {MAX_ALLOW}",
                    entry.allow.len()
                ),
            );
        }
        for (j, rule) in entry.allow.iter().enumerate() {
            if entry.allow[..j]
                .iter()
                .any(|o| o.0.prefix() == rule.0.prefix())
            {
                error(
                    &at,
                    Some("allow"),
                    format!("{} is given twice; give each prefix once", rule.0.prefix()),
                );
            }
        }
        if entry.clients.len() > MAX_CLIENTS {
            error(
                &at,
                Some("client"),
                format!(
                    "{} clients; an export takes at most {MAX_CLIENTS}",
                    entry.clients.len()
                ),
            );
        }
        for (j, client) in entry.clients.iter().enumerate() {
            let mut cat = at.to_vec();
            cat.extend([Seg::Key("client".into()), Seg::Index(j)]);
            match (&client.key_file, &client.key_desc) {
                (Some(_), Some(_)) => error(
                    &cat,
                    Some("key_desc"),
                    "key_file and key_desc both give the client's key; give one".into(),
                ),
                (None, None) => error(
                    &cat,
                    Some("name"),
                    format!(
                        "client {} has no key; give key_file = PATH or key_desc = DESC",
                        client.name
                    ),
                ),
                (Some(path), None) if path.as_os_str().is_empty() => {
                    error(&cat, Some("key_file"), "empty path".into())
                }
                _ => {}
            }
            if entry.clients[..j].iter().any(|c| c.name == client.name) {
                error(
                    &cat,
                    Some("name"),
                    format!("client {} is given twice; give each name once", client.name),
                );
            }
        }
        match resolve(&entry.listen, entry.port) {
            Ok(addr) => {
                // Several exports may share an address and port if each
                // has a name of its own: the module picks one by the name
                // a local node asks for.
                let same = |e: &&DesiredExport| e.addr == addr;
                if let Some(first) = exports.iter().position(|e| same(&e)) {
                    let n = first + 1;
                    match &entry.name {
                        None => error(
                            &at,
                            Some("listen"),
                            format!(
                                "export #{n} already listens on {addr}; exports that share \
                                 an address and port need a name each: give this one a name"
                            ),
                        ),
                        Some(name) => {
                            if let Some(other) = exports
                                .iter()
                                .position(|e| same(&e) && e.entry.name.is_none())
                            {
                                error(
                                    &at,
                                    Some("listen"),
                                    format!(
                                        "export #{} already listens on {addr}, without a \
                                         name; exports that share an address and port need \
                                         a name each: give it one",
                                        other + 1
                                    ),
                                );
                            } else if let Some(other) = exports
                                .iter()
                                .position(|e| same(&e) && e.entry.name.as_ref() == Some(name))
                            {
                                error(
                                    &at,
                                    Some("name"),
                                    format!(
                                        "export #{} on {addr} has the name {name} already; \
                                         exports that share an address and port need names \
                                         of their own",
                                        other + 1
                                    ),
                                );
                            }
                        }
                    }
                }
                exports.push(DesiredExport {
                    line: locator.line_of(text, &at).unwrap_or(0),
                    addr,
                    device_path: entry.path.display().to_string(),
                    entry: entry.clone(),
                });
            }
            Err(msg) => error(&at, Some("listen"), format!("{}: {msg}", entry.listen)),
        }
    }
    for (i, entry) in config.exports.iter().enumerate() {
        let at = [Seg::Key("export".into()), Seg::Index(i)];
        if config.exports[..i].iter().any(|o| o.path == entry.path) {
            error(
                &at,
                Some("path"),
                format!(
                    "{} is exported twice; a block device or file is served by one export",
                    entry.path.display()
                ),
            );
        }
    }

    let mut devices: Vec<DesiredDevice> = Vec::new();
    for (i, entry) in config.devices.iter().enumerate() {
        let at = [Seg::Key("device".into()), Seg::Index(i)];
        check_security(
            &mut error,
            &at,
            entry.protection,
            &entry.alg,
            &entry.key_file,
            &entry.key_desc,
            false,
        );
        if let Some(index) = entry.index {
            if config.devices[..i].iter().any(|o| o.index == Some(index)) {
                error(
                    &at,
                    Some("index"),
                    format!("/dev/dst{index} is given to two devices"),
                );
            }
        }
        if let Some(id) = entry.client_id {
            if config.devices[..i].iter().any(|o| o.client_id == Some(id)) {
                error(
                    &at,
                    Some("client_id"),
                    format!("client_id {id:#018x} is given to two devices; give each its own"),
                );
            }
        }
        match resolve(&entry.remote, entry.port) {
            Ok(addr) => {
                let twin = devices
                    .iter()
                    .position(|d| d.addr == addr && d.entry.export_name == entry.export_name);
                if let Some(first) = twin {
                    error(
                        &at,
                        Some("remote"),
                        format!(
                            "device #{} already connects to {addr}{}; give each device of the \
                             same export node an export_name of its own",
                            first + 1,
                            entry
                                .export_name
                                .as_ref()
                                .map(|n| format!(" for export {n}"))
                                .unwrap_or_default()
                        ),
                    );
                }
                devices.push(DesiredDevice {
                    line: locator.line_of(text, &at).unwrap_or(0),
                    addr,
                    entry: entry.clone(),
                });
            }
            Err(msg) => error(&at, Some("remote"), format!("{}: {msg}", entry.remote)),
        }
    }
    errors.sort_by_key(|e| e.line);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Desired {
        file: file.to_path_buf(),
        module: config.module,
        exports,
        devices,
    })
}

/// The checks of the security options the command line makes (`cli.rs`),
/// naming keys instead of options.
fn check_security(
    error: &mut impl FnMut(&[Seg], Option<&str>, String),
    at: &[Seg],
    protection: Option<Protection>,
    alg: &Option<String>,
    key_file: &Option<PathBuf>,
    key_desc: &Option<String>,
    has_clients: bool,
) {
    if key_file.is_some() && key_desc.is_some() {
        error(
            at,
            Some("key_desc"),
            "key_file and key_desc both give the pre-shared key; give one of them".into(),
        );
    }
    if let Some(path) = key_file {
        if path.as_os_str().is_empty() {
            error(at, Some("key_file"), "empty path".into());
        }
    }
    if let Some(mode) = protection {
        if mode.needs_key() && key_file.is_none() && key_desc.is_none() && !has_clients {
            let or_clients = if at.first() == Some(&Seg::Key("export".into())) {
                ", or [[export.client]] entries with keys of their own"
            } else {
                ""
            };
            error(
                at,
                Some("protection"),
                format!(
                    "{} needs key_file = PATH or key_desc = DESC, the pre-shared key of both \
                     nodes{or_clients} (make one with: dstcfg genkey -f PATH)",
                    mode.name()
                ),
            );
        }
    }
    if alg.is_some() {
        match protection {
            Some(mode) if mode.needs_key() => {}
            Some(mode) => error(
                at,
                Some("alg"),
                format!(
                    "protection {} takes no alg; alg names the algorithm of hmac or aead",
                    mode.name()
                ),
            ),
            None => error(
                at,
                Some("alg"),
                "alg names the algorithm of protection hmac or aead; add protection".into(),
            ),
        }
    }
}

/// The 1-based line of byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key assigned on the line of byte `offset` (`loss_timeout = ...`),
/// for errors in a file that does not parse, whose key paths are unknown.
fn key_of_line(text: &str, offset: usize) -> String {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("");
    match line.split_once('=') {
        Some((key, _))
            if !key.trim().is_empty()
                && key
                    .trim()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
        {
            key.trim().to_string()
        }
        _ => String::new(),
    }
}

/// toml's messages, with serde's words for keys ("field") made the file's.
fn tidy_message(message: &str) -> String {
    message
        .trim_end()
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace('\n', "; ")
}

/// One step of a key path: a key, or the position in an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key.
    Key(String),
    /// 0-based position in an array (shown from 1).
    Index(usize),
}

/// `device #2: loss_timeout`, `export #1: client #2: name`, `module:
/// crypto_threads`; the position in a plain array (`allow`) is left to the
/// line number.
fn render_path(path: &[Seg]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for seg in path {
        match seg {
            Seg::Key(key) => parts.push(key.clone()),
            Seg::Index(i) => {
                if let Some(last) = parts.last_mut() {
                    if matches!(last.as_str(), "export" | "device" | "client") {
                        last.push_str(&format!(" #{}", i + 1));
                    }
                }
            }
        }
    }
    parts.join(": ")
}

/// The key paths of a parsed file with their spans: which key a byte
/// belongs to, and where a key is.
#[derive(Debug, Default)]
pub struct Locator {
    /// Every key and array element: its path, the span of its key (of the
    /// element itself for array elements) and of its value.
    items: Vec<(Vec<Seg>, Range<usize>, Range<usize>)>,
}

impl Locator {
    /// `None` if `text` is not valid TOML.
    pub fn new(text: &str) -> Option<Self> {
        let table = toml::de::DeTable::parse(text).ok()?;
        let mut locator = Locator::default();
        locator.walk_table(&[], table.get_ref());
        Some(locator)
    }

    fn walk_table(&mut self, path: &[Seg], table: &toml::de::DeTable) {
        for (key, value) in table.iter() {
            let mut here = path.to_vec();
            here.push(Seg::Key(key.get_ref().to_string()));
            self.items.push((here.clone(), key.span(), value.span()));
            self.walk_value(&here, value.get_ref());
        }
    }

    fn walk_value(&mut self, path: &[Seg], value: &toml::de::DeValue) {
        match value {
            toml::de::DeValue::Table(table) => self.walk_table(path, table),
            toml::de::DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    let mut here = path.to_vec();
                    here.push(Seg::Index(i));
                    self.items.push((here.clone(), item.span(), item.span()));
                    self.walk_value(&here, item.get_ref());
                }
            }
            _ => {}
        }
    }

    /// The path of the deepest key whose key or value holds byte `offset`,
    /// rendered.
    pub fn key_at(&self, offset: usize) -> String {
        let holds = |r: &Range<usize>| r.start <= offset && offset < r.end.max(r.start + 1);
        self.items
            .iter()
            .filter(|(_, key, value)| holds(key) || holds(value))
            .max_by_key(|(path, _, _)| path.len())
            .map(|(path, _, _)| render_path(path))
            .unwrap_or_default()
    }

    /// The line of `path`'s key (of the element, for an array element); of
    /// the nearest enclosing entry if the key is not in the file.
    pub fn line_of(&self, text: &str, path: &[Seg]) -> Option<usize> {
        (0..=path.len()).rev().find_map(|n| {
            self.items
                .iter()
                .find(|(p, _, _)| p.as_slice() == &path[..n])
                .map(|(_, key, _)| line_of(text, key.start))
        })
    }
}

/// A value that may be written as an integer or as a string.
enum Scalar {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                i64::try_from(v)
                    .map(Scalar::Int)
                    .map_err(|_| E::custom("too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(ScalarVisitor)
    }
}

/// Reads a value with `check`, as `Some`, with `check`'s message as the
/// error.
fn with<'de, D, T>(
    d: D,
    check: impl FnOnce(Scalar) -> Result<T, String>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = Scalar::deserialize(d)?;
    check(value).map(Some).map_err(de::Error::custom)
}

/// An integer within `range`.
fn int_in(value: Scalar, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    let out_of_range = |shown: &dyn fmt::Display| {
        format!(
            "{shown} is out of range; expected {}..{}",
            range.start(),
            range.end()
        )
    };
    match value {
        Scalar::Int(n) => match u32::try_from(n) {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(out_of_range(&n)),
        },
        Scalar::Str(s) => Err(format!(
            "expected a number, not the string \"{s}\" (write it without quotes)"
        )),
    }
}

/// A string checked by `parse`.
fn text_with<T>(value: Scalar, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, String> {
    match value {
        Scalar::Str(s) => parse(&s),
        Scalar::Int(n) => Err(format!("expected a string, not the number {n} (quote it)")),
    }
}

/// A time: a duration string as the command line takes it (`"30s"`,
/// `"5m"`, `"1h30m"`, `"250ms"`), or an integer, read as a number alone
/// on the command line (milliseconds; seconds for `rekey_interval`);
/// `parse` is the option's own parser, with its range and its words
/// (`"infinite"` for `loss_timeout`).
fn duration<T>(value: Scalar, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, String> {
    match value {
        Scalar::Str(s) => parse(&s),
        Scalar::Int(n) if n < 0 => Err(format!("{n} is negative")),
        Scalar::Int(n) => parse(&n.to_string()),
    }
}

fn port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    with(d, |v| int_in(v, 1..=u32::from(u16::MAX)).map(|p| p as u16))
}

fn name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    with(d, |v| text_with(v, parse_name))
}

fn required_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    name(d).map(|n| n.unwrap_or_default())
}

fn key_desc<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    with(d, |v| text_with(v, parse_key_desc))
}

fn alg<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    with(d, |v| text_with(v, parse_alg))
}

fn protection<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Protection>, D::Error> {
    with(d, |v| {
        text_with(v, |s| {
            Protection::from_str(s, false)
                .map_err(|_| format!("\"{s}\" is not a protection; use none, crc32c, hmac or aead"))
        })
    })
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    with(d, |v| match v {
        Scalar::Str(s) => parse_size(&s),
        Scalar::Int(n) if n >= 1 => Ok(n as u64),
        Scalar::Int(n) => Err(format!("{n}: the size must be at least 1 byte")),
    })
}

fn max_io_pages<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, 1..=MAX_IO_PAGES))
}

fn index<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, 0..=MAX_INDEX))
}

fn queues<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, 1..=MAX_QUEUES))
}

fn queue_depth<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, 1..=MAX_QUEUE_DEPTH))
}

fn max_resends<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, MAX_RESENDS))
}

fn crypto_threads<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| int_in(v, 0..=MAX_CRYPTO_THREADS))
}

fn client_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    with(d, |v| match v {
        Scalar::Str(s) => parse_client_id(&s),
        Scalar::Int(n) => parse_client_id(&n.to_string()),
    })
}

fn rekey_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| match v {
        Scalar::Str(s) => parse_rekey_after(&s),
        Scalar::Int(n) => parse_rekey_after(&n.to_string()),
    })
}

fn rekey_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_rekey_interval))
}

fn req_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_req_timeout))
}

fn reconnect_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_reconnect_delay))
}

fn ping_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_ping_interval))
}

fn ping_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_ping_timeout))
}

fn loss_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    with(d, |v| duration(v, parse_loss_timeout))
}

/// A time in milliseconds as the file writes it, in the largest unit that
/// holds it whole (`"30s"`, `"90s"`, `"250ms"`, as the help gives ranges);
/// `"infinite"` for [`LOSS_TIMEOUT_INFINITE`] when `infinite_ok`.
pub fn format_ms(ms: u32, infinite_ok: bool) -> String {
    if infinite_ok && ms == LOSS_TIMEOUT_INFINITE {
        return "infinite".into();
    }
    ms_text(ms.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as the file `dst.toml`, resolving IP literals only.
    fn parse_text(text: &str) -> Result<Desired, ConfigErrors> {
        parse(text, Path::new("dst.toml"), &parse_remote)
    }

    /// The errors of `text`, one string each.
    fn errors(text: &str) -> Vec<String> {
        match parse_text(text) {
            Ok(d) => panic!("parsed: {d:?}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// The one error of `text`.
    fn error(text: &str) -> String {
        let all = errors(text);
        assert_eq!(all.len(), 1, "{all:?}");
        all[0].clone()
    }

    #[test]
    fn the_example_file_parses() {
        let text = include_str!("../../../Documentation/examples/dst.toml");
        let d = parse_text(text).unwrap();
        assert_eq!(
            d.module,
            ModuleSection {
                crypto_threads: Some(2),
                rekey_after: Some(64 << 10),
                rekey_interval: Some(3600),
            }
        );
        assert_eq!(d.exports.len(), 1);
        let e = &d.exports[0];
        assert_eq!(e.addr, "192.0.2.1:1025".parse().unwrap());
        assert_eq!(e.entry.protection, Some(Protection::Aead));
        assert_eq!(e.entry.allow.len(), 2);
        assert!(e.entry.allow[1].0.read_only);
        assert_eq!(e.entry.clients[0].name, "web1");
        assert_eq!(
            e.line,
            text.lines().position(|l| l == "[[export]]").unwrap() + 1
        );
        let dev = &d.devices[0];
        assert_eq!(dev.addr, "198.51.100.1:1025".parse().unwrap());
        assert_eq!(dev.entry.client_id, Some(0x5e1f_0a1c_0de0_0001));
        assert_eq!(dev.entry.loss_timeout, Some(60_000));
        assert_eq!(dev.entry.ping_interval, Some(5_000));
        assert_eq!(dev.entry.index, Some(0));
    }

    #[test]
    fn values_in_every_form() {
        let d = parse_text(
            "[module]\nrekey_after = 17179869184\nrekey_interval = 600\n\
             [[export]]\nlisten = \"[2001:db8::1]:2000\"\npath = \"/dev/sdb\"\nsize = 4096\n\
             [[device]]\nremote = \"192.0.2.1\"\nport = 2000\nreq_timeout = 30000\n\
             reconnect_delay = \"250ms\"\nping_interval = 0\nping_timeout = \"1m30s\"\n\
             loss_timeout = \"infinite\"\nclient_id = 4660\n",
        )
        .unwrap();
        assert_eq!(d.module.rekey_after, Some(16 << 10));
        assert_eq!(d.module.rekey_interval, Some(600));
        assert_eq!(d.exports[0].addr, "[2001:db8::1]:2000".parse().unwrap());
        assert_eq!(d.exports[0].entry.size, Some(4096));
        let e = &d.devices[0].entry;
        assert_eq!(d.devices[0].addr, "192.0.2.1:2000".parse().unwrap());
        assert_eq!(e.req_timeout, Some(30_000));
        assert_eq!(e.reconnect_delay, Some(250));
        assert_eq!(e.ping_interval, Some(0));
        assert_eq!(e.ping_timeout, Some(90_000));
        assert_eq!(e.loss_timeout, Some(LOSS_TIMEOUT_INFINITE));
        assert_eq!(e.client_id, Some(0x1234));
        // Left out: the defaults of a new device, for the comparison.
        assert_eq!(e.wanted_settings().max_resends, Some(10));
        assert_eq!(
            e.wanted_settings().loss_timeout_ms,
            Some(LOSS_TIMEOUT_INFINITE)
        );
        // An empty file is a valid one: nothing to manage.
        assert_eq!(parse_text("").unwrap().exports, []);
    }

    #[test]
    fn errors_name_the_line_and_the_key() {
        // Unknown keys, anywhere.
        let e = error("[[device]]\nremote = \"127.0.0.1\"\nloss_timeot = \"1m\"\n");
        assert!(
            e.starts_with(
                "dst.toml:3: device #1: loss_timeot: unknown key `loss_timeot`, expected one of"
            ),
            "{e}"
        );
        let e = error("[module]\ncrypto_threads = 1\n\n[modul]\n");
        assert!(
            e.starts_with("dst.toml:4: modul: unknown key `modul`"),
            "{e}"
        );
        let e = error(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\n[[export.client]]\n\
             name = \"web1\"\nkey = \"/k\"\n",
        );
        assert!(
            e.starts_with("dst.toml:6: export #1: client #1: key: unknown key `key`"),
            "{e}"
        );
        // Values out of range or of the wrong kind, with the option's checks.
        let dev = |body: &str| format!("[[device]]\nremote = \"127.0.0.1\"\n{body}\n");
        for (body, message) in [
            (
                "loss_timeout = \"5ms\"",
                "loss_timeout: 5 ms is out of range; expected 100..86400000 ms (100ms to 24h); or \
                 infinite",
            ),
            (
                "req_timeout = \"infinite\"",
                "req_timeout: expected a duration such as 30s, 5m, 1h30m or 250ms, or a number of \
                 milliseconds",
            ),
            (
                "ping_timeout = \"soon\"",
                "ping_timeout: expected a duration such as 30s",
            ),
            (
                "ping_interval = 50",
                "ping_interval: 50 ms is out of range; expected 0 or 100..3600000 ms (100ms to 1h)",
            ),
            ("queues = 17", "queues: 17 is out of range; expected 1..16"),
            (
                "queues = \"4\"",
                "queues: expected a number, not the string \"4\"",
            ),
            ("index = -1", "index: -1 is out of range; expected 0..1023"),
            ("client_id = 0", "client_id: 0 is not a client id"),
            (
                "client_name = \"two words\"",
                "client_name: ' ' is not allowed",
            ),
            (
                "protection = \"rot13\"",
                "protection: \"rot13\" is not a protection",
            ),
            ("alg = \"md5\"", "alg: not allowed: use one of"),
            (
                "export_name = 7",
                "export_name: expected a string, not the number 7",
            ),
            (
                "max_resends = 1001",
                "max_resends: 1001 is out of range; expected 0..1000",
            ),
        ] {
            let e = error(&dev(body));
            assert!(e.starts_with("dst.toml:3: device #1: "), "{body}: {e}");
            assert!(e.contains(message), "{body}: {e}");
        }
        let e = error(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nallow = [\"10.0.0.1/24\"]\n",
        );
        assert!(
            e.starts_with("dst.toml:4: export #1: allow: 10.0.0.1/24 has host bits set"),
            "{e}"
        );
        let e = error("[module]\nrekey_after = \"1000K\"\n");
        assert!(
            e.starts_with("dst.toml:2: module: rekey_after: 1000K is not a whole number of MiB"),
            "{e}"
        );
        // A key missing: the entry's line.
        let e = error("\n[[export]]\nlisten = \"127.0.0.1\"\n");
        assert!(
            e.starts_with("dst.toml:2: export #1: missing key `path`"),
            "{e}"
        );
        // Syntax: the line, and the key it assigns (the table is unknown).
        assert_eq!(
            error(&dev("remote = \"127.0.0.2\"")),
            "dst.toml:3: remote: duplicate key"
        );
        let e = error("[[device]]\nremote = \"127.0.0.1\nindex = 1\n");
        assert!(e.starts_with("dst.toml:2: "), "{e}");
        let e = error("[[device]\n");
        assert!(e.starts_with("dst.toml:1: "), "{e}");
    }

    #[test]
    fn entries_are_checked_against_each_other() {
        let all = errors(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nprotection = \"aead\"\n\
             [[export]]\nlisten = \"127.0.0.1:1025\"\npath = \"/dev/ram0\"\nalg = \"gcm(aes)\"\n\
             [[device]]\nremote = \"127.0.0.1\"\nkey_file = \"/k\"\nkey_desc = \"d\"\nindex = 2\n\
             [[device]]\nremote = \"127.0.0.1\"\nindex = 2\n\
             [[device]]\nremote = \"127.0.0.1\"\nexport_name = \"b\"\nprotection = \"crc32c\"\nalg = \"gcm(aes)\"\n",
        );
        let expected = [
            "dst.toml:4: export #1: protection: aead needs key_file = PATH or key_desc = DESC, \
             the pre-shared key of both nodes, or [[export.client]] entries with keys of their own",
            "dst.toml:6: export #2: listen: export #1 already listens on 127.0.0.1:1025",
            "dst.toml:7: export #2: path: /dev/ram0 is exported twice",
            "dst.toml:8: export #2: alg: alg names the algorithm of protection hmac or aead",
            "dst.toml:12: device #1: key_desc: key_file and key_desc both give the pre-shared key",
            "dst.toml:15: device #2: remote: device #1 already connects to 127.0.0.1:1025; give \
             each device of the same export node an export_name of its own",
            "dst.toml:16: device #2: index: /dev/dst2 is given to two devices",
            "dst.toml:21: device #3: alg: protection crc32c takes no alg",
        ];
        assert_eq!(all.len(), expected.len(), "{all:#?}");
        for (got, want) in all.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got}\nwant {want}");
        }
        // Clients: a key each, names once; their keys satisfy aead.
        let all = errors(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nprotection = \"aead\"\n\
             [[export.client]]\nname = \"a\"\nkey_file = \"/a\"\n\
             [[export.client]]\nname = \"a\"\nkey_desc = \"dst:a\"\n\
             [[export.client]]\nname = \"c\"\n",
        );
        assert_eq!(
            all,
            [
                "dst.toml:9: export #1: client #2: name: client a is given twice; give each name once",
                "dst.toml:12: export #1: client #3: name: client c has no key; give key_file = PATH or key_desc = DESC",
            ]
        );
        // Exports may share an address and port, each with a name of its
        // own.
        let d = parse_text(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nname = \"alpha\"\n\
             [[export]]\nlisten = \"127.0.0.1:1025\"\npath = \"/dev/ram1\"\nname = \"beta\"\n",
        )
        .unwrap();
        assert_eq!(d.exports.len(), 2);
        assert_eq!(d.exports[1].label(), "export beta on 127.0.0.1:1025");
        let all = errors(
            "[[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram0\"\nname = \"alpha\"\n\
             [[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram1\"\nname = \"alpha\"\n\
             [[export]]\nlisten = \"127.0.0.1\"\npath = \"/dev/ram2\"\n\
             [[export]]\nlisten = \"127.0.0.2\"\npath = \"/dev/ram3\"\n\
             [[export]]\nlisten = \"127.0.0.2\"\npath = \"/dev/ram4\"\nname = \"x\"\n",
        );
        let expected = [
            "dst.toml:8: export #2: name: export #1 on 127.0.0.1:1025 has the name alpha already",
            "dst.toml:10: export #3: listen: export #1 already listens on 127.0.0.1:1025; exports \
             that share an address and port need a name each: give this one a name",
            "dst.toml:16: export #5: listen: export #4 already listens on 127.0.0.2:1025, without \
             a name",
        ];
        assert_eq!(all.len(), expected.len(), "{all:#?}");
        for (got, want) in all.iter().zip(expected) {
            assert!(got.starts_with(want), "got {got}\nwant {want}");
        }
        // An address that does not resolve: the key that gave it.
        let e = error("[[device]]\nremote = \"300.1.1.1\"\n");
        assert_eq!(
            e,
            "dst.toml:2: device #1: remote: 300.1.1.1: not a valid IPv4 address"
        );
    }

    #[test]
    fn times_as_the_file_writes_them() {
        assert_eq!(format_ms(60_000, true), "1m");
        assert_eq!(format_ms(90_000, false), "90s");
        assert_eq!(format_ms(250, false), "250ms");
        assert_eq!(format_ms(0, false), "0");
        assert_eq!(format_ms(u32::MAX, true), "infinite");
        for ms in [0u32, 1, 999, 1000, 61_001, 3_600_000, 86_400_000, u32::MAX] {
            assert_eq!(
                crate::cli::parse_duration_ms(&format_ms(ms, false), 1).unwrap(),
                u64::from(ms),
                "{ms}"
            );
        }
    }
}
