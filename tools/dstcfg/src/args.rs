//! The clap definition of dstcfg's command line: [`Cli`] with one
//! subcommand per action ([`Sub`]), the option groups several subcommands
//! share ([`AddressArgs`], [`SecurityArgs`], [`SettingsArgs`]), the value
//! parsers and the help texts.
//!
//! This file is shared with `build.rs`, which renders the man page and the
//! shell completions from [`Cli`]; so it depends on nothing but `std`, clap,
//! humantime and `crate::uapi` (itself plain `std`). What a subcommand needs
//! beyond what clap checks (`-r` given, `-d` or a setting for `set`, ...) is
//! checked afterwards, in `cli.rs`; the older form `-a ACTION` is turned
//! into a subcommand before clap sees it, in `compat.rs`.
//!
//! Adding a subcommand: a variant of [`Sub`] with its arguments, its name in
//! [`ACTIONS`], and its arm in `cli.rs` (`Sub` to `Command`) and `action.rs`.

use std::fmt;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::PossibleValuesParser;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::uapi;

/// TCP port used when neither `-r ADDR:PORT` nor `-p` gives one.
pub const DEFAULT_PORT: u16 = uapi::DST_DEFAULT_PORT;
/// Highest `--max-io-pages` the module accepts.
pub const MAX_IO_PAGES: u32 = 1024;
/// Highest `--queue-depth` the module accepts.
pub const MAX_QUEUE_DEPTH: u32 = 1024;
/// Highest `--queues` the module accepts.
pub const MAX_QUEUES: u32 = 16;
/// Highest `--crypto-threads` the module accepts.
pub const MAX_CRYPTO_THREADS: u32 = 64;
/// `--rekey-after` in MiB (the module's range: 1 MiB to 1 TiB).
pub const REKEY_MIB: RangeInclusive<u32> = 1..=1_048_576;
/// `--rekey-interval` in seconds (the module's range: 1 s to 24 h).
pub const REKEY_SECONDS: RangeInclusive<u32> = 1..=86_400;
/// Highest device index N of `/dev/dstN`.
pub const MAX_INDEX: u32 = 1023;
/// Longest `-f` path the module accepts, in bytes.
pub const MAX_PATH_LEN: usize = 255;
/// Longest identity (`-n`, `--client-name`), in bytes.
pub const MAX_NAME_LEN: usize = 63;
/// Most `--allow` entries of one export.
pub const MAX_ALLOW: usize = 32;
/// Most `--client` entries of one export.
pub const MAX_CLIENTS: usize = 16;
/// Size of a `--key-file`, in bytes.
pub const KEY_LEN: RangeInclusive<usize> = 16..=64;
/// Longest `--key-desc`, in bytes (without the NUL the module adds).
pub const MAX_KEY_DESC_LEN: usize = 255;
/// Size of the key `genkey` writes, in bytes.
pub const GENKEY_LEN: usize = 32;
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
/// `--loss-timeout` in ms, besides [`LOSS_TIMEOUT_INFINITE`].
pub const LOSS_TIMEOUT_MS: RangeInclusive<u32> = 100..=86_400_000;
/// `--loss-timeout infinite` on the wire (`DST_A_LOSS_TIMEOUT_MS`): IO of
/// a disconnected device waits for the export node however long it takes,
/// as NVMe's `ctrl_loss_tmo=-1`. Reported back the same way.
pub const LOSS_TIMEOUT_INFINITE: u32 = uapi::DST_LOSS_TIMEOUT_INFINITE;

/// The subcommands, in the order of [`Sub`]: what `-a` accepts.
pub const ACTIONS: [&str; 16] = [
    "export", "unexport", "release", "local", "delete", "set", "list", "status", "monitor",
    "check", "genkey", "apply", "save", "down", "resize", "discover",
];

/// The configuration file of apply, save and down without `-f`.
pub const DEFAULT_CONFIG: &str = "/etc/dst/dst.toml";

/// The examples at the end of `dstcfg --help` (and in the man page).
pub const EXAMPLES: &str = "\
Examples:
  Export the local block device /dev/sdb, listening on 192.0.2.1 port 1025:
    dstcfg export -r 192.0.2.1 -f /dev/sdb

  Attach the device exported by 192.0.2.1 as a local block device; prints
  its path (e.g. /dev/dst0); asked again, prints the same path:
    dstcfg local -r 192.0.2.1

  The same at boot, before the export node may be up: keep trying for up to
  5 minutes (--wait alone: until interrupted):
    dstcfg local -r 192.0.2.1 --wait=5m

  List the exports and devices of this machine, as a table or as JSON; show
  the module and the counters:
    dstcfg list
    dstcfg list --json
    dstcfg status

  Print events (connection lost, reconnected, ...) as they happen, after a
  line for each device and export as it is now; is dst0 connected (exit
  status 0)?
    dstcfg monitor --now
    dstcfg check -d dst0

  Delete the local device /dev/dst0 (also: -d /dev/dst0, -d 0) once it is
  unmounted; or even while it is mounted or open, losing what was not
  written yet:
    umount /dev/dst0
    dstcfg delete -d dst0
    dstcfg delete -d dst0 --force

  Attach a device that fails IO after 10 s without the export node (instead
  of 60 s), then let the live device wait 5 minutes, then forever:
    dstcfg local -r 192.0.2.1 --loss-timeout 10s
    dstcfg set -d dst0 --loss-timeout 5m
    dstcfg set -d dst0 --loss-timeout infinite

  Stop the export listening on 192.0.2.1 port 1025; of several exports
  there, the one named store1:sdb:
    dstcfg unexport -r 192.0.2.1
    dstcfg unexport -r 192.0.2.1 -n store1:sdb

  One local node writes to an export at a time; another one attaches it
  read-only. If the node that writes was powered off for good, take its
  write access back on the export node, so that another may write:
    dstcfg local -r 192.0.2.1 --read-only
    dstcfg release -r 192.0.2.1

  Export a device to the nodes of a cluster file system (GFS2, OCFS2),
  which all write to it at once (never for ext4, xfs, md or LVM):
    dstcfg export -r 192.0.2.1 -f /dev/sdb --shared

  After growing the exported device (lvextend, say), grow the export at
  once (it also notices by itself, within a few seconds); or grow an export
  made with --size to 20 GiB. Connected devices grow without reconnecting;
  an export never shrinks:
    dstcfg resize -r 192.0.2.1
    dstcfg resize -r 192.0.2.1 --size 20G

  Make this node's exports, devices and module settings those of the
  configuration file /etc/dst/dst.toml, showing the plan first; the same
  at boot, waiting up to 4 minutes for export nodes not up yet (what
  dst.service does); write the running state as such a file; remove what
  the file made (at shutdown):
    dstcfg apply --dry-run
    dstcfg apply -f /etc/dst/dst.toml
    dstcfg apply --wait=4m -f /etc/dst/dst.toml
    dstcfg save -f -
    dstcfg down -f /etc/dst/dst.toml

  Read-only export of the first 10 GiB on port 2000; attach it over IPv6 as
  /dev/dst3 with 64 requests in flight:
    dstcfg export -r 192.0.2.1 -p 2000 -f /dev/sdb --read-only --size 10G
    dstcfg local -r [2001:db8::1]:2000 -i 3 --queue-depth 64

  Encrypted export for the clients of 192.0.2.0/24 only, with a key made
  once and copied to the local node (same file, mode 0600, on both):
    dstcfg genkey -f /etc/dst/psk
    dstcfg export -r 192.0.2.1 -f /dev/sdb --protection aead \\
        --key-file /etc/dst/psk --allow 192.0.2.0/24
    dstcfg local -r 192.0.2.1 --protection aead --key-file /etc/dst/psk --queues 4
    dstcfg set --crypto-threads 4

  The same key kept in the kernel keyring instead of a file: load it once on
  each node, as root (a logon key cannot be read back by any process):
    keyctl padd logon dst:pair1 @u < /etc/dst/psk
    dstcfg local -r 192.0.2.1 --protection aead --key-desc dst:pair1

  Replace the keys of every keyed connection (hmac, aead) after 16 GiB or
  10 minutes, whichever comes first, instead of 64 GiB or an hour:
    dstcfg set --rekey-after 16G --rekey-interval 10m

  Attach a device with an identity of its own that stays the same each time
  it is created, so that the export node ends the connections of the old
  instance (before a reboot, say) before it serves the new one:
    dstcfg local -r 192.0.2.1 --client-id 0x5e1f0a1c0de00001

  Several exports on one address and port, each with a name; list the ones
  this node may use, and attach one of them:
    dstcfg export -r 192.0.2.1 -f /dev/sdb -n db
    dstcfg export -r 192.0.2.1 -f /dev/sdc -n web
    dstcfg discover -r 192.0.2.1
    dstcfg local -r 192.0.2.1 -n web

  Name an export, and attach that export only: the device refuses any other
  that answers at the address, when it connects and at every reconnect
  (without -n it accepts the first export it reaches, then only that one):
    dstcfg export -r 192.0.2.1 -f /dev/sdb -n store1:sdb --key-file /etc/dst/psk
    dstcfg local -r 192.0.2.1 -n store1:sdb --client-name web1 --key-file /etc/dst/psk

  Serve two clients, each with a key of its own: only the holder of
  web1.key can connect as web1, only the holder of the keyring key
  dst:backup as backup, whose device is read-only; no other client gets in
  (the export has no key of its own). Then, on web1's node:
    dstcfg export -r 192.0.2.1 -f /dev/sdb --protection aead \\
        --client web1=/etc/dst/web1.key --client backup=@dst:backup,ro
    dstcfg local -r 192.0.2.1 --protection aead --client-name web1 \\
        --key-file /etc/dst/web1.key

