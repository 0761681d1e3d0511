//! Command line: `dstcfg -r ADDR -a export -f /dev/sdb`, `dstcfg -r ADDR -a
//! local`, `dstcfg -a set -d dst0 --loss-timeout 30s`, `dstcfg -a list`,
//! `dstcfg -a delete -d dst0`, ...
//!
//! clap parses the flags into [`Cli`]; [`Cli::into_command`] then checks
//! which flags each action needs or forbids and resolves the address, giving
//! a [`Command`]. Every error here is a usage error (a `clap::Error`, exit
//! status 2).

use std::net::{IpAddr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

use crate::message::DeviceSettings;
use crate::uapi;

/// TCP port used when neither `-r ADDR:PORT` nor `-p` gives one.
pub const DEFAULT_PORT: u16 = uapi::DST_DEFAULT_PORT;
/// Highest `--max-io-pages` the module accepts.
pub const MAX_IO_PAGES: u32 = 1024;
/// Highest `--queue-depth` the module accepts.
pub const MAX_QUEUE_DEPTH: u32 = 1024;
/// Highest device index N of `/dev/dstN`.
pub const MAX_INDEX: u32 = 1023;
/// Longest `-f` path the module accepts, in bytes.
pub const MAX_PATH_LEN: usize = 255;
/// `--req-timeout` in ms (the module's range).
pub const REQ_TIMEOUT_MS: RangeInclusive<u32> = 100..=3_600_000;
/// `--max-resends`.
pub const MAX_RESENDS: RangeInclusive<u32> = 0..=1000;
/// `--reconnect-delay` in ms.
pub const RECONNECT_DELAY_MS: RangeInclusive<u32> = 10..=600_000;
/// `--ping-interval` in ms, besides 0 (no pings).
pub const PING_INTERVAL_MS: RangeInclusive<u32> = 100..=3_600_000;
/// `--ping-timeout` in ms.
pub const PING_TIMEOUT_MS: RangeInclusive<u32> = 100..=3_600_000;
/// `--loss-timeout` in ms.
pub const LOSS_TIMEOUT_MS: RangeInclusive<u32> = 100..=86_400_000;

const EXAMPLES: &str = "\
Examples:
  Export the local block device /dev/sdb, listening on 192.0.2.1 port 1025:
    dstcfg -r 192.0.2.1 -a export -f /dev/sdb

  Attach the device exported by 192.0.2.1 as a local block device; prints
  its path (e.g. /dev/dst0):
    dstcfg -r 192.0.2.1 -a local

  List the exports and devices of this machine, as a table or as JSON:
    dstcfg -a list
    dstcfg -a list --json

  Delete the local device /dev/dst0 (also: -d /dev/dst0, -d 0):
    dstcfg -a delete -d dst0

  Attach a device that fails IO after 10 s without the export node (instead
  of 60 s), then let the live device wait 5 minutes instead:
    dstcfg -r 192.0.2.1 -a local --loss-timeout 10s
    dstcfg -a set -d dst0 --loss-timeout 300s

  Stop the export listening on 192.0.2.1 port 1025:
    dstcfg -r 192.0.2.1 -a unexport

  Read-only export of the first 10 GiB on port 2000; attach it over IPv6 as
  /dev/dst3 with 64 requests in flight:
    dstcfg -r 192.0.2.1 -p 2000 -a export -f /dev/sdb --read-only --size 10G
    dstcfg -r [2001:db8::1]:2000 -a local -i 3 --queue-depth 64

Times (MS) are milliseconds; a suffix s or ms may be given (30s = 30000).
Defaults of a new device: --req-timeout 15000, --max-resends 10,
--reconnect-delay 1000, --ping-interval 5000, --ping-timeout 10000,
--loss-timeout 60000.

Exit status: 0 on success, 1 if the action failed (the kernel's reason is
printed), 2 on a usage error.

All actions need the dst module loaded (insmod dst.ko) and CAP_NET_ADMIN
(run as root).";

const USAGE: &str = "\
dstcfg -r ADDR [-p PORT] -a export -f PATH [--read-only] [--size SIZE] [--max-io-pages N]
       dstcfg -r ADDR [-p PORT] -a unexport
       dstcfg -r ADDR [-p PORT] -a local [-i N] [--max-io-pages N] [--queue-depth N] [SETTINGS]
       dstcfg -a set -d DEV SETTINGS
       dstcfg -a delete -d DEV
       dstcfg -a list [--json]
       dstcfg -a status [--json]
       SETTINGS: [--req-timeout MS] [--max-resends N] [--reconnect-delay MS]
                 [--ping-interval MS] [--ping-timeout MS] [--loss-timeout MS]";

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionKind {
    /// Serve the local block device -f PATH to DST local nodes, listening on -r ADDR
    Export,
    /// Stop the export listening on -r ADDR (and port)
    Unexport,
    /// Connect to the export node at -r ADDR and provide its device as /dev/dstN; prints the path
    Local,
    /// Disconnect and delete the local device -d DEV
    Delete,
    /// Change the timeouts of the live local device -d DEV
    Set,
    /// Show the exports and local devices of this machine
    List,
    /// Show the version of the loaded dst module and its wire protocol
    Status,
}

impl ActionKind {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Export => "export",
            ActionKind::Unexport => "unexport",
            ActionKind::Local => "local",
            ActionKind::Delete => "delete",
            ActionKind::Set => "set",
            ActionKind::List => "list",
            ActionKind::Status => "status",
        }
    }
}

