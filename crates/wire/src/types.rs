//! The value types carried in messages. Each is valid by construction: the only ways to build
//! one check the limits from `specs/wire.md`.

use std::fmt;
use std::num::NonZeroU64;

use crate::error::InvalidValue;

/// Longest username, in bytes (all username characters are ASCII).
pub const MAX_USERNAME_LEN: usize = 32;
/// Longest message text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 4096;
/// Longest PeerId, in bytes of its binary (multihash) form.
pub const MAX_PEER_ID_LEN: usize = 64;
/// Shortest PeerId, in bytes: a multihash has a code, a length and at least one digest byte.
pub const MIN_PEER_ID_LEN: usize = 3;

/// A 128-bit message identifier, unique per message. The sender picks it at random.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub [u8; 16]);

impl MessageId {
    /// The raw bytes, as they are on the wire.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for MessageId {
    type Err = InvalidValue;

    /// Parses the 32 lowercase or uppercase hex digits that [`Display`](fmt::Display) prints.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidValue::new("message id", "expected 32 hex digits");
        if s.len() != 32 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(MessageId(out))
    }
}

/// A sender's per-conversation sequence number. The first message of a conversation has
/// sequence number 1, and each later one the next integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(NonZeroU64);

impl Seq {
    /// The first sequence number of a conversation.
    pub const FIRST: Seq = Seq(NonZeroU64::MIN);

    /// Wraps `n`, which must not be zero.
    pub fn new(n: u64) -> Result<Seq, InvalidValue> {
        NonZeroU64::new(n).map(Seq).ok_or(InvalidValue::new("seq", "sequence numbers start at 1"))
    }

    /// The number itself.
    pub fn get(self) -> u64 {
        self.0.get()
    }

