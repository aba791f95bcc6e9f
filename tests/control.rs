//! The control API of a running xdhcpd in network namespaces: metrics (checked by promtool and
//! scraped by a real Prometheus), lease look-ups, a release through the API, bad requests that
//! change nothing, the bearer token, and live reloads (good, bad, by SIGHUP) without losing a
//! lease.
//!
//! Each test makes its own namespaces (no default route, 198.18.0.0/15) and removes them, and
//! the processes it started, even when it fails. Needs root: skipped outside CI otherwise.

use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::control::client::{request, Response};
use dhcp_user::wire::dhcp::{DhcpPacket, FLAG_BROADCAST};
use dhcp_user::wire::options::{code, MessageType};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use xdhcpd_tests::*;

const XDHCPD: &str = env!("CARGO_BIN_EXE_xdhcpd");
const LIMIT: Duration = Duration::from_secs(3);

xdhcpd_tests::on_both_paths! {
    control_api_looks_up_releases_and_reloads_without_losing_leases => api_case;
}

/// Message of scripted client `n` asking for broadcast replies.
fn msg(n: u32, mt: MessageType, ciaddr: Ipv4Addr, options: &[(u8, &[u8])]) -> Vec<u8> {
    let mut buf = vec![0u8; 600];
    let m = ClientMsg { flags: FLAG_BROADCAST, ciaddr, options, ..ClientMsg::new(mac_for(n), 0x7000 + n) };
    let len = m.write(mt, &mut buf).unwrap();
    buf.truncate(len);
    buf
}

fn reply_type(reply: &[u8]) -> Option<MessageType> {
    DhcpPacket::new_checked(reply).ok()?.parse_options().ok()?.message_type()
}

/// DISCOVER then REQUEST for scripted client `n`, in the client namespace: the ACKed address.
fn dora(pair: &Pair, n: u32) -> Option<Ipv4Addr> {
    pair.client
        .spawn(move || {
            let c = RawClient::new("c0");
            let offer = c.exchange(&msg(n, MessageType::Discover, Ipv4Addr::UNSPECIFIED, &[]), LIMIT)?;
            let ip = DhcpPacket::new_checked(&offer[..]).unwrap().yiaddr();
            let opts = [(code::SERVER_ID, &[198u8, 18, 0, 1][..]), (code::REQUESTED_IP, &ip.octets()[..])];
            let ack = c.exchange(&msg(n, MessageType::Request, Ipv4Addr::UNSPECIFIED, &opts), LIMIT)?;
            (reply_type(&ack) == Some(MessageType::Ack)).then_some(ip)
        })
        .join()
        .unwrap()
}

/// Client `n` confirms its lease on `ip` (INIT-REBOOT: a REQUEST with the address and no
/// server id; the reply is broadcast, the client has no address): the reply's type.
fn renew(pair: &Pair, n: u32, ip: Ipv4Addr) -> Option<MessageType> {
    pair.client
        .spawn(move || {
            let c = RawClient::new("c0");
            let opts = [(code::REQUESTED_IP, &ip.octets()[..])];
            reply_type(&c.exchange(&msg(n, MessageType::Request, Ipv4Addr::UNSPECIFIED, &opts), LIMIT)?)
        })
        .join()
        .unwrap()
}