/// Raw command-line flags, as clap parses them.
#[derive(Debug, Parser)]
#[command(
    name = "dstcfg",
    version,
    about = "Configure DST, the network block device (dst.ko)",
    override_usage = USAGE,
    after_help = EXAMPLES,
    after_long_help = EXAMPLES,
)]
pub struct Cli {
    /// Action to perform (required)
    #[arg(short = 'a', long = "action", value_name = "ACTION", value_enum)]
    pub action: Option<ActionKind>,

    /// Network address: for export and unexport the local address to listen
    /// on, for local the export node to connect to. IPv4, IPv6 (brackets
    /// allowed) or a host name, optionally with :PORT or [IPv6]:PORT
    /// (export, unexport, local)
    #[arg(short = 'r', long = "remote", value_name = "ADDR")]
    pub remote: Option<String>,

    /// TCP port, if ADDR has none (export, unexport, local) [default: 1025]
    #[arg(short = 'p', long = "port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,

    /// Block device to export, e.g. /dev/sdb (export only, required)
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<PathBuf>,

    /// Serve the device read-only (export only) [default: read-write]
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Export only the first SIZE bytes of the device; K, M, G, T suffixes
    /// are binary (1K = 1024) (export only) [default: the whole device]
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,

    /// Largest request, in 4 KiB pages, 1..1024 (export, local) [default:
    /// 256 = 1 MiB]
    #[arg(long = "max-io-pages", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_IO_PAGES as i64))]
    pub max_io_pages: Option<u32>,

    /// Create /dev/dstN with this N, 0..1023 (local only) [default: the
    /// lowest free one]
    #[arg(short = 'i', long = "index", value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=MAX_INDEX as i64))]
    pub index: Option<u32>,

    /// Requests in flight to the export node, 1..1024 (local only) [default:
    /// 128]
    #[arg(long = "queue-depth", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUE_DEPTH as i64))]
    pub queue_depth: Option<u32>,

    /// Device to delete or change: dstN, /dev/dstN or N (delete, set;
    /// required)
    #[arg(short = 'd', long = "device", value_name = "DEV", value_parser = parse_device)]
    pub device: Option<u32>,

    /// A request unanswered this long makes the local node drop the
    /// connection, reconnect and resend it; 100..3600000 ms (local, set)
    /// [default: 15000]
    #[arg(long = "req-timeout", value_name = "MS", value_parser = parse_req_timeout)]
    pub req_timeout: Option<u32>,