The older form, with the action given by -a, works as well and means the
same (options before or after it):
    dstcfg -r 192.0.2.1 -a export -f /dev/sdb
    dstcfg -r 192.0.2.1 -a local
    dstcfg -a list --json

Times: a duration such as 30s, 5m, 1h30m or 250ms; a number alone is
milliseconds (seconds for --rekey-interval). Defaults of a new device:
--req-timeout 15s, --max-resends 10, --reconnect-delay 1s, --ping-interval
5s, --ping-timeout 10s, --loss-timeout 60s.

Exit status: 0 on success, 1 if the action failed (the kernel's reason is
printed), 2 on a usage error. check: 0 if the device is connected, 1 if it
exists but is not connected (reconnecting, failed or closing), 2 on an
error (no such device, module not loaded, no permission, usage).

All subcommands but genkey need the dst module (the kernel loads an installed
one on first use; otherwise insmod dst.ko) and CAP_NET_ADMIN; export,
unexport, release, resize, local, delete, apply and down, which give access to
block devices, need CAP_SYS_ADMIN as well (run as root). They see and change
only the exports and devices of the network namespace dstcfg runs in.";

/// The synopsis of `dstcfg --help` and of the man page: each subcommand
/// with its options, then the older `-a` form.
pub const USAGE: &str = "\
dstcfg export -r ADDR [-p PORT] -f PATH [-n NAME] [--read-only] [--shared] [--size SIZE] [--max-io-pages N] [SECURITY] [--allow PREFIX[:ro|:rw]]... [--client NAME=PATH|NAME=@DESC[,ro]]...
       dstcfg unexport -r ADDR [-p PORT] [-n NAME]
       dstcfg release -r ADDR [-p PORT] [-n NAME]
       dstcfg resize -r ADDR [-p PORT] [--size SIZE]
       dstcfg discover -r ADDR [-p PORT] [--json]
       dstcfg local -r ADDR [-p PORT] [-n NAME] [--client-name NAME] [--read-only] [-i N] [--max-io-pages N] [--queue-depth N] [--queues N] [--client-id ID] [--wait[=TIME]] [--duplicate] [SECURITY] [SETTINGS]
       dstcfg set -d DEV SETTINGS
       dstcfg set [--crypto-threads N] [--rekey-after SIZE] [--rekey-interval TIME]
       dstcfg delete -d DEV [--force]
       dstcfg list [--json]
       dstcfg status [--json]
       dstcfg monitor [--json] [--now] [--count N]
       dstcfg check -d DEV
       dstcfg genkey -f PATH
       dstcfg apply [-f FILE] [--dry-run | --wait[=TIME]]
       dstcfg save [-f FILE|-] [--force]
       dstcfg down [-f FILE] [--force] [--dry-run]
       dstcfg discover -r ADDR [-p PORT] [--json]
       dstcfg [OPTIONS] -a ACTION [OPTIONS]   (the older form: dstcfg -r ADDR -a local)
       SETTINGS: [--req-timeout TIME] [--max-resends N] [--reconnect-delay TIME]
                 [--ping-interval TIME] [--ping-timeout TIME] [--loss-timeout TIME|infinite]
       SECURITY: [--protection none|crc32c|hmac|aead] [--alg NAME] [--key-file PATH | --key-desc DESC]";

/// Data-channel protection of `--protection` (`enum dst_protection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protection {
    /// Clear text (a key, if given, authenticates the handshake only)
    None,
    /// A crc32c checksum on every message: catches accidental corruption only
    Crc32c,
    /// A keyed MAC on every message (needs --key-file or --key-desc)
    Hmac,
    /// Every message encrypted and authenticated (needs --key-file or --key-desc)
    Aead,
}

impl Protection {
    /// The `enum dst_protection` number.
    pub fn number(self) -> u32 {
        match self {
            Protection::None => uapi::DST_PROT_NONE,
            Protection::Crc32c => uapi::DST_PROT_CRC32C,
            Protection::Hmac => uapi::DST_PROT_HMAC,
            Protection::Aead => uapi::DST_PROT_AEAD,
        }
    }

    /// The name used on the command line and in output.
    pub fn name(self) -> &'static str {
        match self {
            Protection::None => "none",
            Protection::Crc32c => "crc32c",
            Protection::Hmac => "hmac",
            Protection::Aead => "aead",
        }
    }

    /// Whether the mode derives its keys from a pre-shared key.
    pub fn needs_key(self) -> bool {
        matches!(self, Protection::Hmac | Protection::Aead)
    }
}

/// One `--allow PREFIX[:ro|:rw]` entry of an export's allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowRule {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length: 0..32 (IPv4) or 0..128 (IPv6).
    pub prefix_len: u8,
    /// Clients in this prefix may only read.
    pub read_only: bool,
}

impl AllowRule {
    /// `10.0.0.0/24`, `2001:db8::/32`.
    pub fn prefix(&self) -> String {
        format!("{}/{}", self.addr, self.prefix_len)
    }
}

impl fmt::Display for AllowRule {
    /// As `--allow` takes it: `10.0.0.0/24:rw`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.read_only { "ro" } else { "rw" };
        write!(f, "{}:{mode}", self.prefix())
    }
}

/// Where the key of a `--client` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKeySource {
    /// `NAME=PATH`: a key file, read and checked as `--key-file` when the
    /// action runs.
    File(PathBuf),
    /// `NAME=@DESC`: the description of a keyring key, sent as is
    /// (`DST_CLIENT_A_KEY_DESC`); dstcfg never reads the key.
    Keyring(String),
}