/// One request to the control API at `addr`, made inside the server namespace.
fn api(pair: &Pair, addr: &str, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Response {
    let (addr, method, path): (SocketAddr, String, String) = (addr.parse().unwrap(), method.into(), path.into());
    let (body, token) = (body.map(String::from), token.map(String::from));
    pair.server
        .spawn(move || request(addr, &method, &path, body.as_deref(), token.as_deref()).expect("control API"))
        .join()
        .unwrap()
}

/// A configuration file on `s0` with `pool`, a lease file and the control API on `listen`.
fn write_config(path: &Path, dir: &Scratch, backend: &str, pool: &str, control: &str) {
    let text = format!(
        "server_id = \"198.18.0.1\"\nlease_time = 600\n\n[server]\ninterfaces = [\"s0\"]\nworkers = 2\n\
         backend = \"{backend}\"\nlease_file = \"{}\"\n\n[control]\n{control}\n\n[[subnet]]\n\
         subnet = \"198.18.0.0/24\"\ninterface = \"s0\"\npools = [{pool}]\n",
        dir.path("leases").display()
    );
    std::fs::write(path, text).unwrap();
}

const LOCAL: &str = "127.0.0.1:9767";

fn api_case(backend: &str) {
    if !root_or_skip(&format!("control_api_looks_up_releases_and_reloads_without_losing_leases ({backend})")) {
        return;
    }
    let pair = Pair::new("ctl");
    let dir = Scratch::new("ctl");
    let cfg = dir.path("xdhcpd.toml");
    let listen = format!("listen = \"{LOCAL}\"");
    write_config(&cfg, &dir, backend, "\"198.18.0.100\"", &listen);
    let log = dir.path("xdhcpd.log");
    let mut server = start_xdhcpd(&pair.server, XDHCPD, &["--config", &cfg.display().to_string()], &log);
    let get = |path: &str| api(&pair, LOCAL, "GET", path, None, None);
    let post = |path: &str, body: Option<&str>| api(&pair, LOCAL, "POST", path, body, None);

    let a = dora(&pair, 1).expect("client 1 gets the pool's address");
    assert_eq!(a, Ipv4Addr::new(198, 18, 0, 100));
    looked_up(&get, &format!("/v1/leases?ip={a}"), "bound", Some(mac_for(1)));
    looked_up(&get, "/v1/leases?mac=02:00:00:00:00:01", "bound", Some(mac_for(1)));
    let page = get("/v1/leases?subnet=198.18.0.0/24").json().unwrap();
    assert_eq!(page["leases"].as_array().unwrap().len(), 1, "{page}");
    assert!(page["next"].is_null(), "one lease: no next page: {page}");
    let page = get("/v1/leases?subnet=198.18.0.0/24&limit=1").json().unwrap();
    assert_eq!(page["next"], a.to_string(), "a full page points at the next: {page}");
    let page = get(&format!("/v1/leases?subnet=198.18.0.0/24&after={a}")).json().unwrap();
    assert_eq!(page["leases"], serde_json::json!([]), "nothing after the last: {page}");

    command_line(&pair, a);
    bad_requests_change_nothing(&get, &post);
    metrics_count_the_exchange(&get("/metrics"));

    // Released through the API: the next client gets the address.
    let r = post("/v1/leases/release", Some(&format!("{{\"ip\": \"{a}\"}}")));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get(&format!("/v1/leases?ip={a}")).json().unwrap()["leases"], serde_json::json!([]));
    assert_eq!(post("/v1/leases/release", Some(&format!("{{\"ip\": \"{a}\"}}"))).status, 404);
    assert_eq!(dora(&pair, 2), Some(a), "the released address goes to the next client");
    assert_eq!(dora(&pair, 3), None, "a one-address pool is full");

    reloads(&pair, &mut server, &cfg, &dir, backend, &listen, &log);
    assert_eq!(server.stop().code(), Some(0), "{}", std::fs::read_to_string(&log).unwrap_or_default());
}

