//! The only place errors get their GraphQL `extensions.code`: `AuthError` for resolver
//! failures, and an extension that codes parse and validation failures.

use std::sync::Arc;

use async_graphql::{
    ErrorExtensionValues, Response, ServerError, ServerResult, ValidationResult, Value, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest, NextValidation,
    },
    parser::types::ExecutableDocument,
};

use crate::auth::AuthError;

/// Codes of API.md ("Errors").
pub mod code {
    /// The document does not parse.
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    /// The document breaks the schema or a limit.
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// No valid access token where one is required.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// Signed in but not allowed.
    pub const FORBIDDEN: &str = "FORBIDDEN";
    /// Validation of an input failed.
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// Email already registered.
    pub const EMAIL_TAKEN: &str = "EMAIL_TAKEN";
    /// Wrong email or password.
    pub const INVALID_CREDENTIALS: &str = "INVALID_CREDENTIALS";
    /// Unusable refresh, verification or reset token.
    pub const INVALID_TOKEN: &str = "INVALID_TOKEN";
    /// Rotated refresh token presented again.
    pub const TOKEN_REUSED: &str = "TOKEN_REUSED";
    /// Too many attempts.
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    /// The password was right; a second factor must follow (`verifyMfa`).
    pub const MFA_REQUIRED: &str = "MFA_REQUIRED";
    /// Wrong, reused or expired TOTP or recovery code.
    pub const INVALID_CODE: &str = "INVALID_CODE";
    /// The operation needs a more recent (second-factor) authentication.
    pub const INSUFFICIENT_USER_AUTHENTICATION: &str = "INSUFFICIENT_USER_AUTHENTICATION";
    /// A provider identity's email belongs to an account that may not be linked automatically.
    pub const LINK_REQUIRED: &str = "LINK_REQUIRED";
    /// Database unreachable.
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
    /// Anything else.
    pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";
}

/// The code an `AuthError` answers with.
pub fn code_of(err: &AuthError) -> &'static str {
    match err {
        AuthError::InvalidInput { .. } => code::BAD_USER_INPUT,
        AuthError::EmailTaken => code::EMAIL_TAKEN,
        AuthError::InvalidCredentials => code::INVALID_CREDENTIALS,
        AuthError::Unauthenticated(_) => code::UNAUTHENTICATED,
        AuthError::Forbidden => code::FORBIDDEN,
        AuthError::InvalidToken => code::INVALID_TOKEN,
        AuthError::TokenReused => code::TOKEN_REUSED,
        AuthError::RateLimited { .. } => code::RATE_LIMITED,
        AuthError::MfaRequired { .. } => code::MFA_REQUIRED,
        AuthError::InvalidCode => code::INVALID_CODE,
        AuthError::InsufficientUserAuthentication { .. } => code::INSUFFICIENT_USER_AUTHENTICATION,
        AuthError::LinkRequired { .. } => code::LINK_REQUIRED,
        AuthError::Unavailable => code::SERVICE_UNAVAILABLE,
        AuthError::Internal(_) => code::INTERNAL,
    }
}

impl From<AuthError> for async_graphql::Error {
    fn from(err: AuthError) -> Self {
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", code_of(&err));
        match &err {
            AuthError::InvalidInput { field, .. } => ext.set("field", *field),
            AuthError::EmailTaken => ext.set("field", "email"),
            AuthError::RateLimited { retry_after } => ext.set("retryAfter", *retry_after),
            AuthError::MfaRequired { mfa_token, factors } => {
                ext.set("mfaToken", mfa_token.expose());
                ext.set("factors", factors.clone());
            }
            AuthError::InsufficientUserAuthentication { max_age, .. } => ext.set("maxAge", *max_age),
            AuthError::LinkRequired { provider } => ext.set("provider", provider.as_str()),
            // Logged here, once, with its chain; the client sees only the code.
            AuthError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            AuthError::Unavailable => tracing::warn!("database unavailable"),
            _ => {}
        }
        async_graphql::Error {
            message: err.to_string(),
            source: None,
            extensions: Some(ext),
        }
    }
}

/// Gives every parse and validation error its code (async-graphql leaves them bare),
/// and any other uncoded error `INTERNAL_SERVER_ERROR`, so clients can always branch on
/// `extensions.code`.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodesExtension)
    }
}

struct ErrorCodesExtension;

fn with_code(mut err: ServerError, code: &str) -> ServerError {
    let ext = err.extensions.get_or_insert_with(ErrorExtensionValues::default);
    if ext.get("code").is_none() {
        ext.set("code", code);
    }
    err
}

#[async_trait::async_trait]
impl Extension for ErrorCodesExtension {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let errors = std::mem::take(&mut response.errors);
        response.errors = errors
            .into_iter()
            .map(|e| with_code(without_values(e), code::INTERNAL))
            .collect();
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        next.run(ctx, query, variables).await.map_err(|e| {
            if e.extensions.as_ref().is_some_and(|x| x.get("code").is_some()) {
                // Refused by a limit of ours before parsing: do not parse it here either.
                return e;
            }
            // async-graphql checks the recursion and directive limits while parsing: a
            // document that parses on its own broke a limit, which API.md codes as a
            // validation failure. (Only failures pay for the second parse.)
            if async_graphql::parser::parse_query(query).is_ok() {
                with_code(e, code::VALIDATION_FAILED)
            } else {
                with_code(without_source(e), code::PARSE_FAILED)
            }
        })
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        next.run(ctx).await.map_err(|errors| {
            errors
                .into_iter()
                .map(|e| with_code(e, code::VALIDATION_FAILED))
                .collect()
        })
    }
}

