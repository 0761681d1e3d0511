//! Renders the man page (dstcfg.8) and the bash, zsh and fish completions
//! from the clap definition the binary uses (`src/args.rs`, with the ABI
//! numbers of `src/uapi.rs`; both depend on nothing but std and clap).
//!
//! The files are written to OUT_DIR (the tests read them there) and copied
//! next to the binary, into `<target>/<profile>/man/dstcfg.8` and
//! `<target>/<profile>/completions/{dstcfg.bash,_dstcfg,dstcfg.fish}`
//! (`tools/dstcfg/target/release/...` after `cargo build --release`). If
//! DSTCFG_GEN_DIR is set, they are copied there as well (`man/` and
//! `completions/` below it).

#[path = "src/uapi.rs"]
#[allow(dead_code)]
mod uapi;

#[path = "src/args.rs"]
#[allow(dead_code)]
mod args;

use std::fs;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, ValueEnum};
use clap_complete::{generate, Shell};
use roff::{bold, italic, roman, Roff};

use args::ActionKind;

/// The completion files: shell and file name.
const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "dstcfg.bash"),
    (Shell::Zsh, "_dstcfg"),
    (Shell::Fish, "dstcfg.fish"),
];

fn main() {
    for path in ["build.rs", "src/args.rs", "src/uapi.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
    println!("cargo:rerun-if-env-changed=DSTCFG_GEN_DIR");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));

    let man = man_page();
    write(&out_dir.join("dstcfg.8"), man.as_bytes());
    let mut completions = Vec::new();
    for (shell, name) in COMPLETIONS {
        let mut cmd = args::Cli::command();
        let mut buf = Vec::new();
        generate(shell, &mut cmd, "dstcfg", &mut buf);
        write(&out_dir.join(name), &buf);
        completions.push((name, buf));
    }

    let mut dests: Vec<PathBuf> = profile_dir(&out_dir).into_iter().collect();
    dests.extend(std::env::var_os("DSTCFG_GEN_DIR").map(PathBuf::from));
    if dests.is_empty() {
        println!(
            "cargo:warning=cannot tell the profile folder from OUT_DIR {}; the man page and \
             completions are only in OUT_DIR",
            out_dir.display()
        );
    }
    for dest in dests {
        write(&dest.join("man").join("dstcfg.8"), man.as_bytes());
        for (name, buf) in &completions {
            write(&dest.join("completions").join(name), buf);
        }
    }
}

/// `<target>/<profile>` from OUT_DIR, `<target>/<profile>/build/<pkg>/out`.
fn profile_dir(out_dir: &Path) -> Option<PathBuf> {
    let build = out_dir.parent()?.parent()?;
    if build.file_name()? != "build" {
        return None;
    }
    build.parent().map(Path::to_path_buf)
}

