//! Two real nodes in one process, over real sockets on 127.0.0.1: the basic exchange, before
//! the multi-process tests.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

use tincan_identity::{Identity, StoreRootKey};
use tincan_node::{Config, Event, Node};
use tincan_store::{Status, Store};
use tincan_wire::Username;

async fn node(dir: &std::path::Path, name: &str, listen: &str) -> Node {
    let store =
        Store::create(&dir.join(format!("{name}.redb")), &StoreRootKey::generate().unwrap())
            .unwrap();
    let mut config = Config::new(Username::new(name).unwrap());
    config.listen = vec![listen.parse().unwrap()];
    Node::start(Identity::generate().unwrap(), store, config).await.unwrap()
}

async fn until<T>(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(t) = pick(events.recv().await.unwrap()) {
                return t;
            }
        }
    })
    .await
    .expect("the event came within 20 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_goes_from_alice_to_bob_over_tcp_and_quic() {
    let dir = tempfile::tempdir().unwrap();
    for listen in ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"] {
        let started = std::time::Instant::now();
        let alice = node(dir.path(), &format!("alice{}", listen.len()), listen).await;
        let bob = node(dir.path(), &format!("bob{}", listen.len()), listen).await;
        let mut alice_events = alice.subscribe();
        let mut bob_events = bob.subscribe();
        let bob_name = bob.username().clone();
        alice.add_contact(&bob_name, bob.peer_id(), bob.listen_addrs()).await.unwrap();
        let sent = alice.send(&bob_name, "hello, bob").await.unwrap();

        let (text, request, from) = until(&mut bob_events, |e| match e {
            Event::Received { entry, request, username, .. } => {
                Some((entry.text.as_str().to_owned(), request, username))
            }
            _ => None,
        })
        .await;
        assert_eq!(text, "hello, bob");
        assert!(request, "alice is not bob's contact yet: a message request");
        assert_eq!(&from, alice.username());
        until(&mut alice_events, |e| match e {
            Event::Status { id, status: Status::Delivered { .. }, .. } if id == sent.id => Some(()),
            _ => None,
        })
        .await;
        assert!(alice.store().outbox(sent.conversation, 10).await.unwrap().is_empty());
        let entry = alice.store().entry(sent.conversation, sent.position).await.unwrap().unwrap();
        assert!(matches!(entry.status, Status::Delivered { .. }));
        println!("{listen}: delivered in {:?}", started.elapsed());
        alice.shutdown().await;
        bob.shutdown().await;
    }
}
