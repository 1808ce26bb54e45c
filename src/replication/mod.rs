//! The replica side of Redis replication: handshake, PSYNC, RDB framing, ACKs.
