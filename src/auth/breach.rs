//! The optional breached-password check (ASVS 6.2.12): a Have I Been Pwned–style
//! k-anonymity range API. Only the first five hex digits of the password's SHA-1 leave
//! the process; the service answers every suffix under that prefix (padded with fake
//! `:0` entries when asked, so the answer's size reveals nothing either) and the match is
//! made here. The check is advisory: behind a 1 s timeout and a circuit breaker, and when
//! the service is slow, down or odd the password is accepted and the skip is logged, so
//! an outage elsewhere never stops registrations or resets.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow, bail};
use tracing::warn;

use super::input::Password;
use crate::mail::breaker::{Admission, CircuitBreaker};

/// The longest one lookup may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive failures that open the breaker.
const BREAKER_FAILURES: u32 = 3;
/// How long an open breaker skips the check before probing again.
const BREAKER_OPEN: Duration = Duration::from_secs(30);
/// A real range answer is about 30 KiB (padded, up to ~1,000 lines); anything much
/// larger is not one.
const MAX_ANSWER: usize = 1024 * 1024;

/// Makes aws-lc-rs the process's default rustls provider (once; later calls are no-ops).
/// reqwest is built with rustls but no provider of its own (so it brings no ring), and a
/// client made without [`BreachCheck`]'s explicit configuration, such as a test's, finds
/// this one.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The range API client; cheap to clone.
#[derive(Clone)]
pub struct BreachCheck {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    base: String,
    breaker: CircuitBreaker,
}

impl BreachCheck {
    /// A client for the range API at `url`: a lookup is `GET {url}/{PREFIX}`, as for
    /// `https://api.pwnedpasswords.com/range`.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            // A redirect could take the prefix somewhere the operator did not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("authgraph/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the breached-password client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                base: url.trim_end_matches('/').to_owned(),
                breaker: CircuitBreaker::new(BREAKER_FAILURES, BREAKER_OPEN),
            }),
        })
    }

    /// Whether `password` is known from breaches: `Some(count)` when it is, `None` when
    /// it is not *or could not be checked* (logged; the check fails open).
    pub async fn breached(&self, password: &Password) -> Option<u64> {
        let inner = &self.inner;
        let admission = inner.breaker.admit(Instant::now());
        if let Admission::Wait(_) = admission {
            warn!(
                "breached-password check skipped: the range service failed recently; password accepted unchecked"
            );
            return None;
        }
        let (prefix, suffix) = split_sha1(password.expose());
        let result = tokio::time::timeout(TIMEOUT, self.lookup(&prefix, &suffix)).await;
        match result {
            Ok(Ok(count)) => {
                if inner.breaker.succeeded() {
                    warn!("breached-password check answering again");
                }
                count
            }
            Ok(Err(error)) => {
                self.failed(&format!("{error:#}"));
                None
            }
            Err(_) => {
                self.failed("timed out");
                None
            }
        }
    }

    fn failed(&self, error: &str) {
        let opened = self.inner.breaker.failed(Instant::now());
        warn!(
            error,
            breaker_opened = opened,
            "breached-password check failed: password accepted unchecked"
        );
    }

    async fn lookup(&self, prefix: &str, suffix: &str) -> anyhow::Result<Option<u64>> {
        let url = format!("{}/{prefix}", self.inner.base);
        let mut response = self
            .inner
            .client
            .get(&url)
            .header("Add-Padding", "true")
            .send()
            .await
            .map_err(|e| anyhow!("request: {}", without_url(&e)))?;
        if !response.status().is_success() {
            bail!("range service answered {}", response.status());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| anyhow!("reading the answer: {}", without_url(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER {
                bail!("the answer is larger than {MAX_ANSWER} bytes");
            }
        }
        let text = std::str::from_utf8(&body).context("the answer is not text")?;
        count_in(text, suffix)
    }
}

/// The uppercase hex SHA-1 of the password, split after five digits.
fn split_sha1(password: &[u8]) -> (String, String) {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, password);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    let (prefix, suffix) = hex.split_at(5);
    (prefix.to_owned(), suffix.to_owned())
}

/// The count of `suffix` in a range answer (`SUFFIX:COUNT` lines): `None` when it is
/// absent or only a padding line (count 0). An answer with no well-formed line at all is
/// an error, not a clean bill: some proxy answered instead of the range service.
fn count_in(answer: &str, suffix: &str) -> anyhow::Result<Option<u64>> {
    let mut lines = 0usize;
    let mut found = None;
    for line in answer.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((hash, count)) = line.split_once(':') else {
            bail!("the answer is not a range answer");
        };
        let count: u64 = count.trim().parse().context("the answer is not a range answer")?;
        lines += 1;
        if hash.trim().eq_ignore_ascii_case(suffix) {
            found = Some(count);
        }
    }
    if lines == 0 {
        bail!("the answer is empty");
    }
    Ok(found.filter(|n| *n > 0))
}

/// reqwest's errors quote the URL, which ends with the password's hash prefix: logs get
/// the kind of failure only.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "broken answer"
    } else {
        "failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_five_hex_digits_of_the_hash_leave_the_process() {
        // SHA-1("password") = 5BAA61E4C9B93F3F0682250B6CF8331B7EE68FD8
        let (prefix, suffix) = split_sha1(b"password");
        assert_eq!(prefix, "5BAA6");
        assert_eq!(suffix, "1E4C9B93F3F0682250B6CF8331B7EE68FD8");
    }

    #[test]
    fn padding_lines_are_not_matches() {
        let answer = "0018A45C4D1DEF81644B54AB7F969B88D65:3\r\n\
                      1E4C9B93F3F0682250B6CF8331B7EE68FD8:0\r\n";
        assert_eq!(
            count_in(answer, "1E4C9B93F3F0682250B6CF8331B7EE68FD8").unwrap(),
            None
        );
        let answer = "1e4c9b93f3f0682250b6cf8331b7ee68fd8:52256179\n00000000000000000000000000000000000:0";
        assert_eq!(
            count_in(answer, "1E4C9B93F3F0682250B6CF8331B7EE68FD8").unwrap(),
            Some(52_256_179)
        );
        assert!(count_in("", "ABC").is_err());
        assert!(count_in("<html>maintenance</html>", "ABC").is_err());
    }
}
