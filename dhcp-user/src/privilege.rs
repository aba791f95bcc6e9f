//! privilege: what the server gives up once its packet path is set up (program attached,
//! sockets open), before it reads the lease files and starts any thread that serves: the
//! user (`--user`, `[server] user`), every capability, the right to gain privileges again
//! (no_new_privs), and file access beyond the lease directory and the configuration file
//! (Landlock).
//!
//! Serving needs no capability: the AF_XDP and UDP sockets are open (sending and receiving on
//! an open socket checks none), the XDP program is attached through a BPF link (closing its fd
//! detaches it, no CAP_NET_ADMIN), and map updates go through map fds already open.
//!
//! This module must never run once a second thread exists: uid, capabilities, no_new_privs
//! and Landlock apply per thread, and only threads started afterwards inherit them.

use anyhow::{bail, Context, Result};
use caps::CapSet;
use landlock::{path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI};
use nix::unistd::{Gid, Uid, User};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Landlock ABI the rules are written for; older kernels enforce what they know (best effort).
const LANDLOCK_ABI: ABI = ABI::V5;

/// What the server runs as and which files it keeps access to (the `[server] user` key and
/// `--user`, plus the configuration file the server was started with, read again on reload).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confinement {
    pub user: Option<String>,
    pub config_file: Option<PathBuf>,
}

/// The user the server switches to, looked up before anything else (the user database is
/// out of reach once Landlock applies).
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    groups: Vec<Gid>,
}

impl Target {
    /// The configured user, if any. Switching needs root: anyone else is refused with a reason.
    pub fn resolve(user: Option<&str>) -> Result<Option<Target>> {
        let Some(name) = user else { return Ok(None) };
        let u = User::from_name(name)
            .with_context(|| format!("looking up user {name}"))?
            .with_context(|| format!("user {name}: no such user"))?;
        if !Uid::effective().is_root() && Uid::effective() != u.uid {
            bail!("--user {name}: switching user needs root (running as uid {})", Uid::effective());
        }
        let cname = CString::new(name).context("user name")?;
        let groups = nix::unistd::getgrouplist(&cname, u.gid).with_context(|| format!("groups of {name}"))?;
        Ok(Some(Target { name: name.to_string(), uid: u.uid, gid: u.gid, groups }))
    }
}

/// What [`drop_privileges`] achieved, for the log line and tests.
#[derive(Debug)]
pub struct Dropped {
    /// The bounding set was emptied (needs CAP_SETPCAP; a service unit limits it otherwise).
    pub bounding_cleared: bool,
    pub landlock: RulesetStatus,
}

/// Creates the lease directory for `target` when it is missing (mode 0700, owned by the
/// user), so that a root-started server with `--user` needs no preparation. An existing
/// directory is left as it is: it is the administrator's (or systemd's `StateDirectory=`).
pub fn prepare_lease_dir(lease_file: Option<&Path>, target: Option<&Target>) -> Result<()> {
    let (Some(file), Some(t)) = (lease_file, target) else { return Ok(()) };
    let dir = lease_dir(file);
    if dir.exists() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(&dir).with_context(|| format!("creating {}", dir.display()))?;
    nix::unistd::chown(&dir, Some(t.uid), Some(t.gid)).with_context(|| format!("chown {}", dir.display()))?;
    Ok(())
}

/// The directory of the lease file and the files that go with it.
pub fn lease_dir(lease_file: &Path) -> PathBuf {
    parent_dir(lease_file)
}

/// The directory holding `file` (`.` for a bare name).
fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Gives up the user, every capability and all file access but the lease directory
/// (`lease_file`'s) and the configuration file's directory. Call single-threaded.
pub fn drop_privileges(access: &Confinement, target: Option<&Target>, lease_file: Option<&Path>) -> Result<Dropped> {
    ensure_single_threaded()?;
    // Already the user (started unprivileged, e.g. by a service manager): nothing to switch.
    let target = target.filter(|_| Uid::effective().is_root());
    if let (Some(t), Some(file)) = (target, lease_file) {
        hand_over_lease_files(file, t)?;
    }
    let bounding_cleared = clear_bounding_set();
    caps::clear(None, CapSet::Ambient).context("clearing ambient capabilities")?;
    if let Some(t) = target {
        switch_user(t)?;
    }
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        caps::clear(None, set).with_context(|| format!("clearing {set:?} capabilities"))?;
    }
    nix::sys::prctl::set_no_new_privs().context("setting no_new_privs")?;
    let landlock = restrict_files(lease_file.map(lease_dir).as_deref(), access.config_file.as_deref())?;
    Ok(Dropped { bounding_cleared, landlock })
}

/// Logs what [`drop_privileges`] did, in one line.
pub fn log_dropped(d: &Dropped, target: Option<&Target>) {
    let who = target.map_or_else(|| format!("uid {}", Uid::current()), |t| format!("user {} (uid {})", t.name, t.uid));
    let bnd = if d.bounding_cleared { "cleared" } else { "kept (no CAP_SETPCAP: limit it in the service unit)" };
    let ll = match d.landlock {
        RulesetStatus::FullyEnforced => "enforced",
        RulesetStatus::PartiallyEnforced => "partly enforced (older kernel)",
        RulesetStatus::NotEnforced => "not available (kernel without Landlock)",
    };
    log::info!(
        "privileges dropped: running as {who}, no capabilities, bounding set {bnd}, no_new_privs, Landlock {ll}"
    );
}

/// Threads started before the drop would keep what this thread gives up.
fn ensure_single_threaded() -> Result<()> {
    let tasks = std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")?.count();
    if tasks != 1 {
        bail!("dropping privileges with {tasks} threads running: a thread was started too early");
    }
    Ok(())
}

