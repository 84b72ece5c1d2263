//! Why a signature was refused, or could not be made.

/// Why a signed request was refused. The messages are safe to return to the caller; each
/// variant also has a stable [`reason`](SignatureError::reason) for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `Signature-Input` or `Signature` is absent.
    #[error("a signed request carries both Signature-Input and Signature; {0} is missing")]
    MissingHeader(&'static str),
    /// A signature header is larger than [`MAX_HEADER_BYTES`].
    #[error("{header} must be at most {limit} bytes")]
    HeaderTooLarge {
        /// The header.
        header: &'static str,
        /// The limit, in bytes.
        limit: usize,
    },
    /// More covered components than [`MAX_COMPONENTS`].
    #[error("a signature may cover at most {limit} components")]
    TooManyComponents {
        /// The limit.
        limit: usize,
    },
    /// More signature parameters than [`MAX_PARAMETERS`].
    #[error("a signature may have at most {limit} parameters")]
    TooManyParameters {
        /// The limit.
        limit: usize,
    },
    /// A signature header is not a Structured Field dictionary.
    #[error("{0} is not a valid structured field dictionary")]
    MalformedHeader(&'static str),
    /// Not exactly one signature.
    #[error("send exactly one signature (found {found})")]
    SignatureCount {
        /// How many labels one of the two headers names.
        found: usize,
    },
    /// `Signature-Input` and `Signature` name different labels.
    #[error("Signature-Input and Signature must name the same one signature label")]
    LabelMismatch,
    /// The `Signature-Input` member is not an inner list of component names.
    #[error(
        "the Signature-Input member must be an inner list of quoted component names with \
         parameters, like (\"@method\" \"@target-uri\");created=…;keyid=\"ed25519:…\";nonce=\"…\""
    )]
    MalformedSignatureInput,
    /// The `Signature` member is not a byte sequence.
    #[error("the Signature member must be a byte sequence (:<base64>:)")]
    MalformedSignature,
    /// A required signature parameter is absent.
    #[error("the signature parameters must include {0}")]
    MissingParameter(&'static str),
    /// A signature parameter has the wrong type.
    #[error("the {name} parameter must be {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A signature parameter this server does not know.
    #[error(
        "the signature parameter {0} is not supported (use created, expires, keyid, alg, nonce, tag)"
    )]
    UnsupportedParameter(String),
    /// `keyid` is not an Ed25519 public key.
    #[error("keyid must be ed25519:<base64 of a 32-byte Ed25519 public key>")]
    InvalidKeyId,
    /// `alg` names another algorithm.
    #[error("alg must be \"ed25519\" (or be left out)")]
    UnsupportedAlgorithm,
    /// `created` is too far in the past.
    #[error("the signature was created more than 300 seconds ago")]
    CreatedTooOld,
    /// `created` is too far in the future.
    #[error("the signature was created more than 60 seconds in the future; check the clock")]
    CreatedInFuture,
    /// `expires` has passed.
    #[error("the signature has expired")]
    Expired,
    /// The nonce is empty or too long.
    #[error("nonce must be 1 to 256 characters")]
    InvalidNonce,
    /// A covered component this server does not support (component parameters, unknown
    /// derived components, header names that are not lowercase).
    #[error(
        "the covered component {0} is not supported: use @method, @target-uri, @authority, \
         @scheme, @path, @query and lowercase header names, without component parameters"
    )]
    UnsupportedComponent(String),
    /// A component is covered twice.
    #[error("the covered component {0} is listed twice")]
    DuplicateComponent(String),
    /// A component that must be covered is not.
    #[error("the signature must cover \"{0}\"")]
    MissingComponent(&'static str),
    /// A covered header is not in the request.
    #[error("the covered header {0} is not in the request")]
    MissingField(String),
    /// A covered value holds characters a signature base cannot (controls, non-ASCII).
    #[error("the covered component {0} holds characters other than visible ASCII")]
    InvalidFieldValue(String),
    /// The target URI given by the caller is not absolute.
    #[error("the request's target URI could not be rebuilt")]
    InvalidTargetUri,
    /// A request with a body has no `Content-Digest`.
    #[error("a request with a body must send Content-Digest: sha-256=:<base64>:")]
    DigestMissing,
    /// `Content-Digest` is not a dictionary of byte sequences.
    #[error("Content-Digest must be a structured field dictionary like sha-256=:<base64>:")]
    DigestMalformed,
    /// `Content-Digest` has no `sha-256` member.
    #[error("Content-Digest must include sha-256")]
    DigestAlgorithm,
    /// `Content-Digest` does not match the body.
    #[error("Content-Digest does not match the body")]
    DigestMismatch,
    /// The signature does not verify with `keyid`.
    #[error("the signature does not verify with the keyid's key")]
    BadSignature,
}

impl SignatureError {
    /// A stable snake_case label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "missing_header",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::TooManyComponents { .. } => "too_many_components",
            Self::TooManyParameters { .. } => "too_many_parameters",
            Self::MalformedHeader(_) => "malformed_header",
            Self::SignatureCount { .. } => "signature_count",
            Self::LabelMismatch => "label_mismatch",
            Self::MalformedSignatureInput => "malformed_signature_input",
            Self::MalformedSignature => "malformed_signature",
            Self::MissingParameter(_) => "missing_parameter",
            Self::InvalidParameter { .. } => "invalid_parameter",
            Self::UnsupportedParameter(_) => "unsupported_parameter",
            Self::InvalidKeyId => "invalid_key_id",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::CreatedTooOld => "created_too_old",
            Self::CreatedInFuture => "created_in_future",
            Self::Expired => "expired",
            Self::InvalidNonce => "invalid_nonce",
            Self::UnsupportedComponent(_) => "unsupported_component",
            Self::DuplicateComponent(_) => "duplicate_component",
            Self::MissingComponent(_) => "missing_component",
            Self::MissingField(_) => "missing_field",
            Self::InvalidFieldValue(_) => "invalid_field_value",
            Self::InvalidTargetUri => "invalid_target_uri",
            Self::DigestMissing => "digest_missing",
            Self::DigestMalformed => "digest_malformed",
            Self::DigestAlgorithm => "digest_algorithm",
            Self::DigestMismatch => "digest_mismatch",
            Self::BadSignature => "bad_signature",
        }
    }
}

/// Why [`AgentSigner::sign`] could not sign (a mistake of the caller, not of a peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    /// A covered header name is not a valid lowercase header name.
    #[error("{0:?} is not a lowercase header name")]
    HeaderName(String),
    /// A covered header value is not visible ASCII.
    #[error("the value of {0} must be visible ASCII")]
    HeaderValue(String),
    /// `created` is outside the range of a Structured Field integer.
    #[error("created must be a Unix time in seconds")]
    Created,
    /// The nonce is empty, too long, or not printable ASCII.
    #[error("the nonce must be 1 to 256 printable ASCII characters")]
    Nonce,
    /// The message cannot be signed (control characters in the method or target URI).
    #[error(transparent)]
    Message(#[from] SignatureError),
}