    /// Resends of one request before it fails with an IO error, 0..1000
    /// (local, set) [default: 10]
    #[arg(long = "max-resends", value_name = "N",
          value_parser = clap::value_parser!(u32).range(
              *MAX_RESENDS.start() as i64..=*MAX_RESENDS.end() as i64))]
    pub max_resends: Option<u32>,

    /// Pause between reconnect attempts, 10..600000 ms (local, set)
    /// [default: 1000]
    #[arg(long = "reconnect-delay", value_name = "MS", value_parser = parse_reconnect_delay)]
    pub reconnect_delay: Option<u32>,

    /// Ping an idle connection this often, 100..3600000 ms, 0 = never (local,
    /// set) [default: 5000]
    #[arg(long = "ping-interval", value_name = "MS", value_parser = parse_ping_interval)]
    pub ping_interval: Option<u32>,

    /// No answer to a ping this long: reconnect; 100..3600000 ms (local, set)
    /// [default: 10000]
    #[arg(long = "ping-timeout", value_name = "MS", value_parser = parse_ping_timeout)]
    pub ping_timeout: Option<u32>,

    /// Disconnected this long, pending and new IO fail with EIO until the
    /// export node is back (reconnect attempts go on); 100..86400000 ms
    /// (local, set) [default: 60000]
    #[arg(long = "loss-timeout", value_name = "MS", value_parser = parse_loss_timeout)]
    pub loss_timeout: Option<u32>,

    /// Print JSON instead of text (list, status)
    #[arg(long)]
    pub json: bool,
}

/// A validated command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `-a status [--json]`.
    Status {
        /// Print JSON instead of text.
        json: bool,
    },
    /// `-r ADDR -a export -f PATH [--read-only] [--size SIZE]
    /// [--max-io-pages N]`.
    Export {
        /// Address to listen on.
        remote: SocketAddr,
        /// Block device to serve.
        file: PathBuf,
        /// Serve read-only.
        read_only: bool,
        /// Serve only the first `size` bytes.
        size: Option<u64>,
        /// Largest request in 4 KiB pages.
        max_io_pages: Option<u32>,
    },
    /// `-r ADDR -a unexport`.
    Unexport {
        /// Address the export listens on.
        remote: SocketAddr,
    },
    /// `-r ADDR -a local [-i N] [--max-io-pages N] [--queue-depth N]
    /// [SETTINGS]`.
    Local {
        /// Export node to connect to.
        remote: SocketAddr,
        /// N of `/dev/dstN`.
        index: Option<u32>,
        /// Largest request in 4 KiB pages.
        max_io_pages: Option<u32>,
        /// Requests in flight.
        queue_depth: Option<u32>,
        /// Timeouts and resend limit given.
        settings: DeviceSettings,
    },
    /// `-a set -d DEV SETTINGS`.
    Set {
        /// N of `/dev/dstN`.
        index: u32,
        /// What to change (at least one setting).
        settings: DeviceSettings,
    },
    /// `-a delete -d DEV`.
    Delete {
        /// N of `/dev/dstN`.
        index: u32,
    },
    /// `-a list [--json]`.
    List {
        /// Print JSON instead of a table.
        json: bool,
    },
}

/// Parses the process's arguments; `Err` is a usage error.
pub fn parse() -> Result<Command, clap::Error> {
    Cli::try_parse()?.into_command()
}

/// Parses `args` (the first is the program name).
#[cfg_attr(not(test), allow(dead_code))]
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)?.into_command()
}

fn usage_error(kind: ErrorKind, msg: impl std::fmt::Display) -> clap::Error {
    Cli::command().error(kind, msg)
}

use ActionKind::{Delete, Export, List, Local, Set, Status, Unexport};

