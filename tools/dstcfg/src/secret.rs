//! Pre-shared keys: [`SecretKey`] (zeroed when dropped, never printed),
//! reading a `--key-file` with its checks, and writing a new key for
//! `-a genkey`.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{compiler_fence, Ordering};

use anyhow::{bail, Context, Result};

use crate::args::{GENKEY_LEN, KEY_LEN};
use crate::netlink::errno_text;

/// Overwrites `buf` with zeros in a way the compiler does not remove.
pub fn zeroize(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, exclusive reference to a byte.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    compiler_fence(Ordering::SeqCst);
}

/// Key material: zeroed when dropped; `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    /// A key holding a copy of `bytes` (in a buffer of exactly that size, so
    /// that it is never reallocated).
    pub fn new(bytes: &[u8]) -> Self {
        let mut v = Vec::with_capacity(bytes.len());
        v.extend_from_slice(bytes);
        Self(v)
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey([{} bytes, not shown])", self.0.len())
    }
}

/// `path` as messages show it.
fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// An io error as `strerror` text.
fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(errno) => errno_text(errno),
        None => e.to_string(),
    }
}

/// Why a key file with permission bits `mode` is refused, if it is.
fn mode_problem(path: &Path, mode: u32) -> Option<String> {
    if mode & 0o077 == 0 {
        return None;
    }
    let what = if mode & 0o044 != 0 {
        "readable"
    } else {
        "accessible"
    };
    Some(format!(
        "{p} is {what} by group or others (mode {mode:04o}); a key must be private: \
         chmod 600 {p}",
        p = shown(path),
        mode = mode & 0o7777
    ))
}

/// Why a key file owned by `uid`, in a directory owned by `dir_uid` with
/// mode `dir_mode`, is refused, if it is, for a caller with effective uid
/// `me`: another user (root aside) who owns the file can read it, and one
/// who can write to its directory can replace it with a key of their own.
fn owner_problem(
    path: &Path,
    uid: u32,
    dir: &Path,
    dir_uid: u32,
    dir_mode: u32,
    me: u32,
) -> Option<String> {
    let foreign = |owner: u32| owner != 0 && owner != me;
    if foreign(uid) {
        return Some(format!(
            "{} belongs to uid {uid}, neither root nor you; a key must be private",
            shown(path)
        ));
    }
    if foreign(dir_uid) {
        return Some(format!(
            "{} is in {}, which belongs to uid {dir_uid}, neither root nor you, who could \
             replace the key",
            shown(path),
            shown(dir)
        ));
    }
    // Without the sticky bit, anyone who may write to the directory may
    // replace the file.
    if dir_mode & 0o022 != 0 && dir_mode & 0o1000 == 0 {
        return Some(format!(
            "{} is in {}, which group or others can write to (mode {:04o}) and so replace \
             the key: chmod go-w {}",
            shown(path),
            shown(dir),
            dir_mode & 0o7777,
            shown(dir)
        ));
    }
    None
}

/// Why key bytes are refused as too weak, if they are: a short key of
/// printable characters is a password, which an attacker who poses as an
/// export can guess offline against the local node's proof.
fn weak_key_problem(key: &[u8]) -> Option<String> {
    let text = key.strip_suffix(b"\n").unwrap_or(key);
    let password = text.iter().all(|c| c.is_ascii_graphic() || *c == b' ');
    (password && key.len() < 32).then(|| {
        format!(
            "{} bytes of text look like a password, which can be guessed; use random bytes \
             (dstcfg genkey -f PATH) or at least 32 characters",
            key.len()
        )
    })
}

/// Reads the pre-shared key in `path`: a regular file of 16..64 bytes with
/// no permissions for group and others, owned by root or the caller, in a
/// directory that no other user may write to, and not a short password.
/// The contents are the key, byte for byte.
pub fn read_key_file(path: &Path) -> Result<SecretKey> {
    read_key_file_for(path, "--key-file ")
}

