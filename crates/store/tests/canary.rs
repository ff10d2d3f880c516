//! Nothing the user wrote, and nobody they talk to, can be found in the raw database file.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

use common::*;
use tincan_store::*;
use tincan_wire::PeerIdBytes;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_file_holds_no_text_usernames_or_peer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.redb");
    let store = Store::create(&path, &root()).unwrap();
    let markers: Vec<String> = (0..20).map(|i| format!("CANARY{i:02}zqxj")).collect();
    let usernames = ["canaryalice", "canarybob", "canarycarol"];
    let peers: Vec<PeerIdBytes> = (0..3u8)
        .map(|i| {
            PeerIdBytes::new(&[[0, 36, 8, 1, 18, 32].as_slice(), &[0xc0 + i; 32]].concat()).unwrap()
        })
        .collect();
    let mut convs = Vec::new();
    for (name_, peer_) in usernames.iter().zip(&peers) {
        convs.push(
            store
                .add_contact(name(name_), peer_.clone(), UnixMillis(1))
                .await
                .unwrap()
                .conversation,
        );
    }
    let request =
        store.add_request(peer(9), name("canaryrequester"), UnixMillis(2), 64).await.unwrap();
    for (i, marker) in markers.iter().enumerate() {
        let conv = convs[i % convs.len()];
        store
            .enqueue(conv, text(&format!("secret {marker} plans")), UnixMillis(i as u64))
            .await
            .unwrap();
        let mut msg = incoming(i as u8, i as u64 + 1, &format!("reply {marker}"));
        msg.from = name("canarybob");
        store
            .receive(conv, vec![msg], UnixMillis(i as u64), RequestLimits::default())
            .await
            .unwrap();
    }
    store.set_addrs(convs[0], vec!["/ip4/203.0.113.7/tcp/4001".into()]).await.unwrap();
    store.set_setting("canarysetting", b"CANARYSETTINGVALUE".to_vec()).await.unwrap();
    let exported = store.export(None).await.unwrap().to_string();
    store.close().await;
    assert!(exported.contains(&markers[0]), "the export does show the text");
    let _ = request;

    let raw = std::fs::read(&path).unwrap();
    for marker in &markers {
        assert!(!contains(&raw, marker.as_bytes()), "{marker} found in the file");
    }
    for needle in
        usernames.iter().chain(&["canaryrequester", "canary", "CANARYSETTINGVALUE", "203.0.113.7"])
    {
        assert!(!contains(&raw, needle.as_bytes()), "{needle} found in the file");
    }
    for p in &peers {
        assert!(!contains(&raw, &p.as_bytes()[6..]), "a public key found in the file");
        let base58 = bs58_like(p.as_bytes());
        assert!(!contains(&raw, base58.as_bytes()), "a PeerId found in the file");
    }
}

/// The PeerId's printed form, as the export shows it.
fn bs58_like(bytes: &[u8]) -> String {
    serde_json::to_value(PeerIdBytes::new(bytes).unwrap()).unwrap().as_str().unwrap().to_owned()
}
