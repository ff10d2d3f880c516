//! The typed client. It verifies every record it receives: the phonebook is trusted to store
//! and serve records, never to vouch for them.

use std::time::Duration;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use reqwest::StatusCode;
use tincan_identity::Identity;
use tincan_wire::{UnixMillis, Username};

use crate::server::{ErrorBody, Info, PeerList, PeerView};
use crate::{Record, RecordError, SignedDelete, SignedRecord};

/// Why a phonebook call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The phonebook could not be reached, or the connection failed.
    #[error("phonebook unreachable: {0}")]
    Unreachable(String),
    /// The phonebook refused the request; `code` is its stable error code.
    #[error("phonebook refused ({status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Error code (`specs/phonebook.md` §5).
        code: String,
        /// The phonebook's explanation.
        message: String,
        /// For `stale-seq`: the phonebook's current sequence number.
        current_seq: Option<u64>,
    },
    /// The phonebook answered with something that is not a valid answer.
    #[error("invalid answer from the phonebook: {0}")]
    InvalidAnswer(String),
    /// The phonebook served a record that does not verify: it is lying or broken.
    #[error("the phonebook served a forged record for {username}: {reason}")]
    Forged {
        /// The username looked up.
        username: String,
        /// What did not verify.
        reason: String,
    },
}

/// A verified answer to a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The username.
    pub username: Username,
    /// The PeerId bound to it, proven by a signature of its key.
    pub peer_id: PeerId,
    /// The latest record, if the user has not taken it down.
    pub record: Option<Record>,
    /// Whether the phonebook counts the user as online.
    pub online: bool,
}