/// One `--client NAME=PATH[,ro|,rw]` or `--client NAME=@DESC[,ro|,rw]`: a
/// client identity of an export with a key of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRule {
    /// The client's identity (`--client-name` on its node).
    pub name: String,
    /// Its key.
    pub key: ClientKeySource,
    /// Its device is read-only.
    pub read_only: bool,
}

impl fmt::Display for ClientRule {
    /// As `--client` takes it: `web1=/etc/dst/web1.key,rw`,
    /// `backup=@dst:backup,ro` (a file name, a description: no key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.read_only { "ro" } else { "rw" };
        match &self.key {
            ClientKeySource::File(path) => write!(f, "{}={},{mode}", self.name, path.display()),
            ClientKeySource::Keyring(desc) => write!(f, "{}=@{desc},{mode}", self.name),
        }
    }
}

/// How long `local --wait` and `apply --wait` keep trying to connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `--wait` alone (or `=forever`, `=infinite`): until connected or
    /// interrupted.
    Forever,
    /// `--wait=TIME`: at most this long.
    For(Duration),
}

/// The command line as clap parses it: a subcommand. The `-a ACTION` of
/// the older form never reaches clap (`compat.rs` turns it into the
/// subcommand); it is declared here for `--help` and the completions.
#[derive(Debug, Parser)]
#[command(
    name = "dstcfg",
    version,
    about = "Configure DST, the network block device (dst.ko)",
    long_about = "Configure DST, the network block device (dst.ko).\n\n\
        An export node serves one of its block devices over TCP (dstcfg export); a \
        local node connects to it and gets /dev/dstN (dstcfg local). dstcfg talks to \
        the kernel module through the generic netlink family \"dst\". Each subcommand \
        has options of its own: dstcfg SUBCOMMAND --help lists them.",
    override_usage = USAGE,
    after_help = EXAMPLES,
    after_long_help = EXAMPLES,
)]
pub struct Cli {
    /// The action, the older form of the subcommand: dstcfg -r ADDR -a local
    /// is dstcfg local -r ADDR; the options may come before or after it
    #[arg(short = 'a', long = "action", value_name = "ACTION",
          value_parser = PossibleValuesParser::new(ACTIONS))]
    pub action: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Option<Sub>,
}

/// The subcommands; [`ACTIONS`] lists their names in this order.
#[derive(Debug, Subcommand)]
pub enum Sub {
    /// Serve the local block device or file -f PATH to DST local nodes, listening on -r ADDR
    #[command(
        long_about = EXPORT_TEXT,
        override_usage = "dstcfg export -r ADDR [-p PORT] -f PATH [OPTIONS]",
        mut_arg("remote", |a| a.help(LISTEN_HELP)),
    )]
    Export(ExportArgs),
    /// Stop the export listening on -r ADDR (and port), or the one named -n NAME there
    #[command(
        long_about = UNEXPORT_TEXT,
        override_usage = "dstcfg unexport -r ADDR [-p PORT] [-n NAME]",
        mut_arg("remote", |a| a.help(LISTEN_HELP)),
    )]
    Unexport(UnexportArgs),
    /// Take the write access of the export on -r ADDR (and port) from the local node that holds it
    #[command(
        long_about = RELEASE_TEXT,
        override_usage = "dstcfg release -r ADDR [-p PORT]",
        mut_arg("remote", |a| a.help(EXPORT_ADDR_HELP)),
    )]
    Release(UnexportArgs),
    /// Connect to the export node at -r ADDR and provide its device as /dev/dstN; prints the path
    #[command(
        long_about = LOCAL_TEXT,
        override_usage = "dstcfg local -r ADDR [-p PORT] [OPTIONS]",
        mut_arg("remote", |a| a.help(CONNECT_HELP)),
    )]
    Local(LocalArgs),
    /// Disconnect and delete the local device -d DEV; refused while it is open, unless --force
    #[command(long_about = DELETE_TEXT, override_usage = "dstcfg delete -d DEV [--force]")]
    Delete(DeleteArgs),
    /// Change the settings of the live local device -d DEV, or module-wide settings
    #[command(
        long_about = SET_TEXT,
        override_usage = "dstcfg set -d DEV SETTINGS...\n       \
                          dstcfg set [--crypto-threads N] [--rekey-after SIZE] [--rekey-interval TIME]"
    )]
    Set(SetArgs),
    /// Show the exports and local devices of this machine
    #[command(long_about = LIST_TEXT)]
    List(JsonArgs),
    /// Show the loaded dst module, its wire protocol and the counters of every export and device
    #[command(long_about = STATUS_TEXT)]
    Status(JsonArgs),
    /// Print events (device connected, lost, ...; export sessions) as they happen, until interrupted
    #[command(long_about = MONITOR_TEXT)]
    Monitor(MonitorArgs),
    /// Exit 0 if the device -d DEV is connected, 1 if not, 2 on an error; prints its state
    #[command(long_about = CHECK_TEXT, override_usage = "dstcfg check -d DEV")]
    Check(DeviceArg),
    /// Write a new random pre-shared key (32 bytes, mode 0600) to -f PATH
    #[command(long_about = GENKEY_TEXT, override_usage = "dstcfg genkey -f PATH")]
    Genkey(GenkeyArgs),
    /// Make the exports, devices and module settings match the configuration file -f FILE
    #[command(long_about = APPLY_TEXT, override_usage = "dstcfg apply [-f FILE] [--dry-run | --wait[=TIME]]")]
    Apply(ApplyArgs),
    /// Write the running state as a configuration file to -f FILE (- for standard output)
    #[command(long_about = SAVE_TEXT, override_usage = "dstcfg save [-f FILE|-] [--force]")]
    Save(SaveArgs),
    /// Remove the devices, then the exports, that the configuration file -f FILE manages
    #[command(
        long_about = DOWN_TEXT,
        override_usage = "dstcfg down [-f FILE] [--force] [--dry-run]"
    )]
    Down(DownArgs),
    /// Grow the export listening on -r ADDR to what its device holds now, or to --size SIZE
    #[command(
        long_about = RESIZE_TEXT,
        override_usage = "dstcfg resize -r ADDR [-p PORT] [--size SIZE]",
        mut_arg("remote", |a| a.help(LISTEN_HELP)),
    )]
    Resize(ResizeArgs),
    /// List the exports listening at -r ADDR (and port) that this node may use, one name per line
    #[command(
        long_about = DISCOVER_TEXT,
        override_usage = "dstcfg discover -r ADDR [-p PORT] [--json]",
        mut_arg("remote", |a| a.help(CONNECT_HELP)),
    )]
    Discover(DiscoverArgs),
}

impl Sub {
    /// The subcommand's name, as on the command line.
    pub fn name(&self) -> &'static str {
        let i = match self {
            Sub::Export(_) => 0,
            Sub::Unexport(_) => 1,
            Sub::Release(_) => 2,
            Sub::Local(_) => 3,
            Sub::Delete(_) => 4,
            Sub::Set(_) => 5,
            Sub::List(_) => 6,
            Sub::Status(_) => 7,
            Sub::Monitor(_) => 8,
            Sub::Check(_) => 9,
            Sub::Genkey(_) => 10,
            Sub::Apply(_) => 11,
            Sub::Save(_) => 12,
            Sub::Down(_) => 13,
            Sub::Resize(_) => 14,
            Sub::Discover(_) => 15,
        };
        ACTIONS[i]
    }
}

/// `-r` of export and unexport.
const LISTEN_HELP: &str = "The local address to listen on: IPv4, IPv6 (brackets allowed) or a \
                           host name, optionally with :PORT or [IPv6]:PORT (required)";
/// `-r` of release.
const EXPORT_ADDR_HELP: &str = "The address the export listens on: IPv4, IPv6 (brackets allowed) \
                                or a host name, optionally with :PORT or [IPv6]:PORT (required)";
