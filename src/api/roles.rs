//! Which role each `/v1` operation needs, enforced and documented from one table.
//!
//! - `viewer`: every `GET` except backup downloads (a backup file is the whole dataset);
//! - `operator`: migrations (create, change, validate, start, cut over, cancel) and backups
//!   (take, upload);
//! - `admin`: what destroys or exposes data: rollback, restore, delete, download.
//!
//! [`REQUIRED`] is the table. [`require_role`] enforces it (after
//! [`super::auth::require_token`], which leaves the token's [`Role`] in the request), answering
//! 403 problem+json when the role is too small; [`document`] writes it into the OpenAPI document
//! (`x-required-role` and a sentence in each operation's description), and a test checks that
//! every documented `/v1` operation is in the table. An operation missing from it needs `admin`:
//! a route added without a thought about roles fails closed.
//!
//! Without configured tokens (loopback only) there is no role to check and nothing is refused.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use utoipa::openapi::OpenApi as OpenApiDoc;

use super::problem::ApiError;
use crate::config::Role;

/// `(method, documented path, role)` for every `/v1` operation.
pub const REQUIRED: &[(&str, &str, Role)] = &[
    ("GET", "/v1/migrations", Role::Viewer),
    ("POST", "/v1/migrations", Role::Operator),
    ("GET", "/v1/migrations/{id}", Role::Viewer),
    ("PATCH", "/v1/migrations/{id}", Role::Operator),
    ("POST", "/v1/migrations/{id}/validate", Role::Operator),
    ("POST", "/v1/migrations/{id}/start", Role::Operator),
    ("POST", "/v1/migrations/{id}/cutover", Role::Operator),
    ("POST", "/v1/migrations/{id}/cancel", Role::Operator),
    ("GET", "/v1/migrations/{id}/events", Role::Viewer),
    ("GET", "/v1/migrations/{id}/events/stream", Role::Viewer),
    ("GET", "/v1/migrations/{id}/verification", Role::Viewer),
    ("POST", "/v1/migrations/{id}/rollback", Role::Admin),
    ("GET", "/v1/backups", Role::Viewer),
    ("POST", "/v1/backups", Role::Operator),
    ("POST", "/v1/backups/upload", Role::Operator),
    ("GET", "/v1/backups/{id}", Role::Viewer),
    ("DELETE", "/v1/backups/{id}", Role::Admin),
    ("GET", "/v1/backups/{id}/download", Role::Admin),
    ("POST", "/v1/backups/{id}/restore", Role::Admin),
    ("GET", "/v1/restores", Role::Viewer),
    ("GET", "/v1/restores/{id}", Role::Viewer),
    ("GET", "/v1/events", Role::Viewer),
    ("GET", "/v1/events/stream", Role::Viewer),
    ("GET", "/v1/events/export", Role::Viewer),
    ("GET", "/v1/audit/verify", Role::Viewer),
    ("GET", "/v1/guide/redis", Role::Viewer),
];

/// The role `method` on the request path `path` needs: a literal path (`/v1/backups/upload`)
/// wins over a template that also matches it (`/v1/backups/{id}`); unknown operations need
/// `admin`.
pub fn required(method: &str, path: &str) -> Role {
    let method = if method == "HEAD" { "GET" } else { method };
    let asked: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let matches = |template: &str, literal_only: bool| {
        let segments: Vec<&str> = template.split('/').collect();
        segments.len() == asked.len()
            && segments
                .iter()
                .zip(&asked)
                .all(|(s, a)| s == a || (!literal_only && s.starts_with('{') && !a.is_empty()))
    };
    [true, false]
        .into_iter()
        .find_map(|literal_only| {
            REQUIRED
                .iter()
                .find(|(m, template, _)| *m == method && matches(template, literal_only))
                .map(|(_, _, role)| *role)
        })
        .unwrap_or(Role::Admin)
}

/// Middleware for the `/v1` scope: refuses, with 403, a token whose role is below the
/// operation's. Runs after the token check; with no tokens configured there is no role and
/// nothing to refuse.
pub async fn require_role(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let role = req.extensions().get::<Role>().copied();
    if let Some(role) = role {
        let needed = required(req.method().as_str(), req.path());
        if role < needed {
            return Err(ApiError::Forbidden(format!(
                "{} {} needs the role `{needed}`; this token has `{role}` (roles: viewer < \
                 operator < admin, set per token in [[auth.tokens]])",
                req.method(),
                req.path()
            ))
            .into());
        }
    }
    next.call(req).await
}

/// Writes the table into the document: `x-required-role` on each `/v1` operation, a sentence in
/// its description, and the 401 and 403 answers it can give.
pub fn document(doc: OpenApiDoc) -> OpenApiDoc {
    use serde_json::{json, Value};
    let Ok(mut value) = serde_json::to_value(&doc) else {
        return doc;
    };
    let Some(paths) = value["paths"].as_object_mut() else {
        return doc;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PATCH", "PUT", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let role = required(&method, path);
            operation["x-required-role"] = json!(role.as_str());
            let sentence = format!(
                "Needs a token with the role `{role}` or higher, when API tokens are configured."
            );
            let description = match operation.get("description").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => format!("{text}\n\n{sentence}"),
                _ => sentence,
            };
            operation["description"] = json!(description);
            let problem = |what: &str| {
                json!({"description": what, "content": {"application/problem+json":
                    {"schema": {"$ref": "#/components/schemas/Problem"}}}})
            };
            if let Some(responses) = operation["responses"].as_object_mut() {
                responses.entry("401").or_insert_with(|| {
                    problem("No valid bearer token (only when API tokens are configured)")
                });
                responses
                    .entry("403")
                    .or_insert_with(|| problem("The token's role is too small for this operation"));
            }
        }
    }
    serde_json::from_value(value).unwrap_or(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_paths_win_and_unknown_operations_need_admin() {
        assert_eq!(required("POST", "/v1/backups/upload"), Role::Operator);
        assert_eq!(required("GET", "/v1/backups/0192"), Role::Viewer);
        assert_eq!(required("HEAD", "/v1/backups/0192"), Role::Viewer);
        assert_eq!(required("GET", "/v1/backups/0192/download"), Role::Admin);
        assert_eq!(required("DELETE", "/v1/backups/0192"), Role::Admin);
        assert_eq!(required("POST", "/v1/migrations/x/rollback"), Role::Admin);
        assert_eq!(required("POST", "/v1/migrations/x/start"), Role::Operator);
        assert_eq!(required("PUT", "/v1/migrations"), Role::Admin);
        assert_eq!(required("GET", "/v1/nowhere"), Role::Admin);
    }

    #[test]
    fn every_documented_operation_has_a_role_and_every_role_an_operation() {
        let doc = crate::api::openapi();
        let mut documented = Vec::new();
        for (path, item) in doc
            .paths
            .paths
            .iter()
            .filter(|(p, _)| p.starts_with("/v1/"))
        {
            for (method, present) in [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PATCH", item.patch.is_some()),
                ("PUT", item.put.is_some()),
                ("DELETE", item.delete.is_some()),
            ] {
                if present {
                    documented.push((method.to_string(), path.clone()));
                }
            }
        }
        for (method, path) in &documented {
            assert!(
                REQUIRED.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path} has no entry in roles::REQUIRED"
            );
        }
        for (method, path, _) in REQUIRED {
            assert!(
                documented.iter().any(|(m, p)| m == method && p == path),
                "roles::REQUIRED names {method} {path}, which is not served"
            );
        }
        let json = crate::api::openapi_json();
        assert!(json.contains("\"x-required-role\": \"admin\""));
    }
}
