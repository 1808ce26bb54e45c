//! Big keys (todo)
