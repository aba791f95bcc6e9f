//! The XDP steering program on a veth in a test namespace: DHCP to port 67 is recognised (and,
//! with no worker sockets yet, handed on to the kernel), frames too short for DHCP are dropped,
//! ping and other UDP pass untouched, counters say so, its log records reach the `log` facade
//! only at the level set when it was loaded, and the program is gone once its owner lets go.
//! Needs root (skipped outside CI otherwise).

use dhcp_common::counter;
use dhcp_user::client::{mac_for, ClientMsg};
use dhcp_user::wire::options::MessageType;
use dhcp_user::xdp::Steering;
use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::time::Duration;
use xdhcpd_tests::*;

/// Records that reached the `log` facade, for the assertions on the program's own log.
static RECORDS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        RECORDS.lock().unwrap().push(format!("{} {}", r.level(), r.args()));
    }

    fn flush(&self) {}
}

/// The program's own records (aya, the loader, logs through the facade too).
fn records() -> Vec<String> {
    RECORDS.lock().unwrap().iter().filter(|r| r.contains("xdp: ")).cloned().collect()
}

#[test]
fn steering_program_classifies_and_passes_traffic() {
    if !root_or_skip("steering_program_classifies_and_passes_traffic") {
        return;
    }
    let _ = log::set_logger(&Capture);
    quiet_below_the_level_set_at_load();
    log::set_max_level(log::LevelFilter::Debug);
    RECORDS.lock().unwrap().clear();
    let pair = Pair::new("xdp");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = pair.server.spawn(move || {
        let mut steering = Steering::attach("s0", 67).expect("attach to s0");
        steering.forward_log().expect("log reader");
        assert!(records().is_empty(), "nothing logged before any traffic");
        let sock = udp_on("s0", 67);
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1500];
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => got.push(n),
                Err(_) if done_rx.try_recv().is_ok() => break,
                Err(_) => {}
            }
        }
        // The short frame was logged (aya-log `debug!`, loaded at level debug).
        let logged = eventually(Duration::from_secs(2), || {
            records().iter().any(|r| r.contains("too short for DHCP")).then_some(())
        });
        (steering.counters().expect("counters"), got, steering, logged.is_some())
    });
    ready_rx.recv().unwrap();
    let attached = String::from_utf8(pair.server.ip(&["-d", "link", "show", "s0"]).stdout).unwrap();
    assert!(attached.contains("xdp"), "program attached: {attached}");

    // Three DISCOVERs, one datagram to port 67 too short to be DHCP, one to another port.
    pair.client
        .spawn(|| {
            let sock = udp_on("c0", 68);
            let mut msg = [0u8; 600];
            for n in 0..3 {
                let len = ClientMsg::new(mac_for(n), n).write(MessageType::Discover, &mut msg).unwrap();
                sock.send_to(&msg[..len], (Ipv4Addr::BROADCAST, 67)).unwrap();
            }
            sock.send_to(&[1u8; 100], (Ipv4Addr::BROADCAST, 67)).unwrap();
            sock.send_to(&[2u8; 100], (Ipv4Addr::BROADCAST, 9)).unwrap();
        })
        .join()
        .unwrap();
    let ping = pair.client.exec(&["ping", "-c", "2", "-W", "2", &SERVER_IP.to_string()]);
    assert!(ping.status.success(), "ping across the veth while attached: {}", String::from_utf8_lossy(&ping.stdout));
    std::thread::sleep(Duration::from_millis(400));
    done_tx.send(()).unwrap();
    let (c, got, steering, logged) = server.join().unwrap();
    assert!(logged, "the dropped short frame was logged through aya-log");

    assert_eq!(c.get(counter::NO_SOCKET), 3, "{:?}", c.named().collect::<Vec<_>>());
    assert_eq!(c.get(counter::DROPPED_SHORT), 1);
    assert_eq!(c.get(counter::REDIRECTED), 0);
    assert!(c.get(counter::PASSED) >= 5, "ARP, ICMP and the port-9 datagram pass: {c:?}");
    assert_eq!(c.get(counter::SEEN), c.get(counter::PASSED) + 4, "every frame counted once: {c:?}");
    // With no worker sockets the DISCOVERs reached the kernel's socket; the short one did not.
    assert_eq!(got, vec![300, 300, 300]);

    drop(steering);
    let after = String::from_utf8(pair.server.ip(&["-d", "link", "show", "s0"]).stdout).unwrap();
    assert!(!after.contains("prog/xdp"), "program removed with its owner: {after}");
}

/// Loaded at level warn, the program writes no record for a short frame (a flood of them
/// must not cost a ring-buffer write each), though it still counts and drops it.
fn quiet_below_the_level_set_at_load() {
    log::set_max_level(log::LevelFilter::Warn);
    let pair = Pair::new("xdpq");
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let server = pair.server.spawn(move || {
        let mut steering = Steering::attach("s0", 67).expect("attach to s0");
        steering.forward_log().expect("log reader");
        ready_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        steering.counters().expect("counters")
    });
    ready_rx.recv().unwrap();
    pair.client.spawn(|| udp_on("c0", 68).send_to(&[1u8; 100], (Ipv4Addr::BROADCAST, 67)).unwrap()).join().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    done_tx.send(()).unwrap();
    let c = server.join().unwrap();
    assert_eq!(c.get(counter::DROPPED_SHORT), 1, "{:?}", c.named().collect::<Vec<_>>());
    assert!(records().iter().all(|r| !r.contains("too short")), "logged below its level: {:?}", records());
}
