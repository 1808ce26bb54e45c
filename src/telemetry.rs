//! Logging and tracing setup (tracing-subscriber), pretty or JSON.
