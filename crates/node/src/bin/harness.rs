//! `tincan-node-harness`: a node driven by JSON lines on stdin, reporting events as JSON lines on
//! stdout. It exists for the node's multi-process tests and benchmark; people use `tincan`.
//!
//! Usage: `tincan-node-harness --dir DIR --name NAME [--listen MULTIADDR]... [--phonebook URL]...
//! [--lookup-interval-ms N] [--relay auto|always|never] [--no-hole-punch] [--probe-ms N]
//! [--request-timeout-ms N] [--olm-rotation-ms N]`. The password of `DIR/identity.key` comes from the environment
//! variable `TINCAN_HARNESS_PASSWORD`; the key file is created (with the OWASP-minimum argon2
//! parameters, to start fast) and the store too, on first run.
//!
//! Commands, one JSON object per line:
//! `{"add": {"username": U, "peer_id": P, "addrs": [A…]}}`,
//! `{"send": {"to": U, "text": T}}` (answers `{"queued": …}` once durable),
//! `{"send_many": {"to": U, "prefix": T, "count": N, "interval_ms": M, "parallel": P}}`,
//! `{"trust": U}`,
//! `{"nat": true}` (answers `{"nat": report}`), `{"path": U}` (answers `{"path": {…}}`),
//! `{"republish": true}`, `{"quit": true}`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use tincan_identity::{KdfParams, Password};
use tincan_node::{Config, Event, NatReport, Node, Reachability, RelayPolicy};
use tincan_store::Store;
use tincan_wire::Username;
use tokio::io::{AsyncBufReadExt, BufReader};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("harness: {e}");
        std::process::exit(1);
    }
}

fn out(value: Value) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{value}");
    let _ = stdout.flush();
}

async fn run() -> Result<(), String> {
    let mut dir = None;
    let mut name = None;
    let mut listen = Vec::new();
    let mut phonebooks = Vec::new();
    let mut lookup = None;
    let mut relay = RelayPolicy::Auto;
    let mut hole_punch = true;
    let mut probe = None;
    let mut request_timeout = None;
    let mut olm_rotation = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--name" => name = Some(Username::new(&value()?).map_err(|e| e.to_string())?),
            "--listen" => listen.push(value()?.parse().map_err(|e| format!("{e}"))?),
            "--phonebook" => phonebooks
                .push(tincan_phonebook_client::Client::new(&value()?).map_err(|e| e.to_string())?),
            "--lookup-interval-ms" => {
                lookup = Some(Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?))
            }
            "--relay" => {
                relay = match value()?.as_str() {
                    "auto" => RelayPolicy::Auto,
                    "always" => RelayPolicy::Always,
                    "never" => RelayPolicy::Never,
                    other => return Err(format!("--relay {other}: auto, always or never")),
                }
            }
            "--no-hole-punch" => hole_punch = false,
            "--probe-ms" => {
                probe = Some(Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?))
            }
            "--request-timeout-ms" => {
                request_timeout =
                    Some(Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?))
            }
            "--olm-rotation-ms" => {
                olm_rotation =
                    Some(Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?))
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    let name = name.ok_or("--name is required")?;
    let password = Password::new(
        std::env::var("TINCAN_HARNESS_PASSWORD")
            .map_err(|_| "TINCAN_HARNESS_PASSWORD is not set")?,
    );
    let key = dir.join("identity.key");
    let store_path = dir.join("store.redb");
    let (identity, store) = if key.exists() {
        let identity = tincan_identity::unlock(&key, &password).map_err(|e| e.to_string())?;
        let store =
            Store::open(&store_path, identity.store_root_key()).map_err(|e| e.to_string())?;
        (identity, store)
    } else {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let params = KdfParams::new(19 * 1024, 2, 1).map_err(|e| e.to_string())?;
        let identity =
            tincan_identity::create_with(&key, &password, params).map_err(|e| e.to_string())?;
        let store =
            Store::create(&store_path, identity.store_root_key()).map_err(|e| e.to_string())?;
        (identity, store)
    };
    let mut config = Config::new(name);
    if !listen.is_empty() {
        config.listen = listen;
    }
    config.phonebooks = phonebooks;
    if let Some(lookup) = lookup {
        config.lookup_interval = lookup;
    }
    if let Some(timeout) = request_timeout {
        config.request_timeout = timeout;
    }
    if let Some(every) = olm_rotation {
        config.olm_rotation = every;
    }
    config.nat.relay = relay;
    config.nat.hole_punch = hole_punch;
    if let Some(probe) = probe {
        config.nat.probe_delay = probe;
        config.nat.probe_interval = probe;
    }
    let node = Node::start(identity, store, config).await.map_err(|e| e.to_string())?;
    let mut events = node.subscribe();
    out(
        json!({"ready": {"peer_id": node.peer_id().to_base58(), "addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>()}}),
    );
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(event) => out(event_json(&event)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    out(json!({"lagged": n}))
                }
                Err(_) => return,
            }
        }
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(command) = serde_json::from_str::<Value>(&line) else {
            out(json!({"error": "not JSON"}));
            continue;
        };
        if command.get("quit").is_some() {
            break;
        }
        if let Err(e) = handle(&node, &command).await {
            out(json!({"error": e}));
        }
    }
    node.shutdown().await;
    node.store().clone().close().await;
    out(json!({"stopped": true}));
    Ok(())
}

