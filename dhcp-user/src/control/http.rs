//! The HTTP API of the control plane: axum on a tokio current-thread runtime, on a thread of
//! its own. Every error is JSON (`{"error": reason}`) with its status; a bad request is
//! answered and forgotten, never passed to a worker.
//!
//! Must never: block its runtime on a worker (look-ups wait on one-shot channels with a
//! timeout; a reload runs on a blocking thread).

use super::metrics;
use super::{ControlSettings, Hub};
use crate::worker::control::{Command, Query};
use anyhow::{bail, Context, Result};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query as Params, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dhcp_core::engine::LeaseView;
use dhcp_core::lease::{ClientKey, LeaseState};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long a worker may take to answer a look-up before the request fails with 503.
const WORKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Most leases one page of `GET /v1/leases?subnet=` holds.
const PAGE: usize = 1000;

/// The running control thread; stops when dropped or [`Control::stop`]ped.
#[derive(Debug)]
pub struct Control {
    thread: Option<JoinHandle<()>>,
    shutdown: Option<oneshot::Sender<()>>,
    pub local: std::net::SocketAddr,
}

#[derive(Clone)]
struct App {
    hub: Arc<Hub>,
    token: Option<Arc<str>>,
}

/// An error answer: its status and reason.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, reason.into())
}

impl Control {
    /// Binds the listener (so that a bad address fails the start) and starts the thread.
    pub fn start(s: &ControlSettings, token: Option<Arc<str>>, hub: Arc<Hub>) -> Result<Option<Control>> {
        let Some(addr) = s.listen else { return Ok(None) };
        if token.is_none() && !addr.ip().is_loopback() {
            bail!("control API on {addr} (beyond loopback) needs a bearer token: set [control] token_file");
        }
        let listener = std::net::TcpListener::bind(addr).with_context(|| format!("control API on {addr}"))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let app = App { hub, token };
        let thread = std::thread::Builder::new()
            .name("xdhcpd-control".into())
            .spawn(move || serve(listener, app, rx))
            .context("starting the control thread")?;
        log::info!("control API on http://{local}/ (metrics at /metrics)");
        Ok(Some(Control { thread: Some(thread), shutdown: Some(tx), local }))
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The bearer token of `[control] token_file`, if the API is on and has one. Read at start,
/// before the files go out of reach.
pub fn read_token(s: &ControlSettings) -> Result<Option<Arc<str>>> {
    match (&s.listen, &s.token_file) {
        (Some(_), Some(p)) => token_from(p).map(Some),
        _ => Ok(None),
    }
}

fn token_from(path: &std::path::Path) -> Result<Arc<str>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("control token file {}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 {
        bail!("control token in {} is shorter than 16 characters", path.display());
    }
    Ok(token.into())
}

fn serve(listener: std::net::TcpListener, app: App, shutdown: oneshot::Receiver<()>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return log::error!("control API: no runtime: {e}"),
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => return log::error!("control API: {e}"),
        };
        let served = axum::serve(listener, router(app)).with_graceful_shutdown(async {
            let _ = shutdown.await;
        });
        if let Err(e) = served.await {
            log::error!("control API stopped: {e}");
        }
    });
}

fn router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/v1/health", get(health))
        .route("/v1/stats", get(stats))
        .route("/v1/leases", get(leases))
        .route("/v1/leases/release", post(release))
        .route("/v1/reload", post(reload))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(app.clone(), authorize))
        .with_state(app)
}

/// With a token configured, every request must carry `Authorization: Bearer TOKEN`.
async fn authorize(State(app): State<App>, req: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let ok = given.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
        if !ok {
            let mut r = ApiError(StatusCode::UNAUTHORIZED, "missing or wrong bearer token".into()).into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

/// Compares in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_metrics(State(app): State<App>) -> Response {
    let text = metrics::prometheus(&app.hub);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn health(State(app): State<App>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "workers": app.hub.workers.len(),
        "uptime_seconds": app.hub.started.elapsed().as_secs(),
    }))
}

async fn stats(State(app): State<App>) -> Json<Value> {
    Json(metrics::json(&app.hub))
}