/// Empties the bounding set so that nothing this process executes could regain a capability.
/// `false` without CAP_SETPCAP (a service started unprivileged: its unit bounds the set).
fn clear_bounding_set() -> bool {
    if !caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false) {
        return false;
    }
    caps::all().into_iter().all(|c| caps::drop(None, CapSet::Bounding, c).is_ok())
}

/// Real, effective and saved ids all become the user's: none is left to switch back to. The
/// kernel clears the permitted capabilities as the last root id goes (no PR_SET_KEEPCAPS).
fn switch_user(t: &Target) -> Result<()> {
    nix::unistd::setgroups(&t.groups).context("setting supplementary groups")?;
    nix::unistd::setresgid(t.gid, t.gid, t.gid).context("setting the group id")?;
    nix::unistd::setresuid(t.uid, t.uid, t.uid).context("setting the user id")?;
    Ok(())
}

/// The lease files a root-run server left behind become the user's (only files of this lease
/// file, not following symlinks); the directory must already be writable by the user.
fn hand_over_lease_files(lease_file: &Path, t: &Target) -> Result<()> {
    use nix::fcntl::AtFlags;
    use std::os::unix::fs::MetadataExt;
    let dir = lease_dir(lease_file);
    let meta = std::fs::metadata(&dir).with_context(|| format!("lease directory {}", dir.display()))?;
    if meta.uid() != t.uid.as_raw() {
        bail!(
            "lease directory {} belongs to uid {}, not to user {}: chown it to {0}, or let the service \
             manager create it (StateDirectory=)",
            dir.display(),
            meta.uid(),
            t.name
        );
    }
    let prefix = lease_file.file_name().context("lease file name")?.as_encoded_bytes();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let ours = entry.file_name().as_encoded_bytes().starts_with(prefix);
        if ours && entry.file_type()?.is_file() {
            let p = entry.path();
            nix::unistd::fchownat(nix::fcntl::AT_FDCWD, &p, Some(t.uid), Some(t.gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                .with_context(|| format!("chown {}", p.display()))?;
        }
    }
    Ok(())
}

/// Read after the drop by the BPF library: the CPU count, to read per-CPU maps (counters).
const CPU_FILES: [&str; 2] = ["/sys/devices/system/cpu/possible", "/sys/devices/system/cpu/online"];

/// From now on this thread (and those it starts) may touch files only in `lease_dir`, read
/// files in the configuration file's directory (an editor replaces the file by renaming a new
/// one over it), read its own /proc entries (metrics) and the CPU count ([`CPU_FILES`]).
pub fn restrict_files(lease_dir: Option<&Path>, config_file: Option<&Path>) -> Result<RulesetStatus> {
    let abi = LANDLOCK_ABI;
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let config_dir = config_file.map(parent_dir);
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(lease_dir, AccessFs::from_all(abi)))?
        .add_rules(path_beneath_rules(config_dir.as_deref(), AccessFs::ReadFile))?
        .add_rules(path_beneath_rules(["/proc/self"], read))?
        .add_rules(path_beneath_rules(CPU_FILES, AccessFs::ReadFile))?
        .restrict_self()
        .context("Landlock")?;
    Ok(status.ruleset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xdhcpd-priv-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn landlock_confines_files_to_the_lease_dir_and_the_config() {
        // Landlock applies to the calling thread only: a fresh thread takes it, the test
        // harness does not.
        let (leases, conf) = (tmpdir("leases"), tmpdir("conf"));
        std::fs::write(conf.join("xdhcpd.toml"), "x").unwrap();
        let outside = tmpdir("outside").join("secret");
        std::fs::write(&outside, "s").unwrap();
        let (l, c, o) = (leases.clone(), conf.join("xdhcpd.toml"), outside.clone());
        let seen = std::thread::spawn(move || {
            let status = restrict_files(Some(&l), Some(&c)).unwrap();
            let write = std::fs::write(l.join("leases"), "ok").is_ok();
            let rename = std::fs::rename(l.join("leases"), l.join("leases.old")).is_ok();
            let config = std::fs::read(&c).is_ok();
            let config_write = std::fs::write(&c, "y").is_ok();
            let outside = std::fs::read(&o).map_err(|e| e.kind());
            let passwd = std::fs::read("/etc/passwd").map_err(|e| e.kind());
            let proc = std::fs::read_to_string("/proc/self/status").is_ok();
            (status, write, rename, config, config_write, outside, passwd, proc)
        })
        .join()
        .unwrap();
        assert_eq!(seen.0, RulesetStatus::FullyEnforced, "this kernel has Landlock ABI >= 5");
        assert!(seen.1 && seen.2, "lease dir writable and renames allowed: {seen:?}");
        assert!(seen.3 && !seen.4, "config readable, not writable: {seen:?}");
        assert_eq!(seen.5, Err(std::io::ErrorKind::PermissionDenied), "outside file refused");
        assert_eq!(seen.6, Err(std::io::ErrorKind::PermissionDenied), "/etc/passwd refused");
        assert!(seen.7, "own /proc entries readable");
        // This thread is unaffected.
        assert!(std::fs::read(&outside).is_ok());
        for d in [leases, conf, outside.parent().unwrap().to_path_buf()] {
            let _ = std::fs::remove_dir_all(d);
        }
    }

    #[test]
    fn an_unknown_user_is_refused_by_name() {
        let e = Target::resolve(Some("no-such-user-xdhcpd")).unwrap_err().to_string();
        assert!(e.contains("no-such-user-xdhcpd: no such user"), "{e}");
        assert!(Target::resolve(None).unwrap().is_none());
    }
}
