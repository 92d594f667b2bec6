//! What the session API documents: the JSON it sends back, and the OpenAPI document, generated
//! by utoipa from the handlers' own annotations and these types so the two cannot drift
//! (`docs/openapi.json` is a checked-in copy that a test keeps equal).

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

/// A failure: a stable code (`invalid_lease`, `session_not_found`, ...) and a message for people.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody {
    #[schema(example = "invalid_lease")]
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// A session: its life, and while it lives, how a device connects.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Session)]
pub(crate) struct SessionView {
    #[schema(format = Uuid)]
    pub(crate) id: String,
    /// `starting`, `ready`, `connected`, `stopped`, `expired` or `error`.
    #[schema(example = "ready")]
    pub(crate) status: &'static str,
    pub(crate) size: String,
    pub(crate) models: Vec<String>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) ready_at: Option<String>,
    /// `h:m:s`.
    pub(crate) max_lease_time: String,
    /// `h:m:s` since creation (to the stop, for ended sessions).
    pub(crate) elapsed_time: String,
    #[schema(format = DateTime)]
    pub(crate) stopped_at: Option<String>,
    pub(crate) stop_reason: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) counters: CountersView,
    /// Present while the session is live.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connection: Option<ConnectionView>,
}

/// What a session did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Counters)]
pub(crate) struct CountersView {
    pub(crate) frames_sent: u64,
    pub(crate) models_loaded: u64,
}

/// How a device reaches a live session.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = Connection)]
pub(crate) struct ConnectionView {
    /// `host:port` for devices: the host's `public_address`, else its QUIC address, else (bound
    /// to 0.0.0.0 or ::) the name this request reached the API by with the QUIC port; a name
    /// may need resolving.
    pub(crate) quic_address: String,
    /// Hex SHA-256 of the host certificate.
    pub(crate) fingerprint: String,
    /// Connection token for the device (live sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    pub(crate) web_transport: WebTransportView,
}

/// How a browser connects: WebTransport to `https://HOST:PORT{path}` on the QUIC address's port,
/// with `serverCertificateHashes` from `certificateHashes`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = WebTransport)]
pub(crate) struct WebTransportView {
    pub(crate) path: &'static str,
    /// Hex SHA-256 of the current and the next short-lived ECDSA P-256 certificate (it rotates
    /// every 5 days); empty with a CA's certificate.
    pub(crate) certificate_hashes: Vec<String>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionList {
    pub(crate) sessions: Vec<SessionView>,
}

/// The document's frame: title, the bearer scheme every `/v1` session route needs, and the
/// answers the authentication layer gives on those routes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Farview host session API",
        version = "1.0.0",
        description = "Create, query, extend and stop rendering sessions. The /v1/sessions routes \
                       need `Authorization: Bearer <api key>`. Errors are JSON {code, message} \
                       with stable codes."
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody))
)]
pub(crate) struct ApiDoc;

/// Adds the bearer scheme, and to every operation that needs it (those without their own
/// empty `security`), the refusals of `http::auth`, which runs before any handler. Applied once
/// the routes' operations are in the document.
pub(crate) struct Authentication;

impl Modify for Authentication {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |description: &str| -> RefOr<Response> {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Error",
                    )))),
                )
                .build()
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                // `security(())` on a handler: its own empty requirement, i.e. no key. Written
                // as `security: []`, which lifts the document-wide bearer requirement.
                let public = op.security.as_ref().is_some_and(|all| {
                    all.iter()
                        .all(|r| serde_json::to_value(r).is_ok_and(|v| v == serde_json::json!({})))
                });
                if public {
                    op.security = Some(Vec::new());
                    continue;
                }
                let responses = &mut op.responses.responses;
                responses.insert(
                    "401".into(),
                    error("Missing or malformed bearer token (unauthorized)"),
                );
                responses.insert(
                    "403".into(),
                    error("API key not accepted, or no keys configured (api_disabled)"),
                );
            }
        }
    }
}
