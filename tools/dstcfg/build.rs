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

use clap::CommandFactory;
use clap_complete::{generate, Shell};
use roff::{bold, italic, roman, Roff};

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

/// The options of subcommand `sub` for its part of the SUBCOMMANDS section:
/// clap_mangen's option entries, each group under a line of its own
/// instead of a section (a man page has no third level of headings).
fn subcommand_options(sub: &clap::Command, preamble: &str) -> String {
    let mut buf = Vec::new();
    clap_mangen::Man::new(sub.clone())
        .render_options_section(&mut buf)
        .expect("rendering into memory");
    let rendered = String::from_utf8(buf).expect("UTF-8");
    let rendered = rendered.strip_prefix(preamble).unwrap_or(&rendered);
    let mut out = String::new();
    for line in rendered.lines() {
        match line.strip_prefix(".SH ") {
            Some(heading) => {
                let heading = heading.trim_matches('"');
                let mut words = heading.to_lowercase();
                if let Some(first) = words.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                out.push_str(&format!(".PP\n\\fI{words}:\\fR\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
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
    r.control("SH", ["SUBCOMMANDS"]);
    r.text([roman(
        "Each subcommand takes the options listed with it. The older form gives the \
         subcommand with -a (or --action) among the options, before or after them: \
         \"dstcfg -r 192.0.2.1 -a local\" is \"dstcfg local -r 192.0.2.1\".",
    )]);
    page.push_str(&part(&|w| r.to_writer(w)));
    let mut cli = args::Cli::command();
    cli.build();
    for sub in cli.get_subcommands() {
        let mut r = Roff::new();
        r.control("SS", [format!("dstcfg {}", sub.get_name()).as_str()]);
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string())
            .unwrap_or_default();
        for (i, paragraph) in about.split("\n\n").enumerate() {
            if i > 0 {
                r.control("PP", []);
            }
            r.text([roman(paragraph)]);
        }
        page.push_str(&part(&|w| r.to_writer(w)));
        page.push_str(&subcommand_options(sub, &preamble));
    }

    let mut r = Roff::new();
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
        "Every subcommand but genkey needs the dst module loaded and CAP_NET_ADMIN. export, \
         unexport, release, local, delete, apply and down open or create block devices and \
         need CAP_SYS_ADMIN as well; status, list, check, monitor, set and save need \
         CAP_NET_ADMIN only. Both \
         capabilities count in the initial user namespace: run dstcfg as root. Without \
         CAP_SYS_ADMIN the kernel refuses with EPERM and a message naming it; without \
         CAP_NET_ADMIN with a bare EPERM.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "Exports and devices belong to the network namespace dstcfg ran in when it made them \
         (ip netns exec NS dstcfg ...): they listen and connect there, and list, status, \
         monitor, check, unexport, release, delete and set see only those of the namespace \
         dstcfg runs in; another namespace's device is \"no such device in this network \
         namespace\" (ENOENT), although /dev/dstN is visible to all. A namespace that goes \
         away takes its exports and devices down (devices as by delete --force).",
    )]);

    r.control("SH", ["KEYS"]);
    r.text([roman(
        "A pre-shared key (--key-file) is the raw contents of a file of 16 to 64 bytes, the \
         same file on the export node and the local node. It must be a regular file that \
         group and others cannot access (chmod 600 PATH); dstcfg refuses it otherwise. \
         \"dstcfg genkey -f PATH\" writes a new 32-byte key. dstcfg never prints a key and \
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

    r.control("SH", ["ONE WRITER"]);
    r.text([roman(
        "An export lets one local node identity write at a time: the --client-name of its \
         devices, by default the host name, so give every local node one of its own. The \
         first to attach read-write holds the write access, across reconnects, until it \
         deletes its last device of the export while connected. Another identity asking for \
         read-write is refused with EBUSY, \"the export is in use read-write by NAME at \
         ADDR:PORT\"; local --wait and apply --wait do not wait for it. local --read-only \
         attaches for reads only and is never refused so. On the export node, list shows \
         the holder (writer) and release takes the write access back from one gone for \
         good, powered off or its device deleted while the export node was out of reach; \
         never from one that may still write, which would take it back later and write \
         stale data. export --shared lets any number of nodes write: only for a cluster file \
         system (GFS2, OCFS2); ext4 or xfs mounted on two nodes, an md array assembled or an \
         LVM volume group activated on two hosts are corrupted.",
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
    r.text([italic("/sys/kernel/dst/exportN/")]);
    r.text([roman(
        "Read-only attributes of an export (of every network namespace): name, listen, \
         path, size, read_only, sessions, clients, the counters and, with a module that has \
         them, shared and writer (the holder of the write access, NAME ADDR:PORT, or empty).",
    )]);
    r.control("TP", []);
    r.text([italic("/etc/dst/dst.toml")]);
    r.text([roman(
        "The configuration file of apply, save and down: [module], [[export]] and \
         [[device]] entries with the options above as keys (see Documentation/dstcfg.md).",
    )]);
    r.control("TP", []);
    r.text([italic("/run/dst/applied.json")]);
    r.text([roman(
        "What apply made or adopted, per configuration file: apply and down remove only \
         what it lists.",
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
        .take_while(|l| !l.starts_with("Times:"))
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
