//! How a session was authenticated (`amr`, `acr`, `auth_time`: API.md's table), and the
//! one step-up check that sensitive operations call, judged from the presented access
//! token's claims, never from the session alone (an older token of a session does not
//! inherit a later step-up).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::AuthError;

/// An RFC 8176 authentication method reference (plus `fed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A password.
    Pwd,
    /// A one-time code: TOTP or a recovery code.
    Otp,
    /// More than one factor was used.
    Mfa,
    /// A software-bound (synced) passkey.
    Swk,
    /// A hardware-bound passkey.
    Hwk,
    /// A social (federated) identity provider.
    Fed,
}

impl Method {
    /// The claim and storage spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pwd => "pwd",
            Self::Otp => "otp",
            Self::Mfa => "mfa",
            Self::Swk => "swk",
            Self::Hwk => "hwk",
            Self::Fed => "fed",
        }
    }

    /// Parses the claim and storage spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pwd, Self::Otp, Self::Mfa, Self::Swk, Self::Hwk, Self::Fed]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// `acr` of a single-factor sign-in.
pub const AAL1: &str = "aal1";
/// `acr` once a second factor (or a user-verified passkey) was used.
pub const AAL2: &str = "aal2";

/// How and when a session's user last authenticated: what its access tokens claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assurance {
    /// The methods used, in order, without repeats.
    pub amr: Vec<Method>,
    /// The last active authentication (sign-in or step-up).
    pub auth_time: DateTime<Utc>,
}

impl Assurance {
    /// A sign-in with the given first-step methods at `at`.
    pub fn new(amr: &[Method], at: DateTime<Utc>) -> Self {
        let mut assurance = Self {
            amr: Vec::with_capacity(amr.len()),
            auth_time: at,
        };
        for method in amr {
            assurance.add(*method);
        }
        assurance
    }

    /// A password sign-in at `at`.
    pub fn password(at: DateTime<Utc>) -> Self {
        Self::new(&[Method::Pwd], at)
    }

    /// The same sign-in after a second factor verified at `at`: `otp` and `mfa` join the
    /// methods and `auth_time` moves to `at`.
    pub fn with_second_factor(mut self, at: DateTime<Utc>) -> Self {
        self.add(Method::Otp);
        self.add(Method::Mfa);
        self.auth_time = at;
        self
    }

    fn add(&mut self, method: Method) {
        if !self.amr.contains(&method) {
            self.amr.push(method);
        }
    }

    /// Whether more than one factor was used (`aal2`).
    pub fn is_multi_factor(&self) -> bool {
        self.amr.contains(&Method::Mfa)
    }

    /// `aal2` after more than one factor, else `aal1`.
    pub fn acr(&self) -> &'static str {
        if self.is_multi_factor() { AAL2 } else { AAL1 }
    }

    /// The methods as stored and claimed.
    pub fn amr_strings(&self) -> Vec<String> {
        self.amr.iter().map(|m| m.as_str().to_owned()).collect()
    }

    /// Reads stored or claimed methods; unknown spellings are dropped (they grant nothing).
    pub fn from_parts<'a>(amr: impl IntoIterator<Item = &'a str>, auth_time: DateTime<Utc>) -> Self {
        let methods: Vec<Method> = amr.into_iter().filter_map(Method::parse).collect();
        Self::new(&methods, auth_time)
    }
}

/// What a sensitive operation asks of the caller's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Adding or removing a sign-in method (factors, recovery codes, passkeys, linked
    /// identities): a recent sign-in, and a recent second factor once the user has one.
    /// The same rule fits other security-wide changes (ADMIN mutations).
    SignInMethod,
    /// An account change the caller also confirms with their password
    /// (`changePassword`, `deleteAccount` with a password): a recent second factor once
    /// the user has one; nothing more without one.
    PasswordConfirmed,
    /// `deleteAccount` without a password (accounts that have none): a recent sign-in,
    /// and a recent second factor once the user has one.
    Passwordless,
}

