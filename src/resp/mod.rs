//! RESP2/RESP3: an incremental decoder and an encoder.
