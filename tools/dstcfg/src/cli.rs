//! Command line: `dstcfg export -r ADDR -f /dev/sdb`, `dstcfg local -r
//! ADDR`, `dstcfg set -d dst0 --loss-timeout 30s`, `dstcfg list`, ... and
//! the older forms `dstcfg -r ADDR -a local`, `dstcfg -a list`.
//!
//! `compat.rs` turns the older forms into subcommands; clap parses them
//! into [`Cli`] (defined in `args.rs`, which `build.rs` shares for the man
//! page and the completions); [`Cli::into_command`] then checks what clap
//! cannot (required options with a word on what they are for, options
//! that exclude each other) and resolves the address, giving a
//! [`Command`]. An option of another subcommand gets a message that says
//! where it belongs. Every error here is a usage error (a `clap::Error`,
//! exit status 2).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

pub use crate::args::*;
use crate::compat::{self, Form};
use crate::message::{DeviceSettings, ModuleSettings};

/// The security options of an export or a device, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    /// `--protection`; none: not sent (the module's default, none).
    pub protection: Option<Protection>,
    /// `--alg`; none: not sent (the module's default for the mode).
    pub alg: Option<String>,
    /// `--key-file`: read, checked and sent when the action runs.
    pub key_file: Option<PathBuf>,
    /// `--key-desc`: the description of a key in the kernel keyring, sent
    /// as is (the module looks the key up; dstcfg never reads it).
    pub key_desc: Option<String>,
}

/// A validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `status [--json]`.
    Status {
        /// Print JSON instead of text.
        json: bool,
    },
    /// `export -r ADDR -f PATH [-n NAME] [--read-only] [--shared] [--size SIZE]
    /// [--max-io-pages N] [SECURITY] [--allow PREFIX]... [--client
    /// NAME=KEY]...`.
    Export {
        /// Address to listen on.
        remote: SocketAddr,
        /// Block device to serve.
        file: PathBuf,
        /// `-n`: the export's identity (none: not sent, the module's
        /// default `<host name>:<device name>`).
        name: Option<String>,
        /// Serve read-only.
        read_only: bool,
        /// `--shared`: any number of local nodes may write (else one
        /// identity at a time).
        shared: bool,
        /// Serve only the first `size` bytes.
        size: Option<u64>,
        /// Largest request in 4 KiB pages.
        max_io_pages: Option<u32>,
        /// Protection, algorithm, key.
        security: Security,
        /// Allow-list (empty: not sent, any client).
        allow: Vec<AllowRule>,
        /// Clients with keys of their own (empty: not sent; every client
        /// uses the export's key, if any).
        clients: Vec<ClientRule>,
    },
    /// `unexport -r ADDR [-n NAME]`.
    Unexport {
        /// Address the export listens on.
        remote: SocketAddr,
        /// `-n`: which of several exports there (none: not sent, the only
        /// one there).
        name: Option<String>,
    },
    /// `release -r ADDR`: take the export's write access from its holder.
    Release {
        /// Address the export listens on.
        remote: SocketAddr,
        /// Which of several exports of the address.
        name: Option<String>,
    },
    /// `resize -r ADDR [--size SIZE]`.
    Resize {
        /// Address the export listens on.
        remote: SocketAddr,
        /// The new size and cap (none: what the device holds now).
        size: Option<u64>,
    },
    /// `local -r ADDR [-n NAME] [--client-name NAME] [--read-only] [-i N] [--max-io-pages
    /// N] [--queue-depth N] [--queues N] [--client-id ID] [--wait[=TIME]]
    /// [--duplicate] [SECURITY] [SETTINGS]`.
    Local {
        /// Export node to connect to.
        remote: SocketAddr,
        /// `-n`: the identity of the export to accept (none: not sent, the
        /// module pins the first one it reaches).
        export_name: Option<String>,
        /// `--client-name`: this node's identity (none: not sent, the
        /// module's default, the host name).
        client_name: Option<String>,
        /// `--read-only`: ask for reads only.
        read_only: bool,
        /// N of `/dev/dstN`.
        index: Option<u32>,
        /// Largest request in 4 KiB pages.
        max_io_pages: Option<u32>,
        /// Requests in flight.
        queue_depth: Option<u32>,
        /// Hardware queues (connections).
        queues: Option<u32>,
        /// The identity the export fences by (none: the module picks one).
        client_id: Option<u64>,
        /// Timeouts and resend limit given.
        settings: DeviceSettings,
        /// Protection, algorithm, key.
        security: Security,
        /// `--wait`: keep trying while the export node is not there (none:
        /// try once).
        wait: Option<Wait>,
        /// `--duplicate`: create a device even if one for this export
        /// exists.
        duplicate: bool,
    },
    /// `set -d DEV SETTINGS`.
    Set {
        /// N of `/dev/dstN`.
        index: u32,
        /// What to change (at least one setting).
        settings: DeviceSettings,
    },
    /// `set [--crypto-threads N] [--rekey-after SIZE] [--rekey-interval
    /// TIME]`: module-wide settings.
    Config {
        /// What to change (at least one setting).
        settings: ModuleSettings,
    },
    /// `delete -d DEV [--force]`.
    Delete {
        /// N of `/dev/dstN`.
        index: u32,
        /// Delete it even if it is open.
        force: bool,
    },
    /// `list [--json]`.
    List {
        /// Print JSON instead of a table.
        json: bool,
    },
    /// `monitor [--json] [--now] [--count N]`.
    Monitor {
        /// One JSON object per line instead of text.
        json: bool,
        /// First one line per device and export as it is.
        now: bool,
        /// Stop after this many events.
        count: Option<u64>,
    },
    /// `check -d DEV`.
    Check {
        /// N of `/dev/dstN`.
        index: u32,
    },
    /// `genkey -f PATH`.
    Genkey {
        /// The key file to create.
        file: PathBuf,
    },
    /// `apply [-f FILE] [--dry-run] [--wait[=TIME]]`.
    Apply {
        /// The configuration file.
        file: PathBuf,
        /// Print the plan only.
        dry_run: bool,
        /// `--wait`: keep trying the devices whose export node is not up
        /// yet.
        wait: Option<Wait>,
    },
    /// `save [-f FILE|-] [--force]`.
    Save {
        /// Where to write (`-`: standard output).
        file: PathBuf,
        /// Replace an existing file.
        force: bool,
    },
    /// `discover -r ADDR [--json]`.
    Discover {
        /// The export address to ask.
        remote: SocketAddr,
        /// Print a JSON list instead of one name per line.
        json: bool,
    },
    /// `down [-f FILE] [--force] [--dry-run]`.
    Down {
        /// The configuration file.
        file: PathBuf,
        /// Delete devices even if open.
        force: bool,
        /// Print what would be removed only.
        dry_run: bool,
    },
}

impl Command {
    /// The subcommand's name.
    pub fn action_name(&self) -> &'static str {
        match self {
            Command::Status { .. } => "status",
            Command::Export { .. } => "export",
            Command::Unexport { .. } => "unexport",
            Command::Release { .. } => "release",
            Command::Resize { .. } => "resize",
            Command::Local { .. } => "local",
            Command::Delete { .. } => "delete",
            Command::Set { .. } | Command::Config { .. } => "set",
            Command::List { .. } => "list",
            Command::Monitor { .. } => "monitor",
            Command::Check { .. } => "check",
            Command::Genkey { .. } => "genkey",
            Command::Apply { .. } => "apply",
            Command::Save { .. } => "save",
            Command::Down { .. } => "down",
            Command::Discover { .. } => "discover",
        }
    }
}

/// Parses the process's arguments; `Err` is a usage error.
pub fn parse() -> Result<Command, clap::Error> {
    parse_from(std::env::args_os())
}

/// Parses `args` (the first is the program name), in either form.
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = Cli::command();
    let translated = compat::translate(&cmd, args.into_iter().map(Into::into).collect())?;
    let form = translated.form;
    let matches = cmd
        .try_get_matches_from_mut(&translated.args)
        .map_err(|e| explain_misplaced(e, &translated.args, form))?;
    let cli = Cli::from_arg_matches(&matches)?;
    cli.into_command(form)
}

/// The subcommand `name` of the clap definition.
fn subcommand(name: &str) -> clap::Command {
    let mut cli = Cli::command();
    cli.build();
    cli.find_subcommand(name)
        .cloned()
        .unwrap_or_else(Cli::command)
}

/// The name of a subcommand as the user gave it: `-a local` or `local`.
fn label(name: &str, form: Form) -> String {
    match form {
        Form::DashA => format!("-a {name}"),
        Form::Subcommand => name.to_string(),
    }
}

/// "export", "export and local", "a, b and c" (each as [`label`] says).
fn action_list(names: &[&str], form: Form) -> String {
    let names: Vec<String> = names.iter().map(|n| label(n, form)).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// How an option is named in messages: by its short form if it has one
/// (`-r`, `-f`, `-n`), else by its long one (`--json`).
fn flag_name(arg: &clap::Arg) -> String {
    match (arg.get_short(), arg.get_long()) {
        (Some(s), _) => format!("-{s}"),
        (None, Some(l)) => format!("--{l}"),
        (None, None) => arg.get_id().to_string(),
    }
}

/// Which subcommands have the option `given` (`-f`, `--file`, `--size=1G`):
/// the option's name for messages and the subcommands' names.
fn owners(given: &str) -> Option<(String, Vec<&'static str>)> {
    let given = given.split_once('=').map_or(given, |(flag, _)| flag);
    let matches = |arg: &clap::Arg| match given.strip_prefix("--") {
        Some(long) => arg.get_long() == Some(long),
        // `-r192.0.2.1`: the first letter names the option.
        None => {
            let short = given.strip_prefix('-').and_then(|s| s.chars().next());
            short.is_some() && short == arg.get_short()
        }
    };
    let cli = Cli::command();
    let mut flag = None;
    let mut names = Vec::new();
    for (sub, name) in cli.get_subcommands().zip(ACTIONS) {
        if let Some(arg) = sub.get_arguments().find(|a| matches(a)) {
            flag.get_or_insert_with(|| flag_name(arg));
            names.push(name);
        }
    }
    flag.map(|f| (f, names))
}

/// Turns clap's "unexpected argument" for an option of another subcommand
/// into one that says where it belongs; other errors pass unchanged.
fn explain_misplaced(err: clap::Error, args: &[std::ffi::OsString], form: Form) -> clap::Error {
    if err.kind() != ErrorKind::UnknownArgument {
        return err;
    }
    let Some(ContextValue::String(given)) = err.get(ContextKind::InvalidArg) else {
        return err;
    };
    let Some(name) = args.get(1).and_then(|a| a.to_str()) else {
        return err;
    };
    // `--wait 5m`: an optional value needs the `=`.
    let after_wait = args
        .windows(2)
        .any(|w| w[0] == "--wait" && w[1].to_str() == Some(given.as_str()));
    if after_wait && !given.starts_with('-') {
        return subcommand(name).error(
            ErrorKind::UnknownArgument,
            format!(
                "--wait takes its time after '=': --wait={given} (--wait alone: until interrupted)"
            ),
        );
    }
    let Some((flag, names)) = owners(given) else {
        return err;
    };
    let why = why_not(&flag, name)
        .map(str::to_string)
        .unwrap_or_else(|| format!("it only applies to {}", action_list(&names, form)));
    subcommand(name).error(
        ErrorKind::ArgumentConflict,
        format!("{flag} cannot be used with {}; {why}", label(name, form)),
    )
}

/// Why `flag` does not go with the subcommand `action`, when there is more
/// to say than which subcommands it applies to.
fn why_not(flag: &str, action: &str) -> Option<&'static str> {
    Some(match (flag, action) {
        ("-f", "local") => "the device comes from the export node; drop -f",
        ("-f", "unexport" | "release") => "the export is found by its address; drop -f",
        ("-r" | "-p", "status" | "list" | "monitor" | "check") => "it only asks the local module",
        ("-r" | "-p", "genkey") => {
            "genkey only writes a key file; copy it to the other node yourself"
        }
        ("-r" | "-p", "delete" | "set") => "the device is found by -d DEV alone",
        ("-r" | "-p" | "-d", "apply" | "save" | "down") => {
            "the exports and devices are those of the configuration file -f FILE"
        }
        ("-i", "delete" | "set" | "check") => "give the device with -d DEV",
        ("--max-io-pages" | "--queue-depth" | "--queues", "set") => {
            "it is fixed when the device is created; set changes the timeouts and \
             --max-resends"
        }
        ("--protection" | "--alg" | "--key-file" | "--key-desc", "set") => {
            "security is fixed when the export or the device is created"
        }
        ("--allow", "local") => "the allow-list belongs to the export; give it to export",
        ("--client", "local") => {
            "it gives a client a key of its own on the export; give it to export there, and \
             this node's identity with --client-name NAME and that key with --key-file or \
             --key-desc"
        }
        ("--client", "set") => "security is fixed when the export is created",
        ("--queues", "export") => "the local node chooses its queues; an export serves any number",
        ("--client-id", "set") => {
            "it is fixed when the device is created; give it to local, the same every time \
             the device is created"
        }
        ("--client-id", "export") => {
            "it identifies a device of a local node; give it to local there (the export \
             fences by the id each device sends)"
        }
        ("-n" | "--client-name", "set") => {
            "identities are fixed when the export or the device is created"
        }
        ("--shared", "local") => {
            "an export is shared or not when it is made; give it to export on the export node \
             (a device that must not write asks for --read-only)"
        }
        ("--read-only" | "--shared", "set") => {
            "it is fixed when the export or the device is created"
        }
        ("--read-only", "release") => {
            "release takes the write access from its holder; a node that only reads attaches \
             with local --read-only and needs no release"
        }
        ("--client-name", "export") => {
            "it names a local node; give it to local there (an export's own identity is \
             -n NAME)"
        }
        ("--crypto-threads", _) => {
            "it is a module-wide setting of its own: dstcfg set --crypto-threads N"
        }
        ("--rekey-after", _) => {
            "it is a module-wide setting of its own: dstcfg set --rekey-after SIZE"
        }
        ("--rekey-interval", _) => {
            "it is a module-wide setting of its own: dstcfg set --rekey-interval TIME"
        }
        ("-d", "local") => "choose the index of the new device with -i N",
        ("--duplicate", _) => "it only applies to local",
        _ => return None,
    })
}

