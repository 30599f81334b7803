//! Newtypes checked at construction: once a value has one of these types, it is valid.

use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use super::AuthError;

/// Fewest code points in a password (NIST 800-63B, ASVS 6.2.1).
pub const PASSWORD_MIN: usize = 8;
/// Most code points in a password (ASVS 6.2.9 asks for at least 64).
pub const PASSWORD_MAX: usize = 128;
/// Most characters in a display name.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest email address (RFC 5321 path limit).
const EMAIL_MAX: usize = 254;
/// Words that make a password guessable here whatever the lists say.
const CONTEXT_WORDS: [&str; 2] = ["authgraph", "graphql"];

/// A syntactically valid email address in its one canonical spelling: trimmed, the
/// local part in Unicode NFKC and lowercased, the domain in UTS #46 ASCII form
/// (A-labels, lowercase). Every spelling of one address parses to the same value, so
/// two spellings can never be two accounts (`e\u{301}x` and `\u{e9}x`, `b\u{fc}cher`
/// and `xn--bcher-kva`, a full-width `\u{ff41}` and `a`).
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Normalises and validates; `field` names the input in the error.
    pub fn parse(raw: &str, field: &'static str) -> Result<Self, AuthError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(AuthError::input(field, "email is required"));
        }
        // Checked before normalising: NFKC and UTS #46 silently drop some of these, and an
        // address must not look like one thing and be stored as another.
        if raw.chars().any(|c| c.is_control() || invisible(c)) {
            return Err(AuthError::input(
                field,
                "email must not contain invisible, control or text-direction characters",
            ));
        }
        if raw.chars().count() > EMAIL_MAX * 4 {
            return Err(AuthError::input(field, "email is too long"));
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err(AuthError::input(field, "enter a valid email address"));
        };
        // `a@[127.0.0.1]` and `a@127.0.0.1` bypass DNS: mail to them goes dead or to a
        // host of the sender's choosing.
        if domain.starts_with('[') || is_numeric_host(domain) {
            return Err(AuthError::input(
                field,
                "email must use a domain name, not an IP address",
            ));
        }
        let local = canonical_local(local);
        let domain = idna::domain_to_ascii_strict(domain)
            .map_err(|_| AuthError::input(field, "enter a valid email address"))?;
        if is_numeric_host(&domain) {
            return Err(AuthError::input(
                field,
                "email must use a domain name, not an IP address",
            ));
        }
        let email = format!("{local}@{domain}");
        if email.chars().count() > EMAIL_MAX {
            return Err(AuthError::input(field, "email is too long"));
        }
        // The crate accepts display-name forms and quoted locals; a login address needs
        // neither, and refusing control characters keeps mail headers clean (ASVS 1.3.11).
        let plain = !email.contains(['<', '>', '"', ' '])
            && !local.contains('@')
            && !email
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || invisible(c));
        let domain_ok = domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.');
        if local.is_empty() || !plain || !domain_ok || !email_address::EmailAddress::is_valid(&email) {
            return Err(AuthError::input(field, "enter a valid email address"));
        }
        Ok(Self(email))
    }

    /// An address read back from the database, normalised when it was stored.
    pub(crate) fn stored(email: &str) -> Self {
        Self(email.to_owned())
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

/// The canonical local part: NFKC (so compatibility forms such as full-width letters
/// and ligatures fold), lowercased, and NFKC again, since lowercasing can leave a string
/// that is no longer in NFKC; the result parses to itself.
fn canonical_local(local: &str) -> String {
    let folded: String = local.nfkc().collect::<String>().to_lowercase();
    folded.nfkc().collect()
}

/// A host whose last label is all digits is an IPv4 address in some spelling (WHATWG
/// URL's host parser reads `127.1` and `0x7f.1` that way too); no top-level domain is.
fn is_numeric_host(domain: &str) -> bool {
    let last = domain.trim_end_matches('.').rsplit('.').next().unwrap_or("");
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.chars().all(|c| c.is_ascii_hexdigit()),
        None => !last.is_empty() && last.chars().all(|c| c.is_ascii_digit()),
    }
}