async fn leases(
    State(app): State<App>,
    params: Result<Params<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Params(p) = params.map_err(|e| bad(e.body_text()))?;
    if let Some(found) = by_relay(&app, &p).await? {
        let shared = app.hub.current();
        return Ok(Json(json!({ "leases": found.iter().map(|l| view(&shared, l)).collect::<Vec<_>>() })));
    }
    let query = parse_query(&p)?;
    let mut found = ask_all(&app.hub, query).await?;
    found.sort_unstable_by_key(|l| u32::from(l.ip));
    let shared = app.hub.current();
    let limit = match query {
        Query::Subnet { limit, .. } => limit,
        _ => PAGE,
    };
    let mut body = json!({ "leases": found.iter().take(limit).map(|l| view(&shared, l)).collect::<Vec<_>>() });
    // Each worker sent its first `limit`: a full page may have more behind it.
    if matches!(query, Query::Subnet { .. }) && found.len() >= limit {
        body["next"] = json!(found[limit - 1].ip.to_string());
    }
    Ok(Json(body))
}

/// Look-up keys answered from the relay agent information on the lease board.
const RELAY_KEYS: [&str; 4] = ["circuit_id", "circuit_id_hex", "remote_id", "remote_id_hex"];

/// A look-up by circuit id or remote id (text, or hex with `_hex`): the lease board names the
/// addresses, then their workers describe the leases. `None` for other look-ups.
async fn by_relay(app: &App, p: &HashMap<String, String>) -> Result<Option<Vec<LeaseView>>, ApiError> {
    let Some(key) = RELAY_KEYS.into_iter().find(|k| p.contains_key(*k)) else {
        return Ok(None);
    };
    if p.len() > 1 {
        return Err(bad("give exactly one of ip, mac, client_id, circuit_id, remote_id, subnet"));
    }
    let v = p[key].as_str();
    let id = match key.strip_suffix("_hex") {
        Some(_) => crate::config::parse_hex(v).map_err(|e| bad(format!("{key}: {e}")))?,
        None => v.as_bytes().to_vec(),
    };
    let sub = if key.starts_with("circuit") { 1 } else { 2 };
    let Some(ips) = app.hub.current().leases_by_relay_id(sub, &id, PAGE) else {
        return Err(ApiError(
            StatusCode::NOT_IMPLEMENTED,
            format!("{key}: relay information is kept only on the lease board (leasequery = true)"),
        ));
    };
    let mut found = Vec::new();
    for ip in ips {
        found.extend(ask_all(&app.hub, Query::Ip(ip)).await?);
    }
    Ok(Some(found))
}

/// The one filter a look-up takes (relay look-ups: [`by_relay`]).
fn parse_query(p: &HashMap<String, String>) -> Result<Query, ApiError> {
    let known =
        RELAY_KEYS.iter().chain(&["ip", "mac", "client_id", "subnet", "after", "limit"]).copied().collect::<Vec<_>>();
    if let Some(k) = p.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(bad(format!("unknown parameter {k}")));
    }
    let filters: Vec<&str> =
        ["ip", "mac", "client_id", "subnet"].into_iter().chain(RELAY_KEYS).filter(|k| p.contains_key(*k)).collect();
    let [one] = filters[..] else {
        return Err(bad("give exactly one of ip, mac, client_id, circuit_id, remote_id, subnet"));
    };
    let v = p[one].as_str();
    Ok(match one {
        "ip" => Query::Ip(v.parse().map_err(|_| bad(format!("ip: not an IPv4 address: {v}")))?),
        "mac" => Query::Mac(crate::config::parse_mac(v).map_err(|e| bad(format!("mac: {e}")))?),
        "client_id" => {
            let id = crate::config::parse_hex(v).map_err(|e| bad(format!("client_id: {e}")))?;
            Query::Client(ClientKey::from_client_id(&id))
        }
        "subnet" => subnet_query(v, p)?,
        _ => return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("{one}: not a filter"))),
    })
}

fn subnet_query(v: &str, p: &HashMap<String, String>) -> Result<Query, ApiError> {
    let cidr: crate::config::Cidr = v.parse().map_err(|e| bad(format!("subnet: {e}")))?;
    let after = match p.get("after") {
        Some(a) => a.parse::<Ipv4Addr>().map_err(|_| bad(format!("after: not an IPv4 address: {a}")))?.into(),
        None => 0,
    };
    let limit = match p.get("limit") {
        Some(l) => l.parse::<usize>().ok().filter(|n| (1..=PAGE).contains(n)).ok_or_else(|| bad("limit: 1 to 1000"))?,
        None => PAGE,
    };
    let mask = dhcp_core::config::mask(cidr.prefix_len);
    Ok(Query::Subnet { network: u32::from(cidr.network) & mask, mask, after, limit })
}

