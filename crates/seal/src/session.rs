//! The Olm account and the sessions with one peer: sealing and opening (`specs/sealed.md` §5).
//!
//! Nothing here changes state in place. [`Sessions::seal`] and [`Sessions::open`] work on a
//! copy and return the state after the ratchet step beside their result; the caller commits
//! that state in the same transaction as the outbox row or the stored message, and only then
//! uses it. A failed open, a crash before the commit, or a commit that fails leave the state
//! as it was, so a message key is never used twice and never lost.

use tincan_identity::{Identity, PublicKey};
use tincan_wire::cbor::{Reader, Writer};
use tincan_wire::{DecodeError, MessageId, PeerIdBytes, Seq};
use vodozemac::Curve25519PublicKey;
use vodozemac::olm::{
    Account as OlmAccount, AccountPickle, DecryptionError, OlmMessage, SessionConfig,
    SessionCreationError, SessionPickle,
};
use zeroize::Zeroizing;

use crate::envelope::{Contents, Envelope, Inner, OlmKind};
use crate::keys::{KeysError, OlmKeys, SignedOlmKeys, VerifiedKeys, fixed};

/// The most sessions kept per peer; the least recently used goes first.
pub const MAX_SESSIONS: usize = 4;

/// The most ratchet keys remembered per session: as many receiving chains as Olm keeps.
const MAX_RATCHETS: usize = 5;

/// The longest pickle text accepted for one Olm session or account.
const MAX_OLM_PICKLE_LEN: usize = 256 * 1024;

const PICKLE_VERSION: u64 = 1;

/// The key that encrypts Olm pickles, derived by the store from its root key.
pub struct PickleKey(Zeroizing<[u8; 32]>);

impl PickleKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> PickleKey {
        PickleKey(Zeroizing::new(bytes))
    }
}

impl std::fmt::Debug for PickleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PickleKey(..)")
    }
}

/// This side's Olm account: its Curve25519 identity key, its fallback key, and the record of
/// both signed by the tincan identity.
pub struct Account {
    olm: OlmAccount,
    keys: SignedOlmKeys,
}

impl Account {
    /// A new account with a fresh fallback key, its keys signed by `identity`.
    pub fn generate(identity: &Identity) -> Account {
        let mut olm = OlmAccount::new();
        olm.generate_fallback_key();
        let keys = signed_keys(&mut olm, identity, 1);
        Account { olm, keys }
    }

    /// Replaces the fallback key by a new one and signs the keys again with a higher serial.
    /// The previous fallback key still opens sessions started before the peer saw the new
    /// record; the one before it is forgotten.
    pub fn rotate_fallback_key(&mut self, identity: &Identity) {
        self.olm.generate_fallback_key();
        let serial = self.keys.unverified().serial + 1;
        self.keys = signed_keys(&mut self.olm, identity, serial);
    }

    /// Forgets the fallback key before the current one, once every peer had time to see the
    /// current record. From then on, a copy of this account taken later cannot open the
    /// pre-key messages sent to the forgotten key (`specs/sealed.md` §6). Returns whether
    /// there was one.
    pub fn forget_previous_fallback_key(&mut self) -> bool {
        self.olm.forget_fallback_key()
    }

    /// The signed keys to publish and to hand to peers.
    pub fn keys(&self) -> &SignedOlmKeys {
        &self.keys
    }

    fn identity(&self) -> PublicKey {
        self.keys.unverified().identity
    }

    fn copy(&self) -> Account {
        Account { olm: OlmAccount::from_pickle(self.olm.pickle()), keys: self.keys.clone() }
    }

    /// The account as the store keeps it (`specs/sealed.md` §7).
    pub fn pickle(&self, key: &PickleKey) -> Vec<u8> {
        let mut w = pickle_head();
        w.bytes(&self.keys.encode());
        w.key(2);
        w.text(&self.olm.pickle().encrypt(&key.0));
        w.into_bytes()
    }

    /// An account from [`Account::pickle`]'s bytes.
    pub fn from_pickle(bytes: &[u8], key: &PickleKey) -> Result<Account, PickleError> {
        let mut r = Reader::new(bytes);
        read_pickle_head(&mut r, 3, "account")?;
        r.key(1, "keys")?;
        let keys = SignedOlmKeys::decode(r.bytes("keys", crate::MAX_SIGNED_KEYS_LEN)?)
            .map_err(PickleError::Keys)?;
        r.key(2, "olm account")?;
        let text = r.text("olm account", MAX_OLM_PICKLE_LEN)?;
        r.finish()?;
        let olm = OlmAccount::from_pickle(
            AccountPickle::from_encrypted(text, &key.0).map_err(|_| PickleError::Olm)?,
        );
        // The pickle's keys must be this account's own.
        let own = keys.unverified();
        if olm.curve25519_key().to_bytes() != own.curve25519 {
            return Err(PickleError::Olm);
        }
        Ok(Account { olm, keys })
    }

