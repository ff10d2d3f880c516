//! The node's public types: how it runs ([`Config`]), what it reports ([`Event`]) and why an
//! operation failed (one error type per kind of operation).

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tincan_identity::SafetyNumber;
use tincan_phonebook_client::Client as Phonebook;
use tincan_store::{Claim, ConversationId, LogEntry, RequestLimits, Status, StoreError};
use tincan_wire::{InvalidValue, MessageId, Seq, Username};

use crate::guard::Limits;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Our username, as published to phonebooks and sent with messages.
    pub username: Username,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/0` and `/ip4/0.0.0.0/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Phonebooks to publish to and look usernames up in, tried in order. May be empty: then
    /// contacts are reached at addresses given with [`Node::add_contact`](crate::Node::add_contact).
    pub phonebooks: Vec<Phonebook>,
    /// How long our phonebook records live; we refresh at half of it. Capped by what each
    /// phonebook accepts.
    pub presence_ttl: Duration,
    /// How long a connection without streams stays open: conversations within this time reuse
    /// the connection instead of dialling again.
    pub idle_timeout: Duration,
    /// How long to wait for an answer to a request.
    pub request_timeout: Duration,
    /// While messages wait for an offline contact, how often to ask the phonebook again.
    pub lookup_interval: Duration,
    /// Limits on what peers may send us.
    pub limits: Limits,
    /// How much strangers may leave before the user accepts their message requests.
    pub request_limits: RequestLimits,
    /// How we stay reachable behind NAT: the phonebook's relay and AutoNAT probes.
    pub nat: NatConfig,
    /// How often the Olm fallback key is replaced (`specs/sealed.md` §6); the replaced key
    /// opens pre-key messages until the next replacement. A week by default.
    pub olm_rotation: Duration,
    /// **Benchmarks only; tincan never sets it.** Sends and accepts plaintext messages (wire
    /// version 1, kind 1) instead of sealed ones, so that a benchmark can measure what sealing
    /// costs against the same build. A node with it off, the default, refuses plaintext.
    #[doc(hidden)]
    pub plaintext_for_benchmarks: bool,
}

/// How a node stays reachable behind NAT.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// When to hold a reservation at the relay that a phonebook announces (`GET /relay`).
    pub relay: RelayPolicy,
    /// Whether to upgrade relayed connections to direct ones by hole punching (DCUtR). A
    /// punched connection shows each side the other's public IP address; without it, peers
    /// behind NAT only ever see the relay's.
    pub hole_punch: bool,
    /// How long after the relay is found the first reachability probe goes out.
    pub probe_delay: Duration,
    /// How often to probe while reachability is not settled.
    pub probe_interval: Duration,
    /// How often to probe again once it is.
    pub probe_refresh: Duration,
}

impl Default for NatConfig {
    fn default() -> NatConfig {
        NatConfig {
            relay: RelayPolicy::Auto,
            hole_punch: true,
            probe_delay: Duration::from_secs(2),
            probe_interval: Duration::from_secs(30),
            probe_refresh: Duration::from_secs(15 * 60),
        }
    }
}

/// When to hold a relay reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayPolicy {
    /// Unless probes show we are publicly reachable: from the start (so that we are reachable
    /// at once), and given up once a probe proves us public.
    Auto,
    /// Always, even when publicly reachable.
    Always,
    /// Never: peers that cannot dial us directly cannot reach us.
    Never,
}

/// How a connection to a peer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// Straight to the peer, dialled by one side.
    Direct,
    /// Through the relay: it forwards the Noise-encrypted bytes.
    Relayed,
    /// Straight to the peer, through both NATs, after a hole punch (DCUtR).
    Punched,
}

impl Path {
    /// A short lowercase name: `direct`, `relayed`, `punched`.
    pub fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
            Path::Punched => "punched",
        }
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether others can dial us, as the relay's AutoNAT probes found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not probed yet (no relay known, or no answer yet).
    Unknown,
    /// Publicly reachable at this address.
    Public(Multiaddr),
    /// Not reachable from outside: behind NAT or a firewall.
    Private,
}