/// Characters that show nothing, or reorder what is shown: zero-width spaces and
/// joiners, bidirectional marks, embeddings, overrides and isolates, the word joiner and
/// invisible operators, the byte-order mark, soft hyphen, the Mongolian vowel separator,
/// Hangul fillers, the combining grapheme joiner and tag characters. In a name they
/// spoof (`U+202E` reverses what follows) or make a blank name look filled.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// Zero-width joiner and non-joiner: invisible, but they shape what surrounds them (emoji
/// sequences, Persian and Indic scripts), so a display name may hold one between two
/// visible characters.
fn joiner(c: char) -> bool {
    matches!(c, '\u{200C}' | '\u{200D}')
}

/// A password in NFKC form, so the NFC and NFD spellings of one password are the same
/// password. Never trimmed or truncated (ASVS 6.2.8).
pub struct Password(SecretString);

impl Password {
    /// Normalises a password given to check against a stored hash: no policy applies.
    pub fn candidate(raw: &str) -> Self {
        Self(SecretString::from(raw.nfkc().collect::<String>()))
    }

    /// Normalises and checks a new password against the policy.
    pub fn new_password(raw: &str, field: &'static str) -> Result<Self, AuthError> {
        let password = Self::candidate(raw);
        let len = password.0.expose_secret().chars().count();
        if len < PASSWORD_MIN {
            return Err(AuthError::input(
                field,
                format!("password must be at least {PASSWORD_MIN} characters"),
            ));
        }
        if len > PASSWORD_MAX {
            return Err(AuthError::input(
                field,
                format!("password must be at most {PASSWORD_MAX} characters"),
            ));
        }
        if let Some(reason) = too_guessable(password.0.expose_secret()) {
            return Err(AuthError::input(field, reason));
        }
        Ok(password)
    }

    /// The normalised bytes, for hashing only.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a password is too easy to guess, if it is (NIST 800-63B: say why it is refused).
/// The reason names a kind of weakness, never the password. The list is the `passwords`
/// crate's table of about 100,000 common passwords (ASVS 6.2.4 asks for the top 3000),
/// checked as typed and in its normalised forms: lowercased, with the common letter-for-
/// symbol swaps undone (`P@ssw0rd`), and with digits, years and symbols stripped from
/// its ends (`Summer2024!`), since guessers try exactly those mutations of each listed
/// word first. Keyboard walks (`qwertyuiopasdf`, `1qaz2wsx`), one repeated character and
/// this service's own name are refused too, as no list needs to spell them all out.
fn too_guessable(password: &str) -> Option<String> {
    let lower = password.to_lowercase();
    let stripped = strip_affixes(&lower);
    let why = if is_common(password) || is_common(&lower) {
        "it is on the list of the most common passwords"
    } else if common_variant(&lower, stripped) {
        "it is a common password with letters swapped for symbols, or digits, a year or symbols added"
    } else if password.chars().all(|c| password.starts_with(c)) {
        "it repeats a single character"
    } else if keyboard_walk(&lower) || (stripped.chars().count() >= 4 && keyboard_walk(stripped)) {
        "it is a run of neighbouring keys or letters"
    } else if CONTEXT_WORDS
        .iter()
        .any(|w| lower.contains(w) || unleet(&lower, 'i').contains(w) || unleet(&lower, 'l').contains(w))
    {
        "it contains the name of this service"
    } else {
        return None;
    };
    Some(format!(
        "this password is too easy to guess: {why}. Try a few unrelated words instead."
    ))
}

/// Shortest stripped or swapped form worth looking up: shorter ones (`abc`) are in the
/// list but say nothing about a password built around them.
const VARIANT_MIN: usize = 4;

fn is_common(candidate: &str) -> bool {
    passwords::analyzer::is_common_password(candidate)
}

/// The lowercased password with letter-for-symbol swaps undone and digits, years and
/// symbols stripped from its ends, in every combination, looked up in the list.
fn common_variant(lower: &str, stripped: &str) -> bool {
    // `1` stands for `i` as often as for `l`: try both readings.
    let mut candidates = vec![stripped.to_owned()];
    for one in ['i', 'l'] {
        let swapped = unleet(lower, one);
        candidates.push(strip_affixes(&swapped).to_owned());
        candidates.push(unleet(stripped, one));
        candidates.push(swapped);
    }
    candidates
        .iter()
        .filter(|c| c.as_str() != lower && c.chars().count() >= VARIANT_MIN)
        .any(|c| is_common(c))
}

/// Undoes the usual letter-for-symbol swaps; `one` is how `1` is read.
fn unleet(s: &str, one: char) -> String {
    s.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '8' => 'b',
            '(' => 'c',
            '3' => 'e',
            '6' | '9' => 'g',
            '!' | '|' => 'i',
            '1' => one,
            '0' => 'o',
            '$' | '5' => 's',
            '7' | '+' => 't',
            '2' => 'z',
            other => other,
        })
        .collect()
}

