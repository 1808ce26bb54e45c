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

use sha2::{Digest, Sha256};

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
        let Some(token) = matching_token(&tokens, presented) else {
            return Err(ApiError::Unauthorized("the bearer token is not valid".into()).into());
        };
        let actor = Actor(format!("{} ({})", token.name, token.role));
        req.extensions_mut().insert(actor);
        req.extensions_mut().insert(token.role);
    }
    next.call(req).await
}

/// The configured token equal to `presented`, found without letting response time tell a guess
/// apart: every token is compared, always, and each comparison is of two SHA-256 digests (fixed
/// length, so neither the tokens' lengths nor how much of a guess matched shows), XOR-folded
/// without an early exit.
fn matching_token<'a>(tokens: &'a [Token], presented: &str) -> Option<&'a Token> {
    let guess = Sha256::digest(presented.as_bytes());
    let mut found = None;
    for token in tokens {
        let known = Sha256::digest(token.secret.expose().as_bytes());
        if digests_equal(&known, &guess) && found.is_none() {
            found = Some(token);
        }
    }
    found
}

fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_url::Secret;

    fn token(name: &str, value: &str) -> Token {
        Token {
            name: name.into(),
            secret: Secret::new(value),
            role: Role::Viewer,
        }
    }

    #[test]
    fn every_token_is_compared_and_only_an_exact_one_matches() {
        let tokens = [token("a", "abc"), token("b", "abcdef"), token("c", "x")];
        assert_eq!(
            matching_token(&tokens, "abcdef").map(|t| t.name.as_str()),
            Some("b")
        );
        assert_eq!(
            matching_token(&tokens, "abc").map(|t| t.name.as_str()),
            Some("a")
        );
        for guess in ["ab", "abd", "abcdefg", "", "X"] {
            assert!(matching_token(&tokens, guess).is_none(), "{guess}");
        }
    }
}