/// What we know of our own reachability.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatReport {
    /// What the probes found.
    pub reachability: Reachability,
    /// How many probes in a row confirmed it (at most 3).
    pub confidence: usize,
    /// The relay, when a phonebook announces one.
    pub relay: Option<RelayState>,
}

/// Our standing at the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayState {
    /// The relay's PeerId.
    pub peer_id: PeerId,
    /// The address we reserve at.
    pub addr: Multiaddr,
    /// Whether we hold a reservation: peers can reach us through the relay.
    pub reserved: bool,
    /// Why the last reservation attempt failed, if it did.
    pub last_error: Option<String>,
}

impl Config {
    /// Defaults for `username`: listen on all interfaces, TCP and QUIC, on ports the system
    /// picks; no phonebook.
    pub fn new(username: Username) -> Config {
        Config {
            username,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("a valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1".parse().expect("a valid multiaddr"),
            ],
            phonebooks: Vec::new(),
            presence_ttl: Duration::from_secs(300),
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(30),
            lookup_interval: Duration::from_secs(30),
            limits: Limits::default(),
            request_limits: RequestLimits::default(),
            nat: NatConfig::default(),
            olm_rotation: Duration::from_secs(7 * 24 * 3600),
            plaintext_for_benchmarks: false,
        }
    }
}

/// Something that happened, for the user interface. Events are advisory: a slow listener may
/// miss some ([`broadcast`](tokio::sync::broadcast) semantics) and can always read the store for the truth.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A message was stored (it is in the log, and was acknowledged to the sender).
    Received {
        /// The conversation.
        conversation: ConversationId,
        /// The contact's username (for a request, the claim).
        username: Username,
        /// The stored entry.
        entry: LogEntry,
        /// The sender is not a contact yet: this is a message request.
        request: bool,
    },
    /// An outgoing message changed status.
    Status {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        id: MessageId,
        /// Its new status.
        status: Status,
    },
    /// A contact's peer connected.
    Online {
        /// The contact (for a request, the name it claims).
        username: Username,
        /// Its peer: what indicators are keyed by, since a request may claim any name.
        peer_id: PeerId,
    },
    /// A contact's peer has no connection left.
    Offline {
        /// The contact (for a request, the name it claims).
        username: Username,
        /// Its peer.
        peer_id: PeerId,
    },
    /// The phonebook shows another key for a pinned contact. Nothing more is sent to them until
    /// the user trusts the new key ([`Node::trust`](crate::Node::trust)).
    KeyChanged {
        /// The conversation.
        conversation: ConversationId,
        /// The contact.
        username: Username,
        /// The pinned PeerId.
        old: PeerId,
        /// The PeerId the phonebook now shows.
        new: PeerId,
    },
    /// An unknown peer wrote to us.
    Request {
        /// The new conversation.
        conversation: ConversationId,
        /// Who wrote.
        peer_id: PeerId,
        /// The username it claims.
        claimed: Username,
        /// What a phonebook said of the claim: [`Claim::Unchecked`] at first, then again with
        /// the answer once a phonebook gave one. It is also stored with the request.
        claim: Claim,
    },
    /// Our record is published at a phonebook.
    Published {
        /// The phonebook's URL.
        phonebook: String,
        /// The addresses published.
        addrs: Vec<Multiaddr>,
    },
    /// The best path to a contact's peer changed: `None` when the last connection closed.
    Path {
        /// The contact.
        username: Username,
        /// The peer.
        peer_id: PeerId,
        /// The path now.
        path: Option<Path>,
    },
    /// What we know of our reachability changed (probes, relay reservation).
    Nat(NatReport),
    /// A contact said something about the conversation (`specs/wire.md` §4.4): not stored.
    Notice {
        /// The conversation.
        conversation: ConversationId,
        /// The contact.
        username: Username,
        /// What it said.
        notice: tincan_wire::Notice,
    },
    /// Something changed in how messages with a contact are sealed (`specs/sealed.md` §8).
    Sealing {
        /// The conversation.
        conversation: ConversationId,
        /// The contact (for a request, the name it claims).
        username: Username,
        /// What changed.
        change: SealingChange,
    },
    /// Whether the store can write changed: the disk filled up (incoming messages are refused
    /// for now, and senders retry), or there is room again.
    Storage(tincan_store::Health),
    /// A phonebook holds a record of our name that we did not publish, signed by our key: the
    /// same identity runs elsewhere (a copied profile). One of the two receives nothing.
    Duplicate {
        /// The phonebook's URL.
        phonebook: String,
        /// Where the other copy says it is.
        addrs: Vec<Multiaddr>,
    },
    /// A phonebook could not be reached or refused us.
    PhonebookError {
        /// The phonebook's URL.
        phonebook: String,
        /// What went wrong.
        error: String,
    },
}

