//! `cutfs MOUNTPOINT CONTROL_SOCKET`: a FUSE filesystem that keeps every write volatile until
//! it is synced and drops the unsynced part at a power cut (the model is in [`model`]), for the
//! power-cut test of the lease journal.
//!
//! Control: one line per connection to the unix socket `CONTROL_SOCKET`, answered with one
//! line: `cut` (cut now), `arm OP SUFFIX` (cut right after the next `create`, `rename` or
//! `unlink` of a name ending with SUFFIX, or with `syncdir` at the first directory fsync after
//! one), `revive` (power back), `status` (`alive N` or `dead N`, N = cuts so far).
//! Unmount with `umount MOUNTPOINT`; the process then exits.
//!
//! Never caches in the kernel: entries and attributes have no TTL and files are opened with
//! direct I/O, so that what a process reads after a cut is what the model holds.

mod model;

use anyhow::{bail, Context, Result};
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use model::{Fs, Op, Trigger, ROOT};
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const TTL: Duration = Duration::ZERO;
const DIRECT_IO: u32 = fuser::consts::FOPEN_DIRECT_IO;

/// The FUSE side: every call locks the model (the control thread shares it).
struct CutFs(Arc<Mutex<Fs>>);

fn lock(m: &Mutex<Fs>) -> MutexGuard<'_, Fs> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn attr(ino: u64, size: u64, kind: FileType) -> FileAttr {
    let t = SystemTime::UNIX_EPOCH;
    FileAttr {
        ino,
        size,
        blocks: size.div_ceil(512),
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind,
        perm: if kind == FileType::Directory { 0o755 } else { 0o644 },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl CutFs {
    fn attr_of(&self, ino: u64) -> Result<FileAttr, i32> {
        let fs = lock(&self.0);
        if ino == ROOT {
            return if fs.dead() { Err(libc::EIO) } else { Ok(attr(ROOT, 0, FileType::Directory)) };
        }
        Ok(attr(ino, fs.file(ino)?.data.len() as u64, FileType::RegularFile))
    }
}

/// The name as UTF-8 in the root directory, or the errno to answer.
fn name_in(parent: u64, name: &OsStr) -> Result<&str, i32> {
    if parent != ROOT {
        return Err(libc::ENOENT);
    }
    name.to_str().ok_or(libc::EINVAL)
}

fn empty(reply: ReplyEmpty, r: Result<(), i32>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for CutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let ino = name_in(parent, name).and_then(|n| lock(&self.0).lookup(n));
        match ino.and_then(|i| self.attr_of(i)) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.attr_of(ino) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let r = match size {
            Some(len) if ino != ROOT => lock(&self.0).truncate(ino, len),
            _ => Ok(()),
        };
        match r.and_then(|()| self.attr_of(ino)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(&mut self, _req: &Request<'_>, _p: u64, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(libc::EPERM);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, name_in(parent, name).and_then(|n| lock(&self.0).unlink(n)));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let r = name_in(parent, name)
            .and_then(|from| Ok((from, name_in(newparent, newname)?)))
            .and_then(|(from, to)| lock(&self.0).rename(from, to));
        empty(reply, r);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.attr_of(ino) {
            Ok(_) => reply.opened(0, DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let excl = flags & libc::O_EXCL != 0;
        let ino = name_in(parent, name).and_then(|n| lock(&self.0).create(n, excl));
        match ino.and_then(|i| self.attr_of(i)) {
            Ok(a) => reply.created(&TTL, &a, 0, 0, DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyData,
    ) {
        match lock(&self.0).read(ino, offset.max(0) as u64, size as usize) {
            Ok(d) => reply.data(d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock: Option<u64>,
        reply: ReplyWrite,
    ) {
        match lock(&self.0).write(ino, offset.max(0) as u64, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        // close() syncs nothing.
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        empty(reply, lock(&self.0).sync_file(ino));
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let r = if ino == ROOT { lock(&self.0).sync_dir() } else { Err(libc::ENOTDIR) };
        empty(reply, r);
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        if ino != ROOT {
            return reply.error(libc::ENOTDIR);
        }
        let names = match lock(&self.0).list() {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        let dots = [(".".to_string(), ROOT, FileType::Directory), ("..".to_string(), ROOT, FileType::Directory)];
        let all = dots.into_iter().chain(names.into_iter().map(|(n, i)| (n, i, FileType::RegularFile)));
        for (k, (name, i, kind)) in all.enumerate().skip(offset.max(0) as usize) {
            if reply.add(i, k as i64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }
}

/// Answers one control line.
fn control(fs: &Mutex<Fs>, line: &str) -> String {
    let mut fs = lock(fs);
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["cut"] => fs.cut(),
        ["revive"] => fs.revive(),
        ["arm", op, suffix] => match Op::parse(op) {
            Some(op) => fs.arm(Trigger::new(op, suffix)),
            None => return format!("error: unknown operation {op}"),
        },
        ["status"] => {}
        _ => return format!("error: unknown command {line:?}"),
    }
    format!("{} {}", if fs.dead() { "dead" } else { "alive" }, fs.cuts)
}

fn serve_control(listener: UnixListener, fs: Arc<Mutex<Fs>>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = answer(&fs, conn);
    }
}

fn answer(fs: &Mutex<Fs>, mut conn: UnixStream) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    let reply = control(fs, line.trim());
    log::info!("control: {} -> {reply}", line.trim());
    writeln!(conn, "{reply}")
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mountpoint, socket] = args.as_slice() else {
        bail!("usage: cutfs MOUNTPOINT CONTROL_SOCKET");
    };
    let fs = Arc::new(Mutex::new(Fs::new()));
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket).with_context(|| format!("binding {socket}"))?;
    let shared = fs.clone();
    std::thread::spawn(move || serve_control(listener, shared));
    let opts = [MountOption::FSName("cutfs".into()), MountOption::RW, MountOption::AllowOther];
    fuser::mount2(CutFs(fs), mountpoint, &opts).with_context(|| format!("mounting on {mountpoint}"))?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}
