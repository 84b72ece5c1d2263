//! The covered components and the signature base of RFC 9421 §2: what both the signer and
//! the verifier compute, byte for byte.

use http::Uri;
use http::header::HeaderName;
use sfv::{InnerList, Item, ListSerializer};

use crate::fields::field_value;
use crate::{MAX_COMPONENTS, SignatureError, SignedMessage};

/// A covered component this crate supports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Component {
    Method,
    TargetUri,
    Authority,
    Scheme,
    Path,
    Query,
    /// A header field, by its lowercase name, without component parameters.
    Field(HeaderName),
}

impl Component {
    /// The component of one item of the `Signature-Input` inner list.
    pub(crate) fn from_item(item: &Item) -> Result<Self, SignatureError> {
        let Some(name) = item.bare_item.as_string() else {
            return Err(SignatureError::MalformedSignatureInput);
        };
        let name = name.as_str();
        if !item.params.is_empty() {
            let shown = sfv::FieldType::serialize(item);
            return Err(SignatureError::UnsupportedComponent(shown));
        }
        let unsupported = || SignatureError::UnsupportedComponent(format!("\"{name}\""));
        Ok(match name {
            "@method" => Self::Method,
            "@target-uri" => Self::TargetUri,
            "@authority" => Self::Authority,
            "@scheme" => Self::Scheme,
            "@path" => Self::Path,
            "@query" => Self::Query,
            derived if derived.starts_with('@') => return Err(unsupported()),
            field => Self::Field(
                HeaderName::from_lowercase(field.as_bytes()).map_err(|_| unsupported())?,
            ),
        })
    }

    /// The component's name, as covered (`@method`, `content-digest`).
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Method => "@method",
            Self::TargetUri => "@target-uri",
            Self::Authority => "@authority",
            Self::Scheme => "@scheme",
            Self::Path => "@path",
            Self::Query => "@query",
            Self::Field(name) => name.as_str(),
        }
    }

    /// Whether the value comes from the parsed target URI.
    fn is_part_of_uri(&self) -> bool {
        matches!(
            self,
            Self::Authority | Self::Scheme | Self::Path | Self::Query
        )
    }
}

/// The covered components, at most [`MAX_COMPONENTS`], each supported and listed once.
pub(crate) fn covered_components(items: &[Item]) -> Result<Vec<Component>, SignatureError> {
    if items.len() > MAX_COMPONENTS {
        return Err(SignatureError::TooManyComponents {
            limit: MAX_COMPONENTS,
        });
    }
    let mut components: Vec<Component> = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        let component = Component::from_item(item)?;
        if !seen.insert(component.name().to_owned()) {
            return Err(SignatureError::DuplicateComponent(format!(
                "\"{}\"",
                component.name()
            )));
        }
        components.push(component);
    }
    Ok(components)
}

/// The canonical serialization of an inner list with its parameters (`@signature-params`).
pub(crate) fn serialize_inner_list(input: &InnerList) -> String {
    let mut text = String::new();
    // A list of one inner list serializes exactly as that inner list.
    let mut list = ListSerializer::with_buffer(&mut text);
    let mut inner = list.inner_list();
    inner.items(&input.items);
    let _ = inner.finish().parameters(&input.params);
    text
}

/// The signature base of RFC 9421 §2.5: one line per covered component, then
/// `"@signature-params"`, with no trailing newline.
pub(crate) fn signature_base(
    message: &SignedMessage<'_>,
    components: &[Component],
    signature_params: &str,
) -> Result<String, SignatureError> {
    let uri = if components.iter().any(Component::is_part_of_uri) {
        let uri = message.target_uri.parse::<Uri>();
        Some(uri.map_err(|_| SignatureError::InvalidTargetUri)?)
    } else {
        None
    };
    let mut base = String::new();
    for component in components {
        let value = component_value(message, component, uri.as_ref())?;
        // The base is ASCII text of lines: no controls (a tab inside a header is allowed).
        if !value
            .bytes()
            .all(|byte| byte == b'\t' || (b' '..=b'~').contains(&byte))
        {
            return Err(SignatureError::InvalidFieldValue(format!(
                "\"{}\"",
                component.name()
            )));
        }
        // Component names need no escaping: the derived ones are fixed and header names
        // cannot hold quotes or backslashes.
        base.push('"');
        base.push_str(component.name());
        base.push_str("\": ");
        base.push_str(&value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(signature_params);
    Ok(base)
}

/// The value of one covered component (RFC 9421 §2.1 and §2.2).
pub(crate) fn component_value(
    message: &SignedMessage<'_>,
    component: &Component,
    uri: Option<&Uri>,
) -> Result<String, SignatureError> {
    let uri = || uri.ok_or(SignatureError::InvalidTargetUri);
    Ok(match component {
        Component::Method => message.method.to_owned(),
        Component::TargetUri => message.target_uri.to_owned(),
        Component::Authority => {
            let uri = uri()?;
            let authority = uri.authority().ok_or(SignatureError::InvalidTargetUri)?;
            let host = authority.host().to_ascii_lowercase();
            let default_port = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
                Some("http") => Some(80),
                Some("https") => Some(443),
                _ => None,
            };
            match authority.port_u16() {
                Some(port) if Some(port) != default_port => format!("{host}:{port}"),
                _ => host,
            }
        }
        Component::Scheme => uri()?
            .scheme_str()
            .ok_or(SignatureError::InvalidTargetUri)?
            .to_ascii_lowercase(),
        Component::Path => match uri()?.path() {
            "" => "/".to_owned(),
            path => path.to_owned(),
        },
        Component::Query => format!("?{}", uri()?.query().unwrap_or_default()),
        Component::Field(name) => field_value(message.headers, name.as_str())
            .map_err(|_| SignatureError::InvalidFieldValue(format!("\"{name}\"")))?
            .ok_or_else(|| SignatureError::MissingField(format!("\"{name}\"")))?,
    })
}
