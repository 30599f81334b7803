use proptest::prelude::*;
use unicode_normalization::UnicodeNormalization;

use super::*;

fn reason_and_field(err: AuthError) -> (&'static str, String) {
    match err {
        AuthError::InvalidInput { field, reason } => (field, reason),
        other => panic!("unexpected {other:?}"),
    }
}

/// Mostly plausible addresses, with arbitrary text and padding mixed in.
fn emails() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ \t]{0,3}[A-Za-z0-9._%+-]{1,30}@[A-Za-z0-9-]{1,20}(\\.[A-Za-z0-9-]{1,10}){1,3}[ \t]{0,3}",
        "\\PC{0,300}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn a_parsed_email_is_normalised_and_parses_to_itself(raw in emails()) {
        match Email::parse(&raw, "email") {
            Ok(email) => {
                let s = email.as_str();
                prop_assert_eq!(s, s.trim());
                prop_assert_eq!(s.to_lowercase(), s);
                prop_assert!(s.chars().count() <= EMAIL_MAX);
                prop_assert!(!s.chars().any(char::is_control));
                prop_assert!(!s.contains(['<', '>', '"', ' ']));
                let again = Email::parse(s, "email").unwrap();
                prop_assert_eq!(again.as_str(), s);
                // Any other normal form of the accepted text is the same address.
                for other in [raw.nfd().collect::<String>(), raw.nfc().collect(), raw.nfkd().collect()] {
                    let parsed = Email::parse(&other, "email").map(|e| e.0).ok();
                    prop_assert_eq!(parsed.as_deref(), Some(s));
                }
                if s.is_ascii() {
                    let upper = Email::parse(&s.to_ascii_uppercase(), "email").unwrap();
                    prop_assert_eq!(upper.as_str(), s);
                }
            }
            Err(err) => {
                let (field, reason) = reason_and_field(err);
                prop_assert_eq!(field, "email");
                prop_assert!(!reason.contains('@'), "{}", reason);
            }
        }
    }

    #[test]
    fn password_length_rules_count_nfkc_code_points(raw in "\\PC{0,140}", field in prop_oneof![Just("password"), Just("newPassword")]) {
        let len = raw.nfkc().count();
        match Password::new_password(&raw, field) {
            Ok(p) => {
                prop_assert!((PASSWORD_MIN..=PASSWORD_MAX).contains(&len));
                let normalised: String = raw.nfkc().collect();
                prop_assert_eq!(p.expose(), normalised.as_bytes());
            }
            Err(err) => {
                let (got, reason) = reason_and_field(err);
                prop_assert_eq!(got, field);
                if len < PASSWORD_MIN {
                    prop_assert!(reason.contains("at least"), "{}", reason);
                } else if len > PASSWORD_MAX {
                    prop_assert!(reason.contains("at most"), "{}", reason);
                } else {
                    prop_assert!(reason.contains("guess"), "{}", reason);
                }
            }
        }
    }

    #[test]
    fn a_refusal_never_quotes_the_password(raw in "[A-Za-z0-9!#%&]{8,40}[0-9][!#%&]") {
        if let Err(err) = Password::new_password(&raw, "password") {
            let (_, reason) = reason_and_field(err);
            prop_assert!(!reason.contains(&raw), "{}", reason);
        }
    }

    #[test]
    fn normal_forms_of_one_password_are_one_password(raw in "\\PC{0,40}") {
        let nfc: String = raw.nfc().collect();
        let nfd: String = raw.nfd().collect();
        let (a, b) = (Password::candidate(&nfc), Password::candidate(&nfd));
        prop_assert_eq!(a.expose(), b.expose());
        prop_assert_eq!(
            Password::new_password(&nfc, "password").is_ok(),
            Password::new_password(&nfd, "password").is_ok()
        );
    }

    #[test]
    fn passwords_keep_their_spaces(core in "\\PC{1,40}", pad in "[ \t]{1,3}") {
        let padded = format!("{pad}{core}{pad}");
        let expected: String = padded.nfkc().collect();
        let candidate = Password::candidate(&padded);
        prop_assert_eq!(candidate.expose(), expected.as_bytes());
    }

    #[test]
    fn a_display_name_is_trimmed_bounded_and_printable(raw in prop_oneof!["[ ]{0,2}\\PC{0,70}[ ]{0,2}", any::<String>()]) {
        match DisplayName::parse(&raw) {
            Ok(name) => {
                let s = name.as_str();
                prop_assert_eq!(s, s.trim());
                prop_assert!((1..=DISPLAY_NAME_MAX).contains(&s.chars().count()));
                prop_assert!(!s.chars().any(char::is_control));
                prop_assert_eq!(DisplayName::parse(s).unwrap(), name.clone());
            }
            Err(err) => prop_assert_eq!(reason_and_field(err).0, "displayName"),
        }
    }
}
