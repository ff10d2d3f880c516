//! Methods, results, notifications and errors of the API, as `specs/rpc.md` gives them.

use serde::{Deserialize, Serialize};

/// Parameters of a method that takes none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// Every method, with its parameters. On the wire: `"method"` and `"params"` of a JSON-RPC
/// request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Call {
    /// Who the daemon is and how it is doing: [`Status`].
    Status(Empty),
    /// Queue a message (split in pieces if longer than one holds); with `wait`, answer once
    /// delivered: [`Sent`].
    Send(SendParams),
    /// Contacts and message requests: a list of [`Contact`].
    Contacts(Empty),
    /// The contact of a username, looked up at the phonebook and pinned if it is not one yet
    /// (trust on first use): [`Contact`].
    Resolve(Who),
    /// Each conversation with its last message: a list of [`Conversation`].
    Conversations(Empty),
    /// A page of a conversation, newest last: [`Log`].
    Log(LogParams),
    /// Unread messages, by conversation, marked read unless `peek`: a list of [`Unread`].
    Inbox(InboxParams),
    /// Mark a conversation read, up to a position: [`Contact`].
    MarkRead(MarkReadParams),
    /// The safety numbers to compare: [`SafetyNumbers`].
    Verify(Who),
    /// Mark a contact verified (or not): [`Contact`].
    MarkVerified(MarkVerifiedParams),
    /// Trust a changed key, naming the key whose number was compared: [`Contact`].
    Trust(TrustParams),
    /// Keep the old key of a contact whose key changed: [`Contact`].
    Reject(Who),
    /// Accept a message request: [`Contact`].
    Accept(AcceptParams),
    /// Block or unblock: [`Contact`].
    Block(BlockParams),
    /// Delete a conversation: [`Deleted`].
    Delete(Who),
    /// Send again what a contact refused while it had us blocked: [`Count`].
    Retry(Who),
    /// Tell a contact the conversation ended (`--DISCONNECT--`): [`Empty`].
    End(Who),
    /// Dial a contact unless connected, for presence: [`Empty`].
    Probe(Who),
    /// Who the phonebook lists as online: a list of [`OnlineUser`].
    Online(OnlineParams),
    /// Our reachability: [`Nat`].
    Nat(Empty),
    /// Every conversation (or one), decrypted, as the export format of `specs/store.md` §7.
    Export(ExportParams),
    /// From now on, receive every [`Notification`] on this connection: [`Empty`].
    Subscribe(Empty),
    /// Stop the daemon (as SIGTERM does), after answering: [`Empty`].
    Stop(Empty),
}

impl Call {
    /// The method's name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Status(_) => "status",
            Call::Send(_) => "send",
            Call::Contacts(_) => "contacts",
            Call::Resolve(_) => "resolve",
            Call::Conversations(_) => "conversations",
            Call::Log(_) => "log",
            Call::Inbox(_) => "inbox",
            Call::MarkRead(_) => "mark_read",
            Call::Verify(_) => "verify",
            Call::MarkVerified(_) => "mark_verified",
            Call::Trust(_) => "trust",
            Call::Reject(_) => "reject",
            Call::Accept(_) => "accept",
            Call::Block(_) => "block",
            Call::Delete(_) => "delete",
            Call::Retry(_) => "retry",
            Call::End(_) => "end",
            Call::Probe(_) => "probe",
            Call::Online(_) => "online",
            Call::Nat(_) => "nat",
            Call::Export(_) => "export",
            Call::Subscribe(_) => "subscribe",
            Call::Stop(_) => "stop",
        }
    }

    /// Reads a call from a request's method and params (absent params are `{}`).
    pub fn parse(method: &str, params: Option<serde_json::Value>) -> Result<Call, RpcError> {
        let params = params.unwrap_or_else(|| serde_json::json!({}));
        let value = serde_json::json!({ "method": method, "params": params });
        serde_json::from_value(value).map_err(|e| {
            let known =
                serde_json::from_value::<Call>(serde_json::json!({"method": method, "params": {}}))
                    .is_ok()
                    || e.to_string().contains("missing field");
            if known || !e.to_string().contains("unknown variant") {
                RpcError::new(RpcError::INVALID_PARAMS, format!("invalid params for {method}: {e}"))
            } else {
                RpcError::new(RpcError::METHOD_NOT_FOUND, format!("no method {method:?}"))
            }
        })
    }
}