/// `-r` of local.
const CONNECT_HELP: &str = "The export node to connect to: IPv4, IPv6 (brackets allowed) or a \
                            host name, optionally with :PORT or [IPv6]:PORT (required)";

/// What export does, for `export --help` and the man page.
pub const EXPORT_TEXT: &str = "Serve the block device or regular file -f PATH to local nodes, \
    listening on -r ADDR (port 1025 unless -p or ADDR:PORT says otherwise). Prints what it \
    exports. The export has an identity, -n NAME or the module's default HOST:DEVICE (the host \
    name and the last component of PATH, e.g. node1:sdb); it is sent in the handshake and \
    enters the key derivation, and a local node may ask for it by name.\n\n\
    A regular file (an image; it may be sparse) is served with direct IO where its file system \
    allows it, through the page cache otherwise; FLUSH is an fsync of the file, discards punch \
    holes in it. Its size is the file's, rounded down to whole blocks. A block device is opened \
    exclusively, a file is served by one export at a time.\n\n\
    One writer at a time: the export lets one local node identity (its --client-name) write, \
    the first to attach read-write; another identity asking for read-write is refused with a \
    message naming the holder, and may attach with local --read-only. The holder keeps the \
    write access across reconnects, and gives it back when it deletes its last device of the \
    export; dstcfg release takes it back from a holder that is gone for good. --shared lets \
    any number of local nodes write at once: only for a cluster file system (GFS2, OCFS2), \
    which coordinates its nodes itself; ext4 or xfs mounted on two nodes, an md array \
    assembled or LVM activated on two nodes, are corrupted.";

/// What unexport does.
pub const UNEXPORT_TEXT: &str = "Stop the export listening on -r ADDR and port; its clients \
    lose their connection and reconnect until their loss timeout. Where several exports \
    listen on that address and port, -n NAME says which (dstcfg list shows their names); \
    without it the module refuses. The others keep listening and serving.";
/// What release does.
pub const RELEASE_TEXT: &str = "Take the write access of the export listening on -r ADDR and \
    port from the local node that holds it, without stopping the export: that node's \
    connections end, and the next local node to attach read-write gets it (the old holder, \
    reconnecting, is then refused). Run it on the export node when the holder can no longer \
    write: it was powered off for good, or its device was deleted while the export node could \
    not be reached. Never while the holder may still write: it keeps reconnecting, and once \
    the write access is free again (its new holder deleted its device) it takes it back and \
    writes what it had cached over what the others wrote meanwhile. dstcfg list shows the \
    holder (writer). Refused for a --shared export, which has no holder, and when no local \
    node holds the write access.";
/// What resize does.
pub const RESIZE_TEXT: &str = "Grow the export listening on -r ADDR and port, after its \
    block device grew: to what the device holds now (up to the export's cap, the --size it was \
    made with, if any), or to --size SIZE, which becomes its cap. Prints the size exported. The \
    local nodes connected to it see the new size at once, without reconnecting and without IO \
    errors (a mounted file system can then be grown with resize2fs or xfs_growfs); a device \
    that reconnects later accepts the larger export. The export also follows its device's \
    growth by itself (up to its cap) within a few seconds; resize makes it happen now. An \
    export never shrinks: a size below the current one, or beyond the device, is refused.";
/// What local does.
pub const LOCAL_TEXT: &str = "Connect to the export node at -r ADDR and create /dev/dstN; \
    prints only the device path, so that scripts can capture it.\n\n\
    Asking again is harmless: if this node has a device for the same export already (the same \
    address and port; the same export name if -n is given, and the same -i, --client-id and \
    --client-name where given; a read-only one if --read-only is given, since a writable \
    device is not what was asked for), local prints that device's path and exits 0 without \
    creating another. The options of the new request are not applied to the existing device and not \
    compared with its own (a note on stderr says so): change its timeouts with dstcfg set, \
    anything else by deleting and creating it again. --duplicate creates another device \
    anyway.\n\n\
    --wait keeps trying while the export node cannot be reached, refuses the connection, \
    answers busy or refuses the handshake (such refusals are not authenticated: anyone on \
    the path can forge them), with pauses growing to 5 s, and prints what it waits for on \
    stderr at most every 5 s. --wait alone waits until it connects or is interrupted; \
    --wait=TIME gives up after TIME (e.g. --wait=5m) with exit status 1 and the last error. \
    Errors of this node (options, key file, no module, no permission, index in use) end it at \
    once.\n\n\
    The device accepts one export identity only, at connect and at every reconnect: -n NAME, \
    or without -n the identity of the export it reaches first, which the module then pins \
    (dstcfg list shows it as export NAME). So a device stays bound to its export even if \
    another export holding the same key answers at the address later. --client-name gives \
    this node's own identity (default: the host name). The export node fences a device by its \
    client id: before it serves a new connection it ends the older ones of the same id and \
    waits for their requests. The module picks a random id for each device unless \
    --client-id gives one; give a device the same --client-id every time it is created (and \
    no two devices the same one) for fencing to hold across re-creation and reboots.\n\n\
    An export lets one local node identity write at a time (unless it was exported \
    --shared): if another identity holds its write access, local is refused with EBUSY and a \
    message naming the holder, and --wait does not wait for it. --read-only asks for reads \
    only: the device is read-only and never takes the write access, so it is never refused \
    for another's.";
/// What delete does.
pub const DELETE_TEXT: &str = "Disconnect and delete the device -d DEV. While it is mounted or \
    open (a partition of it included) the module refuses with EBUSY and leaves it working; \
    dstcfg asks again for up to 5 s (udev opens a new device for a moment) before it reports \
    the error. Unmount it and stop its users, or give --force: the device is deleted anyway, \
    its IO fails and data not yet written (a file system's cached writes included) is lost. \
    Does not wait for an unreachable export node.";
/// What set does.
pub const SET_TEXT: &str = "With -d DEV: change device settings (the timeouts and \
    --max-resends) of a live device; the others keep their values. Without -d: module-wide \
    settings, any of --crypto-threads, --rekey-after and --rekey-interval; the others keep \
    their values. Each direction of a connection with a key (hmac, aead) replaces its key \
    in-band after it protected --rekey-after SIZE or after --rekey-interval TIME, whichever \
    comes first (default: 64G, 1h).";
/// What list does.
pub const LIST_TEXT: &str = "Show every export and device: a table, or with --json an array of \
    objects (settings and counters included; a loss timeout without end is \"infinite\").";
/// What status does.
pub const STATUS_TEXT: &str = "Show the module version, the wire protocol, the crypto threads, \
    the key-update limits and a table of the counters of every export and device; with --json \
    an object of the module's values with the arrays exports and devices, each object as \
    dstcfg list --json prints it (every counter included).";
/// What monitor does.
pub const MONITOR_TEXT: &str = "Print one line per event as it happens: time, dstN or exportN, \
    the event (connected, lost, reconnected, failed, deleted, session-opened, session-closed, \
    session-refused), the peer and the reason when given. With --json one object per line. \
    With --now it first prints one line per device and export as it is (the event \
    \"exists\", with its state and address); events that happen while it reads them follow, \
    so none is missed. Runs until interrupted (SIGINT and SIGTERM exit with status 0) or \
    --count N events. Needs CAP_NET_ADMIN.";
/// What check does.
pub const CHECK_TEXT: &str = "Print the state of the device -d DEV and exit 0 if it is \
    connected, 1 if it exists but is not (reconnecting, failed, closing), 2 on an error (no \
    such device, module not loaded, no permission).";
/// What genkey does.
pub const GENKEY_TEXT: &str = "Write 32 random bytes from the kernel's random number generator \
    to the new file -f PATH, with mode 0600; refuses to overwrite an existing file. Needs no \
    module.";

