//! Framing on a libp2p stream: a 4-byte big-endian payload length, then the payload.
//!
//! Each request-response exchange uses its own stream. The requester writes one request frame
//! and closes its write side; the responder writes one response frame and closes. Readers
//! check the announced length against the limit for the direction before reading the payload,
//! so an oversized frame is refused with [`FrameError::TooLarge`] instead of being truncated.

use crate::{FrameError, Request, Response};

/// The libp2p protocol id of the chat protocol.
pub const PROTOCOL: &str = "/tincan/chat/1";
/// Length of the frame header.
pub const HEADER_LEN: usize = 4;
/// Largest request payload, in bytes: a full batch of the largest sealed messages fits.
pub const MAX_REQUEST_LEN: u32 = 448 * 1024;
/// Largest response payload, in bytes: a full batch of acknowledgements fits.
pub const MAX_RESPONSE_LEN: u32 = 4 * 1024;

/// The payload length announced by `header`, checked against `max`.
pub fn payload_len(header: [u8; HEADER_LEN], max: u32) -> Result<usize, FrameError> {
    match u32::from_be_bytes(header) {
        0 => Err(FrameError::Empty),
        len if len > max => Err(FrameError::TooLarge { len, max }),
        len => Ok(len as usize),
    }
}

/// Prefixes `payload` with its length.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    // Every encodable request and response is below the limits (a test checks the largest),
    // so the length always fits; saturating keeps this total anyway, and a reader refuses it.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Request {
    /// Encodes the request as a complete frame: header and payload.
    pub fn to_frame(&self) -> Vec<u8> {
        frame(&self.encode())
    }
}

impl Response {
    /// Encodes the response as a complete frame: header and payload.
    pub fn to_frame(&self) -> Vec<u8> {
        frame(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked_against_the_limit() {
        assert_eq!(payload_len([0, 0, 0, 9], 10), Ok(9));
        assert_eq!(payload_len([0, 0, 0, 10], 10), Ok(10));
        assert_eq!(payload_len([0, 0, 0, 11], 10), Err(FrameError::TooLarge { len: 11, max: 10 }));
        assert_eq!(
            payload_len([0xff; 4], MAX_REQUEST_LEN),
            Err(FrameError::TooLarge { len: u32::MAX, max: MAX_REQUEST_LEN })
        );
        assert_eq!(payload_len([0; 4], 10), Err(FrameError::Empty));
    }

    #[test]
    fn frames_carry_the_length_big_endian() {
        let framed = frame(&[7; 300]);
        assert_eq!(&framed[..4], &[0, 0, 1, 44]);
        assert_eq!(payload_len(framed[..4].try_into().unwrap(), 300), Ok(300));
    }
}
