//! Delivery across real processes: offline queues, crashes on either side, a phonebook that is
//! down, and a key that changes. Every check reads the stores afterwards: exactly once, in
//! order, nothing left behind.

#![allow(clippy::unwrap_used, clippy::print_stdout)] // Tests fail loudly on purpose.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::json;

const MINUTE: Duration = Duration::from_secs(60);

fn phonebook_args(pb: &Phonebook) -> Vec<String> {
    vec!["--phonebook".into(), pb.url.clone(), "--lookup-interval-ms".into(), "500".into()]
}

/// Messages `prefix0..prefixN` in one conversation's log, each exactly once and in order.
fn assert_exactly_once_in_order(log: &[tincan_store::LogEntry], prefix: &str, n: usize) {
    let texts: Vec<&str> =
        log.iter().map(|e| e.text.as_str()).filter(|t| t.starts_with(prefix)).collect();
    let expected: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    assert_eq!(texts.len(), n, "every message exactly once (got {}, want {n})", texts.len());
    assert!(texts.iter().zip(&expected).all(|(a, b)| a == b), "in order");
    let ids: HashSet<_> = log.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), log.len(), "no id twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_to_an_offline_peer_arrive_once_in_order() {
    let root = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(&root.path().join("pb"));
    let args = phonebook_args(&pb);
    // Bob registers once, so that his name is bound, then goes offline. He knows alice: from a
    // stranger, a message request would stop at its quota (100) until he accepts it.
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    bob.add(&alice);
    let bob_id = bob.peer_id.clone();
    bob.quit();

    alice.command(json!({"send_many": {"to": "bob", "prefix": "offline-", "count": 1000}}));
    let mut queued = 0;
    alice.wait(MINUTE, |v| {
        queued += usize::from(v.get("queued").is_some());
        (queued == 1000).then_some(())
    });

    let started = std::time::Instant::now();
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    assert_eq!(bob.peer_id, bob_id);
    let mut received = 0;
    bob.wait(MINUTE, |v| {
        received += usize::from(v.get("received").is_some());
        (received == 1000).then_some(())
    });
    println!("1000 queued messages delivered {:?} after bob started", started.elapsed());
    let mut delivered = 0;
    alice.wait(MINUTE, |v| {
        delivered += usize::from(v["status"]["status"] == "delivered");
        (delivered == 1000).then_some(())
    });
    alice.quit();
    bob.quit();
    let (contacts, logs, queued_b) = read_store(&root.path().join("bob")).await;
    assert_eq!(contacts.len(), 1);
    assert_exactly_once_in_order(&logs[0], "offline-", 1000);
    assert!(logs[0].iter().all(|e| e.missing_before == 0 && !e.late));
    assert_eq!(queued_b, 0);
    let (_, logs, queued_a) = read_store(&root.path().join("alice")).await;
    assert_eq!(queued_a, 0, "alice's outbox is empty");
    assert!(logs[0].iter().all(|e| matches!(e.status, tincan_store::Status::Delivered { .. })));
}

/// Bob is killed with SIGKILL at random moments while alice streams to him; in the end every
/// message is in his log exactly once, in order, and alice's outbox is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_recipient_mid_stream_loses_and_duplicates_nothing() {
    const N: usize = 3000;
    const KILLS: usize = 12;
    let root = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(&root.path().join("pb"));
    let args = phonebook_args(&pb);
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    // A contact of bob's, not a stranger held at the message-request quota.
    bob.add(&alice);
    // About 12 s of traffic: each kill lands while messages flow.
    alice.command(
        json!({"send_many": {"to": "bob", "prefix": "stream-", "count": N, "interval_ms": 4}}),
    );
    let mut seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as u64
            | 1;
    println!("seed {seed}");
    let mut received_before_kill = Vec::new();
    for _ in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Wait for some traffic, then kill at a random moment within it. Silence for this long
        // means the stream is over: alice had nothing left for him (a kill may also have hit
        // between his storing a message and saying so).
        let traffic = bob.wait_at_most(Duration::from_secs(30), |v| v.get("received").map(|_| ()));
        if traffic.is_none() {
            println!("no traffic left after {} kills", received_before_kill.len());
            break;
        }
        std::thread::sleep(Duration::from_millis(seed % 300));
        let lines = bob.kill();
        received_before_kill.push(lines.iter().filter(|v| v.get("received").is_some()).count());
        bob = Peer::start(&root.path().join("bob"), "bob", &args);
    }
    // Killed while receiving at least a few times, or the test tested nothing.
    assert!(
        received_before_kill.len() >= 4,
        "only {} kills: {received_before_kill:?}",
        received_before_kill.len()
    );
    let mut delivered = HashSet::new();
    alice.wait(Duration::from_secs(180), |v| {
        if v["status"]["status"] == "delivered" {
            delivered.insert(v["status"]["id"].as_str().unwrap().to_owned());
        }
        (delivered.len() == N).then_some(())
    });
    println!(
        "{KILLS} kills of the recipient; it was receiving each time: {received_before_kill:?}"
    );
    alice.quit();
    bob.quit();
    let (_, logs, queued_b) = read_store(&root.path().join("bob")).await;
    assert_exactly_once_in_order(&logs[0], "stream-", N);
    assert_eq!(queued_b, 0);
    let (_, logs, queued_a) = read_store(&root.path().join("alice")).await;
    assert_eq!(queued_a, 0);
    assert!(logs[0].iter().all(|e| matches!(e.status, tincan_store::Status::Delivered { .. })));
}

