//! The app helpers live in tests/common/app.rs (shared with tests/backup).
pub use crate::common::app::*;