/// What `-f` of apply, save and down is for (never missing: it has a
/// default).
const CONFIG_FILE: &str = "the configuration file";

/// The options of [`DeviceSettings`], as `set` lists them.
const SETTING_FLAGS: &str = "--req-timeout, --max-resends, --reconnect-delay, --ping-interval, \
                             --ping-timeout or --loss-timeout";

/// The subcommand being validated, for its messages.
struct Ctx {
    /// Its name.
    name: &'static str,
    /// How it was given.
    form: Form,
}

impl Ctx {
    /// A usage error of this subcommand (with its usage line).
    fn err(&self, kind: ErrorKind, msg: impl std::fmt::Display) -> clap::Error {
        subcommand(self.name).error(kind, msg)
    }

    /// `-a local` or `local`.
    fn label(&self) -> String {
        label(self.name, self.form)
    }

    /// `-r ADDR` resolved; `what` says what it is for if missing.
    fn remote(&self, address: &AddressArgs, what: &str) -> Result<SocketAddr, clap::Error> {
        let Some(remote) = address.remote.as_deref() else {
            return Err(self.err(
                ErrorKind::MissingRequiredArgument,
                format!("{} needs -r ADDR, {what}", self.label()),
            ));
        };
        parse_remote(remote, address.port)
            .map_err(|msg| self.err(ErrorKind::ValueValidation, format!("-r {remote}: {msg}")))
    }

    /// `-d DEV`; `what` says what it is for if missing.
    fn device(&self, device: Option<u32>, what: &str) -> Result<u32, clap::Error> {
        device.ok_or_else(|| {
            self.err(
                ErrorKind::MissingRequiredArgument,
                format!(
                    "{} needs -d DEV, {what} (dstN, /dev/dstN or N; see dstcfg list)",
                    self.label()
                ),
            )
        })
    }

    /// A `-f PATH` that must be given and not empty.
    fn file(&self, file: Option<PathBuf>, what: &str) -> Result<PathBuf, clap::Error> {
        let Some(file) = file else {
            return Err(self.err(
                ErrorKind::MissingRequiredArgument,
                format!("{} needs -f PATH, {what}", self.label()),
            ));
        };
        if file.as_os_str().is_empty() {
            return Err(self.err(ErrorKind::ValueValidation, "-f: empty path"));
        }
        Ok(file)
    }

    /// The security options, checked against each other; `clients`: an
    /// export with `--client` entries, whose keys satisfy hmac and aead.
    fn security(&self, args: SecurityArgs, clients: bool) -> Result<Security, clap::Error> {
        let security = Security {
            protection: args.protection,
            alg: args.alg,
            key_file: args.key_file,
            key_desc: args.key_desc,
        };
        if security.key_file.is_some() && security.key_desc.is_some() {
            return Err(self.err(
                ErrorKind::ArgumentConflict,
                "--key-file and --key-desc both give the pre-shared key; give one of them: \
                 --key-file PATH reads it from a file, --key-desc DESC has the kernel take it \
                 from the keyring",
            ));
        }
        if let Some(mode) = security.protection {
            if mode.needs_key()
                && security.key_file.is_none()
                && security.key_desc.is_none()
                && !clients
            {
                let or_clients = if self.name == "export" {
                    ", or --client NAME=PATH (or NAME=@DESC) for each client with a key of its \
                     own"
                } else {
                    ""
                };
                return Err(self.err(
                    ErrorKind::MissingRequiredArgument,
                    format!(
                        "--protection {} needs --key-file PATH or --key-desc DESC, the \
                         pre-shared key of both nodes{or_clients} (make one with: dstcfg \
                         genkey -f PATH)",
                        mode.name()
                    ),
                ));
            }
        }
        if security.alg.is_some() {
            match security.protection {
                Some(mode) if mode.needs_key() => {}
                Some(mode) => {
                    return Err(self.err(
                        ErrorKind::ArgumentConflict,
                        format!(
                            "--protection {} takes no --alg; --alg names the algorithm of hmac \
                             or aead",
                            mode.name()
                        ),
                    ))
                }
                None => {
                    return Err(self.err(
                        ErrorKind::MissingRequiredArgument,
                        "--alg names the algorithm of --protection hmac or aead; add one of them",
                    ))
                }
            }
        }
        if let Some(path) = &security.key_file {
            if path.as_os_str().is_empty() {
                return Err(self.err(
                    ErrorKind::ValueValidation,
                    format!("{}: --key-file: empty path", self.label()),
                ));
            }
        }
        Ok(security)
    }

    /// `export`'s allow-list and clients, checked.
    fn export_lists(&self, allow: &[AllowRule], clients: &[ClientRule]) -> Result<(), clap::Error> {
        if allow.len() > MAX_ALLOW {
            return Err(self.err(
                ErrorKind::TooManyValues,
                format!(
                    "--allow given {} times; an export takes at most {MAX_ALLOW} entries",
                    allow.len()
                ),
            ));
        }
        for (i, rule) in allow.iter().enumerate() {
            if allow[..i].iter().any(|o| o.prefix() == rule.prefix()) {
                return Err(self.err(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "--allow {} is given twice; give each prefix once",
                        rule.prefix()
                    ),
                ));
            }
        }
        check_clients(clients).map_err(|msg| self.err(msg.0, msg.1))
    }

    /// `set`: one device's settings (`-d`), or module-wide ones.
    fn set(&self, args: SetArgs) -> Result<Command, clap::Error> {
        let settings = device_settings(args.settings);
        let module = ModuleSettings {
            crypto_threads: args.crypto_threads,
            rekey_mib: args.rekey_after,
            rekey_seconds: args.rekey_interval,
        };
        let module_flags = [
            (module.crypto_threads.is_some(), "--crypto-threads N"),
            (module.rekey_mib.is_some(), "--rekey-after SIZE"),
            (module.rekey_seconds.is_some(), "--rekey-interval TIME"),
        ];
        let label = self.label();
        match (args.device, module.is_empty()) {
            (Some(_), false) => {
                let (_, flag) = module_flags.iter().find(|(given, _)| *given).unwrap();
                let flag = flag.split(' ').next().unwrap_or(flag);
                Err(self.err(
                    ErrorKind::ArgumentConflict,
                    format!(
                        "{flag} is module-wide and does not go with -d DEV; run {label} once \
                         for the device and once for the module"
                    ),
                ))
            }
            (None, false) if !settings.is_empty() => Err(self.err(
                ErrorKind::MissingRequiredArgument,
                format!(
                    "{SETTING_FLAGS} change a device: give it with -d DEV, in a {label} of its \
                     own"
                ),
            )),
            (None, false) => Ok(Command::Config { settings: module }),
            (Some(_), true) if settings.is_empty() => Err(self.err(
                ErrorKind::MissingRequiredArgument,
                format!("{label} needs a setting to change: {SETTING_FLAGS}"),
            )),
            (Some(index), true) => Ok(Command::Set { index, settings }),
            (None, true) => {
                let module: Vec<&str> = module_flags.iter().map(|(_, f)| *f).collect();
                Err(self.err(
                    ErrorKind::MissingRequiredArgument,
                    format!(
                        "{label} needs -d DEV, the device to change (dstN, /dev/dstN or N; see \
                         dstcfg list), or {} for the module",
                        module.join(", ")
                    ),
                ))
            }
        }
    }
}

/// The device settings as given.
fn device_settings(args: SettingsArgs) -> DeviceSettings {
    DeviceSettings {
        req_timeout_ms: args.req_timeout,
        max_resends: args.max_resends,
        reconnect_delay_ms: args.reconnect_delay,
        ping_interval_ms: args.ping_interval,
        ping_timeout_ms: args.ping_timeout,
        loss_timeout_ms: args.loss_timeout,
    }
}

impl Cli {
    /// Checks what clap cannot and resolves the address.
    pub fn into_command(self, form: Form) -> Result<Command, clap::Error> {
        let Some(sub) = self.command else {
            // compat::translate lets only help and version through without
            // an action, and clap answers those before this.
            return Err(Cli::command().error(
                ErrorKind::MissingRequiredArgument,
                "no action given; dstcfg --help lists them",
            ));
        };
        let ctx = Ctx {
            name: sub.name(),
            form,
        };
        Ok(match sub {
            Sub::Status(a) => Command::Status { json: a.json },
            Sub::List(a) => Command::List { json: a.json },
            Sub::Monitor(a) => Command::Monitor {
                json: a.json,
                now: a.now,
                count: a.count,
            },
            Sub::Check(a) => Command::Check {
                index: ctx.device(a.device, "the device to check")?,
            },
            Sub::Genkey(a) => Command::Genkey {
                file: ctx.file(a.file, "the key file to create (e.g. -f /etc/dst/psk)")?,
            },
            Sub::Export(a) => {
                let remote = ctx.remote(&a.address, "the address the export listens on")?;
                let security = ctx.security(a.security, !a.clients.is_empty())?;
                let file = ctx.file(
                    a.file,
                    "the block device or file to export (e.g. -f /dev/sdb)",
                )?;
                ctx.export_lists(&a.allow, &a.clients)?;
                Command::Export {
                    remote,
                    file,
                    name: a.name,
                    read_only: a.read_only,
                    shared: a.shared,
                    size: a.size,
                    max_io_pages: a.max_io_pages,
                    security,
                    allow: a.allow,
                    clients: a.clients,
                }
            }
            Sub::Unexport(a) => Command::Unexport {
                remote: ctx.remote(&a.address, "the address the export listens on")?,
                name: a.name,
            },
            Sub::Release(a) => Command::Release {
                remote: ctx.remote(&a.address, "the address the export listens on")?,
                name: a.name,
            },
            Sub::Resize(a) => Command::Resize {
                remote: ctx.remote(&a.address, "the address the export listens on")?,
                size: a.size,
            },
            Sub::Local(a) => Command::Local {
                remote: ctx.remote(&a.address, "the address of the export node")?,
                security: ctx.security(a.security, false)?,
                export_name: a.name,
                client_name: a.client_name,
                read_only: a.read_only,
                index: a.index,
                max_io_pages: a.max_io_pages,
                queue_depth: a.queue_depth,
                queues: a.queues,
                client_id: a.client_id,
                settings: device_settings(a.settings),
                wait: a.wait,
                duplicate: a.duplicate,
            },
            Sub::Set(a) => ctx.set(a)?,
            Sub::Delete(a) => Command::Delete {
                index: ctx.device(a.device.device, "the device to delete")?,
                force: a.force,
            },
            Sub::Apply(a) => Command::Apply {
                file: ctx.file(Some(a.config.file), CONFIG_FILE)?,
                dry_run: a.dry_run,
                wait: a.wait,
            },
            Sub::Save(a) => Command::Save {
                file: ctx.file(Some(a.file), CONFIG_FILE)?,
                force: a.force,
            },
            Sub::Discover(a) => Command::Discover {
                remote: ctx.remote(&a.address, "the export node to ask")?,
                json: a.json,
            },
            Sub::Down(a) => Command::Down {
                file: ctx.file(Some(a.config.file), CONFIG_FILE)?,
                force: a.force,
                dry_run: a.dry_run,
            },
        })
    }
}

/// Checks the `--client` entries of an export: at most [`MAX_CLIENTS`],
/// each name once (the module refuses both as well).
fn check_clients(clients: &[ClientRule]) -> Result<(), (ErrorKind, String)> {
    if clients.len() > MAX_CLIENTS {
        return Err((
            ErrorKind::TooManyValues,
            format!(
                "--client given {} times; an export takes at most {MAX_CLIENTS} clients with \
                 keys of their own",
                clients.len()
            ),
        ));
    }
    for (i, client) in clients.iter().enumerate() {
        if clients[..i].iter().any(|c| c.name == client.name) {
            return Err((
                ErrorKind::ArgumentConflict,
                format!(
                    "--client {} is given twice; give each client name once, with one key",
                    client.name
                ),
            ));
        }
    }
    Ok(())
}