/// Alice is killed with SIGKILL while queuing, sealing and sending; after her restart
/// everything she had queued arrives exactly once, and nothing failed to open (no message key
/// used twice, no ratchet step lost: `specs/sealed.md` §7.1). With the 12 kills of the
/// recipient above, 20 kills while sealed messages flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sender_mid_send_loses_and_duplicates_nothing() {
    const ROUNDS: usize = 8;
    let root = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(&root.path().join("pb"));
    let args = phonebook_args(&pb);
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut reported = HashSet::new();
    for round in 0..ROUNDS {
        let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
        if round == 0 {
            // A contact of bob's, not a stranger held at the message-request quota.
            bob.add(&alice);
        }
        alice.command(
            json!({"send_many": {"to": "bob", "prefix": format!("r{round}-"), "count": 2000}}),
        );
        let mut n = 0;
        alice.wait(MINUTE, |v| {
            if let Some(q) = v.get("queued") {
                reported.insert(q["id"].as_str().unwrap().to_owned());
                n += 1;
            }
            (n == 300 + round * 120).then_some(())
        });
        for v in alice.kill() {
            if let Some(q) = v.get("queued") {
                reported.insert(q["id"].as_str().unwrap().to_owned());
            }
        }
    }
    // A last life, to deliver what is left.
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        bob.drain();
        alice.drain();
        if std::time::Instant::now() > deadline {
            panic!("alice's outbox did not drain");
        }
        std::thread::sleep(Duration::from_millis(500));
        // Stop alice to read her outbox; start her again if anything is left.
        alice.quit();
        let (_, _, queued) = read_store(&root.path().join("alice")).await;
        if queued == 0 {
            break;
        }
        alice = Peer::start(&root.path().join("alice"), "alice", &args);
        std::thread::sleep(Duration::from_secs(2));
    }
    bob.quit();
    let (_, alice_logs, _) = read_store(&root.path().join("alice")).await;
    let failed: Vec<_> = alice_logs[0]
        .iter()
        .filter(|e| matches!(e.status, tincan_store::Status::Failed { .. }))
        .map(|e| e.status.clone())
        .collect();
    assert!(failed.is_empty(), "messages failed (a seal did not open?): {failed:?}");
    let (_, logs, _) = read_store(&root.path().join("bob")).await;
    let ids: Vec<String> = logs[0].iter().map(|e| e.id.to_string()).collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "nothing shown twice");
    for id in &reported {
        assert!(unique.contains(id), "queued message {id} was lost");
    }
    let seqs: Vec<u64> = logs[0].iter().map(|e| e.seq.get()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order");
    println!(
        "{} messages reported queued across {ROUNDS} kills; {} arrived",
        reported.len(),
        ids.len()
    );
}