/// `xdhcpd leases` and `xdhcpd stats` show the API's answers as tables; errors exit non-zero
/// with the API's reason.
fn command_line(pair: &Pair, a: Ipv4Addr) {
    let run = |args: &[&str]| {
        let mut all = vec![XDHCPD];
        all.extend_from_slice(args);
        all.extend(["--control", LOCAL]);
        let out = pair.server.exec(&all);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, table, err) = run(&["leases", "--ip", &a.to_string()]);
    assert!(
        ok && table.contains("ADDRESS") && table.contains(&a.to_string()) && table.contains("bound"),
        "{table}{err}"
    );
    let (ok, json, err) = run(&["leases", "--mac", "02:00:00:00:00:01", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}{err}"));
    assert!(ok && v["leases"][0]["ip"] == a.to_string(), "{json}");
    let (ok, table, err) = run(&["stats"]);
    assert!(ok && table.contains("pkt4-ack-sent") && table.contains("198.18.0.0/24"), "{table}{err}");
    let (ok, _, err) = run(&["leases", "--ip", "nope"]);
    assert!(!ok && err.contains("400") && err.contains("not an IPv4 address"), "{err}");
}

/// The one lease a look-up finds has `state` and `mac`.
fn looked_up(get: &dyn Fn(&str) -> Response, path: &str, state: &str, mac: Option<[u8; 6]>) {
    let r = get(path);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    let v = r.json().unwrap();
    let leases = v["leases"].as_array().unwrap();
    assert_eq!(leases.len(), 1, "{path}: {v}");
    assert_eq!(leases[0]["state"], state, "{v}");
    let mac = mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"));
    assert_eq!(leases[0]["mac"].as_str(), mac.as_deref(), "{v}");
}

/// Malformed requests get JSON errors with their status, and the server goes on.
fn bad_requests_change_nothing(get: &dyn Fn(&str) -> Response, post: &dyn Fn(&str, Option<&str>) -> Response) {
    for (path, status) in [
        ("/v1/leases?ip=300.1.1.1", 400),
        ("/v1/leases", 400),
        ("/v1/leases?ip=198.18.0.100&mac=02:00:00:00:00:01", 400),
        ("/v1/leases?subnet=198.18.0.0/40", 400),
        ("/v1/leases?what=1", 400),
        ("/v1/leases?circuit_id=01", 501),
        ("/nothing/here", 404),
    ] {
        let r = get(path);
        assert_eq!(r.status, status, "{path}: {}", r.body);
        assert!(r.json().unwrap()["error"].is_string(), "{path}: {}", r.body);
    }
    for body in ["{", "[]", "{\"ip\": 5}", "{\"ip\": \"nope\"}"] {
        let r = post("/v1/leases/release", Some(body));
        assert!(r.status == 400 || r.status == 415 || r.status == 422, "{body}: {} {}", r.status, r.body);
    }
    let h = get("/v1/health").json().unwrap();
    assert_eq!(h["status"], "ok");
}

/// The scrape counts client 1's DISCOVER and ACK, and promtool finds it well-formed.
fn metrics_count_the_exchange(r: &Response) {
    assert_eq!(r.status, 200);
    for line in [
        "xdhcpd_pkt4_received_total{type=\"discover\"} 1",
        "xdhcpd_pkt4_sent_total{type=\"offer\"} 1",
        "xdhcpd_pkt4_sent_total{type=\"ack\"} 1",
        "xdhcpd_pool_addresses{subnet=\"198.18.0.0/24\",pool=\"198.18.0.100-198.18.0.100\",state=\"assigned\"} 1",
        "xdhcpd_pool_addresses{subnet=\"198.18.0.0/24\",pool=\"198.18.0.100-198.18.0.100\",state=\"offered\"} 0",
        "xdhcpd_journal_fsync_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(r.body.contains(line), "no `{line}` in:\n{}", r.body);
    }
    promtool_check(&r.body);
}

/// `promtool check metrics` on a scrape (Debian `prometheus`, installed by `cargo xtask setup`).
pub fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if std::env::var_os("CI").is_none() => return eprintln!("SKIPPED promtool check: {e}"),
        Err(e) => panic!("promtool (Debian prometheus, cargo xtask setup): {e}"),
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bad file is refused with its place and the old configuration serves; a good one adds
/// addresses; a SIGHUP reload leaves a lease outside the pools, kept and not renewed.
fn reloads(pair: &Pair, server: &mut Process, cfg: &Path, dir: &Scratch, backend: &str, listen: &str, log: &Path) {
    let post = |path: &str| api(pair, LOCAL, "POST", path, None, None);
    let get = |path: &str| api(pair, LOCAL, "GET", path, None, None);
    let leased = Ipv4Addr::new(198, 18, 0, 100);
    std::fs::write(cfg, std::fs::read_to_string(cfg).unwrap().replace("pools = [", "pools = [ \"198.18.0.300\", "))
        .unwrap();
    let r = post("/v1/reload");
    assert_eq!(r.status, 422, "{}", r.body);
    let why = r.json().unwrap()["error"].as_str().unwrap().to_string();
    assert!(why.contains("xdhcpd.toml:") && why.contains("198.18.0.300"), "{why}");
    looked_up(&get, &format!("/v1/leases?ip={leased}"), "bound", Some(mac_for(2)));
    assert_eq!(dora(pair, 3), None, "the old configuration (one address) still serves");

    write_config(cfg, dir, backend, "\"198.18.0.100-198.18.0.102\"", listen);
    let r = post("/v1/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().unwrap()["kept"], 1, "{}", r.body);
    assert_eq!(dora(pair, 3), Some(Ipv4Addr::new(198, 18, 0, 101)), "the new pool serves");
    assert_eq!(renew(pair, 2, leased), Some(MessageType::Ack), "a lease in the pools renews");

    write_config(cfg, dir, backend, "\"198.18.0.101-198.18.0.102\"", listen);
    server.signal(libc::SIGHUP);
    let reloaded = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(log).ok()?.matches("configuration reloaded").nth(1).map(|_| ())
    });
    assert!(reloaded.is_some(), "SIGHUP did not reload: {}", std::fs::read_to_string(log).unwrap_or_default());
    let v = get(&format!("/v1/leases?ip={leased}")).json().unwrap();
    assert_eq!(v["leases"][0]["state"], "bound", "kept until it ends: {v}");
    assert_eq!(v["leases"][0]["outside_pools"], true, "{v}");
    assert_eq!(renew(pair, 2, leased), Some(MessageType::Nak), "not renewed outside the pools");
    let stats = get("/v1/stats").json().unwrap();
    assert_eq!(stats["reloads"], 2, "{stats}");
    assert_eq!(stats["reloads_refused"], 1, "{stats}");
}

