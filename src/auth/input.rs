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
mod tests;

/// Property tests: the validators hold their promises for any input, not only examples.
#[cfg(test)]
mod properties;
