//! The dashboard: a small web page served by Ferry itself at `/`.
//!
//! Plain HTML, CSS and JavaScript written for Ferry and compiled into the binary
//! (`include_str!`), so the page works offline and needs no frontend toolchain: nothing is
//! fetched from anywhere but this server. The page talks to the same `/v1` API as any client,
//! follows the live event streams instead of polling, and, when the server has API tokens, asks
//! for one and keeps it in the tab's memory only, sending it as a bearer header (no cookies, so
//! there is no CSRF surface). A strict Content-Security-Policy allows only this origin.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

use super::problem::ApiError;

const INDEX: &str = include_str!("index.html");
const STYLE: &str = include_str!("style.css");
const CORE: &str = include_str!("core.js");
const MIGRATIONS: &str = include_str!("migrations.js");
const BACKUPS: &str = include_str!("backups.js");

/// Only this origin; no inline script, no frames, no plugins.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Registers `/` and the assets (outside the OpenAPI document: they are not API).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/ui/{asset}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    page("text/html; charset=utf-8", INDEX)
}

async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let (content_type, body) = match name.as_str() {
        "style.css" => ("text/css; charset=utf-8", STYLE),
        "core.js" => ("text/javascript; charset=utf-8", CORE),
        "migrations.js" => ("text/javascript; charset=utf-8", MIGRATIONS),
        "backups.js" => ("text/javascript; charset=utf-8", BACKUPS),
        other => {
            return Err(ApiError::NotFound(format!(
                "no dashboard asset `{other}`; the dashboard is at /"
            )))
        }
    };
    Ok(page(content_type, body))
}

fn page(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        // Small, and changes with the binary: always revalidate.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(body)
}