/// The actions an option applies to, for the checks and their messages.
const OPTION_ACTIONS: &[(&str, &[ActionKind])] = &[
    ("-r", &[Export, Unexport, Local]),
    ("-p", &[Export, Unexport, Local]),
    ("-f", &[Export]),
    ("--read-only", &[Export]),
    ("--size", &[Export]),
    ("--max-io-pages", &[Export, Local]),
    ("-i", &[Local]),
    ("--queue-depth", &[Local]),
    ("-d", &[Delete, Set]),
    ("--json", &[List, Status]),
    ("--req-timeout", &[Local, Set]),
    ("--max-resends", &[Local, Set]),
    ("--reconnect-delay", &[Local, Set]),
    ("--ping-interval", &[Local, Set]),
    ("--ping-timeout", &[Local, Set]),
    ("--loss-timeout", &[Local, Set]),
];

/// The options of [`DeviceSettings`], as `-a set` lists them.
const SETTING_FLAGS: &str = "--req-timeout, --max-resends, --reconnect-delay, --ping-interval, \
                             --ping-timeout or --loss-timeout";

/// "-a export", "-a export and -a local", "-a a, -a b and -a c".
fn action_list(actions: &[ActionKind]) -> String {
    let names: Vec<String> = actions.iter().map(|a| format!("-a {}", a.name())).collect();
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Why `flag` does not go with `action`, when there is more to say than
/// which actions it applies to.
fn why_not(flag: &str, action: ActionKind) -> Option<&'static str> {
    Some(match (flag, action) {
        ("-f", Local) => "the device comes from the export node; drop -f",
        ("-f", Unexport) => "the export is found by its address; drop -f",
        ("-r" | "-p", Status | List) => "it only asks the local module",
        ("-r" | "-p", Delete | Set) => "the device is found by -d DEV alone",
        ("-i", Delete | Set) => "give the device with -d DEV",
        ("--max-io-pages" | "--queue-depth", Set) => {
            "it is fixed when the device is created; -a set changes the timeouts and \
             --max-resends"
        }
        ("-d", Local) => "choose the index of the new device with -i N",
        _ => return None,
    })
}