/// The parser renders the offending source line into its message, so a password or
/// token written inline in the document would come back in the error (and in any log
/// of it): keep only what was expected there; `locations` still says where.
fn without_source(mut err: ServerError) -> ServerError {
    if err.message.contains('\n') {
        let expected = err
            .message
            .lines()
            .find_map(|line| line.trim().strip_prefix("= "))
            .unwrap_or("syntax error")
            .to_owned();
        err.message = format!("the document does not parse: {expected}");
    }
    err
}

/// async-graphql quotes a mistyped input value back (`Expected input type "LoginInput",
/// found "hunter2".`), and a client that puts a password in the wrong place would get
/// it echoed into its error logs: keep the expected type, drop the value.
fn without_values(mut err: ServerError) -> ServerError {
    if let Some(at) = err.message.find(", found ")
        && err.message[..at].contains("Expected input type")
    {
        err.message.truncate(at);
        err.message.push('.');
    }
    err
}

/// Whether a response failed before execution (parse or validation), which the
/// GraphQL-over-HTTP spec answers with 400 on `application/graphql-response+json`.
pub fn failed_before_execution(response: &Response) -> bool {
    response.data == Value::Null
        && response.errors.iter().any(|e| {
            e.extensions
                .as_ref()
                .and_then(|x| x.get("code"))
                .is_some_and(|c| {
                    *c == Value::from(code::PARSE_FAILED) || *c == Value::from(code::VALIDATION_FAILED)
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TokenProblem, refresh_token::PlainToken};

    fn extensions(err: AuthError) -> (String, serde_json::Value) {
        let e: async_graphql::Error = err.into();
        let json = serde_json::to_value(e.extensions.unwrap()).unwrap();
        (e.message, json)
    }

    #[test]
    fn every_variant_maps_to_its_code() {
        let cases = [
            (AuthError::input("email", "bad"), "BAD_USER_INPUT"),
            (AuthError::EmailTaken, "EMAIL_TAKEN"),
            (AuthError::InvalidCredentials, "INVALID_CREDENTIALS"),
            (
                AuthError::Unauthenticated(TokenProblem::Expired),
                "UNAUTHENTICATED",
            ),
            (AuthError::Forbidden, "FORBIDDEN"),
            (AuthError::InvalidToken, "INVALID_TOKEN"),
            (AuthError::TokenReused, "TOKEN_REUSED"),
            (AuthError::RateLimited { retry_after: 3 }, "RATE_LIMITED"),
            (
                AuthError::MfaRequired {
                    mfa_token: PlainToken::presented("t"),
                    factors: vec!["TOTP"],
                },
                "MFA_REQUIRED",
            ),
            (AuthError::InvalidCode, "INVALID_CODE"),
            (
                AuthError::InsufficientUserAuthentication {
                    max_age: 600,
                    second_factor: true,
                },
                "INSUFFICIENT_USER_AUTHENTICATION",
            ),
            (
                AuthError::LinkRequired {
                    provider: "google".into(),
                },
                "LINK_REQUIRED",
            ),
            (AuthError::Unavailable, "SERVICE_UNAVAILABLE"),
            (AuthError::Internal(anyhow::anyhow!("x")), "INTERNAL_SERVER_ERROR"),
        ];
        for (err, expected) in cases {
            assert_eq!(extensions(err).1["code"], expected);
        }
    }

    #[test]
    fn input_errors_name_their_field_and_limits_their_wait() {
        let (_, ext) = extensions(AuthError::input("displayName", "too long"));
        assert_eq!(ext["field"], "displayName");
        let (_, ext) = extensions(AuthError::RateLimited { retry_after: 42 });
        assert_eq!(ext["retryAfter"], 42);
    }

    #[test]
    fn link_required_names_the_provider() {
        let (message, ext) = extensions(AuthError::LinkRequired {
            provider: "github".into(),
        });
        assert_eq!(ext["provider"], "github");
        assert!(message.contains("link: true"), "{message}");
    }

    #[test]
    fn mfa_errors_carry_what_the_client_needs_next() {
        let (message, ext) = extensions(AuthError::MfaRequired {
            mfa_token: PlainToken::presented("the-token"),
            factors: vec!["TOTP", "RECOVERY_CODE"],
        });
        assert_eq!(ext["mfaToken"], "the-token");
        assert_eq!(ext["factors"], serde_json::json!(["TOTP", "RECOVERY_CODE"]));
        assert!(!message.contains("the-token"), "{message}");
        let (message, ext) = extensions(AuthError::InsufficientUserAuthentication {
            max_age: 600,
            second_factor: true,
        });
        assert_eq!(ext["maxAge"], 600);
        assert!(
            message.contains("600") && message.contains("verifyMfa"),
            "{message}"
        );
    }

    #[test]
    fn parse_errors_never_quote_the_document() {
        let query = r#"mutation { login(input: { email: "a@b.co", password: "hunter2-secret" }) { "#;
        let parse_error = async_graphql::parser::parse_query(query).unwrap_err();
        let err = without_source(ServerError::new(parse_error.to_string(), None));
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert_eq!(err.message, "the document does not parse: expected selection");
    }

    #[test]
    fn mistyped_values_are_not_quoted_back() {
        let err = without_values(ServerError::new(
            r#"Failed to parse "String": Expected input type "String", found {"pw": "hunter2"}."#,
            None,
        ));
        assert_eq!(
            err.message,
            r#"Failed to parse "String": Expected input type "String"."#
        );
        let untouched = without_values(ServerError::new("field not found, found nothing", None));
        assert_eq!(untouched.message, "field not found, found nothing");
    }

    #[test]
    fn internal_errors_show_no_internals() {
        let (message, _) = extensions(AuthError::Internal(anyhow::anyhow!(
            "relation users does not exist at 10.0.0.3"
        )));
        assert_eq!(message, "internal error");
    }
}
