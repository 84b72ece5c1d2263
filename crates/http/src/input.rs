//! Reading the caller's input: list parameters, ids in paths, and empty action bodies.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_ENCODING;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use mandate_domain::ports::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::ApiError;

/// `?limit=&starting_after=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–100, default 20.
    pub limit: Option<u32>,
    /// The id of the last item of the previous page.
    pub starting_after: Option<String>,
}

impl ListParams {
    /// Validates the page; `parse_cursor` checks the cursor is an id of the listed kind.
    pub fn page<T, E>(
        &self,
        parse_cursor: impl Fn(&str) -> Result<T, E>,
    ) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
        if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                "limit must be between 1 and 100",
            ));
        }
        if let Some(cursor) = &self.starting_after {
            parse_cursor(cursor).map_err(|_| {
                ApiError::invalid_field(
                    "starting_after",
                    "starting_after must be an id from this list",
                )
            })?;
        }
        Ok(PageRequest {
            limit,
            starting_after: self.starting_after.clone(),
        })
    }
}

/// For `Option<Option<T>>` fields of a PATCH body: tells a field sent as `null` (`Some(None)`,
/// clear it) from a field not sent (`None`, keep it).
pub fn nullable<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// An id in the path: a malformed one names nothing, so it is simply not found.
pub fn path_id<T, E>(text: &str, parse: impl Fn(&str) -> Result<T, E>) -> Result<T, ApiError> {
    parse(text).map_err(|_| ApiError::not_found())
}

/// The body of an action endpoint: empty or `{}`, nothing else.
#[derive(Debug)]
pub struct EmptyBody;

impl EmptyBody {
    fn check(body: &Bytes) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self);
        }
        match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
            Ok(object) if object.is_empty() => Ok(Self),
            _ => Err(ApiError::invalid("this endpoint takes an empty body or {}")),
        }
    }
}

impl FromRequest for EmptyBody {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = Bytes::from_request(request, payload);
        Box::pin(async move {
            let body = bytes.await.map_err(|_| ApiError::payload_too_large())?;
            Ok(Self::check(&body)?)
        })
    }
}

/// Refuses requests whose body is encoded (`Content-Encoding` other than `identity`) with 415,
/// before anything reads them: a signature's `Content-Digest` and an `Idempotency-Key`'s
/// fingerprint are taken over the bytes sent, and the handlers read JSON, so an encoded body
/// could only be misread.
pub(crate) async fn refuse_encoded_bodies(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let encoded = request.headers().get_all(CONTENT_ENCODING).any(|value| {
        !value
            .to_str()
            .is_ok_and(|text| text.trim().eq_ignore_ascii_case("identity"))
    });
    if encoded {
        let error = ApiError::unsupported_media_type(
            "send the body unencoded: Content-Encoding (gzip, br, …) is not supported on requests",
        );
        let response = actix_web::ResponseError::error_response(&error);
        return Ok(request.into_response(response));
    }
    Ok(next.call(request).await?.map_into_boxed_body())
}
