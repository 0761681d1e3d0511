//! The record of what `dstcfg apply` manages: for each configuration file
//! applied, the exports and devices it created or adopted, with what the
//! kernel does not report back (key file paths, `max_io_pages`, ...).
//!
//! It lives in `/run/dst/applied.json` (mode 0600), which goes with a
//! reboot as the exports and devices do. `apply` removes an object only if
//! the record lists it for the same file, so objects made by hand, or by
//! another file, are never touched; `down` removes what the record lists.
//! An entry whose object is gone, or was replaced by another (a device
//! index reused), is dropped when next read against the running state.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ClientEntry;

/// Where the record is kept.
pub const RECORD_PATH: &str = "/run/dst/applied.json";

/// Every file's managed objects, by the file's absolute path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Absolute path of the configuration file → what it manages.
    pub files: BTreeMap<String, Managed>,
}

/// What one file manages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Managed {
    /// Its exports.
    #[serde(default)]
    pub exports: Vec<ManagedExport>,
    /// Its devices.
    #[serde(default)]
    pub devices: Vec<ManagedDevice>,
}

/// An export `apply` created or adopted, as it was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedExport {
    /// Where it listens (with `name`, its identity).
    pub addr: SocketAddr,
    /// Its name, as the kernel reports it: which of several exports of
    /// `addr` it is (none: a record written before names; the only export
    /// there).
    #[serde(default)]
    pub name: Option<String>,
    /// The block device, as the kernel reports it.
    pub path: String,
    /// `size` as given (`None`: the whole device).
    #[serde(default)]
    pub size: Option<u64>,
    /// `max_io_pages` as given.
    #[serde(default)]
    pub max_io_pages: Option<u32>,
    /// `key_file` as given.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `key_desc` as given.
    #[serde(default)]
    pub key_desc: Option<String>,
    /// `[[export.client]]` entries as given.
    #[serde(default)]
    pub clients: Vec<ClientEntry>,
    /// Whether `apply` knows the fields above (false: an export it adopted,
    /// made by hand, whose keys and limits the kernel does not report).
    pub known: bool,
}

/// A device `apply` created or adopted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedDevice {
    /// N of /dev/dstN.
    pub index: u32,
    /// The export node's address.
    pub addr: SocketAddr,
    /// The identity the export fences it by, as listed (tells this device
    /// from a later one that got the same index).
    #[serde(default)]
    pub client_id: Option<u64>,
    /// `export_name` as given in the file (with `addr`, the entry's
    /// identity).
    #[serde(default)]
    pub export_name: Option<String>,
    /// `queue_depth` as given (the export may grant less, so the listed
    /// depth says nothing about what was asked).
    #[serde(default)]
    pub queue_depth: Option<u32>,
    /// `max_io_pages` as given.
    #[serde(default)]
    pub max_io_pages: Option<u32>,
    /// `key_file` as given.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// `key_desc` as given.
    #[serde(default)]
    pub key_desc: Option<String>,
    /// `read_only` as given: the device asked for reads only (the kernel
    /// reports only whether it is read-only, which the export may have
    /// decided).
    #[serde(default)]
    pub read_only: bool,
    /// See [`ManagedExport::known`].
    pub known: bool,
}

/// The key of `file` in the record: its absolute path, symbolic links
/// resolved where it exists (so that `-f dst.toml` in /etc/dst and
/// `-f /etc/dst/dst.toml` are the same file).
pub fn file_key(file: &Path) -> String {
    let abs = fs::canonicalize(file).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|dir| dir.join(file))
            .unwrap_or_else(|_| file.to_path_buf())
    });
    abs.display().to_string()
}

/// The record, held locked (`flock`) against other `dstcfg apply`, `save`
/// or `down` runs until dropped.
pub struct LockedRecord {
    path: PathBuf,
    /// Held for the lock.
    _lock: File,
    /// The record as read.
    pub record: Record,
}

impl LockedRecord {
    /// Locks and reads the record at `path` (empty if there is none).
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", lock_path.display()));
        }
        let record = match fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is damaged; remove it (dstcfg then manages only what the file lists \
                     and finds running)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
            record,
        })
    }

    /// Writes the record back (atomically: a new file renamed over the old).
    pub fn save(&self) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let text = serde_json::to_string_pretty(&self.record)? + "\n";
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)?;
            f.set_permissions(fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)
        };
        write().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lock() {
        let dir = std::env::temp_dir().join(format!("dstcfg-record-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("applied.json");
        let mut locked = LockedRecord::open(&path).unwrap();
        assert_eq!(locked.record, Record::default());
        locked.record.files.insert(
            "/etc/dst/dst.toml".into(),
            Managed {
                exports: vec![ManagedExport {
                    addr: "127.0.0.1:1025".parse().unwrap(),
                    name: Some("alpha".into()),
                    path: "/dev/ram0".into(),
                    size: Some(1 << 20),
                    max_io_pages: None,
                    key_file: Some("/etc/dst/psk".into()),
                    key_desc: None,
                    clients: Vec::new(),
                    known: true,
                }],
                devices: vec![ManagedDevice {
                    index: 3,
                    addr: "127.0.0.1:1025".parse().unwrap(),
                    client_id: Some(0x1234),
                    export_name: None,
                    queue_depth: Some(64),
                    max_io_pages: None,
                    key_file: None,
                    key_desc: None,
                    read_only: true,
                    known: true,
                }],
            },
        );
        locked.save().unwrap();
        let saved = locked.record.clone();
        drop(locked);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(LockedRecord::open(&path).unwrap().record, saved);
        // A record of an older dstcfg, without export names, reads.
        let old: ManagedExport = serde_json::from_str(
            r#"{"addr": "127.0.0.1:1025", "path": "/dev/ram0", "known": true}"#,
        )
        .unwrap();
        assert_eq!(old.name, None);
        // A damaged record is an error that says what to do.
        fs::write(&path, "{").unwrap();
        let err = format!("{:#}", LockedRecord::open(&path).err().unwrap());
        assert!(err.contains("is damaged; remove it"), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
