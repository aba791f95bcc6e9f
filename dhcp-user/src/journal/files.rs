//! files: every lease file (journal, snapshot, rotation, lock, key, damaged-region copy) is
//! opened, created, renamed and removed here: by name relative to its directory's descriptor
//! (`openat`, `renameat`, `unlinkat`), never following a symlink at the file's name
//! (`O_NOFOLLOW`: a link planted under a lease file's name is refused, not written through),
//! and created readable by the server's user only (0600).
//!
//! This module must never follow a symlink at a lease file's own name, nor create a file
//! readable by others.

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

/// Lease files hold subscribers' identities: the server's user only.
const MODE: u32 = 0o600;

/// The directory of `path` (following links there: it is the administrator's choice) and the
/// file's own name.
fn split(path: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{}: no file name", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(io::Error::from)?;
    Ok((fd, name))
}

fn open_at(path: &Path, flags: OFlag) -> io::Result<File> {
    let (dir, name) = split(path)?;
    let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(&dir, name, flags, Mode::from_bits_truncate(MODE)).map_err(|e| refused(path, e))?;
    Ok(File::from(fd))
}

/// ELOOP from O_NOFOLLOW: say what it means.
fn refused(path: &Path, e: nix::errno::Errno) -> io::Error {
    if e == nix::errno::Errno::ELOOP {
        let why = format!("{} is a symbolic link: refused (lease files are never followed)", path.display());
        return io::Error::new(io::ErrorKind::InvalidInput, why);
    }
    io::Error::from(e)
}

/// Opens an existing file for reading.
pub(super) fn open_read(path: &Path) -> io::Result<File> {
    open_at(path, OFlag::O_RDONLY)
}

/// Opens an existing file for reading and writing.
pub(super) fn open_rw(path: &Path) -> io::Result<File> {
    open_at(path, OFlag::O_RDWR)
}

/// Creates (or empties) a file for reading and writing, mode 0600.
pub(super) fn create(path: &Path) -> io::Result<File> {
    open_at(path, OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC)
}

/// Creates a file that must not exist yet, mode 0600.
pub(super) fn create_new(path: &Path) -> io::Result<File> {
    open_at(path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL)
}

/// Opens a file for reading and writing, creating it (0600) if missing, keeping its content.
pub(super) fn open_or_create(path: &Path) -> io::Result<File> {
    open_at(path, OFlag::O_RDWR | OFlag::O_CREAT)
}

/// Renames `from` to `to` (the same directory), replacing `to`.
pub(super) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    let (dir, a) = split(from)?;
    let b = to.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    nix::fcntl::renameat(&dir, a, &dir, b).map_err(io::Error::from)
}

/// Removes a file (a symlink itself, if one was planted: never its target).
pub(super) fn remove(path: &Path) -> io::Result<()> {
    let (dir, name) = split(path)?;
    nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir).map_err(io::Error::from)
}

/// Whether something (a symlink counts) is at `path`.
pub(super) fn exists(path: &Path) -> io::Result<bool> {
    let (dir, name) = split(path)?;
    match nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Makes renames, creations and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    File::from(nix::fcntl::open(dir, flags, Mode::empty()).map_err(io::Error::from)?).sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_private_and_symlinks_at_their_names_are_refused() {
        let d = std::env::temp_dir().join(format!("xdhcpd-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("leases");
        create(&f).unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        let target = d.join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        let link = d.join("leases.snapshot");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for r in [open_read(&link).map(drop), create(&link).map(drop), open_or_create(&link).map(drop)] {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("is a symbolic link: refused"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep", "written through a link");
        assert!(exists(&link).unwrap());
        remove(&link).unwrap();
        assert!(target.exists() && !exists(&link).unwrap(), "the link went, not its target");
        rename(&f, &d.join("leases.old")).unwrap();
        assert!(exists(&d.join("leases.old")).unwrap() && !exists(&f).unwrap());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_journal_its_rotation_snapshot_lock_and_key_are_all_private() {
        let d = std::env::temp_dir().join(format!("xdhcpd-files-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let path = d.join("leases");
        super::super::steering_key(&path).unwrap();
        let (j, _) = super::super::Journal::open_for_test(&path, super::super::Durability::Fsync, 0);
        let mac = [2, 0, 0, 0, 0, 1];
        let client = crate::lease::ClientKey::from_mac(&mac);
        let ip = core::net::Ipv4Addr::new(100, 64, 0, 10);
        let bound =
            crate::engine::LeaseEvent { kind: crate::engine::EventKind::Bound, ip, client, mac, expires: 9, steer: 1 };
        j.wait(j.append(&[bound])).unwrap();
        // A compaction rotates the journal (PATH.next, PATH.old) and writes PATH.snapshot.
        j.compact().unwrap();
        j.close().unwrap();
        let mut names = Vec::new();
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{:?}", e.file_name());
            names.push(e.file_name().into_string().unwrap());
        }
        names.sort();
        assert_eq!(names, ["leases", "leases.key", "leases.lock", "leases.snapshot"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