/// With the phonebook gone, a contact whose address is known is still reached; one whose
/// address is not waits, queued, until the phonebook and the contact are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phonebook_that_is_down_stops_nothing_that_can_go() {
    let root = tempfile::tempdir().unwrap();
    let pb_dir = root.path().join("pb");
    let pb = Phonebook::start(&pb_dir);
    let args = phonebook_args(&pb);
    let mut bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let carol = Peer::start(&root.path().join("carol"), "carol", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    // Alice pins carol through the phonebook, then carol leaves.
    alice.command(json!({"send": {"to": "carol", "text": "hi carol"}}));
    alice.wait(MINUTE, |v| (v["status"]["status"] == "delivered").then_some(()));
    carol.quit();
    pb.kill();

    alice.add(&bob);
    alice.command(json!({"send": {"to": "bob", "text": "no phonebook needed"}}));
    alice.wait(MINUTE, |v| v.get("queued").map(|_| ()));
    bob.wait(MINUTE, |v| (v["received"]["text"] == "no phonebook needed").then_some(()));
    alice.command(json!({"send": {"to": "carol", "text": "wait for me"}}));
    let id = alice.wait(MINUTE, |v| v["queued"]["id"].as_str().map(str::to_owned));
    std::thread::sleep(Duration::from_secs(3));
    let early: Vec<_> = alice.drain();
    assert!(
        !early
            .iter()
            .any(|v| v["status"]["id"] == id.as_str() && v["status"]["status"] == "delivered")
    );

    // The phonebook comes back, then carol, at a new port: the message goes.
    let pb = Phonebook::start(&pb_dir);
    let args = phonebook_args(&pb);
    let mut carol = Peer::start(&root.path().join("carol"), "carol", &args);
    // Alice's phonebook URL is the old one: give her carol's new address directly.
    alice.add(&carol);
    carol.wait(MINUTE, |v| (v["received"]["text"] == "wait for me").then_some(()));
    alice.wait(MINUTE, |v| {
        (v["status"]["id"] == id.as_str() && v["status"]["status"] == "delivered").then_some(())
    });
}

/// The phonebook shows another key for a pinned contact: nothing is sent, the key change is
/// reported, and delivery resumes only once alice trusts the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_holds_delivery_until_trusted() {
    let root = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(&root.path().join("pb"));
    let args = phonebook_args(&pb);
    let bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    alice.command(json!({"send": {"to": "bob", "text": "first"}}));
    alice.wait(MINUTE, |v| (v["status"]["status"] == "delivered").then_some(()));
    let old_id = bob.peer_id.clone();
    bob.quit();

    // Bob's name goes to a new key: he releases it, and a new install registers it.
    let old = tincan_identity::unlock(
        &root.path().join("bob/identity.key"),
        &tincan_identity::Password::new(PASSWORD.into()),
    )
    .unwrap();
    let client = tincan_phonebook_client::Client::new(&pb.url).unwrap();
    let name = tincan_wire::Username::new("bob").unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let now = tincan_wire::UnixMillis(now.as_millis() as u64);
    client.delete(&old, &name, true, now).await.unwrap();
    let mut bob2 = Peer::start(&root.path().join("bob2"), "bob", &args);
    assert_ne!(bob2.peer_id, old_id);

    alice.command(json!({"send": {"to": "bob", "text": "held"}}));
    let changed = alice.wait(MINUTE, |v| v.get("key_changed").cloned());
    assert_eq!(changed["old"], old_id.as_str());
    assert_eq!(changed["new"], bob2.peer_id.as_str());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !bob2.drain().iter().any(|v| v.get("received").is_some()),
        "nothing sent to the new key"
    );

    alice.command(json!({"trust": "bob"}));
    let got = bob2.wait(MINUTE, |v| v["received"]["text"].as_str().map(str::to_owned));
    assert_eq!(got, "held");
}

/// Lookups the phonebook answered, from its metrics.
async fn lookups(pb: &Phonebook) -> u64 {
    let text = reqwest::get(format!("{}/metrics", pb.url)).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("tincan_phonebook_lookups_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Issue 10: a contact dies without taking its record down while messages wait for it. The
/// sender used to loop dial → fail → lookup → "online" → dial: about 4,500 lookups a second.
/// Now only news (a newer record, new addresses) cuts the backoff short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_a_dead_peer_is_not_looked_up_in_a_storm() {
    let root = tempfile::tempdir().unwrap();
    // A long presence: the dead peer's record says online for the whole test.
    let pb = Phonebook::start_with(&root.path().join("pb"), &["--presence-ttl", "300"]);
    let args = phonebook_args(&pb);
    let bob = Peer::start(&root.path().join("bob"), "bob", &args);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &args);
    alice.command(json!({"send": {"to": "bob", "text": "first"}}));
    alice.wait(MINUTE, |v| (v["status"]["status"] == "delivered").then_some(()));
    bob.kill();
    alice.command(json!({"send": {"to": "bob", "text": "waits for a dead peer"}}));
    alice.wait(MINUTE, |v| v.get("queued").map(|_| ()));
    let before = lookups(&pb).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during = lookups(&pb).await - before;
    println!("lookups of a dead peer in 30 s: {during}");
    assert!(during <= 7, "{during} lookups in 30 s: at most one per 5 s");
    assert!(during >= 1, "it still looks: the peer may come back elsewhere");
}