/// A contact, named by its username, by the end of its PeerId (`…Ab12Cd34`, as
/// [`Contact::key_id`] shows it), by its whole PeerId, or by its conversation's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Who {
    /// The contact.
    pub who: String,
}

/// Parameters of `send`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendParams {
    /// The recipient's username (looked up at the phonebook if not a contact yet).
    pub to: String,
    /// The text: longer than one message holds, it is sent as several, in order.
    pub text: String,
    /// Answer only once every piece is delivered (or refused).
    #[serde(default)]
    pub wait: bool,
    /// With `wait`, give up waiting after this long (the messages stay queued).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// Parameters of `log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// The contact.
    pub who: String,
    /// Only entries before this position (for the next page back).
    #[serde(default)]
    pub before: Option<u64>,
    /// How many, newest last: 1 to 500, 50 by default.
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only entries whose text holds this, ignoring case, from the whole conversation.
    #[serde(default)]
    pub grep: Option<String>,
}

/// Parameters of `inbox`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxParams {
    /// Leave them unread.
    #[serde(default)]
    pub peek: bool,
}

/// Parameters of `mark_read`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkReadParams {
    /// The contact.
    pub who: String,
    /// Read up to and with this position; everything, if absent.
    #[serde(default)]
    pub through: Option<u64>,
}

/// Parameters of `mark_verified`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkVerifiedParams {
    /// The contact.
    pub who: String,
    /// Verified, or not any more.
    pub verified: bool,
}

/// Parameters of `trust`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustParams {
    /// The contact.
    pub who: String,
    /// The new key (base58 PeerId), the one whose safety number was compared: if the pending
    /// key is another by now, nothing is trusted.
    pub key: String,
}

/// Parameters of `accept`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptParams {
    /// The request.
    pub who: String,
    /// Accept even though a phonebook gives the claimed name to someone else.
    #[serde(default)]
    pub anyway: bool,
}

/// Parameters of `block`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockParams {
    /// The contact or request.
    pub who: String,
    /// Block, or unblock.
    pub blocked: bool,
}

/// Parameters of `online`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnlineParams {
    /// At most this many: 1 to 100, 100 by default.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Parameters of `export`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Only this contact's conversation.
    #[serde(default)]
    pub who: Option<String>,
}

/// The answer to `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// [`crate::API_VERSION`].
    pub api: u32,
    /// The tincan version.
    pub version: String,
    /// The profile's name.
    pub profile: String,
    /// Our username.
    pub username: String,
    /// Our PeerId, base58.
    pub peer_id: String,
    /// The addresses we listen on.
    pub listen: Vec<String>,
    /// `ok`, `disk-full` or `failing`.
    pub storage: String,
    /// Clients connected to the daemon now, this one included.
    pub clients: u32,
}

/// A contact or a message request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The conversation's id, 32 hex digits.
    pub conversation: String,
    /// `contact`, or `request` (a stranger wrote first; its name is a claim).
    pub kind: String,
    /// The username (for a request, the one it claims).
    pub username: String,
    /// The pinned PeerId, base58.
    pub peer_id: String,
    /// The end of the PeerId, to tell apart requests that claim one name: `…Ab12Cd34`.
    pub key_id: String,
    /// Safety numbers were compared.
    pub verified: bool,
    /// Its messages are refused and not stored.
    pub blocked: bool,
    /// A new key a phonebook shows, not trusted yet (nothing is sent meanwhile), base58.
    pub pending_key: Option<String>,
    /// Keys the user rejected for this contact, base58: a phonebook showing one again is
    /// ignored.
    #[serde(default)]
    pub rejected_keys: Vec<String>,
    /// For a request: `unchecked`, `confirmed`, `other-key` or `unregistered`.
    pub claim: String,
    /// Messages not read yet.
    pub unread: u64,
    /// Connected now.
    pub online: bool,
    /// How, when connected: `direct`, `relayed` or `punched`.
    pub path: Option<String>,
    /// Entries in the conversation.
    pub messages: u64,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its place in the conversation, from 0.
    pub position: u64,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// The message id, 32 hex digits.
    pub id: String,
    /// The sender's sequence number.
    pub seq: u64,
    /// When it arrived here (ours: when it was written), ms since the epoch, by our clock: the
    /// order it is shown in.
    pub time: u64,
    /// When the sender says it wrote it, by its clock: a claim.
    pub claimed_time: u64,
    /// `queued`, `sent`, `delivered`, `failed` or `received`.
    pub status: String,
    /// For a failed message: the refusal code and reason.
    pub refusal: Option<Refusal>,
    /// The text.
    pub text: String,
    /// Messages of the sender missing just before this one.
    pub missing_before: u64,
    /// It arrived after later messages of the sender.
    pub late: bool,
}

