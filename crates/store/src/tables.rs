//! The redb tables (`specs/store.md` §2). Names are opaque on purpose: redb stores them in
//! plaintext.

use redb::TableDefinition;

/// Every table, with the number that identifies it in associated data and key derivation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Table {
    /// Format version and key check.
    Meta = 0,
    /// Contacts and message requests, by conversation id.
    Contacts = 1,
    /// Username → conversation id.
    Names = 2,
    /// PeerId → conversation id.
    Peers = 3,
    /// The message log: conversation id ‖ position → entry.
    Log = 4,
    /// Message ids seen or sent, per conversation → position in the log.
    Ids = 5,
    /// Messages waiting for an acknowledgement: conversation id ‖ sequence number → entry.
    Outbox = 6,
    /// Settings, by keyed hash of their name.
    Settings = 7,
    /// Olm state (`specs/sealed.md` §7): the account, and each conversation's sessions.
    Olm = 8,
}

impl Table {
    pub(crate) const ALL: [Table; 9] = [
        Table::Meta,
        Table::Contacts,
        Table::Names,
        Table::Peers,
        Table::Log,
        Table::Ids,
        Table::Outbox,
        Table::Settings,
        Table::Olm,
    ];

    /// The redb table name.
    pub(crate) fn name(self) -> &'static str {
        ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"][self as usize]
    }

    /// What the table holds, for error messages.
    pub(crate) fn purpose(self) -> &'static str {
        match self {
            Table::Meta => "metadata",
            Table::Contacts => "contacts",
            Table::Names => "username index",
            Table::Peers => "peer index",
            Table::Log => "message log",
            Table::Ids => "message id index",
            Table::Outbox => "outbox",
            Table::Settings => "settings",
            Table::Olm => "olm state",
        }
    }

    pub(crate) fn def(self) -> TableDefinition<'static, &'static [u8], &'static [u8]> {
        TableDefinition::new(self.name())
    }
}
