//! Every `extensions.code` the service answers with, in one place: the codes of API.md
//! for GraphQL errors and the transport's for refused HTTP requests. Whatever writes a
//! code or reads one back (error bodies, logs, metrics) goes through [`Code`].

use async_graphql::{ErrorExtensionValues, ServerError, Value};

/// A machine-readable error code (`extensions.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// The document does not parse.
    ParseFailed,
    /// The document breaks the schema or a limit.
    ValidationFailed,
    /// No valid access token where one is required.
    Unauthenticated,
    /// Signed in but not allowed.
    Forbidden,
    /// An input (argument, variable or input field) is invalid.
    BadUserInput,
    /// Email already registered.
    EmailTaken,
    /// Wrong email or password.
    InvalidCredentials,
    /// Unusable refresh, verification or reset token.
    InvalidToken,
    /// Rotated refresh token presented again.
    TokenReused,
    /// Too many attempts.
    RateLimited,
    /// Valid credentials of a disabled account.
    AccountDisabled,
    /// The password was right; a second factor must follow (`verifyMfa`).
    MfaRequired,
    /// Wrong, reused or expired TOTP or recovery code.
    InvalidCode,
    /// The operation needs a more recent (second-factor) authentication.
    InsufficientUserAuthentication,
    /// A provider identity's email belongs to an account that may not be linked
    /// automatically (`extensions.provider`).
    LinkRequired,
    /// The database (or another dependency) is unreachable, or the request ran out of time.
    ServiceUnavailable,
    /// Anything else.
    Internal,
    /// Transport: the body is not a GraphQL request.
    BadRequest,
    /// Transport: a mutation over GET.
    MethodNotAllowed,
    /// Transport: the body is over the limit.
    PayloadTooLarge,
    /// Transport: POST without a JSON content type.
    UnsupportedMediaType,
    /// Transport: `Accept` names no format we answer in.
    NotAcceptable,
    /// Transport: no such route.
    NotFound,
    /// Transport: the request body did not arrive within `HTTP_BODY_TIMEOUT`.
    RequestTimeout,
}

impl Code {
    /// Every code, for tests and for code that reads codes back.
    pub const ALL: [Code; 24] = [
        Code::ParseFailed,
        Code::ValidationFailed,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::BadUserInput,
        Code::EmailTaken,
        Code::InvalidCredentials,
        Code::InvalidToken,
        Code::TokenReused,
        Code::RateLimited,
        Code::AccountDisabled,
        Code::MfaRequired,
        Code::InvalidCode,
        Code::InsufficientUserAuthentication,
        Code::LinkRequired,
        Code::ServiceUnavailable,
        Code::Internal,
        Code::BadRequest,
        Code::MethodNotAllowed,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::NotAcceptable,
        Code::NotFound,
        Code::RequestTimeout,
    ];

    /// The code as clients see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::ParseFailed => "GRAPHQL_PARSE_FAILED",
            Code::ValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::EmailTaken => "EMAIL_TAKEN",
            Code::InvalidCredentials => "INVALID_CREDENTIALS",
            Code::InvalidToken => "INVALID_TOKEN",
            Code::TokenReused => "TOKEN_REUSED",
            Code::RateLimited => "RATE_LIMITED",
            Code::AccountDisabled => "ACCOUNT_DISABLED",
            Code::MfaRequired => "MFA_REQUIRED",
            Code::InvalidCode => "INVALID_CODE",
            Code::InsufficientUserAuthentication => "INSUFFICIENT_USER_AUTHENTICATION",
            Code::LinkRequired => "LINK_REQUIRED",
            Code::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Code::Internal => "INTERNAL_SERVER_ERROR",
            Code::BadRequest => "BAD_REQUEST",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Code::NotAcceptable => "NOT_ACCEPTABLE",
            Code::NotFound => "NOT_FOUND",
            Code::RequestTimeout => "REQUEST_TIMEOUT",
        }
    }

    /// The code named `text`, if it is one of ours.
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The code an error carries; an uncoded error counts as internal (`error` codes
    /// every error before a response leaves, so only its own input is ever uncoded).
    pub fn of(err: &ServerError) -> Code {
        match err.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(Value::String(text)) => Code::parse(text).unwrap_or(Code::Internal),
            _ => Code::Internal,
        }
    }

    /// Whether `err` already carries a code.
    pub fn is_set(err: &ServerError) -> bool {
        err.extensions.as_ref().is_some_and(|x| x.get("code").is_some())
    }

    /// `err` with this code, unless it already had one.
    pub fn or_on(self, mut err: ServerError) -> ServerError {
        let ext = err.extensions.get_or_insert_with(ErrorExtensionValues::default);
        if ext.get("code").is_none() {
            ext.set("code", self.as_str());
        }
        err
    }

    /// A new error with this code and `message`.
    pub fn error(self, message: impl Into<String>) -> ServerError {
        self.or_on(ServerError::new(message, None))
    }

    /// Codes of a request refused before execution: GraphQL-over-HTTP answers these
    /// with 400 on `application/graphql-response+json`.
    pub const fn before_execution(self) -> bool {
        matches!(
            self,
            Code::ParseFailed | Code::ValidationFailed | Code::BadUserInput | Code::BadRequest
        )
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_as_itself() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), Some(code));
            assert_eq!(Code::of(&code.error("x")), code);
        }
        assert_eq!(Code::of(&ServerError::new("bare", None)), Code::Internal);
        assert_eq!(Code::parse("SOMETHING_ELSE"), None);
    }

    #[test]
    fn a_code_already_set_is_kept() {
        let err = Code::Forbidden.error("no");
        assert_eq!(Code::of(&Code::Internal.or_on(err)), Code::Forbidden);
    }
}