impl Cli {
    /// Which of the options of [`OPTION_ACTIONS`] were given, in its order.
    fn given(&self) -> Vec<&'static str> {
        let given = [
            self.remote.is_some(),
            self.port.is_some(),
            self.file.is_some(),
            self.read_only,
            self.size.is_some(),
            self.max_io_pages.is_some(),
            self.index.is_some(),
            self.queue_depth.is_some(),
            self.device.is_some(),
            self.json,
            self.req_timeout.is_some(),
            self.max_resends.is_some(),
            self.reconnect_delay.is_some(),
            self.ping_interval.is_some(),
            self.ping_timeout.is_some(),
            self.loss_timeout.is_some(),
        ];
        OPTION_ACTIONS
            .iter()
            .zip(given)
            .filter(|(_, given)| *given)
            .map(|((flag, _), _)| *flag)
            .collect()
    }

    /// Checks the flags against the action and resolves the address.
    pub fn into_command(self) -> Result<Command, clap::Error> {
        let Some(action) = self.action else {
            let actions: Vec<String> = ActionKind::value_variants()
                .iter()
                .map(|a| a.name().to_string())
                .collect();
            return Err(usage_error(
                ErrorKind::MissingRequiredArgument,
                format!(
                    "no action given; add -a ACTION, one of: {}",
                    actions.join(", ")
                ),
            ));
        };
        let name = action.name();

        // The address first: "needs -r" says more than a conflict would.
        let needs_remote = matches!(action, Export | Unexport | Local);
        if needs_remote && self.remote.is_none() {
            let what = match action {
                Local => "the address of the export node",
                _ => "the address the export listens on",
            };
            return Err(usage_error(
                ErrorKind::MissingRequiredArgument,
                format!("-a {name} needs -r ADDR, {what}"),
            ));
        }

        for flag in self.given() {
            let (_, actions) = OPTION_ACTIONS.iter().find(|(f, _)| *f == flag).unwrap();
            if !actions.contains(&action) {
                let why = why_not(flag, action)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("it only applies to {}", action_list(actions)));
                return Err(usage_error(
                    ErrorKind::ArgumentConflict,
                    format!("{flag} cannot be used with -a {name}; {why}"),
                ));
            }
        }

        let settings = DeviceSettings {
            req_timeout_ms: self.req_timeout,
            max_resends: self.max_resends,
            reconnect_delay_ms: self.reconnect_delay,
            ping_interval_ms: self.ping_interval,
            ping_timeout_ms: self.ping_timeout,
            loss_timeout_ms: self.loss_timeout,
        };

        let remote = match self.remote.as_deref() {
            Some(remote) => Some(parse_remote(remote, self.port).map_err(|msg| {
                usage_error(ErrorKind::ValueValidation, format!("-r {remote}: {msg}"))
            })?),
            None => None,
        };

        Ok(match action {
            Status => Command::Status { json: self.json },
            List => Command::List { json: self.json },
            Export => {
                let Some(file) = self.file else {
                    return Err(usage_error(
                        ErrorKind::MissingRequiredArgument,
                        "-a export needs -f PATH, the block device to export (e.g. -f /dev/sdb)",
                    ));
                };
                if file.as_os_str().is_empty() {
                    return Err(usage_error(ErrorKind::ValueValidation, "-f: empty path"));
                }
                Command::Export {
                    remote: remote.expect("checked above"),
                    file,
                    read_only: self.read_only,
                    size: self.size,
                    max_io_pages: self.max_io_pages,
                }
            }
            Unexport => Command::Unexport {
                remote: remote.expect("checked above"),
            },
            Local => Command::Local {
                remote: remote.expect("checked above"),
                index: self.index,
                max_io_pages: self.max_io_pages,
                queue_depth: self.queue_depth,
                settings,
            },
            Set => {
                let Some(index) = self.device else {
                    return Err(usage_error(
                        ErrorKind::MissingRequiredArgument,
                        "-a set needs -d DEV, the device to change (dstN, /dev/dstN or N; \
                         see dstcfg -a list)",
                    ));
                };
                if settings.is_empty() {
                    return Err(usage_error(
                        ErrorKind::MissingRequiredArgument,
                        format!("-a set needs a setting to change: {SETTING_FLAGS}"),
                    ));
                }
                Command::Set { index, settings }
            }
            Delete => {
                let Some(index) = self.device else {
                    return Err(usage_error(
                        ErrorKind::MissingRequiredArgument,
                        "-a delete needs -d DEV, the device to delete (dstN, /dev/dstN or N; \
                         see dstcfg -a list)",
                    ));
                };
                Command::Delete { index }
            }
        })
    }
}

/// Parses `--size`: a byte count with an optional binary suffix K, M, G or T
/// (any case, optionally followed by `iB`, e.g. `512M`, `10GiB`), or `B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a number of bytes, optionally with K, M, G or T (e.g. 512M)".into());
    }
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ if suffix.starts_with('.') => {
            return Err("expected a whole number; use a smaller unit (e.g. 1536M)".into())
        }
        _ => {
            return Err(format!(
                "unknown unit '{suffix}'; use K, M, G or T (binary: 1K = 1024)"
            ))
        }
    };
    let n: u64 = digits.parse().map_err(|_| "too large".to_string())?;
    if n == 0 {
        return Err("the size must be at least 1 byte".into());
    }
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "too large".to_string())
}