    /// An account from a libolm pickle, for the interoperability vectors.
    #[cfg(test)]
    pub(crate) fn from_libolm(olm: OlmAccount, keys: SignedOlmKeys) -> Account {
        Account { olm, keys }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account").field("keys", self.keys.unverified()).finish_non_exhaustive()
    }
}

fn signed_keys(olm: &mut OlmAccount, identity: &Identity, serial: u64) -> SignedOlmKeys {
    let fallback = olm
        .fallback_key()
        .into_values()
        .next()
        .expect("a fallback key was generated and not yet published");
    olm.mark_keys_as_published();
    OlmKeys {
        identity: identity.public_key(),
        curve25519: olm.curve25519_key().to_bytes(),
        fallback: fallback.to_bytes(),
        serial,
    }
    .sign(identity)
}

/// A pickle's map of three entries, up to the key of its second field: both pickles start so.
fn pickle_head() -> Writer {
    let mut w = Writer::default();
    w.map(3);
    w.key(0);
    w.uint(PICKLE_VERSION);
    w.key(1);
    w
}

fn read_pickle_head(
    r: &mut Reader<'_>,
    fields: usize,
    what: &'static str,
) -> Result<(), PickleError> {
    if r.map(what, fields)? != fields {
        return Err(DecodeError::WrongArity { field: what, expected: fields }.into());
    }
    r.key(0, "pickle version")?;
    match r.uint("pickle version")? {
        PICKLE_VERSION => Ok(()),
        other => Err(PickleError::UnsupportedVersion(other)),
    }
}

/// One Olm session and the ratchet keys of the peer it has opened messages under.
struct Entry {
    session: vodozemac::olm::Session,
    ratchets: Vec<[u8; 32]>,
}

impl Entry {
    fn copy(&self) -> Entry {
        Entry {
            session: vodozemac::olm::Session::from_pickle(self.session.pickle()),
            ratchets: self.ratchets.clone(),
        }
    }

    fn note_ratchet(&mut self, ratchet: [u8; 32]) {
        if !self.ratchets.contains(&ratchet) {
            if self.ratchets.len() == MAX_RATCHETS {
                self.ratchets.remove(0);
            }
            self.ratchets.push(ratchet);
        }
    }

    /// Opens `message` with this session, which is known to hold its chain.
    fn decrypt(&mut self, message: &OlmMessage) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let ratchet = ratchet_of(message);
        match self.session.decrypt(message) {
            Ok(plaintext) => {
                self.note_ratchet(ratchet);
                Ok(Zeroizing::new(plaintext))
            }
            Err(DecryptionError::MissingMessageKey(_)) => Err(OpenError::Replayed),
            Err(DecryptionError::TooBigMessageGap(..)) => Err(OpenError::TooFarAhead),
            Err(_) => Err(OpenError::Tampered),
        }
    }
}

impl Entry {
    /// Tries `message`, under a ratchet key this session has not seen, as the peer's next
    /// ratchet step. A failed decryption leaves a vodozemac session as it was.
    fn step(&mut self, message: &OlmMessage) -> Option<Zeroizing<Vec<u8>>> {
        let plaintext = Zeroizing::new(self.session.decrypt(message).ok()?);
        self.note_ratchet(ratchet_of(message));
        Some(plaintext)
    }
}

fn ratchet_of(message: &OlmMessage) -> [u8; 32] {
    match message {
        OlmMessage::Normal(m) => m.ratchet_key().to_bytes(),
        OlmMessage::PreKey(m) => m.message().ratchet_key().to_bytes(),
    }
}

/// A message to seal: the header delivery needs and the contents only the peer may read.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The message id.
    pub id: MessageId,
    /// The sequence number in this conversation.
    pub seq: Seq,
    /// What is sealed.
    pub contents: Contents,
}

/// A sealed message and the state to commit with it.
#[derive(Debug)]
#[must_use = "the sessions after the ratchet step must be committed with the envelope"]
pub struct Sealed {
    /// What the outbox keeps and every retry sends.
    pub envelope: Envelope,
    /// The sessions after the ratchet step.
    pub sessions: Sessions,
    /// Whether a session was started for this message.
    pub new_session: bool,
}

