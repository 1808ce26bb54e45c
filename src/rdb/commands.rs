//! Values rewritten as plain commands (filled in below).