/// What apply does.
pub const APPLY_TEXT: &str = "Read the configuration file -f FILE and make the running state \
    match it: create the exports and devices missing, change live what can change live (device \
    timeouts and max_resends, module settings), report what only a re-create changes, and \
    remove the exports and devices an earlier apply of the same file made that the file no \
    longer lists; never what was made by hand. The whole file is checked first: an error names \
    the file, the line and the key, and nothing is changed. Prints one line per step; \
    --dry-run prints the plan only. Exit status 0 if the running state matches the file.\n\n\
    Without --wait, each device is tried once: a device whose export node is not up fails its \
    step, the others are made. With --wait, such devices are tried again, all of them in each \
    round, as local --wait tries one (same failures, same pauses, a progress line on stderr \
    at most every 5 s), so each is made as soon as its export node answers: until all are, \
    until interrupted (--wait alone), or for at most TIME (--wait=TIME), after which those \
    still missing fail. dst.service runs apply --wait=4m at boot.";
/// What save does.
pub const SAVE_TEXT: &str = "Write the running state as a configuration file to -f FILE (- for \
    standard output); an existing file is replaced only with --force. Key files and the other \
    values the kernel does not report come from what apply recorded; where unknown, the file \
    says so in a comment.";
/// What down does.
pub const DOWN_TEXT: &str = "Remove what the configuration file -f FILE manages: its devices \
    (refused while open, unless --force), then its exports. Works from the record of what \
    apply made even if the file no longer parses; never removes what was made by hand. \
    dst.service runs it at shutdown.";

/// What discover does.
pub const DISCOVER_TEXT: &str = "Ask the export node at -r ADDR which exports listen on that \
    address and port for this node, and print their names, one per line (with --json a list). \
    Only the exports whose allow-list (--allow) admits this node's address are named; keys are \
    not asked for. Give one of the names to local -n NAME; without -n, local is refused where \
    several exports listen. Plain TCP from this process: needs neither the dst module nor \
    privileges. Fails (exit status 1) if nothing listens there, if the answer does not come \
    within 5 s, or if the peer is not a DST export.";

/// `-r ADDR` and `-p PORT`: where an export listens, or which export node a
/// device connects to.
#[derive(Debug, Clone, Args)]
pub struct AddressArgs {
    /// Network address (required)
    #[arg(short = 'r', long = "remote", value_name = "ADDR", value_hint = ValueHint::Hostname)]
    pub remote: Option<String>,

    /// TCP port, if ADDR has none [default: 1025]
    #[arg(short = 'p', long = "port", value_name = "PORT",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
}

/// The security options of an export and of a device.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Security options")]
pub struct SecurityArgs {
    /// Data-channel protection; must be the same on the export and the local
    /// node [default: none]
    #[arg(long = "protection", value_name = "MODE", value_enum)]
    pub protection: Option<Protection>,

    /// Algorithm of hmac: hmac(sha256), hmac(sha384), hmac(sha512); of aead:
    /// gcm(aes), rfc7539(chacha20,poly1305); no other (all have full-length
    /// tags) [default: hmac(sha256) for hmac, gcm(aes) for aead]
    #[arg(long = "alg", value_name = "NAME", value_parser = parse_alg)]
    pub alg: Option<String>,

    /// Pre-shared key: a file of 16..64 bytes, mode 0600, the same on both
    /// nodes (make one with dstcfg genkey); needed by hmac and aead, optional
    /// otherwise (it then authenticates the handshake)
    #[arg(long = "key-file", value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub key_file: Option<PathBuf>,

    /// Pre-shared key from the kernel keyring: the description of a logon
    /// (or user) key, e.g. dst:pair1 (keyctl padd logon dst:pair1 @u <
    /// FILE); instead of --key-file
    #[arg(long = "key-desc", value_name = "DESC", value_parser = parse_key_desc)]
    pub key_desc: Option<String>,
}

/// The settings of a device that `local` sets and `set -d` changes live.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Device settings")]
pub struct SettingsArgs {
    /// A request unanswered this long makes the local node drop the
    /// connection, reconnect and resend it; 100ms..1h [default: 15s]
    #[arg(long = "req-timeout", value_name = "TIME", value_parser = parse_req_timeout)]
    pub req_timeout: Option<u32>,

    /// Resends of one request before it fails with an IO error, 0..1000
    /// [default: 10]
    #[arg(long = "max-resends", value_name = "N",
          value_parser = clap::value_parser!(u32).range(
              *MAX_RESENDS.start() as i64..=*MAX_RESENDS.end() as i64))]
    pub max_resends: Option<u32>,

    /// Pause between reconnect attempts, 10ms..10m [default: 1s]
    #[arg(long = "reconnect-delay", value_name = "TIME", value_parser = parse_reconnect_delay)]
    pub reconnect_delay: Option<u32>,

    /// Ping an idle connection this often, 100ms..1h, 0 = never [default:
    /// 5s]
    #[arg(long = "ping-interval", value_name = "TIME", value_parser = parse_ping_interval)]
    pub ping_interval: Option<u32>,

    /// No answer to a ping this long: reconnect; 100ms..1h [default: 10s]
    #[arg(long = "ping-timeout", value_name = "TIME", value_parser = parse_ping_timeout)]
    pub ping_timeout: Option<u32>,

    /// Disconnected this long, pending and new IO fail with EIO until the
    /// export node is back (reconnect attempts go on); 100ms..24h, or
    /// infinite: IO waits for the export node however long it takes
    /// [default: 60s]
    #[arg(long = "loss-timeout", value_name = "TIME", value_parser = parse_loss_timeout)]
    pub loss_timeout: Option<u32>,
}

/// `dstcfg export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Where to listen.
    #[command(flatten)]
    pub address: AddressArgs,

    /// The block device or regular file to serve, e.g. /dev/sdb or /srv/images/vm1.img
    /// (required)
    #[arg(short = 'f', long = "file", value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,

    /// This export's identity, 1..63 printable ASCII characters, no spaces
    /// [default: HOST:DEVICE, e.g. node1:sdb]
    #[arg(short = 'n', long = "name", value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// Serve the device read-only [default: read-write]
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Let any number of local nodes write at once: only for a cluster file
    /// system (GFS2, OCFS2); ext4, xfs, md and LVM are corrupted by two
    /// writers [default: one local node identity writes at a time]
    #[arg(long = "shared")]
    pub shared: bool,

    /// Export only the first SIZE bytes of the device; K, M, G, T suffixes
    /// are binary (1K = 1024) [default: the whole device]
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,

    /// Largest request, in 4 KiB pages, 1..1024 [default: 256 = 1 MiB]
    #[arg(long = "max-io-pages", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_IO_PAGES as i64))]
    pub max_io_pages: Option<u32>,

    /// Protection and key.
    #[command(flatten)]
    pub security: SecurityArgs,

    /// Accept only clients from this IPv4 or IPv6 prefix (an address with
    /// an optional /LEN), read-write (:rw, the default) or read-only (:ro);
    /// repeatable, at most 32 [default: any client]
    #[arg(long = "allow", value_name = "PREFIX[:ro|:rw]", value_parser = parse_allow,
          action = ArgAction::Append, help_heading = "Security options")]
    pub allow: Vec<AllowRule>,

    /// A client identity with a key of its own: only that key's holder can
    /// connect as NAME, and ,ro makes its device read-only; repeatable
    ///
    /// NAME=PATH reads the key from the file PATH, checked as --key-file;
    /// NAME=@DESC has the kernel take it from the keyring key of that
    /// description, as --key-desc. NAME (the client's --client-name) ends
    /// at the first '=' and is 1..63 printable ASCII characters without
    /// spaces; ,rw (the default) or ,ro comes last. At most 16 clients,
    /// each name once. Other clients need the export's own key
    /// (--key-file, --key-desc); without one, only these clients get in.
    /// With --client, --protection hmac or aead needs no key of the
    /// export's own
    #[arg(long = "client", value_name = "NAME=PATH[,ro]", value_parser = parse_client,
          action = ArgAction::Append, help_heading = "Security options")]
    pub clients: Vec<ClientRule>,
}