/// An opened message and the state to commit with it.
#[derive(Debug)]
#[must_use = "the sessions after the ratchet step must be committed with the message"]
pub struct Opened {
    /// The message id, as the envelope and the contents both state it.
    pub id: MessageId,
    /// The sequence number, as the envelope and the contents both state it.
    pub seq: Seq,
    /// The contents.
    pub contents: Contents,
    /// The sessions after the ratchet step.
    pub sessions: Sessions,
    /// The account after a session was started from a pre-key message (a one-time key may
    /// have been used up); `None` when it did not change.
    pub account: Option<Account>,
    /// Whether the message started a new session (the peer reinstalled, restored a backup,
    /// or both sides started one at once).
    pub new_session: bool,
    /// The sender's keys, checked against its pinned identity, from a pre-key message.
    pub sender_keys: Option<VerifiedKeys>,
}

/// The Olm sessions with one peer, most recently used first.
pub struct Sessions {
    peer: PublicKey,
    entries: Vec<Entry>,
    /// The peer's keys record last verified against `peer`, kept in memory only: every
    /// pre-key message of a session carries the same record, and one verification serves
    /// them all (a signature does not expire; `peer` does not change).
    verified: Option<VerifiedKeys>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("peer", &self.peer)
            .field("sessions", &self.entries.len())
            .finish()
    }
}

impl Sessions {
    /// No session yet with `peer`, the identity pinned for the conversation.
    pub fn new(peer: PublicKey) -> Sessions {
        Sessions { peer, entries: Vec::new(), verified: None }
    }