/// Why a message was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The refusal code (`specs/wire.md` §5.1), or 0 for a local reason.
    pub code: u64,
    /// In words.
    pub reason: String,
}

/// A conversation and its last message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The contact.
    pub contact: Contact,
    /// Its last entry, if any.
    pub last: Option<Entry>,
}

/// The answer to `send`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The conversation.
    pub conversation: String,
    /// The messages queued, in order (several for a long text).
    pub messages: Vec<Queued>,
    /// With `wait`: whether all were delivered in time (`false`: they stay queued, unless
    /// `refusal` says they were refused).
    pub delivered: Option<bool>,
    /// With `wait`: the recipient refused one of them (it will not be delivered).
    #[serde(default)]
    pub refusal: Option<Refusal>,
    /// With `wait`: the recipient's key changed while waiting; nothing is sent until `trust`
    /// or `reject`.
    #[serde(default)]
    pub key_changed: bool,
}

/// A message durably in the outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queued {
    /// Its id, 32 hex digits.
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its place in the conversation.
    pub position: u64,
}

/// The answer to `log`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// The contact.
    pub contact: Contact,
    /// The entries, oldest first.
    pub messages: Vec<Entry>,
    /// Whether there are older entries (ask with `before` = the first position).
    pub more: bool,
}

/// A conversation's unread messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unread {
    /// The contact.
    pub contact: Contact,
    /// The unread messages, oldest first.
    pub messages: Vec<Entry>,
}

/// A key and our safety number with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// The PeerId, base58.
    pub peer_id: String,
    /// 60 digits in twelve groups of five.
    pub safety_number: String,
}

/// The answer to `verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SafetyNumbers {
    /// The contact.
    pub username: String,
    /// The pinned key.
    pub pinned: Key,
    /// During a key change, the new key: the one to compare before `trust`.
    pub pending: Option<Key>,
    /// Marked verified.
    pub verified: bool,
}

/// The answer to `delete`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The contact stays (without messages), because it is blocked.
    pub kept_blocked: bool,
}

/// How many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// How many.
    pub count: u64,
}

/// A user the phonebook lists as online.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineUser {
    /// The username.
    pub username: String,
    /// Its PeerId, base58.
    pub peer_id: String,
    /// Already a contact.
    pub contact: bool,
}

/// Our reachability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    /// `unknown`, `private`, or `public`.
    pub reachability: String,
    /// With `public`: where others dial us.
    pub public_addr: Option<String>,
    /// Probes in a row that said so.
    pub confidence: u32,
    /// The phonebook's relay, if it runs one.
    pub relay: Option<RelayState>,
}

/// Our standing at the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayState {
    /// The relay's PeerId.
    pub peer_id: String,
    /// The address we reserve at.
    pub addr: String,
    /// We hold a reservation.
    pub reserved: bool,
    /// Why the last try failed.
    pub error: Option<String>,
}

