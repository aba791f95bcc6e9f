//! `xdhcpd leases`, `xdhcpd stats` and `xdhcpd reload`: the control API from the command line,
//! as tables for people or (`--json`) the API's own JSON.
//!
//! Must never: reach the server other than through its HTTP API.

use super::client::{request, Response};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the control API is, and how to show its answers.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// The server's control API.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9767")]
    pub control: SocketAddr,
    /// File with the bearer token (when the server has one).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `xdhcpd leases`: one filter, or `--release IP`.
#[derive(Debug, Clone, clap::Args)]
pub struct LeasesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[arg(long, value_name = "IP")]
    pub ip: Option<String>,
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// Client identifier in hex (with its type byte).
    #[arg(long, value_name = "HEX")]
    pub client_id: Option<String>,
    /// Every lease in a subnet (one page; `--after` the last address shown for the next).
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<String>,
    #[arg(long, value_name = "IP", requires = "subnet")]
    pub after: Option<String>,
    /// Free the lease on this address, as the client's RELEASE would.
    #[arg(long, value_name = "IP", conflicts_with_all = ["ip", "mac", "client_id", "subnet"])]
    pub release: Option<String>,
}

impl ApiArgs {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<Value> {
        let token = match &self.token_file {
            Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("token file {}", p.display()))?),
            None => None,
        };
        let r: Response = request(self.control, method, path, body, token.as_deref().map(str::trim))?;
        let v = r.json()?;
        if r.status >= 400 {
            bail!("{} {path}: {} {}", method, r.status, v["error"].as_str().unwrap_or(&r.body));
        }
        Ok(v)
    }
}

/// Runs `xdhcpd leases`.
pub fn leases(a: &LeasesArgs) -> Result<()> {
    if let Some(ip) = &a.release {
        let v = a.api.call("POST", "/v1/leases/release", Some(&serde_json::json!({ "ip": ip }).to_string()))?;
        return print(&a.api, &v, |v| println!("released {}", v["released"].as_str().unwrap_or("")));
    }
    let mut q: Vec<String> = [("ip", &a.ip), ("mac", &a.mac), ("client_id", &a.client_id), ("subnet", &a.subnet)]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if let Some(after) = &a.after {
        q.push(format!("after={}", encode(after)));
    }
    let v = a.api.call("GET", &format!("/v1/leases?{}", q.join("&")), None)?;
    print(&a.api, &v, |v| {
        println!("{:<16} {:<9} {:<18} {:<24} {:>10} SUBNET", "ADDRESS", "STATE", "MAC", "IDENTITY", "EXPIRES-IN");
        for l in v["leases"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:<9} {:<18} {:<24} {:>10} {}",
                l["ip"].as_str().unwrap_or(""),
                l["state"].as_str().unwrap_or(""),
                l["mac"].as_str().unwrap_or("-"),
                l["identity"].as_str().unwrap_or(""),
                l["expires_in"],
                l["subnet"].as_str().unwrap_or("-"),
            );
        }
        if let Some(next) = v["next"].as_str() {
            println!("(more: --after {next})");
        }
    })
}

/// Runs `xdhcpd stats`.
pub fn stats(a: &ApiArgs) -> Result<()> {
    let v = a.call("GET", "/v1/stats", None)?;
    print(a, &v, |v| {
        for (name, n) in v["counters"].as_object().into_iter().flatten() {
            println!("{name:<34} {n}");
        }
        println!("\n{:<18} {:<32} {:>9} {:>9} {:>9} {:>9}", "SUBNET", "POOL", "TOTAL", "ASSIGNED", "DECLINED", "FREE");
        for p in v["pools"].as_array().into_iter().flatten() {
            println!(
                "{:<18} {:<32} {:>9} {:>9} {:>9} {:>9}",
                p["subnet"].as_str().unwrap_or(""),
                p["pool"].as_str().unwrap_or(""),
                p["total"],
                p["assigned"],
                p["declined"],
                p["free"]
            );
        }
        for (w, x) in v["workers"].as_array().into_iter().flatten().enumerate() {
            let share = x["busy_share"].as_f64().unwrap_or(0.0) * 100.0;
            println!("worker {w}: {} records, busy {share:.1}%", x["records"]);
        }
    })
}

/// Runs `xdhcpd reload`.
pub fn reload(a: &ApiArgs) -> Result<()> {
    let v = a.call("POST", "/v1/reload", None)?;
    print(a, &v, |v| {
        println!(
            "reloaded: {} subnets, {} pool addresses; {} records kept, {} outside the pools; paused {} µs",
            v["subnets"], v["pool_addresses"], v["kept"], v["outside_pools"], v["pause_us"]
        )
    })
}

fn print(a: &ApiArgs, v: &Value, table: impl FnOnce(&Value)) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        table(v);
    }
    Ok(())
}

/// Percent-encodes what a query value may not hold as is (`/` of a CIDR stays).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'/' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