/// Strips runs of digits and symbols (a year, `123`, `!`) from both ends.
fn strip_affixes(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace())
}

/// Sequences a finger or a habit walks: keyboard rows (QWERTY, AZERTY, QWERTZ), the
/// diagonal columns of QWERTY, the alphabet and the digits.
const WALKS: [&str; 10] = [
    "`1234567890-=",
    "qwertyuiop[]\\asdfghjkl;'zxcvbnm,./",
    "azertyuiopqsdfghjklmwxcvbn",
    "qwertzuiopasdfghjklyxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik,9ol.0p;/-['=]",
    "zaq1xsw2cde3vfr4bgt5nhy6mju7,ki8.lo9/;p0",
    "qazwsxedcrfvtgbyhnujmik,ol.p;/",
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "!@#$%^&*()_+",
];

/// True when the whole of `s` is runs of at least three neighbours from [`WALKS`] (in
/// either direction): `qwertyuiopasdf`, `1qaz2wsx`, `asdfjkl;`, `zyxwvuts`.
fn keyboard_walk(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return false;
    }
    let walks: Vec<String> = WALKS
        .iter()
        .flat_map(|w| [(*w).to_owned(), w.chars().rev().collect()])
        .collect();
    let mut i = 0;
    while i < chars.len() {
        // The longest run starting here that some walk contains: a run no walk contains
        // has no longer run containing it either, so grow it until it falls out.
        let contained = |len: usize| {
            let run: String = chars[i..i + len].iter().collect();
            walks.iter().any(|w| w.contains(&run))
        };
        let mut len = 3;
        if i + len > chars.len() || !contained(len) {
            return false;
        }
        while i + len < chars.len() && contained(len + 1) {
            len += 1;
        }
        i += len;
    }
    true
}

/// A display name: trimmed, 1 to 64 characters, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and validates.
    pub fn parse(raw: &str) -> Result<Self, AuthError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(AuthError::input(
                "displayName",
                "display name must not be empty (leave it out or send null instead)",
            ));
        }
        if name.chars().count() > DISPLAY_NAME_MAX {
            return Err(AuthError::input(
                "displayName",
                format!("display name must be at most {DISPLAY_NAME_MAX} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(AuthError::input(
                "displayName",
                "display name must not contain control characters",
            ));
        }
        let chars: Vec<char> = name.chars().collect();
        let stray_joiner = chars.iter().enumerate().any(|(i, c)| {
            let visible = |n: Option<&char>| n.is_some_and(|n| !n.is_whitespace() && !invisible(*n));
            joiner(*c) && !(i > 0 && visible(chars.get(i - 1)) && visible(chars.get(i + 1)))
        });
        if chars.iter().any(|c| invisible(*c) && !joiner(*c)) || stray_joiner {
            return Err(AuthError::input(
                "displayName",
                "display name must not contain invisible or text-direction characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The trimmed name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
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
}

/// Property tests: the validators hold their promises for any input, not only examples.
#[cfg(test)]
mod properties {
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
}
