//! `dstcfg`: userspace configuration tool of DST, the network block device
//! implemented by the kernel module `dst.ko`.
//!
//! Layout: `args` is the clap definition of the command line (shared with
//! `build.rs`, which renders the man page and the shell completions from
//! it), `cli` validates it into a `Command`, `action` carries that out
//! through `client` (the `dst` generic netlink family), which builds on
//! `message` (typed messages and attributes), `netlink` (socket, family
//! resolution, multicast, errors) and `uapi` (the ABI numbers of
//! `include/uapi/linux/dst.h`); `output` formats what dstcfg prints and
//! `secret` handles pre-shared keys. `discover` asks an export address
//! over TCP, with the module's wire definitions (`proto`, the module's
//! `dst/proto.rs`). `apply`, `save` and `down` work on the
//! configuration file (`config`), through a plan (`plan`) and the record
//! of what they manage (`record`); `save` renders the running state as a
//! file. Reference: `Documentation/dstcfg.md`.
//!
//! Exit status: 0 on success, 1 on a runtime error, 2 on a usage error;
//! `-a check`: 0 connected, 1 not connected, 2 on any error.

mod action;
mod apply;
#[allow(dead_code)] // shared with build.rs; not every item is used by both
mod args;
mod cli;
mod client;
mod compat;
mod config;
mod connect;
mod discover;
#[cfg(test)]
mod golden;
mod json;
mod message;
mod netlink;
mod output;
mod plan;
// The module's code, kept buildable by the oldest Rust the kernel takes: a
// newer clippy's `is_multiple_of` is not for it.
#[allow(clippy::manual_is_multiple_of)]
#[path = "../../../dst/proto.rs"]
mod proto;
mod record;
mod save;
mod secret;
#[allow(dead_code)] // an ABI mirror: not every number is used yet
mod uapi;

use std::process::ExitCode;

use clap::error::ErrorKind;

fn main() -> ExitCode {
    let cmd = match cli::parse() {
        Ok(cmd) => cmd,
        Err(err) => return usage_error(err),
    };
    let is_check = matches!(cmd, cli::Command::Check { .. });
    match action::run(cmd) {
        Ok(status) => ExitCode::from(status),
        Err(err) => {
            eprintln!("dstcfg: {err:#}");
            let hint = err
                .chain()
                .find_map(|e| e.downcast_ref::<netlink::KernelError>())
                .and_then(|kerr| kerr.hint());
            if let Some(hint) = hint {
                eprintln!("dstcfg: hint: {hint}");
            }
            if is_check {
                ExitCode::from(action::CHECK_ERROR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints a clap error with the `dstcfg:` prefix (help and version as they
/// are) and returns clap's exit status (2 for usage errors).
fn usage_error(err: clap::Error) -> ExitCode {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let text = err.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    eprint!("dstcfg: {text}");
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(2))
}

#[cfg(test)]
mod tests {
    use crate::args::ACTIONS;

    /// The man page build.rs rendered from the clap definition.
    const MAN: &str = include_str!(concat!(env!("OUT_DIR"), "/dstcfg.8"));

    #[test]
    fn man_page_names_every_action() {
        assert!(MAN.contains("\n.TH dstcfg 8 "), "not a man page:\n{MAN}");
        for section in [
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "SUBCOMMANDS",
            "\"EXIT STATUS\"",
            "EXAMPLES",
            "\"SEE ALSO\"",
        ] {
            assert!(
                MAN.contains(&format!(".SH {section}")),
                "no section {section}"
            );
        }
        for action in ACTIONS {
            let entry = format!(".SS \"dstcfg {action}\"");
            assert!(MAN.contains(&entry), "the man page lacks {action}");
        }
        for needle in [
            "\\-\\-crypto\\-threads",
            "\\-\\-rekey\\-after",
            "\\-\\-rekey\\-interval",
            "whichever comes first",
            "\\-\\-key\\-file",
            "\\-\\-key\\-desc",
            "keyctl padd logon dst:pair1 @u",
            "kernel keyring",
            "\\-\\-allow",
            "\\-\\-force",
            "chmod 600",
            "\\-n\\fR, \\fB\\-\\-name\\fR",
            "\\-\\-client\\-name",
            "then pins",
            "\\-\\-wait",
            "\\-\\-now",
            "\\-\\-duplicate",
            "infinite",
            "Asking again is harmless",
            "dstcfg \\-r 192.0.2.1 \\-a local",
            "/etc/dst/dst.toml",
            "/run/dst/applied.json",
            "\\-\\-dry\\-run",
            "\\-\\-shared",
            "\\-\\-read\\-only",
            ".SH \"ONE WRITER\"",
            "the export is in use read\\-write by NAME",
            "network namespace",
            "/sys/kernel/dst/exportN/",
        ] {
            assert!(MAN.contains(needle), "the man page lacks {needle}");
        }
    }

    #[test]
    fn completions_know_the_actions() {
        for file in ["dstcfg.bash", "_dstcfg", "dstcfg.fish"] {
            let path = std::path::Path::new(env!("OUT_DIR")).join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            for action in ACTIONS {
                assert!(text.contains(action), "{file} lacks {action}");
            }
            for option in [
                "crypto-threads",
                "rekey-after",
                "rekey-interval",
                "force",
                "key-desc",
            ] {
                assert!(text.contains(option), "{file} lacks --{option}");
            }
        }
    }
}
