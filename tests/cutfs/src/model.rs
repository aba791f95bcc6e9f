//! The filesystem's state and its durability model, without FUSE: what a disk has made
//! durable, what only the page cache holds, and the cut that drops the latter.
//!
//! Model (strict; nothing survives without a sync):
//! - a file's data (bytes and length) becomes durable when that file is `fsync`ed or
//!   `fdatasync`ed (both the same here: the length is data);
//! - a directory entry (create, rename, unlink) becomes durable when the directory is
//!   `fsync`ed, and only then; a file created and synced but whose directory was never synced
//!   is gone after a cut;
//! - a cut drops everything volatile and then refuses every operation with EIO (a dead disk)
//!   until [`Fs::revive`].
//!
//! One flat directory (the root) is all the power-cut test needs; `mkdir` is refused.
//! Must never: let a byte or a name survive a cut that was not synced.

use std::collections::{BTreeMap, HashMap};

/// The root directory's inode number (FUSE's).
pub(crate) const ROOT: u64 = 1;

/// One regular file: what the page cache holds and what the disk holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct File {
    pub(crate) data: Vec<u8>,
    durable: Vec<u8>,
}

/// Names of a cut trigger: the operation kinds an armed cut may fire on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Create,
    /// The name is the rename's new name.
    Rename,
    Unlink,
    /// A directory fsync after an operation that matched the armed name.
    SyncDir,
}

impl Op {
    pub(crate) fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "create" => Op::Create,
            "rename" => Op::Rename,
            "unlink" => Op::Unlink,
            "syncdir" => Op::SyncDir,
            _ => return None,
        })
    }
}

/// A cut that fires on the next operation `op` on a name ending with `suffix` (for
/// [`Op::SyncDir`]: on the first directory fsync after any create, rename or unlink of such a
/// name), right after the operation took effect.
#[derive(Debug, Clone)]
pub(crate) struct Trigger {
    pub(crate) op: Op,
    pub(crate) suffix: String,
    seen: bool,
}

impl Trigger {
    pub(crate) fn new(op: Op, suffix: &str) -> Trigger {
        Trigger { op, suffix: suffix.to_string(), seen: false }
    }
}

/// The filesystem.
#[derive(Debug)]
pub(crate) struct Fs {
    files: HashMap<u64, File>,
    entries: BTreeMap<String, u64>,
    durable_entries: BTreeMap<String, u64>,
    next_ino: u64,
    dead: bool,
    trigger: Option<Trigger>,
    /// Cuts so far.
    pub(crate) cuts: u64,
}

impl Default for Fs {
    fn default() -> Fs {
        Fs::new()
    }
}

/// EIO, ENOENT... as the errno FUSE replies with.
pub(crate) type Errno = i32;

impl Fs {
    pub(crate) fn new() -> Fs {
        Fs {
            files: HashMap::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            next_ino: ROOT + 1,
            dead: false,
            trigger: None,
            cuts: 0,
        }
    }

    pub(crate) fn dead(&self) -> bool {
        self.dead
    }

    fn alive(&self) -> Result<(), Errno> {
        if self.dead {
            Err(libc::EIO)
        } else {
            Ok(())
        }
    }

    pub(crate) fn lookup(&self, name: &str) -> Result<u64, Errno> {
        self.alive()?;
        self.entries.get(name).copied().ok_or(libc::ENOENT)
    }

    pub(crate) fn file(&self, ino: u64) -> Result<&File, Errno> {
        self.alive()?;
        self.files.get(&ino).ok_or(libc::ENOENT)
    }

    fn file_mut(&mut self, ino: u64) -> Result<&mut File, Errno> {
        self.alive()?;
        self.files.get_mut(&ino).ok_or(libc::ENOENT)
    }

    /// Names in the directory, in order.
    pub(crate) fn list(&self) -> Result<Vec<(String, u64)>, Errno> {
        self.alive()?;
        Ok(self.entries.iter().map(|(n, i)| (n.clone(), *i)).collect())
    }

    /// Creates `name` (or opens it if it exists and `excl` is off).
    pub(crate) fn create(&mut self, name: &str, excl: bool) -> Result<u64, Errno> {
        self.alive()?;
        if let Some(&ino) = self.entries.get(name) {
            return if excl { Err(libc::EEXIST) } else { Ok(ino) };
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.files.insert(ino, File::default());
        self.entries.insert(name.to_string(), ino);
        self.fired(Op::Create, name);
        Ok(ino)
    }

    pub(crate) fn write(&mut self, ino: u64, offset: u64, bytes: &[u8]) -> Result<usize, Errno> {
        let f = self.file_mut(ino)?;
        let end = offset as usize + bytes.len();
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[offset as usize..end].copy_from_slice(bytes);
        Ok(bytes.len())
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: usize) -> Result<&[u8], Errno> {
        let f = self.file(ino)?;
        let start = (offset as usize).min(f.data.len());
        let end = (start + size).min(f.data.len());
        Ok(&f.data[start..end])
    }

    pub(crate) fn truncate(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        self.file_mut(ino)?.data.resize(len as usize, 0);
        Ok(())
    }

    /// `fsync` or `fdatasync` of a file: its bytes and length become durable.
    pub(crate) fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        let f = self.file_mut(ino)?;
        f.durable.clone_from(&f.data);
        Ok(())
    }

