//! Request bodies and parameters, parsed so that a refusal names the field to fix.
//!
//! serde_json reports *what* is wrong ("unknown variant `fast`") but not *where*, and a client
//! sending a whole spec needs to know which field to change. So bodies are read as raw bytes
//! (size-capped by actix's payload limit), parsed to a JSON value, and, when the typed
//! deserialization fails, each part is tried on its own to find the field that fails.

use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::problem::ApiError;
use crate::jobs::{MigrationPatch, OptionsPatch};
use crate::spec::{Endpoint, MigrationSpec, Mode, OnConflict, Options, Transfer, Verify};

/// Parses a `POST /v1/migrations` body.
pub fn spec(body: &[u8]) -> Result<MigrationSpec, ApiError> {
    parse(body, |value| {
        locate(value, |key, v| match key {
            "source" | "target" => endpoint(key, v),
            "options" => options::<Options>(v),
            _ => top_level_field(key, v),
        })
    })
}

/// Parses a `PATCH /v1/migrations/{id}` body.
pub fn patch(body: &[u8]) -> Result<MigrationPatch, ApiError> {
    parse(body, |value| {
        locate(value, |key, v| match key {
            "source" | "target" => endpoint(key, v),
            "options" => options::<OptionsPatch>(v),
            _ => top_level_field(key, v),
        })
    })
}

fn parse<T: DeserializeOwned>(
    body: &[u8],
    locate: impl Fn(&Value) -> Option<String>,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            Some("body".to_string()),
            "the request body is empty; send a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(
            Some("body".to_string()),
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            Some("body".to_string()),
            "the body must be a JSON object",
        ));
    }
    T::deserialize(&value).map_err(|e| {
        let message = e.to_string();
        let field = locate(&value)
            .or_else(|| backticked(&message))
            .unwrap_or_else(|| "body".into());
        ApiError::invalid(Some(field.clone()), format!("`{field}`: {message}"))
    })
}

/// Tries each member of the top-level object with `check`, returning the first failing field.
fn locate(value: &Value, check: impl Fn(&str, &Value) -> Option<String>) -> Option<String> {
    let object = value.as_object()?;
    object.iter().find_map(|(key, v)| check(key, v))
}

fn top_level_field(key: &str, v: &Value) -> Option<String> {
    let fails = match key {
        "name" => fails::<Option<String>>(v),
        "mode" => fails::<Mode>(v),
        "schedule" => return schedule(v),
        _ => true, // unknown field
    };
    fails.then(|| key.to_string())
}

fn endpoint(key: &str, v: &Value) -> Option<String> {
    let (fine, known): (bool, &[&str]) = if key == "source" {
        (!fails::<crate::spec::Source>(v), &["url", "tls", "rdb"])
    } else {
        (!fails::<Endpoint>(v), &["url", "tls"])
    };
    if fine {
        return None;
    }
    let Some(o) = v.as_object() else {
        return Some(key.to_string());
    };
    if let Some(unknown) = o.keys().find(|k| !known.contains(&k.as_str())) {
        return Some(format!("{key}.{unknown}"));
    }
    if let Some(tls) = o.get("tls") {
        // Not only a failing object: serde would also read the settings from an array.
        if !(tls.is_object() || tls.is_null()) || fails::<crate::spec::TlsSettings>(tls) {
            let field = tls
                .as_object()
                .and_then(|t| {
                    t.iter().find(|(k, v)| match k.as_str() {
                        "insecure_skip_verify" => fails::<bool>(v),
                        "ca_file" | "cert_file" | "key_file" | "server_name" => {
                            fails::<Option<String>>(v)
                        }
                        _ => true,
                    })
                })
                .map(|(k, _)| format!("{key}.tls.{k}"));
            return Some(field.unwrap_or(format!("{key}.tls")));
        }
    }
    if o.get("rdb")
        .is_some_and(|rdb| !(rdb.is_object() || rdb.is_null()))
    {
        return Some(format!("{key}.rdb"));
    }
    Some(format!("{key}.url"))
}

fn options<T: DeserializeOwned>(v: &Value) -> Option<String> {
    if !fails::<T>(v) {
        return None;
    }
    let Some(o) = v.as_object() else {
        return Some("options".into());
    };
    let bad = o.iter().find(|(k, v)| match k.as_str() {
        "on_conflict" => fails::<OnConflict>(v),
        "verify" => fails::<Verify>(v),
        "transfer" => fails::<Transfer>(v),
        "backup"
        | "pause_source_writes_on_cutover"
        | "pause_during_verification"
        | "auto_cutover" => fails::<bool>(v),
        "limits" => fails::<crate::spec::Limits>(v),
        _ => true,
    });
    Some(match bad {
        Some((k, _)) => format!("options.{k}"),
        None => "options".into(),
    })
}