    /// The peer's pinned identity.
    pub fn peer(&self) -> PublicKey {
        self.peer
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no session yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id of the session the next message will be sealed with, if there is one.
    pub fn current_session_id(&self) -> Option<String> {
        self.entries.first().map(|e| e.session.session_id())
    }

    /// Sessions holding one session imported from libolm, for the interoperability vectors.
    #[cfg(test)]
    pub(crate) fn from_libolm(peer: PublicKey, session: vodozemac::olm::Session) -> Sessions {
        Sessions { peer, entries: vec![Entry { session, ratchets: Vec::new() }], verified: None }
    }

    fn copy(&self) -> Sessions {
        Sessions {
            peer: self.peer,
            entries: self.entries.iter().map(Entry::copy).collect(),
            verified: self.verified.clone(),
        }
    }

    fn bring_forward(&mut self, index: usize) {
        let entry = self.entries.remove(index);
        self.entries.insert(0, entry);
        self.entries.truncate(MAX_SESSIONS);
    }

    /// Seals `message` for the peer with the most recently used session, or with a new one
    /// made from `theirs` (the peer's verified keys) when there is none.
    pub fn seal(
        &self,
        account: &Account,
        theirs: Option<&VerifiedKeys>,
        message: Outgoing,
    ) -> Result<Sealed, SealError> {
        let mut next = self.copy();
        let new_session = next.entries.is_empty();
        if new_session {
            let keys = theirs.ok_or(SealError::NoKeys)?.keys();
            if keys.identity != self.peer {
                return Err(SealError::WrongPeer);
            }
            let session = account
                .olm
                .create_outbound_session(
                    SessionConfig::version_1(),
                    Curve25519PublicKey::from_bytes(keys.curve25519),
                    Curve25519PublicKey::from_bytes(keys.fallback),
                )
                .map_err(|_| SealError::WeakKeys)?;
            next.entries.insert(0, Entry { session, ratchets: Vec::new() });
            next.entries.truncate(MAX_SESSIONS);
        }
        let entry = &mut next.entries[0];
        let kind =
            if entry.session.has_received_message() { OlmKind::Normal } else { OlmKind::PreKey };
        let inner = Inner {
            id: message.id,
            seq: message.seq,
            contents: message.contents,
            sender_keys: (kind == OlmKind::PreKey).then(|| account.keys.clone()),
        };
        let padded = inner.padded();
        let sealed = entry.session.encrypt(&*padded).map_err(|_| SealError::WeakKeys)?;
        let (_, body) = sealed.to_parts();
        let envelope = Envelope {
            id: message.id,
            seq: message.seq,
            to: peer_id_bytes(&self.peer),
            kind,
            body,
        };
        Ok(Sealed { envelope, sessions: next, new_session })
    }

    /// Opens `envelope` from the peer. On any error nothing changed: the same envelope, or
    /// others, can be opened again with this state.
    pub fn open(&self, account: &Account, envelope: &Envelope) -> Result<Opened, OpenError> {
        if envelope.to != peer_id_bytes(&account.identity()) {
            return Err(OpenError::WrongRecipient);
        }
        let message = olm_message(envelope)?;
        let mut next = self.copy();
        let mut new_account = None;
        let (index, plaintext) = match &message {
            OlmMessage::PreKey(pre) => {
                let id = pre.session_id();
                if let Some(i) = next.entries.iter().position(|e| e.session.session_id() == id) {
                    // One of the first messages of a session this side has: if the session
                    // moved on past its chain, the message is an old one.
                    let entry = &mut next.entries[i];
                    let plaintext = if entry.ratchets.contains(&ratchet_of(&message)) {
                        entry.decrypt(&message)?
                    } else {
                        entry.step(&message).ok_or(OpenError::Replayed)?
                    };
                    (i, plaintext)
                } else {
                    let mut account = account.copy();
                    let created = account
                        .olm
                        .create_inbound_session(SessionConfig::version_1(), pre.identity_key(), pre)
                        .map_err(|e| match e {
                            SessionCreationError::MissingOneTimeKey(_) => OpenError::UnknownKey,
                            SessionCreationError::MismatchedSessionConfig { .. } => {
                                OpenError::Malformed
                            }
                            _ => OpenError::Tampered,
                        })?;
                    let ratchets = vec![ratchet_of(&message)];
                    next.entries.insert(0, Entry { session: created.session, ratchets });
                    new_account = Some(account);
                    (0, Zeroizing::new(created.plaintext))
                }
            }
            OlmMessage::Normal(_) => next.decrypt_normal(&message)?,
        };
        let inner = Inner::unpad(&plaintext, envelope.kind).map_err(OpenError::Contents)?;
        if inner.id != envelope.id || inner.seq != envelope.seq {
            return Err(OpenError::HeaderMismatch);
        }
        let sender_keys = match (&message, &inner.sender_keys) {
            (OlmMessage::PreKey(pre), Some(keys)) => {
                let verified = match &self.verified {
                    Some(verified) if verified.record() == keys => verified.clone(),
                    _ => keys.verify(&self.peer).map_err(OpenError::KeysNotSigned)?,
                };
                if verified.keys().curve25519 != pre.identity_key().to_bytes() {
                    return Err(OpenError::IdentityKeyMismatch);
                }
                Some(verified)
            }
            _ => None,
        };
        let new_session = new_account.is_some();
        next.bring_forward(index);
        if let Some(verified) = &sender_keys {
            next.verified = Some(verified.clone());
        }
        Ok(Opened {
            id: inner.id,
            seq: inner.seq,
            contents: inner.contents,
            sessions: next,
            account: new_account,
            new_session,
            sender_keys,
        })
    }

    /// Opens a normal message: with the session that knows its ratchet key, or else with the
    /// first session that can step its ratchet to it.
    fn decrypt_normal(
        &mut self,
        message: &OlmMessage,
    ) -> Result<(usize, Zeroizing<Vec<u8>>), OpenError> {
        let ratchet = ratchet_of(message);
        if let Some(i) = self.entries.iter().position(|e| e.ratchets.contains(&ratchet)) {
            return Ok((i, self.entries[i].decrypt(message)?));
        }
        for (i, entry) in self.entries.iter_mut().enumerate() {
            if let Some(plaintext) = entry.step(message) {
                return Ok((i, plaintext));
            }
        }
        Err(OpenError::NoSession)
    }

    /// The sessions as the store keeps them (`specs/sealed.md` §7).
    pub fn pickle(&self, key: &PickleKey) -> Vec<u8> {
        let mut w = pickle_head();
        w.bytes(&self.peer.to_bytes());
        w.key(2);
        w.array(self.entries.len());
        for entry in &self.entries {
            w.map(2);
            w.key(0);
            w.text(&entry.session.pickle().encrypt(&key.0));
            w.key(1);
            w.array(entry.ratchets.len());
            for ratchet in &entry.ratchets {
                w.bytes(ratchet);
            }
        }
        w.into_bytes()
    }

    /// Sessions from [`Sessions::pickle`]'s bytes.
    pub fn from_pickle(bytes: &[u8], key: &PickleKey) -> Result<Sessions, PickleError> {
        let mut r = Reader::new(bytes);
        read_pickle_head(&mut r, 3, "sessions")?;
        r.key(1, "peer")?;
        let peer = PublicKey::from_bytes(&fixed::<32>(&mut r, "peer")?)
            .map_err(|_| PickleError::Keys(KeysError::InvalidIdentity))?;
        r.key(2, "sessions")?;
        let n = r.array("sessions", MAX_SESSIONS)?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            if r.map("session", 2)? != 2 {
                return Err(DecodeError::WrongArity { field: "session", expected: 2 }.into());
            }
            r.key(0, "olm session")?;
            let text = r.text("olm session", MAX_OLM_PICKLE_LEN)?;
            let pickle =
                SessionPickle::from_encrypted(text, &key.0).map_err(|_| PickleError::Olm)?;
            r.key(1, "ratchets")?;
            let m = r.array("ratchets", MAX_RATCHETS)?;
            let mut ratchets = Vec::with_capacity(m);
            for _ in 0..m {
                ratchets.push(fixed::<32>(&mut r, "ratchet")?);
            }
            entries.push(Entry { session: vodozemac::olm::Session::from_pickle(pickle), ratchets });
        }
        r.finish()?;
        Ok(Sessions { peer, entries, verified: None })
    }
}