/// `dstcfg discover`.
#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    /// The export node.
    #[command(flatten)]
    pub address: AddressArgs,

    /// Print a JSON list of the names instead of one name per line
    #[arg(long = "json")]
    pub json: bool,
}

/// `dstcfg unexport` and `dstcfg release`.
#[derive(Debug, Clone, Args)]
pub struct UnexportArgs {
    /// The export's address.
    #[command(flatten)]
    pub address: AddressArgs,

    /// The identity of the export to stop, needed where several listen on
    /// the address and port [default: the only export there]
    #[arg(short = 'n', long = "name", value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,
}

/// `dstcfg resize`.
#[derive(Debug, Clone, Args)]
pub struct ResizeArgs {
    /// The export's address.
    #[command(flatten)]
    pub address: AddressArgs,

    /// The new size, which becomes the export's cap; K, M, G, T suffixes
    /// are binary (1K = 1024), rounded down to whole blocks [default:
    /// what the device holds now, up to the cap]
    #[arg(long = "size", value_name = "SIZE", value_parser = parse_size)]
    pub size: Option<u64>,
}

/// `dstcfg local`.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    /// The export node.
    #[command(flatten)]
    pub address: AddressArgs,

    /// Accept only the export of this identity, at connect and every
    /// reconnect; binds the device to that export, so a key shared by
    /// several exports cannot be used to redirect it; 1..63 printable ASCII
    /// characters, no spaces [default: the first export reached, then only
    /// that one]
    #[arg(short = 'n', long = "name", value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,

    /// This node's identity in the handshake; with the export's it selects
    /// the keys, so one key file gives each pair of node and export keys of
    /// its own; 1..63 printable ASCII characters, no spaces [default: the
    /// host name]
    #[arg(long = "client-name", value_name = "NAME", value_parser = parse_name)]
    pub client_name: Option<String>,

    /// Ask for reads only: the device is read-only and never takes the
    /// export's write access, so another node writing does not refuse it
    /// [default: read-write if the export allows it]
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Create /dev/dstN with this N, 0..1023 [default: the lowest free one]
    #[arg(short = 'i', long = "index", value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=MAX_INDEX as i64))]
    pub index: Option<u32>,

    /// Largest request, in 4 KiB pages, 1..1024 [default: 256 = 1 MiB]
    #[arg(long = "max-io-pages", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_IO_PAGES as i64))]
    pub max_io_pages: Option<u32>,

    /// Requests in flight to the export node, per queue, 1..1024 [default:
    /// 128]
    #[arg(long = "queue-depth", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUE_DEPTH as i64))]
    pub queue_depth: Option<u32>,

    /// Hardware queues of the device, each with its own connection, 1..16
    /// [default: 1]
    #[arg(long = "queues", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=MAX_QUEUES as i64))]
    pub queues: Option<u32>,

    /// The identity the export node fences this device's connections by, in
    /// decimal or hex with 0x, 1..0xffffffffffffffff; give each device one of
    /// its own, the same every time it is created, so that fencing holds
    /// across re-creation and reboots [default: random]
    #[arg(long = "client-id", value_name = "ID", value_parser = parse_client_id)]
    pub client_id: Option<u64>,

    /// Keep trying to connect while the export node is unreachable, refuses
    /// or is busy: until interrupted, or for at most TIME (e.g. --wait=5m)
    /// [default: try once]
    #[arg(long = "wait", value_name = "TIME", num_args = 0..=1, require_equals = true,
          default_missing_value = "forever", value_parser = parse_wait)]
    pub wait: Option<Wait>,

    /// Create a new device even if this node has one for the same export
    /// [default: print the existing device's path instead]
    #[arg(long = "duplicate")]
    pub duplicate: bool,

    /// Timeouts and resends.
    #[command(flatten)]
    pub settings: SettingsArgs,

    /// Protection and key.
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// `-d DEV`, optional to clap (`cli.rs` says what it is for when missing).
#[derive(Debug, Clone, Args)]
pub struct DeviceArg {
    /// The device: dstN, /dev/dstN or N (required)
    #[arg(short = 'd', long = "device", value_name = "DEV", value_parser = parse_device)]
    pub device: Option<u32>,
}

/// `dstcfg delete`.
#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The device to delete.
    #[command(flatten)]
    pub device: DeviceArg,

    /// Delete the device even if it is mounted or open: IO in flight fails,
    /// and data not yet written (a file system's cached writes included) is
    /// lost [default: refuse an open device]
    #[arg(long)]
    pub force: bool,
}

/// `dstcfg set`.
#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// The device to change; without it, module-wide settings
    #[arg(short = 'd', long = "device", value_name = "DEV", value_parser = parse_device)]
    pub device: Option<u32>,

    /// The device's timeouts and resends.
    #[command(flatten)]
    pub settings: SettingsArgs,

    /// Workers that protect (checksum, MAC, encrypt) messages for every
    /// device and export, 0..64; 0 = in the sending and receiving threads
    #[arg(long = "crypto-threads", value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=MAX_CRYPTO_THREADS as i64),
          help_heading = "Module settings (without -d)")]
    pub crypto_threads: Option<u32>,

    /// Replace each keyed connection's keys (hmac, aead) after it protected
    /// SIZE in one direction, 1M..1T in whole MiB, K, M, G, T as for --size
    /// [default: 64G]
    #[arg(long = "rekey-after", value_name = "SIZE", value_parser = parse_rekey_after,
          help_heading = "Module settings (without -d)")]
    pub rekey_after: Option<u32>,

    /// ... or after TIME, whichever comes first; 1s..24h in whole seconds,
    /// a number alone is seconds [default: 1h]
    #[arg(long = "rekey-interval", value_name = "TIME", value_parser = parse_rekey_interval,
          help_heading = "Module settings (without -d)")]
    pub rekey_interval: Option<u32>,
}

/// `--json` of list and status.
#[derive(Debug, Clone, Args)]
pub struct JsonArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `dstcfg monitor`.
#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// One JSON object per line instead of text
    #[arg(long)]
    pub json: bool,

    /// First print every device and export as it is now (event "exists")
    #[arg(long)]
    pub now: bool,

    /// Stop after N events (those of --now not counted) [default: run
    /// until interrupted]
    #[arg(long = "count", value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
}

/// `dstcfg genkey`.
#[derive(Debug, Clone, Args)]
pub struct GenkeyArgs {
    /// The key file to create (required)
    #[arg(short = 'f', long = "file", value_name = "PATH", value_hint = ValueHint::FilePath)]
    pub file: Option<PathBuf>,
}

/// `-f FILE` of apply and down: the configuration file.
#[derive(Debug, Clone, Args)]
pub struct ConfigFileArg {
    /// The configuration file
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = DEFAULT_CONFIG,
          value_hint = ValueHint::FilePath)]
    pub file: PathBuf,
}

/// `dstcfg apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigFileArg,

    /// Print the plan, change nothing; exit 0 if the running state matches
    /// the file, 1 if not
    #[arg(long = "dry-run")]
    pub dry_run: bool,

    /// Keep trying the devices whose export node is unreachable, refuses or
    /// is busy: until interrupted, or for at most TIME (e.g. --wait=4m)
    /// [default: try each once]
    #[arg(long = "wait", value_name = "TIME", num_args = 0..=1, require_equals = true,
          default_missing_value = "forever", value_parser = parse_wait,
          conflicts_with = "dry_run")]
    pub wait: Option<Wait>,
}

