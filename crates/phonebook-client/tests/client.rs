//! The typed client trusts signatures, not the server: against a lying phonebook it reports
//! forgeries instead of returning them. Also checks the spec vectors.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use axum::Json;
use axum::routing::get;
use common::*;
use serde_json::{Value, json};
use tincan_phonebook_client::{
    Client, ClientError, SignedDelete, SignedRecord, delete_payload, record_payload,
};

/// Serves `answer` for every lookup, as a malicious or broken phonebook would.
async fn lying_phonebook(answer: Value) -> Client {
    let app =
        axum::Router::new().route("/peers/{username}", get(move || async move { Json(answer) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Client::new(&url).unwrap()
}

fn view(record: &SignedRecord) -> Value {
    json!({
        "username": record.username, "peer_id": record.peer_id, "online": true,
        "record": record, "deletion": null, "endpoints": [], "ip": null, "port": null, "last_seen": 0,
    })
}

#[tokio::test]
async fn forged_answers_are_refused() {
    let alice = identity();
    let mallory = identity();
    let honest = record(&alice, "alice", 1, 60_000);

    // Mallory's own valid record, served for alice.
    let mut answer = view(&record(&mallory, "mallory", 1, 60_000));
    answer["username"] = json!("alice");
    let err = lying_phonebook(answer).await.lookup(&name("alice")).await.unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");

    // Alice's record with the addresses changed.
    let mut tampered = honest.clone();
    tampered.addrs = vec!["/ip4/10.6.6.6/tcp/4001".into()];
    let err = lying_phonebook(view(&tampered)).await.lookup(&name("alice")).await.unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");

    // Alice's record, but the answer claims another PeerId.
    let mut answer = view(&honest);
    answer["peer_id"] = json!(mallory.peer_id().to_base58());
    let err = lying_phonebook(answer).await.lookup(&name("alice")).await.unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");

    // No proof at all.
    let mut answer = view(&honest);
    answer["record"] = Value::Null;
    let err = lying_phonebook(answer).await.lookup(&name("alice")).await.unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");

    // The honest answer is accepted.
    let found = lying_phonebook(view(&honest)).await.lookup(&name("alice")).await.unwrap().unwrap();
    assert_eq!(found.peer_id, alice.peer_id());
}

#[test]
fn spec_vectors_verify() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/vectors/phonebook.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let signed: SignedRecord = serde_json::from_value(doc["record"].clone()).unwrap();
    let record = signed.verify().unwrap();
    let payload = record_payload(
        &signed.username,
        &record.peer_id,
        &signed.addrs,
        signed.seq,
        signed.expires_at,
    );
    assert_eq!(hex::encode(payload), doc["record_payload"].as_str().unwrap());
    let deletion: SignedDelete = serde_json::from_value(doc["deletion"].clone()).unwrap();
    let (user, peer) = deletion.verify().unwrap();
    assert_eq!((user.as_str(), peer), ("alice", record.peer_id));
    let payload = delete_payload("alice", &peer, deletion.seq, deletion.release);
    assert_eq!(hex::encode(payload), doc["deletion_payload"].as_str().unwrap());
    let mut forged = signed.clone();
    forged.seq += 1;
    assert!(forged.verify().is_err());

    // Record version 2: the same signature, and the Olm keys signed by the same identity.
    let v2: SignedRecord = serde_json::from_value(doc["record_v2"].clone()).unwrap();
    assert_eq!(v2.without_olm_keys(), signed, "version 2 adds only the keys");
    let keys = hex::decode(v2.olm_keys.as_ref().unwrap()).unwrap();
    assert_eq!(v2.verify().unwrap().olm_keys.as_deref(), Some(&keys[..]));
    let parsed = tincan_seal::SignedOlmKeys::decode(&keys).unwrap();
    let pinned = tincan_identity::PublicKey::from_peer_id(&record.peer_id).unwrap();
    let verified = parsed.verify(&pinned).unwrap();
    assert_eq!(verified.keys().serial, 3);
    assert_eq!(verified.record().encode(), keys, "the vector is deterministic CBOR");
    let view: tincan_phonebook_client::PeerView =
        serde_json::from_value(doc["peer_view_v2"].clone()).unwrap();
    let found = tincan_phonebook_client::verify_view(&name("alice"), &view).unwrap();
    assert_eq!(found.record.unwrap().olm_keys, Some(keys.clone()));
    // Keys not signed by the record's identity make the answer a forgery.
    let mut bad = keys;
    *bad.last_mut().unwrap() ^= 1;
    let mut forged = view.clone();
    forged.olm_keys = Some(hex::encode(bad));
    let err = tincan_phonebook_client::verify_view(&name("alice"), &forged).unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");
    // So do keys well signed, by another identity.
    let mallory = tincan_identity::Identity::generate().unwrap();
    let mut forged = view.clone();
    forged.olm_keys = Some(hex::encode(tincan_seal::Account::generate(&mallory).keys().encode()));
    let err = tincan_phonebook_client::verify_view(&name("alice"), &forged).unwrap_err();
    assert!(matches!(err, ClientError::Forged { .. }), "{err}");
    // Keys inside `record` are not where a server serves them: without the view's, none.
    let mut misplaced = view;
    misplaced.record = Some(v2);
    misplaced.olm_keys = None;
    let found = tincan_phonebook_client::verify_view(&name("alice"), &misplaced).unwrap();
    assert_eq!(found.record.unwrap().olm_keys, None);
}

/// Issue 10: the client never signs a sequence number a phonebook told it. A phonebook that
/// answers `stale-seq` with a huge `current_seq` gets one request, not a record signed above.
#[tokio::test]
async fn issue_10_the_client_never_signs_a_number_the_phonebook_names() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = Arc::new(AtomicU64::new(0));
    let max_seq = Arc::new(AtomicU64::new(0));
    let (s, m) = (seen.clone(), max_seq.clone());
    let app = axum::Router::new().route(
        "/peers/{username}",
        axum::routing::post(move |Json(body): Json<Value>| async move {
            s.fetch_add(1, Ordering::SeqCst);
            m.fetch_max(body["seq"].as_u64().unwrap_or(u64::MAX), Ordering::SeqCst);
            let error = json!({"error": {"code": "stale-seq", "message": "\u{1b}]0;pwned\u{7}older", "current_seq": u64::MAX - 1}});
            (axum::http::StatusCode::CONFLICT, Json(error))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let client = Client::new(&url).unwrap();
    let alice = identity();
    let at = now();
    let err = client
        .register(&alice, &name("alice"), &addrs(), std::time::Duration::from_secs(60), at)
        .await
        .unwrap_err();
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no second, re-signed attempt");
    assert_eq!(max_seq.load(Ordering::SeqCst), at.0, "signed at our own clock");
    assert!(!err.to_string().contains('\u{1b}'), "the phonebook's text is cleaned: {err:?}");
    // Within one millisecond, the next number is still above the last.
    let _ = client
        .register(&alice, &name("alice"), &addrs(), std::time::Duration::from_secs(60), at)
        .await;
    assert_eq!(max_seq.load(Ordering::SeqCst), at.0 + 1);
}

/// Issue 10: an answer is read as it arrives and given up at the limit, whatever its length.
#[tokio::test]
async fn issue_10_a_huge_answer_is_cut_off() {
    let app = axum::Router::new().route(
        "/info",
        get(|| async {
            let chunks =
                futures::stream::iter((0..64).map(|_| {
                    Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 64 << 10]))
                }));
            axum::body::Body::from_stream(chunks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let err = Client::new(&url).unwrap().info().await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidAnswer(_)), "{err}");
    assert!(err.to_string().contains("over"), "{err}");
}
