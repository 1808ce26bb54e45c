//! Settings from `config.toml`, overridden by `FERRY_*` environment variables.