/// The step-up rule of API.md: judges the presented token's claims (`assurance`, `None`
/// for a token issued before tokens carried them) for a user who has an active second
/// factor or not. Refuses with `INSUFFICIENT_USER_AUTHENTICATION` and the max age.
pub fn check(
    presented: Option<&Assurance>,
    has_second_factor: bool,
    requirement: Requirement,
    max_age: Duration,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    if !has_second_factor && requirement == Requirement::PasswordConfirmed {
        return Ok(());
    }
    let recent = presented.is_some_and(|a| {
        let age = now.signed_duration_since(a.auth_time);
        // A little future skew (another replica's clock) still counts as recent.
        age.num_seconds() >= -60 && age.to_std().unwrap_or_default() <= max_age
    });
    let factor_ok = !has_second_factor || presented.is_some_and(Assurance::is_multi_factor);
    if recent && factor_ok {
        Ok(())
    } else {
        Err(AuthError::InsufficientUserAuthentication {
            max_age: max_age.as_secs(),
            second_factor: has_second_factor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_MINUTES: Duration = Duration::from_secs(600);

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn refused(result: Result<(), AuthError>) -> bool {
        matches!(
            result,
            Err(AuthError::InsufficientUserAuthentication { max_age: 600, .. })
        )
    }

    #[test]
    fn claims_follow_the_table_of_api_md() {
        let pwd = Assurance::password(at(0));
        assert_eq!((pwd.amr_strings(), pwd.acr()), (vec!["pwd".to_owned()], "aal1"));
        let both = pwd.clone().with_second_factor(at(5));
        assert_eq!(both.amr_strings(), ["pwd", "otp", "mfa"]);
        assert_eq!((both.acr(), both.auth_time), ("aal2", at(5)));
        // Stepping up twice adds nothing twice.
        let again = both.clone().with_second_factor(at(9));
        assert_eq!(again.amr, both.amr);
        let fed = Assurance::new(&[Method::Fed], at(0)).with_second_factor(at(1));
        assert_eq!(fed.amr_strings(), ["fed", "otp", "mfa"]);
        assert_eq!(
            Assurance::from_parts(["pwd", "bogus", "otp"], at(0)).amr,
            [Method::Pwd, Method::Otp]
        );
    }

    #[test]
    fn users_without_a_factor_need_a_recent_sign_in_for_sign_in_methods_only() {
        let fresh = Assurance::password(at(0));
        let now = at(599);
        assert!(check(Some(&fresh), false, Requirement::SignInMethod, TEN_MINUTES, now).is_ok());
        assert!(refused(check(
            Some(&fresh),
            false,
            Requirement::SignInMethod,
            TEN_MINUTES,
            at(601)
        )));
        assert!(refused(check(
            None,
            false,
            Requirement::Passwordless,
            TEN_MINUTES,
            now
        )));
        // Password users keep working as before, however old their sign-in.
        assert!(
            check(
                None,
                false,
                Requirement::PasswordConfirmed,
                TEN_MINUTES,
                at(99_999)
            )
            .is_ok()
        );
    }

    #[test]
    fn users_with_a_factor_need_a_recent_second_factor_everywhere() {
        let pwd = Assurance::password(at(0));
        let mfa = pwd.clone().with_second_factor(at(0));
        for requirement in [
            Requirement::SignInMethod,
            Requirement::PasswordConfirmed,
            Requirement::Passwordless,
        ] {
            assert!(refused(check(Some(&pwd), true, requirement, TEN_MINUTES, at(1))));
            assert!(check(Some(&mfa), true, requirement, TEN_MINUTES, at(600)).is_ok());
            assert!(refused(check(
                Some(&mfa),
                true,
                requirement,
                TEN_MINUTES,
                at(601)
            )));
            assert!(refused(check(None, true, requirement, TEN_MINUTES, at(1))));
        }
    }
}
