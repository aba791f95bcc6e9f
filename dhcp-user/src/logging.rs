//! The process's logger behind the `log` facade: one line per event on standard error, with a
//! level the operator sets (`--log-level`, or `XDHCPD_LOG`, which also takes per-module filters
//! such as `info,dhcp_io=debug`).
//!
//! Under systemd (`JOURNAL_STREAM` set, stderr connected to the journal) each line starts with
//! the kernel-style priority `<N>` that journald turns into the entry's level, and no
//! timestamp (journald adds its own); otherwise `TIMESTAMP LEVEL xdhcpd: message`, for plain
//! files. Library code only ever uses the `log` macros; this is for the binary to install.

use std::io::Write;

/// Installs the logger. `level` wins over `XDHCPD_LOG`; neither: `info`.
pub fn init(level: Option<log::LevelFilter>) {
    let mut b = env_logger::Builder::new();
    b.filter_level(log::LevelFilter::Info);
    if let Ok(spec) = std::env::var("XDHCPD_LOG") {
        b.parse_filters(&spec);
    }
    if let Some(l) = level {
        b.filter_level(l);
    }
    b.target(env_logger::Target::Stderr);
    if journald_attached() {
        b.format(|buf, r| writeln!(buf, "<{}>{}", priority(r.level()), r.args()));
    } else {
        b.format(|buf, r| writeln!(buf, "{} {:<5} xdhcpd: {}", buf.timestamp_millis(), r.level(), r.args()));
    }
    // A second call (tests, embedding) keeps the first logger.
    let _ = b.try_init();
}

/// Whether standard error is the journal's stream (systemd sets `JOURNAL_STREAM` to its
/// `device:inode`).
fn journald_attached() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    let Ok(meta) = std::fs::File::from(fd).metadata() else { return false };
    v == format!("{}:{}", meta.dev(), meta.ino())
}

/// syslog priorities (sd-daemon(3)): err 3, warning 4, info 6, debug 7.
fn priority(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn priorities_follow_sd_daemon() {
        assert_eq!(super::priority(log::Level::Error), 3);
        assert_eq!(super::priority(log::Level::Warn), 4);
        assert_eq!(super::priority(log::Level::Info), 6);
        assert_eq!(super::priority(log::Level::Trace), 7);
    }
}
