//! The OpenAPI description of the client and admin API, at `GET /openapi.json`.
//!
//! Every node serves the same document at [`OPENAPI_PATH`]: OpenAPI 3.1,
//! generated at compile time by utoipa, from the wire types of `kv-shared`
//! (they derive `ToSchema` behind that crate's `openapi` feature, so the
//! schemas follow serde's renames, tags, defaults and skipped fields) and
//! from the `#[utoipa::path]` attribute of each handler in [`crate::api`].
//!
//! - Every operation lists every status it can answer, and every error
//!   answer has the [`ErrorBody`] schema. What any route can answer is added
//!   once, by the `BoundaryErrors` modifier: 403 for a `Host` the node does
//!   not answer to (or a cross-origin write), and, for a request with a
//!   body, 400, 408, 413 and 415 (see [`crate::error`], [`crate::security`]).
//! - Admin calls name the bearer scheme [`ADMIN_TOKEN_SCHEME`]
//!   (`Authorization: Bearer <admin token>`); `POST /config` needs it only to
//!   change W/R or the delay profile of a node that has a token.
//! - `/events` is `text/event-stream`, `/metrics` the OpenMetrics text
//!   format (`application/openmetrics-text`), `/openapi.json` this document.
//! - The node-to-node endpoints (`/internal/...`) are left out: they take only
//!   requests signed with the cluster secret, and no client calls them.
//!
//! **Checked against real nodes.** `node/tests/openapi.rs` starts nodes
//! with an admin token (standalone, leaderless, a leader-follower cluster)
//! and runs schemathesis (a property-based API tester,
//! installed by `scripts/setup.sh --tests` into
//! `~/.cache/kv-store/schemathesis-venv`) on the document the node serves,
//! with a fixed seed and bounded examples: no 5xx, every status documented,
//! every body and content type as described. `/events` is left out of that
//! run (a stream never ends, so a request to it could only time out), and so
//! are the faults that stop the node (`crash`, `restart`, `pause`: see
//! `node/tests/openapi_hooks.py`). By hand, against a node started with
//! `ADMIN_TOKEN=t`:
//!
//! ```text
//! SCHEMATHESIS_HOOKS=node/tests/openapi_hooks.py \
//!   ~/.cache/kv-store/schemathesis-venv/bin/st run http://127.0.0.1:8080/openapi.json \
//!   --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
//!   -H 'Authorization: Bearer t' --exclude-path /events --seed 20261202 --max-examples 50
//! ```

use crate::api;
use axum::http::header;
use axum::response::IntoResponse;
use kv_shared::{ErrorBody, OPENAPI_PATH};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};

/// The name of the admin token's security scheme in the document.
pub const ADMIN_TOKEN_SCHEME: &str = "admin_token";

/// The media type of every JSON body, errors included.
const JSON: &str = "application/json";

/// The document: every client and admin operation, the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "kv-node",
        description = "The client and admin API of a replica of the replicated key-value store. \
                       Every failing request answers a JSON `ErrorBody`."
    ),
    paths(
        api::set,
        api::get_query,
        api::get_path,
        api::local_read_query,
        api::local_read_path,
        api::health,
        api::status,
        api::get_config,
        api::post_config,
        api::get_faults,
        api::post_faults,
        api::metrics,
        events,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    modifiers(&AdminToken, &BoundaryErrors),
    tags(
        (name = "data", description = "Writes and reads of keys."),
        (name = "cluster", description = "The node, its cluster and their configuration."),
        (name = "admin", description = "Fault injection (needs the admin token)."),
        (name = "observability", description = "Metrics, the live feed and this document."),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built on first use.
pub fn json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| unreachable!("the OpenAPI document is plain data: {e}"))
    })
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 description.
#[utoipa::path(
    get,
    path = OPENAPI_PATH,
    tag = "observability",
    responses((status = 200, description = "This document (OpenAPI 3.1).", body = Object)),
)]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, JSON)], json())
}

/// `GET /events` (served by the handler in `crate::events`; described here, where
/// the rest of the document is, since it is a stream rather than a body).
#[utoipa::path(
    get,
    path = kv_shared::events::EVENTS_PATH,
    tag = "observability",
    params((
        "only" = Option<String>, Query,
        description = "Absent: cluster snapshots and every write trace (the dashboard). \
                       `own-traces`: only the traces and replication events of this node."
    )),
    responses(
        (status = 200, description = "Server-Sent Events; each `data:` line is one JSON event. \
                                      The stream does not end.",
         content_type = "text/event-stream", body = String),
        (status = 400, description = "`only` is not `own-traces`.", body = ErrorBody),
        (status = 503, description = "`--max-event-streams` streams are open.", body = ErrorBody),
    ),
)]
#[allow(dead_code)] // Only its generated description is used.
fn events() {}

/// Adds the admin token's bearer scheme.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The admin token the node was started with (`--admin-token`, `ADMIN_TOKEN`, \
                 `--admin-token-file`): 401 without it or with another one, 403 when the node \
                 has none and the action needs one.",
            ))
            .build();
        doc.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(ADMIN_TOKEN_SCHEME, SecurityScheme::Http(scheme));
    }
}

/// Adds the answers that do not depend on the operation: 403 for a foreign
/// `Host` or origin on every route; for a request with a body, 400 (not the
/// JSON described), 408 (body too slow), 413 (too large) and 415 (not
/// `application/json`). An operation that documents one of these itself
/// keeps its own description.
struct BoundaryErrors;

impl Modify for BoundaryErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let everywhere = [(
            403,
            "A `Host` this node does not answer to (`--allow-host`), or a cross-origin write \
             from an origin it does not allow (`--allow-origin`).",
        )];
        let with_body = [
            (400, "The body is not the JSON described."),
            (408, "The body did not arrive within `--body-timeout-ms`."),
            (413, "The body is over the limit (128 KiB)."),
            (
                415,
                "The body is not sent as `Content-Type: application/json`.",
            ),
        ];
        for item in doc.paths.paths.values_mut() {
            let ops = [&mut item.get, &mut item.post].into_iter().flatten();
            for op in ops {
                let has_body = op.request_body.is_some();
                let extra = everywhere
                    .iter()
                    .chain(with_body.iter().filter(|_| has_body));
                for (status, description) in extra {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                }
            }
        }
    }
}

/// An error answer: `description`, with an [`ErrorBody`] in JSON.
fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_admin_scheme_and_error_bodies() {
        let doc: serde_json::Value = serde_json::from_str(json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"][ADMIN_TOKEN_SCHEME]["scheme"],
            "bearer"
        );
        let set = &doc["paths"]["/set"]["post"]["responses"];
        for status in ["201", "400", "403", "408", "409", "413", "415", "503"] {
            assert!(set.get(status).is_some(), "POST /set documents {status}");
        }
    }
}