/// `dstcfg save`.
#[derive(Debug, Clone, Args)]
pub struct SaveArgs {
    /// The file to write, - for standard output
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = DEFAULT_CONFIG,
          value_hint = ValueHint::FilePath)]
    pub file: PathBuf,

    /// Replace an existing file [default: refuse to]
    #[arg(long)]
    pub force: bool,
}

/// `dstcfg down`.
#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// The configuration file.
    #[command(flatten)]
    pub config: ConfigFileArg,

    /// Delete the file's devices even if they are mounted or open: IO in
    /// flight fails, and data not yet written is lost [default: refuse an
    /// open device]
    #[arg(long)]
    pub force: bool,

    /// Print what would be removed, change nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// Parses `--size`: a byte count with an optional binary suffix K, M, G or T
/// (any case, optionally followed by `iB`, e.g. `512M`, `10GiB`), or `B`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("the size must be at least 1 byte".into()),
        n => Ok(n),
    }
}

/// [`parse_size`], 0 included.
fn parse_bytes(s: &str) -> Result<u64, String> {
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
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "too large".to_string())
}

/// Parses `--rekey-after SIZE`: a size as [`parse_size`] takes it, a whole
/// number of MiB from 1 MiB to 1 TiB; returns MiB (`DST_A_REKEY_MIB`).
pub fn parse_rekey_after(s: &str) -> Result<u32, String> {
    let range = format!(
        "expected 1M..1T (1 MiB to 1 TiB, {}..{} MiB), e.g. 64G",
        REKEY_MIB.start(),
        REKEY_MIB.end()
    );
    let bytes = match parse_bytes(s) {
        Ok(bytes) => bytes,
        Err(e) if e == "too large" => return Err(format!("too large; {range}")),
        Err(e) => return Err(e),
    };
    if bytes % (1 << 20) != 0 {
        return Err(format!(
            "{} is not a whole number of MiB; give it with a unit, e.g. 512M or 64G (a \
             number alone is bytes)",
            s.trim()
        ));
    }
    match u32::try_from(bytes >> 20) {
        Ok(mib) if REKEY_MIB.contains(&mib) => Ok(mib),
        _ => Err(format!("{} is out of range; {range}", s.trim())),
    }
}

/// Parses `--rekey-interval TIME`: a duration as [`parse_duration_ms`]
/// takes it (`10m`, `1h`, `3600s`), a number alone being seconds (as
/// before durations), a whole number of seconds within 1..86400.
pub fn parse_rekey_interval(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let ms = parse_duration_ms(t, 1000)?;
    if ms % 1000 != 0 {
        return Err(format!(
            "{t} is not a whole number of seconds; the unit is 1 s"
        ));
    }
    let secs = ms / 1000;
    match u32::try_from(secs) {
        Ok(n) if REKEY_SECONDS.contains(&n) => Ok(n),
        _ => Err(format!(
            "{secs} s is out of range; expected {}..{} s (1s to 24h)",
            REKEY_SECONDS.start(),
            REKEY_SECONDS.end()
        )),
    }
}

/// Parses `--client-id`: a 64-bit number other than 0, in decimal or in hex
/// with `0x` (`4660`, `0x1234`, `0x0000000000001234`).
pub fn parse_client_id(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (t, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err("expected a number, in decimal or in hex with 0x (e.g. 4660 or 0x1234)".into());
    }
    match u64::from_str_radix(digits, radix) {
        Ok(0) => Err(
            "0 is not a client id; give 1..0xffffffffffffffff, or leave --client-id out for a \
             random one"
                .into(),
        ),
        Ok(id) => Ok(id),
        Err(_) => Err("too large; a client id has 64 bits (at most 0xffffffffffffffff)".into()),
    }
}

/// What every duration option says when it cannot read its value.
const DURATION_FORM: &str = "expected a duration such as 30s, 5m, 1h30m or 250ms";

/// Parses a duration into milliseconds: humantime's form (`30s`, `5m`,
/// `1h30m`, `250ms`, `2h 15m`), a decimal number of seconds (`1.5s`, as
/// dstcfg took it before humantime), or a number alone, in units of
/// `bare_ms` milliseconds (1 for the options that took milliseconds, 1000
/// for `--rekey-interval`, which took seconds). At most millisecond
/// precision.
pub fn parse_duration_ms(s: &str, bare_ms: u64) -> Result<u64, String> {
    let t = s.trim();
    let too_large = || "too large".to_string();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n: u64 = t.parse().map_err(|_| too_large())?;
        return n.checked_mul(bare_ms).ok_or_else(too_large);
    }
    if t.contains('.') {
        return parse_decimal_seconds(t);
    }
    let d = humantime::parse_duration(t).map_err(|e| {
        let bare = if bare_ms == 1000 {
            "seconds"
        } else {
            "milliseconds"
        };
        format!("{DURATION_FORM}, or a number of {bare}: {e}")
    })?;
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!(
            "{t} is not a whole number of milliseconds; the unit is 1 ms"
        ));
    }
    u64::try_from(d.as_millis()).map_err(|_| too_large())
}

/// Parses the older decimal form: `1.5s`, `0.25s` (at most 3 decimals);
/// `1.5` or `1.5ms` are refused, a millisecond being the unit.
fn parse_decimal_seconds(t: &str) -> Result<u64, String> {
    let (number, unit) = match (t.strip_suffix("ms"), t.strip_suffix('s')) {
        (Some(n), _) => (n, "ms"),
        (None, Some(n)) => (n, "s"),
        (None, None) => (t, ""),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(format!("'{t}' is not a duration; {DURATION_FORM}, or 1.5s"));
    }
    if unit != "s" {
        return Err(format!(
            "'{t}': milliseconds must be a whole number; give a fraction in seconds (1.5s)"
        ));
    }
    if fraction.len() > 3 {
        return Err("at most 3 decimals: the unit is 1 ms".into());
    }
    let too_large = || "too large".to_string();
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    let frac_ms: u64 = format!("{fraction:0<3}").parse().map_err(|_| too_large())?;
    whole
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(frac_ms))
        .ok_or_else(too_large)
}

