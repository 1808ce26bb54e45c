//! Watching the RDB a relay forwards: keys for progress, and a sample of them for verification.
//!
//! The target parses and checks the RDB itself; Ferry only looks. So a parse error here stops
//! the watching (progress then counts bytes only) and never the transfer. Big values stream
//! through the parser in pieces, which are dropped at once: memory stays at the parser's window,
//! whatever the size of one value.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::rdb::{Item, Parser};

/// A side parser over the relayed bytes.
pub(crate) struct Observer {
    parser: Option<Parser>,
    /// Keys seen so far.
    pub keys: u64,
    /// Reservoir sample of `(db, key)`, at most `capacity`.
    sample: Vec<(u32, Bytes)>,
    capacity: usize,
    /// xorshift state for the reservoir (no need for a cryptographic source).
    rng: u64,
    /// Why watching stopped, if it did.
    pub stopped: Option<String>,
}

impl Observer {
    /// `stream_over`: values bigger than this are parsed piece by piece instead of whole.
    pub fn new(sample_keys: usize, stream_over: usize) -> Observer {
        Observer {
            parser: Some(Parser::new().streaming_values_over(stream_over, true)),
            keys: 0,
            sample: Vec::with_capacity(sample_keys.min(4096)),
            capacity: sample_keys,
            rng: 0x9E37_79B9_7F4A_7C15,
            stopped: None,
        }
    }

    /// Feeds the next relayed chunk.
    pub fn feed(&mut self, chunk: &[u8]) {
        let Some(mut parser) = self.parser.take() else {
            return;
        };
        parser.push(chunk);
        loop {
            match parser.next_item() {
                Ok(Some(Item::Entry(entry))) => {
                    let db = u32::try_from(entry.db).unwrap_or(u32::MAX);
                    self.seen(db, entry.key);
                }
                Ok(Some(Item::BigStart(big))) => {
                    let db = u32::try_from(big.db).unwrap_or(u32::MAX);
                    self.seen(db, big.key);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.parser = Some(parser);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "relay: the side parse of the RDB stopped (the target checks the RDB itself)");
                    self.stopped = Some(e.to_string());
                    return;
                }
            }
        }
    }

    fn seen(&mut self, db: u32, key: Bytes) {
        self.keys += 1;
        if self.sample.len() < self.capacity {
            // Copied: a slice would keep the parser's whole window alive.
            self.sample.push((db, Bytes::copy_from_slice(&key)));
            return;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let slot = (self.rng % self.keys) as usize;
        if slot < self.capacity {
            self.sample[slot] = (db, Bytes::copy_from_slice(&key));
        }
    }

    /// The sample, per db.
    pub fn sample(&self) -> BTreeMap<u32, Vec<Bytes>> {
        let mut out: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
        for (db, key) in &self.sample {
            out.entry(*db).or_default().push(key.clone());
        }
        out
    }
}
