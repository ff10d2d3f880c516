//! The real server process over HTTP: every route, every refusal, restarts and races.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tincan_phonebook::{ClientError, SignedDelete};

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

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

// The binding rules, on the embedded file and on PostgreSQL alike.
on_both!(
    register_look_up_list_refresh_and_delete,
    bindings_survive_a_clean_restart_and_a_crash,
    concurrent_registrations_of_one_name_have_one_winner,
    the_list_hides_expired_presence,
    issue_10_sequence_numbers_far_ahead_of_the_clock_are_refused,
    issue_17_a_released_name_refuses_its_old_records,
    issue_12_records_carry_olm_keys_beside_what_version_1_readers_read,
);

async fn register_look_up_list_refresh_and_delete(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    let client = pb.client();
    let alice = identity();
    let view = client
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    assert!(view.online);
    assert_eq!(view.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(view.port, Some(4001));
    assert_eq!(view.endpoints[1].transport, "quic-v1");

    let found = client.lookup(&name("Alice")).await.unwrap().unwrap();
    assert_eq!(found.peer_id, alice.peer_id());
    assert_eq!(found.record.as_ref().unwrap().addrs, addrs());
    assert!(client.lookup(&name("nobody")).await.unwrap().is_none());

    let bob = identity();
    client.register(&bob, &name("bob"), &addrs(), Duration::from_secs(60), now()).await.unwrap();
    let (page, next) = client.online(None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].username.as_str(), "alice");
    let (page, next) = client.online(next.as_ref(), 1).await.unwrap();
    assert_eq!(page[0].username.as_str(), "bob");
    assert_eq!(next, None);

    // Refresh: a later record from the same key.
    let moved = vec!["/ip4/127.0.0.2/tcp/5000".parse().unwrap()];
    let later = common::UnixMillis(now().0 + 10);
    let refreshed = client
        .register(&alice, &name("alice"), &moved, Duration::from_secs(60), later)
        .await
        .unwrap();
    assert_eq!(refreshed.port, Some(5000));

    // Delete: offline, binding kept and proven by the signed deletion.
    client.delete(&alice, &name("alice"), false, common::UnixMillis(now().0 + 20)).await.unwrap();
    let found = client.lookup(&name("alice")).await.unwrap().unwrap();
    assert!(!found.online && found.record.is_none());
    assert_eq!(found.peer_id, alice.peer_id());
    let (page, _) = client.online(None, 10).await.unwrap();
    assert_eq!(page.iter().map(|f| f.username.as_str()).collect::<Vec<_>>(), ["bob"]);
    // Another key still cannot take it...
    let mallory = identity();
    let err = client
        .register(&mallory, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 409, ref code, .. } if code == "name-taken"),
        "{err}"
    );
    // ...until the owner releases it.
    client.delete(&alice, &name("alice"), true, common::UnixMillis(now().0 + 30)).await.unwrap();
    assert!(client.lookup(&name("alice")).await.unwrap().is_none());
    client
        .register(&mallory, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
}

