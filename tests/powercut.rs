//! Power cuts under load: xdhcpd keeps its lease journal (durability = fsync, tiny compaction
//! size so rotations and compactions run all the time) on `cutfs`, a FUSE filesystem that
//! keeps every write volatile until it is synced and drops the unsynced part at a cut (then
//! answers EIO, a dead disk, until power comes back). xdhcp-bench drives DORA load and keeps
//! the leases it saw ACKed; the disk is cut at seeded random moments, several of them in the
//! middle of a rotation or a compaction (armed on the file names those steps create, rename or
//! delete), the server is killed, power comes back, the server restarts, and then:
//! - every lease the generator saw ACKed is recovered: each of those clients' INIT-REBOOT for
//!   its address is ACKed with that address (none NAKed, none unanswered);
//! - no address is ACKed to two clients: the generator starts every run bound to the leases
//!   it knows and checks every ACK against them.
//!
//! Also the filesystem's own semantics over a real mount (the model has unit tests in its
//! crate). Needs root (namespaces, FUSE): skipped outside CI otherwise. The seed is printed;
//! `POWERCUT_SEED=N` repeats a run.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use xdhcpd_tests::*;

const BENCH: &str = env!("CARGO_BIN_EXE_xdhcp-bench");
const CLIENTS: &str = "200";

/// A mounted cutfs, unmounted and stopped on drop.
struct CutFs {
    child: Child,
    mnt: PathBuf,
    ctl: PathBuf,
}

impl CutFs {
    fn mount(dir: &Scratch) -> CutFs {
        let (mnt, ctl) = (dir.path("mnt"), dir.path("cutfs.ctl"));
        std::fs::create_dir_all(&mnt).unwrap();
        let log = std::fs::File::create(dir.path("cutfs.log")).unwrap();
        let child =
            Command::new(workspace_binary("cutfs")).args([&mnt, &ctl]).stderr(log).spawn().expect("starting cutfs");
        let fs = CutFs { child, mnt, ctl };
        let mounted = eventually(Duration::from_secs(10), || {
            let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
            mounts.contains(&format!(" {} fuse", fs.mnt.display())).then_some(())
        });
        assert!(mounted.is_some(), "cutfs did not mount: {}", std::fs::read_to_string(dir.path("cutfs.log")).unwrap());
        fs
    }

    /// One control command; its answer (`alive N` / `dead N`).
    fn ctl(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(&self.ctl).expect("cutfs control socket");
        writeln!(s, "{cmd}").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert!(!line.starts_with("error"), "{cmd}: {line}");
        line.trim().to_string()
    }

