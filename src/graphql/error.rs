//! The only place errors get their GraphQL `extensions.code`: `AuthError` for resolver
//! failures, and the functions the pipeline runs on parse, validation and response errors.

use async_graphql::{ErrorExtensionValues, Response, ServerError, Value};

use super::code::Code;
use crate::auth::AuthError;

/// The code an `AuthError` answers with.
pub fn code_of(err: &AuthError) -> Code {
    match err {
        AuthError::InvalidInput { .. } => Code::BadUserInput,
        AuthError::EmailTaken => Code::EmailTaken,
        AuthError::InvalidCredentials | AuthError::PasskeyRefused(_) => Code::InvalidCredentials,
        AuthError::Unauthenticated(_) => Code::Unauthenticated,
        AuthError::Forbidden => Code::Forbidden,
        AuthError::AccountDisabled => Code::AccountDisabled,
        AuthError::InvalidToken => Code::InvalidToken,
        AuthError::TokenReused => Code::TokenReused,
        AuthError::RateLimited { .. } => Code::RateLimited,
        AuthError::MfaRequired { .. } => Code::MfaRequired,
        AuthError::InvalidCode => Code::InvalidCode,
        AuthError::InsufficientUserAuthentication { .. } => Code::InsufficientUserAuthentication,
        AuthError::LinkRequired { .. } => Code::LinkRequired,
        AuthError::Unavailable => Code::ServiceUnavailable,
        AuthError::Internal(_) => Code::Internal,
    }
}

impl From<AuthError> for async_graphql::Error {
    fn from(err: AuthError) -> Self {
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", code_of(&err).as_str());
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

/// What async-graphql answers when a subscription is executed over HTTP.
const SUBSCRIPTION_OVER_HTTP: &str = "Subscriptions are not supported on this transport.";

/// Codes every error of a finished response that has no code yet, so clients can always
/// branch on `extensions.code`: async-graphql's own field-level input errors
/// `BAD_USER_INPUT`, anything else `INTERNAL_SERVER_ERROR`.
pub(super) fn code_response(response: &mut Response) {
    let errors = std::mem::take(&mut response.errors);
    response.errors = errors
        .into_iter()
        .map(|mut e| {
            // async-graphql's refusal of a subscription outside the socket is the
            // client's mistake, not ours: say where subscriptions run.
            if e.path.is_empty() && e.message == SUBSCRIPTION_OVER_HTTP {
                e.message = "subscriptions run over the WebSocket at /graphql (graphql-transport-ws)".into();
                return Code::BadRequest.or_on(e);
            }
            // Resolvers answer with a coded `AuthError`; what async-graphql raises
            // uncoded at a field is its own check of the client's input (argument
            // values, `_entities` representations). Anything else is ours.
            let code = if e.path.is_empty() {
                Code::Internal
            } else {
                Code::BadUserInput
            };
            code.or_on(without_values(e))
        })
        .collect();
}

/// Codes a failure to parse `query` (async-graphql leaves it bare).
pub(super) fn code_parse_failure(query: &str, e: ServerError) -> ServerError {
    if Code::is_set(&e) {
        // Refused by a limit of ours before parsing: do not parse it here either.
        return e;
    }
    // async-graphql checks the recursion and directive limits while parsing: a
    // document that parses on its own broke a limit, which API.md codes as a
    // validation failure. (Only failures pay for the second parse.)
    if async_graphql::parser::parse_query(query).is_ok() {
        Code::ValidationFailed.or_on(e)
    } else {
        Code::ParseFailed.or_on(without_source(e))
    }
}

/// Codes the errors of a document that failed validation (async-graphql leaves them
/// bare).
pub(super) fn code_validation_failures(errors: Vec<ServerError>) -> Vec<ServerError> {
    errors
        .into_iter()
        .map(|e| Code::ValidationFailed.or_on(e))
        .collect()
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

/// Whether a response failed before execution (parse, validation, variables, operation
/// selection), which the GraphQL-over-HTTP spec answers with 400 on
/// `application/graphql-response+json`, and without a `data` entry. Errors raised while
/// executing carry the path of their field; these carry none.
pub fn failed_before_execution(response: &Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| e.path.is_empty() && Code::of(e).before_execution())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{TokenProblem, token::OpaqueToken};

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
            (AuthError::PasskeyRefused("x"), "INVALID_CREDENTIALS"),
            (
                AuthError::Unauthenticated(TokenProblem::Expired),
                "UNAUTHENTICATED",
            ),
            (AuthError::Forbidden, "FORBIDDEN"),
            (AuthError::AccountDisabled, "ACCOUNT_DISABLED"),
            (AuthError::InvalidToken, "INVALID_TOKEN"),
            (AuthError::TokenReused, "TOKEN_REUSED"),
            (AuthError::RateLimited { retry_after: 3 }, "RATE_LIMITED"),
            (
                AuthError::MfaRequired {
                    mfa_token: OpaqueToken::presented("t"),
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
            mfa_token: OpaqueToken::presented("the-token"),
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
