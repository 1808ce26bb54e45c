//! RESP2, the Redis wire protocol: an incremental decoder and a command encoder.
//!
//! Ferry speaks RESP on three kinds of connection: the replica link (the source streams commands
//! to us exactly as it would to a replica), the pipelined target writer (we send RESTOREs and
//! replayed commands, and read back one reply per command), and short admin calls (INFO, DBSIZE,
//! SCAN...). All three read from a socket into a buffer that may hold half a frame, so decoding is
//! split in two phases, as in tokio's mini-redis:
//!
//! 1. [`decode::check`] walks the buffer without allocating and answers "a whole frame of N bytes
//!    is here", "not enough bytes yet" (`Ok(None)`: read more, this is not an error), or a real
//!    protocol error. Every length it meets is checked against [`Limits`] *before* anything is
//!    reserved, so a hostile peer cannot make us allocate gigabytes.
//! 2. [`decode::parse`] then builds the [`Frame`] from exactly those N bytes. Bulk strings are
//!    zero-copy slices of the frozen input ([`bytes::Bytes`]), so a 100 MB value is never copied.
//!
//! The byte length of each frame is part of the result because replication offsets count bytes:
//! a replica acknowledges "I have processed the stream up to byte X".
//!
//! [`encode`] writes commands (`*N\r\n$len\r\narg\r\n...`) into a caller-owned buffer that is
//! reused from one command to the next, so the hot path allocates nothing per key.
//!
//! We benchmarked this code against the `redis-protocol` crate (`benches/resp.rs`): ours decodes
//! about 1.3× and encodes about 9× faster on this machine, and gives frame lengths and raw bytes
//! in the same pass, so we kept it. The bench file's doc has the table.

pub mod decode;
pub mod encode;
mod frame;

pub use decode::{Decoder, Limits, ReplyError, RespError};
pub use encode::CommandBuf;
pub use frame::Frame;
