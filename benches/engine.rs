//! Engine benchmarks: a full DORA, and the foreign-server release with 10^4, 10^6 and 10^7
//! clients held (its cost must not grow with the number of clients).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use dhcp_user::engine::{Engine, Ingress, Outcome};
use dhcp_user::wire::options::{code, MessageType};
use std::time::{Duration, Instant};
use xdhcpd_benches::*;

fn dora_bench(c: &mut Criterion) {
    let cfg = config_cgnat(10);
    let mut e = engine(&cfg, 1 << 16);
    let mut events = Vec::with_capacity(16);
    let mut msg = [0u8; 600];
    let mut out = [0u8; 1500];
    let mut n = 0u32;
    c.bench_function("dora_then_release", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            events.clear();
            let ip = dora(&mut e, n, T0, &mut events).expect("acked");
            // RELEASE keeps the pool from running dry however many iterations criterion runs.
            let ciaddr = ip;
            let len = dhcp_user::client::ClientMsg {
                ciaddr,
                options: &[(code::SERVER_ID, &SERVER.octets())],
                ..dhcp_user::client::ClientMsg::new(dhcp_user::client::mac_for(n), n)
            }
            .write(MessageType::Release, &mut msg)
            .unwrap();
            black_box(e.handle(T0, &Ingress::broadcast(None), &msg[..len], &mut out, &mut events))
        })
    });
}

/// Holds `held` offers, then measures DISCOVER + foreign REQUEST cycles of further clients.
/// `release_only` times just the REQUEST that releases (DISCOVERs run untimed, in batches).
fn cycles(e: &mut Engine, first: u32, iters: u64, release_only: bool) -> Duration {
    const BATCH: u32 = 1000;
    let ing = Ingress::broadcast(None);
    let mut events = Vec::with_capacity(4 * BATCH as usize);
    let mut msg = [0u8; 600];
    let mut out = [0u8; 1500];
    let foreign = OTHER_SERVER.octets();
    let want = [240, 0, 0, 1];
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let k = (iters - done).min(BATCH as u64) as u32;
        let start = Instant::now();
        for i in 0..k {
            let len = client_msg(first + i, MessageType::Discover, &[], &mut msg);
            let o = e.handle(T0, &ing, &msg[..len], &mut out, &mut events);
            assert!(matches!(o, Outcome::Reply(_)), "{o:?}");
        }
        let mid = Instant::now();
        for i in 0..k {
            let len = client_msg(
                first + i,
                MessageType::Request,
                &[(code::SERVER_ID, &foreign), (code::REQUESTED_IP, &want)],
                &mut msg,
            );
            black_box(e.handle(T0, &ing, &msg[..len], &mut out, &mut events));
        }
        let end = Instant::now();
        total += if release_only { end - mid } else { end - start };
        events.clear();
        done += k as u64;
    }
    total
}

fn foreign_release(c: &mut Criterion) {
    let sizes: &[u32] = if measuring() { &[10_000, 1_000_000, 10_000_000] } else { &[1_000] };
    let mut g = c.benchmark_group("foreign_release");
    g.sample_size(30).measurement_time(Duration::from_secs(4));
    for &held in sizes {
        // Offers that do not time out during the run; the clock stays at T0.
        let cfg = config_large(86_400);
        let mut e = engine(&cfg, held as usize);
        let mut events = Vec::new();
        let mut msg = [0u8; 600];
        let mut out = [0u8; 1500];
        for n in 0..held {
            let len = client_msg(n, MessageType::Discover, &[], &mut msg);
            e.handle(T0, &Ingress::broadcast(None), &msg[..len], &mut out, &mut events);
            events.clear();
        }
        assert_eq!(e.records(), held as usize);
        let first = held;
        g.bench_with_input(BenchmarkId::new("release_only", held), &held, |b, _| {
            b.iter_custom(|iters| cycles(&mut e, first, iters, true))
        });
        g.bench_with_input(BenchmarkId::new("discover_and_release", held), &held, |b, _| {
            b.iter_custom(|iters| cycles(&mut e, first, iters, false))
        });
        assert_eq!(e.records(), held as usize, "every foreign REQUEST released its offer");
    }
    g.finish();
}

criterion_group!(benches, dora_bench, foreign_release);
criterion_main!(benches);