    /// `fsync` of the directory: its entries become durable.
    pub(crate) fn sync_dir(&mut self) -> Result<(), Errno> {
        self.alive()?;
        self.durable_entries.clone_from(&self.entries);
        if self.trigger.as_ref().is_some_and(|t| t.op == Op::SyncDir && t.seen) {
            self.cut();
        }
        Ok(())
    }

    pub(crate) fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        self.alive()?;
        let ino = self.entries.remove(from).ok_or(libc::ENOENT)?;
        if let Some(old) = self.entries.insert(to.to_string(), ino) {
            self.forget_if_unreferenced(old);
        }
        self.fired(Op::Rename, to);
        Ok(())
    }

    pub(crate) fn unlink(&mut self, name: &str) -> Result<(), Errno> {
        self.alive()?;
        let ino = self.entries.remove(name).ok_or(libc::ENOENT)?;
        self.forget_if_unreferenced(ino);
        self.fired(Op::Unlink, name);
        Ok(())
    }

    /// Drops an inode no name refers to, now or on disk (open descriptors are not tracked:
    /// the server never reads a file it unlinked).
    fn forget_if_unreferenced(&mut self, ino: u64) {
        let named = |m: &BTreeMap<String, u64>| m.values().any(|&i| i == ino);
        if !named(&self.entries) && !named(&self.durable_entries) {
            self.files.remove(&ino);
        }
    }

    /// Arms a cut (replacing any armed one).
    pub(crate) fn arm(&mut self, t: Trigger) {
        self.trigger = Some(t);
    }

    fn fired(&mut self, op: Op, name: &str) {
        let Some(t) = self.trigger.as_mut() else { return };
        if !name.ends_with(&t.suffix) {
            return;
        }
        if t.op == op {
            self.cut();
        } else if t.op == Op::SyncDir {
            t.seen = true;
        }
    }

    /// The power cut: everything volatile is dropped, then every operation fails with EIO.
    pub(crate) fn cut(&mut self) {
        self.entries.clone_from(&self.durable_entries);
        let live: std::collections::HashSet<u64> = self.durable_entries.values().copied().collect();
        self.files.retain(|ino, _| live.contains(ino));
        for f in self.files.values_mut() {
            f.data.clone_from(&f.durable);
        }
        self.dead = true;
        self.trigger = None;
        self.cuts += 1;
    }

    /// Power back: the disk works again, with what was durable at the cut.
    pub(crate) fn revive(&mut self) {
        self.dead = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after_cut(fs: &mut Fs) {
        fs.cut();
        assert_eq!(fs.lookup("x"), Err(libc::EIO), "a cut disk answers EIO");
        fs.revive();
    }

    #[test]
    fn unsynced_writes_are_gone_after_a_cut_synced_ones_kept() {
        let mut fs = Fs::new();
        let ino = fs.create("j", true).unwrap();
        fs.sync_dir().unwrap();
        fs.write(ino, 0, b"kept").unwrap();
        fs.sync_file(ino).unwrap();
        fs.write(ino, 4, b"lost").unwrap();
        fs.truncate(ino, 2).unwrap();
        after_cut(&mut fs);
        let ino = fs.lookup("j").unwrap();
        assert_eq!(fs.read(ino, 0, 100).unwrap(), b"kept");
    }

    #[test]
    fn names_need_a_directory_sync() {
        let mut fs = Fs::new();
        let a = fs.create("a", true).unwrap();
        fs.write(a, 0, b"A").unwrap();
        fs.sync_file(a).unwrap();
        after_cut(&mut fs);
        assert_eq!(fs.lookup("a"), Err(libc::ENOENT), "created and synced, directory not synced");

        let a = fs.create("a", true).unwrap();
        fs.write(a, 0, b"A").unwrap();
        fs.sync_file(a).unwrap();
        fs.sync_dir().unwrap();
        fs.rename("a", "b").unwrap();
        after_cut(&mut fs);
        assert!(fs.lookup("a").is_ok() && fs.lookup("b").is_err(), "rename without directory sync undone");

        fs.rename("a", "b").unwrap();
        fs.sync_dir().unwrap();
        fs.unlink("b").unwrap();
        after_cut(&mut fs);
        let b = fs.lookup("b").unwrap();
        assert_eq!(fs.read(b, 0, 9).unwrap(), b"A", "unlink without directory sync undone");
        assert_eq!(fs.lookup("a"), Err(libc::ENOENT));
    }

    #[test]
    fn armed_cuts_fire_on_their_operation() {
        let mut fs = Fs::new();
        fs.create("j", true).unwrap();
        fs.sync_dir().unwrap();
        fs.arm(Trigger::new(Op::Rename, ".old"));
        fs.create("j.next", true).unwrap();
        assert!(!fs.dead());
        fs.rename("j", "j.old").unwrap();
        assert!(fs.dead());
        fs.revive();
        assert!(fs.lookup("j").is_ok() && fs.lookup("j.next").is_err());

        fs.arm(Trigger::new(Op::SyncDir, ".old"));
        fs.rename("j", "j.old").unwrap();
        assert!(!fs.dead());
        fs.sync_dir().unwrap();
        assert!(fs.dead(), "the directory sync after the rename fires");
        fs.revive();
        assert!(fs.lookup("j.old").is_ok(), "and the rename it synced survives");
    }
}