#[test]
fn beyond_loopback_the_api_needs_the_bearer_token() {
    if !root_or_skip("beyond_loopback_the_api_needs_the_bearer_token") {
        return;
    }
    let pair = Pair::new("tok");
    let dir = Scratch::new("tok");
    let cfg = dir.path("xdhcpd.toml");
    let addr = "198.18.0.1:9767";
    // Without a token file the file is refused where it names the address.
    write_config(&cfg, &dir, "udp", "\"198.18.0.100\"", &format!("listen = \"{addr}\""));
    let out = pair.server.exec(&[XDHCPD, "check-config", &cfg.display().to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("xdhcpd.toml:") && err.contains("token_file"), "{err}");

    let token = "s3cret-token-for-the-test-0123456789";
    std::fs::write(dir.path("token"), format!("{token}\n")).unwrap();
    let control = format!("listen = \"{addr}\"\ntoken_file = \"{}\"", dir.path("token").display());
    write_config(&cfg, &dir, "udp", "\"198.18.0.100\"", &control);
    let _server = start_xdhcpd(&pair.server, XDHCPD, &["--config", &cfg.display().to_string()], &dir.path("log"));
    let r = api(&pair, addr, "GET", "/metrics", None, None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.json().unwrap()["error"].is_string());
    assert_eq!(api(&pair, addr, "GET", "/v1/stats", None, Some("wrong-token-wrong-token")).status, 401);
    assert_eq!(api(&pair, addr, "POST", "/v1/reload", None, None).status, 401);
    assert_eq!(api(&pair, addr, "GET", "/v1/stats", None, Some(token)).status, 200);
}

#[test]
fn a_real_prometheus_scrapes_the_metrics_and_answers_queries_on_them() {
    if !root_or_skip("a_real_prometheus_scrapes_the_metrics_and_answers_queries_on_them") {
        return;
    }
    if std::process::Command::new("prometheus").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "prometheus is not installed (cargo xtask setup installs it)");
        return eprintln!("SKIPPED: prometheus is not installed (cargo xtask setup installs it)");
    }
    let pair = Pair::new("prom");
    let dir = Scratch::new("prom");
    let cfg = dir.path("xdhcpd.toml");
    write_config(&cfg, &dir, "udp", "\"198.18.0.100-198.18.0.110\"", &format!("listen = \"{LOCAL}\""));
    let _server = start_xdhcpd(&pair.server, XDHCPD, &["--config", &cfg.display().to_string()], &dir.path("log"));
    assert!(dora(&pair, 1).is_some() && dora(&pair, 2).is_some());
    let prom_cfg = dir.path("prometheus.yml");
    let scrape = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: xdhcpd\n    static_configs:\n      - targets: [\"{LOCAL}\"]\n"
    );
    std::fs::write(&prom_cfg, scrape).unwrap();
    let args = [
        "prometheus".to_string(),
        format!("--config.file={}", prom_cfg.display()),
        format!("--storage.tsdb.path={}", dir.path("tsdb").display()),
        "--web.listen-address=127.0.0.1:9090".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _prom = Process::start(&pair.server, "prometheus", &args, &dir.path("prometheus.log"));
    let query = "/api/v1/query?query=xdhcpd_pkt4_received_total%7Btype%3D%22discover%22%7D";
    let value = eventually(Duration::from_secs(60), || {
        let path = query.to_string();
        let r = pair
            .server
            .spawn(move || request("127.0.0.1:9090".parse().unwrap(), "GET", &path, None, None).ok())
            .join()
            .unwrap()?;
        let v = r.json().ok()?;
        v["data"]["result"][0]["value"][1].as_str().map(String::from)
    });
    let log = std::fs::read_to_string(dir.path("prometheus.log")).unwrap_or_default();
    assert_eq!(value.as_deref(), Some("2"), "Prometheus's answer for the two DISCOVERs; its log:\n{log}");
    let up = pair
        .server
        .spawn(|| request("127.0.0.1:9090".parse().unwrap(), "GET", "/api/v1/query?query=up", None, None).unwrap())
        .join()
        .unwrap();
    assert!(up.body.contains("\"1\""), "the target is up: {}", up.body);
}
