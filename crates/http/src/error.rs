//! The error envelope of every non-2xx response:
//! `{"error":{"code","message","request_id","details"}}`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use mandate_domain::auth::AuthError;
use mandate_domain::ports::StoreError;
use mandate_domain::principal::PrincipalKind;
use mandate_domain::usecases::{
    ClaimDecisionError, ClientChangeError, CreateDestinationError, CreateOrchestratorError,
    CreateOrganizationError, CreateRequestError, CustomerError, InvalidField, IssueClientError,
    KeyError, PaymentPageError, ReadError, RequestActionError, SubmitClaimError,
    UpdateDestinationError, WebhookError,
};
use mandate_domain::values::Permission;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::request_id;

/// An API error: an HTTP status, a stable code and a message safe to show.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    details: Option<Value>,
    retry_after: Option<u64>,
    /// Why the authentication pipeline refused the credential, as a stable metrics label.
    auth_reason: Option<&'static str>,
}

/// The envelope, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The error inside the envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `INVALID_REQUEST`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// The request's `X-Request-Id`.
    pub request_id: String,
    /// More about the error, e.g. `{"field": "slug"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
            auth_reason: None,
        }
    }

    /// The same error with `details`.
    pub(crate) fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(crate) fn with_auth_reason(mut self, reason: &'static str) -> Self {
        self.auth_reason = Some(reason);
        self
    }

    /// Why the authentication pipeline refused the credential, when it did and knew why.
    pub(crate) fn auth_reason(&self) -> Option<&'static str> {
        self.auth_reason
    }

    /// 400 `INVALID_REQUEST` about one field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut error = Self::invalid(message);
        error.details = Some(serde_json::json!({ "field": field }));
        error
    }

    /// 400 `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// 401 `UNAUTHENTICATED`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message)
    }

    /// 401 `SIGNATURE_INVALID`: an agent signature or a body digest does not hold.
    pub fn signature_invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "SIGNATURE_INVALID", message)
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 403 `FORBIDDEN` from step 4 of the pipeline: the route does not admit this kind of
    /// principal. `details` names the kind and the admitted ones; an orchestrator's key on a
    /// route for client IDs is told how to act as one (`details.header`).
    pub fn wrong_principal_kind(kind: PrincipalKind, admitted: &[PrincipalKind]) -> Self {
        let as_client =
            kind == PrincipalKind::Orchestrator && admitted.contains(&PrincipalKind::Client);
        let message = if as_client {
            "this endpoint acts for a client ID: send X-Client-Id: cli_… with the orchestrator \
             key, or use an access token from POST /v1/oauth/token"
                .to_owned()
        } else {
            format!("this endpoint does not accept a {kind} credential")
        };
        let admitted: Vec<&str> = admitted.iter().map(|kind| kind.as_str()).collect();
        let mut details = serde_json::json!({ "principal": kind.as_str(), "admits": admitted });
        if as_client {
            details["header"] = "X-Client-Id".into();
        }
        Self::forbidden(message)
            .with_details(details)
            .with_auth_reason("wrong_principal_kind")
    }

    /// 403 `FORBIDDEN`: the client ID lacks `permission`, named in `details.permission`.
    pub fn missing_permission(permission: Permission) -> Self {
        Self::forbidden(format!(
            "this client ID lacks the {permission} permission: its destination's owner grants it"
        ))
        .with_details(serde_json::json!({ "permission": permission.as_str() }))
    }

    /// 405 `METHOD_NOT_ALLOWED`, with `Allow` (rendered from `details.allow`) listing the
    /// methods the path has.
    pub fn method_not_allowed(allowed: &[&str]) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("this path answers {} only", allowed.join(", ")),
        )
        .with_details(serde_json::json!({ "allow": allowed }))
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found() -> Self {
        Self::not_found_because("no such resource")
    }

    /// 404 `NOT_FOUND`, saying what was not found (when naming it leaks nothing).
    pub fn not_found_because(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 409 `CONFLICT`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", message)
    }

    /// 410 `GONE`.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, "GONE", message)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the body is larger than 64 KiB",
        )
    }

    /// 429 `RATE_LIMITED`, with `Retry-After`.
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "too many requests for this credential: retry later",
        );
        error.retry_after = Some(retry_after_seconds);
        error.details = Some(serde_json::json!({ "retry_after": retry_after_seconds }));
        error.with_auth_reason("rate_limited")
    }

    /// 429 `RATE_LIMITED`, with `Retry-After`: too many failed authentications from the
    /// caller's address; nothing of the request was read.
    pub fn failed_auth_throttled(retry_after_seconds: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            format!(
                "too many failed authentication attempts from this address: retry in \
                 {retry_after_seconds} s"
            ),
        );
        error.retry_after = Some(retry_after_seconds);
        error.details = Some(serde_json::json!({ "retry_after": retry_after_seconds }));
        error.with_auth_reason("failed_auth_throttled")
    }

    /// 415 `UNSUPPORTED_MEDIA_TYPE`.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            message,
        )
    }

    /// 500 `INTERNAL`; the cause is logged, never sent.
    pub fn internal(cause: &dyn std::error::Error) -> Self {
        tracing::error!(error = %mandate_domain::error_chain(cause), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "something went wrong on our side",
        )
    }

    /// 503 `SERVICE_UNAVAILABLE`: the database cannot be reached now.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the service is temporarily unavailable",
        )
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message, as the envelope shows it.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, as a number.
    pub(crate) fn status_code_u16(&self) -> u16 {
        self.status.as_u16()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        let allow = self
            .details
            .as_ref()
            .and_then(|details| details["allow"].as_array());
        if let (StatusCode::METHOD_NOT_ALLOWED, Some(methods)) = (self.status, allow) {
            let methods: Vec<&str> = methods.iter().filter_map(Value::as_str).collect();
            response.insert_header((header::ALLOW, methods.join(", ")));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(ErrorEnvelope {
            error: ErrorBody {
                code: self.code,
                message: self.message.clone(),
                request_id: request_id::current(),
                details: self.details.clone(),
            },
        })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %mandate_domain::error_chain(cause.as_ref()), "database unavailable");
                ApiError::unavailable()
            }
            other => ApiError::internal(&other),
        }
    }
}

