//! Length-prefixed frames on QUIC streams: a `u32` big-endian length, then the
//! payload. A length above the reader's limit is refused before anything is
//! allocated or read.

use quinn::{ReadError, RecvStream, SendStream, WriteError};

use crate::error::NetError;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;

fn write_err(source: WriteError) -> NetError {
    NetError::Write { peer: None, source }
}

fn read_err(source: ReadError) -> NetError {
    NetError::Read { peer: None, source }
}

/// Writes one frame (`payload` must fit in a `u32`).
pub async fn write_frame(send: &mut SendStream, payload: &[u8]) -> Result<(), NetError> {
    let len = u32::try_from(payload.len()).map_err(|_| NetError::FrameTooLarge {
        len: payload.len() as u64,
        max: u32::MAX as usize,
        peer: None,
    })?;
    send.write_all(&len.to_be_bytes())
        .await
        .map_err(write_err)?;
    send.write_all(payload).await.map_err(write_err)
}

/// Reads one frame of at most `max_len` bytes; `Ok(None)` when the stream ends
/// cleanly between frames. A larger announced length fails with
/// [`NetError::FrameTooLarge`] without reading the body; a stream that ends
/// inside a frame fails with [`NetError::FrameTruncated`].
///
/// Not cancel-safe: dropping the future in the middle of a frame loses the
/// stream's framing.
pub async fn read_frame(
    recv: &mut RecvStream,
    max_len: usize,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut prefix = [0u8; LEN_PREFIX];
    let mut got = 0;
    while got < LEN_PREFIX {
        match recv.read(&mut prefix[got..]).await.map_err(read_err)? {
            Some(n) => got += n,
            None if got == 0 => return Ok(None),
            None => {
                return Err(NetError::FrameTruncated {
                    expected: LEN_PREFIX as u64,
                    got: got as u64,
                    peer: None,
                })
            }
        }
    }
    let len = u32::from_be_bytes(prefix);
    if u64::from(len) > max_len as u64 {
        return Err(NetError::FrameTooLarge {
            len: u64::from(len),
            max: max_len,
            peer: None,
        });
    }
    let len = len as usize;
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match recv.read(&mut body[got..]).await.map_err(read_err)? {
            Some(n) => got += n,
            None => {
                return Err(NetError::FrameTruncated {
                    expected: len as u64,
                    got: got as u64,
                    peer: None,
                })
            }
        }
    }
    Ok(Some(body))
}
