//! Modules (todo)