/// Parses a time in milliseconds: a whole number, optionally with the
/// suffix `ms`, or seconds with the suffix `s` (`30s`, `1.5s`; at most
/// millisecond precision).
pub fn parse_ms(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let number_end = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) {
        return Err("expected a time in milliseconds, or with s or ms (e.g. 30s, 500ms)".into());
    }
    if fraction.contains('.') {
        return Err(format!("'{number}' is not a number"));
    }
    let too_large = || "too large".to_string();
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    match unit {
        "" | "ms" if !fraction.is_empty() => Err("milliseconds must be a whole number".to_string()),
        "" | "ms" => Ok(whole),
        "s" => {
            if fraction.len() > 3 {
                return Err("at most 3 decimals: the unit is 1 ms".into());
            }
            let frac_ms: u64 = format!("{fraction:0<3}").parse().map_err(|_| too_large())?;
            whole
                .checked_mul(1000)
                .and_then(|ms| ms.checked_add(frac_ms))
                .ok_or_else(too_large)
        }
        _ => Err(format!("unknown unit '{unit}'; use ms or s (e.g. 30s)")),
    }
}

/// [`parse_ms`] within `range` (or 0 if `zero_ok`).
fn ms_in(s: &str, range: RangeInclusive<u32>, zero_ok: bool) -> Result<u32, String> {
    let ms = parse_ms(s)?;
    if (zero_ok && ms == 0) || (*range.start() as u64..=*range.end() as u64).contains(&ms) {
        return Ok(ms as u32);
    }
    let zero = if zero_ok { "0 or " } else { "" };
    Err(format!(
        "{ms} ms is out of range; expected {zero}{}..{} ms",
        range.start(),
        range.end()
    ))
}

fn parse_req_timeout(s: &str) -> Result<u32, String> {
    ms_in(s, REQ_TIMEOUT_MS, false)
}

fn parse_reconnect_delay(s: &str) -> Result<u32, String> {
    ms_in(s, RECONNECT_DELAY_MS, false)
}

fn parse_ping_interval(s: &str) -> Result<u32, String> {
    ms_in(s, PING_INTERVAL_MS, true)
}

fn parse_ping_timeout(s: &str) -> Result<u32, String> {
    ms_in(s, PING_TIMEOUT_MS, false)
}

fn parse_loss_timeout(s: &str) -> Result<u32, String> {
    ms_in(s, LOSS_TIMEOUT_MS, false)
}

