//! Bearer tokens for `/v1`, and the actor they name.
//!
//! Tokens come from `[[auth.tokens]]` in the config: a `name`, the environment variable that
//! holds the token (`token_env`), so the secret never sits in a file, and a `role`. With tokens
//! configured, every `/v1` request needs `Authorization: Bearer <token>`, and the matching token's
//! name and role (`ops-bot (operator)`) become the `actor` of the events the request records.
//! Without tokens (allowed only on a loopback address, see `config`), the actor is `api`.
//!
//! Whether the role suffices is decided apart, by [`super::roles::require_role`], which runs after
//! this middleware and reads the [`Role`] it leaves in the request.

use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::problem::ApiError;
pub use crate::config::{Role, Token};

/// The actor when no tokens are configured.
pub const DEFAULT_ACTOR: &str = "api";

/// The tokens the API accepts; empty means authentication is off.
#[derive(Clone, Debug, Default)]
pub struct Tokens(pub Arc<Vec<Token>>);

/// Who made the request: a token's name, or `api`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

impl FromRequest for Actor {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let actor = req
            .extensions()
            .get::<Actor>()
            .cloned()
            .unwrap_or_else(|| Actor(DEFAULT_ACTOR.to_string()));
        ready(Ok(actor))
    }
}

/// Middleware for the `/v1` scope: checks the bearer token and records the actor.
pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let tokens = req
        .app_data::<web::Data<Tokens>>()
        .map(|t| t.0.clone())
        .unwrap_or_default();
    if !tokens.is_empty() {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized(
                "this API needs `Authorization: Bearer <token>`".into(),
            )
            .into());
        };
        let Some(token) = tokens
            .iter()
            .find(|t| constant_time_eq(t.secret.expose().as_bytes(), presented.as_bytes()))
        else {
            return Err(ApiError::Unauthorized("the bearer token is not valid".into()).into());
        };
        let actor = Actor(format!("{} ({})", token.name, token.role));
        req.extensions_mut().insert(actor);
        req.extensions_mut().insert(token.role);
    }
    next.call(req).await
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_compare_exactly() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
