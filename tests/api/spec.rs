//! The committed OpenAPI document matches the code, and the served one matches both.

use serde_json::Value;

use crate::helpers::spawn_app;

const REGENERATE: &str = "cargo run -- openapi > openapi/openapi.json";

#[test]
fn the_committed_openapi_document_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with `{REGENERATE}`",
            path.display()
        )
    });
    let generated = ferry::api::openapi_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is stale: the API changed. Regenerate it with `{REGENERATE}` and commit it."
    );
}

#[test]
fn every_operation_documents_its_errors_and_every_schema_is_described() {
    let doc: Value = serde_json::from_str(&ferry::api::openapi_json()).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for endpoint in [
        "/v1/migrations",
        "/v1/migrations/{id}",
        "/v1/migrations/{id}/validate",
        "/v1/migrations/{id}/start",
        "/v1/migrations/{id}/cutover",
        "/v1/migrations/{id}/cancel",
        "/v1/migrations/{id}/events",
        "/v1/events",
        "/v1/guide/redis",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(endpoint), "{endpoint} is not documented");
    }
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            if path.starts_with("/v1") {
                assert!(
                    responses.contains_key("401"),
                    "{method} {path} does not document 401"
                );
            }
            for (status, response) in responses {
                if status.starts_with('4') {
                    assert!(
                        response["content"]["application/problem+json"].is_object(),
                        "{method} {path} {status} is not problem+json"
                    );
                }
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "MigrationView",
        "MigrationSpec",
        "Problem",
        "ValidationReport",
        "Event",
        "Progress",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    for name in [
        "MigrationView",
        "Problem",
        "Progress",
        "CheckResult",
        "Endpoint",
    ] {
        assert!(
            !schemas[name]["example"].is_null(),
            "schema {name} has no example"
        );
    }
}

#[tokio::test]
async fn the_served_document_is_the_committed_one_and_docs_serve_swagger_ui() {
    let app = spawn_app().await;
    let served: Value = app.get("/openapi.json").await.json().await.unwrap();
    let generated: Value = serde_json::from_str(&ferry::api::openapi_json()).unwrap();
    assert_eq!(served, generated);
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), 308);
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    let script = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(script.contains("/openapi.json"), "{script}");
}

/// The rules `api::exact` writes into the document by hand (a source is a server *or* a file;
/// type names; database-map keys) are all there: a JSON edit the document type cannot read back
/// would otherwise drop every one of them without a sound.
#[test]
fn the_hand_written_schema_rules_are_in_the_document() {
    let doc: Value = serde_json::from_str(&ferry::api::openapi_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["SourceBody"]["oneOf"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        schemas["MigrationSpec"]["oneOf"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(schemas["KeyFilter"]["properties"]["types"]["items"]["pattern"].is_string());
    for holder in ["Options", "OptionsPatch"] {
        assert!(
            schemas[holder]["properties"]["db_map"]["propertyNames"]["pattern"].is_string(),
            "{holder}"
        );
    }
}