/// The failing field of a `schedule`.
fn schedule(v: &Value) -> Option<String> {
    if !fails::<crate::spec::Schedule>(v) {
        return None;
    }
    let Some(o) = v.as_object() else {
        return Some("schedule".into());
    };
    let bad = o.iter().find_map(|(k, v)| match k.as_str() {
        "start_at" => fails::<Option<chrono::DateTime<chrono::Utc>>>(v)
            .then(|| "schedule.start_at".to_string()),
        "cutover_window" => {
            if !fails::<Option<crate::spec::CutoverWindow>>(v) {
                return None;
            }
            let field = v.as_object().and_then(|w| {
                w.iter()
                    .find(|(k, v)| {
                        !matches!(k.as_str(), "from" | "to")
                            || fails::<chrono::DateTime<chrono::Utc>>(v)
                    })
                    .map(|(k, _)| format!("schedule.cutover_window.{k}"))
            });
            Some(field.unwrap_or_else(|| "schedule.cutover_window".into()))
        }
        other => Some(format!("schedule.{other}")),
    });
    Some(bad.unwrap_or_else(|| "schedule".into()))
}

fn fails<T: DeserializeOwned>(v: &Value) -> bool {
    T::deserialize(v).is_err()
}

/// The first `` `name` `` in a serde message ("missing field `source`").
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Raw bodies over the limit become 413; other payload failures 400.
pub fn payload_error(err: PayloadError, limit: usize) -> ApiError {
    match err {
        PayloadError::Overflow => ApiError::TooLarge { limit },
        other => ApiError::invalid(
            Some("body".to_string()),
            format!("cannot read the body: {other}"),
        ),
    }
}

/// For actix's JSON extractor (not used for the main bodies, but kept consistent).
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest, limit: usize) -> actix_web::Error {
    match err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::TooLarge { limit }.into()
        }
        JsonPayloadError::ContentType => {
            ApiError::UnsupportedMediaType("send the body as application/json".into()).into()
        }
        other => ApiError::invalid(Some("body".to_string()), other.to_string()).into(),
    }
}

pub fn query_error(err: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    let message = match &err {
        QueryPayloadError::Deserialize(e) => e.to_string(),
        other => other.to_string(),
    };
    let field = query_field(req.query_string(), &message);
    let detail = match &field {
        Some(f) => format!("query parameter `{f}`: {message}"),
        None => format!("bad query parameter: {message}"),
    };
    ApiError::invalid(field, detail).into()
}

/// Which query parameter a serde_urlencoded message is about: the one it names ("unknown field
/// `x`"), the one whose value it quotes ("unknown variant `v`"), or the numeric one that is not a
/// number.
fn query_field(query: &str, message: &str) -> Option<String> {
    if message.starts_with("unknown field") || message.starts_with("missing field") {
        return backticked(message);
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let quoted = backticked(message);
    pairs
        .iter()
        .find(|(_, v)| quoted.as_deref() == Some(v.as_str()))
        .or_else(|| {
            pairs
                .iter()
                .find(|(k, v)| matches!(k.as_str(), "after" | "limit") && v.parse::<u64>().is_err())
        })
        .map(|(k, _)| k.clone())
}

pub fn path_error(err: PathError, req: &HttpRequest) -> actix_web::Error {
    // `GET /v1/backups/upload` reaches `GET /v1/backups/{id}`: the path exists, the method not.
    if let Some(refusal) = super::method_not_allowed(req.method().as_str(), req.path(), true) {
        return refusal.into();
    }
    ApiError::invalid(
        Some("id".to_string()),
        format!("the id in the path is not an id (a UUID): {err}"),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(body: &str) -> String {
        match spec(body.as_bytes()) {
            Err(ApiError::Invalid { field, .. }) => field.unwrap_or_default(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_of_bad_input_names_its_field() {
        let ok = r#""source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"}"#;
        assert_eq!(field_of(&format!("{{{ok},\"speed\":1}}")), "speed");
        assert_eq!(field_of(&format!("{{{ok},\"mode\":\"fast\"}}")), "mode");
        assert_eq!(
            field_of(&format!("{{{ok},\"options\":{{\"verify\":\"all\"}}}}")),
            "options.verify"
        );
        assert_eq!(
            field_of(&format!("{{{ok},\"options\":{{\"x\":1}}}}")),
            "options.x"
        );
        assert_eq!(
            field_of(r#"{"source":{"url":"http://a:1"},"target":{"url":"redis://b:2"}}"#),
            "source.url"
        );
        assert_eq!(field_of(r#"{"source":{"url":"redis://a:1"}}"#), "target");
        assert_eq!(field_of("[1]"), "body");
        assert_eq!(field_of("{"), "body");
        assert_eq!(field_of(""), "body");
    }

    #[test]
    fn query_errors_name_the_parameter() {
        assert_eq!(
            query_field("state=x", "unknown variant `x`, expected …").as_deref(),
            Some("state")
        );
        assert_eq!(
            query_field("a=1&limit=-1", "invalid digit found in string").as_deref(),
            Some("limit")
        );
        assert_eq!(
            query_field("colour=red", "unknown field `colour`, expected `state`").as_deref(),
            Some("colour")
        );
    }

    #[test]
    fn a_valid_spec_parses_with_defaults() {
        let s =
            spec(br#"{"source":{"url":"redis://a:1"},"target":{"url":"redis://b:2"}}"#).unwrap();
        assert_eq!(s.mode, Mode::Snapshot);
    }
}