impl From<InvalidField> for ApiError {
    fn from(error: InvalidField) -> Self {
        ApiError::invalid_field(error.field, error.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated(reason) => {
                ApiError::unauthenticated("a valid credential is required").with_auth_reason(reason)
            }
            AuthError::Forbidden(message) => {
                ApiError::forbidden(message).with_auth_reason("forbidden_header")
            }
            AuthError::ReplayedNonce => ApiError::conflict("this signature nonce was already used")
                .with_auth_reason("replayed_nonce"),
            AuthError::Store(error) => error.into(),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(error: ReadError) -> Self {
        match error {
            ReadError::NotFound => ApiError::not_found(),
            ReadError::Forbidden => ApiError::forbidden("this credential may not do this"),
            ReadError::Store(error) => error.into(),
        }
    }
}

impl From<CreateOrganizationError> for ApiError {
    fn from(error: CreateOrganizationError) -> Self {
        match error {
            CreateOrganizationError::Forbidden => ApiError::forbidden(error.to_string()),
            CreateOrganizationError::Invalid(invalid) => invalid.into(),
            CreateOrganizationError::Store(error) => error.into(),
        }
    }
}

impl From<CreateOrchestratorError> for ApiError {
    fn from(error: CreateOrchestratorError) -> Self {
        match error {
            CreateOrchestratorError::Forbidden => ApiError::forbidden(error.to_string()),
            CreateOrchestratorError::Invalid(invalid) => invalid.into(),
            CreateOrchestratorError::SlugTaken => ApiError::conflict(error.to_string()),
            CreateOrchestratorError::Store(error) => error.into(),
        }
    }
}

impl From<CreateDestinationError> for ApiError {
    fn from(error: CreateDestinationError) -> Self {
        match error {
            CreateDestinationError::Forbidden => ApiError::forbidden(error.to_string()),
            CreateDestinationError::Invalid(invalid) => invalid.into(),
            CreateDestinationError::SlugTaken => ApiError::conflict(error.to_string()),
            CreateDestinationError::Store(error) => error.into(),
        }
    }
}

impl From<UpdateDestinationError> for ApiError {
    fn from(error: UpdateDestinationError) -> Self {
        match error {
            UpdateDestinationError::NotFound => ApiError::not_found(),
            UpdateDestinationError::Invalid(invalid) => invalid.into(),
            UpdateDestinationError::Store(error) => error.into(),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::NotFound => ApiError::not_found(),
            KeyError::Forbidden => ApiError::forbidden(error.to_string()),
            KeyError::TooManyActiveKeys(_) => ApiError::conflict(error.to_string()),
            KeyError::Store(error) => error.into(),
        }
    }
}

impl From<IssueClientError> for ApiError {
    fn from(error: IssueClientError) -> Self {
        match error {
            IssueClientError::DestinationRequired => {
                ApiError::invalid_field("X-Destination-Id", error.to_string())
            }
            IssueClientError::Forbidden => ApiError::forbidden(error.to_string()),
            IssueClientError::Invalid(invalid) => invalid.into(),
            IssueClientError::Store(error) => error.into(),
        }
    }
}

impl From<ClientChangeError> for ApiError {
    fn from(error: ClientChangeError) -> Self {
        match error {
            ClientChangeError::NotFound => ApiError::not_found(),
            ClientChangeError::Forbidden => ApiError::forbidden(error.to_string()),
            ClientChangeError::Revoked => ApiError::conflict(error.to_string()),
            ClientChangeError::Store(error) => error.into(),
        }
    }
}

impl From<CreateRequestError> for ApiError {
    fn from(error: CreateRequestError) -> Self {
        match error {
            CreateRequestError::DestinationRequired => {
                ApiError::invalid_field("X-Destination-Id", error.to_string())
            }
            CreateRequestError::Forbidden(message) => ApiError::forbidden(message),
            CreateRequestError::MissingPermission(permission) => {
                ApiError::missing_permission(permission)
            }
            CreateRequestError::Invalid(invalid) => invalid.into(),
            CreateRequestError::Store(error) => error.into(),
        }
    }
}

impl From<RequestActionError> for ApiError {
    fn from(error: RequestActionError) -> Self {
        match error {
            RequestActionError::NotFound => ApiError::not_found(),
            RequestActionError::Forbidden => ApiError::forbidden(error.to_string()),
            RequestActionError::MissingPermission(permission) => {
                ApiError::missing_permission(permission)
            }
            RequestActionError::Conflict(message) => ApiError::conflict(message),
            RequestActionError::Invalid(invalid) => invalid.into(),
            RequestActionError::Store(error) => error.into(),
        }
    }
}

impl From<PaymentPageError> for ApiError {
    fn from(error: PaymentPageError) -> Self {
        match error {
            PaymentPageError::NotFound => ApiError::not_found(),
            PaymentPageError::Gone => ApiError::gone(error.to_string()),
            PaymentPageError::Store(error) => error.into(),
        }
    }
}

impl From<CustomerError> for ApiError {
    fn from(error: CustomerError) -> Self {
        match error {
            CustomerError::NotFound => ApiError::not_found(),
            CustomerError::Forbidden => ApiError::forbidden(error.to_string()),
            CustomerError::MissingPermission(permission) => {
                ApiError::missing_permission(permission)
            }
            CustomerError::Duplicate { ref existing_id } => {
                let mut conflict = ApiError::conflict(error.to_string());
                conflict.details = Some(serde_json::json!({ "existing_id": existing_id }));
                conflict
            }
            CustomerError::Invalid(invalid) => invalid.into(),
            CustomerError::Store(error) => error.into(),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(error: WebhookError) -> Self {
        match error {
            WebhookError::NotFound => ApiError::not_found(),
            WebhookError::Forbidden(message) => ApiError::forbidden(message),
            WebhookError::Invalid(invalid) => invalid.into(),
            WebhookError::Store(error) => error.into(),
        }
    }
}

impl From<SubmitClaimError> for ApiError {
    fn from(error: SubmitClaimError) -> Self {
        match error {
            SubmitClaimError::Forbidden(message) => ApiError::forbidden(message),
            SubmitClaimError::Invalid(invalid) => invalid.into(),
            SubmitClaimError::UnknownNamespace => ApiError::not_found_because(error.to_string()),
            SubmitClaimError::NonceReused => ApiError::conflict(error.to_string())
                .with_details(serde_json::json!({ "field": "nonce" })),
            SubmitClaimError::AgentIdTaken => ApiError::conflict(error.to_string()),
            SubmitClaimError::Store(error) => error.into(),
        }
    }
}

impl From<ClaimDecisionError> for ApiError {
    fn from(error: ClaimDecisionError) -> Self {
        match error {
            ClaimDecisionError::NotFound => ApiError::not_found(),
            ClaimDecisionError::Forbidden => ApiError::forbidden(error.to_string()),
            ClaimDecisionError::Invalid(invalid) => invalid.into(),
            ClaimDecisionError::Status(_) => ApiError::conflict(error.to_string()),
            ClaimDecisionError::Full {
                approved_agents,
                max_agents,
            } => {
                let mut conflict = ApiError::conflict(error.to_string());
                conflict.details = Some(serde_json::json!({
                    "approved_agents": approved_agents,
                    "max_agents": max_agents,
                }));
                conflict
            }
            ClaimDecisionError::Store(error) => error.into(),
        }
    }
}
