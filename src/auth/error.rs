//! `AuthError`: the one error type of the auth use cases. Variants name outcomes, not
//! causes; `graphql::error` maps each to a code of API.md.

use thiserror::Error;

/// Why an access token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <jwt>`, or not a JWT we could have issued.
    Malformed,
    /// Signature, algorithm, key, audience, issuer or type check failed.
    Invalid,
    /// Past `exp`.
    Expired,
    /// Its session was ended, expired or never existed.
    Revoked,
}

/// Every way an auth use case can fail.
#[derive(Debug, Error)]
pub enum AuthError {
    /// An input failed validation; `field` is its schema name.
    #[error("{reason}")]
    InvalidInput {
        /// Schema name of the offending input field.
        field: &'static str,
        /// What is wrong, for a person to fix.
        reason: String,
    },
    /// `register` with an email that already has an account.
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Wrong email or password: one message for both.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// A required access token is missing or unusable.
    #[error("{}", match .0 {
        TokenProblem::Missing => "sign in first: this needs an `Authorization: Bearer <access token>` header",
        TokenProblem::Malformed => "the Authorization header must be `Bearer <access token>`",
        TokenProblem::Invalid => "the access token is not valid",
        TokenProblem::Expired => "the access token has expired: refresh it",
        TokenProblem::Revoked => "the session of this access token has ended: sign in again",
    })]
    Unauthenticated(TokenProblem),
    /// Signed in, but not allowed.
    #[error("you are not allowed to do this")]
    Forbidden,
    /// A passkey registration or assertion that failed verification (wrong origin or RP
    /// id, counter gone back, another account's credential, bad signature): the reason
    /// says which, for the developer fixing a setup. `INVALID_CREDENTIALS`.
    #[error("{0}")]
    PasskeyRefused(&'static str),
    /// Valid credentials of a disabled account (said only after the credentials).
    #[error("this account has been disabled: contact an administrator")]
    AccountDisabled,
    /// A refresh, verification or reset token that is unknown, expired or used.
    #[error("the token is invalid, expired or already used")]
    InvalidToken,
    /// A rotated refresh token came back: its session has been ended.
    #[error("this refresh token was already used, so its session has been ended: sign in again")]
    TokenReused,
    /// Too many attempts.
    #[error("too many attempts: retry in {retry_after} seconds")]
    RateLimited {
        /// Seconds until the next attempt may succeed.
        retry_after: u64,
    },
    /// The password was right, but the account has a second factor: no tokens yet.
    /// `verifyMfa` with this token and a code completes the sign-in.
    #[error(
        "this account has a second factor: call verifyMfa with extensions.mfaToken and a code from the authenticator app or a recovery code"
    )]
    MfaRequired {
        /// The single-use token of this sign-in (redacted in `Debug`).
        mfa_token: super::token::OpaqueToken,
        /// The kinds of code that complete it (`TOTP`, `RECOVERY_CODE`).
        factors: Vec<&'static str>,
    },
    /// A wrong, reused or expired TOTP or recovery code.
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    /// The operation needs a more recent (second-factor) authentication.
    #[error("{}", if *.second_factor {
        format!("this needs a second-factor verification within the last {max_age} seconds: call verifyMfa with a code (no mfaToken), then retry")
    } else {
        format!("this needs a sign-in within the last {max_age} seconds: sign in again, then retry")
    })]
    InsufficientUserAuthentication {
        /// How recent the authentication must be, in seconds (RFC 9470 `max_age`).
        max_age: u64,
        /// Whether the user has a second factor (it must then be part of it).
        second_factor: bool,
    },
    /// A provider identity whose email belongs to an existing account that may not be
    /// linked automatically: sign in to that account and link the provider from there.
    #[error(
        "an account with this email already exists: sign in to it, then link this provider with startOAuth(link: true)"
    )]
    LinkRequired {
        /// The provider id.
        provider: String,
    },
    /// The database cannot be reached.
    #[error("the service is temporarily unavailable: retry shortly")]
    Unavailable,
    /// Anything else: logged once at the boundary, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl AuthError {
    /// Shorthand for [`AuthError::InvalidInput`].
    pub fn input(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            field,
            reason: reason.into(),
        }
    }
}

impl From<anyhow::Error> for AuthError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl From<diesel::result::Error> for AuthError {
    fn from(err: diesel::result::Error) -> Self {
        if crate::db::is_unavailable(&err) {
            Self::Unavailable
        } else {
            Self::Internal(anyhow::Error::new(err).context("database query"))
        }
    }
}

impl From<diesel_async::pooled_connection::bb8::RunError> for AuthError {
    fn from(_: diesel_async::pooled_connection::bb8::RunError) -> Self {
        // Timing out on the pool means no connection could be made or freed in time.
        Self::Unavailable
    }
}
