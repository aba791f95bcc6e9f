//! Lease lists (`--leases-out`, `--leases-in`): one lease a line, the client's MAC address and
//! the address ACKed to it, `02:00:00:00:00:2a 100.64.0.7`. The MAC address is the client's
//! number ([`dhcp_core::client::mac_for`]), so a later run's clients are the same clients.
//! Blank lines and lines starting with `#` are skipped. Reading and writing only, off the
//! packet path; a bad line is an error naming FILE:LINE, never a panic.

use anyhow::{bail, Context, Result};
use dhcp_core::client::mac_for;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::Path;

/// Writes `leases` (client number, address) to `path`.
pub fn write(path: &Path, leases: &[(u32, Ipv4Addr)]) -> Result<()> {
    let at = || format!("writing {}", path.display());
    let mut w = BufWriter::new(std::fs::File::create(path).with_context(at)?);
    for &(n, addr) in leases {
        let m = mac_for(n);
        writeln!(w, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {addr}", m[0], m[1], m[2], m[3], m[4], m[5])
            .with_context(at)?;
    }
    w.flush().with_context(at)
}

/// Reads the leases of `path`: (client number, address), in file order.
pub fn read(path: &Path) -> Result<Vec<(u32, Ipv4Addr)>> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lease = parse_line(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        out.push(lease);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<(u32, Ipv4Addr)> {
    let mut words = line.split_whitespace();
    let (Some(mac), Some(addr), None) = (words.next(), words.next(), words.next()) else {
        bail!("expected `MAC ADDRESS`, found {line:?}");
    };
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad MAC address {mac:?}"))?;
    let [0x02, 0x00, a, b, c, d] = bytes[..] else {
        bail!("{mac:?} is not a generator client's MAC address (02:00:N:N:N:N)");
    };
    let addr: Ipv4Addr = addr.parse().with_context(|| format!("bad address {addr:?}"))?;
    Ok((u32::from_be_bytes([a, b, c, d]), addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_leases_read_back_and_bad_lines_name_their_place() {
        let dir = std::env::temp_dir().join(format!("xdhcp-bench-leases-{}", std::process::id()));
        let leases = vec![(42, Ipv4Addr::new(100, 64, 0, 7)), (0x0102_0304, Ipv4Addr::new(100, 64, 1, 1))];
        write(&dir, &leases).unwrap();
        assert_eq!(read(&dir).unwrap(), leases);
        for bad in
            ["02:00:00:00:00:01", "03:00:00:00:00:01 100.64.0.1", "02:00:00:00:01 100.64.0.1", "02:00:00:00:00:01 x"]
        {
            std::fs::write(&dir, format!("# header\n\n{bad}\n")).unwrap();
            let e = format!("{:#}", read(&dir).unwrap_err());
            assert!(e.contains(":3:"), "{bad}: {e}");
        }
        let _ = std::fs::remove_file(&dir);
    }
}
