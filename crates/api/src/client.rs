//! A client of the daemon's socket: calls with their answers, and notifications on the side.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{Call, MAX_ANSWER, MAX_LINE, Notification, RpcError};

/// Notifications waiting to be read before the oldest are dropped (and the client told, with
/// [`Notice::Lagged`]).
const NOTIFICATION_QUEUE: usize = 4096;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The socket could not be reached: no daemon runs, or it is not ours.
    #[error("cannot reach the daemon at {path}: {source}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The daemon went away (it stopped, or was killed).
    #[error("the daemon went away")]
    Gone,
    /// The daemon answered with an error.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The daemon answered with something this client cannot read.
    #[error("the daemon's answer is not what the API gives: {0}")]
    Protocol(String),
}

/// What the notification stream carries besides notifications.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A notification.
    Event(Box<Notification>),
    /// This many notifications were dropped because they were not read in time.
    Lagged(u64),
    /// The daemon closed the connection (stopped, killed, or dropped this client).
    Closed,
}

type Pending =
    Arc<std::sync::Mutex<Option<HashMap<u64, oneshot::Sender<Result<Value, RpcError>>>>>>;

/// A connection to the daemon. Calls may be made from many tasks at once; answers are matched
/// to their calls by id.
pub struct Client {
    writer: Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
    notifications: std::sync::Mutex<Option<mpsc::Receiver<Notice>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon's socket.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect { path: path.display().to_string(), source })?;
        Ok(Client::over(stream))
    }

    /// A client over a connected stream.
    pub fn over(stream: UnixStream) -> Client {
        let (read, write) = stream.into_split();
        let pending: Pending = Arc::new(std::sync::Mutex::new(Some(HashMap::new())));
        let (tx, rx) = mpsc::channel(NOTIFICATION_QUEUE);
        tokio::spawn(read_loop(BufReader::new(read), pending.clone(), tx));
        Client {
            writer: Mutex::new(write),
            pending,
            next_id: AtomicU64::new(1),
            notifications: std::sync::Mutex::new(Some(rx)),
        }
    }

    /// Makes a call and waits for its answer, as JSON.
    pub async fn call(&self, call: Call) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = serde_json::to_value(&call)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the call: {e}")))?;
        if let Value::Object(map) = &mut request {
            map.insert("jsonrpc".into(), Value::from("2.0"));
            map.insert("id".into(), Value::from(id));
        }
        let mut line = serde_json::to_vec(&request)
            .map_err(|e| ClientError::Protocol(format!("cannot encode the call: {e}")))?;
        line.push(b'\n');
        if line.len() > MAX_LINE {
            return Err(ClientError::Rpc(RpcError::new(
                RpcError::INVALID_REQUEST,
                format!("the call is {} bytes, more than the {MAX_LINE} a line holds", line.len()),
            )));
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            let Some(map) = pending.as_mut() else {
                return Err(ClientError::Gone);
            };
            map.insert(id, tx);
        }
        {
            let mut writer = self.writer.lock().await;
            if writer.write_all(&line).await.is_err() || writer.flush().await.is_err() {
                if let Some(map) = lock(&self.pending).as_mut() {
                    map.remove(&id);
                }
                return Err(ClientError::Gone);
            }
        }
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ClientError::Rpc(e)),
            Err(_) => Err(ClientError::Gone),
        }
    }

    /// Makes a call and reads its answer as `T`.
    pub async fn call_as<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClientError> {
        let method = call.method();
        let value = self.call(call).await?;
        serde_json::from_value(value)
            .map_err(|e| ClientError::Protocol(format!("the answer to {method}: {e}")))
    }

    /// The stream of notifications (after a `subscribe` call), once: later calls get `None`.
    pub fn notifications(&self) -> Option<mpsc::Receiver<Notice>> {
        self.notifications.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn read_loop(
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    pending: Pending,
    notices: mpsc::Sender<Notice>,
) {
    let mut lagged = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line(&mut read, &mut line, MAX_ANSWER).await {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        let Ok(value) = serde_json::from_slice::<Value>(&line) else {
            break;
        };
        if value.get("id").is_some_and(|id| !id.is_null()) {
            let Some(id) = value.get("id").and_then(Value::as_u64) else {
                continue;
            };
            let answer = if let Some(error) = value.get("error") {
                Err(serde_json::from_value::<RpcError>(error.clone()).unwrap_or_else(|e| {
                    RpcError::new(RpcError::INTERNAL, format!("unreadable error: {e}"))
                }))
            } else {
                Ok(value.get("result").cloned().unwrap_or(Value::Null))
            };
            let waiter = lock(&pending).as_mut().and_then(|map| map.remove(&id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(answer);
            }
        } else if value.get("method").is_some() {
            let Ok(notification) = serde_json::from_value::<Notification>(value) else {
                // A notification of a later API version: not for this client.
                continue;
            };
            if lagged > 0 && notices.try_send(Notice::Lagged(lagged)).is_ok() {
                lagged = 0;
            }
            if notices.try_send(Notice::Event(Box::new(notification))).is_err() {
                lagged += 1;
            }
        } else if value.get("error").is_some() {
            // An error without an id: the daemon could not read a request of ours, and closes.
            break;
        }
    }
    // Every call still waiting learns the daemon went away.
    lock(&pending).take();
    let _ = notices.try_send(Notice::Closed);
}

/// Reads one line into `line` (without its newline), at most `max` bytes: `false` at the end
/// of the stream, an `InvalidData` error for a longer line (whose rest is not read).
pub async fn read_line<R: AsyncBufReadExt + Unpin>(
    read: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let buf = read.fill_buf().await?;
        if buf.is_empty() {
            return Ok(false);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 1 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "line too long"));
        }
        line.extend_from_slice(&buf[..take]);
        read.consume(take);
        if done {
            line.pop();
            return Ok(true);
        }
    }
}
