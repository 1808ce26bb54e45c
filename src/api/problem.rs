//! Errors as `application/problem+json` (RFC 9457).
//!
//! Every error the API returns goes through [`ApiError`], so every error has the same shape:
//! `type`, `title`, `status`, `detail`, plus `field` for bad input and `state` /
//! `allowed_actions` for illegal transitions. Extractor failures (malformed JSON, oversized
//! bodies, bad path or query parameters) are turned into the same shape by the handlers
//! installed in [`super::routes`], so a client never sees actix's plain-text errors, and bad
//! input is never a 500.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::aggregate::Action;
use crate::jobs::{JobError, UploadError};
use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"type": "urn:ferry:problem:conflict", "title": "Conflict", "status": 409,
    "detail": "cannot start a migration that is configured; allowed now: update, validate, cancel",
    "state": "configured", "allowed_actions": ["update", "validate", "cancel"]}))]
pub struct Problem {
    /// A URN naming the kind of problem (`urn:ferry:problem:<kind>`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
    /// For invalid input: the field to fix, as a dotted path (`options.verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For conflicts: the current state of the migration, backup or restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// For conflicts: what the current state allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_actions: Option<Vec<Action>>,
    /// For a corrupt RDB upload: the byte offset where the file stops being valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Invalid {
        field: Option<String>,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{detail}")]
    Conflict {
        detail: String,
        state: Option<String>,
        allowed: Option<Vec<Action>>,
        /// When the conflict is with what a named server holds or allows: the field naming it.
        field: Option<String>,
    },
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The path exists, but not with this method; the response names the ones it has (`Allow`).
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token whose role is too small for the operation, or a request a browser sent on
    /// behalf of another site (see `api::guard`).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Internal(String),
    /// The upload is not a valid RDB; `offset` is where it stops being one.
    #[error("{detail}")]
    CorruptRdb { offset: u64, detail: String },
    /// The file would not fit on disk or under the configured limit.
    #[error("{0}")]
    InsufficientStorage(String),
    /// Ferry cannot serve this now (not ready, or busy); the detail says why and when to retry.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<Option<String>>, detail: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            detail: redact_urls(&detail.into()),
        }
    }

    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::Invalid { .. } => ("invalid-request", "Invalid request"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::Conflict { .. } => ("conflict", "Conflict"),
            ApiError::TooLarge { .. } => ("payload-too-large", "Payload too large"),
            ApiError::UnsupportedMediaType(_) => {
                ("unsupported-media-type", "Unsupported media type")
            }
            ApiError::MethodNotAllowed { .. } => ("method-not-allowed", "Method not allowed"),
            ApiError::Unauthorized(_) => ("unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => ("forbidden", "Forbidden"),
            ApiError::Internal(_) => ("internal", "Internal error"),
            ApiError::CorruptRdb { .. } => ("corrupt-rdb", "Not a valid RDB file"),
            ApiError::InsufficientStorage(_) => ("insufficient-storage", "Insufficient storage"),
            ApiError::Unavailable(_) => ("unavailable", "Service unavailable"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (kind, title) = self.kind();
        let (field, state, allowed_actions) = match self {
            ApiError::Invalid { field, .. } => (field.clone(), None, None),
            ApiError::Conflict {
                state,
                allowed,
                field,
                ..
            } => (field.clone(), state.clone(), allowed.clone()),
            _ => (None, None, None),
        };
        Problem {
            kind: format!("urn:ferry:problem:{kind}"),
            title: title.to_string(),
            status: self.status_code().as_u16(),
            detail: self.to_string(),
            field,
            state,
            allowed_actions,
            offset: match self {
                ApiError::CorruptRdb { offset, .. } => Some(*offset),
                _ => None,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::CorruptRdb { .. } => StatusCode::BAD_REQUEST,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(error = %detail, "request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        response.content_type(PROBLEM_JSON);
        if matches!(self, ApiError::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            response.insert_header((header::ALLOW, allow.clone()));
        }
        if matches!(self, ApiError::Unavailable(_)) {
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        response.json(self.problem())
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let detail = redact_urls(&e.to_string());
        match e {
            JobError::NotFound { .. } => ApiError::NotFound(detail),
            JobError::Refused(refusal) => ApiError::Conflict {
                detail,
                state: Some(refusal.state.to_string()),
                allowed: Some(refusal.allowed),
                field: None,
            },
            JobError::Unusable { field, .. } => ApiError::Conflict {
                detail,
                state: None,
                allowed: None,
                field: Some(field.to_string()),
            },
            JobError::Invalid { field, .. } => ApiError::Invalid {
                field: Some(field.to_string()),
                detail,
            },
            JobError::NoSpace(_) => ApiError::InsufficientStorage(detail),
            JobError::Upload(UploadError::TooLarge { limit }) => ApiError::TooLarge {
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            JobError::Upload(UploadError::Corrupt { offset, .. }) => {
                ApiError::CorruptRdb { offset, detail }
            }
            JobError::Upload(UploadError::Busy { .. }) => ApiError::Unavailable(detail),
            JobError::Upload(UploadError::NoSpace(_)) => ApiError::InsufficientStorage(detail),
            JobError::Upload(UploadError::Io(_))
            | JobError::Io(_)
            | JobError::CredentialsMissing(_)
            | JobError::Store(_) => ApiError::Internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// Replaces the password of any `scheme://user:password@` in `text` with `***`. Parser messages
/// may quote input back; input may hold a URL in the wrong field.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (head, tail) = rest.split_at(start + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '`' || c == '\'' || c == '/')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_quoted_urls_are_redacted() {
        assert_eq!(
            redact_urls("invalid type: string \"redis://u:hunter2@h:1/0\", expected a boolean"),
            "invalid type: string \"redis://u:***@h:1/0\", expected a boolean"
        );
        assert_eq!(
            redact_urls("redis://h:1 and rediss://:p@x"),
            "redis://h:1 and rediss://:***@x"
        );
        assert_eq!(redact_urls("no url"), "no url");
    }
}