/// Every hostile input gets its own 4xx and stable code. Prints the table for the record.
#[tokio::test]
async fn hostile_inputs_get_the_right_status_and_code() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--presence-ttl", "60"]);
    let owner = identity();
    let (status, _) = post(&pb, "taken", &json!(record(&owner, "taken", 100, 30_000))).await;
    assert_eq!(status, StatusCode::CREATED);

    let valid = |user: &str| serde_json::to_value(record(&identity(), user, 1, 30_000)).unwrap();
    let mut forged = valid("forged");
    forged["addrs"][0] = json!("/ip4/10.6.6.6/tcp/4001");
    let mut too_many = valid("many");
    too_many["addrs"] =
        json!((1..=9).map(|p| format!("/ip4/127.0.0.1/tcp/{p}")).collect::<Vec<_>>());
    let mut extra_field = valid("chatty");
    extra_field["message"] = json!("CANARY-content-must-not-be-accepted");
    let mut bad_peer = valid("badpeer");
    bad_peer["peer_id"] = json!("not-a-peer-id");
    let mut bad_sig = valid("badsig");
    bad_sig["signature"] = json!("zz");

    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        ("forged signature", "forged".into(), forged, 401, "bad-signature"),
        ("another key claims a taken name", "taken".into(), valid("taken"), 409, "name-taken"),
        (
            "replayed sequence number",
            "taken".into(),
            json!(record(&owner, "taken", 100, 30_000)),
            409,
            "stale-seq",
        ),
        (
            "lower sequence number",
            "taken".into(),
            json!(record(&owner, "taken", 99, 30_000)),
            409,
            "stale-seq",
        ),
        (
            "expired record",
            "late".into(),
            json!(record(&identity(), "late", 1, 0)),
            400,
            "record-expired",
        ),
        (
            "record living too long",
            "forever".into(),
            json!(record(&identity(), "forever", 1, 86_400_000)),
            400,
            "ttl-too-long",
        ),
        ("invalid username", "Bad%20Name".into(), valid("badname"), 400, "invalid-username"),
        ("username of 33 characters", "a".repeat(33), valid("a"), 400, "invalid-username"),
        (
            "record for another username",
            "someoneelse".into(),
            valid("me"),
            400,
            "username-mismatch",
        ),
        ("too many addresses", "many".into(), too_many, 400, "too-many-addrs"),
        (
            "unparsable address",
            "addr".into(),
            {
                let mut v = valid("addr");
                v["addrs"][0] = json!("/ip4/0.0.0.0/tcp/1");
                v
            },
            400,
            "invalid-addr",
        ),
        ("a field for message content", "chatty".into(), extra_field, 400, "malformed-json"),
        ("invalid peer id", "badpeer".into(), bad_peer, 400, "invalid-peer-id"),
        ("malformed signature", "badsig".into(), bad_sig, 400, "malformed-signature"),
    ];
    let mut table = Vec::new();
    for (what, user, body, want_status, want_code) in cases {
        let (status, got) = post(&pb, &user, &body).await;
        table.push(format!("{what}: {} {}", status.as_u16(), code(&got)));
        assert_eq!((status.as_u16(), code(&got)), (want_status, want_code), "{what}: {got}");
    }

    // Raw bodies: malformed JSON, oversized, wrong content type.
    let http = reqwest::Client::new();
    let raw = |body: Vec<u8>, content_type: &'static str| {
        http.post(format!("{}/peers/raw", pb.url()))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    // Oversized: the phonebook refuses by the Content-Length, at once, and closes. A client
    // still sending the body may see the connection close before it reads the answer (the
    // answer itself is checked over a raw socket by
    // `issue_17_an_oversized_content_length_is_refused_at_once`); what must never happen is
    // any other answer.
    match raw(vec![b' '; 100 * 1024], "application/json").await {
        Ok(response) => {
            let status = response.status();
            let got: Value = response.json().await.unwrap();
            table.push(format!("oversized body (100 KiB): {} {}", status.as_u16(), code(&got)));
            assert_eq!((status.as_u16(), code(&got)), (413, "body-too-large"), "{got}");
        }
        Err(e) => {
            assert!(e.is_request() && e.status().is_none(), "oversized body: {e:?}");
            table.push("oversized body (100 KiB): closed while the body was sent".into());
        }
    }
    for (what, response, want_status, want_code) in [
        (
            "malformed JSON",
            raw(b"{\"username\": ".to_vec(), "application/json").await.unwrap(),
            400,
            "malformed-json",
        ),
        (
            "not JSON content type",
            raw(b"{}".to_vec(), "text/plain").await.unwrap(),
            415,
            "unsupported-media-type",
        ),
        ("empty body", raw(Vec::new(), "application/json").await.unwrap(), 400, "malformed-json"),
    ] {
        let status = response.status();
        let got: Value = response.json().await.unwrap();
        table.push(format!("{what}: {} {}", status.as_u16(), code(&got)));
        assert_eq!((status.as_u16(), code(&got)), (want_status, want_code), "{what}: {got}");
    }

    // Deletions: by another key, replayed.
    let not_owner = SignedDelete::sign(&identity(), &name("taken"), 500, false);
    let response =
        http.delete(format!("{}/peers/taken", pb.url())).json(&not_owner).send().await.unwrap();
    let (status, got) = (response.status(), response.json::<Value>().await.unwrap());
    table.push(format!("deletion by another key: {} {}", status.as_u16(), code(&got)));
    assert_eq!((status.as_u16(), code(&got)), (403, "not-owner"));
    let stale = SignedDelete::sign(&owner, &name("taken"), 50, false);
    let response =
        http.delete(format!("{}/peers/taken", pb.url())).json(&stale).send().await.unwrap();
    let (status, got) = (response.status(), response.json::<Value>().await.unwrap());
    table.push(format!("replayed deletion: {} {}", status.as_u16(), code(&got)));
    assert_eq!((status.as_u16(), code(&got)), (409, "stale-seq"));
    assert_eq!(got["error"]["current_seq"], 100);

    // Routes and methods that do not exist.
    for (what, response, want_status, want_code) in [
        (
            "unknown route",
            http.get(format!("{}/messages", pb.url())).send().await.unwrap(),
            404,
            "no-such-route",
        ),
        (
            "PUT on a record",
            http.put(format!("{}/peers/taken", pb.url())).send().await.unwrap(),
            405,
            "method-not-allowed",
        ),
        (
            "bad page size",
            http.get(format!("{}/peers/?limit=100000", pb.url())).send().await.unwrap(),
            400,
            "invalid-query",
        ),
    ] {
        let status = response.status();
        let got: Value = response.json().await.unwrap();
        table.push(format!("{what}: {} {}", status.as_u16(), code(&got)));
        assert_eq!((status.as_u16(), code(&got)), (want_status, want_code), "{what}: {got}");
    }
    println!("hostile inputs and the status each got:\n  {}", table.join("\n  "));

    // Nothing of the refused content reached the disk.
    drop(pb);
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(6).any(|w| w == b"CANARY"), "refused content was stored");
    }
}

