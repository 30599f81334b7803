//! The audit log: every security event is recorded by [`Auth::audit`], inside the
//! transaction of the change it describes, so the row exists if and only if the change
//! committed. Failures with nothing to commit (a wrong password, a wrong code) are
//! recorded alone by [`Auth::audit_alone`]. Details never carry a password, token or code.

use chrono::Utc;
use diesel_async::AsyncPgConnection;
use tracing::warn;
use uuid::Uuid;

use super::{Auth, AuthError, ClientInfo, USER_AGENT_MAX, truncate};
use crate::db::{self, audit::NewAuditEvent};

/// Longest request id kept with an event (ids come from a client-settable header).
const REQUEST_ID_MAX: usize = 128;

/// The audit event types of API.md (webhooks use the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An account was registered.
    UserCreated,
    /// A sign-in completed (a session was opened).
    LoginSucceeded,
    /// A sign-in was refused after the account was named (`details.reason`).
    LoginFailed,
    /// A rotated refresh token came back: its session was ended.
    RefreshReused,
    /// A session was ended (logout, revocation, admin).
    SessionRevoked,
    /// The user changed their password.
    PasswordChanged,
    /// A password was set with a reset token.
    PasswordReset,
    /// An email address was proven.
    EmailVerified,
    /// Failed sign-ins reached a limit: the account waits.
    LoginLocked,
    /// An admin (or an operator) changed a role.
    RoleChanged,
    /// An admin disabled the account.
    UserDisabled,
    /// An admin enabled the account again.
    UserEnabled,
    /// The account was deleted.
    UserDeleted,
    /// A second factor was confirmed.
    MfaEnrolled,
    /// A second factor was removed by its user.
    MfaRemoved,
    /// A wrong, reused or expired second-factor code.
    MfaFailed,
    /// Every factor was removed by an admin or an operator.
    MfaReset,
    /// A passkey was registered.
    PasskeyAdded,
    /// A passkey was removed by its user.
    PasskeyRemoved,
    /// A social identity was linked to the account.
    IdentityLinked,
    /// A social identity was unlinked by its user.
    IdentityUnlinked,
}

impl EventType {
    /// Every type, for validating `WEBHOOK_EVENTS` and filters.
    pub const ALL: [EventType; 21] = [
        Self::UserCreated,
        Self::LoginSucceeded,
        Self::LoginFailed,
        Self::RefreshReused,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::EmailVerified,
        Self::LoginLocked,
        Self::RoleChanged,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::UserDeleted,
        Self::MfaEnrolled,
        Self::MfaRemoved,
        Self::MfaFailed,
        Self::MfaReset,
        Self::PasskeyAdded,
        Self::PasskeyRemoved,
        Self::IdentityLinked,
        Self::IdentityUnlinked,
    ];

    /// The dotted lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::UserCreated => "user.created",
            Self::LoginSucceeded => "login.succeeded",
            Self::LoginFailed => "login.failed",
            Self::RefreshReused => "refresh.reused",
            Self::SessionRevoked => "session.revoked",
            Self::PasswordChanged => "password.changed",
            Self::PasswordReset => "password.reset",
            Self::EmailVerified => "email.verified",
            Self::LoginLocked => "login.locked",
            Self::RoleChanged => "role.changed",
            Self::UserDisabled => "user.disabled",
            Self::UserEnabled => "user.enabled",
            Self::UserDeleted => "user.deleted",
            Self::MfaEnrolled => "mfa.enrolled",
            Self::MfaRemoved => "mfa.removed",
            Self::MfaFailed => "mfa.failed",
            Self::MfaReset => "mfa.reset",
            Self::PasskeyAdded => "passkey.added",
            Self::PasskeyRemoved => "passkey.removed",
            Self::IdentityLinked => "identity.linked",
            Self::IdentityUnlinked => "identity.unlinked",
        }
    }

    /// The type of a dotted name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One event to record.
#[derive(Debug)]
pub struct Event {
    kind: EventType,
    user_id: Option<Uuid>,
    actor_id: Option<Uuid>,
    session_id: Option<Uuid>,
    details: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    /// An event about `user_id`, caused by that user (the common case: their own
    /// request, carrying their credentials).
    pub fn new(kind: EventType, user_id: Option<Uuid>) -> Self {
        Self {
            kind,
            user_id,
            actor_id: user_id,
            session_id: None,
            details: serde_json::Map::new(),
        }
    }

    /// Caused by `actor` (an admin), or by no user at all (`None`: an operator command).
    #[must_use]
    pub fn by(mut self, actor: Option<Uuid>) -> Self {
        self.actor_id = actor;
        self
    }

    /// The session involved.
    #[must_use]
    pub fn session(mut self, session_id: Uuid) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Adds a detail. Callers pass reasons, roles and counts: never a secret.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Its type.
    pub fn kind(&self) -> EventType {
        self.kind
    }
}

impl Auth {
    /// Records `event` for a request from `client`, on `conn`: call it inside the
    /// transaction of the change it describes.
    pub(crate) async fn audit(
        &self,
        conn: &mut AsyncPgConnection,
        event: Event,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let (kind, row) = audit_row(event, client);
        db::audit::insert(conn, &row).await?;
        // In this same transaction: every recorded event, and only those, is pushed.
        self.queue_webhooks(conn, kind, &row).await
    }

    /// Keeps the audit log's partitions: creates this month's and the next, and drops
    /// every month that ended more than `retention` ago. Answers the dropped partitions.
    pub async fn maintain_audit_log(&self, retention: std::time::Duration) -> Result<Vec<String>, AuthError> {
        let now = Utc::now();
        let cutoff = now - chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
        let mut conn = self.conn().await?;
        db::audit::ensure_partitions(&mut conn, now).await?;
        Ok(db::audit::drop_partitions_before(&mut conn, cutoff).await?)
    }

    /// Records an event that has no transaction of its own to join (a refused sign-in
    /// or code). Its failure is logged, not returned: the caller is already answering
    /// with the refusal.
    pub(crate) async fn audit_alone(&self, event: Event, client: &ClientInfo) {
        let kind = event.kind;
        let written = async {
            let mut conn = self.conn().await?;
            self.audit(&mut conn, event, client).await
        }
        .await;
        if let Err(e) = written {
            warn!(event = kind.as_str(), error = %e, "audit event not recorded");
        }
    }
}

/// The row that records `event`, with its type (for the webhook deliveries). For a
/// caller that pipelines the insert with its own writes, then queues the deliveries.
pub(super) fn audit_row(event: Event, client: &ClientInfo) -> (EventType, NewAuditEvent<'_>) {
    let row = NewAuditEvent {
        id: Uuid::new_v4(),
        created_at: Utc::now(),
        kind: event.kind.as_str(),
        user_id: event.user_id,
        actor_id: event.actor_id,
        session_id: event.session_id,
        client_address: client.ip.map(|ip| ip.to_string()),
        user_agent: client
            .user_agent
            .as_deref()
            .map(|ua| truncate(ua, USER_AGENT_MAX)),
        request_id: client
            .request_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .map(|id| truncate(id, REQUEST_ID_MAX)),
        details: serde_json::Value::Object(event.details),
    };
    (event.kind, row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_reads_back_and_is_dotted_lower_case() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert!(t.as_str().contains('.'));
            assert_eq!(t.as_str(), t.as_str().to_lowercase());
        }
        assert_eq!(EventType::parse("login.bogus"), None);
    }
}