/// Parses `-d DEV`: `dstN`, `/dev/dstN` or `N`, N in 0..1023 without
/// leading zeros; returns N.
pub fn parse_device(s: &str) -> Result<u32, String> {
    let bad = || format!("not a DST device; expected dstN, /dev/dstN or N, N in 0..{MAX_INDEX}");
    let digits = s
        .strip_prefix("/dev/dst")
        .or_else(|| s.strip_prefix("dst"))
        .unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return Err(bad());
    }
    match digits.parse::<u32>() {
        Ok(n) if n <= MAX_INDEX => Ok(n),
        _ => Err(format!("device index {digits} out of range 0..{MAX_INDEX}")),
    }
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
            remote,
            file: file.into(),
            read_only: false,
            size: None,
            max_io_pages: None,
        }
    }

    fn local(remote: SocketAddr) -> Command {
        Command::Local {
            remote,
            index: None,
            max_io_pages: None,
            queue_depth: None,
            settings: DeviceSettings::default(),
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
            msg.contains("export, unexport, local, delete, set, list, status"),
            "{msg}"
        );
        let (kind, _) = err(&[]);
        assert_eq!(kind, ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn missing_remote() {
        for action in ["local", "export"] {
            let (kind, msg) = err(&["-a", action, "-f", "/dev/sdb"]);
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

    #[test]
    fn help_lists_flags_and_examples() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "-r, --remote <ADDR>",
            "-a, --action <ACTION>",
            "-f, --file <PATH>",
            "dstcfg -r 192.0.2.1 -a export -f /dev/sdb",
            "dstcfg -r 192.0.2.1 -a local",
            "-p, --port <PORT>",
            "--read-only",
            "--size <SIZE>",
            "--max-io-pages <N>",
            "-i, --index <N>",
            "--queue-depth <N>",
            "-d, --device <DEV>",
            "--json",
            "--req-timeout <MS>",
            "--max-resends <N>",
            "--reconnect-delay <MS>",
            "--ping-interval <MS>",
            "--ping-timeout <MS>",
            "--loss-timeout <MS>",
            "[default: 15000]",
            "[default: 10]",
            "[default: 1000]",
            "[default: 5000]",
            "[default: 10000]",
            "[default: 60000]",
            "set:",
            "dstcfg -a set -d dst0 --loss-timeout 300s",
            "dstcfg -r 192.0.2.1 -a local --loss-timeout 10s",
            "a suffix s or ms",
            "[default: 1025]",
            "256 = 1 MiB",
            "[default: 128]",
            "export:",
            "unexport:",
            "local:",
            "delete:",
            "list:",
            "status:",
            "dstcfg -a list --json",
            "dstcfg -a delete -d dst0",
            "dstcfg -r 192.0.2.1 -a unexport",
            "Exit status",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
        // The short help has the usage and the examples too.
        let short = Cli::command().render_help().to_string();
        for needle in [
            "-a delete -d DEV",
            "-a list [--json]",
            "Examples:",
            "-a set -d DEV SETTINGS",
            "[--loss-timeout MS]",
        ] {
            assert!(short.contains(needle), "short help lacks {needle:?}");
        }
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
                remote: v4([192, 0, 2, 1], 2000),
                file: "/dev/sdb".into(),
                read_only: true,
                size: Some(10 << 30),
                max_io_pages: Some(64),
            }
        );
        assert_eq!(
            parse(&["-a", "export", "-r", R, "-f", "/dev/sdb", "--size=4096"]).unwrap(),
            Command::Export {
                remote: v4([192, 0, 2, 1], 1025),
                file: "/dev/sdb".into(),
                read_only: false,
                size: Some(4096),
                max_io_pages: None,
            }
        );
    }

    #[test]
    fn unexport_form() {
        assert_eq!(
            parse(&["-r", R, "-a", "unexport"]).unwrap(),
            Command::Unexport {
                remote: v4([192, 0, 2, 1], 1025)
            }
        );
        assert_eq!(
            parse(&["-a", "unexport", "-r", "192.0.2.1:2000"]).unwrap(),
            Command::Unexport {
                remote: v4([192, 0, 2, 1], 2000)
            }
        );
        assert_eq!(
            parse(&["-a", "unexport", "-r", "[::1]", "-p", "7"]).unwrap(),
            Command::Unexport {
                remote: "[::1]:7".parse().unwrap()
            }
        );
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
                remote: v4([192, 0, 2, 1], 1025),
                index: Some(3),
                max_io_pages: Some(1024),
                queue_depth: Some(64),
                settings: DeviceSettings::default(),
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
                remote: v4([192, 0, 2, 1], 1025),
                index: None,
                max_io_pages: None,
                queue_depth: None,
                settings: DeviceSettings {
                    req_timeout_ms: Some(2000),
                    max_resends: Some(0),
                    reconnect_delay_ms: Some(10),
                    ping_interval_ms: Some(0),
                    ping_timeout_ms: Some(2000),
                    loss_timeout_ms: Some(5000),
                },
            }
        );
        assert_eq!(
            parse(&["-r", R, "-a", "local", "--index=0"]).unwrap(),
            Command::Local {
                remote: v4([192, 0, 2, 1], 1025),
                index: Some(0),
                max_io_pages: None,
                queue_depth: None,
                settings: DeviceSettings::default(),
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
            parse(&["-a", "set", "-d", "1", "--req-timeout", "1h",])
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
            assert_eq!(parse_ms(text), Ok(ms), "{text}");
        }
        for (text, why) in [
            ("", "expected a time"),
            ("s", "expected a time"),
            ("ms", "expected a time"),
            ("-1", "expected a time"),
            (".5s", "expected a time"),
            ("5.s", "expected a time"),
            ("1.2.3s", "not a number"),
            ("1.5", "whole number"),
            ("1.5ms", "whole number"),
            ("0.0005s", "at most 3 decimals"),
            ("5m", "unknown unit 'm'"),
            ("5 s", "unknown unit ' s'"),
            ("5S", "unknown unit 'S'"),
            ("1min", "unknown unit 'min'"),
            ("99999999999999999999", "too large"),
            ("18446744073709552s", "too large"),
        ] {
            let msg = parse_ms(text).expect_err(text);
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
                let e = ok("10x".into()).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ValueValidation);
                assert!(e.to_string().contains("unknown unit 'x'"), "{e}");
            }
        }
    }

    #[test]
    fn delete_forms() {
        for dev in ["dst0", "/dev/dst0", "0"] {
            assert_eq!(
                parse(&["-a", "delete", "-d", dev]).unwrap(),
                Command::Delete { index: 0 },
                "{dev}"
            );
        }
        assert_eq!(
            parse(&["-a", "delete", "--device=/dev/dst1023"]).unwrap(),
            Command::Delete { index: 1023 }
        );
        assert_eq!(
            parse(&["-d", "dst12", "-a", "delete"]).unwrap(),
            Command::Delete { index: 12 }
        );
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

    /// A valid value for each option of [`OPTION_ACTIONS`].
    fn option_args(flag: &str) -> Vec<&'static str> {
        match flag {
            "-r" => vec!["-r", R],
            "-p" => vec!["-p", "9"],
            "-f" => vec!["-f", "/dev/sdb"],
            "--read-only" => vec!["--read-only"],
            "--size" => vec!["--size", "1G"],
            "--max-io-pages" => vec!["--max-io-pages", "8"],
            "-i" => vec!["-i", "1"],
            "--queue-depth" => vec!["--queue-depth", "8"],
            "-d" => vec!["-d", "dst0"],
            "--json" => vec!["--json"],
            "--req-timeout" => vec!["--req-timeout", "2000"],
            "--max-resends" => vec!["--max-resends", "3"],
            "--reconnect-delay" => vec!["--reconnect-delay", "500ms"],
            "--ping-interval" => vec!["--ping-interval", "0"],
            "--ping-timeout" => vec!["--ping-timeout", "2s"],
            "--loss-timeout" => vec!["--loss-timeout", "30s"],
            _ => panic!("no value for {flag}"),
        }
    }

    /// The smallest valid command line of each action.
    fn base_args(action: ActionKind) -> Vec<&'static str> {
        let mut args = vec!["-a", action.name()];
        args.extend(match action {
            Export => vec!["-r", R, "-f", "/dev/sdb"],
            Unexport | Local => vec!["-r", R],
            Delete => vec!["-d", "dst0"],
            Set => vec!["-d", "dst0", "--loss-timeout", "3s"],
            List | Status => vec![],
        });
        args
    }

    #[test]
    fn every_option_with_every_action() {
        let mut refused = 0;
        for action in ActionKind::value_variants() {
            let base = base_args(*action);
            assert!(parse(&base).is_ok(), "{base:?}");
            for (flag, actions) in OPTION_ACTIONS {
                let mut args = base.clone();
                if !base.contains(flag) {
                    args.extend(option_args(flag));
                }
                if actions.contains(action) {
                    assert!(parse(&args).is_ok(), "{args:?}: {:?}", parse(&args));
                    continue;
                }
                let (kind, msg) = err(&args);
                assert_eq!(kind, ErrorKind::ArgumentConflict, "{args:?}: {msg}");
                let expected = format!("{flag} cannot be used with -a {}; ", action.name());
                assert!(msg.contains(&expected), "{args:?}: {msg}");
                refused += 1;
            }
        }
        // 7 actions x 16 options, minus the 29 allowed pairs.
        assert_eq!(refused, 83);
    }

    #[test]
    fn misuse_messages() {
        let (_, msg) = err(&["-a", "list", "-r", R]);
        assert!(msg.contains("-r cannot be used with -a list; it only asks the local module"));
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
            msg.contains("it only applies to -a list and -a status"),
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
}
