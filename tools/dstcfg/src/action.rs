//! Carries out a validated [`Command`] against the kernel module.
//!
//! Every error is given the action's name as context, so it prints as
//! `dstcfg: ACTION: <errno text> (<ERRNO>): <kernel message>`; kernel errors
//! with an obvious remedy for this action get a hint (see [`hint_for`]).

use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{Command, MAX_INDEX, MAX_PATH_LEN};
use crate::client::DstClient;
use crate::message::{DeviceRequest, ExportRequest};
use crate::netlink::{errno_text, KernelError};
use crate::output::{human_size, list_json, list_table};

/// Runs `cmd`; the error says what went wrong and, where known, what to do.
pub fn run(cmd: Command) -> Result<()> {
    let name = action_name(&cmd);
    execute(&cmd)
        .map_err(|err| add_hint(err, &cmd))
        .context(name)
}

/// The `-a` name of a command.
fn action_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Status { .. } => "status",
        Command::Export { .. } => "export",
        Command::Unexport { .. } => "unexport",
        Command::Local { .. } => "local",
        Command::Delete { .. } => "delete",
        Command::Set { .. } => "set",
        Command::List { .. } => "list",
    }
}

fn execute(cmd: &Command) -> Result<()> {
    match cmd {
        Command::Status { json } => {
            let status = DstClient::connect()?.status()?;
            if *json {
                println!("{}", status.to_json());
            } else {
                println!("{}", status.to_text());
            }
        }
        Command::Export {
            remote,
            file,
            read_only,
            size,
            max_io_pages,
        } => {
            let path = path_attr(&block_device(file)?)?;
            let req = ExportRequest {
                addr: *remote,
                path,
                read_only: *read_only,
                size: *size,
                max_io_pages: *max_io_pages,
            };
            DstClient::connect()?.export_add(&req)?;
            println!("{}", export_message(&req));
        }
        Command::Unexport { remote } => {
            DstClient::connect()?.export_del(*remote)?;
            println!("stopped the export on {remote}");
        }
        Command::Local {
            remote,
            index,
            max_io_pages,
            queue_depth,
            settings,
        } => {
            let req = DeviceRequest {
                addr: *remote,
                index: *index,
                max_io_pages: *max_io_pages,
                queue_depth: *queue_depth,
                settings: *settings,
            };
            let dev = DstClient::connect()?.dev_add(&req)?;
            // Only the path on stdout, so that scripts can capture it.
            println!("{}", dev.dev_path());
        }
        Command::Delete { index } => {
            DstClient::connect()?.dev_del(*index)?;
            println!("deleted /dev/dst{index}");
        }
        Command::Set { index, settings } => {
            DstClient::connect()?.dev_set(*index, settings)?;
            println!("updated /dev/dst{index}");
        }
        Command::List { json } => {
            let entries = DstClient::connect()?.list()?;
            if *json {
                print!("{}", list_json(&entries));
            } else {
                print!("{}", list_table(&entries));
            }
        }
    }
    Ok(())
}

/// What `-a export` prints once the export runs.
fn export_message(req: &ExportRequest) -> String {
    let mode = if req.read_only {
        "read-only"
    } else {
        "read-write"
    };
    let size = match req.size {
        Some(size) => format!(", first {}", human_size(size)),
        None => String::new(),
    };
    format!("exporting {} on {} ({mode}{size})", req.path, req.addr)
}

/// Sets the hint of a kernel error in `err`, if [`hint_for`] has one.
fn add_hint(err: anyhow::Error, cmd: &Command) -> anyhow::Error {
    match err.downcast::<KernelError>() {
        Ok(mut kerr) => {
            if let Some(hint) = hint_for(cmd, kerr.errno) {
                kerr.hint = Some(hint);
            }
            kerr.into()
        }
        Err(err) => err,
    }
}

