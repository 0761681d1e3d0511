//! `dstcfg`: userspace configuration tool of DST, the network block device
//! implemented by the kernel module `dst.ko`.
//!
//! Layout: `cli` parses and validates the command line, `action` carries it
//! out through `client` (the `dst` generic netlink family), which builds on
//! `message` (typed messages and attributes), `netlink` (socket, family
//! resolution, errors) and `uapi` (the ABI numbers of
//! `include/uapi/linux/dst.h`); `output` formats what `-a list` prints.
//! Reference: `Documentation/dstcfg.md`.
//!
//! Exit status: 0 on success, 1 on a runtime error, 2 on a usage error.

mod action;
mod cli;
mod client;
mod message;
mod netlink;
mod output;
#[allow(dead_code)] // an ABI mirror: not every number is used yet
mod uapi;

use std::process::ExitCode;

use clap::error::ErrorKind;

fn main() -> ExitCode {
    let cmd = match cli::parse() {
        Ok(cmd) => cmd,
        Err(err) => return usage_error(err),
    };
    match action::run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("dstcfg: {err:#}");
            let hint = err
                .chain()
                .find_map(|e| e.downcast_ref::<netlink::KernelError>())
                .and_then(|kerr| kerr.hint());
            if let Some(hint) = hint {
                eprintln!("dstcfg: hint: {hint}");
            }
            ExitCode::FAILURE
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
