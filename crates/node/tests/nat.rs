//! Across real NATs on one machine: two peers, each behind its own masquerading router in a
//! network namespace, a phonebook with its relay on the "internet" between them, and a public
//! host (see `common/netns.rs` for the map). Needs root, iproute2 and iptables; without them
//! every test here is reported as ignored, with the reason, never as passed.
//!
//! (a) NATed peers find each other through the phonebook and chat through the relay;
//! (b) hole punching (DCUtR) upgrades the relayed connection to a direct one;
//! (c) with the relay down, messages wait, and are delivered when it returns;
//! (d) the relay's per-peer circuit limit holds against a peer opening too many.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // Tests fail loudly on purpose.

mod common;
#[path = "common/netns.rs"]
mod netns;

use std::time::{Duration, Instant};

use common::{Peer, Phonebook};
use libtest_mimic::{Arguments, Failed, Trial};
use netns::Net;
use serde_json::{Value, json};

type Test = fn() -> Result<(), Failed>;

fn main() {
    let mut args = Arguments::from_args();
    // One topology at a time: they are cheap, but the peers are not.
    args.test_threads = Some(1);
    let tests: [(&str, Test); 4] = [
        ("a_nated_peers_chat_through_the_relay", chat_through_the_relay),
        ("b_hole_punching_upgrades_to_a_direct_path", hole_punching),
        ("c_with_the_relay_down_messages_wait_then_arrive", relay_down),
        ("d_relay_limits_hold_against_a_circuit_flood", circuit_flood),
    ];
    let why = netns::unavailable();
    if let Some(why) = &why {
        eprintln!();
        eprintln!("!!! SKIPPED: the NAT tests need network namespaces, and {why}.");
        eprintln!(
            "!!! They are counted as ignored, not passed. Run as root with iproute2 and iptables."
        );
        eprintln!();
    }
    let trials = tests
        .into_iter()
        .map(|(name, test)| Trial::test(name, test).with_ignored_flag(why.is_some()))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// A topology with a phonebook and relay running in it.
struct World {
    // Fields drop in order: processes first, then their directories and namespaces.
    pb: Phonebook,
    dir: tempfile::TempDir,
    net: Net,
}

fn world(extra: &[&str]) -> World {
    let net = Net::build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = netns::phonebook_args(&dir.path().join("pb"));
    args.extend(extra.iter().map(|s| s.to_string()));
    let pb = Phonebook::start_in(&net.ns("pub"), &args);
    assert_eq!(pb.relay.len(), 2, "the relay announces TCP and QUIC: {:?}", pb.relay);
    World { pb, dir, net }
}

impl World {
    /// Starts a peer in `role`'s namespace, registered at the phonebook.
    fn peer(&self, role: &str, name: &str, extra: &[&str]) -> Peer {
        let mut args: Vec<String> = [
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--listen",
            "/ip4/0.0.0.0/udp/0/quic-v1",
            "--phonebook",
            &self.pb.url,
            "--lookup-interval-ms",
            "1000",
            "--probe-ms",
            "500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Peer::start_in(Some(&self.net.ns(role)), &self.dir.path().join(name), name, &args)
    }
}

/// Asks `peer` for its NAT report until `pick` accepts one (30 s at most).
fn nat<T>(peer: &mut Peer, mut pick: impl FnMut(&Value) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        peer.command(json!({"nat": true}));
        std::thread::sleep(Duration::from_millis(250));
        for line in peer.drain() {
            if let Some(report) = line.get("nat") {
                if let Some(t) = pick(report) {
                    return t;
                }
                last = report.clone();
            }
        }
    }
    panic!("{}: no such NAT report within 30 s; the last was {last}", peer.name);
}

/// Waits until `peer` holds a reservation at the relay and has published its relayed address;
/// returns that address.
fn reserved(peer: &mut Peer) -> String {
    nat(peer, |n| (n.pointer("/relay/reserved")? == true).then_some(()));
    peer.command(json!({"republish": true}));
    peer.wait(Duration::from_secs(30), |v| {
        let addrs = v.pointer("/published/addrs")?.as_array()?;
        addrs
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.contains("/p2p-circuit"))
            .map(str::to_owned)
    })
}

/// Waits for `peer`'s reachability to be probed, and returns it.
fn reachability(peer: &mut Peer) -> Value {
    nat(peer, |n| {
        let r = n.get("reachability")?;
        (r != "unknown").then(|| r.clone())
    })
}

/// Sends `text` from `from` to `to` (by username: resolved at the phonebook), and waits until
/// `to` has it and `from` knows it was delivered. Returns how long that took.
fn exchange(from: &mut Peer, to: &mut Peer, text: &str) -> Duration {
    let started = Instant::now();
    from.command(json!({"send": {"to": to.name, "text": text}}));
    let id = from.wait(Duration::from_secs(10), |v| v.pointer("/queued/id").cloned());
    to.wait(Duration::from_secs(60), |v| (v.pointer("/received/text")? == text).then_some(()));
    from.wait(Duration::from_secs(30), |v| {
        (v.pointer("/status/id")? == &id && v.pointer("/status/status")? == "delivered")
            .then_some(())
    });
    started.elapsed()
}

fn path(peer: &mut Peer, other: &str) -> Value {
    peer.command(json!({"path": other}));
    peer.wait(Duration::from_secs(5), |v| {
        (v.pointer("/path/username")? == other && v.get("path")?.get("path").is_some())
            .then(|| v["path"]["path"].clone())
    })
}