async fn bindings_survive_a_clean_restart_and_a_crash(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    let alice = identity();
    pb.client()
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    let args = pb.restart_args();
    assert!(pb.stop().success(), "SIGTERM is a clean exit");

    let pb = Phonebook::respawn(dir.path(), args.clone());
    let found = pb.client().lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(found.peer_id, alice.peer_id());
    assert!(found.online, "presence survives a restart until it expires");
    let bob = identity();
    pb.client()
        .register(&bob, &name("bob"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    pb.crash();

    let pb = Phonebook::respawn(dir.path(), args);
    let found = pb.client().lookup(&name("bob")).await.unwrap().unwrap();
    assert_eq!(found.peer_id, bob.peer_id(), "an answered registration survives SIGKILL");
    let err = pb
        .client()
        .register(&identity(), &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await;
    assert!(matches!(err, Err(ClientError::Refused { status: 409, .. })));
}

async fn concurrent_registrations_of_one_name_have_one_winner(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    for round in 0..5 {
        let user = format!("race{round}");
        let mut tasks = Vec::new();
        for _ in 0..24 {
            let (client, user) = (pb.client(), user.clone());
            tasks.push(tokio::spawn(async move {
                let id = identity();
                let result = client
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
        assert_eq!(winners.len(), 1, "round {round}: exactly one registration wins");
        let found = pb.client().lookup(&name(&user)).await.unwrap().unwrap();
        assert_eq!(found.peer_id, winners[0]);
    }
}

async fn the_list_hides_expired_presence(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &["--presence-ttl", "5"]);
    let client = pb.client();
    let short = identity();
    let (status, _) = post(&pb, "brief", &json!(record(&short, "brief", 1, 1_500))).await;
    assert_eq!(status, StatusCode::CREATED);
    client
        .register(&identity(), &name("steady"), &addrs(), Duration::from_secs(5), now())
        .await
        .unwrap();
    let listed = |page: &[tincan_phonebook::Found]| {
        page.iter().map(|f| f.username.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(listed(&client.online(None, 10).await.unwrap().0), ["brief", "steady"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = client.online(None, 10).await.unwrap().0;
        if listed(&page) == ["steady"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired presence still listed: {:?}",
            listed(&page)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = client.lookup(&name("brief")).await.unwrap().unwrap();
    assert!(!found.online && found.record.is_some(), "the signed record stays available, offline");
}

#[tokio::test]
async fn writes_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--writes-per-minute=6", "--write-burst", "2"]);
    let id = identity();
    for seq in 1..=2 {
        let (status, _) = post(&pb, "busy", &json!(record(&id, "busy", seq, 30_000))).await;
        assert!(status.is_success());
    }
    let response = reqwest::Client::new()
        .post(format!("{}/peers/busy", pb.url()))
        .json(&record(&id, "busy", 3, 30_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    assert_eq!(code(&response.json::<Value>().await.unwrap()), "rate-limited");
    // Reads are not limited.
    for _ in 0..20 {
        pb.client().lookup(&name("busy")).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn no_directory_means_no_list() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--no-directory"]);
    let err = pb.client().online(None, 10).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Refused { status: 404, ref code, .. } if code == "directory-disabled"),
        "{err}"
    );
    assert!(!pb.client().info().await.unwrap().directory);
}

/// A client that sends headers one byte at a time gets cut off at the header timeout.
#[tokio::test]
async fn slowloris_gets_nowhere() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--header-timeout", "1"]);
    let mut stream = tokio::net::TcpStream::connect(pb.addr).await.unwrap();
    let started = std::time::Instant::now();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut closed = false;
    for byte in request.iter().chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()) {
        if stream.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !closed {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn the_relay_is_announced_and_keeps_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Phonebook::start(dir.path(), &[]);
    assert_eq!(plain.client().relay().await.unwrap(), None, "no relay without --relay");
    let raw = reqwest::get(format!("{}/relay", plain.url())).await.unwrap();
    assert_eq!(raw.status(), StatusCode::NOT_FOUND);
    assert_eq!(code(&raw.json().await.unwrap()), "no-relay");
    assert_eq!(plain.client().relays().await.unwrap(), vec![], "an empty list, not an error");
    drop(plain);

    let flags =
        ["--relay", "--relay-listen", "/ip4/127.0.0.1/tcp/0", "--relay-max-circuits-per-peer", "3"];
    let pb = Phonebook::start(dir.path(), &flags);
    let info = pb.client().relay().await.unwrap().expect("a relay");
    assert_eq!(info.addrs.len(), 1);
    assert!(info.addrs[0].starts_with("/ip4/127.0.0.1/tcp/"), "{info:?}");
    assert!(info.addrs[0].ends_with(&format!("/p2p/{}", info.peer_id)), "{info:?}");
    assert_eq!((info.max_circuit_secs, info.max_circuit_bytes), (1800, 16 << 20));
    assert_eq!((info.max_circuits_per_peer, info.max_reservations_per_peer), (3, 2));
    assert_eq!(pb.client().relays().await.unwrap(), vec![info.clone()], "GET /relays: its own");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("relay.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(pb);

    // The relay's PeerId survives a restart, so relayed addresses in records stay valid.
    let again = Phonebook::start(dir.path(), &flags);
    assert_eq!(again.client().relay().await.unwrap().unwrap().peer_id, info.peer_id);
}

#[tokio::test]
async fn health_info_metrics_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--presence-ttl", "120"]);
    let http = reqwest::Client::new();
    let health: Value =
        http.get(format!("{}/healthz", pb.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let info = pb.client().info().await.unwrap();
    assert_eq!((info.presence_ttl_secs, info.max_addrs), (120, 8));
    pb.client()
        .register(&identity(), &name("metered"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    let _ = post(&pb, "metered", &json!({"nonsense": true})).await;
    let metrics =
        http.get(format!("{}/metrics", pb.url())).send().await.unwrap().text().await.unwrap();
    for line in [
        "tincan_phonebook_registrations_total{kind=\"created\"} 1",
        "tincan_phonebook_rejections_total{code=\"malformed-json\"} 1",
        "tincan_phonebook_bindings 1",
        "tincan_phonebook_online 1",
        "tincan_phonebook_requests_total{route=\"/peers/{username}\",status=\"201\"} 1",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }

    // Every documented operation exists, and every route is documented.
    let doc: Value =
        http.get(format!("{}/openapi.json", pb.url())).send().await.unwrap().json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let url = format!("{}{}", pb.url(), path.replace("{username}", "metered"));
            let response =
                http.request(method.to_uppercase().parse().unwrap(), url).send().await.unwrap();
            let status = response.status();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                let body: Value = response.json().await.unwrap();
                assert_ne!(
                    code(&body),
                    "no-such-route",
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
    documented.sort();
    assert_eq!(
        documented,
        [
            "DELETE /peers/{username}",
            "GET /healthz",
            "GET /info",
            "GET /metrics",
            "GET /openapi.json",
            "GET /peers/",
            "GET /peers/{username}",
            "GET /relay",
            "GET /relays",
            "POST /peers/{username}",
        ]
    );
}

/// Issue 10: sequence numbers are bounded by time, so a record signed at `u64::MAX` (which a
/// malicious phonebook could collect and pass on) cannot freeze a name.
async fn issue_10_sequence_numbers_far_ahead_of_the_clock_are_refused(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    let alice = identity();
    for seq in [u64::MAX, now().0 + 10 * 60_000] {
        let (status, body) = post(&pb, "alice", &json!(record(&alice, "alice", seq, 30_000))).await;
        assert_eq!((status.as_u16(), code(&body)), (400, "seq-in-future"), "seq {seq}");
    }
    // Within the skew (120 s by default) is a clock slightly ahead: accepted.
    let ahead = now().0 + 60_000;
    let (status, _) = post(&pb, "alice", &json!(record(&alice, "alice", ahead, 30_000))).await;
    assert_eq!(status, StatusCode::CREATED);
    let deletion = SignedDelete::sign(&alice, &name("alice"), u64::MAX, false);
    let response = reqwest::Client::new()
        .delete(format!("{}/peers/alice", pb.url()))
        .json(&deletion)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(code(&body), "seq-in-future");
    // The record signed a minute ahead is still the newest: our clock is behind it now, and
    // the client says so instead of signing above what the phonebook claims.
    let err = pb
        .client()
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(30), now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("clock"), "{err}");
}

/// Issue 17: releasing a name keeps its highest sequence number, so the old record, which any
/// lookup served publicly, cannot bind it again at old addresses.
async fn issue_17_a_released_name_refuses_its_old_records(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    let alice = identity();
    let s = now().0;
    let old = record(&alice, "alice", s, 60_000);
    assert_eq!(post(&pb, "alice", &json!(old)).await.0, StatusCode::CREATED);
    let release = SignedDelete::sign(&alice, &name("alice"), s + 5, true);
    let response = reqwest::Client::new()
        .delete(format!("{}/peers/alice", pb.url()))
        .json(&release)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "released");
    assert!(pb.client().lookup(&name("alice")).await.unwrap().is_none(), "released");
    // The replay of the old record is refused, across a restart too.
    let (status, body) = post(&pb, "alice", &json!(old)).await;
    assert_eq!((status.as_u16(), code(&body)), (409, "stale-seq"));
    let args = pb.restart_args();
    pb.stop();
    let pb = Phonebook::respawn(dir.path(), args);
    let (status, body) = post(&pb, "alice", &json!(old)).await;
    assert_eq!((status.as_u16(), code(&body)), (409, "stale-seq"), "after a restart");
    // The name is free: anyone may register it with a fresh record.
    let bob = identity();
    let fresh = record(&bob, "alice", now().0 + 10, 60_000);
    assert_eq!(post(&pb, "alice", &json!(fresh)).await.0, StatusCode::CREATED);
    let found = pb.client().lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(found.peer_id, bob.peer_id());
}

/// Issue 17: a body announced over the limit is refused at once, not after the timeout.
#[tokio::test]
async fn issue_17_an_oversized_content_length_is_refused_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &[]);
    let mut stream = tokio::net::TcpStream::connect(pb.addr).await.unwrap();
    let started = std::time::Instant::now();
    stream
        .write_all(
            b"POST /peers/alice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer before the request timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body-too-large"), "{answer}");
    // The body was not read, so the connection cannot carry another request: the answer says
    // so, or a client that pools connections sends its next request into a closing socket.
    assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

/// Issue 10: 500 half-open connections from one address leave the other addresses served.
/// Before the per-address cap, lookups succeeded 13% of the time under this attack.
#[tokio::test]
async fn issue_10_one_address_cannot_take_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(dir.path(), &["--max-connections", "256"]);
    let alice = identity();
    pb.client()
        .register(&alice, &name("alice"), &addrs(), Duration::from_secs(60), now())
        .await
        .unwrap();
    // The attacker, from 127.0.0.1: connections that never send a request.
    let mut held = Vec::new();
    for _ in 0..500 {
        if let Ok(stream) = tokio::net::TcpStream::connect(pb.addr).await {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Everyone else, from 127.0.0.2.
    let target = format!("http://{}/peers/alice", pb.addr);
    let mut ok = 0;
    for _ in 0..100 {
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap();
        if let Ok(response) = client.get(&target).send().await
            && response.status() == StatusCode::OK
        {
            ok += 1;
        }
    }
    println!("lookups from another address under the flood: {ok}/100");
    assert_eq!(ok, 100, "the flood from one address took slots from others");
    drop(held);
}

/// Issue 10: behind a trusted proxy, the client is the last entry of the last
/// `X-Forwarded-For` line, the one the proxy added; what the client wrote before it is ignored.
#[tokio::test]
async fn issue_10_the_proxy_entry_of_x_forwarded_for_decides() {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start(
        dir.path(),
        &["--writes-per-minute=1", "--write-burst", "1", "--trust-forwarded-for"],
    );
    let post_as = |lines: Vec<&'static str>, seq: u64| {
        let url = format!("{}/peers/alice", pb.url());
        let id = identity();
        async move {
            let mut request =
                reqwest::Client::new().post(url).json(&record(&id, "alice", seq, 30_000));
            for line in lines {
                request = request.header("x-forwarded-for", line);
            }
            request.send().await.unwrap().status()
        }
    };
    // The client forges the first line and the first entries; the proxy's entry is last.
    assert_ne!(post_as(vec!["6.6.6.1", "198.51.100.7"], 1).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        post_as(vec!["6.6.6.2", "6.6.6.3, 198.51.100.7"], 2).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the same client behind other forged entries"
    );
    assert_ne!(
        post_as(vec!["198.51.100.7", "198.51.100.8"], 3).await,
        StatusCode::TOO_MANY_REQUESTS,
        "another client, whatever the first line says"
    );
}

/// Record version 2 (`specs/phonebook.md` §2.5): the signed Olm keys are kept with the record,
/// across restarts, served beside it (a version-1 reader, which refuses unknown fields, still
/// reads the record and verifies its signature), and refused when they are not the record's
/// identity's or not a keys record at all.
async fn issue_12_records_carry_olm_keys_beside_what_version_1_readers_read(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let pb = Phonebook::start_on(&backend, dir.path(), &[]);
    let client = pb.client();
    assert!(client.info().await.unwrap().olm_keys, "/info says records may carry keys");
    let alice = identity();
    let keys = tincan_seal::Account::generate(&alice).keys().encode();
    let ttl = Duration::from_secs(60);
    let view = client
        .register_with_keys(&alice, &name("alice"), &addrs(), Some(&keys[..]), ttl, now())
        .await
        .unwrap();
    assert_eq!(view.olm_keys, Some(hex::encode(&keys)));

    let raw: Value =
        reqwest::get(format!("{}/peers/alice", pb.url())).await.unwrap().json().await.unwrap();
    let mut fields: Vec<&str> =
        raw["record"].as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["addrs", "expires_at", "peer_id", "seq", "signature", "username"]);
    assert_eq!(raw["olm_keys"], json!(hex::encode(&keys)));
    let found = client.lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(found.record.as_ref().unwrap().olm_keys.as_deref(), Some(&keys[..]));

    // A refresh without keys (a version-1 writer) serves none.
    let later = common::UnixMillis(now().0 + 10);
    let view = client.register(&alice, &name("alice"), &addrs(), ttl, later).await.unwrap();
    assert_eq!(view.olm_keys, None);
    let later = common::UnixMillis(now().0 + 20);
    let with_keys = Some(&keys[..]);
    client
        .register_with_keys(&alice, &name("alice"), &addrs(), with_keys, ttl, later)
        .await
        .unwrap();

    // Hostile keys: another identity's, a flipped bit, not hex, too long, not a record.
    let mallory = identity();
    let theirs = tincan_seal::Account::generate(&mallory).keys().encode();
    let mut flipped = keys.clone();
    flipped[40] ^= 1;
    let seq = now().0 + 30;
    for (what, olm_keys) in [
        ("another identity's keys", hex::encode(&theirs)),
        ("a flipped bit", hex::encode(&flipped)),
        ("not hex", "zz".repeat(100)),
        ("too long", "00".repeat(257)),
        ("not a keys record", "a0".into()),
    ] {
        let mut body = record(&alice, "alice", seq, 30_000);
        body.olm_keys = Some(olm_keys);
        let (status, answer) = post(&pb, "alice", &json!(body)).await;
        assert_eq!((status, code(&answer)), (StatusCode::BAD_REQUEST, "invalid-keys"), "{what}");
    }
    let found = client.lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(
        found.record.unwrap().olm_keys.as_deref(),
        Some(&keys[..]),
        "nothing refused was kept"
    );

    // Kept across a restart; a deletion takes the keys down with the record.
    let args = pb.restart_args();
    assert!(pb.stop().success());
    let pb = Phonebook::respawn(dir.path(), args);
    let client = pb.client();
    let found = client.lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(found.record.unwrap().olm_keys.as_deref(), Some(&keys[..]));
    client.delete(&alice, &name("alice"), false, common::UnixMillis(now().0 + 40)).await.unwrap();
    let raw: Value =
        reqwest::get(format!("{}/peers/alice", pb.url())).await.unwrap().json().await.unwrap();
    assert!(raw.get("olm_keys").is_none(), "{raw}");
}
