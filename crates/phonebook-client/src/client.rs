//! The typed client. It verifies every record it receives: the phonebook is trusted to store
//! and serve records, never to vouch for them.

use std::time::Duration;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;
use tincan_identity::Identity;
use tincan_wire::{UnixMillis, Username};

use crate::{ErrorBody, Info, PeerList, PeerView, Record, RecordError, SignedDelete, SignedRecord};

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

/// Largest answer a client reads; a phonebook's largest (a directory page of 100) is far below.
const MAX_ANSWER: usize = 1 << 20;

/// The most relays a client takes from one phonebook's list.
pub const MAX_RELAYS: usize = 16;

/// A client of one phonebook.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The last sequence number this client signed: the next is above it, even within one
    /// millisecond (`specs/phonebook.md` §2.1).
    last_seq: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
        Client::build(base, |b| b)
    }

    /// A client for a phonebook served on the Unix socket at `path`, as the zero-configuration
    /// local phonebook is: only the socket's owner can reach it.
    #[cfg(unix)]
    pub fn unix(path: &std::path::Path) -> Result<Client, ClientError> {
        let path = path.to_path_buf();
        Client::build("http://localhost".into(), move |b| b.unix_socket(path))
            .map(|c| Client { base: "http://localhost".into(), ..c })
    }

    fn build(
        base: String,
        transport: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Client, ClientError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        let http =
            transport(builder).build().map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Client { base, http, last_seq: Default::default() })
    }

    /// The phonebook's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The last sequence number this client signed (0 before the first).
    pub fn last_signed(&self) -> u64 {
        self.last_seq.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The sequence number to sign next: our clock in ms, or one above the last we signed.
    /// Never a number a phonebook told us (`specs/phonebook.md` §2.1).
    fn next_seq(&self, now: UnixMillis) -> u64 {
        use std::sync::atomic::Ordering;
        let mut last = self.last_seq.load(Ordering::Relaxed);
        loop {
            let next = now.0.max(last.saturating_add(1));
            match self.last_seq.compare_exchange(last, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
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

    /// Every relay the phonebook announces (`GET /relays`), at most [`MAX_RELAYS`] of them
    /// however many it sends; from a phonebook older than that route, the one of
    /// `GET /relay`.
    pub async fn relays(&self) -> Result<Vec<crate::RelayInfo>, ClientError> {
        match self.get_json::<crate::RelayList>(&format!("{}/relays", self.base)).await {
            Ok(mut list) => {
                list.relays.truncate(MAX_RELAYS);
                Ok(list.relays)
            }
            Err(ClientError::Refused { code, .. }) if code == "no-such-route" => {
                Ok(self.relay().await?.into_iter().collect())
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes a record for `identity` under `username`, valid for `ttl` from `now`. The
    /// sequence number is `now` in ms (or one above the last this client signed). If the
    /// phonebook holds a higher one, our clock is behind: the error says so, and nothing is
    /// signed above it, since a phonebook could otherwise make us sign a number (`u64::MAX`)
    /// that freezes the name forever.
    pub async fn register(
        &self,
        identity: &Identity,
        username: &Username,
        addrs: &[Multiaddr],
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<PeerView, ClientError> {
        self.register_with_keys(identity, username, addrs, None, ttl, now).await
    }

    /// Publishes a record as [`Client::register`] does, carrying the signed Olm keys
    /// `olm_keys` if given (record version 2, `specs/phonebook.md` §2.5). Keys only for a
    /// phonebook whose `GET /info` says `olm_keys`: an older one refuses the field
    /// (`malformed-json`).
    pub async fn register_with_keys(
        &self,
        identity: &Identity,
        username: &Username,
        addrs: &[Multiaddr],
        olm_keys: Option<&[u8]>,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<PeerView, ClientError> {
        let expires =
            UnixMillis(now.0.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)));
        let mut signed = SignedRecord::sign(identity, username, addrs, self.next_seq(now), expires);
        if let Some(keys) = olm_keys {
            signed = signed.with_olm_keys(keys);
        }
        self.post_record(username, &signed).await.map_err(clock_behind)
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
        let signed = SignedDelete::sign(identity, username, self.next_seq(now), release);
        let response = self
            .http
            .delete(format!("{}/peers/{}", self.base, username))
            .json(&signed)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        decode::<serde_json::Value>(response).await.map(drop).map_err(clock_behind)
    }

    /// Looks `username` up and verifies the answer. `Ok(None)` if the name is not bound.
    pub async fn lookup(&self, username: &Username) -> Result<Option<Found>, ClientError> {
        let response = self
            .http
            .get(format!("{}/peers/{}", self.base, username))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        match decode::<PeerView>(response).await {
            Ok(view) => verify_view(username, &view).map(Some),
            Err(ClientError::Refused { status: 404, code, .. }) if code == "not-found" => Ok(None),
            Err(ClientError::Refused { status: 404, .. }) => {
                Err(ClientError::InvalidAnswer("404 without the not-found code".into()))
            }
            Err(e) => Err(e),
        }
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
            // Version 2: the keys are served beside the record (`specs/phonebook.md` §2.5).
            let signed = match &view.olm_keys {
                Some(keys) => SignedRecord { olm_keys: Some(keys.clone()), ..signed.clone() },
                None => signed.without_olm_keys(),
            };
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

/// A `stale-seq` refusal means the phonebook holds a record signed later than our clock says.
fn clock_behind(e: ClientError) -> ClientError {
    match e {
        ClientError::Refused { status, code, current_seq: Some(current), .. }
            if code == "stale-seq" =>
        {
            ClientError::Refused {
                status,
                code,
                message: format!(
                    "the phonebook holds a newer record (sequence {current}): is this computer's clock behind, or does a copy of this profile run elsewhere?"
                ),
                current_seq: Some(current),
            }
        }
        other => other,
    }
}

/// Reads an answer, at most [`MAX_ANSWER`] bytes of it: the body is read as it arrives and
/// given up at the limit, whatever `Content-Length` says.
async fn body(mut response: reqwest::Response) -> Result<Vec<u8>, ClientError> {
    let too_large = || ClientError::InvalidAnswer(format!("answer over {MAX_ANSWER} bytes"));
    if response.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ClientError::Unreachable(e.to_string()))?
    {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let status = response.status();
    let bytes = body(response).await?;
    if status.is_success() {
        return serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::InvalidAnswer(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(ClientError::Refused {
            status: status.as_u16(),
            code: printable(&body.error.code, 40),
            message: printable(&body.error.message, 300),
            current_seq: body.error.current_seq,
        }),
        Err(_) => Err(ClientError::InvalidAnswer(format!("status {status} without an error body"))),
    }
}

/// What a phonebook wrote, safe to show: no control or bidirectional-formatting characters
/// (they could rewrite a terminal), and at most `max` characters.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|&c| !c.is_control() && !tincan_wire::is_bidi_control(c))
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}