/// [`read_key_file`] for the option `option`, which begins each message,
/// followed by the path: `"--key-file "`, `"--client web1="`.
pub fn read_key_file_for(path: &Path, option: &str) -> Result<SecretKey> {
    let label = || format!("{option}{}", shown(path));
    let mut file = File::open(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}{}",
            label(),
            io_text(&e),
            if e.kind() == std::io::ErrorKind::NotFound {
                "; make a key with: dstcfg genkey -f PATH"
            } else {
                ""
            }
        )
    })?;
    let meta = file.metadata().with_context(label)?;
    if !meta.is_file() {
        bail!("{}: not a regular file", label());
    }
    if let Some(problem) = mode_problem(path, meta.mode()) {
        bail!("{option}{problem}");
    }
    let dir = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .with_context(|| format!("{}: cannot resolve its directory", label()))?;
    let dir_meta = std::fs::metadata(&dir)
        .with_context(|| format!("{}: directory {}", label(), shown(&dir)))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if let Some(problem) =
        owner_problem(path, meta.uid(), &dir, dir_meta.uid(), dir_meta.mode(), me)
    {
        bail!("{option}{problem}");
    }
    // One byte more than the largest key, to notice a longer file.
    let mut buf = [0u8; *KEY_LEN.end() + 1];
    let mut len = 0;
    let result = loop {
        match file.read(&mut buf[len..]) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                len += n;
                if len == buf.len() {
                    break Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let key = match result {
        Ok(()) if KEY_LEN.contains(&len) => match weak_key_problem(&buf[..len]) {
            Some(problem) => Err(anyhow::anyhow!("{}: {problem}", label())),
            None => Ok(SecretKey::new(&buf[..len])),
        },
        Ok(()) => Err(anyhow::anyhow!(
            "{}: {} bytes; a key has {}..{} bytes (make one with: dstcfg genkey -f \
             PATH)",
            label(),
            if len > *KEY_LEN.end() {
                format!("more than {}", KEY_LEN.end())
            } else {
                len.to_string()
            },
            KEY_LEN.start(),
            KEY_LEN.end()
        )),
        Err(e) => Err(anyhow::anyhow!("{}: {}", label(), io_text(&e))),
    };
    zeroize(&mut buf);
    key
}

/// Fills `buf` from the kernel's random number generator.
fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n >= 0 {
            filled += n as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENOSYS) => {
                File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(rest))
                    .context("cannot read /dev/urandom")?;
                return Ok(());
            }
            _ => return Err(err).context("getrandom failed"),
        }
    }
    Ok(())
}

/// Writes a new random key of [`GENKEY_LEN`] bytes to `path`, a file that
/// must not exist yet; it is created with mode 0600.
pub fn genkey(path: &Path) -> Result<()> {
    let mut key = [0u8; GENKEY_LEN];
    let result = write_new_key(path, &mut key);
    zeroize(&mut key);
    result
}

