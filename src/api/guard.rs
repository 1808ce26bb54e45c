//! What a web page in the user's browser must not be able to do to a Ferry on loopback.
//!
//! Without API tokens (allowed on a loopback address only), the API trusts whoever can connect.
//! A browser can connect too, on behalf of any page it shows:
//!
//! - **Cross-site requests.** `fetch('http://127.0.0.1:8080/v1/backups', {mode: 'no-cors',
//!   method: 'POST', body: …})` is sent without a CORS preflight when its Content-Type is one of
//!   the "simple" ones (`text/plain`, form encodings) or absent. Every body Ferry reads must be
//!   `application/json` (or `application/octet-stream` for an upload): anything else gets 415
//!   ([`require_content_type`]). Browsers send `Origin` with such requests; one that is not this
//!   server's own origin gets 403.
//! - **DNS rebinding.** A page on `evil.example` whose name is made to resolve to 127.0.0.1 can
//!   read Ferry's answers as same-origin ones. Its requests still say `Host: evil.example`; on
//!   loopback without tokens, a `Host` that is not a loopback name gets 403.
//!
//! With tokens configured, a page cannot send the bearer token, so these checks are not needed
//! there (and a non-loopback listener is reached by names of all kinds).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};

use super::auth::Tokens;
use super::problem::ApiError;

/// Middleware for every route: on loopback without tokens, refuses requests a browser makes for
/// another site (403).
pub async fn browser_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let open = req
        .app_data::<web::Data<Tokens>>()
        .is_none_or(|t| t.0.is_empty());
    if open {
        check_browser(req.request())?;
    }
    next.call(req).await
}

/// The 403 for a request that came from a browser on behalf of another site.
fn check_browser(req: &HttpRequest) -> Result<(), ApiError> {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("?").to_string());
    if let Some(host) = &host {
        if !is_loopback_name(host) {
            return Err(ApiError::Forbidden(format!(
                "Host `{host}` is not a loopback name: without API tokens Ferry answers only \
                 requests addressed to localhost, 127.0.0.1 or [::1] (a page on another name \
                 could reach it by DNS rebinding); configure [[auth.tokens]] to serve other names"
            )));
        }
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let same = host.as_deref().is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        });
        if !same {
            return Err(ApiError::Forbidden(format!(
                "Origin `{origin}` is another site: without API tokens Ferry refuses requests a \
                 browser sends on behalf of other pages; use Ferry from its own origin, or \
                 configure [[auth.tokens]]"
            )));
        }
    }
    Ok(())
}

/// `localhost`, `*.localhost`, `127.x.x.x` or `[::1]`, with or without a port.
fn is_loopback_name(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// What a body must be sent as.
#[derive(Debug, Clone, Copy)]
pub enum BodyType {
    Json,
    OctetStream,
}

/// Refuses a non-empty body that is not of `expected` type with 415: a browser can send the
/// "simple" types (`text/plain`, form encodings, none) to any site without asking first.
pub fn require_content_type(
    req: &HttpRequest,
    expected: BodyType,
    has_body: bool,
) -> Result<(), ApiError> {
    if !has_body {
        return Ok(());
    }
    let given = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    let fits = match (&given, expected) {
        (Some(t), BodyType::Json) => t == "application/json" || t.ends_with("+json"),
        (Some(t), BodyType::OctetStream) => t == "application/octet-stream",
        (None, _) => false,
    };
    if fits {
        return Ok(());
    }
    let wanted = match expected {
        BodyType::Json => "application/json",
        BodyType::OctetStream => "application/octet-stream",
    };
    Err(ApiError::UnsupportedMediaType(format!(
        "the body is sent as `{}`; send it as `Content-Type: {wanted}`",
        given.as_deref().unwrap_or("(no Content-Type)")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::1]",
            "app.localhost:1",
            "LOCALHOST.",
        ] {
            assert!(is_loopback_name(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "[::2]:8080",
        ] {
            assert!(!is_loopback_name(bad), "{bad}");
        }
    }
}