/// A client of one phonebook.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the phonebook at `base_url` (`http://…` or `https://…`).
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Unreachable(format!(
                "{base_url} is not an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Client { base, http })
    }

    /// The phonebook's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The phonebook's settings and limits.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.get_json(&format!("{}/info", self.base)).await
    }

    /// The relay that runs beside the phonebook, if any. The relay needs no trust: it carries
    /// only Noise-encrypted connections, authenticated end to end by the peers' own keys.
    pub async fn relay(&self) -> Result<Option<crate::RelayInfo>, ClientError> {
        match self.get_json(&format!("{}/relay", self.base)).await {
            Ok(info) => Ok(Some(info)),
            Err(ClientError::Refused { code, .. }) if code == "no-relay" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Publishes a record for `identity` under `username`, valid for `ttl` from `now`. The
    /// sequence number is `now` in ms; if the phonebook holds a higher one (a clock that went
    /// back), the record is signed again above it.
    pub async fn register(
        &self,
        identity: &Identity,
        username: &Username,
        addrs: &[Multiaddr],
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<PeerView, ClientError> {
        let expires =
            UnixMillis(now.0.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)));
        let signed = SignedRecord::sign(identity, username, addrs, now.0, expires);
        match self.post_record(username, &signed).await {
            Err(ClientError::Refused { code, current_seq: Some(current), .. })
                if code == "stale-seq" =>
            {
                let signed = SignedRecord::sign(
                    identity,
                    username,
                    addrs,
                    current.saturating_add(1),
                    expires,
                );
                self.post_record(username, &signed).await
            }
            other => other,
        }
    }

    async fn post_record(
        &self,
        username: &Username,
        signed: &SignedRecord,
    ) -> Result<PeerView, ClientError> {
        let response = self
            .http
            .post(format!("{}/peers/{}", self.base, username))
            .json(signed)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        decode(response).await
    }

    /// Takes the record for `username` down; with `release`, gives the username up too.
    pub async fn delete(
        &self,
        identity: &Identity,
        username: &Username,
        release: bool,
        now: UnixMillis,
    ) -> Result<(), ClientError> {
        let mut seq = now.0;
        for _ in 0..2 {
            let signed = SignedDelete::sign(identity, username, seq, release);
            let response = self
                .http
                .delete(format!("{}/peers/{}", self.base, username))
                .json(&signed)
                .send()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            match decode::<serde_json::Value>(response).await {
                Ok(_) => return Ok(()),
                Err(ClientError::Refused { code, current_seq: Some(current), .. })
                    if code == "stale-seq" =>
                {
                    seq = current.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::InvalidAnswer("the sequence number kept going stale".into()))
    }

    /// Looks `username` up and verifies the answer. `Ok(None)` if the name is not bound.
    pub async fn lookup(&self, username: &Username) -> Result<Option<Found>, ClientError> {
        let response = self
            .http
            .get(format!("{}/peers/{}", self.base, username))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        if response.status() == StatusCode::NOT_FOUND {
            let body: Result<ErrorBody, _> = response.json().await;
            return match body {
                Ok(b) if b.error.code == "not-found" => Ok(None),
                _ => Err(ClientError::InvalidAnswer("404 without the not-found code".into())),
            };
        }
        let view: PeerView = decode(response).await?;
        verify_view(username, &view).map(Some)
    }

    /// One page of users online, each verified; records that do not verify are dropped.
    /// Returns the page and where the next one starts.
    pub async fn online(
        &self,
        after: Option<&Username>,
        limit: usize,
    ) -> Result<(Vec<Found>, Option<Username>), ClientError> {
        let mut request =
            self.http.get(format!("{}/peers/", self.base)).query(&[("limit", limit.to_string())]);
        if let Some(after) = after {
            request = request.query(&[("after", after.as_str())]);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let page: PeerList = decode(response).await?;
        let mut found = Vec::with_capacity(page.peers.len());
        for view in &page.peers {
            let Ok(username) = Username::canonical(&view.username) else { continue };
            match verify_view(&username, view) {
                Ok(f) => found.push(f),
                Err(e) => {
                    tracing::warn!(%username, error = %e, "dropping an unverifiable directory entry")
                }
            }
        }
        let next = page.next.and_then(|n| Username::canonical(&n).ok());
        Ok((found, next))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        let response =
            self.http.get(url).send().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
        decode(response).await
    }
}

/// Checks a lookup answer against the username asked for: the record or deletion must verify,
/// be for that username, and name the PeerId the answer claims.
pub fn verify_view(username: &Username, view: &PeerView) -> Result<Found, ClientError> {
    let forged = |reason: String| ClientError::Forged { username: username.to_string(), reason };
    let (peer_id, record) = match (&view.record, &view.deletion) {
        (Some(signed), _) => {
            let record = signed.verify().map_err(|e: RecordError| forged(e.to_string()))?;
            if record.username != *username {
                return Err(forged(format!("the record is for {}", record.username)));
            }
            (record.peer_id, Some(record))
        }
        (None, Some(deletion)) => {
            let (name, peer) = deletion.verify().map_err(|e| forged(e.to_string()))?;
            if name != *username {
                return Err(forged(format!("the deletion is for {name}")));
            }
            (peer, None)
        }
        (None, None) => return Err(forged("no signed record or deletion".into())),
    };
    if view.peer_id != peer_id.to_base58() {
        return Err(forged("the answer names another PeerId than its signed record".into()));
    }
    Ok(Found { username: username.clone(), peer_id, record, online: view.online })
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let status = response.status();
    // Answers are small; a larger body is not a phonebook's.
    let bytes = response.bytes().await.map_err(|e| ClientError::Unreachable(e.to_string()))?;
    if bytes.len() > 4 << 20 {
        return Err(ClientError::InvalidAnswer("answer over 4 MiB".into()));
    }
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::InvalidAnswer(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Refused {
            status: status.as_u16(),
            code: body.error.code,
            message: body.error.message,
            current_seq: body.error.current_seq,
        }),
        Err(_) => Err(ClientError::InvalidAnswer(format!("status {status} without an error body"))),
    }
}