/// What the daemon tells a subscribed client. On the wire: a JSON-RPC notification, `"method"`
/// and `"params"`, without `"id"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notification {
    /// A message was stored.
    Message {
        /// The contact (for a request, the name it claims).
        contact: String,
        /// The conversation.
        conversation: String,
        /// The sender is not a contact yet: a message request.
        request: bool,
        /// The message.
        entry: Entry,
    },
    /// An outgoing message changed status.
    Status {
        /// The conversation.
        conversation: String,
        /// The message id.
        id: String,
        /// The new status.
        status: String,
        /// For a failed message, why.
        refusal: Option<Refusal>,
    },
    /// A contact connected, or its last connection closed, or its path changed.
    Presence {
        /// The contact.
        contact: String,
        /// Its PeerId.
        peer_id: String,
        /// Connected now.
        online: bool,
        /// How.
        path: Option<String>,
    },
    /// A phonebook shows another key for a contact: nothing is sent until `trust` or `reject`.
    KeyChanged {
        /// The contact.
        contact: String,
        /// The conversation.
        conversation: String,
        /// The pinned key.
        old: String,
        /// The new one.
        new: String,
    },
    /// A stranger wrote, or a phonebook answered about the name it claims.
    Request {
        /// The conversation.
        conversation: String,
        /// The stranger's PeerId.
        peer_id: String,
        /// The name it claims.
        claimed: String,
        /// `unchecked`, `confirmed`, `other-key` or `unregistered`.
        claim: String,
    },
    /// Something changed in how messages with a contact are sealed (`specs/sealed.md` §8).
    Sealing {
        /// The contact (for a request, the name it claims).
        contact: String,
        /// The conversation.
        conversation: String,
        /// `new-session` (the contact started a new secure session), `resealed` (the contact
        /// could not open `messages` of ours: sealed again in a new session) or `keys-refused`
        /// (the contact presented Olm keys its pinned identity did not sign).
        change: String,
        /// For `resealed`: how many messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        messages: Option<u64>,
    },
    /// A contact ended the conversation.
    Ended {
        /// The contact.
        contact: String,
        /// The conversation.
        conversation: String,
    },
    /// Our reachability changed.
    Reachability(Nat),
    /// Whether the store can write changed: `ok`, `disk-full`, `failing`.
    Storage {
        /// The store's health now.
        health: String,
    },
    /// A phonebook took our record, or refused it.
    Phonebook {
        /// The phonebook.
        phonebook: String,
        /// Whether it took it.
        ok: bool,
        /// Why not.
        error: Option<String>,
    },
    /// Another node with our identity publishes our name (a copied profile).
    Duplicate {
        /// The phonebook that shows it.
        phonebook: String,
        /// Where the other node says it is.
        addrs: Vec<String>,
    },
    /// The daemon is stopping: the connection closes after this.
    Closing {
        /// Why.
        reason: String,
    },
}

/// A JSON-RPC error: a code and a message for people (`specs/rpc.md` §4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct RpcError {
    /// The code: JSON-RPC's own below -32000, tincan's from 1000.
    pub code: i64,
    /// What went wrong.
    pub message: String,
}

impl RpcError {
    /// Not JSON.
    pub const PARSE: i64 = -32700;
    /// Not a JSON-RPC 2.0 request, or a line over [`crate::MAX_LINE`].
    pub const INVALID_REQUEST: i64 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// The params do not fit the method.
    pub const INVALID_PARAMS: i64 = -32602;
    /// A bug.
    pub const INTERNAL: i64 = -32603;
    /// No such contact or request.
    pub const NO_SUCH_CONTACT: i64 = 1001;
    /// A message request: accept it first.
    pub const NOT_A_CONTACT: i64 = 1002;
    /// The contact's key changed: nothing is sent until `trust` or `reject`.
    pub const KEY_CHANGED: i64 = 1003;
    /// The pending key is not the one named: compare the new number.
    pub const PENDING_KEY_CHANGED: i64 = 1004;
    /// No key change to trust or reject.
    pub const NO_KEY_CHANGE: i64 = 1005;
    /// The username is unknown, or could not be looked up.
    pub const UNKNOWN_USER: i64 = 1006;
    /// That is us.
    pub const TO_SELF: i64 = 1007;
    /// The text breaks the wire's rules (a control character, say).
    pub const INVALID_TEXT: i64 = 1008;
    /// The disk is full: nothing more is stored until space is freed.
    pub const DISK_FULL: i64 = 1009;
    /// The store failed.
    pub const STORAGE: i64 = 1010;
    /// The phonebook gives the claimed name to someone else: accept with `anyway`.
    pub const IMPOSTOR: i64 = 1011;
    /// Too many requests of this client are in flight.
    pub const TOO_MANY_REQUESTS: i64 = 1012;
    /// Too many clients are connected.
    pub const TOO_MANY_CLIENTS: i64 = 1013;
    /// Several contacts match: name one by more of its key.
    pub const AMBIGUOUS: i64 = 1014;
    /// The daemon is stopping.
    pub const STOPPING: i64 = 1015;
    /// The method needs the network, which this process does not run (a command that opened
    /// the profile only to read it).
    pub const NO_NETWORK: i64 = 1016;
    /// The profile is open read-only here: nothing can be changed.
    pub const READ_ONLY: i64 = 1017;
    /// `stop` was called on an owner with a screen: it is quit there, by its user.
    pub const NOT_STOPPABLE: i64 = 1018;

    /// An error with `code`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into() }
    }
}