/// Writes `bytes` to `path` (creating its folder), unless it holds them
/// already (so that timestamps only change with the content).
fn write(path: &Path, bytes: &[u8]) {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return;
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// What each action does, for the ACTIONS section (longer than `--help`).
fn action_text(action: ActionKind) -> &'static str {
    match action {
        ActionKind::Export => {
            "Serve the block device -f PATH to local nodes, listening on -r ADDR (port 1025 \
             unless -p or ADDR:PORT says otherwise). Prints what it exports. Options: -n, \
             --read-only, --size, --max-io-pages, the security options and --allow. The \
             export has an identity, -n NAME or the module's default HOST:DEVICE (the host \
             name and the block device's name, e.g. node1:sdb); it is sent in the handshake \
             and enters the key derivation, and a local node may ask for it by name."
        }
        ActionKind::Unexport => {
            "Stop the export listening on -r ADDR and port; its clients lose their connection \
             and reconnect until their loss timeout."
        }
        ActionKind::Local => {
            "Connect to the export node at -r ADDR and create /dev/dstN; prints only the \
             device path, so that scripts can capture it. Options: -n, --client-name, -i, \
             --max-io-pages, --queue-depth, --queues, --client-id, the device settings and the \
             security options. The device accepts one export identity only, at connect and \
             at every reconnect: -n NAME, or without -n the identity of the export it reaches \
             first, which the module then pins (-a list shows it as export NAME). So a device \
             stays bound to its export even if another export holding the same key answers \
             at the address later. --client-name gives this node's own identity (default: \
             the host name). The export node fences a device by its client id: before it serves a \
             new connection it ends the older ones of the same id and waits for their \
             requests. The module picks a random id for each device unless --client-id \
             gives one; give a device the same --client-id every time it is created (and \
             no two devices the same one) for fencing to hold across re-creation and \
             reboots."
        }
        ActionKind::Delete => {
            "Disconnect and delete the device -d DEV. While it is mounted or open (a partition \
             of it included) the module refuses with EBUSY and leaves it working; dstcfg asks \
             again for up to 5 s (udev opens a new device for a moment) before it reports the \
             error. Unmount it and stop its users, or give --force: the device is deleted \
             anyway, its IO fails and data not yet written (a file system's cached writes \
             included) is lost. Does not wait for an unreachable export node."
        }
        ActionKind::Set => {
            "With -d DEV: change device settings (the timeouts and --max-resends) of a live \
             device; the others keep their values. Without -d: module-wide settings, any of \
             --crypto-threads, --rekey-after and --rekey-interval; the others keep their \
             values. Each direction of a connection with a key (hmac, aead) replaces its key \
             in-band after it protected --rekey-after SIZE or after --rekey-interval SECS, \
             whichever comes first (default: 64G, 3600 s)."
        }
        ActionKind::List => {
            "Show every export and device: a table, or with --json an array of objects \
             (settings and counters included)."
        }
        ActionKind::Status => {
            "Show the module version, the wire protocol, the crypto threads, the key-update \
             limits and a table of the counters of every export and device; with --json only \
             the module's values."
        }
        ActionKind::Monitor => {
            "Print one line per event as it happens: time, dstN or exportN, the event \
             (connected, lost, reconnected, failed, deleted, session-opened, session-closed, \
             session-refused), the peer and the reason when given. With --json one object per \
             line. Runs until interrupted (SIGINT and SIGTERM exit with status 0) or --count N \
             events. Needs CAP_NET_ADMIN."
        }
        ActionKind::Check => {
            "Print the state of the device -d DEV and exit 0 if it is connected, 1 if it exists \
             but is not (reconnecting, failed, closing), 2 on an error (no such device, module \
             not loaded, no permission)."
        }
        ActionKind::Genkey => {
            "Write 32 random bytes from the kernel's random number generator to the new file \
             -f PATH, with mode 0600; refuses to overwrite an existing file. Needs no module."
        }
    }
}