/// `ms` for humans in the largest unit that holds it whole, as the help
/// gives ranges: `100ms`, `10m`, `24h`.
pub fn ms_text(ms: u64) -> String {
    match ms {
        0 => "0".into(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// [`parse_duration_ms`] (a number alone: milliseconds) within `range`
/// (or 0 if `zero_ok`).
fn ms_in(s: &str, range: RangeInclusive<u32>, zero_ok: bool) -> Result<u32, String> {
    let ms = parse_duration_ms(s, 1)?;
    if (zero_ok && ms == 0) || (*range.start() as u64..=*range.end() as u64).contains(&ms) {
        return Ok(ms as u32);
    }
    let zero = if zero_ok { "0 or " } else { "" };
    Err(format!(
        "{ms} ms is out of range; expected {zero}{}..{} ms ({} to {})",
        range.start(),
        range.end(),
        ms_text((*range.start()).into()),
        ms_text((*range.end()).into()),
    ))
}

/// Parses `--req-timeout`: a duration within [`REQ_TIMEOUT_MS`].
pub fn parse_req_timeout(s: &str) -> Result<u32, String> {
    ms_in(s, REQ_TIMEOUT_MS, false)
}

/// Parses `--reconnect-delay`: a duration within [`RECONNECT_DELAY_MS`].
pub fn parse_reconnect_delay(s: &str) -> Result<u32, String> {
    ms_in(s, RECONNECT_DELAY_MS, false)
}

/// Parses `--ping-interval`: a duration within [`PING_INTERVAL_MS`], or 0.
pub fn parse_ping_interval(s: &str) -> Result<u32, String> {
    ms_in(s, PING_INTERVAL_MS, true)
}

/// Parses `--ping-timeout`: a duration within [`PING_TIMEOUT_MS`].
pub fn parse_ping_timeout(s: &str) -> Result<u32, String> {
    ms_in(s, PING_TIMEOUT_MS, false)
}

/// Parses `--loss-timeout`: a duration within [`LOSS_TIMEOUT_MS`], or
/// `infinite` ([`LOSS_TIMEOUT_INFINITE`]).
pub fn parse_loss_timeout(s: &str) -> Result<u32, String> {
    if s.trim() == "infinite" {
        return Ok(LOSS_TIMEOUT_INFINITE);
    }
    ms_in(s, LOSS_TIMEOUT_MS, false).map_err(|e| {
        if e.contains("out of range") {
            format!("{e}; or infinite, to wait for the export node without end")
        } else {
            e
        }
    })
}

/// A loss timeout as dstcfg shows it: `infinite`, or milliseconds.
pub fn loss_timeout_text(ms: u32) -> String {
    if ms == LOSS_TIMEOUT_INFINITE {
        "infinite".into()
    } else {
        ms.to_string()
    }
}

/// Parses the TIME of `--wait=TIME`: `forever` or `infinite`, or a
/// duration with its unit (`90s`, `5m`); a number alone is refused, as it
/// could mean seconds as well as milliseconds.
pub fn parse_wait(s: &str) -> Result<Wait, String> {
    let t = s.trim();
    if t == "forever" || t == "infinite" {
        return Ok(Wait::Forever);
    }
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "give the unit: {t}s, {t}m, ... (or --wait alone: until interrupted)"
        ));
    }
    match parse_duration_ms(t, 1)? {
        0 => Err("the time must be more than 0; give e.g. --wait=30s".into()),
        ms => Ok(Wait::For(Duration::from_millis(ms))),
    }
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

/// Parses `--alg`: a kernel crypto API name, 1..63 printable ASCII
/// characters without blanks.
pub fn parse_alg(s: &str) -> Result<String, String> {
    if !ALLOWED_ALGS.contains(&s) {
        return Err(format!(
            "not allowed: use one of {} (the module accepts no other)",
            ALLOWED_ALGS.join(", ")
        ));
    }
    Ok(s.to_string())
}

/// The algorithms the module accepts (`ALLOWED_ALGS` in dst/security.rs):
/// hmac's, then aead's.
const ALLOWED_ALGS: [&str; 5] = [
    "hmac(sha256)",
    "hmac(sha384)",
    "hmac(sha512)",
    "gcm(aes)",
    "rfc7539(chacha20,poly1305)",
];

/// Parses an identity (`-n NAME`, `--client-name NAME`): 1..63 printable
/// ASCII characters (`!`..`~`), no spaces, as the handshake's name fields
/// carry them.
pub fn parse_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "empty name; a name is 1..63 printable ASCII characters without spaces, e.g. \
             store1:sdb"
                .into(),
        );
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "{c:?} is not allowed: a name is printable ASCII (! to ~) without spaces, e.g. \
             store1:sdb"
        ));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!(
            "{} characters; a name has at most {MAX_NAME_LEN}",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// Parses `--key-desc DESC`: the description of a keyring key, 1..255
/// bytes of printable characters (spaces included, as in NVMe's key
/// descriptions), no NUL; taken as is, for the kernel to look up.
pub fn parse_key_desc(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err(
            "empty description; give the description of a logon or user key, e.g. dst:pair1".into(),
        );
    }
    if s.contains('\0') {
        return Err("the description contains a NUL byte".into());
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{c:?} is not allowed: a key description is printable characters, e.g. dst:pair1"
        ));
    }
    if s.len() > MAX_KEY_DESC_LEN {
        return Err(format!(
            "{} bytes; a key description has at most {MAX_KEY_DESC_LEN}",
            s.len()
        ));
    }
    Ok(s.to_string())
}

/// Parses `--client NAME=PATH[,ro|,rw]` or `--client NAME=@DESC[,ro|,rw]`:
/// NAME ends at the first `=` and is checked as [`parse_name`]; a trailing
/// `,ro` or `,rw` is the access (`,rw` if none; a key file whose name ends
/// in `,ro` or `,rw` needs one after it); the rest is the key file PATH,
/// or, after `@`, a keyring key's description checked as
/// [`parse_key_desc`].
pub fn parse_client(s: &str) -> Result<ClientRule, String> {
    const FORM: &str = "expected NAME=PATH or NAME=@DESC, optionally with ,ro or ,rw (e.g. \
                        web1=/etc/dst/web1.key or backup=@dst:backup,ro)";
    let Some((name, rest)) = s.split_once('=') else {
        return Err(format!("no '=' after the client name; {FORM}"));
    };
    let name = parse_name(name).map_err(|e| format!("client name: {e}"))?;
    let (key, read_only) = if let Some(k) = rest.strip_suffix(",ro") {
        (k, true)
    } else if let Some(k) = rest.strip_suffix(",rw") {
        (k, false)
    } else {
        if let Some((_, seg)) = rest.rsplit_once(',') {
            if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_alphabetic()) {
                return Err(format!(
                    "unknown access ',{seg}'; use ,ro or ,rw (a key file whose name ends in \
                     ,{seg} needs ,rw or ,ro after it)"
                ));
            }
        }
        (rest, false)
    };
    let key = match key.strip_prefix('@') {
        Some(desc) => ClientKeySource::Keyring(
            parse_key_desc(desc).map_err(|e| format!("client {name}'s key: {e}"))?,
        ),
        None if key.is_empty() => {
            return Err(format!("no key file after '{name}='; {FORM}"));
        }
        None => ClientKeySource::File(PathBuf::from(key)),
    };
    Ok(ClientRule {
        name,
        key,
        read_only,
    })
}

/// Parses `--allow PREFIX[:ro|:rw]`: an IPv4 or IPv6 address (IPv6 may be
/// in brackets) with an optional `/LEN`, then an optional `:ro` or `:rw`.
/// Host bits must be zero (`10.0.0.0/24`, not `10.0.0.1/24`).
pub fn parse_allow(s: &str) -> Result<AllowRule, String> {
    let t = s.trim();
    let (prefix, read_only) = if let Some(p) = t.strip_suffix(":ro") {
        (p, true)
    } else if let Some(p) = t.strip_suffix(":rw") {
        (p, false)
    } else {
        if let Some((_, seg)) = t.rsplit_once(':') {
            if !seg.is_empty()
                && seg.chars().all(|c| c.is_ascii_alphabetic())
                && !seg.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(format!("unknown access ':{seg}'; use :ro or :rw"));
            }
        }
        (t, false)
    };
    let (addr, len) = match prefix.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (prefix, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: IpAddr = addr.parse().map_err(|_| {
        format!(
            "'{addr}' is not an IPv4 or IPv6 address; expected e.g. 192.0.2.0/24, \
             2001:db8::/32:ro or 192.0.2.7"
        )
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(len) => match len.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("bad prefix length '/{len}'; expected /0../{max}")),
        },
    };
    let network = mask(ip, prefix_len);
    if network != ip {
        return Err(format!(
            "{ip}/{prefix_len} has host bits set; did you mean {network}/{prefix_len}?"
        ));
    }
    Ok(AllowRule {
        addr: ip,
        prefix_len,
        read_only,
    })
}

/// `ip` with every bit past the first `len` cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}
