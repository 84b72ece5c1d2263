//! Reading the caller's input: JSON bodies and query strings (whose errors name the field at
//! fault), list parameters, ids in paths, and empty action bodies.

use std::future::{Ready, ready};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use mandate_domain::ports::PageRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`). Every route that takes one reads it with
/// this extractor: a field of the wrong type or shape, an unknown field or a missing one
/// answers 400 with `details.field`, its path (`metadata.order`, `permissions[1]`).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|essence| essence.trim().to_ascii_lowercase())
            .is_some_and(|essence| essence == "application/json" || essence.ends_with("+json"));
        let bytes = Bytes::from_request(request, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::invalid("send the body as application/json"));
            }
            let body = bytes.await.map_err(|_| ApiError::payload_too_large())?;
            parse_json(&body).map(Json)
        })
    }
}

/// A JSON body that may be left out: an empty body (or only whitespace) is `T::default()`;
/// anything else is read like [`Json`].
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + 'static> FromRequest for OptionalJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = Bytes::from_request(request, payload);
        Box::pin(async move {
            let body = bytes.await.map_err(|_| ApiError::payload_too_large())?;
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Self(T::default()));
            }
            parse_json(&body).map(Self)
        })
    }
}

/// A query string. Every route that takes one reads it with this extractor: an unknown
/// parameter, a repeated one or a value of the wrong type answers 400 with `details.field`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T> Query<T> {
    /// The parameters.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_query(request.query_string()).map(Query))
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let not_json = |error: serde_json::Error| {
        ApiError::invalid(format!("the body is not valid JSON: {error}"))
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if error.is_data() {
            // serde_json ends its messages with the position, which the path replaces.
            let message = error.to_string();
            let position = format!(" at line {} column {}", error.line(), error.column());
            let message = message.strip_suffix(&position).unwrap_or(&message);
            field_error(Input::Body, &path, message)
        } else {
            not_json(error)
        }
    })?;
    deserializer.end().map_err(not_json)?;
    Ok(value)
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(pairs).map_err(|error| {
        let path = error.path().to_string();
        field_error(Input::Query, &path, &error.into_inner().to_string())
    })
}

/// Where a field was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Body,
    Query,
}

/// The words serde's own errors start with; any other message comes from a parser (a number's,
/// a timestamp's) and is replaced by a plain one.
const SERDE_MESSAGES: [&str; 7] = [
    "invalid type: ",
    "invalid value: ",
    "invalid length ",
    "unknown variant ",
    "unknown field ",
    "missing field ",
    "duplicate field ",
];

/// 400 naming the field at fault: `path` is where deserializing stopped (`.` at the top level),
/// `message` what went wrong there. A missing or repeated field is named by the message, below
/// `path`.
fn field_error(input: Input, path: &str, message: &str) -> ApiError {
    let parent = (path != ".").then_some(path);
    let missing = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|start| message.strip_prefix(start))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    let field = match (parent, missing) {
        (Some(parent), Some(name)) => format!("{parent}.{name}"),
        (None, Some(name)) => name.to_owned(),
        (Some(parent), None) => parent.to_owned(),
        (None, None) => {
            return ApiError::invalid(match input {
                Input::Body => format!("invalid body: {message}"),
                Input::Query => format!("invalid query string: {message}"),
            });
        }
    };
    let known = SERDE_MESSAGES
        .iter()
        .any(|start| message.starts_with(start));
    let message = if known {
        message.to_owned()
    } else if input == Input::Query {
        "not a valid value for this parameter".to_owned()
    } else {
        format!("not a valid value ({message})")
    };
    let expected = message
        .split_once(", expected ")
        .map(|(_, expected)| expected.to_owned());
    let shown = match input {
        Input::Body => format!("{field}: {message}"),
        Input::Query => format!("query parameter {field}: {message}"),
    };
    let mut details = serde_json::json!({ "field": field });
    if let Some(expected) = expected {
        details["expected"] = expected.into();
    }
    ApiError::invalid(shown).with_details(details)
}

/// Declares a list's query parameters: the filters given, then `?limit=&starting_after=`,
/// which every list takes, and `page` to read those two.
macro_rules! list_params {
    (
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $type:ty,)* }
    ) => {
        $(#[$meta])*
        #[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[$field_meta])* pub $field: $type,)*
            /// 1–100, default 20.
            pub limit: Option<u32>,
            /// The id of the last item of the previous page.
            pub starting_after: Option<String>,
        }

        impl $name {
            /// Validates the page; `parse_cursor` checks the cursor is an id of the listed kind.
            pub fn page<T, E>(
                &self,
                parse_cursor: impl Fn(&str) -> Result<T, E>,
            ) -> Result<mandate_domain::ports::PageRequest, $crate::error::ApiError> {
                $crate::input::page_request(self.limit, self.starting_after.as_deref(), parse_cursor)
            }
        }
    };
}
pub(crate) use list_params;

list_params! {
    /// `?limit=&starting_after=` of every list.
    pub struct ListParams {}
}

/// The page `limit` and `starting_after` ask for; `parse_cursor` checks the cursor is an id of
/// the listed kind.
pub(crate) fn page_request<T, E>(
    limit: Option<u32>,
    starting_after: Option<&str>,
    parse_cursor: impl Fn(&str) -> Result<T, E>,
) -> Result<PageRequest, ApiError> {
    let limit = limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
    if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            "limit must be between 1 and 100",
        ));
    }
    if let Some(cursor) = starting_after {
        parse_cursor(cursor).map_err(|_| {
            ApiError::invalid_field(
                "starting_after",
                "starting_after must be an id from this list",
            )
        })?;
    }
    Ok(PageRequest {
        limit,
        starting_after: starting_after.map(str::to_owned),
    })
}

/// A list filter's value, read with `parse`; a value it refuses answers 400 naming `field`.
pub(crate) fn filter_value<T>(
    value: Option<&str>,
    field: &str,
    message: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|text| parse(text).ok_or_else(|| ApiError::invalid_field(field, message)))
        .transpose()
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
            Ok(object) => match object.keys().next() {
                None => Ok(Self),
                Some(field) => Err(ApiError::invalid_field(
                    field,
                    format!("unknown field `{field}`: this endpoint takes an empty body or {{}}"),
                )),
            },
            Err(_) => Err(ApiError::invalid("this endpoint takes an empty body or {}")),
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
