//! Unit tests of `input`.

use super::*;

fn field_of(err: AuthError) -> &'static str {
    match err {
        AuthError::InvalidInput { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn emails_are_trimmed_and_lowercased() {
    let e = Email::parse("  Alice@Example.COM ", "email").unwrap();
    assert_eq!(e.as_str(), "alice@example.com");
}

#[test]
fn malformed_emails_name_their_field() {
    for bad in [
        "",
        "   ",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "a b@example.com",
        "Alice <alice@example.com>",
        "alice@example.com\r\nBcc: x@y.z",
        &format!("{}@example.com", "a".repeat(250)),
    ] {
        assert_eq!(
            field_of(Email::parse(bad, "email").unwrap_err()),
            "email",
            "{bad:?}"
        );
    }
}

#[test]
fn every_spelling_of_one_address_is_one_email() {
    let same = |a: &str, b: &str| {
        let (x, y) = (
            Email::parse(a, "email").unwrap(),
            Email::parse(b, "email").unwrap(),
        );
        assert_eq!(x.as_str(), y.as_str(), "{a:?} and {b:?}");
        x.as_str().to_owned()
    };
    assert_eq!(same("e\u{301}x@t.test", "\u{e9}x@t.test"), "\u{e9}x@t.test");
    assert_eq!(
        same("user@b\u{fc}cher.test", "user@xn--bcher-kva.test"),
        "user@xn--bcher-kva.test"
    );
    assert_eq!(
        same("user@B\u{dc}CHER.test", "USER@xn--BCHER-KVA.test"),
        "user@xn--bcher-kva.test"
    );
    assert_eq!(same("\u{fb01}x@t.test", "fix@t.test"), "fix@t.test");
    assert_eq!(same("\u{ff41}@t.test", "a@t.test"), "a@t.test");
    assert_eq!(same("a@\u{ff54}\u{ff0e}test", "a@t.test"), "a@t.test");
}

#[test]
fn invisible_and_direction_characters_are_refused_in_emails() {
    for bad in [
        "a\u{200b}@t.test",
        "a\u{200d}b@t.test",
        "a@t\u{200b}.test",
        "\u{202e}a@t.test",
        "a\u{2066}@t.test",
        "\u{feff}a@t.test",
        "a\u{ad}b@t.test",
        "a@t\u{ad}x.test",
    ] {
        match Email::parse(bad, "email") {
            Err(AuthError::InvalidInput { field, reason }) => {
                assert_eq!(field, "email");
                assert!(reason.contains("invisible"), "{bad:?}: {reason}");
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
}

#[test]
fn address_literals_and_ip_hosts_are_refused() {
    for bad in [
        "a@[127.0.0.1]",
        "a@[IPv6:::1]",
        "a@127.0.0.1",
        "a@10.0.0.1.",
        "a@0x7f.1",
        "a@\u{ff11}\u{ff12}\u{ff17}.0.0.1",
    ] {
        match Email::parse(bad, "email") {
            Err(AuthError::InvalidInput { field, reason }) => {
                assert_eq!(field, "email");
                assert!(
                    reason.contains("IP address") || reason.contains("valid"),
                    "{bad:?}: {reason}"
                );
            }
            other => panic!("{bad:?} accepted: {other:?}"),
        }
    }
    assert!(Email::parse("a@3com.test", "email").is_ok());
    assert!(Email::parse("a@mail.123.test", "email").is_ok());
}

#[test]
fn display_names_refuse_invisible_and_direction_characters() {
    for bad in [
        "\u{200b}",
        "Ada\u{202e}gnp.exe",
        "Ada\u{200b}",
        "\u{2067}Ada",
        "\u{feff}Ada",
        "\u{3164}",
        "Ada\u{200d}",
        "\u{200c}Ada",
        "A\u{200d}\u{200d}da",
        "Ada\u{e0041}",
    ] {
        assert_eq!(
            field_of(DisplayName::parse(bad).unwrap_err()),
            "displayName",
            "{bad:?}"
        );
    }
    // Joiners between visible characters shape emoji and scripts: kept.
    for fine in [
        "\u{1f469}\u{200d}\u{1f4bb} Ada",
        "\u{645}\u{6cc}\u{200c}\u{62e}\u{648}\u{627}\u{647}\u{645}",
        "\u{2764}\u{fe0f}",
    ] {
        assert!(DisplayName::parse(fine).is_ok(), "{fine:?}");
    }
}

#[test]
fn password_length_counts_code_points_after_nfkc() {
    // Seven code points, fourteen bytes: too short although bytes would pass.
    assert!(Password::new_password("éàèùâêî", "password").is_err());
    assert!(Password::new_password("éàèùâêîô", "password").is_ok());
    let longest: String = "tangerine quokka ".repeat(8);
    assert!(Password::new_password(&longest[..128], "password").is_ok());
    let err = Password::new_password(&format!("{longest}x"), "newPassword").unwrap_err();
    assert_eq!(field_of(err), "newPassword");
}

#[test]
fn common_passwords_are_refused_with_a_reason() {
    for common in [
        "password",
        "Password1",
        "P@ssw0rd",
        "12345678",
        "qwertyuiop",
        "iloveyou",
        "11111111",
        "abcdefgh",
        "monkey123",
        "authgraph",
        "qwertyuiopasdf",
        "Qwerty123!",
        "Summer2024!",
        "P@ssw0rd123",
        "1qaz2wsx3edc",
        "!!Dragon1999",
        "sdfsdfsdfsdf",
        "zxcvbnm,./",
        "Auth9raph!",
        "L3tm31n!",
    ] {
        match Password::new_password(common, "newPassword") {
            Err(AuthError::InvalidInput { field, reason }) => {
                assert_eq!(field, "newPassword");
                assert!(reason.contains("common") || reason.contains("guess"), "{reason}");
                // ("password" itself is a word of every reason.)
                assert!(
                    common == "password" || !reason.contains(common),
                    "the reason quotes the password: {reason}"
                );
            }
            other => panic!("{common} was not refused: {other:?}"),
        }
    }
    for fine in [
        "correct horse battery staple",
        "analytical engine",
        "Tr0ub4dour&3",
        "purple monkey dishwasher 42",
        "Quokka-Tangerine-1987",
        "my cat is called qwerty",
    ] {
        assert!(Password::new_password(fine, "password").is_ok(), "{fine}");
    }
}

#[test]
fn nfc_and_nfd_spellings_are_the_same_password() {
    let nfc = Password::candidate("caf\u{e9} au lait");
    let nfd = Password::candidate("cafe\u{301} au lait");
    assert_eq!(nfc.expose(), nfd.expose());
}

#[test]
fn passwords_are_never_trimmed() {
    let p = Password::candidate("  spaced  ");
    assert_eq!(p.expose(), b"  spaced  ");
}

#[test]
fn display_names_are_trimmed_and_bounded() {
    assert_eq!(DisplayName::parse("  Ada  ").unwrap().as_str(), "Ada");
    assert!(DisplayName::parse("   ").is_err());
    assert!(DisplayName::parse(&"n".repeat(64)).is_ok());
    assert!(DisplayName::parse(&"n".repeat(65)).is_err());
    assert!(DisplayName::parse("Ada\u{7}").is_err());
}

#[test]
fn debug_output_hides_secrets_and_emails() {
    let p = Password::candidate("hunter2hunter2");
    let e = Email::parse("alice@example.com", "email").unwrap();
    let out = format!("{p:?} {e:?}");
    assert!(!out.contains("hunter2") && !out.contains("alice"), "{out}");
}