/// What to do about errno `errno` returned for `cmd`, where it is clear.
fn hint_for(cmd: &Command, errno: i32) -> Option<String> {
    let unreachable = |addr: &SocketAddr| {
        format!("cannot reach {addr}; check the address, the port and the network")
    };
    Some(match (cmd, errno) {
        (Command::Export { remote, .. }, libc::EEXIST) => format!(
            "an export already listens on {remote}; stop it first with: dstcfg -r {remote} -a unexport"
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
        (Command::Unexport { remote }, libc::ENOENT) => {
            format!("no export listens on {remote}; see dstcfg -a list")
        }
        (Command::Local { remote, .. }, libc::ECONNREFUSED) => format!(
            "no export listens at {remote}; start one there with: dstcfg -r {} -a export -f PATH",
            remote_arg(remote)
        ),
        (Command::Local { remote, .. }, libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENETUNREACH) => {
            unreachable(remote)
        }
        (Command::Local { index: Some(n), .. }, libc::EEXIST) => {
            format!("/dev/dst{n} exists already; choose another -i N or leave -i out")
        }
        (Command::Local { .. }, libc::ENOSPC) => {
            format!("every device index 0..{MAX_INDEX} is in use; delete a device first")
        }
        (Command::Delete { index }, libc::ENOENT) => {
            format!("there is no such device /dev/dst{index}; see dstcfg -a list")
        }
        (Command::Set { index, .. }, libc::ENOENT) => {
            format!("there is no such device /dev/dst{index}; see dstcfg -a list")
        }
        (Command::Delete { index }, libc::EBUSY) => {
            format!("/dev/dst{index} is in use; unmount it or close it first")
        }
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

/// Checks that `path` names a block device and returns its absolute path
/// (the kernel opens it, so it must not depend on our working directory).
fn block_device(path: &Path) -> Result<PathBuf> {
    let shown = path.display();
    let abs = std::fs::canonicalize(path).map_err(|e| match e.raw_os_error() {
        Some(errno) => anyhow::anyhow!("{shown}: {}", errno_text(errno)),
        None => anyhow::anyhow!("{shown}: {e}"),
    })?;
    let meta = std::fs::metadata(&abs).with_context(|| format!("{shown}"))?;
    if !meta.file_type().is_block_device() {
        bail!("{shown} is not a block device; -f needs one such as /dev/sdb");
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
            remote: addr(remote),
            index,
            max_io_pages: None,
            queue_depth: None,
            settings: Default::default(),
        }
    }

    #[test]
    fn export_file_must_be_a_block_device() {
        let err = block_device(Path::new("/nonexistent/dstcfg-test")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/dstcfg-test: No such file or directory"
        );
        let err = block_device(Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("is not a block device"), "{err}");
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
            addr: addr("10.0.0.2:1025"),
            path: "/dev/sdb".into(),
            read_only: false,
            size: None,
            max_io_pages: None,
        };
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on 10.0.0.2:1025 (read-write)"
        );
        req.read_only = true;
        req.size = Some(512 << 20);
        req.addr = addr("[2001:db8::1]:2000");
        assert_eq!(
            export_message(&req),
            "exporting /dev/sdb on [2001:db8::1]:2000 (read-only, first 512.0 MiB)"
        );
    }

    #[test]
    fn hints() {
        let delete = Command::Delete { index: 3 };
        assert_eq!(
            hint_for(&delete, libc::ENOENT).unwrap(),
            "there is no such device /dev/dst3; see dstcfg -a list"
        );
        assert_eq!(
            hint_for(&local("10.0.0.2:1025", None), libc::ECONNREFUSED).unwrap(),
            "no export listens at 10.0.0.2:1025; start one there with: \
             dstcfg -r 10.0.0.2 -a export -f PATH"
        );
        let hint = hint_for(&local("[2001:db8::1]:2000", None), libc::ECONNREFUSED).unwrap();
        assert!(
            hint.contains("dstcfg -r [2001:db8::1]:2000 -a export"),
            "{hint}"
        );
        assert!(hint_for(&local("10.0.0.2:1025", Some(4)), libc::EEXIST)
            .unwrap()
            .contains("/dev/dst4 exists already"));
        assert_eq!(hint_for(&local("10.0.0.2:1025", None), libc::EEXIST), None);
        let unexport = Command::Unexport {
            remote: addr("10.0.0.2:1025"),
        };
        assert!(hint_for(&unexport, libc::ENOENT)
            .unwrap()
            .starts_with("no export listens on 10.0.0.2:1025"));
        assert_eq!(hint_for(&Command::List { json: false }, libc::ENOENT), None);
        let set = Command::Set {
            index: 2,
            settings: crate::message::DeviceSettings {
                loss_timeout_ms: Some(3000),
                ..Default::default()
            },
        };
        assert_eq!(
            hint_for(&set, libc::ENOENT).unwrap(),
            "there is no such device /dev/dst2; see dstcfg -a list"
        );
        assert_eq!(hint_for(&set, libc::EINVAL), None);
        assert_eq!(action_name(&set), "set");
    }

    #[test]
    fn kernel_errors_get_the_action_and_the_hint() {
        let kerr = KernelError::new(libc::ENOENT, Default::default(), &[]);
        let cmd = Command::Delete { index: 0 };
        let err = add_hint(kerr.into(), &cmd).context(action_name(&cmd));
        assert_eq!(
            format!("{err:#}"),
            "delete: No such file or directory (ENOENT)"
        );
        let kerr = err.downcast_ref::<KernelError>().unwrap();
        assert_eq!(
            kerr.hint().as_deref(),
            Some("there is no such device /dev/dst0; see dstcfg -a list")
        );
        // EPERM keeps the generic hint.
        let kerr = KernelError::new(libc::EPERM, Default::default(), &[]);
        let err = add_hint(kerr.into(), &cmd);
        let kerr = err.downcast_ref::<KernelError>().unwrap();
        assert_eq!(
            kerr.hint().as_deref(),
            Some("needs CAP_NET_ADMIN; run as root")
        );
    }
}