/// Parses `-r ADDR` with the `-p` port into a socket address.
///
/// Accepted: `1.2.3.4`, `1.2.3.4:PORT`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:PORT`, `host`, `host:PORT` (resolved with the system
/// resolver, first answer wins).
pub fn parse_remote(addr: &str, port: Option<u16>) -> Result<SocketAddr, String> {
    let addr = addr.trim();
    if addr.is_empty() {
        return Err("empty address".into());
    }
    let (host, addr_port) = split_host_port(addr)?;
    let port = match (addr_port, port) {
        (Some(a), Some(p)) if a != p => {
            return Err(format!(
                "port {a} in the address conflicts with -p {p}; give the port once"
            ))
        }
        (Some(a), _) => a,
        (None, Some(p)) => p,
        (None, None) => DEFAULT_PORT,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err("not a valid IPv4 address".into());
    }
    if host.contains(':') {
        return Err("not a valid IPv6 address".into());
    }
    if !is_hostname(host) {
        return Err("not an IPv4 or IPv6 address nor a host name".into());
    }
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host name: {e}"))?
        .next();
    found.ok_or_else(|| "host name has no address".to_string())
}

/// Splits `ADDR` into host and optional port; brackets are removed.
fn split_host_port(addr: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("missing ']' after the IPv6 address")?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("[{host}] is not a valid IPv6 address"));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(format!("unexpected '{after}' after ']'; use [IPv6]:PORT")),
            },
        };
    }
    match addr.matches(':').count() {
        0 => Ok((addr, None)),
        1 => {
            let (host, p) = addr.split_once(':').unwrap();
            if host.is_empty() {
                return Err("missing host before ':'".into());
            }
            Ok((host, Some(parse_port(p)?)))
        }
        // Bare IPv6: no port possible, that needs [IPv6]:PORT.
        _ => Ok((addr, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("bad port '{p}'; expected 1-65535")),
        Ok(port) => Ok(port),
    }
}

