//! Benchmark parts that can run alone (`cargo xtask bench --part NAME`): each measures one
//! question and returns its BENCHMARKS.md section, which replaces the part's earlier section
//! (between markers) and leaves the rest of the file as it is. A full `cargo xtask bench` runs
//! them all after the other benchmarks; `cargo xtask test` runs the whole-server ones once on
//! small sizes (`quick`), to prove they work, and writes nothing.

use super::{avalanche, cluster, compaction, journal_server, recovery, renew};
use anyhow::{bail, Result};
use std::path::Path;

type Part = fn(&Path, bool) -> Result<String>;

/// Every part, by name, in the order a full run takes them.
pub(crate) const PARTS: [(&str, Part); 7] = [
    ("recovery", recovery::run),
    ("compaction", compaction::run),
    ("journal-server", journal_server::run),
    ("reload", crate::reload::part),
    ("avalanche", avalanche::part),
    ("renew", renew::run),
    ("cluster", cluster::run),
];

/// The parts `cargo xtask test` runs quickly: those `cargo test` does not run already.
pub(crate) const IN_XTASK_TEST: [&str; 4] = ["compaction", "journal-server", "renew", "cluster"];

fn find(name: &str) -> Result<Part> {
    match PARTS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => Ok(*f),
        None => bail!(
            "no benchmark part {name:?}; the parts are: {}",
            PARTS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Runs the named parts; unless `quick`, puts their sections into BENCHMARKS.md.
pub(crate) fn run(root: &Path, names: &[String], quick: bool) -> Result<()> {
    let parts: Vec<(&str, Part)> = names.iter().map(|n| Ok((n.as_str(), find(n)?))).collect::<Result<_>>()?;
    for (name, part) in parts {
        let section = part(root, quick)?;
        if quick {
            println!("{section}");
        } else {
            let path = root.join("BENCHMARKS.md");
            let md = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\n".into());
            std::fs::write(&path, put_section(&md, name, &section))?;
            eprintln!("BENCHMARKS.md: section {name} written");
        }
    }
    Ok(())
}

/// Runs one part quickly and returns whether it worked (for `cargo xtask test`'s tally).
pub(crate) fn smoke(root: &Path, name: &str) -> Result<()> {
    let section = find(name)?(root, true)?;
    println!("{section}");
    Ok(())
}

fn markers(name: &str) -> (String, String) {
    (format!("<!-- part: {name} -->"), format!("<!-- end of part: {name} -->"))
}

/// Part `name`'s section in `md`, without its markers.
pub(crate) fn section<'a>(md: &'a str, name: &str) -> Option<&'a str> {
    let (start, end) = markers(name);
    let a = md.find(&start)? + start.len();
    let b = md[a..].find(&end)? + a;
    Some(md[a..b].trim_matches('\n'))
}

/// `md` with part `name`'s section replaced by `section` (or added before "## Reproduce", or
/// at the end).
pub(crate) fn put_section(md: &str, name: &str, section: &str) -> String {
    let (start, end) = markers(name);
    let block = format!("{start}\n{}\n{end}\n", section.trim_end());
    if let (Some(a), Some(b)) = (md.find(&start), md.find(&end)) {
        if a < b {
            let after = md[b + end.len()..].trim_start_matches('\n');
            return format!("{}{block}\n{after}", &md[..a]);
        }
    }
    match md.find("## Reproduce") {
        Some(i) => format!("{}{block}\n{}", &md[..i], &md[i..]),
        None => format!("{}\n{block}", md.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::put_section;

    #[test]
    fn a_section_is_added_once_then_replaced() {
        let md = "# B\n\n## Reproduce\n\nx\n";
        let once = put_section(md, "p", "## P\n\none");
        assert!(once.find("## P").unwrap() < once.find("## Reproduce").unwrap());
        let twice = put_section(&once, "p", "## P\n\ntwo");
        assert_eq!(twice.matches("## P").count(), 1);
        assert!(twice.contains("two") && !twice.contains("one"));
        assert!(twice.ends_with("## Reproduce\n\nx\n"));
        assert_eq!(super::section(&twice, "p"), Some("## P\n\ntwo"));
        assert_eq!(super::section(&twice, "q"), None);
    }
}

/// What the parts read from one generator report (xdhcp-bench `--json`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dora {
    pub per_s: f64,
    /// DISCOVER→OFFER and REQUEST→ACK latency, p50 and p99, µs.
    pub offer: (f64, f64),
    pub ack: (f64, f64),
    pub drops: u64,
}

impl Dora {
    pub(crate) fn of(v: &serde_json::Value) -> Dora {
        let ex = |name: &str| v["exchanges"].as_array().and_then(|a| a.iter().find(|e| e["name"] == name)).cloned();
        let lat = |name: &str| {
            let e = ex(name);
            let q = |k: &str| e.as_ref().and_then(|e| e["latency_us"][k].as_f64()).unwrap_or(f64::NAN);
            (q("p50"), q("p99"))
        };
        Dora {
            per_s: v["rates"]["leases"].as_f64().unwrap_or(0.0),
            offer: lat("DISCOVER-OFFER"),
            ack: lat("REQUEST-ACK"),
            drops: v["exchanges"].as_array().map_or(0, |a| a.iter().filter_map(|e| e["drops"].as_u64()).sum()),
        }
    }
}

/// The median of each field over `runs` (drops: the sum).
pub(crate) fn median_of(runs: &[Dora]) -> Dora {
    let m = |f: fn(&Dora) -> f64| crate::system::median(&runs.iter().map(f).collect::<Vec<_>>());
    Dora {
        per_s: m(|d| d.per_s),
        offer: (m(|d| d.offer.0), m(|d| d.offer.1)),
        ack: (m(|d| d.ack.0), m(|d| d.ack.1)),
        drops: runs.iter().map(|d| d.drops).sum(),
    }
}