/// The man page: clap_mangen's title, name, synopsis, description and
/// options, then sections of our own.
fn man_page() -> String {
    let cmd = args::Cli::command();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let man = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("System Administration")
        .source(format!("dstcfg {version}"));
    // Every part starts with the same preamble; keep it once.
    let preamble = Roff::new().render();
    let part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        render(&mut buf).expect("rendering into memory");
        let text = String::from_utf8(buf).expect("UTF-8");
        text.strip_prefix(&preamble).unwrap_or(&text).to_string()
    };
    let mut page = preamble.clone();
    page.push_str(&part(&|w| man.render_title(w)));
    page.push_str(&part(&|w| man.render_name_section(w)));
    page.push_str(&part(&|w| man.render_synopsis_section(w)));
    page.push_str(&part(&|w| man.render_description_section(w)));
    page.push_str(&part(&|w| man.render_options_section(w)));

    let mut r = Roff::new();
    r.control("SH", ["ACTIONS"]);
    r.text([roman(
        "The action is given with -a ACTION, or as the first word without -a.",
    )]);
    for action in ActionKind::value_variants() {
        r.control("TP", []);
        r.text([bold(action.name())]);
        r.text([roman(action_text(*action))]);
    }

    r.control("SH", ["EXIT STATUS"]);
    r.control("TP", []);
    r.text([bold("0")]);
    r.text([roman("Success.")]);
    r.control("TP", []);
    r.text([bold("1")]);
    r.text([roman(
        "The action failed; stderr says why (the kernel's errno and message) and, where \
         the remedy is clear, what to do (a line starting with \"dstcfg: hint:\").",
    )]);
    r.control("TP", []);
    r.text([bold("2")]);
    r.text([roman(
        "Usage error: unknown or misplaced option, value out of range, missing argument.",
    )]);
    r.control("PP", []);
    r.text([roman("For "), bold("check"), roman(":")]);
    r.control("TP", []);
    r.text([bold("0")]);
    r.text([roman("The device is connected.")]);
    r.control("TP", []);
    r.text([bold("1")]);
    r.text([roman(
        "The device exists but is not connected: reconnecting, failed or closing.",
    )]);
    r.control("TP", []);
    r.text([bold("2")]);
    r.text([roman(
        "Error: no such device, the module is not loaded, no permission, or a usage error.",
    )]);

    r.control("SH", ["PRIVILEGES"]);
    r.text([roman(
        "Every action but genkey needs the dst module loaded and CAP_NET_ADMIN. export, \
         unexport, local and delete open or create block devices and need CAP_SYS_ADMIN as \
         well; status, list, check, monitor and set need CAP_NET_ADMIN only. Both \
         capabilities count in the initial user namespace: run dstcfg as root. Without \
         CAP_SYS_ADMIN the kernel refuses with EPERM and a message naming it; without \
         CAP_NET_ADMIN with a bare EPERM.",
    )]);

    r.control("SH", ["KEYS"]);
    r.text([roman(
        "A pre-shared key (--key-file) is the raw contents of a file of 16 to 64 bytes, the \
         same file on the export node and the local node. It must be a regular file that \
         group and others cannot access (chmod 600 PATH); dstcfg refuses it otherwise. \
         \"dstcfg -a genkey -f PATH\" writes a new 32-byte key. dstcfg never prints a key and \
         clears it from memory once it is sent; the module never reports it back.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "Instead of a file, the key may be kept in the kernel keyring, as NVMe/TCP keeps its \
         TLS keys: --key-desc DESC names a key of type logon (or else user) in the keyrings \
         of the process that runs dstcfg, whose payload of 16 to 64 bytes is the key; the \
         module looks it up and copies it when the export or the device is added, and dstcfg \
         never sees it. Load it once on each node, as root, for example \
         \"keyctl padd logon dst:pair1 @u < /etc/dst/psk\"; a logon key cannot be read back \
         by any process. --key-file and --key-desc exclude each other. Without such a key \
         the module refuses with ENOKEY (EACCES if dstcfg may not search it); a module \
         older than --key-desc refuses the option as an unknown attribute.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "An export may also give a client identity a key of its own: --client NAME=PATH \
         (a key file, checked as --key-file) or --client NAME=@DESC (a keyring key, as \
         --key-desc), with ,ro for a read-only device; up to 16, each name once. Only the \
         holder of that key can connect as NAME (the local node's --client-name, default its \
         host name); any other client needs the export's own key, and without one is \
         refused. With --client, --protection hmac or aead needs no key of the export's own. \
         Fencing is bound to the identity: a client cannot end another identity's \
         connections.",
    )]);

    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([italic("/sys/block/dstN/dst/")]);
    r.text([roman(
        "Read-only attributes of a device: peer, state, size, read_only, queue_depth, \
         queued, the counters, the six settings and, with a module that has them, \
         integrity_errors, protection and queues.",
    )]);
    r.control("TP", []);
    r.text([italic("/proc/crypto")]);
    r.text([roman("The crypto algorithms the kernel has, for --alg.")]);

    r.control("SH", ["EXAMPLES"]);
    r.control("nf", []);
    // The examples without the notes after them (those have sections here).
    for line in args::EXAMPLES
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("Times (MS)"))
    {
        r.text([roman(line)]);
    }
    r.control("fi", []);

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("mdadm"),
        roman("(8), "),
        bold("lvm"),
        roman("(8), "),
        bold("insmod"),
        roman(
            "(8). The DST documentation: Documentation/admin-guide.md (operating DST), \
               Documentation/dstcfg.md (this tool), Documentation/protocol.md (the wire \
               protocol and its security).",
        ),
    ]);
    page.push_str(&part(&|w| r.to_writer(w)));
    page.push_str(&part(&|w| man.render_version_section(w)));
    page
}