/// Issue 10: a stranger's messages wait for the user's decision, within limits. Past 100 per
/// request, the recipient refuses them as `quota` (temporary): they stay queued at the sender,
/// nothing is lost, and they flow once the request is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_a_stranger_cannot_fill_the_disk_and_nothing_is_lost() {
    let root = tempfile::tempdir().unwrap();
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &[]);
    let mut mallory = Peer::start(&root.path().join("mallory"), "mallory", &[]);
    mallory.add(&alice);
    mallory.command(json!({"send_many": {"to": "alice", "prefix": "spam ", "count": 150}}));
    let mut received = HashSet::new();
    while received.len() < 100 {
        let text = alice.wait(MINUTE, |v| v["received"]["text"].as_str().map(str::to_owned));
        received.insert(text);
    }
    // The rest is refused for now: nothing more is stored, however long mallory tries.
    std::thread::sleep(Duration::from_secs(4));
    let late: Vec<_> = alice.drain().into_iter().filter(|v| v.get("received").is_some()).collect();
    assert!(late.is_empty(), "a request held more than 100 messages: {late:?}");
    let statuses = mallory.drain();
    assert!(
        !statuses.iter().any(|v| v["status"]["status"] == "failed"),
        "a temporary refusal must not fail messages"
    );
    // alice accepts: the other 50 arrive, each once.
    alice.command(json!({"accept": "mallory"}));
    while received.len() < 150 {
        let text = alice.wait(MINUTE, |v| v["received"]["text"].as_str().map(str::to_owned));
        assert!(received.insert(text.clone()), "{text} twice");
    }
}

/// Issue 17: a full disk used to break a running node until it was restarted. bob's data is
/// on a 2 MiB tmpfs; alice sends 400 messages of 4,000 bytes; bob fills up and says so; the
/// tmpfs is grown in place; bob, still running, stores the rest, each once, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_17_a_full_disk_recovers_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("bobdisk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tincan-test", disk.to_str().unwrap()])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("!!! SKIPPED: a real full disk needs root to mount a tmpfs");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let mut bob = Peer::start(&disk.join("bob"), "bob", &[]);
    let mut alice = Peer::start(&root.path().join("alice"), "alice", &[]);
    alice.add(&bob);
    // A contact, not a stranger: a message request would stop at its quota long before.
    bob.add(&alice);
    alice.command(json!({"send_many": {"to": "bob", "prefix": "big ", "count": 400, "pad": 4000}}));
    let mut received = HashSet::new();
    let full = loop {
        let v = bob.wait(Duration::from_secs(120), |v| {
            v.get("received").or_else(|| v.get("storage")).cloned().map(|_| v.clone())
        });
        if v["storage"] == "DiskFull" {
            break received.len();
        }
        if let Some(text) = v["received"]["text"].as_str() {
            assert!(received.insert(text.split(' ').take(2).collect::<Vec<_>>().join(" ")));
        }
    };
    println!("bob's disk filled up after {full} messages");
    assert!(full < 400, "the disk must fill up first");
    // Full: nothing more is stored.
    std::thread::sleep(Duration::from_secs(3));
    for v in bob.drain() {
        if let Some(text) = v["received"]["text"].as_str() {
            received.insert(text.split(' ').take(2).collect::<Vec<_>>().join(" "));
        }
    }
    let stalled = received.len();
    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m", disk.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(grown.success());
    let freed = std::time::Instant::now();
    let mut first = None;
    let mut healthy = None;
    while received.len() < 400 {
        let v = bob.wait(Duration::from_secs(120), |v| {
            v.get("received").or_else(|| v.get("storage")).cloned().map(|_| v.clone())
        });
        if v["storage"] == "Ok" {
            healthy.get_or_insert(freed.elapsed());
        }
        if let Some(text) = v["received"]["text"].as_str() {
            first.get_or_insert(freed.elapsed());
            let key = text.split(' ').take(2).collect::<Vec<_>>().join(" ");
            assert!(received.insert(key.clone()), "{key} shown twice");
        }
    }
    let all = freed.elapsed();
    println!(
        "stalled at {stalled}; after space was freed: store healthy in {healthy:?}, first message in {first:?}, all 400 in {all:?}"
    );
    assert!(healthy.is_some(), "bob said the disk is usable again");
}