    fn dead(&self) -> bool {
        self.ctl("status").starts_with("dead")
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sync_dir(p: &Path) {
    std::fs::File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn cutfs_keeps_what_was_synced_and_nothing_else() {
    if !root_or_skip("cutfs_keeps_what_was_synced_and_nothing_else") {
        return;
    }
    let dir = Scratch::new("cutfs");
    let fs = CutFs::mount(&dir);
    let p = |n: &str| fs.mnt.join(n);
    let mut kept = std::fs::File::create(p("kept")).unwrap();
    kept.write_all(b"synced").unwrap();
    kept.sync_data().unwrap();
    std::fs::write(p("unsynced"), b"lost").unwrap();
    sync_dir(&fs.mnt);
    kept.write_all(b" and lost").unwrap();
    std::fs::write(p("unsynced"), b"still lost").unwrap();
    let mut named = std::fs::File::create(p("unnamed")).unwrap();
    named.write_all(b"synced, its name not").unwrap();
    named.sync_all().unwrap();
    std::fs::rename(p("kept"), p("renamed")).unwrap();
    assert_eq!(fs.ctl("cut"), "dead 1");
    assert!(std::fs::read(p("renamed")).is_err(), "a cut disk answers nothing");
    assert_eq!(fs.ctl("revive"), "alive 1");
    assert_eq!(std::fs::read(p("kept")).unwrap(), b"synced", "synced data kept, the rest dropped");
    assert!(!p("renamed").exists(), "a rename needs a directory sync");
    assert_eq!(std::fs::read(p("unsynced")).unwrap(), b"", "created and named durably, data never synced");
    assert!(!p("unnamed").exists(), "a synced file whose directory was not synced is gone");
    std::fs::rename(p("kept"), p("renamed")).unwrap();
    sync_dir(&fs.mnt);
    fs.ctl("cut");
    fs.ctl("revive");
    assert_eq!(std::fs::read(p("renamed")).unwrap(), b"synced", "a synced rename survives");
}

/// Where a cut lands: after a random time, or right after a step of a rotation or compaction
/// (`arm OP SUFFIX` for cutfs).
const CUTS: [&str; 7] = [
    "time",
    "arm create .next",         // rotation: the new journal just created
    "arm rename .old",          // rotation: the journal renamed aside, not synced
    "arm syncdir .old",         // rotation durable, compaction not started
    "arm create .snapshot.tmp", // compaction writing the snapshot
    "arm rename .snapshot",     // snapshot renamed into place, not synced
    "arm unlink .old",          // compaction done but for deleting the old journal
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn seed() -> u64 {
    let from_env = std::env::var("POWERCUT_SEED").ok().and_then(|s| s.parse().ok());
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    from_env.unwrap_or_else(now).max(1)
}

fn server_config(dir: &Scratch, mnt: &Path, backend: &str) -> String {
    let cfg = dir.path("xdhcpd.toml");
    std::fs::write(
        &cfg,
        format!(
            "server_id = \"198.18.0.1\"\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\nbackend = \"{backend}\"\n\
             lease_file = \"{}\"\ndurability = \"fsync\"\ncompact_interval = 3600\ncompact_size = 8192\n\n\
             [[subnet]]\nsubnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [\"198.18.0.10-198.18.0.250\"]\n",
            mnt.join("leases").display(),
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

fn start_server(pair: &Pair, cfg: &str, log: &Path) -> Process {
    start_xdhcpd(&pair.server, &workspace_binary("xdhcpd"), &["--config", cfg], log)
}

fn report(path: &Path, text: &str) -> Value {
    let r =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no JSON report {} ({e}):\n{text}", path.display()));
    serde_json::from_str(&r).unwrap()
}

fn u(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |x, p| &x[p]).as_u64().unwrap_or_else(|| panic!("{path:?} is not a count in {v:#}"))
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().count()).unwrap_or(0)
}

/// Every client of `leases` INIT-REBOOTs at once: each must be ACKed its own address (none
/// NAKed, none unanswered, no address to two clients). Rewrites `leases` with what they hold.
fn check_recovered(pair: &Pair, dir: &Scratch, leases: &Path, round: usize) {
    let want = lines(leases) as u64;
    let json = dir.path(&format!("verify-{round}.json"));
    let l = leases.display().to_string();
    let args = ["-q", "-i", "c0", "--scenario", "avalanche", "--timeout", "200", "--tries", "6"];
    let mut all = vec![BENCH, "--json", json.to_str().unwrap(), "--leases-in", &l, "--leases-out", &l];
    all.extend(args);
    let out = pair.client.exec(&all);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "round {round}: {text}");
    let r = report(&json, &text);
    let c = &r["counters"];
    assert_eq!(u(&r, &["outcome", "served"]), want, "round {round}: every ACKed lease recovered\n{text}");
    assert_eq!(u(&r, &["outcome", "unserved"]), 0, "round {round}: {text}");
    assert_eq!(u(c, &["naks"]), 0, "round {round}: no recovered lease NAKed\n{text}");
    assert_eq!(u(c, &["reboot_moved"]), 0, "round {round}: each client keeps its address\n{text}");
    assert_eq!(u(c, &["duplicate_acks"]), 0, "round {round}: {text}");
    assert_eq!(lines(leases) as u64, want);
    eprintln!("round {round}: {want} leases recovered, each INIT-REBOOT ACKed with its address");
}

/// DORA load from clients bound to the known leases until `cut` fires; then the generator
/// stops (writing the leases it saw ACKed) and must have seen no duplicate ACK.
fn load_and_cut(pair: &Pair, dir: &Scratch, fs: &CutFs, leases: &Path, cut: &str, delay: Duration, round: usize) {
    let json = dir.path(&format!("load-{round}.json"));
    let l = leases.display().to_string();
    let mut args = vec![BENCH, "-q", "-i", "c0", "-R", CLIENTS, "-W", "32", "-p", "30", "--leases-out", &l];
    args.extend(["--json", json.to_str().unwrap()]);
    if leases.exists() {
        args.extend(["--leases-in", &l]);
    }
    // A compaction resumed at start (after a cut left `leases.old`) ends before the next cut
    // is armed, so that the cut lands in this round's load.
    let resumed = eventually(Duration::from_secs(10), || (!fs.mnt.join("leases.old").exists()).then_some(()));
    assert!(resumed.is_some(), "round {round}: the compaction resumed at start never ended");
    if cut != "time" {
        fs.ctl(cut);
    }
    let log = dir.path(&format!("load-{round}.log"));
    let mut gen = Process::start(&pair.client, "xdhcp-bench", &args, &log);
    if cut == "time" {
        std::thread::sleep(delay);
        fs.ctl("cut");
    }
    let fired = eventually(Duration::from_secs(25), || fs.dead().then_some(()));
    assert!(fired.is_some(), "round {round}: `{cut}` never fired: no rotation or compaction under load?");
    eprintln!("round {round}: cut ({cut})");
    gen.signal(libc::SIGINT);
    let status = gen.wait_for(Duration::from_secs(20)).expect("generator stops after SIGINT");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "round {round}: load run (no duplicate ACKs): {text}");
    let r = report(&json, &text);
    assert!(u(&r, &["counters", "leases"]) > 0, "round {round}: the load got leases before the cut: {text}");
}

xdhcpd_tests::on_both_paths! {
    acked_leases_survive_power_cuts_during_rotation_and_compaction => power_cuts_case;
}

fn power_cuts_case(backend: &str) {
    if !root_or_skip(&format!("acked_leases_survive_power_cuts_during_rotation_and_compaction ({backend})")) {
        return;
    }
    let seed = seed();
    eprintln!("powercut seed {seed} (POWERCUT_SEED={seed} repeats the order and times)");
    let mut rng = Rng(seed);
    let pair = Pair::new("powercut");
    let dir = Scratch::new("powercut");
    let fs = CutFs::mount(&dir);
    let cfg = server_config(&dir, &fs.mnt, backend);
    let leases = dir.path("acked.txt");
    let mut order = CUTS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.next() as usize % (i + 1));
    }
    let mut server = start_server(&pair, &cfg, &dir.path("xdhcpd-0.log"));
    for (round, cut) in order.iter().enumerate() {
        if leases.exists() {
            check_recovered(&pair, &dir, &leases, round);
        }
        let delay = Duration::from_millis(800 + rng.next() % 2700);
        load_and_cut(&pair, &dir, &fs, &leases, cut, delay, round);
        server.signal(libc::SIGKILL);
        server.child.wait().unwrap();
        fs.ctl("revive");
        let log = dir.path(&format!("xdhcpd-{}.log", round + 1));
        server = start_server(&pair, &cfg, &log);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let restored = text.lines().find(|l| l.contains("leases restored")).unwrap_or("").to_string();
        eprintln!("round {round}: restarted: {restored}");
    }
    assert!(lines(&leases) > 0);
    check_recovered(&pair, &dir, &leases, order.len());
    assert_eq!(fs.ctl("status"), format!("alive {}", CUTS.len()));
}
