//! The data helpers live in tests/common/data.rs (shared with tests/backup and tests/matrix).
pub use crate::common::data::*;