fn chat_through_the_relay() -> Result<(), Failed> {
    let w = world(&[]);
    // Hole punching off, so the path can only be the relay.
    let mut alice = w.peer("a", "alice", &["--no-hole-punch"]);
    let mut bob = w.peer("b", "bob", &["--no-hole-punch"]);
    assert_eq!(reachability(&mut alice), "private", "alice is behind NAT");
    assert_eq!(reachability(&mut bob), "private", "bob is behind NAT");
    let alice_circuit = reserved(&mut alice);
    let bob_circuit = reserved(&mut bob);
    println!("alice reachable at {alice_circuit}\nbob reachable at {bob_circuit}");

    let first = exchange(&mut alice, &mut bob, "hello bob, through two NATs");
    let reply = exchange(&mut bob, &mut alice, "hello alice");
    assert_eq!(path(&mut alice, "bob"), "relayed");
    assert_eq!(path(&mut bob, "alice"), "relayed");
    let mut rtts = Vec::new();
    for i in 0..20 {
        rtts.push(exchange(&mut alice, &mut bob, &format!("relayed {i}")));
    }
    rtts.sort();
    println!(
        "(a) relayed: first message {first:?} (lookup, dial, relay), reply {reply:?}, then p50 {:?} p max {:?} over 20",
        rtts[10], rtts[19]
    );

    // A public host is found reachable, and holds no reservation.
    let mut carol = w.peer("c", "carol", &[]);
    let reach = reachability(&mut carol);
    assert!(reach.get("public").is_some(), "carol is public: {reach}");
    // Public: the reservation taken at start is given up.
    nat(&mut carol, |n| (n.pointer("/relay/reserved")? == false).then_some(()));
    exchange(&mut alice, &mut carol, "hello carol");
    assert_eq!(path(&mut alice, "carol"), "direct");
    Ok(())
}

fn hole_punching() -> Result<(), Failed> {
    let w = world(&[]);
    let mut alice = w.peer("a", "alice", &[]);
    let mut bob = w.peer("b", "bob", &[]);
    reserved(&mut alice);
    reserved(&mut bob);
    let started = Instant::now();
    exchange(&mut alice, &mut bob, "first, over whatever path there is");
    // The punch follows the relayed connection; messages do not wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while path(&mut alice, "bob") != "punched" {
        assert!(Instant::now() < deadline, "no punch within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let punched_after = started.elapsed();
    let mut rtts = Vec::new();
    for i in 0..20 {
        rtts.push(exchange(&mut alice, &mut bob, &format!("punched {i}")));
    }
    rtts.sort();
    assert_eq!(path(&mut alice, "bob"), "punched");
    assert_eq!(path(&mut bob, "alice"), "punched");
    println!(
        "(b) punched {punched_after:?} after the first message; then p50 {:?} max {:?} over 20",
        rtts[10], rtts[19]
    );
    Ok(())
}

fn relay_down() -> Result<(), Failed> {
    let mut w = world(&[]);
    let mut alice = w.peer("a", "alice", &["--no-hole-punch"]);
    let mut bob = w.peer("b", "bob", &["--no-hole-punch"]);
    reserved(&mut alice);
    reserved(&mut bob);
    exchange(&mut alice, &mut bob, "before the outage");

    w.pb.crash();
    let down = Instant::now();
    for i in 0..5 {
        alice.command(json!({"send": {"to": "bob", "text": format!("during the outage {i}")}}));
        alice.wait(Duration::from_secs(10), |v| v.get("queued").map(|_| ()));
    }
    std::thread::sleep(Duration::from_secs(6));
    let early: Vec<Value> =
        bob.drain().into_iter().filter(|v| v.get("received").is_some()).collect();
    assert!(early.is_empty(), "delivered without the relay: {early:?}");
    assert!(
        !alice.drain().iter().any(|v| v.pointer("/status/status") == Some(&json!("delivered"))),
        "delivered without the relay"
    );

    w.pb = w.pb.restart();
    let back = Instant::now();
    let mut got = 0;
    bob.wait(Duration::from_secs(90), |v| {
        let text = v.pointer("/received/text")?.as_str()?;
        assert!(text.starts_with("during the outage"), "{text}");
        got += 1;
        (got == 5).then_some(())
    });
    println!(
        "(c) relay down {:?}; all 5 queued messages delivered {:?} after it came back",
        back.duration_since(down),
        back.elapsed()
    );
    exchange(&mut alice, &mut bob, "after the outage");
    Ok(())
}

fn circuit_flood() -> Result<(), Failed> {
    let w = world(&["--relay-max-circuits-per-peer", "4"]);
    let mut alice = w.peer("a", "alice", &["--no-hole-punch"]);
    let mut bob = w.peer("b", "bob", &["--no-hole-punch"]);
    reserved(&mut alice);
    reserved(&mut bob);
    let tcp = w.pb.relay.iter().find(|a| a.contains("/tcp/")).unwrap();
    let output = common::in_netns(Some(&w.net.ns("a")), env!("CARGO_BIN_EXE_tincan-relay-flood"))
        .args(["--relay", tcp, "--count", "20"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    println!("(d) 20 relayed connections from one peer, limit 4 per peer: {report}");
    // libp2p's relay compares the circuits a peer already has with the limit, so it lets one
    // more than the limit through.
    assert_eq!(report["accepted"], 5, "{report}");
    assert_eq!(report["denied"], 15, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // The flood is bounded to the flooder: others still chat through the relay.
    exchange(&mut alice, &mut bob, "still here");
    assert_eq!(path(&mut alice, "bob"), "relayed");
    Ok(())
}