async fn handle(node: &Node, command: &Value) -> Result<(), String> {
    let user = |v: &Value| Username::new(v.as_str().unwrap_or_default()).map_err(|e| e.to_string());
    if let Some(add) = command.get("add") {
        let peer =
            add["peer_id"].as_str().unwrap_or_default().parse().map_err(|e| format!("{e}"))?;
        let addrs = add["addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect();
        node.add_contact(&user(&add["username"])?, peer, addrs).await.map_err(|e| e.to_string())?;
        out(json!({"added": add["username"]}));
    } else if let Some(send) = command.get("send") {
        let sent = node
            .send(&user(&send["to"])?, send["text"].as_str().unwrap_or_default())
            .await
            .map_err(|e| e.to_string())?;
        out(json!({"queued": {"id": sent.id.to_string(), "seq": sent.seq.get()}}));
    } else if let Some(many) = command.get("send_many") {
        let to = user(&many["to"])?;
        let prefix = many["prefix"].as_str().unwrap_or_default().to_owned();
        let pause = Duration::from_millis(many["interval_ms"].as_u64().unwrap_or(0));
        let count = many["count"].as_u64().unwrap_or(0);
        // `pad` bytes of filler after each message's number, for messages of a given size.
        let pad = " ".to_owned() + &"x".repeat(many["pad"].as_u64().unwrap_or(0) as usize);
        let pad = if pad.len() > 1 { pad } else { String::new() };
        // `parallel` senders share the count, as several people typing at once would.
        let parallel = many["parallel"].as_u64().unwrap_or(1).clamp(1, 256);
        let mut tasks = Vec::new();
        for task in 0..parallel {
            let (node, to, prefix, pad) = (node.clone(), to.clone(), prefix.clone(), pad.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = task;
                while i < count {
                    let sent = node
                        .send(&to, &format!("{prefix}{i}{pad}"))
                        .await
                        .map_err(|e| e.to_string())?;
                    out(json!({"queued": {"id": sent.id.to_string(), "seq": sent.seq.get()}}));
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    i += parallel;
                }
                Ok::<(), String>(())
            }));
        }
        for task in tasks {
            task.await.map_err(|e| e.to_string())??;
        }
    } else if command.get("nat").is_some() {
        out(json!({"nat": nat_json(&node.nat())}));
    } else if let Some(name) = command.get("path") {
        let contact = node.resolve(&user(name)?).await.map_err(|e| e.to_string())?;
        let peer =
            libp2p::PeerId::from_bytes(contact.peer_id.as_bytes()).map_err(|e| e.to_string())?;
        out(json!({"path": {"username": name, "path": node.path(&peer).map(|p| p.name())}}));
    } else if command.get("republish").is_some() {
        node.republish();
        out(json!({"republishing": true}));
    } else if let Some(name) = command.get("trust") {
        // The harness trusts what it was shown: the pending key, as a user would after
        // comparing its number.
        let numbers = node.safety_numbers(&user(name)?).await.map_err(|e| e.to_string())?;
        let (pending, _) = numbers.pending.ok_or("no key change to trust")?;
        node.trust(&user(name)?, pending).await.map_err(|e| e.to_string())?;
        out(json!({"trusted": name}));
    } else if let Some(name) = command.get("accept") {
        // The message request claiming this name.
        let name = user(name)?;
        let contacts = node.store().contacts().await.map_err(|e| e.to_string())?;
        let request = contacts
            .into_iter()
            .find(|c| c.kind == tincan_store::ContactKind::Request && c.username == name)
            .ok_or("no such request")?;
        node.accept(request.conversation).await.map_err(|e| e.to_string())?;
        out(json!({"accepted": name.as_str()}));
    } else if let Some(name) = command.get("reject") {
        node.reject(&user(name)?).await.map_err(|e| e.to_string())?;
        out(json!({"rejected": name}));
    } else {
        return Err("unknown command".into());
    }
    Ok(())
}

