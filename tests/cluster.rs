//! The cluster thread (`dhcp_user::cluster`) against a real three-node NATS JetStream cluster in
//! namespaces: block claims race, liveness and takeover, lease events in order, and all of it
//! with one NATS server down.

use std::time::Duration;
use xdhcpd_tests::nats::NatsCluster;
use xdhcpd_tests::root_or_skip;

#[test]
fn harness_cuts_and_heals() {
    if !root_or_skip("harness_cuts_and_heals") {
        return;
    }
    let mut nats = NatsCluster::start("hns", 3);
    nats.stop_node(1);
    nats.start_node(1);
    nats.wait_healthy();
    nats.bridge.cut(&nats.nodes[2].ns);
    let reach = |nats: &NatsCluster| {
        let out = nats.nodes[0].ns.exec(&["ping", "-c1", "-W1", &nats.nodes[2].addr.to_string()]);
        out.status.success()
    };
    assert!(!reach(&nats), "a cut node is unreachable");
    nats.bridge.heal(&nats.nodes[2].ns);
    assert!(xdhcpd_tests::eventually(Duration::from_secs(20), || reach(&nats).then_some(())).is_some());
    nats.wait_healthy();
}
