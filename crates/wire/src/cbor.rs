//! The subset of CBOR (RFC 8949) that tincan uses, in core deterministic encoding (§4.2.1).
//!
//! Only unsigned integers, byte strings, text strings, arrays and maps with definite lengths
//! exist here. Every argument uses its shortest form, and map keys are unsigned integers in
//! strictly increasing order. The [`Reader`] rejects anything else, so for every accepted input
//! re-encoding the decoded value gives back exactly the same bytes.
//!
//! Public so that the crates built on this one (`tincan-seal`) encode their structures with the
//! same codec and the same rules.

use crate::DecodeError;

const MAJOR_UINT: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;

/// Appends deterministic CBOR items to a buffer. Encoding cannot fail.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose buffer holds `capacity` bytes before it grows.
    pub fn with_capacity(capacity: usize) -> Self {
        Writer { buf: Vec::with_capacity(capacity) }
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes an unsigned integer.
    pub fn uint(&mut self, value: u64) {
        self.head(MAJOR_UINT, value);
    }

    /// Writes a byte string.
    pub fn bytes(&mut self, value: &[u8]) {
        self.head(MAJOR_BYTES, value.len() as u64);
        self.buf.extend_from_slice(value);
    }

    /// Writes a text string.
    pub fn text(&mut self, value: &str) {
        self.head(MAJOR_TEXT, value.len() as u64);
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// Writes an array head of `len` items; the caller writes the items next.
    pub fn array(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    /// Writes a map head of `len` pairs; the caller writes the keys and values next.
    pub fn map(&mut self, len: usize) {
        self.head(MAJOR_MAP, len as u64);
    }

    /// Writes a map key. Callers write keys in increasing order; the decoder enforces it.
    pub fn key(&mut self, key: u64) {
        self.uint(key);
    }

    /// Writes the initial byte and argument in the shortest form (RFC 8949 §4.2.1).
    fn head(&mut self, major: u8, arg: u64) {
        let major = major << 5;
        if let Ok(small) = u8::try_from(arg)
            && small < 24
        {
            self.buf.push(major | small);
        } else if let Ok(arg) = u8::try_from(arg) {
            self.buf.extend_from_slice(&[major | 24, arg]);
        } else if let Ok(arg) = u16::try_from(arg) {
            self.buf.push(major | 25);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        } else if let Ok(arg) = u32::try_from(arg) {
            self.buf.push(major | 26);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        } else {
            self.buf.push(major | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
    }
}

/// Reads deterministic CBOR items from a byte slice, treating it as hostile.
///
/// Lengths are checked against the caller's limit and against the bytes actually left before
/// anything is allocated, so a forged length can neither allocate nor read out of bounds.
#[derive(Debug)]
pub struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `input`, from its first byte.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input, pos: 0 }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.input[self.pos..]
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless the whole input was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.input.len() - self.pos {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes(extra)),
        }
    }

    /// Reads an unsigned integer in its shortest form.
    pub fn uint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.head(MAJOR_UINT, field)
    }

    /// Reads a byte string of at most `max` bytes.
    pub fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.head(MAJOR_BYTES, field)?;
        self.take(field, len, max)
    }

    /// Reads a UTF-8 text string of at most `max` bytes.
    pub fn text(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        let len = self.head(MAJOR_TEXT, field)?;
        let raw = self.take(field, len, max)?;
        std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// Reads an array head with at most `max` items and returns the item count.
    ///
    /// The count is also checked against the bytes left (every item takes at least one byte),
    /// so callers may reserve `count` slots without trusting the input.
    pub fn array(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.head(MAJOR_ARRAY, field)?;
        self.count(field, len, max)
    }

    /// Reads a map head with at most `max` pairs and returns the pair count.
    pub fn map(&mut self, field: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.head(MAJOR_MAP, field)?;
        self.count(field, len, max)
    }

    /// Reads the next map key and checks that it is exactly `expected`.
    ///
    /// Messages have a fixed set of keys written in increasing order, so reading them in that
    /// order both checks the canonical order and finds missing or unknown fields.
    pub fn key(&mut self, expected: u64, field: &'static str) -> Result<(), DecodeError> {
        let found = self.head(MAJOR_UINT, "map key")?;
        if found == expected {
            Ok(())
        } else if found < expected {
            Err(DecodeError::NonCanonical { field })
        } else {
            Err(DecodeError::MissingField(field))
        }
    }

    fn count(&self, field: &'static str, len: u64, max: usize) -> Result<usize, DecodeError> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > max {
            return Err(DecodeError::TooLong { field, len: len as u64, max: max as u64 });
        }
        let left = self.input.len() - self.pos;
        if len > left {
            return Err(DecodeError::Truncated(len - left));
        }
        Ok(len)
    }

    fn take(&mut self, field: &'static str, len: u64, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.count(field, len, max)?;
        let start = self.pos;
        self.pos += len;
        Ok(&self.input[start..self.pos])
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.input.get(self.pos).ok_or(DecodeError::Truncated(1))?;
        self.pos += 1;
        Ok(b)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let left = self.input.len() - self.pos;
        if left < N {
            return Err(DecodeError::Truncated(N - left));
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.input[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// Reads an item head of major type `major` and returns its argument, rejecting
    /// indefinite lengths and arguments not in their shortest form.
    fn head(&mut self, major: u8, field: &'static str) -> Result<u64, DecodeError> {
        let initial = self.byte()?;
        if initial >> 5 != major {
            return Err(DecodeError::UnexpectedType { field, expected: major_name(major) });
        }
        let (arg, shortest) = match initial & 0x1f {
            small @ 0..=23 => return Ok(u64::from(small)),
            24 => {
                let v = u64::from(self.byte()?);
                (v, v >= 24)
            }
            25 => {
                let v = u64::from(u16::from_be_bytes(self.be()?));
                (v, v > u64::from(u8::MAX))
            }
            26 => {
                let v = u64::from(u32::from_be_bytes(self.be()?));
                (v, v > u64::from(u16::MAX))
            }
            27 => {
                let v = u64::from_be_bytes(self.be()?);
                (v, v > u64::from(u32::MAX))
            }
            // 28-30 are reserved and 31 is an indefinite length: neither is deterministic.
            _ => return Err(DecodeError::NonCanonical { field }),
        };
        if shortest { Ok(arg) } else { Err(DecodeError::NonCanonical { field }) }
    }
}

fn major_name(major: u8) -> &'static str {
    match major {
        MAJOR_UINT => "unsigned integer",
        MAJOR_BYTES => "byte string",
        MAJOR_TEXT => "text string",
        MAJOR_ARRAY => "array",
        _ => "map",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_uint(value: u64, hex: &str) {
        let mut w = Writer::default();
        w.uint(value);
        let bytes = w.into_bytes();
        assert_eq!(hex::encode(&bytes), hex);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.uint("n"), Ok(value));
        r.finish().unwrap();
    }

    #[test]
    fn uints_use_the_shortest_form() {
        // Examples from RFC 8949 Appendix A.
        check_uint(0, "00");
        check_uint(23, "17");
        check_uint(24, "1818");
        check_uint(255, "18ff");
        check_uint(256, "190100");
        check_uint(65_535, "19ffff");
        check_uint(65_536, "1a00010000");
        check_uint(1_000_000, "1a000f4240");
        check_uint(4_294_967_296, "1b0000000100000000");
        check_uint(u64::MAX, "1bffffffffffffffff");
    }

    #[test]
    fn non_shortest_and_indefinite_forms_are_rejected() {
        for hex in ["1817", "1900ff", "1a0000ffff", "1b00000000ffffffff", "1f", "1c"] {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(
                Reader::new(&bytes).uint("n"),
                Err(DecodeError::NonCanonical { field: "n" }),
                "{hex}"
            );
        }
        let indefinite_text = hex::decode("7f6161ff").unwrap();
        assert!(matches!(
            Reader::new(&indefinite_text).text("t", 10),
            Err(DecodeError::NonCanonical { .. })
        ));
    }

    #[test]
    fn lengths_are_checked_before_reading() {
        // A byte string claiming 2^64-1 bytes with 1 byte behind it.
        let forged = hex::decode("5bffffffffffffffff00").unwrap();
        assert!(matches!(Reader::new(&forged).bytes("b", 16), Err(DecodeError::TooLong { .. })));
        let short = hex::decode("4501").unwrap();
        assert_eq!(Reader::new(&short).bytes("b", 16), Err(DecodeError::Truncated(4)));
        let array = hex::decode("9a00010000").unwrap();
        assert!(matches!(Reader::new(&array).array("a", 64), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn wrong_types_and_trailing_bytes_are_typed_errors() {
        let text = hex::decode("6161").unwrap();
        assert_eq!(
            Reader::new(&text).uint("n"),
            Err(DecodeError::UnexpectedType { field: "n", expected: "unsigned integer" })
        );
        let two = hex::decode("0000").unwrap();
        let mut r = Reader::new(&two);
        r.uint("n").unwrap();
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes(1)));
        let bad_utf8 = hex::decode("62c328").unwrap();
        assert_eq!(
            Reader::new(&bad_utf8).text("t", 8),
            Err(DecodeError::InvalidUtf8 { field: "t" })
        );
    }
}
