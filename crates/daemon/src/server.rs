//! The API on a Unix socket (`specs/rpc.md`): JSON-RPC 2.0, one object per line, for the
//! owning user only.
//!
//! Everything a client can make the daemon hold is bounded: a line is at most
//! [`tincan_api::MAX_LINE`] bytes, at most [`Limits::max_clients`] are connected, each has at
//! most [`Limits::max_in_flight`] calls running, and at most [`Limits::queue`] lines waiting to
//! be written to it. A client that does not read its answers and notifications fast enough is
//! disconnected rather than buffered for.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use tincan_api::{Call, RpcError};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::service::Service;

/// At most this many bytes of waiting lines are gathered into one write.
const WRITE_BATCH: usize = 64 * 1024;

/// What one daemon allows its clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Clients connected at once; the next is told [`RpcError::TOO_MANY_CLIENTS`] and closed.
    pub max_clients: u32,
    /// Calls of one client running at once; more are answered
    /// [`RpcError::TOO_MANY_REQUESTS`].
    pub max_in_flight: usize,
    /// Lines (answers, notifications) waiting to be written to one client; a client that lets
    /// more pile up is disconnected.
    pub queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_clients: 64, max_in_flight: 16, queue: 1024 }
    }
}

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The socket's directory is not private to us.
    #[error("{path} is not a private directory of ours: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Creating, binding or securing the socket failed.
    #[error("cannot serve on {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Makes `dir` (and its parents) if missing, and checks it is ours and mode 0700: the socket
/// inside is then out of other users' reach even before its own mode and the uid check.
pub fn private_dir(dir: &Path) -> Result<(), BindError> {
    let unsafe_dir = |reason: String| BindError::UnsafeDirectory { path: dir.into(), reason };
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| unsafe_dir(e.to_string()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| unsafe_dir(e.to_string()))?;
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| unsafe_dir(e.to_string()))?;
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    let uid = rustix::process::getuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&meta) != uid {
        return Err(unsafe_dir("owned by another user".into()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| unsafe_dir(e.to_string()))?;
    }
    Ok(())
}

/// Binds the socket at `path`, mode 0600, in a private directory. A socket file already there
/// is a dead owner's: the caller holds the profile's store, so no live owner can exist.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    let io_error = |source| BindError::Io { path: path.into(), source };
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(path).map_err(io_error)?;
        }
        Ok(_) => {
            return Err(io_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something other than a socket is in the way",
            )));
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(io_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_error)?;
    Ok(listener)
}

/// Serves `service` on `listener` until `stop` turns `true`; then tells every subscribed
/// client it is closing and returns.
pub async fn serve(
    listener: UnixListener,
    service: Arc<Service>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let uid = rustix::process::getuid().as_raw();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "accepting an API client failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == uid => {}
            Ok(cred) => {
                tracing::warn!(uid = cred.uid(), "refused an API client of another user");
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused an API client whose user is unknown");
                continue;
            }
        }
        if service.clients() >= limits.max_clients {
            tokio::spawn(refuse(stream));
            continue;
        }
        service.count_client(true);
        let service = service.clone();
        let limits = limits.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, service.clone(), limits, stop).await;
            service.count_client(false);
        });
    }
}

async fn refuse(mut stream: UnixStream) {
    let line = error_line(
        Value::Null,
        &RpcError::new(RpcError::TOO_MANY_CLIENTS, "too many clients are connected".to_owned()),
    );
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&line)).await;
}

fn error_line(id: Value, error: &RpcError) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "error": error}))
        .unwrap_or_default();
    line.push(b'\n');
    line
}

fn result_line(id: Value, result: Value) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
        .unwrap_or_default();
    line.push(b'\n');
    line
}

