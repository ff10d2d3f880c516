//! Phonebook instances over one real PostgreSQL server (started by the test from the
//! distribution's binaries): races between instances, an instance killed, the database
//! restarted under load, schema versions. Skipped loudly where PostgreSQL is not installed.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::postgres::Postgres;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tincan_phonebook::ClientError;

fn server() -> Option<Postgres> {
    match Postgres::start() {
        Ok(pg) => Some(pg),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI installs PostgreSQL, but it cannot run: {why}")
        }
        Err(why) => {
            eprintln!("!!! SKIPPED: {why}");
            None
        }
    }
}

/// Two instances over one database, each with its own (unused) data directory.
fn two(url: &str, extra: &[&str]) -> (Phonebook, Phonebook, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--database", url];
    args.extend_from_slice(extra);
    let a = Phonebook::start(&dir.path().join("a"), &args);
    let b = Phonebook::start(&dir.path().join("b"), &args);
    (a, b, dir)
}

async fn post(pb: &Phonebook, user: &str, body: &Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/peers/{user}", pb.url()))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code(body: &Value) -> String {
    body["error"]["code"].as_str().unwrap_or("<none>").to_owned()
}

#[tokio::test]
async fn two_instances_race_for_names_and_one_wins_each() {
    let Some(pg) = server() else { return };
    let (a, b, _dir) = two(&pg.database(), &[]);
    let (a, b) = (Arc::new(a), Arc::new(b));
    for round in 0..10 {
        let user = format!("race{round}");
        let mut tasks = Vec::new();
        for i in 0..16 {
            let pb = if i % 2 == 0 { a.clone() } else { b.clone() };
            let user = user.clone();
            tasks.push(tokio::spawn(async move {
                let id = identity();
                let result = pb
                    .client()
                    .register(&id, &name(&user), &addrs(), Duration::from_secs(60), now())
                    .await;
                (id.peer_id(), result)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                (peer, Ok(_)) => winners.push(peer),
                (_, Err(ClientError::Refused { status: 409, code, .. })) => {
                    assert_eq!(code, "name-taken")
                }
                (_, Err(e)) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: one registration wins across instances");
        for pb in [&a, &b] {
            let found = pb.client().lookup(&name(&user)).await.unwrap().unwrap();
            assert_eq!(found.peer_id, winners[0], "both instances see the winner");
        }
    }
}

#[tokio::test]
async fn updates_through_both_instances_never_go_back() {
    let Some(pg) = server() else { return };
    let (a, b, _dir) = two(&pg.database(), &[]);
    let alice = identity();
    let s = now().0;
    // Alternating, in order: each instance takes the next.
    for i in 0..10u64 {
        let pb = if i % 2 == 0 { &a } else { &b };
        let (status, body) =
            post(pb, "alice", &json!(record(&alice, "alice", s + i, 60_000))).await;
        assert!(status.is_success(), "update {i}: {status} {body}");
    }
    // Out of order: the newer reaches one instance first, the older the other after it.
    let (status, _) = post(&a, "alice", &json!(record(&alice, "alice", s + 20, 60_000))).await;
    assert!(status.is_success());
    let (status, body) = post(&b, "alice", &json!(record(&alice, "alice", s + 15, 60_000))).await;
    assert_eq!((status.as_u16(), code(&body)), (409, "stale-seq".to_owned()));
    assert_eq!(body["error"]["current_seq"], json!(s + 20), "{body}");
    for pb in [&a, &b] {
        let found = pb.client().lookup(&name("alice")).await.unwrap().unwrap();
        assert_eq!(found.record.unwrap().seq, s + 20);
    }
    // Racing updates of one record: whatever order they land in, the newest stays.
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let pb_url = if i % 2 == 0 { a.url() } else { b.url() };
        let body = json!(record(&alice, "alice", s + 100 + i, 60_000));
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{pb_url}/peers/alice"))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(status.is_success() || status == StatusCode::CONFLICT, "{status}");
    }
    for pb in [&a, &b] {
        let found = pb.client().lookup(&name("alice")).await.unwrap().unwrap();
        assert_eq!(found.record.unwrap().seq, s + 119, "the newest record wins");
    }
}

#[tokio::test]
async fn expiry_and_release_are_seen_by_both_instances() {
    let Some(pg) = server() else { return };
    let (a, b, _dir) = two(&pg.database(), &["--presence-ttl", "5"]);
    let short = identity();
    let (status, _) = post(&a, "brief", &json!(record(&short, "brief", now().0, 1_500))).await;
    assert_eq!(status, StatusCode::CREATED);
    let listed = |page: Vec<tincan_phonebook::Found>| {
        page.iter().map(|f| f.username.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(listed(b.client().online(None, 10).await.unwrap().0), ["brief"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    for pb in [&a, &b] {
        loop {
            let page = listed(pb.client().online(None, 10).await.unwrap().0);
            if page.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "expired presence still listed: {page:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let found = pb.client().lookup(&name("brief")).await.unwrap().unwrap();
        assert!(!found.online && found.record.is_some());
    }
    // Released through one instance: free through the other, and the old record refused.
    let old = record(&short, "brief", now().0 + 1, 60_000);
    assert_eq!(post(&a, "brief", &json!(old)).await.0, StatusCode::OK);
    b.client()
        .delete(&short, &name("brief"), true, common::UnixMillis(now().0 + 10))
        .await
        .unwrap();
    assert!(a.client().lookup(&name("brief")).await.unwrap().is_none());
    let (status, body) = post(&a, "brief", &json!(old)).await;
    assert_eq!((status.as_u16(), code(&body)), (409, "stale-seq".to_owned()));
    let taker = identity();
    a.client()
        .register(
            &taker,
            &name("brief"),
            &addrs(),
            Duration::from_secs(5),
            common::UnixMillis(now().0 + 20),
        )
        .await
        .unwrap();
    assert_eq!(b.client().lookup(&name("brief")).await.unwrap().unwrap().peer_id, taker.peer_id());
}

#[tokio::test]
async fn an_instance_killed_during_registrations_loses_nothing_it_answered() {
    let Some(pg) = server() else { return };
    let (a, b, _dir) = two(&pg.database(), &[]);
    let url = a.url();
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (url, answered) = (url.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            let client = tincan_phonebook::Client::new(&url).unwrap();
            for i in 0.. {
                let (id, user) = (identity(), format!("w{worker}u{i}"));
                match client
                    .register(&id, &name(&user), &addrs(), Duration::from_secs(60), now())
                    .await
                {
                    Ok(_) => answered.lock().unwrap().push((user, id.peer_id())),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill it while the registrations flow.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "registrations did not flow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.crash();
    for task in tasks {
        task.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let client = b.client();
    for (user, peer) in &answered {
        let found = client.lookup(&name(user)).await.unwrap();
        assert_eq!(found.map(|f| f.peer_id), Some(*peer), "{user} was answered, then lost");
    }
    // The other instance keeps serving.
    client
        .register(&identity(), &name("after"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    println!(
        "{} registrations answered before the SIGKILL, all found through the other instance",
        answered.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_restarted_under_load_gives_503s_then_recovers() {
    let Some(mut pg) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let url = pg.database();
    let pb = Phonebook::start(dir.path(), &["--database", &url]);
    let alice = identity();
    let client = pb.client();
    client
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    // Load: lookups and registrations, all the time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<(Instant, u16, String)>::new()));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (pb_url, stop, seen) = (pb.url(), stop.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let response = if i % 2 == 0 {
                    http.get(format!("{pb_url}/peers/alice")).send().await
                } else {
                    let user = format!("l{worker}n{i}");
                    let body = json!(record(&identity(), &user, now().0, 60_000));
                    http.post(format!("{pb_url}/peers/{user}")).json(&body).send().await
                };
                let response = response.expect("the phonebook itself stays up");
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                seen.lock().unwrap().push((Instant::now(), status, code(&body)));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Instant::now();
    tokio::task::block_in_place(|| pg.stop());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = Instant::now();
    tokio::task::block_in_place(|| pg.restart());
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    // While it was away: clear 503s with their code, and nothing else but successes.
    let away: Vec<_> = seen
        .iter()
        .filter(|(t, ..)| *t > stopped + Duration::from_millis(500) && *t < restarted)
        .collect();
    assert!(!away.is_empty(), "requests were answered while the database was away");
    for (_, status, code) in &away {
        assert!(*status == 503 && code == "storage-unavailable", "while away: {status} {code}");
    }
    for (_, status, code) in &seen {
        assert!(matches!(status, 200 | 201 | 503), "only successes and 503s: {status} {code}");
    }
    // Back by itself: the last seconds are all successes.
    let recovered: Vec<_> =
        seen.iter().filter(|(t, ..)| *t > restarted + Duration::from_secs(6)).collect();
    assert!(!recovered.is_empty(), "requests after the restart");
    for (_, status, code) in &recovered {
        assert!(matches!(status, 200 | 201), "after the restart: {status} {code}");
    }
    let first_ok =
        seen.iter().find(|(t, s, _)| *t > restarted && *s < 300).map(|(t, ..)| *t - restarted);
    println!("503s while away: {}; first success {first_ok:?} after the restart", away.len());
    assert!(client.lookup(&name("alice")).await.unwrap().is_some(), "nothing committed was lost");
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_an_empty_database_is_migrated() {
    let Some(pg) = server() else { return };
    let url = pg.database();
    let dir = tempfile::tempdir().unwrap();
    // Two instances starting at once on an empty database: both come up, migrated once.
    let (a, b, _d) = two(&url, &[]);
    a.client()
        .register(&identity(), &name("carol"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    assert!(b.client().lookup(&name("carol")).await.unwrap().is_some());
    drop((a, b));
    assert_eq!(pg.sql(&url, "SELECT version FROM tincan_schema").trim(), "2", "migrated to 2");
    pg.sql(&url, "UPDATE tincan_schema SET version = 99");
    let out = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--database", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("version 99") && stderr.contains("newer"), "{stderr}");
    // A database that is not there: a clear error, and no password in it.
    let out = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("TINCAN_PHONEBOOK_DATABASE", "postgres://tincan:hunter2secret@127.0.0.1:1/pb")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database"), "{stderr}");
    assert!(!stderr.contains("hunter2secret"), "the password leaked: {stderr}");
    let help = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
        .arg("--help")
        .env("TINCAN_PHONEBOOK_DATABASE", "postgres://tincan:hunter2secret@127.0.0.1:1/pb")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--database") && !help.contains("hunter2secret"), "{help}");
}

#[tokio::test]
async fn every_instance_lists_every_live_relay_its_own_first() {
    let Some(pg) = server() else { return };
    let url = pg.database();
    let relay = ["--relay", "--relay-listen", "/ip4/127.0.0.1/tcp/0"];
    let (a, b, _dir) = two(&url, &relay);
    let (own_a, own_b) =
        (a.client().relay().await.unwrap().unwrap(), b.client().relay().await.unwrap().unwrap());
    assert_ne!(own_a.peer_id, own_b.peer_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (la, lb) = (a.client().relays().await.unwrap(), b.client().relays().await.unwrap());
        if la.len() == 2 && lb.len() == 2 {
            assert_eq!((&la[0], &la[1]), (&own_a, &own_b));
            assert_eq!((&lb[0], &lb[1]), (&own_b, &own_a));
            break;
        }
        assert!(Instant::now() < deadline, "both relays listed: {la:?} {lb:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A clean stop withdraws it at once; a plain instance lists the rest.
    assert!(b.stop().success());
    assert_eq!(a.client().relays().await.unwrap(), vec![own_a.clone()]);
    let dir = tempfile::tempdir().unwrap();
    let plain = Phonebook::start(dir.path(), &["--database", &url]);
    assert_eq!(plain.client().relays().await.unwrap(), vec![own_a.clone()]);
    assert_eq!(plain.client().relay().await.unwrap(), Some(own_a));
}

/// Lookups in flight together share queries: each still gets its own name's answer, a name
/// asked twice in one batch both times, and a name nobody holds its 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_that_share_a_query_each_get_their_own_answer() {
    let Some(pg) = server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--database", &pg.database()]);
    let mut owners = Vec::new();
    for i in 0..40 {
        let id = identity();
        pb.client()
            .register(&id, &name(&format!("held{i}")), &addrs(), Duration::from_secs(60), now())
            .await
            .unwrap();
        owners.push(id.peer_id());
    }
    let owners = Arc::new(owners);
    let mut tasks = Vec::new();
    for t in 0..400 {
        let (client, owners) = (pb.client(), owners.clone());
        tasks.push(tokio::spawn(async move {
            let i = t % 80;
            let user = if i < 40 { format!("held{i}") } else { format!("free{i}") };
            let found = client.lookup(&name(&user)).await.unwrap();
            match found {
                Some(f) => assert!(i < 40 && f.peer_id == owners[i], "{user} got {}", f.username),
                None => assert!(i >= 40, "{user} is held"),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// `sslmode=require`: the connection is TLS, verified against `--database-ca`; without that
/// CA the same server is refused.
#[tokio::test]
async fn tls_to_the_database_is_verified() {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "tincan test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let pg = match Postgres::start_tls(&server_cert.pem(), &key.serialize_pem()) {
        Ok(pg) => pg,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI installs PostgreSQL: {why}"),
        Err(why) => {
            eprintln!("!!! SKIPPED: {why}");
            return;
        }
    };
    let plain = pg.database();
    let url = plain.replace("sslmode=disable", "sslmode=require");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let refused = Command::new(env!("CARGO_BIN_EXE_tincan-phonebook"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("refused"))
        .args(["--database", &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success(), "a certificate of an unknown CA is refused");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("certificate") || stderr.contains("Certificate"), "{stderr}");

    let pb = Phonebook::start(
        &dir.path().join("pb"),
        &["--database", &url, "--database-ca", ca_file.to_str().unwrap()],
    );
    let alice = identity();
    pb.client()
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    assert_eq!(pb.client().lookup(&name("alice")).await.unwrap().unwrap().peer_id, alice.peer_id());
    let tls = pg.sql(
        &plain,
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE ssl AND application_name = 'tincan-phonebook'",
    );
    assert!(tls.trim().parse::<u32>().unwrap() > 0, "the phonebook's connections are TLS: {tls}");
}
