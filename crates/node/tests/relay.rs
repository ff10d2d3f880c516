//! The relay on loopback: a peer reachable only through the phonebook's relay gets its messages
//! over a relayed connection, and hole punching (DCUtR) upgrades it to a direct one. The
//! same across real NATs, in network namespaces, is `tests/nat.rs`.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;
#[allow(dead_code)] // The phonebook's tests use the rest.
#[path = "../../phonebook/tests/common/postgres.rs"]
mod postgres;

use std::time::Duration;

use common::Phonebook;
use libp2p::Multiaddr;
use tincan_identity::{Identity, StoreRootKey};
use tincan_node::{Config, Event, Node, Path, RelayPolicy};
use tincan_store::{Status, Store};
use tincan_wire::Username;

/// A node; with phonebooks, it reserves at one of their relays.
async fn node(
    dir: &std::path::Path,
    name: &str,
    phonebook: Option<&str>,
    hole_punch: bool,
) -> Node {
    node_of(dir, name, phonebook.as_slice(), hole_punch).await
}

async fn node_of(dir: &std::path::Path, name: &str, phonebooks: &[&str], hole_punch: bool) -> Node {
    let store =
        Store::create(&dir.join(format!("{name}.redb")), &StoreRootKey::generate().unwrap())
            .unwrap();
    let mut config = Config::new(Username::new(name).unwrap());
    config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    config.phonebooks =
        phonebooks.iter().map(|url| tincan_phonebook_client::Client::new(url).unwrap()).collect();
    // On loopback the relay's probes would find us public and give the reservation up.
    config.nat.relay = RelayPolicy::Always;
    config.nat.hole_punch = hole_punch;
    Node::start(Identity::generate().unwrap(), store, config).await.unwrap()
}

async fn until<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(t) = pick(events.recv().await.unwrap()) {
                return t;
            }
        }
    })
    .await
    .expect("the event came within 30 s")
}

/// Starts `bob` and waits until his record carries a relayed address; returns it.
async fn reserved(bob: &Node, events: &mut tokio::sync::broadcast::Receiver<Event>) -> Multiaddr {
    let addr = until(events, |e| match e {
        Event::Published { addrs, .. } => {
            addrs.into_iter().find(|a| a.to_string().contains("/p2p-circuit"))
        }
        _ => None,
    })
    .await;
    let relay = bob.nat().relay.expect("the phonebook announced its relay");
    assert!(relay.reserved, "{relay:?}");
    assert!(addr.to_string().starts_with(&relay.addr.to_string()), "{addr} vs {relay:?}");
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_the_relay_and_the_punch_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_with(
        &dir.path().join("pb"),
        &["--relay", "--relay-listen", "/ip4/127.0.0.1/tcp/0", "--relay-probe-private"],
    );
    assert_eq!(pb.relay.len(), 1);

    for hole_punch in [false, true] {
        let tag = if hole_punch { "p" } else { "r" };
        let bob = node(dir.path(), &format!("bob{tag}"), Some(&pb.url), hole_punch).await;
        let mut bob_events = bob.subscribe();
        let circuit = reserved(&bob, &mut bob_events).await;
        // Alice has no phonebook: she knows bob only by his relayed address, as if his direct
        // ones were unreachable.
        let alice = node(dir.path(), &format!("alice{tag}"), None, hole_punch).await;
        let mut alice_events = alice.subscribe();
        let bob_name = bob.username().clone();
        alice.add_contact(&bob_name, bob.peer_id(), vec![circuit]).await.unwrap();
        let sent = alice.send(&bob_name, "through the relay").await.unwrap();
        until(&mut alice_events, |e| match e {
            Event::Status { id, status: Status::Delivered { .. }, .. } if id == sent.id => Some(()),
            _ => None,
        })
        .await;
        let text = until(&mut bob_events, |e| match e {
            Event::Received { entry, .. } => Some(entry.text.as_str().to_owned()),
            _ => None,
        })
        .await;
        assert_eq!(text, "through the relay");

        if hole_punch {
            // The punch replaces the relayed connection, which is then closed.
            if alice.path(&bob.peer_id()) != Some(Path::Punched) {
                until(&mut alice_events, |e| match e {
                    Event::Path { path: Some(Path::Punched), .. } => Some(()),
                    _ => None,
                })
                .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(alice.path(&bob.peer_id()), Some(Path::Punched));
            let after = alice.send(&bob_name, "straight").await.unwrap();
            until(&mut alice_events, |e| match e {
                Event::Status { id, status: Status::Delivered { .. }, .. } if id == after.id => {
                    Some(())
                }
                _ => None,
            })
            .await;
        } else {
            assert_eq!(alice.path(&bob.peer_id()), Some(Path::Relayed));
            assert_eq!(bob.path(&alice.peer_id()), Some(Path::Relayed));
        }
        alice.shutdown().await;
        bob.shutdown().await;
    }
}

/// Issue 15: phonebook instances over one database each run a relay and announce them all;
/// when the relay a peer reserved at is killed, with its instance, the peer reserves at
/// another and stays reachable through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_relay_is_killed_reserves_at_another() {
    let pg = match postgres::Postgres::start() {
        Ok(pg) => pg,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI installs PostgreSQL: {why}"),
        Err(why) => {
            eprintln!("!!! SKIPPED: {why}");
            return;
        }
    };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--relay",
        "--relay-listen",
        "/ip4/127.0.0.1/tcp/0",
        "--relay-probe-private",
        "--database",
        &url,
    ];
    let mut instances = [
        Phonebook::start_with(&dir.path().join("a"), &args),
        Phonebook::start_with(&dir.path().join("b"), &args),
    ];
    let relay_id = |pb: &Phonebook| pb.relay[0].rsplit("/p2p/").next().unwrap().to_owned();
    let listed = tincan_phonebook_client::Client::new(&instances[0].url).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while listed.relays().await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "both relays announced");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let urls: Vec<&str> = instances.iter().map(|pb| pb.url.as_str()).collect();
    let bob = node_of(dir.path(), "bob", &urls, false).await;
    let mut bob_events = bob.subscribe();
    reserved(&bob, &mut bob_events).await;
    let first = bob.nat().relay.unwrap().peer_id.to_string();
    let dead = instances.iter().position(|pb| relay_id(pb) == first).expect("one of ours");
    let alive = relay_id(&instances[1 - dead]);
    let killed = std::time::Instant::now();
    instances[dead].crash();
    let circuit = until(&mut bob_events, |e| match e {
        Event::Published { addrs, .. } => addrs
            .into_iter()
            .find(|a| a.to_string().contains("/p2p-circuit") && a.to_string().contains(&alive)),
        _ => None,
    })
    .await;
    println!("reserved at the other relay {:?} after the first was killed", killed.elapsed());
    // Reachable through it: alice knows bob only by that address.
    let alice = node(dir.path(), "alice", None, false).await;
    let mut alice_events = alice.subscribe();
    let bob_name = bob.username().clone();
    alice.add_contact(&bob_name, bob.peer_id(), vec![circuit]).await.unwrap();
    let sent = alice.send(&bob_name, "through the other relay").await.unwrap();
    until(&mut alice_events, |e| match e {
        Event::Status { id, status: Status::Delivered { .. }, .. } if id == sent.id => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(alice.path(&bob.peer_id()), Some(Path::Relayed));
    alice.shutdown().await;
    bob.shutdown().await;
}