fn event_json(event: &Event) -> Value {
    match event {
        Event::Received { username, entry, request, .. } => json!({"received": {
            "from": username.as_str(), "id": entry.id.to_string(), "seq": entry.seq.get(),
            "text": entry.text.as_str(), "request": request, "position": entry.position,
        }}),
        Event::Status { id, status, .. } => {
            json!({"status": {"id": id.to_string(), "status": status.name()}})
        }
        Event::Online { username, .. } => json!({"online": username.as_str()}),
        Event::Offline { username, .. } => json!({"offline": username.as_str()}),
        Event::KeyChanged { username, old, new, .. } => {
            json!({"key_changed": {"username": username.as_str(), "old": old.to_base58(), "new": new.to_base58()}})
        }
        Event::Request { peer_id, claimed, claim, .. } => {
            json!({"request": {"peer_id": peer_id.to_base58(), "claimed": claimed.as_str(), "claim": claim}})
        }
        Event::Published { phonebook, addrs } => json!({"published": {
            "phonebook": phonebook, "addrs": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        }}),
        Event::PhonebookError { phonebook, error } => {
            json!({"phonebook_error": {"phonebook": phonebook, "error": error}})
        }
        Event::Path { username, path, .. } => {
            json!({"path": {"username": username.as_str(), "path": path.map(|p| p.name())}})
        }
        Event::Nat(report) => json!({"nat": nat_json(report)}),
        Event::Storage(health) => json!({"storage": format!("{health:?}")}),
        Event::Duplicate { addrs, .. } => {
            json!({"duplicate": addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>()})
        }
        Event::Sealing { username, change, .. } => {
            json!({"sealing": {"username": username.as_str(), "change": format!("{change:?}")}})
        }
        _ => json!({"event": format!("{event:?}")}),
    }
}

fn nat_json(report: &NatReport) -> Value {
    let reachability = match &report.reachability {
        Reachability::Unknown => json!("unknown"),
        Reachability::Private => json!("private"),
        Reachability::Public(addr) => json!({"public": addr.to_string()}),
    };
    json!({
        "reachability": reachability,
        "confidence": report.confidence,
        "relay": report.relay.as_ref().map(|r| json!({
            "peer_id": r.peer_id.to_base58(), "addr": r.addr.to_string(),
            "reserved": r.reserved, "last_error": r.last_error,
        })),
    })
}