fn write_new_key(path: &Path, key: &mut [u8]) -> Result<()> {
    random_bytes(key)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => anyhow::anyhow!(
                "{} exists already; genkey never overwrites a key (to replace it, remove the \
                 file first: both nodes then need the new key)",
                shown(path)
            ),
            _ => anyhow::anyhow!("cannot create {}: {}", shown(path), io_text(&e)),
        })?;
    let written = file
        .set_permissions(Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(key))
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        bail!("cannot write {}: {}", shown(path), io_text(&e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A fresh, empty folder for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dstcfg-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_file(path: &Path, bytes: &[u8], mode: u32) {
        std::fs::write(path, bytes).unwrap();
        std::fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = SecretKey::new(b"0123456789abcdef");
        let text = format!("{key:?}");
        assert_eq!(text, "SecretKey([16 bytes, not shown])");
        assert_eq!(key.len(), 16);
        assert_eq!(key.bytes(), b"0123456789abcdef");
    }

    #[test]
    fn zeroize_clears() {
        let mut buf = [7u8; 9];
        zeroize(&mut buf);
        assert_eq!(buf, [0; 9]);
    }

    #[test]
    fn genkey_writes_a_private_key_once() {
        let dir = scratch("genkey");
        let path = dir.join("psk");
        genkey(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.len(), GENKEY_LEN as u64);
        let key = read_key_file(&path).unwrap();
        assert_eq!(key.len(), GENKEY_LEN);
        assert_ne!(key.bytes(), &[0u8; GENKEY_LEN][..]);
        let first = std::fs::read(&path).unwrap();
        let err = genkey(&path).unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            first,
            "the key was overwritten"
        );
        // Two keys differ.
        let other = dir.join("psk2");
        genkey(&other).unwrap();
        assert_ne!(std::fs::read(&other).unwrap(), first);
        let err = genkey(&dir.join("no/such/dir")).unwrap_err().to_string();
        assert!(err.contains("No such file or directory"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn owners() {
        let (p, d) = (Path::new("/k/key"), Path::new("/k"));
        assert_eq!(owner_problem(p, 0, d, 0, 0o755, 1000), None);
        assert_eq!(owner_problem(p, 1000, d, 1000, 0o700, 1000), None);
        assert!(owner_problem(p, 1001, d, 0, 0o755, 1000)
            .unwrap()
            .contains("uid 1001"));
        assert!(owner_problem(p, 0, d, 1001, 0o755, 0)
            .unwrap()
            .contains("could replace"));
        assert!(owner_problem(p, 0, d, 0, 0o775, 0)
            .unwrap()
            .contains("mode 0775"));
        assert_eq!(owner_problem(p, 0, d, 0, 0o1777, 0), None);
    }

    #[test]
    fn key_file_checks() {
        let dir = scratch("keyfile");
        let path = dir.join("k");
        for (len, ok) in [(15, false), (16, true), (32, true), (64, true), (65, false)] {
            let _ = std::fs::remove_file(&path);
            write_file(&path, &vec![0xa5; len], 0o600);
            let got = read_key_file(&path);
            assert_eq!(got.is_ok(), ok, "{len} bytes: {got:?}");
            if let Ok(key) = got {
                assert_eq!(key.bytes(), &vec![0xa5; len][..]);
            } else {
                let err = got.unwrap_err().to_string();
                assert!(err.contains("a key has 16..64 bytes"), "{err}");
            }
        }
        write_file(&path, &[1; 32], 0o644);
        let err = read_key_file(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "--key-file {p} is readable by group or others (mode 0644); a key must be \
                 private: chmod 600 {p}",
                p = path.display()
            )
        );
        write_file(&path, &[1; 32], 0o620);
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("accessible by group or others (mode 0620)"),
            "{err}"
        );
        assert!(err.contains("chmod 600"), "{err}");
        write_file(&path, &[1; 32], 0o400);
        assert!(read_key_file(&path).is_ok());
        // A short password is refused; 32 characters or random bytes are not.
        write_file(&path, b"our-secret-pass!", 0o600);
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("look like a password"), "{err}");
        write_file(&path, b"our-secret-passphrase-of-30ch\n", 0o600);
        assert!(read_key_file(&path).is_err());
        write_file(&path, &[b'x'; 32], 0o600);
        assert!(read_key_file(&path).is_ok());
        // A directory others may write to (without the sticky bit).
        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        let err = read_key_file(&path).unwrap_err().to_string();
        assert!(err.contains("group or others can write to"), "{err}");
        std::fs::set_permissions(&dir, Permissions::from_mode(0o1777)).unwrap();
        assert!(read_key_file(&path).is_ok());
        std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
        let err = read_key_file(&dir.join("missing")).unwrap_err().to_string();
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(err.contains("dstcfg genkey"), "{err}");
        let err = read_key_file(&dir).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