/// Parses the body as an Olm message, in its one encoding, whose ciphertext is padded
/// contents: a bucket size and AES's block of padding. Anything else is malformed, whatever
/// it would decrypt to, so a cut or stretched message is told apart from a changed one.
fn olm_message(envelope: &Envelope) -> Result<OlmMessage, OpenError> {
    let message = OlmMessage::from_parts(kind_number(envelope.kind), &envelope.body)
        .map_err(|_| OpenError::Malformed)?;
    let ciphertext = match &message {
        OlmMessage::Normal(m) => m.ciphertext(),
        OlmMessage::PreKey(m) => m.message().ciphertext(),
    };
    if !crate::BUCKETS.iter().any(|b| b + 16 == ciphertext.len())
        || message.to_parts().1 != envelope.body
    {
        return Err(OpenError::Malformed);
    }
    Ok(message)
}

fn kind_number(kind: OlmKind) -> usize {
    match kind {
        OlmKind::PreKey => 0,
        OlmKind::Normal => 1,
    }
}

fn peer_id_bytes(key: &PublicKey) -> PeerIdBytes {
    PeerIdBytes::new(&key.peer_id_bytes()).expect("an ed25519 PeerId is 38 bytes")
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// There is no session with the peer and no verified keys to start one.
    #[error("no olm keys for the peer: cannot start a session")]
    NoKeys,
    /// The keys given are another identity's.
    #[error("the olm keys given are not the peer's")]
    WrongPeer,
    /// The peer's keys give no shared secret (a low-order point).
    #[error("the peer's olm keys are weak")]
    WeakKeys,
}

/// Why a sealed message was refused. Each leaves the sessions and the account as they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The envelope is for another peer.
    #[error("the sealed message is for another peer")]
    WrongRecipient,
    /// The body is not an Olm message (cut short, or not one at all).
    #[error("the sealed message is malformed")]
    Malformed,
    /// The message key was used already: the message was opened before.
    #[error("the sealed message was opened before (replayed)")]
    Replayed,
    /// The message is further ahead of its chain than Olm allows (2,000 messages).
    #[error("the sealed message is too far ahead of its session")]
    TooFarAhead,
    /// The session the message names does not authenticate it: changed on the way.
    #[error("the sealed message does not authenticate (changed on the way)")]
    Tampered,
    /// No session opens the message: this side lost the session (a restored backup), or the
    /// message was forged.
    #[error("no session opens the sealed message")]
    NoSession,
    /// A pre-key message for a one-time or fallback key this side does not have (any more).
    #[error("the sealed message names an unknown one-time key")]
    UnknownKey,
    /// The envelope's id or sequence number is not the one sealed inside.
    #[error("the sealed message's header does not match its contents")]
    HeaderMismatch,
    /// The opened contents are not valid.
    #[error("the sealed message's contents are invalid: {0}")]
    Contents(DecodeError),
    /// The sender's keys in a pre-key message are not signed by its pinned identity.
    #[error("the sender's olm keys are refused: {0}")]
    KeysNotSigned(KeysError),
    /// The pre-key message was made with another identity key than the signed one.
    #[error("the sealed message's identity key is not the sender's signed one")]
    IdentityKeyMismatch,
}

/// Why a pickle could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The bytes are not a pickle.
    #[error("malformed olm pickle: {0}")]
    Malformed(#[from] DecodeError),
    /// A pickle version this implementation does not read.
    #[error("unsupported olm pickle version {0}")]
    UnsupportedVersion(u64),
    /// The keys stored with the account are invalid.
    #[error("invalid keys in the olm pickle: {0}")]
    Keys(KeysError),
    /// The Olm state does not decrypt with the key, or is not Olm state.
    #[error("the olm state does not open with this key")]
    Olm,
}
