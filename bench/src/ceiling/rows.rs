//! The rows the ceiling writes beside sessions and tokens: audit events and the
//! verification mail, with the small helpers they need.

use std::time::{Duration, SystemTime};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64URL};
use uuid::Uuid;

use super::{Client, Param, sql::PgUuid};

/// The verification mail, composed as the service composes it (a text and an HTML part
/// carrying the link), so the outbox row is of the same size.
pub(super) struct VerificationMail {
    pub(super) id: Uuid,
    pub(super) text: String,
    pub(super) html: String,
    pub(super) message_id: String,
}

impl VerificationMail {
    pub(super) fn new(to: &str, token: &str) -> Self {
        let id = Uuid::new_v4();
        let link = format!("http://localhost:3000/verify-email?token={token}");
        let text = format!(
            "Hello,\n\nplease confirm your email address by opening this link:\n\n{link}\n\n\
             The link works once and expires in 24 hours.\n\
             If you did not create an account, you can ignore this mail.\n"
        );
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Confirm your email address\
             </title></head><body><p>Please confirm your email address ({to}) by opening this \
             link:</p><p><a href=\"{link}\">Confirm my email address</a></p><p>The link works \
             once and expires in 24 hours. If you did not create an account, you can ignore \
             this mail.</p></body></html>"
        );
        Self {
            id,
            text,
            html,
            message_id: format!("<{}@localhost>", id.simple()),
        }
    }
}

pub(super) struct AuditParams<'a> {
    id: PgUuid,
    at: SystemTime,
    kind: &'static str,
    user_id: Option<PgUuid>,
    session_id: Option<PgUuid>,
    ip: String,
    user_agent: Option<&'a str>,
    request_id: &'a str,
    details: &'a str,
}

impl AuditParams<'_> {
    pub(super) fn refs(&self) -> [Param<'_>; 9] {
        [
            &self.id,
            &self.at,
            &self.kind,
            &self.user_id,
            &self.session_id,
            &self.ip,
            &self.user_agent,
            &self.request_id,
            &self.details,
        ]
    }
}

pub(super) fn audit_params<'a>(
    client: &'a Client,
    kind: &'static str,
    user_id: Option<Uuid>,
    session_id: Option<Uuid>,
    details: &'a str,
) -> AuditParams<'a> {
    AuditParams {
        id: PgUuid(Uuid::new_v4()),
        at: SystemTime::now(),
        kind,
        user_id: user_id.map(PgUuid),
        session_id: session_id.map(PgUuid),
        ip: client.ip.to_string(),
        user_agent: client.user_agent.as_deref(),
        request_id: &client.request_id,
        details,
    }
}

pub(super) fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

pub(super) fn hex_sha256(bytes: &[u8]) -> String {
    sha256(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// 256 random bits, base64url: a refresh or verification token.
pub(super) fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("random source"))?;
    Ok(B64URL.encode(bytes))
}

pub(super) fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

pub(super) fn device_cookie(token: &str) -> String {
    let max_age = Duration::from_secs(180 * 24 * 3600).as_secs();
    format!("authgraph_device={token}; HttpOnly; Secure; SameSite=Lax; Path=/graphql; Max-Age={max_age}")
}