/// RFC 1123 host name syntax.
fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddrV6};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        parse_from(std::iter::once("dstcfg").chain(args.iter().copied()))
    }

    fn err(args: &[&str]) -> (ErrorKind, String) {
        let e = parse(args).expect_err("should fail");
        (e.kind(), e.to_string())
    }

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::from(a).into(), port)
    }

    fn export(remote: SocketAddr, file: &str) -> Command {
        Command::Export {
            shared: false,
            remote,
            file: file.into(),
            name: None,
            read_only: false,
            size: None,
            max_io_pages: None,
            security: Default::default(),
            allow: Vec::new(),
            clients: Vec::new(),
        }
    }

    fn local(remote: SocketAddr) -> Command {
        Command::Local {
            read_only: false,
            remote,
            export_name: None,
            client_name: None,
            index: None,
            max_io_pages: None,
            queue_depth: None,
            queues: None,
            client_id: None,
            security: Default::default(),
            settings: DeviceSettings::default(),
            wait: None,
            duplicate: false,
        }
    }

    const R: &str = "192.0.2.1";

    #[test]
    fn export_form() {
        assert_eq!(
            parse(&["-r", "192.0.2.1", "-a", "export", "-f", "/dev/sdb"]).unwrap(),
            export(v4([192, 0, 2, 1], DEFAULT_PORT), "/dev/sdb")
        );
        assert_eq!(
            parse(&[
                "--remote=192.0.2.1:2000",
                "--action",
                "export",
                "--file",
                "/dev/sdb"
            ])
            .unwrap(),
            export(v4([192, 0, 2, 1], 2000), "/dev/sdb")
        );
    }

    #[test]
    fn local_form() {
        assert_eq!(
            parse(&["-r", "192.0.2.1", "-a", "local"]).unwrap(),
            local(v4([192, 0, 2, 1], 1025))
        );
        assert_eq!(
            parse(&["-a", "local", "-r", "192.0.2.1", "-p", "9000"]).unwrap(),
            local(v4([192, 0, 2, 1], 9000))
        );
    }

    #[test]
    fn status_form() {
        assert_eq!(
            parse(&["-a", "status"]).unwrap(),
            Command::Status { json: false }
        );
        assert_eq!(
            parse(&["-a", "status", "--json"]).unwrap(),
            Command::Status { json: true }
        );
    }

    #[test]
    fn ipv6_forms() {
        let ip: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let at = |port| SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0));
        for (addr, port) in [
            ("2001:db8::1", 1025),
            ("[2001:db8::1]", 1025),
            ("[2001:db8::1]:2000", 2000),
        ] {
            assert_eq!(
                parse(&["-r", addr, "-a", "local"]).unwrap(),
                local(at(port)),
                "{addr}"
            );
        }
        assert_eq!(
            parse(&["-r", "[2001:db8::1]", "-p", "7", "-a", "local"]).unwrap(),
            local(at(7))
        );
        // The same port twice is fine.
        assert_eq!(
            parse(&["-r", "[2001:db8::1]:7", "-p", "7", "-a", "local"]).unwrap(),
            local(at(7))
        );
    }

    #[test]
    fn missing_action() {
        let (kind, msg) = err(&["-r", "192.0.2.1"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(
            msg.contains("export, unexport, release, local, delete, set, list, status"),
            "{msg}"
        );
        let (kind, _) = err(&[]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn missing_remote() {
        for action in ["local", "export"] {
            let mut args = vec!["-a", action];
            if action == "export" {
                args.extend(["-f", "/dev/sdb"]);
            }
            let (kind, msg) = err(&args);
            assert_eq!(kind, ErrorKind::MissingRequiredArgument, "{action}");
            assert!(msg.contains(&format!("-a {action} needs -r ADDR")), "{msg}");
        }
    }

    #[test]
    fn missing_file_for_export() {
        let (kind, msg) = err(&["-r", "192.0.2.1", "-a", "export"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(msg.contains("-a export needs -f PATH"), "{msg}");
    }

    #[test]
    fn file_forbidden_for_local_and_status() {
        let (kind, msg) = err(&["-r", "192.0.2.1", "-a", "local", "-f", "/dev/sdb"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(msg.contains("-f cannot be used with -a local"), "{msg}");
        let (kind, msg) = err(&["-a", "status", "-f", "/dev/sdb"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(msg.contains("-f cannot be used with -a status"), "{msg}");
    }

    #[test]
    fn status_rejects_remote_and_local_rejects_json() {
        assert_eq!(
            err(&["-a", "status", "-r", "192.0.2.1"]).0,
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            err(&["-a", "status", "-p", "9"]).0,
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            err(&["-a", "local", "-r", "192.0.2.1", "--json"]).0,
            ErrorKind::ArgumentConflict
        );
    }

    #[test]
    fn bad_addresses() {
        for addr in [
            "",
            "300.1.2.3",
            "1.2.3",
            "1.2.3.4.5",
            "2001:db8:::1",
            "[2001:db8::1",
            "[192.0.2.1]",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "bad host!",
            "host-",
            ":1025",
        ] {
            let (kind, msg) = err(&["-r", addr, "-a", "local"]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{addr}: {msg}");
            assert!(msg.contains(&format!("-r {}:", addr.trim())), "{msg}");
        }
    }

    #[test]
    fn bad_ports() {
        for addr in [
            "192.0.2.1:0",
            "192.0.2.1:65536",
            "192.0.2.1:http",
            "[::1]:-1",
        ] {
            let (kind, msg) = err(&["-r", addr, "-a", "local"]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{addr}");
            assert!(msg.contains("bad port"), "{msg}");
        }
        for port in ["0", "65536", "x", "-3"] {
            let (kind, _) = err(&["-r", "192.0.2.1", "-p", port, "-a", "local"]);
            assert!(
                matches!(
                    kind,
                    ErrorKind::ValueValidation | ErrorKind::UnknownArgument
                ),
                "-p {port}: {kind:?}"
            );
        }
    }

    #[test]
    fn conflicting_ports() {
        let (kind, msg) = err(&["-r", "192.0.2.1:2000", "-p", "3000", "-a", "local"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(msg.contains("conflicts with -p 3000"), "{msg}");
        let (_, msg) = err(&["-r", "[::1]:1", "-p", "2", "-a", "local"]);
        assert!(msg.contains("conflicts"), "{msg}");
    }

    #[test]
    fn unknown_action() {
        let (kind, msg) = err(&["-r", "192.0.2.1", "-a", "import"]);
        assert_eq!(kind, ErrorKind::InvalidValue);
        assert!(msg.contains("export") && msg.contains("status"), "{msg}");
    }

    /// The long help of subcommand `name` (`dstcfg NAME --help`).
    fn sub_help(name: &str, long: bool) -> String {
        let mut cli = Cli::command();
        cli.build();
        let sub = cli.find_subcommand_mut(name).unwrap();
        if long {
            sub.render_long_help().to_string()
        } else {
            sub.render_help().to_string()
        }
    }

    #[test]
    fn help_lists_flags_and_examples() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "-a, --action <ACTION>",
            "dstcfg -r 192.0.2.1 -a export -f /dev/sdb",
            "dstcfg -r 192.0.2.1 -a local",
            "dstcfg export -r 192.0.2.1 -f /dev/sdb",
            "dstcfg local -r 192.0.2.1",
            "dstcfg local -r 192.0.2.1 --wait=5m",
            "dstcfg set -d dst0 --loss-timeout infinite",
            "dstcfg monitor --now",
            "dstcfg local -r 192.0.2.1 --client-id 0x5e1f0a1c0de00001",
            "dstcfg local -r 192.0.2.1 --protection aead --key-desc dst:pair1",
            "dstcfg local -r 192.0.2.1 -n store1:sdb --client-name web1",
            "--client web1=/etc/dst/web1.key --client backup=@dst:backup,ro",
            "dstcfg set --rekey-after 16G --rekey-interval 10m",
            "[--protection none|crc32c|hmac|aead]",
            "[--loss-timeout TIME|infinite]",
            "a number alone is\nmilliseconds",
            "Exit status",
            "export ",
            "unexport ",
            "local ",
            "genkey ",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
        // Each subcommand's help has its own options, and only those.
        for (name, has, lacks) in [
            (
                "local",
                &[
                    "-r, --remote <ADDR>",
                    "The export node to connect to",
                    "-p, --port <PORT>",
                    "[default: 1025]",
                    "-i, --index <N>",
                    "--queue-depth <N>",
                    "--client-id <ID>",
                    "[default: random]",
                    "-n, --name <NAME>",
                    "--client-name <NAME>",
                    "[default: the host name]",
                    "--wait[=<TIME>]",
                    "--duplicate",
                    "--req-timeout <TIME>",
                    "--max-resends <N>",
                    "--reconnect-delay <TIME>",
                    "--ping-interval <TIME>",
                    "--ping-timeout <TIME>",
                    "--loss-timeout <TIME>",
                    "[default: 15s]",
                    "[default: 60s]",
                    "or infinite",
                    "--key-desc <DESC>",
                    "256 = 1 MiB",
                    "[default: 128]",
                    "Asking again is harmless",
                ][..],
                &[
                    "--size",
                    "--allow",
                    "--client <",
                    "-f, --file",
                    "--json",
                    "--force",
                ][..],
            ),
            (
                "export",
                &[
                    "The local address to listen on",
                    "-f, --file <PATH>",
                    "--read-only",
                    "--size <SIZE>",
                    "--allow <PREFIX[:ro|:rw]>",
                    "--client <NAME=PATH[,ro]>",
                    "NAME=@DESC has the kernel take it from the keyring key",
                    "--key-file <PATH>",
                ][..],
                &["--loss-timeout", "--wait", "-i, --index", "--queues"][..],
            ),
            (
                "set",
                &[
                    "-d, --device <DEV>",
                    "--loss-timeout <TIME>",
                    "--crypto-threads <N>",
                    "--rekey-after <SIZE>",
                    "--rekey-interval <TIME>",
                    "[default: 64G]",
                    "[default: 1h]",
                ][..],
                &["-r, --remote", "--queues", "--protection"][..],
            ),
            ("list", &["--json"][..], &["-r, --remote", "--count"][..]),
            (
                "monitor",
                &["--json", "--now", "--count <N>"][..],
                &["-d, --device"][..],
            ),
            (
                "delete",
                &["-d, --device <DEV>", "--force"][..],
                &["--json"][..],
            ),
            (
                "genkey",
                &["-f, --file <PATH>", "mode 0600"][..],
                &["--size"][..],
            ),
        ] {
            let help = sub_help(name, true);
            for needle in has {
                assert!(
                    help.contains(needle),
                    "{name} --help lacks {needle:?}:\n{help}"
                );
            }
            for needle in lacks {
                assert!(
                    !help.contains(needle),
                    "{name} --help has {needle:?}:\n{help}"
                );
            }
        }
        // --client's help, as -h gives it (the long help adds the details).
        let short = sub_help("export", false);
        let long = sub_help("export", true);
        let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let client_help = "A client identity with a key of its own: only that key's holder can \
                           connect as NAME, and ,ro makes its device read-only; repeatable";
        assert!(flat(&short).contains(client_help), "{short}");
        assert!(flat(&long).contains(client_help), "{long}");
        assert!(
            !flat(&short).contains("NAME=@DESC has the kernel"),
            "{short}"
        );
    }

    #[test]
    fn export_with_every_option() {
        assert_eq!(
            parse(&[
                "-r",
                R,
                "-p",
                "2000",
                "-a",
                "export",
                "-f",
                "/dev/sdb",
                "--read-only",
                "--size",
                "10G",
                "--max-io-pages",
                "64",
            ])
            .unwrap(),
            Command::Export {
                shared: false,
                remote: v4([192, 0, 2, 1], 2000),
                file: "/dev/sdb".into(),
                name: None,
                read_only: true,
                size: Some(10 << 30),
                max_io_pages: Some(64),
                security: Default::default(),
                allow: Vec::new(),
                clients: Vec::new(),
            }
        );
        assert_eq!(
            parse(&["-a", "export", "-r", R, "-f", "/dev/sdb", "--size=4096"]).unwrap(),
            Command::Export {
                shared: false,
                remote: v4([192, 0, 2, 1], 1025),
                file: "/dev/sdb".into(),
                name: None,
                read_only: false,
                size: Some(4096),
                max_io_pages: None,
                security: Default::default(),
                allow: Vec::new(),
                clients: Vec::new(),
            }
        );
    }

    /// `export --shared`, `local --read-only`, `release -r ADDR` and where
    /// they do not belong.
    #[test]
    fn one_writer_options() {
        match parse(&["export", "-r", R, "-f", "/dev/sdb", "--shared"]).unwrap() {
            Command::Export {
                shared, read_only, ..
            } => assert!(shared && !read_only),
            other => panic!("{other:?}"),
        }
        match parse(&["-a", "export", "-r", R, "-f", "/dev/sdb"]).unwrap() {
            Command::Export { shared, .. } => assert!(!shared),
            other => panic!("{other:?}"),
        }
        match parse(&["local", "-r", R, "--read-only"]).unwrap() {
            Command::Local { read_only, .. } => assert!(read_only),
            other => panic!("{other:?}"),
        }
        match parse(&["-r", R, "-a", "local"]).unwrap() {
            Command::Local { read_only, .. } => assert!(!read_only),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&["release", "-r", "192.0.2.1:2000"]).unwrap(),
            Command::Release {
                remote: v4([192, 0, 2, 1], 2000),
                name: None,
            }
        );
        assert_eq!(
            parse(&["-r", R, "-p", "7", "-a", "release"]).unwrap(),
            Command::Release {
                remote: v4([192, 0, 2, 1], 7),
                name: None,
            }
        );
        assert_eq!(
            parse(&["release", "-r", R]).unwrap().action_name(),
            "release"
        );
        let (kind, msg) = err(&["release"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(msg.contains("release needs -r ADDR"), "{msg}");
        let (_, msg) = err(&["local", "-r", R, "--shared"]);
        assert!(
            msg.contains("--shared cannot be used with local; an export is shared"),
            "{msg}"
        );
        let (_, msg) = err(&["release", "-r", R, "--read-only"]);
        assert!(msg.contains("local --read-only"), "{msg}");
        let (_, msg) = err(&["release", "-r", R, "-f", "/dev/sdb"]);
        assert!(msg.contains("found by its address"), "{msg}");
        let (_, msg) = err(&["set", "-d", "dst0", "--read-only"]);
        assert!(msg.contains("fixed when the export or the device"), "{msg}");
    }

    #[test]
    fn unexport_form() {
        assert_eq!(
            parse(&["-r", R, "-a", "unexport"]).unwrap(),
            Command::Unexport {
                remote: v4([192, 0, 2, 1], 1025),
                name: None,
            }
        );
        assert_eq!(
            parse(&["-a", "unexport", "-r", "192.0.2.1:2000"]).unwrap(),
            Command::Unexport {
                remote: v4([192, 0, 2, 1], 2000),
                name: None,
            }
        );
        assert_eq!(
            parse(&["-a", "unexport", "-r", "[::1]", "-p", "7"]).unwrap(),
            Command::Unexport {
                remote: "[::1]:7".parse().unwrap(),
                name: None,
            }
        );
        for args in [
            &["unexport", "-r", R, "-n", "store1:sdb"][..],
            &["-r", R, "-a", "unexport", "--name=store1:sdb"][..],
        ] {
            assert_eq!(
                parse(args).unwrap(),
                Command::Unexport {
                    remote: v4([192, 0, 2, 1], 1025),
                    name: Some("store1:sdb".into()),
                },
                "{args:?}"
            );
        }
        let (kind, msg) = err(&["unexport", "-r", R, "-n", "has space"]);
        assert_eq!(kind, ErrorKind::ValueValidation, "{msg}");
    }

    #[test]
    fn local_with_every_option() {
        assert_eq!(
            parse(&[
                "-r",
                R,
                "-a",
                "local",
                "-i",
                "3",
                "--max-io-pages",
                "1024",
                "--queue-depth",
                "64",
            ])
            .unwrap(),
            Command::Local {
                read_only: false,
                remote: v4([192, 0, 2, 1], 1025),
                export_name: None,
                client_name: None,
                index: Some(3),
                max_io_pages: Some(1024),
                queue_depth: Some(64),
                queues: None,
                client_id: None,
                security: Default::default(),
                settings: DeviceSettings::default(),
                wait: None,
                duplicate: false,
            }
        );
        assert_eq!(
            parse(&[
                "-r",
                R,
                "-a",
                "local",
                "--req-timeout",
                "2000",
                "--max-resends",
                "0",
                "--reconnect-delay",
                "10ms",
                "--ping-interval",
                "0",
                "--ping-timeout=2s",
                "--loss-timeout",
                "5s",
            ])
            .unwrap(),
            Command::Local {
                read_only: false,
                remote: v4([192, 0, 2, 1], 1025),
                export_name: None,
                client_name: None,
                index: None,
                max_io_pages: None,
                queue_depth: None,
                queues: None,
                client_id: None,
                security: Default::default(),
                settings: DeviceSettings {
                    req_timeout_ms: Some(2000),
                    max_resends: Some(0),
                    reconnect_delay_ms: Some(10),
                    ping_interval_ms: Some(0),
                    ping_timeout_ms: Some(2000),
                    loss_timeout_ms: Some(5000),
                },
                wait: None,
                duplicate: false,
            }
        );
        assert_eq!(
            parse(&["-r", R, "-a", "local", "--index=0"]).unwrap(),
            Command::Local {
                read_only: false,
                remote: v4([192, 0, 2, 1], 1025),
                export_name: None,
                client_name: None,
                index: Some(0),
                max_io_pages: None,
                queue_depth: None,
                queues: None,
                client_id: None,
                security: Default::default(),
                settings: DeviceSettings::default(),
                wait: None,
                duplicate: false,
            }
        );
    }

    #[test]
    fn set_forms() {
        let only = |settings| Command::Set { index: 1, settings };
        assert_eq!(
            parse(&["-a", "set", "-d", "dst1", "--loss-timeout", "3000"]).unwrap(),
            only(DeviceSettings {
                loss_timeout_ms: Some(3000),
                ..Default::default()
            })
        );
        assert_eq!(
            parse(&["-d", "/dev/dst1", "--max-resends=1000", "-a", "set"]).unwrap(),
            only(DeviceSettings {
                max_resends: Some(1000),
                ..Default::default()
            })
        );
        assert_eq!(
            parse(&["-a", "set", "-d", "1", "--req-timeout", "61m",])
                .unwrap_err()
                .kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&[
                "-a",
                "set",
                "-d",
                "1",
                "--req-timeout",
                "3600s",
                "--reconnect-delay",
                "600s",
                "--ping-interval",
                "100ms",
                "--ping-timeout",
                "0.1s",
                "--loss-timeout",
                "86400s",
                "--max-resends",
                "7",
            ])
            .unwrap(),
            only(DeviceSettings {
                req_timeout_ms: Some(3_600_000),
                max_resends: Some(7),
                reconnect_delay_ms: Some(600_000),
                ping_interval_ms: Some(100),
                ping_timeout_ms: Some(100),
                loss_timeout_ms: Some(86_400_000),
            })
        );
    }

    #[test]
    fn set_needs_a_device_and_a_setting() {
        let (kind, msg) = err(&["-a", "set", "--loss-timeout", "3000"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(msg.contains("-a set needs -d DEV"), "{msg}");
        let (kind, msg) = err(&["-a", "set", "-d", "dst0"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(
            msg.contains(
                "-a set needs a setting to change: --req-timeout, --max-resends, \
                          --reconnect-delay, --ping-interval, --ping-timeout or --loss-timeout"
            ),
            "{msg}"
        );
        let (kind, msg) = err(&["-a", "set", "-d", "dst0", "--queue-depth", "8"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("--queue-depth cannot be used with -a set; it is fixed when the device"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "set", "-d", "0", "-r", R, "--max-resends", "1"]);
        assert!(
            msg.contains("-r cannot be used with -a set; the device is found by -d DEV alone"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "set", "-i", "0", "--max-resends", "1"]);
        assert!(msg.contains("give the device with -d DEV"), "{msg}");
        let (_, msg) = err(&["-a", "delete", "-d", "0", "--loss-timeout", "1s"]);
        assert!(
            msg.contains(
                "--loss-timeout cannot be used with -a delete; it only applies to -a local and -a set"
            ),
            "{msg}"
        );
        let (_, msg) = err(&[
            "-a",
            "export",
            "-r",
            R,
            "-f",
            "/dev/sdb",
            "--req-timeout",
            "1s",
        ]);
        assert!(
            msg.contains("--req-timeout cannot be used with -a export"),
            "{msg}"
        );
    }

    #[test]
    fn times() {
        for (text, ms) in [
            ("0", 0),
            ("100", 100),
            ("100ms", 100),
            (" 250ms ", 250),
            ("30s", 30_000),
            ("0s", 0),
            ("1.5s", 1500),
            ("0.1s", 100),
            ("2.25s", 2250),
            ("0.001s", 1),
            ("86400s", 86_400_000),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(parse_duration_ms(text, 1), Ok(ms), "{text}");
        }
        // Durations as humantime reads them.
        for (text, ms) in [
            ("5m", 300_000),
            ("1min", 60_000),
            ("1h30m", 5_400_000),
            ("2h 15m", 8_100_000),
            ("1day", 86_400_000),
            ("250ms", 250),
            ("1500000us", 1500),
            ("5 s", 5000),
        ] {
            assert_eq!(parse_duration_ms(text, 1), Ok(ms), "{text}");
        }
        // A number alone in the unit given: seconds for --rekey-interval.
        assert_eq!(parse_duration_ms("3600", 1000), Ok(3_600_000));
        for (text, why) in [
            ("", "expected a duration"),
            ("s", "expected a duration"),
            ("ms", "expected a duration"),
            ("-1", "expected a duration"),
            (".5s", "not a duration"),
            ("5.s", "not a duration"),
            ("1.2.3s", "not a duration"),
            ("1.5", "whole number"),
            ("1.5ms", "whole number"),
            ("0.0005s", "at most 3 decimals"),
            ("1500us", "not a whole number of milliseconds"),
            ("5x", "unknown time unit \"x\""),
            ("5S", "unknown time unit \"S\""),
            ("99999999999999999999", "too large"),
            ("99999999999999999999s", "too large"),
        ] {
            let msg = parse_duration_ms(text, 1).expect_err(text);
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn time_ranges() {
        // (flag, lowest, highest, zero allowed)
        for (flag, lo, hi, zero_ok) in [
            ("--req-timeout", 100u64, 3_600_000u64, false),
            ("--reconnect-delay", 10, 600_000, false),
            ("--ping-interval", 100, 3_600_000, true),
            ("--ping-timeout", 100, 3_600_000, false),
            ("--loss-timeout", 100, 86_400_000, false),
        ] {
            for action in [["-a", "local", "-r", R], ["-a", "set", "-d", "dst0"]] {
                let ok = |v: String| {
                    let mut args = action.to_vec();
                    args.extend([flag, &v]);
                    parse(&args)
                };
                assert!(ok(lo.to_string()).is_ok(), "{flag} {lo}");
                assert!(ok(hi.to_string()).is_ok(), "{flag} {hi}");
                assert!(ok(format!("{}s", hi / 1000)).is_ok(), "{flag} {hi}");
                assert_eq!(ok("0".into()).is_ok(), zero_ok, "{flag} 0");
                for bad in [lo - 1, hi + 1, u32::MAX as u64 + 1] {
                    if bad == 0 && zero_ok {
                        continue;
                    }
                    let e = ok(bad.to_string()).expect_err(&format!("{flag} {bad}"));
                    assert_eq!(e.kind(), ErrorKind::ValueValidation);
                    let msg = e.to_string();
                    assert!(msg.contains(flag), "{msg}");
                    let zero = if zero_ok { "0 or " } else { "" };
                    assert!(
                        msg.contains(&format!("out of range; expected {zero}{lo}..{hi} ms")),
                        "{msg}"
                    );
                }
                if flag == "--loss-timeout" {
                    let infinite = ok("infinite".into()).unwrap();
                    let (Command::Local { settings, .. } | Command::Set { settings, .. }) =
                        infinite
                    else {
                        panic!("{infinite:?}");
                    };
                    assert_eq!(settings.loss_timeout_ms, Some(u32::MAX));
                    let e = ok(format!("{}", hi + 1)).unwrap_err();
                    assert!(e.to_string().contains("or infinite"), "{e}");
                }
                // The same in humantime's units.
                assert!(ok(ms_text(hi)).is_ok(), "{flag} {}", ms_text(hi));
                let e = ok("10x".into()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ValueValidation);
                assert!(e.to_string().contains("unknown time unit"), "{e}");
            }
        }
    }

    #[test]
    fn delete_forms() {
        for dev in ["dst0", "/dev/dst0", "0"] {
            assert_eq!(
                parse(&["-a", "delete", "-d", dev]).unwrap(),
                Command::Delete {
                    index: 0,
                    force: false
                },
                "{dev}"
            );
        }
        assert_eq!(
            parse(&["-a", "delete", "--device=/dev/dst1023"]).unwrap(),
            Command::Delete {
                index: 1023,
                force: false
            }
        );
        assert_eq!(
            parse(&["-d", "dst12", "-a", "delete"]).unwrap(),
            Command::Delete {
                index: 12,
                force: false
            }
        );
        assert_eq!(
            parse(&["delete", "-d", "dst3", "--force"]).unwrap(),
            Command::Delete {
                index: 3,
                force: true
            }
        );
        let (_, msg) = err(&["-a", "list", "--force"]);
        assert!(msg.contains("--force cannot be used with -a list"), "{msg}");
    }

    #[test]
    fn list_forms() {
        assert_eq!(
            parse(&["-a", "list"]).unwrap(),
            Command::List { json: false }
        );
        assert_eq!(
            parse(&["--json", "-a", "list"]).unwrap(),
            Command::List { json: true }
        );
    }

    /// Every option of every subcommand: its name for messages, the
    /// subcommands that have it.
    fn option_owners() -> Vec<(String, Vec<&'static str>)> {
        let mut cli = Cli::command();
        cli.build();
        let mut out: Vec<(String, Vec<&'static str>)> = Vec::new();
        for (sub, name) in cli.get_subcommands().zip(ACTIONS) {
            for arg in sub.get_arguments() {
                let flag = flag_name(arg);
                if flag == "-h" {
                    continue;
                }
                match out.iter_mut().find(|(f, _)| *f == flag) {
                    Some((_, names)) => names.push(name),
                    None => out.push((flag, vec![name])),
                }
            }
        }
        out
    }

    /// A valid value for each option.
    fn option_args(flag: &str) -> Vec<&'static str> {
        match flag {
            "-r" => vec!["-r", R],
            "-p" => vec!["-p", "9"],
            "-f" => vec!["-f", "/dev/sdb"],
            "--read-only" => vec!["--read-only"],
            "--shared" => vec!["--shared"],
            "--size" => vec!["--size", "1G"],
            "--max-io-pages" => vec!["--max-io-pages", "8"],
            "-i" => vec!["-i", "1"],
            "--queue-depth" => vec!["--queue-depth", "8"],
            "-d" => vec!["-d", "dst0"],
            "--json" => vec!["--json"],
            "--now" => vec!["--now"],
            "--req-timeout" => vec!["--req-timeout", "2000"],
            "--max-resends" => vec!["--max-resends", "3"],
            "--reconnect-delay" => vec!["--reconnect-delay", "500ms"],
            "--ping-interval" => vec!["--ping-interval", "0"],
            "--ping-timeout" => vec!["--ping-timeout", "2s"],
            "--loss-timeout" => vec!["--loss-timeout", "30s"],
            "--count" => vec!["--count", "3"],
            "--force" => vec!["--force"],
            "--queues" => vec!["--queues", "4"],
            "--client-id" => vec!["--client-id", "0x1234"],
            "--wait" => vec!["--wait=5m"],
            "--duplicate" => vec!["--duplicate"],
            "--protection" => vec!["--protection", "crc32c"],
            "--alg" => vec!["--alg", "gcm(aes)"],
            "--key-file" => vec!["--key-file", "/etc/dst/psk"],
            "--key-desc" => vec!["--key-desc", "dst:pair1"],
            "--allow" => vec!["--allow", "10.0.0.0/8"],
            "--crypto-threads" => vec!["--crypto-threads", "2"],
            "-n" => vec!["-n", "store1:sdb"],
            "--client-name" => vec!["--client-name", "web1"],
            "--rekey-after" => vec!["--rekey-after", "16G"],
            "--rekey-interval" => vec!["--rekey-interval", "600"],
            "--client" => vec!["--client", "web1=/etc/dst/web1.key"],
            "--dry-run" => vec!["--dry-run"],
            _ => panic!("no value for {flag}"),
        }
    }

    /// The smallest valid command line of each subcommand, in the older
    /// form.
    fn base_args(action: &'static str) -> Vec<&'static str> {
        let mut args = vec!["-a", action];
        args.extend(match action {
            "export" => vec!["-r", R, "-f", "/dev/sdb"],
            "unexport" | "release" | "local" | "resize" | "discover" => vec!["-r", R],
            "delete" | "check" => vec!["-d", "dst0"],
            "set" => vec!["-d", "dst0", "--loss-timeout", "3s"],
            "genkey" => vec!["-f", "/etc/dst/psk"],
            _ => vec![],
        });
        args
    }

    /// The module-wide options of `set` (without `-d`).
    const MODULE_FLAGS: [&str; 3] = ["--crypto-threads", "--rekey-after", "--rekey-interval"];

    #[test]
    fn every_option_with_every_action() {
        let mut refused = 0;
        let owners = option_owners();
        assert_eq!(owners.len(), 36, "{owners:?}");
        for action in ACTIONS {
            let base = base_args(action);
            assert!(parse(&base).is_ok(), "{base:?}");
            for (flag, actions) in &owners {
                let mut args = base.clone();
                if MODULE_FLAGS.contains(&flag.as_str()) && action == "set" {
                    // Module-wide: a set of its own, without -d.
                    args = vec!["-a", "set"];
                }
                if !base.contains(&flag.as_str()) {
                    args.extend(option_args(flag));
                }
                if flag == "--alg" && actions.contains(&action) {
                    // --alg needs a mode with a key.
                    args.extend(["--protection", "aead", "--key-file", "/etc/dst/psk"]);
                }
                if actions.contains(&action) {
                    assert!(parse(&args).is_ok(), "{args:?}: {:?}", parse(&args));
                    // The subcommand form takes the same.
                    let mut sub = vec![action];
                    sub.extend(&args[2..]);
                    if args[0] == "-a" {
                        assert!(parse(&sub).is_ok(), "{sub:?}: {:?}", parse(&sub));
                    }
                    continue;
                }
                let (kind, msg) = err(&args);
                assert_eq!(kind, ErrorKind::ArgumentConflict, "{args:?}: {msg}");
                let expected = format!("{flag} cannot be used with -a {action}; ");
                assert!(msg.contains(&expected), "{args:?}: {msg}");
                refused += 1;
            }
        }
        // The subcommand x option pairs that are refused.
        assert_eq!(refused, 501);
    }

    #[test]
    fn configuration_file_subcommands() {
        let default = PathBuf::from(DEFAULT_CONFIG);
        assert_eq!(
            parse(&["apply"]).unwrap(),
            Command::Apply {
                file: default.clone(),
                dry_run: false,
                wait: None
            }
        );
        // The older form means the same.
        assert_eq!(
            parse(&["-a", "apply", "-f", "/tmp/x.toml", "--dry-run"]).unwrap(),
            Command::Apply {
                file: "/tmp/x.toml".into(),
                dry_run: true,
                wait: None
            }
        );
        assert_eq!(
            parse(&["save", "-f", "-"]).unwrap(),
            Command::Save {
                file: "-".into(),
                force: false
            }
        );
        assert_eq!(
            parse(&["down", "--force"]).unwrap(),
            Command::Down {
                file: default,
                force: true,
                dry_run: false
            }
        );
        let (_, msg) = err(&["apply", "-r", R]);
        assert!(
            msg.contains("-r cannot be used with apply; the exports and devices are those of"),
            "{msg}"
        );
    }

    #[test]
    fn apply_wait() {
        let apply = |wait| Command::Apply {
            file: PathBuf::from(DEFAULT_CONFIG),
            dry_run: false,
            wait,
        };
        let four_minutes = Some(Wait::For(std::time::Duration::from_secs(240)));
        assert_eq!(parse(&["apply", "--wait=4m"]).unwrap(), apply(four_minutes));
        assert_eq!(
            parse(&["apply", "--wait"]).unwrap(),
            apply(Some(Wait::Forever))
        );
        assert_eq!(
            parse(&["-a", "apply", "--wait=240s"]).unwrap(),
            apply(four_minutes)
        );
        // The same parser as local's: a unit is required, 0 is refused.
        let (_, msg) = err(&["apply", "--wait=4"]);
        assert!(msg.contains("give the unit: 4s, 4m"), "{msg}");
        let (_, msg) = err(&["apply", "--wait=0s"]);
        assert!(msg.contains("the time must be more than 0"), "{msg}");
        // A plan changes nothing, so there is nothing to wait for.
        let (kind, msg) = err(&["apply", "--dry-run", "--wait=4m"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict, "{msg}");
        // Still local's and apply's only.
        let (_, msg) = err(&["down", "--wait"]);
        assert!(
            msg.contains("--wait cannot be used with down; it only applies to local and apply"),
            "{msg}"
        );
    }

    #[test]
    fn misuse_messages() {
        let (_, msg) = err(&["-a", "list", "-r", R]);
        assert!(msg.contains("-r cannot be used with -a list; it only asks the local module"));
        let (_, msg) = err(&["list", "-r", R]);
        assert!(msg.contains("-r cannot be used with list; it only asks the local module"));
        let (_, msg) = err(&["delete", "-d", "0", "--max-io-pages", "8"]);
        assert!(msg.contains("it only applies to export and local"), "{msg}");
        let (_, msg) = err(&["-a", "local", "-r", R, "--size=1G"]);
        assert!(msg.contains("--size cannot be used with -a local"), "{msg}");
        let (_, msg) = err(&["-a", "export", "-r", R, "-f", "/dev/sdb", "-i", "1"]);
        assert!(msg.contains("-i cannot be used with -a export; it only applies to -a local"));
        let (_, msg) = err(&["-a", "delete", "-d", "0", "--max-io-pages", "8"]);
        assert!(
            msg.contains("it only applies to -a export and -a local"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "local", "-r", R, "-d", "dst1"]);
        assert!(
            msg.contains("choose the index of the new device with -i N"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "delete", "-i", "1"]);
        assert!(msg.contains("-i cannot be used with -a delete; give the device with -d DEV"));
        let (_, msg) = err(&["-a", "status", "--size", "1G"]);
        assert!(
            msg.contains("--size cannot be used with -a status"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "unexport", "-r", R, "--json"]);
        assert!(
            msg.contains("it only applies to -a list, -a status, -a monitor and -a discover"),
            "{msg}"
        );
    }

    #[test]
    fn missing_required_options() {
        for (args, needle) in [
            (&["-a", "unexport"][..], "-a unexport needs -r ADDR"),
            (
                &["-a", "unexport", "-p", "9"][..],
                "-a unexport needs -r ADDR",
            ),
            (&["-a", "local", "-i", "1"][..], "-a local needs -r ADDR"),
            (&["-a", "delete"][..], "-a delete needs -d DEV"),
            (
                &["-a", "export", "-r", R, "--read-only"][..],
                "-a export needs -f PATH",
            ),
        ] {
            let (kind, msg) = err(args);
            assert_eq!(kind, ErrorKind::MissingRequiredArgument, "{args:?}");
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }

    #[test]
    fn numeric_ranges() {
        for (flag, ok, bad) in [
            (
                "--max-io-pages",
                &["1", "1024"][..],
                &["0", "1025", "x", "4294967296"][..],
            ),
            ("--queue-depth", &["1", "1024"][..], &["0", "1025", "x"][..]),
            (
                "--max-resends",
                &["0", "10", "1000"][..],
                &["1001", "x", "1s", "4294967296"][..],
            ),
            ("-i", &["0", "1023"][..], &["1024", "x", "1.5"][..]),
        ] {
            let mut base = vec!["-a", "local", "-r", R];
            if flag == "--max-io-pages" {
                base = vec!["-a", "export", "-r", R, "-f", "/dev/sdb"];
            }
            for value in ok {
                let mut args = base.clone();
                args.extend([flag, value]);
                assert!(parse(&args).is_ok(), "{args:?}");
            }
            for value in bad {
                let mut args = base.clone();
                args.extend([flag, value]);
                let (kind, msg) = err(&args);
                assert_eq!(kind, ErrorKind::ValueValidation, "{args:?}: {msg}");
                assert!(msg.contains(flag), "{args:?}: {msg}");
            }
        }
        // Negative numbers look like flags to clap: still a usage error.
        let (kind, _) = err(&["-a", "local", "-r", R, "-i", "-1"]);
        assert!(
            matches!(
                kind,
                ErrorKind::ValueValidation | ErrorKind::UnknownArgument
            ),
            "{kind:?}"
        );
        let (_, msg) = err(&["-a", "local", "-r", R, "--queue-depth", "0"]);
        assert!(msg.contains("1..=1024"), "{msg}");
    }

    #[test]
    fn bad_sizes_and_devices_on_the_command_line() {
        let (kind, msg) = err(&["-a", "export", "-r", R, "-f", "/dev/sdb", "--size", "12X"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(
            msg.contains("--size") && msg.contains("unknown unit 'X'"),
            "{msg}"
        );
        let (kind, msg) = err(&["-a", "delete", "-d", "sda"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(msg.contains("not a DST device"), "{msg}");
    }

    #[test]
    fn size_suffixes() {
        for (text, bytes) in [
            ("1", 1),
            ("4096", 4096),
            ("512B", 512),
            ("1K", 1024),
            ("1k", 1024),
            ("2KiB", 2048),
            ("512M", 512 << 20),
            ("512MiB", 512 << 20),
            ("10G", 10 << 30),
            ("10gib", 10 << 30),
            ("3T", 3 << 40),
            (" 1G ", 1 << 30),
            ("16777215T", 16777215 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for (text, why) in [
            ("", "expected a number"),
            ("G", "expected a number"),
            ("-1", "expected a number"),
            ("0", "at least 1 byte"),
            ("0G", "at least 1 byte"),
            ("1.5G", "whole number"),
            ("12X", "unknown unit 'X'"),
            ("1KB", "unknown unit 'KB'"),
            ("1 G", "unknown unit ' G'"),
            ("1P", "unknown unit 'P'"),
            ("16777216T", "too large"),
            ("99999999999999999999", "too large"),
        ] {
            let msg = parse_size(text).expect_err(text);
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn device_names() {
        for (text, index) in [
            ("0", 0),
            ("dst0", 0),
            ("/dev/dst0", 0),
            ("7", 7),
            ("dst12", 12),
            ("/dev/dst1023", 1023),
        ] {
            assert_eq!(parse_device(text), Ok(index), "{text}");
        }
        for text in [
            "",
            "dst",
            "/dev/dst",
            "sda",
            "/dev/sdb",
            "dst0p1",
            "dst-1",
            "-1",
            "01",
            "dst00",
            "dst 1",
            "/dev/dst/0",
            "dev/dst0",
            "DST0",
            "+1",
        ] {
            let msg = parse_device(text).expect_err(text);
            assert!(msg.contains("not a DST device"), "{text}: {msg}");
        }
        for text in ["1024", "dst1024", "/dev/dst99999999999"] {
            let msg = parse_device(text).expect_err(text);
            assert!(msg.contains("out of range 0..1023"), "{text}: {msg}");
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn new_actions() {
        assert_eq!(
            parse(&["-a", "monitor"]).unwrap(),
            Command::Monitor {
                json: false,
                now: false,
                count: None
            }
        );
        assert_eq!(
            parse(&["-a", "monitor", "--json", "--count", "5"]).unwrap(),
            Command::Monitor {
                json: true,
                now: false,
                count: Some(5)
            }
        );
        assert_eq!(
            parse(&["monitor", "--now"]).unwrap(),
            Command::Monitor {
                json: false,
                now: true,
                count: None
            }
        );
        assert_eq!(
            err(&["-a", "monitor", "--count", "0"]).0,
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse(&["-a", "check", "-d", "/dev/dst4"]).unwrap(),
            Command::Check { index: 4 }
        );
        let (kind, msg) = err(&["-a", "check"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(msg.contains("-a check needs -d DEV"), "{msg}");
        assert_eq!(
            parse(&["-a", "genkey", "-f", "/etc/dst/psk"]).unwrap(),
            Command::Genkey {
                file: "/etc/dst/psk".into()
            }
        );
        let (kind, msg) = err(&["-a", "genkey"]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
        assert!(msg.contains("-a genkey needs -f PATH"), "{msg}");
        let (_, msg) = err(&["-a", "genkey", "-f", "/k", "-r", R]);
        assert!(msg.contains("genkey only writes a key file"), "{msg}");
    }

    #[test]
    fn action_as_a_word() {
        assert_eq!(
            parse(&["list", "--json"]).unwrap(),
            Command::List { json: true }
        );
        assert_eq!(
            parse(&["-r", R, "local"]).unwrap(),
            local(v4([192, 0, 2, 1], 1025))
        );
        // The same action twice is fine, two different ones are not.
        assert_eq!(
            parse(&["-a", "list", "list"]).unwrap(),
            Command::List { json: false }
        );
        let (kind, msg) = err(&["-a", "list", "status"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(msg.contains("two actions given, list and status"), "{msg}");
        assert_eq!(err(&["lits"]).0, ErrorKind::InvalidValue);
        let (_, msg) = err(&["local", "-r", R, "--wait", "5m"]);
        assert!(msg.contains("--wait=5m"), "{msg}");
    }

    #[test]
    fn crypto_threads() {
        assert_eq!(
            parse(&["-a", "set", "--crypto-threads", "0"]).unwrap(),
            config(Some(0), None, None)
        );
        assert_eq!(
            parse(&["-a", "set", "--crypto-threads", "64"]).unwrap(),
            config(Some(64), None, None)
        );
        assert_eq!(
            err(&["-a", "set", "--crypto-threads", "65"]).0,
            ErrorKind::ValueValidation
        );
        let (kind, msg) = err(&["-a", "set", "-d", "0", "--crypto-threads", "2"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(msg.contains("module-wide"), "{msg}");
        let (_, msg) = err(&["-a", "set", "--crypto-threads", "2", "--loss-timeout", "1s"]);
        assert!(msg.contains("give it with -d DEV"), "{msg}");
        let (_, msg) = err(&["-a", "set"]);
        assert!(msg.contains("or --crypto-threads N"), "{msg}");
        let (_, msg) = err(&["-a", "list", "--crypto-threads", "2"]);
        assert!(msg.contains("dstcfg set --crypto-threads N"), "{msg}");
    }

    fn config(
        crypto_threads: Option<u32>,
        rekey_mib: Option<u32>,
        rekey_seconds: Option<u32>,
    ) -> Command {
        Command::Config {
            settings: ModuleSettings {
                crypto_threads,
                rekey_mib,
                rekey_seconds,
            },
        }
    }

    #[test]
    fn rekey_limits() {
        for (size, mib) in [
            ("1M", 1),
            ("1MiB", 1),
            ("1048576", 1),
            ("1536M", 1536),
            ("64G", 65536),
            ("64gib", 65536),
            ("1024K", 1),
            ("1T", 1 << 20),
            ("1024G", 1 << 20),
        ] {
            assert_eq!(
                parse(&["-a", "set", "--rekey-after", size]).unwrap(),
                config(None, Some(mib), None),
                "{size}"
            );
        }
        for (secs, n) in [
            ("1", 1),
            ("3600", 3600),
            ("600s", 600),
            ("1.0s", 1),
            ("5000ms", 5),
            ("86400", 86400),
            ("86400s", 86400),
            ("10m", 600),
            ("1h", 3600),
            ("24h", 86400),
        ] {
            assert_eq!(
                parse(&["-a", "set", "--rekey-interval", secs]).unwrap(),
                config(None, None, Some(n)),
                "{secs}"
            );
        }
        // Any subset, in one request.
        assert_eq!(
            parse(&[
                "-a",
                "set",
                "--rekey-after",
                "16G",
                "--rekey-interval",
                "600",
                "--crypto-threads",
                "2"
            ])
            .unwrap(),
            config(Some(2), Some(16384), Some(600))
        );
        assert_eq!(
            parse(&["set", "--crypto-threads", "2"]).unwrap(),
            config(Some(2), None, None)
        );
    }

    #[test]
    fn rekey_limit_errors() {
        for (size, why) in [
            ("0", "out of range; expected 1M..1T"),
            ("0G", "out of range"),
            ("1025G", "1025G is out of range"),
            ("2T", "out of range"),
            ("16777216T", "too large; expected 1M..1T"),
            ("99999999999999999999", "too large"),
            ("65536", "65536 is not a whole number of MiB"),
            ("1536K", "not a whole number of MiB"),
            ("1.5G", "whole number; use a smaller unit"),
            ("64X", "unknown unit 'X'"),
            ("", "expected a number"),
            ("G", "expected a number"),
        ] {
            let arg = format!("--rekey-after={size}");
            let (kind, msg) = err(&["-a", "set", &arg]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{size}: {msg}");
            assert!(msg.contains("--rekey-after <SIZE>"), "{size}: {msg}");
            assert!(msg.contains(why), "{size}: {msg}");
        }
        for (secs, why) in [
            ("0", "0 s is out of range; expected 1..86400 s"),
            ("0s", "0 s is out of range"),
            ("86401", "86401 s is out of range"),
            ("1441m", "86460 s is out of range"),
            ("25h", "90000 s is out of range"),
            ("99999999999999999999", "too large"),
            ("1.5s", "1.5s is not a whole number of seconds"),
            ("1500ms", "not a whole number of seconds"),
            ("1.5", "whole number"),
            ("-1", "expected a duration"),
            ("s", "expected a duration"),
            ("", "expected a duration"),
            ("10xs", "unknown time unit"),
        ] {
            let arg = format!("--rekey-interval={secs}");
            let (kind, msg) = err(&["-a", "set", &arg]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{secs}: {msg}");
            assert!(msg.contains("--rekey-interval <TIME>"), "{secs}: {msg}");
            assert!(msg.contains(why), "{secs}: {msg}");
        }
    }

    #[test]
    fn rekey_limits_are_module_wide() {
        for (flag, value) in [("--rekey-after", "16G"), ("--rekey-interval", "600")] {
            let (kind, msg) = err(&["-a", "set", "-d", "0", flag, value]);
            assert_eq!(kind, ErrorKind::ArgumentConflict);
            assert!(
                msg.contains(&format!(
                    "{flag} is module-wide and does not go with -d DEV"
                )),
                "{msg}"
            );
            let (kind, msg) = err(&["-a", "set", flag, value, "--ping-timeout", "2s"]);
            assert_eq!(kind, ErrorKind::MissingRequiredArgument);
            assert!(msg.contains("give it with -d DEV"), "{msg}");
            for action in ["list", "status", "local", "export"] {
                let mut args = vec!["-a", action, flag, value];
                if action == "local" || action == "export" {
                    args.extend(["-r", R, "-f", "/dev/sdb"]);
                    if action == "local" {
                        args.truncate(6);
                    }
                }
                let (kind, msg) = err(&args);
                assert_eq!(kind, ErrorKind::ArgumentConflict, "{args:?}: {msg}");
                let own = format!("it is a module-wide setting of its own: dstcfg set {flag}");
                assert!(msg.contains(&own), "{args:?}: {msg}");
            }
        }
        // The first module-wide option given is named.
        let (_, msg) = err(&[
            "-a",
            "set",
            "-d",
            "0",
            "--rekey-interval",
            "9",
            "--rekey-after",
            "1G",
        ]);
        assert!(msg.contains("--rekey-after is module-wide"), "{msg}");
        let (_, msg) = err(&["-a", "set"]);
        assert!(
            msg.contains(
                "or --crypto-threads N, --rekey-after SIZE, --rekey-interval TIME for the module"
            ),
            "{msg}"
        );
    }

    #[test]
    fn security_options() {
        let cmd = parse(&[
            "-r",
            R,
            "-a",
            "export",
            "-f",
            "/dev/sdb",
            "--protection",
            "hmac",
            "--alg",
            "hmac(sha512)",
            "--key-file",
            "/etc/dst/psk",
            "--allow",
            "192.0.2.0/24",
            "--allow",
            "[2001:db8::]/32:ro",
            "--allow",
            "198.51.100.7:rw",
        ])
        .unwrap();
        let Command::Export {
            security, allow, ..
        } = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(
            security,
            Security {
                protection: Some(Protection::Hmac),
                alg: Some("hmac(sha512)".into()),
                key_file: Some("/etc/dst/psk".into()),
                key_desc: None,
            }
        );
        let shown: Vec<String> = allow.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            ["192.0.2.0/24:rw", "2001:db8::/32:ro", "198.51.100.7/32:rw"]
        );
        let cmd = parse(&[
            "-r",
            R,
            "-a",
            "local",
            "--queues",
            "16",
            "--protection",
            "crc32c",
        ])
        .unwrap();
        let Command::Local {
            queues, security, ..
        } = cmd
        else {
            panic!("{cmd:?}");
        };
        assert_eq!(queues, Some(16));
        assert_eq!(security.protection, Some(Protection::Crc32c));
        assert_eq!(
            err(&["-r", R, "-a", "local", "--queues", "17"]).0,
            ErrorKind::ValueValidation
        );
        assert_eq!(
            err(&["-r", R, "-a", "local", "--queues", "0"]).0,
            ErrorKind::ValueValidation
        );
        // A key without protection: it authenticates the handshake.
        assert!(parse(&["-r", R, "-a", "local", "--key-file", "/k"]).is_ok());
        for mode in ["hmac", "aead"] {
            let (kind, msg) = err(&["-r", R, "-a", "local", "--protection", mode]);
            assert_eq!(kind, ErrorKind::MissingRequiredArgument);
            assert!(
                msg.contains(&format!(
                    "--protection {mode} needs --key-file PATH or --key-desc DESC"
                )),
                "{msg}"
            );
            assert!(msg.contains("dstcfg genkey -f PATH"), "{msg}");
        }
        let (_, msg) = err(&["-r", R, "-a", "local", "--alg", "gcm(aes)"]);
        assert!(msg.contains("--alg names the algorithm"), "{msg}");
        let (_, msg) = err(&[
            "-r",
            R,
            "-a",
            "local",
            "--protection",
            "crc32c",
            "--alg",
            "gcm(aes)",
        ]);
        assert!(msg.contains("--protection crc32c takes no --alg"), "{msg}");
        assert_eq!(
            err(&["-r", R, "-a", "local", "--protection", "rot13"]).0,
            ErrorKind::InvalidValue
        );
        let (_, msg) = err(&["-r", R, "-a", "local", "--allow", "10.0.0.0/8"]);
        assert!(
            msg.contains("the allow-list belongs to the export"),
            "{msg}"
        );
        let (_, msg) = err(&["-r", R, "-a", "export", "-f", "/d", "--queues", "2"]);
        assert!(msg.contains("the local node chooses its queues"), "{msg}");
        let (_, msg) = err(&["-a", "set", "-d", "0", "--protection", "none"]);
        assert!(msg.contains("security is fixed"), "{msg}");
        let mut many = vec!["-r", R, "-a", "export", "-f", "/d"];
        let prefixes: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
        for p in &prefixes {
            many.extend(["--allow", p.as_str()]);
        }
        let (kind, msg) = err(&many);
        assert_eq!(kind, ErrorKind::TooManyValues);
        assert!(msg.contains("at most 32"), "{msg}");
        many.truncate(many.len() - 2);
        assert!(parse(&many).is_ok());
        let (_, msg) = err(&[
            "-r",
            R,
            "-a",
            "export",
            "-f",
            "/d",
            "--allow",
            "10.0.0.0/8",
            "--allow",
            "10.0.0.0/8:ro",
        ]);
        assert!(msg.contains("--allow 10.0.0.0/8 is given twice"), "{msg}");
    }

    #[test]
    fn key_desc() {
        let security = |args: &[&str]| match parse(args).unwrap() {
            Command::Export { security, .. } | Command::Local { security, .. } => security,
            cmd => panic!("{cmd:?}"),
        };
        assert_eq!(
            security(&[
                "-r",
                R,
                "-a",
                "export",
                "-f",
                "/dev/sdb",
                "--protection",
                "aead",
                "--key-desc",
                "dst:pair1",
            ]),
            Security {
                protection: Some(Protection::Aead),
                alg: None,
                key_file: None,
                key_desc: Some("dst:pair1".into()),
            }
        );
        // Spaces and other printable characters are kept as given, as in
        // NVMe's descriptions; so is the = form.
        let nvme = "NVMe0R01 nqn.2014-08.org.nvmexpress:uuid:1 nqn.2024-01.example:ключ";
        let arg = format!("--key-desc={nvme}");
        let given = security(&["-r", R, "-a", "local", "--protection", "hmac", &arg]);
        assert_eq!(given.key_desc.as_deref(), Some(nvme));
        assert_eq!(given.key_file, None);
        // Without protection it authenticates the handshake, as a key file.
        let given = security(&["-r", R, "-a", "local", "--key-desc", "dst:pair1"]);
        assert_eq!(given.key_desc.as_deref(), Some("dst:pair1"));
        // The longest the module takes: 255 bytes (and its NUL).
        let longest = "k".repeat(MAX_KEY_DESC_LEN);
        let given = security(&["-r", R, "-a", "local", "--key-desc", &longest]);
        assert_eq!(given.key_desc, Some(longest));

        // One key, from a file or from the keyring.
        let (kind, msg) = err(&[
            "-r",
            R,
            "-a",
            "local",
            "--protection",
            "aead",
            "--key-file",
            "/etc/dst/psk",
            "--key-desc",
            "dst:pair1",
        ]);
        assert_eq!(kind, ErrorKind::ArgumentConflict, "{msg}");
        assert!(
            msg.contains(
                "--key-file and --key-desc both give the pre-shared key; give one of them"
            ),
            "{msg}"
        );
        let (kind, _) = err(&[
            "-r",
            R,
            "-a",
            "export",
            "-f",
            "/dev/sdb",
            "--key-desc",
            "dst:pair1",
            "--key-file",
            "/etc/dst/psk",
        ]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);

        // Export and local only, as --key-file.
        let (kind, msg) = err(&["-a", "set", "-d", "0", "--key-desc", "dst:pair1"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("--key-desc cannot be used with -a set; security is fixed"),
            "{msg}"
        );
        let (_, msg) = err(&["-r", R, "-a", "unexport", "--key-desc", "dst:pair1"]);
        assert!(
            msg.contains(
                "--key-desc cannot be used with -a unexport; it only applies to -a export and \
                 -a local"
            ),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "genkey", "-f", "/k", "--key-desc", "dst:pair1"]);
        assert!(
            msg.contains("--key-desc cannot be used with -a genkey"),
            "{msg}"
        );

        // The description itself.
        for (desc, needle) in [
            ("", "empty description"),
            ("dst:\0pair1", "NUL"),
            ("dst:\tpair1", "'\\t' is not allowed"),
            ("dst:pair1\n", "'\\n' is not allowed"),
            ("dst:\u{7f}", "is not allowed"),
        ] {
            let arg = format!("--key-desc={desc}");
            let (kind, msg) = err(&["-r", R, "-a", "local", &arg]);
            assert_eq!(kind, ErrorKind::ValueValidation, "{desc:?}: {msg}");
            assert!(msg.contains(needle), "{desc:?}: {msg}");
            assert!(msg.contains("--key-desc <DESC>"), "{desc:?}: {msg}");
        }
        let long = "k".repeat(MAX_KEY_DESC_LEN + 1);
        let (kind, msg) = err(&["-r", R, "-a", "local", "--key-desc", &long]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(
            msg.contains("256 bytes; a key description has at most 255"),
            "{msg}"
        );
        // Bytes, not characters: 128 two-byte characters are too many.
        let wide = "ж".repeat(128);
        assert_eq!(
            err(&["-r", R, "-a", "local", "--key-desc", &wide]).0,
            ErrorKind::ValueValidation
        );
    }

    #[test]
    fn client_id() {
        let id = |value: &str| match parse(&["-r", R, "-a", "local", "--client-id", value]) {
            Ok(Command::Local { client_id, .. }) => Ok(client_id.unwrap()),
            Ok(cmd) => panic!("{cmd:?}"),
            Err(e) => Err((e.kind(), e.to_string())),
        };
        for (text, value) in [
            ("1", 1),
            ("4660", 0x1234),
            ("0x1234", 0x1234),
            ("0X1234", 0x1234),
            ("0xABCdef", 0xabcdef),
            // As -a list prints it, zero-padded to 16 digits.
            ("0x0000000000001234", 0x1234),
            ("0x0123456789abcdef", 0x0123_4567_89ab_cdef),
            ("0xffffffffffffffff", u64::MAX),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(id(text), Ok(value), "{text}");
        }
        for (text, why) in [
            ("0", "0 is not a client id"),
            ("0x0", "0 is not a client id"),
            ("0x0000000000000000", "0 is not a client id"),
            ("18446744073709551616", "too large; a client id has 64 bits"),
            ("0x10000000000000000", "too large"),
            ("", "expected a number"),
            ("0x", "expected a number"),
            ("x12", "expected a number"),
            ("12ab", "expected a number"),
            ("0xfg", "expected a number"),
            ("+5", "expected a number"),
            ("1_000", "expected a number"),
            ("0b101", "expected a number"),
        ] {
            let (kind, msg) = id(text).expect_err(text);
            assert_eq!(kind, ErrorKind::ValueValidation, "{text}: {msg}");
            assert!(
                msg.contains("--client-id") && msg.contains(why),
                "{text}: {msg}"
            );
        }
        // A negative number looks like a flag to clap: still a usage error.
        assert!(id("-1").is_err());
        let (_, msg) = id("0").unwrap_err();
        assert!(
            msg.contains("leave --client-id out for a random one"),
            "{msg}"
        );
        // Not sent unless given.
        assert_eq!(
            parse(&["-r", R, "-a", "local"]).unwrap(),
            local(v4([192, 0, 2, 1], 1025))
        );
        // Only -a local takes it.
        let (kind, msg) = err(&["-a", "set", "-d", "0", "--client-id", "7"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains(
                "--client-id cannot be used with -a set; it is fixed when the device is created"
            ),
            "{msg}"
        );
        let (kind, msg) = err(&["-r", R, "-a", "export", "-f", "/d", "--client-id", "7"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("--client-id cannot be used with -a export; it identifies a device"),
            "{msg}"
        );
        let (kind, msg) = err(&["-a", "list", "--client-id", "7"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("--client-id cannot be used with -a list; it only applies to -a local"),
            "{msg}"
        );
    }

    #[test]
    fn allow_syntax() {
        for (text, shown) in [
            ("0.0.0.0/0", "0.0.0.0/0:rw"),
            ("192.0.2.7", "192.0.2.7/32:rw"),
            ("192.0.2.0/24:ro", "192.0.2.0/24:ro"),
            ("::/0:ro", "::/0:ro"),
            ("2001:db8::1", "2001:db8::1/128:rw"),
            ("[2001:db8::]/48:rw", "2001:db8::/48:rw"),
            ("fe80::/10", "fe80::/10:rw"),
            ("2001:db8::ab", "2001:db8::ab/128:rw"),
        ] {
            assert_eq!(parse_allow(text).unwrap().to_string(), shown, "{text}");
        }
        for (text, why) in [
            ("", "not an IPv4 or IPv6 address"),
            ("10.0.0.0/33", "bad prefix length '/33'; expected /0../32"),
            ("2001:db8::/129", "expected /0../128"),
            ("10.0.0.0/x", "bad prefix length"),
            (
                "10.0.0.1/24",
                "has host bits set; did you mean 10.0.0.0/24?",
            ),
            ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
            ("10.0.0.0/8:rx", "unknown access ':rx'; use :ro or :rw"),
            ("2001:db8::/32:RO", "unknown access ':RO'"),
            ("host.example/24", "not an IPv4 or IPv6 address"),
        ] {
            let msg = parse_allow(text).expect_err(text);
            assert!(msg.contains(why), "{text}: {msg}");
        }
    }

    #[test]
    fn algorithm_names() {
        assert_eq!(parse_alg("gcm(aes)").unwrap(), "gcm(aes)");
        assert_eq!(
            parse_alg("rfc7539(chacha20,poly1305)").unwrap(),
            "rfc7539(chacha20,poly1305)"
        );
        assert_eq!(parse_alg("hmac(sha384)").unwrap(), "hmac(sha384)");
        for weak in [
            "hmac(md5)",
            "hmac(sha1)",
            "vmac64(aes)",
            "cbcmac(aes)",
            "",
            "gcm (aes)",
        ] {
            assert!(
                parse_alg(weak).unwrap_err().contains("not allowed"),
                "{weak}"
            );
        }
    }

    #[test]
    fn identities() {
        // -a export -n NAME.
        let cmd = parse(&[
            "-r",
            R,
            "-a",
            "export",
            "-f",
            "/dev/sdb",
            "-n",
            "store1:sdb",
        ])
        .unwrap();
        let Command::Export { name, .. } = &cmd else {
            panic!("{cmd:?}");
        };
        assert_eq!(name.as_deref(), Some("store1:sdb"));
        let cmd = parse(&["-r", R, "-a", "export", "-f", "/d", "--name=x"]).unwrap();
        assert!(matches!(cmd, Command::Export { name: Some(n), .. } if n == "x"));
        // -a local -n NAME --client-name NAME, in either order and form.
        for args in [
            &[
                "-r",
                R,
                "-a",
                "local",
                "-n",
                "store1:sdb",
                "--client-name",
                "web1",
            ][..],
            &[
                "local",
                "--client-name=web1",
                "--name",
                "store1:sdb",
                "-r",
                R,
            ][..],
            &[
                "-a",
                "local",
                "-r",
                R,
                "-nstore1:sdb",
                "--client-name",
                "web1",
            ][..],
        ] {
            let cmd = parse(args).unwrap();
            let Command::Local {
                export_name,
                client_name,
                ..
            } = &cmd
            else {
                panic!("{cmd:?}");
            };
            assert_eq!(export_name.as_deref(), Some("store1:sdb"), "{args:?}");
            assert_eq!(client_name.as_deref(), Some("web1"), "{args:?}");
        }
        // Each alone.
        let cmd = parse(&["-r", R, "-a", "local", "--client-name", "web1"]).unwrap();
        assert!(
            matches!(&cmd, Command::Local { export_name: None, client_name: Some(c), .. } if c == "web1"),
            "{cmd:?}"
        );
        let cmd = parse(&["-r", R, "-a", "local", "-n", "a"]).unwrap();
        assert!(
            matches!(&cmd, Command::Local { export_name: Some(n), client_name: None, .. } if n == "a"),
            "{cmd:?}"
        );
        // Not sent unless given: the brief forms are unchanged.
        assert_eq!(
            parse(&["-r", R, "-a", "export", "-f", "/dev/sdb"]).unwrap(),
            export(v4([192, 0, 2, 1], 1025), "/dev/sdb")
        );
        assert_eq!(
            parse(&["-r", R, "-a", "local"]).unwrap(),
            local(v4([192, 0, 2, 1], 1025))
        );
        // A name starting with '-' needs the = form.
        let cmd = parse(&["-r", R, "-a", "local", "--name=-x"]).unwrap();
        assert!(matches!(cmd, Command::Local { export_name: Some(n), .. } if n == "-x"));

        // Invalid names: a usage error naming the option.
        let long = "n".repeat(64);
        for (flag, action) in [
            ("-n", "export"),
            ("-n", "local"),
            ("--client-name", "local"),
        ] {
            for (value, why) in [
                ("", "empty name"),
                ("two words", "' ' is not allowed"),
                ("tab\there", "'\\t' is not allowed"),
                ("caf\u{e9}", "'\u{e9}' is not allowed"),
                ("del\u{7f}", "'\\u{7f}' is not allowed"),
                (long.as_str(), "64 characters; a name has at most 63"),
            ] {
                let mut args = vec!["-r", R, "-a", action, flag, value];
                if action == "export" {
                    args.extend(["-f", "/dev/sdb"]);
                }
                let (kind, msg) = err(&args);
                assert_eq!(kind, ErrorKind::ValueValidation, "{args:?}: {msg}");
                let shown = if flag == "-n" { "--name <NAME>" } else { flag };
                assert!(msg.contains(shown) && msg.contains(why), "{args:?}: {msg}");
            }
        }
        // The bounds: 1 and 63 characters, '!' and '~'.
        let n63 = "~".repeat(63);
        for value in ["!", "~", n63.as_str(), "host-1.example:dm-0", "a/b@c[0]"] {
            assert!(
                parse(&["-r", R, "-a", "local", "-n", value]).is_ok(),
                "{value}"
            );
            assert!(
                parse(&["-r", R, "-a", "local", "--client-name", value]).is_ok(),
                "{value}"
            );
        }

        // Misplaced: refused like the other action-specific options.
        let (kind, msg) = err(&["-r", R, "-a", "export", "-f", "/d", "--client-name", "w"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("--client-name cannot be used with -a export; it names a local node"),
            "{msg}"
        );
        let (kind, msg) = err(&["-a", "set", "-d", "0", "-n", "x", "--max-resends", "1"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains("-n cannot be used with -a set; identities are fixed when"),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "set", "-d", "0", "--client-name", "x"]);
        assert!(
            msg.contains("--client-name cannot be used with -a set; identities are fixed"),
            "{msg}"
        );

        let (_, msg) = err(&["-a", "list", "-n", "x"]);
        assert!(
            msg.contains(
                "-n cannot be used with -a list; it only applies to -a export, -a unexport, \
                 -a release and -a local"
            ),
            "{msg}"
        );
        let (_, msg) = err(&["-a", "delete", "-d", "0", "--client-name", "x"]);
        assert!(
            msg.contains(
                "--client-name cannot be used with -a delete; it only applies to -a local"
            ),
            "{msg}"
        );
    }

    /// The `--client` entries of an export command line.
    fn clients_of(args: &[&str]) -> Result<(Security, Vec<ClientRule>), (ErrorKind, String)> {
        let mut all = vec!["-r", R, "-a", "export", "-f", "/dev/sdb"];
        all.extend(args);
        match parse(&all) {
            Ok(Command::Export {
                security, clients, ..
            }) => Ok((security, clients)),
            Ok(cmd) => panic!("{cmd:?}"),
            Err(e) => Err((e.kind(), e.to_string())),
        }
    }

    fn client(name: &str, key: ClientKeySource, read_only: bool) -> ClientRule {
        ClientRule {
            name: name.into(),
            key,
            read_only,
        }
    }

    fn file(path: &str) -> ClientKeySource {
        ClientKeySource::File(path.into())
    }

    fn keyring(desc: &str) -> ClientKeySource {
        ClientKeySource::Keyring(desc.into())
    }

    #[test]
    fn client_forms() {
        let (security, clients) = clients_of(&[
            "--protection",
            "aead",
            "--client",
            "web1=/etc/dst/web1.key",
            "--client",
            "backup=@dst:backup,ro",
            "--client=db=/etc/dst/db.key,rw",
        ])
        .unwrap();
        assert_eq!(
            clients,
            [
                client("web1", file("/etc/dst/web1.key"), false),
                client("backup", keyring("dst:backup"), true),
                client("db", file("/etc/dst/db.key"), false),
            ]
        );
        // The clients' keys satisfy aead: the export needs none of its own.
        assert_eq!(
            security,
            Security {
                protection: Some(Protection::Aead),
                alg: None,
                key_file: None,
                key_desc: None,
            }
        );
        for (text, expected) in [
            // NAME ends at the first '='; the path may hold more.
            ("a=/etc/dst/k=v", client("a", file("/etc/dst/k=v"), false)),
            ("a==k", client("a", file("=k"), false)),
            ("a=/k=v,ro", client("a", file("/k=v"), true)),
            // A file whose name ends in ,ro: the access after it.
            (
                "a=/etc/dst/x,ro,rw",
                client("a", file("/etc/dst/x,ro"), false),
            ),
            (
                "a=/etc/dst/x,rw,ro",
                client("a", file("/etc/dst/x,rw"), true),
            ),
            // A comma before something other than letters is the file's.
            ("a=/etc/dst/k,1", client("a", file("/etc/dst/k,1"), false)),
            (
                "a=relative/web1.key",
                client("a", file("relative/web1.key"), false),
            ),
            // '@' starts a keyring description only at the start of the key.
            ("a=/etc/@x", client("a", file("/etc/@x"), false)),
            ("a=@dst:a=b", client("a", keyring("dst:a=b"), false)),
            (
                "a=@NVMe0R01 nqn.x ключ,ro",
                client("a", keyring("NVMe0R01 nqn.x ключ"), true),
            ),
            (
                "host-1.example:dm-0=@k",
                client("host-1.example:dm-0", keyring("k"), false),
            ),
            ("~=/k", client("~", file("/k"), false)),
        ] {
            let arg = format!("--client={text}");
            let (_, clients) = clients_of(&[&arg]).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(clients, std::slice::from_ref(&expected), "{text}");
            // As the rule shows itself, it parses back the same.
            assert_eq!(
                parse_client(&expected.to_string()).unwrap(),
                expected,
                "{text}"
            );
        }
        assert_eq!(
            client("web1", file("/etc/dst/web1.key"), false).to_string(),
            "web1=/etc/dst/web1.key,rw"
        );
        assert_eq!(
            client("backup", keyring("dst:backup"), true).to_string(),
            "backup=@dst:backup,ro"
        );
        // Next to the export's own key, from a file or the keyring.
        let (security, clients) = clients_of(&[
            "--protection",
            "hmac",
            "--key-file",
            "/etc/dst/psk",
            "--client",
            "web1=/etc/dst/web1.key,ro",
        ])
        .unwrap();
        assert_eq!(security.key_file, Some("/etc/dst/psk".into()));
        assert_eq!(clients.len(), 1);
        let (security, _) =
            clients_of(&["--key-desc", "dst:pair1", "--client", "web1=@dst:web1"]).unwrap();
        assert_eq!(security.key_desc.as_deref(), Some("dst:pair1"));
        // Not sent unless given.
        assert_eq!(clients_of(&[]).unwrap().1, []);
    }

    #[test]
    fn client_errors() {
        let long = format!("{}=/k", "n".repeat(64));
        for (text, why) in [
            (
                "web1",
                "no '=' after the client name; expected NAME=PATH or NAME=@DESC",
            ),
            ("", "no '=' after the client name"),
            ("=/etc/dst/k", "client name: empty name"),
            ("two words=/k", "client name: ' ' is not allowed"),
            ("caf\u{e9}=/k", "client name: '\u{e9}' is not allowed"),
            ("tab\there=/k", "'\\t' is not allowed"),
            (
                long.as_str(),
                "client name: 64 characters; a name has at most 63",
            ),
            ("web1=", "no key file after 'web1='"),
            ("web1=,ro", "no key file after 'web1='"),
            ("web1=,rw", "no key file after 'web1='"),
            ("web1=@", "client web1's key: empty description"),
            ("web1=@,ro", "client web1's key: empty description"),
            ("web1=@dst:\tx", "client web1's key: '\\t' is not allowed"),
            ("web1=/k,RO", "unknown access ',RO'; use ,ro or ,rw"),
            ("web1=/k,readonly", "unknown access ',readonly'"),
            ("web1=/k,r", "unknown access ',r'"),
            ("web1=@dst:x,ro,w", "unknown access ',w'"),
        ] {
            let arg = format!("--client={text}");
            let (kind, msg) = clients_of(&[&arg]).expect_err(text);
            assert_eq!(kind, ErrorKind::ValueValidation, "{text:?}: {msg}");
            assert!(msg.contains(why), "{text:?}: {msg}");
            assert!(msg.contains("--client <NAME=PATH[,ro]>"), "{text:?}: {msg}");
        }
        // The longest description the module takes, and one byte more.
        let longest = format!("web1=@{}", "k".repeat(MAX_KEY_DESC_LEN));
        assert!(clients_of(&["--client", &longest]).is_ok());
        let longer = format!("web1=@{}", "k".repeat(MAX_KEY_DESC_LEN + 1));
        let (_, msg) = clients_of(&["--client", &longer]).unwrap_err();
        assert!(msg.contains("a key description has at most 255"), "{msg}");

        // Each name once, whatever the keys.
        let (kind, msg) = clients_of(&[
            "--client",
            "web1=/etc/dst/a.key",
            "--client",
            "backup=@dst:backup",
            "--client",
            "web1=@dst:web1,ro",
        ])
        .unwrap_err();
        assert_eq!(kind, ErrorKind::ArgumentConflict, "{msg}");
        assert!(
            msg.contains("--client web1 is given twice; give each client name once"),
            "{msg}"
        );
        // Names are bytes: another case is another identity.
        assert!(clients_of(&["--client", "web1=/a", "--client", "WEB1=/b"]).is_ok());

        // At most 16.
        let names: Vec<String> = (0..17)
            .map(|i| format!("node{i}=/etc/dst/{i}.key"))
            .collect();
        let mut many = Vec::new();
        for n in &names {
            many.extend(["--client", n.as_str()]);
        }
        let (kind, msg) = clients_of(&many).unwrap_err();
        assert_eq!(kind, ErrorKind::TooManyValues);
        assert!(
            msg.contains("--client given 17 times; an export takes at most 16 clients"),
            "{msg}"
        );
        many.truncate(many.len() - 2);
        assert_eq!(clients_of(&many).unwrap().1.len(), MAX_CLIENTS);

        // hmac and aead need a key: the export's own or a client's.
        for mode in ["hmac", "aead"] {
            let (kind, msg) = clients_of(&["--protection", mode]).unwrap_err();
            assert_eq!(kind, ErrorKind::MissingRequiredArgument);
            assert!(
                msg.contains(&format!(
                    "--protection {mode} needs --key-file PATH or --key-desc DESC, the \
                     pre-shared key of both nodes, or --client NAME=PATH (or NAME=@DESC) for \
                     each client"
                )),
                "{msg}"
            );
            assert!(clients_of(&["--protection", mode, "--client", "w=/k"]).is_ok());
            assert!(clients_of(&["--protection", mode, "--client", "w=@d"]).is_ok());
            // A local node's message does not offer --client.
            let (_, msg) = err(&["-r", R, "-a", "local", "--protection", mode]);
            let first = msg.lines().next().unwrap();
            assert!(first.contains("needs --key-file PATH"), "{msg}");
            assert!(!first.contains("--client"), "{msg}");
        }
        // --alg with a mode the clients' keys satisfy.
        assert!(clients_of(&[
            "--protection",
            "hmac",
            "--alg",
            "hmac(sha512)",
            "--client",
            "w=/k"
        ])
        .is_ok());

        // Export only.
        let (kind, msg) = err(&["-r", R, "-a", "local", "--client", "web1=/k"]);
        assert_eq!(kind, ErrorKind::ArgumentConflict);
        assert!(
            msg.contains(
                "--client cannot be used with -a local; it gives a client a key of its own on \
                 the export"
            ),
            "{msg}"
        );
        assert!(msg.contains("--client-name NAME"), "{msg}");
        let (_, msg) = err(&["-a", "set", "-d", "0", "--client", "web1=/k"]);
        assert!(
            msg.contains("--client cannot be used with -a set; security is fixed"),
            "{msg}"
        );
        let (_, msg) = err(&["-r", R, "-a", "unexport", "--client", "web1=/k"]);
        assert!(
            msg.contains("--client cannot be used with -a unexport; it only applies to -a export"),
            "{msg}"
        );
    }
}