/// Asks every worker; gathers their answers.
async fn ask_all(hub: &Hub, query: Query) -> Result<Vec<LeaseView>, ApiError> {
    let mut waiting = Vec::with_capacity(hub.workers.len());
    for w in 0..hub.workers.len() {
        let (tx, rx) = oneshot::channel();
        if !hub.send(w, Command::Leases { query, reply: tx }) {
            return Err(busy());
        }
        waiting.push(rx);
    }
    let mut all = Vec::new();
    for rx in waiting {
        all.extend(tokio::time::timeout(WORKER_TIMEOUT, rx).await.map_err(|_| busy())?.map_err(|_| busy())?);
    }
    Ok(all)
}

fn busy() -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, "a worker did not answer in time (busy or stopping)".into())
}

/// One lease as JSON.
fn view(shared: &dhcp_core::engine::Shared, l: &LeaseView) -> Value {
    let state = match l.state {
        LeaseState::Bound => "bound",
        LeaseState::Offered => "offered",
        LeaseState::Quarantined => "declined",
        LeaseState::Vacant => "vacant",
    };
    let subnet = shared
        .subnet_pools()
        .find(|(net, len, _)| u32::from(l.ip) & dhcp_core::config::mask(*len) == u32::from(*net))
        .map(|(net, len, _)| format!("{net}/{len}"));
    let identity = match l.client.inline_bytes() {
        Some(b) => hex(b),
        None if l.client.is_quarantine() => "declined".into(),
        None => format!("hash:{}", hex(&l.client.0[1..])),
    };
    let now = crate::clock::unix_now();
    json!({
        "ip": l.ip.to_string(),
        "state": state,
        "identity": identity,
        "identity_kind": if l.client.is_client_id() { "client-id" } else { "hardware" },
        "mac": l.mac.map(|m| m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")),
        "expires": l.expires,
        "expires_in": l.expires.saturating_sub(now),
        "renewed": l.renewed,
        "subnet": subnet,
        "outside_pools": !shared.space().in_pool(l.ip) && l.state != LeaseState::Quarantined,
        "relay_info": shared.relay_info_of(l.ip).map(|ri| relay_view(&ri)),
    })
}

/// Option 82 as JSON: the whole value and its circuit id and remote id, in hex.
fn relay_view(ri: &[u8]) -> Value {
    let sub = |c| dhcp_core::wire::options::relay_sub_option(ri, c).map(hex);
    json!({ "raw": hex(ri), "circuit_id": sub(1), "remote_id": sub(2) })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

async fn release(State(app): State<App>, body: Result<Json<Value>, JsonRejection>) -> Result<Json<Value>, ApiError> {
    let Json(body) = body.map_err(|e| bad(e.body_text()))?;
    let text = body.get("ip").and_then(Value::as_str).ok_or_else(|| bad("body must be {\"ip\": \"A.B.C.D\"}"))?;
    let ip: Ipv4Addr = text.parse().map_err(|_| bad(format!("ip: not an IPv4 address: {text}")))?;
    let mut waiting = Vec::with_capacity(app.hub.workers.len());
    for w in 0..app.hub.workers.len() {
        let (tx, rx) = oneshot::channel();
        if !app.hub.send(w, Command::Release { ip, reply: tx }) {
            return Err(busy());
        }
        waiting.push(rx);
    }
    let mut ticket = None;
    for rx in waiting {
        if let Some(t) = tokio::time::timeout(WORKER_TIMEOUT, rx).await.map_err(|_| busy())?.map_err(|_| busy())? {
            ticket = Some(t);
        }
    }
    let Some(ticket) = ticket else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no lease or offer on {ip}")));
    };
    if let Some(j) = &app.hub.journal {
        durable(j, ticket).await?;
    }
    Ok(Json(json!({ "released": ip.to_string() })))
}

/// Waits until the journal has the release on disk (or says it cannot).
async fn durable(j: &crate::journal::Journal, ticket: crate::journal::Ticket) -> Result<(), ApiError> {
    use crate::journal::Commit;
    for _ in 0..5000 {
        match j.check(ticket) {
            Commit::Durable => return Ok(()),
            Commit::Failed(e) => {
                return Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("released, but not recorded: {e}")))
            }
            Commit::Pending => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "released; the journal has not recorded it yet".into()))
}

async fn reload(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let hub = app.hub.clone();
    let done = tokio::task::spawn_blocking(move || hub.reload()).await;
    let report = done.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match report {
        Ok(r) => Ok(Json(json!({
            "reloaded": true,
            "subnets": r.subnets,
            "pool_addresses": r.pool_addresses,
            "kept": r.kept,
            "outside_pools": r.outside,
            "probations_dropped": r.dropped,
            "pause_us": r.pause.as_micros() as u64,
            "restart_needed_for": r.ignored,
        }))),
        Err(e @ super::ReloadError::Config(_)) => Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())),
        Err(e @ super::ReloadError::NeedsRestart(_)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}