/// One client: reads calls, runs each in its own task, writes answers through one bounded
/// queue.
async fn connection(
    stream: UnixStream,
    service: Arc<Service>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (out, mut lines) = mpsc::channel::<Vec<u8>>(limits.queue);
    // Closed (dropped) when this client must go: it did not keep up, or it said something
    // that ends the connection.
    let (gone_tx, mut gone) = watch::channel(false);
    let writer = tokio::spawn(async move {
        // Lines that are already waiting go out in one write: a burst of answers costs one
        // system call (and one wake-up of the client), not one per line.
        let mut batch = Vec::new();
        while let Some(line) = lines.recv().await {
            batch.clear();
            batch.extend_from_slice(&line);
            while batch.len() < WRITE_BATCH {
                match lines.try_recv() {
                    Ok(line) => batch.extend_from_slice(&line),
                    Err(_) => break,
                }
            }
            if write.write_all(&batch).await.is_err() {
                break;
            }
        }
        let _ = write.shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut notifications: Option<tokio::task::JoinHandle<()>> = None;
    // The calls of this client run inside this task, beside the reading: they end with its
    // connection, whatever they wait for, and an answer costs no hop to another task.
    let mut calls = FuturesUnordered::new();
    // Kept across the loop: `read_line` appends, so a read cut short by a call finishing
    // resumes where it was.
    let mut line = Vec::new();
    loop {
        let read_result = tokio::select! {
            r = tincan_api::read_line(&mut read, &mut line, tincan_api::MAX_LINE) => r,
            Some(()) = calls.next(), if !calls.is_empty() => continue,
            _ = stop.wait_for(|s| *s) => break,
            _ = gone.wait_for(|g| *g) => break,
        };
        match read_result {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                // Too long (or not readable): say so, and close; the rest of it is not read.
                let error = RpcError::new(
                    RpcError::INVALID_REQUEST,
                    format!("a line is at most {} bytes", tincan_api::MAX_LINE),
                );
                let _ = out.try_send(error_line(Value::Null, &error));
                break;
            }
        }
        let parsed =
            if line.iter().all(u8::is_ascii_whitespace) { None } else { Some(parse(&line)) };
        line.clear();
        let (id, call) = match parsed {
            None => continue,
            Some(Ok(parsed)) => parsed,
            Some(Err((id, error))) => {
                if !send(&out, error_line(id, &error), &gone_tx) {
                    break;
                }
                continue;
            }
        };
        if let Call::Subscribe(_) = call {
            let answer = match (service.events(), &notifications) {
                (Some(_), Some(_)) => Ok(json!({})),
                (Some(events), None) => {
                    notifications = Some(tokio::spawn(forward(
                        events,
                        service.clone(),
                        out.clone(),
                        gone_tx.clone(),
                    )));
                    Ok(json!({}))
                }
                (None, _) => service.handle(call).await,
            };
            if let Some(id) = id {
                let line = match answer {
                    Ok(result) => result_line(id, result),
                    Err(e) => error_line(id, &e),
                };
                if !send(&out, line, &gone_tx) {
                    break;
                }
            }
            continue;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            if let Some(id) = id {
                let error = RpcError::new(
                    RpcError::TOO_MANY_REQUESTS,
                    format!("at most {} calls may run at once", limits.max_in_flight),
                );
                if !send(&out, error_line(id, &error), &gone_tx) {
                    break;
                }
            }
            continue;
        };
        calls.push(answer(service.clone(), call, id, permit, out.clone(), gone_tx.clone()));
    }
    if *stop.borrow() {
        let closing = tincan_api::Notification::Closing { reason: "the daemon is stopping".into() };
        if let Ok(mut line) = serde_json::to_vec(&notification_value(&closing)) {
            line.push(b'\n');
            let _ = out.try_send(line);
        }
    }
    if let Some(task) = notifications {
        task.abort();
    }
    drop(calls);
    drop(out);
    // Whatever is queued still goes out, briefly: a client that stopped reading is not waited
    // for, and its socket closes with the writer.
    let mut writer = writer;
    if tokio::time::timeout(std::time::Duration::from_secs(2), &mut writer).await.is_err() {
        writer.abort();
    }
}

/// Queues a line for the client; a full queue means it does not read: it is dropped.
/// Runs one call and queues its answer (none for a notification).
async fn answer(
    service: Arc<Service>,
    call: Call,
    id: Option<Value>,
    permit: OwnedSemaphorePermit,
    out: mpsc::Sender<Vec<u8>>,
    gone: watch::Sender<bool>,
) {
    let answer = service.handle(call).await;
    drop(permit);
    if let Some(id) = id {
        let line = match answer {
            Ok(result) => result_line(id, result),
            Err(e) => error_line(id, &e),
        };
        send(&out, line, &gone);
    }
}

fn send(out: &mpsc::Sender<Vec<u8>>, line: Vec<u8>, gone: &watch::Sender<bool>) -> bool {
    match out.try_send(line) {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!("an API client does not read what it is sent: disconnecting it");
            gone.send_replace(true);
            false
        }
    }
}

/// A notification as a JSON-RPC notification object.
fn notification_value(n: &tincan_api::Notification) -> Value {
    let mut value = serde_json::to_value(n).unwrap_or_default();
    if let Value::Object(map) = &mut value {
        map.insert("jsonrpc".into(), Value::from("2.0"));
    }
    value
}

async fn forward(
    mut events: tokio::sync::broadcast::Receiver<tincan_node::Event>,
    service: Arc<Service>,
    out: mpsc::Sender<Vec<u8>>,
    gone: watch::Sender<bool>,
) {
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                // The node outran this task: the client can read the store for the truth.
                tracing::debug!(missed = n, "an API client missed notifications");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(notification) = service.notification(&event) else { continue };
        let Ok(mut line) = serde_json::to_vec(&notification_value(&notification)) else {
            continue;
        };
        line.push(b'\n');
        if !send(&out, line, &gone) {
            return;
        }
    }
}

/// Reads a request: its id (`None` for a notification, which gets no answer) and its call.
/// An error comes with the id to answer it under (`null` if unknown).
fn parse(line: &[u8]) -> Result<(Option<Value>, Call), (Value, RpcError)> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| (Value::Null, RpcError::new(RpcError::PARSE, format!("not JSON: {e}"))))?;
    let invalid = |id: Value, why: &str| {
        (id, RpcError::new(RpcError::INVALID_REQUEST, format!("not a JSON-RPC 2.0 request: {why}")))
    };
    let Value::Object(mut map) = value else {
        return Err(invalid(Value::Null, "not an object (batches are not supported)"));
    };
    let id = map.remove("id");
    let answer_id = id.clone().unwrap_or(Value::Null);
    match &id {
        None | Some(Value::Number(_)) | Some(Value::String(_)) | Some(Value::Null) => {}
        Some(_) => return Err(invalid(Value::Null, "the id must be a number or a string")),
    }
    if map.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(invalid(answer_id, "\"jsonrpc\" must be \"2.0\""));
    }
    let Some(Value::String(method)) = map.remove("method") else {
        return Err(invalid(answer_id, "no method"));
    };
    let params = map.remove("params");
    if params.as_ref().is_some_and(|p| !p.is_object()) {
        return Err((
            answer_id,
            RpcError::new(RpcError::INVALID_PARAMS, "params must be an object".to_owned()),
        ));
    }
    let call = Call::parse(&method, params).map_err(|e| (answer_id, e))?;
    // `"id": null` is answered like a request (JSON-RPC discourages it, but it has an id).
    Ok((id, call))
}
