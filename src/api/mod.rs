//! HTTP API: routes, handlers, the OpenAPI document and problem+json errors.
