//! The request-response codec for `/tincan/chat/1`: the framing of `specs/wire.md` §2 over a
//! libp2p stream, with its size limits.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use tincan_wire::{FrameError, MAX_REQUEST_LEN, MAX_RESPONSE_LEN, Refusal, Request, Response};

/// The protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new(tincan_wire::PROTOCOL);

/// A request as read from a stream: decoded, or refused before or while decoding. A refused
/// request is still answered (with its refusal), so the sender learns why.
#[derive(Debug)]
pub enum Inbound {
    /// A valid request.
    Request(Request),
    /// Not a valid request; answer with this refusal. `reason` is for the logs.
    Invalid {
        /// The refusal to answer with.
        refusal: Refusal,
        /// What was wrong.
        reason: String,
    },
}

/// Reads and writes frames. Stateless; the limits are those of `specs/wire.md`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Inbound;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Inbound>
    where
        T: AsyncRead + Unpin + Send,
    {
        let payload = match read_frame(io, MAX_REQUEST_LEN).await? {
            Ok(payload) => payload,
            // The payload is not read at all: the sender learns "too large" at once.
            Err(FrameError::TooLarge { len, max }) => {
                return Ok(Inbound::Invalid {
                    refusal: Refusal::TooLarge,
                    reason: format!("request frame of {len} bytes, over {max}"),
                });
            }
            Err(e) => {
                return Ok(Inbound::Invalid { refusal: Refusal::Malformed, reason: e.to_string() });
            }
        };
        Ok(match Request::decode(&payload) {
            Ok(request) => Inbound::Request(request),
            Err(e) => {
                Inbound::Invalid { refusal: Refusal::for_decode_error(&e), reason: e.to_string() }
            }
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        let payload = read_frame(io, MAX_RESPONSE_LEN)
            .await?
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("response {e}")))?;
        Response::decode(&payload)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("response: {e}")))
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Inbound,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let Inbound::Request(request) = request else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an invalid request is never sent",
            ));
        };
        let frame = request.to_frame();
        if frame.len() - tincan_wire::HEADER_LEN > MAX_REQUEST_LEN as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "request too large to send"));
        }
        io.write_all(&frame).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.to_frame()).await?;
        io.close().await
    }
}

/// Reads one frame: the header, checked against `max` before anything else is read, then the
/// payload. The outer error is I/O (including a stream that ends early); the inner one a frame
/// that breaks the limits.
async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    max: u32,
) -> io::Result<Result<Vec<u8>, FrameError>> {
    let mut header = [0u8; tincan_wire::HEADER_LEN];
    io.read_exact(&mut header).await?;
    let len = match tincan_wire::payload_len(header, max) {
        Ok(len) => len,
        Err(e) => return Ok(Err(e)),
    };
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(Ok(payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;
    use tincan_wire::{Ack, MessageId, Outcome};

    fn read_request(bytes: &[u8]) -> io::Result<Inbound> {
        futures::executor::block_on(Codec.read_request(&PROTOCOL, &mut Cursor::new(bytes.to_vec())))
    }

    #[test]
    fn an_oversized_frame_is_refused_as_too_large_without_reading_it() {
        let mut frame = (MAX_REQUEST_LEN + 1).to_be_bytes().to_vec();
        frame.extend_from_slice(&[0; 16]);
        match read_request(&frame).unwrap() {
            Inbound::Invalid { refusal: Refusal::TooLarge, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_refused_as_malformed_and_truncation_is_an_error() {
        match read_request(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap() {
            Inbound::Invalid { refusal: Refusal::Malformed, .. } => {}
            other => panic!("{other:?}"),
        }
        match read_request(&[0, 0, 0, 0]).unwrap() {
            Inbound::Invalid { refusal: Refusal::Malformed, .. } => {}
            other => panic!("{other:?}"),
        }
        assert!(read_request(&[0, 0, 0, 9, 1]).is_err(), "a stream ending early is an I/O error");
        match read_request(&[0, 0, 0, 4, 0x83, 0x03, 0x01, 0x80]).unwrap() {
            Inbound::Invalid { refusal: Refusal::UnsupportedVersion, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn responses_roundtrip_and_oversized_ones_are_errors() {
        let response =
            Response::Acks(vec![Ack { id: MessageId([1; 16]), outcome: Outcome::Stored }]);
        let mut written = Cursor::new(Vec::new());
        futures::executor::block_on(Codec.write_response(
            &PROTOCOL,
            &mut written,
            response.clone(),
        ))
        .unwrap();
        let read = futures::executor::block_on(
            Codec.read_response(&PROTOCOL, &mut Cursor::new(written.into_inner())),
        );
        assert_eq!(read.unwrap(), response);
        let mut big = (MAX_RESPONSE_LEN + 1).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 8]);
        let err =
            futures::executor::block_on(Codec.read_response(&PROTOCOL, &mut Cursor::new(big)))
                .unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
    }
}