    /// The sequence number after this one, or `None` after `u64::MAX`.
    pub fn next(self) -> Option<Seq> {
        self.0.checked_add(1).map(Seq)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, UTC. Informational only: peers' clocks are not trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnixMillis(pub u64);

/// A username: 1 to 32 characters of `[a-z0-9_.-]`, starting with a letter or a digit.
///
/// [`Username::new`] folds ASCII uppercase to lowercase, so `Alice` and `alice` are one name.
/// Decoding accepts only the folded form, so every name has exactly one encoding.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// Folds `name` to lowercase and checks it.
    pub fn new(name: &str) -> Result<Username, InvalidValue> {
        Username::canonical(&name.to_ascii_lowercase())
    }

    /// Checks `name`, which must already be lowercase.
    pub fn canonical(name: &str) -> Result<Username, InvalidValue> {
        const WHAT: &str = "username";
        if name.is_empty() {
            return Err(InvalidValue::new(WHAT, "must not be empty"));
        }
        if name.len() > MAX_USERNAME_LEN {
            return Err(InvalidValue::new(WHAT, "must be at most 32 characters"));
        }
        if !name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-')) {
            return Err(InvalidValue::new(
                WHAT,
                "may contain only lowercase letters a-z, digits 0-9, '_', '.' and '-'",
            ));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(InvalidValue::new(WHAT, "must start with a letter or a digit"));
        }
        Ok(Username(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Username({:?})", self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Username {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Username::new(s)
    }
}

/// The binary form of a libp2p PeerId (a multihash), as the wire carries it.
///
/// This crate does not depend on libp2p; `tincan-node` turns these bytes into a `PeerId`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerIdBytes(Vec<u8>);

impl PeerIdBytes {
    /// Wraps `bytes`, which must be 3 to 64 bytes long.
    pub fn new(bytes: &[u8]) -> Result<PeerIdBytes, InvalidValue> {
        if !(MIN_PEER_ID_LEN..=MAX_PEER_ID_LEN).contains(&bytes.len()) {
            return Err(InvalidValue::new("peer id", "must be 3 to 64 bytes"));
        }
        Ok(PeerIdBytes(bytes.to_vec()))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for PeerIdBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerIdBytes(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// The text of a chat message: 1 to 4,096 bytes of UTF-8 without control characters other
/// than line feed and tab.
///
/// Splits `text` into pieces of at most [`MAX_TEXT_LEN`] bytes, in order, for a text longer
/// than one message holds (`specs/wire.md` §4.3: the client splits). A piece ends after a line
/// break or a space in its last quarter when there is one, else at a character boundary; no
/// character is cut, nothing is dropped, and the pieces joined are `text`.
pub fn split_text(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let window = &rest[..end];
        let floor = end - end / 4;
        let cut = window
            .rfind('\n')
            .filter(|&i| i >= floor)
            .or_else(|| window.rfind(' ').filter(|&i| i >= floor))
            .map_or(end, |i| i + 1);
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

/// Whether `c` is a Unicode bidirectional formatting character: the embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069) and the marks (U+061C, U+200E, U+200F). Text may
/// carry them, but displays remove them, so that text cannot show in another order than it
/// reads ("Trojan Source").
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{061C}' | '\u{200E}' | '\u{200F}')
}

/// Refusing control characters at the protocol level means no peer can smuggle terminal
/// escape sequences (`ESC`, `CSI`, C1 controls) or carriage returns into a conversation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

impl Text {
    /// Checks `text` against the limits.
    pub fn new(text: &str) -> Result<Text, InvalidValue> {
        const WHAT: &str = "text";
        if text.is_empty() {
            return Err(InvalidValue::new(WHAT, "must not be empty"));
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(InvalidValue::new(WHAT, "must be at most 4096 bytes"));
        }
        if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            return Err(InvalidValue::new(WHAT, "must not contain control characters"));
        }
        Ok(Text(text.to_owned()))
    }

    /// The text as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text {
    /// Prints only the length: message text is private and must not reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    /// Issue 16: a text longer than a message used to be cut at 4,096 silently.
    #[test]
    fn issue_16_long_texts_split_whole() {
        let words = "lorem ipsum ".repeat(1000);
        let pieces = split_text(&words);
        assert!(pieces.len() >= 3);
        assert!(pieces.iter().all(|p| p.len() <= MAX_TEXT_LEN && !p.is_empty()));
        assert_eq!(pieces.concat(), words, "nothing lost, nothing added, in order");
        assert!(pieces[0].ends_with(' '), "cut after a space");
        let wide = "🥫".repeat(3000);
        let pieces = split_text(&wide);
        assert_eq!(pieces.concat(), wide);
        assert!(pieces.iter().all(|p| p.len() <= MAX_TEXT_LEN));
        assert_eq!(split_text("short"), ["short"]);
        assert_eq!(split_text(&"x".repeat(MAX_TEXT_LEN)).len(), 1);
        assert_eq!(split_text(&"x".repeat(MAX_TEXT_LEN + 1)).len(), 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_case_and_refuse_everything_else() {
        assert_eq!(Username::new("Alice_01").unwrap().as_str(), "alice_01");
        assert_eq!(Username::new("a.b-c").unwrap().as_str(), "a.b-c");
        assert_eq!(Username::new(&"x".repeat(32)).unwrap().as_str().len(), 32);
        for bad in ["", "-alice", ".", "..", "al ice", "alíce", "alice/x", &"x".repeat(33)] {
            assert!(Username::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Username::canonical("Alice").is_err());
    }

    #[test]
    fn text_refuses_control_characters_but_keeps_newlines() {
        assert!(Text::new("line one\n\tline two ünïcødé 🥫").is_ok());
        for bad in ["", "\u{1b}[2J", "a\rb", "\u{7f}", "\u{9b}31m", "nul\0"] {
            assert!(Text::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Text::new(&"é".repeat(2048)).is_ok());
        assert!(Text::new(&"é".repeat(2049)).is_err());
    }

    #[test]
    fn text_debug_hides_the_content() {
        let text = Text::new("secret plans").unwrap();
        assert_eq!(format!("{text:?}"), "Text(12 bytes)");
    }

    #[test]
    fn message_ids_print_and_parse_as_hex() {
        let id = MessageId([0xab; 16]);
        let shown = id.to_string();
        assert_eq!(shown, "ab".repeat(16));
        assert_eq!(shown.parse::<MessageId>().unwrap(), id);
        assert!("xyz".parse::<MessageId>().is_err());
        assert!("é".repeat(16).parse::<MessageId>().is_err());
    }

    #[test]
    fn seq_starts_at_one() {
        assert!(Seq::new(0).is_err());
        assert_eq!(Seq::FIRST.get(), 1);
        assert_eq!(Seq::new(u64::MAX).unwrap().next(), None);
    }
}
