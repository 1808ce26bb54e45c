//! Small readers of RESP replies shared by the fact gathering ([`super::facts`]) and the ACL
//! probes ([`super::permissions`]).

use super::error::CallError;
use crate::resp::Frame;

/// A bulk or simple string reply as text.
pub fn text(frame: &Frame) -> Option<String> {
    frame
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The error for a reply of an unexpected shape, quoting its start.
pub fn unexpected(command: &str, frame: &Frame) -> CallError {
    CallError::Unexpected {
        command: command.to_string(),
        detail: frame.describe().chars().take(120).collect(),
    }
}