/// What changed in how messages with a contact are sealed, for [`Event::Sealing`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealingChange {
    /// The contact started a new secure session: it lost the previous one (a restored backup,
    /// a new device with the same identity) or both started one at once.
    NewSession,
    /// The contact could not open `messages` of ours (it lost our session): they are sealed
    /// again in a new session and sent again.
    Resealed {
        /// How many.
        messages: usize,
    },
    /// The contact presented Olm keys that its pinned identity did not sign: refused. Someone
    /// may be trying to read its messages; nothing was sealed to those keys.
    KeysRefused,
}

impl SealingChange {
    /// In words, for people.
    pub fn describe(self) -> String {
        match self {
            SealingChange::NewSession => "started a new secure session".to_owned(),
            SealingChange::Resealed { messages } => format!(
                "could not open {messages} of your messages (it lost the secure session): \
                 they are sealed again in a new session"
            ),
            SealingChange::KeysRefused => {
                "presented encryption keys its identity did not sign: refused".to_owned()
            }
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Listening on an address failed (in use, not local…).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: std::io::Error,
    },
    /// The transport or the network thread could not be set up.
    #[error("cannot start the network: {0}")]
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// A listener came up without an address in time.
    #[error("no listen address after {0:?}")]
    NoListenAddress(std::time::Duration),
    /// The network thread stopped before it was ready.
    #[error("the network thread stopped")]
    Stopped,
    /// The store could not give or keep the Olm account.
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The text breaks the rules of `specs/wire.md` §4.3.
    #[error(transparent)]
    InvalidText(#[from] InvalidValue),
    /// The recipient is not a contact, and could not be found.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a username is not a contact, nor could become one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// No phonebook knows this username, and it is not a contact.
    #[error("no such user: {0}")]
    UnknownUser(Username),
    /// The username is not a contact, and there is nowhere to look it up.
    #[error("{0} is not a contact, and no phonebook is configured")]
    NoDirectory(Username),
    /// The username is not a contact, and no phonebook could be asked.
    #[error("cannot find {username}: {reason}")]
    Unreachable {
        /// The username.
        username: Username,
        /// Why.
        reason: crate::DirectoryError,
    },
    /// That username is us (or a phonebook binds it to our key).
    #[error("that is you")]
    ToSelf,
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why something could not be done to a contact named by its username.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// Nobody by that name is a contact.
    #[error("{0} is not a contact")]
    NotAContact(Username),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The safety numbers to compare with a contact: the pinned key's, and during a key change
/// the new key's, which is the one to compare before trusting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumbers {
    /// The pinned key and our number with it.
    pub pinned: (PeerId, SafetyNumber),
    /// The key a phonebook shows instead, not yet trusted, and our number with it.
    pub pending: Option<(PeerId, SafetyNumber)>,
}

/// A message accepted for sending: durably in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The conversation.
    pub conversation: ConversationId,
    /// The message id.
    pub id: MessageId,
    /// Its sequence number.
    pub seq: Seq,
    /// Its position in the conversation's log.
    pub position: u64,
}
