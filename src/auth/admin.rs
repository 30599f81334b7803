//! Admin use cases: finding users, disabling and enabling them, roles, ending their
//! sessions, resetting their second factors, and reading the audit log.
//!
//! Every one needs the caller's role to be ADMIN as read from the database on this
//! request (`Viewer::user` is read fresh), and every mutation needs step-up. No change may
//! leave the service without an enabled admin: role and disable changes lock every
//! enabled admin's row first, so two admins demoting each other at once cannot both win.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use tracing::{info, instrument, warn};
use uuid::Uuid;

use super::{
    Auth, AuthError, ClientInfo, Viewer,
    audit::{Event, EventType},
    step_up::Requirement,
};
use crate::db::{
    self,
    audit::{AuditEvent, Filter},
    users::{Account, Role},
};

/// Page size when `first` is absent.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page.
pub const MAX_PAGE: usize = 100;
/// Longest `disableUser` reason kept.
const REASON_MAX: usize = 500;

/// One page of a listing, with what a Relay connection needs.
#[derive(Debug)]
pub struct Page<T> {
    /// The rows, in the listing's order.
    pub rows: Vec<T>,
    /// Whether rows follow the last one.
    pub has_next: bool,
    /// How many rows the whole listing has; 0 when the caller did not ask (a count
    /// costs a scan: ~200 ms at a million users).
    pub total: i64,
}

/// The opaque cursor of a row: its `(created_at, id)`.
pub fn cursor(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

/// Reads a cursor made by [`cursor`]; anything else is a `BAD_USER_INPUT` on `after`.
fn parse_cursor(text: &str) -> Result<(DateTime<Utc>, Uuid), AuthError> {
    let bad = || {
        AuthError::input(
            "after",
            "not a cursor of this listing: use an endCursor it returned",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (micros, id) = text.split_once(':').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// `first` within 1..=[`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
fn page_size(first: Option<i32>) -> Result<usize, AuthError> {
    match first {
        None => Ok(DEFAULT_PAGE),
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| AuthError::input("first", format!("first must be between 1 and {MAX_PAGE}"))),
    }
}

/// A user id argument; one that is no user's is a `BAD_USER_INPUT` on `id`.
fn no_such_user() -> AuthError {
    AuthError::input("id", "no user has this id")
}

fn user_id(text: &str) -> Result<Uuid, AuthError> {
    Uuid::parse_str(text.trim()).map_err(|_| no_such_user())
}

/// Splits one extra row off a page: its presence says a next page exists.
fn paged<T>(mut rows: Vec<T>, size: usize, total: i64) -> Page<T> {
    let has_next = rows.len() > size;
    rows.truncate(size);
    Page {
        rows,
        has_next,
        total,
    }
}

fn limit(size: usize) -> i64 {
    i64::try_from(size + 1).unwrap_or(i64::MAX)
}

impl Auth {
    /// `FORBIDDEN` unless the caller is an admin now.
    fn require_admin(viewer: &Viewer) -> Result<(), AuthError> {
        if viewer.user.role == Role::Admin {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }

    /// An admin mutation: an admin, with step-up.
    async fn require_admin_action(&self, viewer: &Viewer) -> Result<(), AuthError> {
        Self::require_admin(viewer)?;
        self.require_step_up(viewer, Requirement::SignInMethod).await
    }

    /// Users in (createdAt, id) order after the cursor `after`, whose email or display
    /// name starts with `search` (case-insensitive).
    pub async fn list_users(
        &self,
        viewer: &Viewer,
        first: Option<i32>,
        after: Option<&str>,
        search: Option<&str>,
        with_total: bool,
    ) -> Result<Page<Account>, AuthError> {
        Self::require_admin(viewer)?;
        let size = page_size(first)?;
        let after = after.map(parse_cursor).transpose()?;
        let search = search.map(str::trim).filter(|s| !s.is_empty());
        let mut conn = self.conn().await?;
        let rows = db::users::page(&mut conn, search, after, limit(size)).await?;
        let total = if with_total {
            db::users::count(&mut conn, search).await?
        } else {
            0
        };
        Ok(paged(rows, size, total))
    }

    /// Audit events matching `filter`, newest first, after the cursor `after`.
    pub async fn list_audit_events(
        &self,
        viewer: &Viewer,
        first: Option<i32>,
        after: Option<&str>,
        filter: &Filter,
        with_total: bool,
    ) -> Result<Page<AuditEvent>, AuthError> {
        Self::require_admin(viewer)?;
        let size = page_size(first)?;
        let before = after.map(parse_cursor).transpose()?;
        let mut conn = self.conn().await?;
        let rows = db::audit::page(&mut conn, filter, before, limit(size)).await?;
        let total = if with_total {
            db::audit::count(&mut conn, filter).await?
        } else {
            0
        };
        Ok(paged(rows, size, total))
    }

    /// A user's own recent security events, newest first ("recent activity").
    pub async fn security_events(
        &self,
        user_id: Uuid,
        first: Option<i32>,
    ) -> Result<Vec<AuditEvent>, AuthError> {
        let size = page_size(first)?;
        let filter = Filter {
            user_id: Some(user_id),
            ..Filter::default()
        };
        let mut conn = self.conn().await?;
        Ok(db::audit::page(&mut conn, &filter, None, i64::try_from(size).unwrap_or(100)).await?)
    }

    /// Disables an account: every session ends at once, and sign-in answers
    /// `ACCOUNT_DISABLED` after valid credentials until `enableUser`.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn disable_user(
        &self,
        viewer: &Viewer,
        id: &str,
        reason: Option<&str>,
        client: &ClientInfo,
    ) -> Result<Account, AuthError> {
        self.require_admin_action(viewer).await?;
        let target = user_id(id)?;
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > REASON_MAX) {
            return Err(AuthError::input(
                "reason",
                format!("at most {REASON_MAX} characters"),
            ));
        }
        let actor = viewer.user.id;
        let mut conn = self.conn().await?;
        let (user, ended) = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let user = self.lock_target(conn, target, true).await?;
                let ended = db::sessions::revoke_all_for_user(conn, target, "disabled").await?;
                if user.disabled_at.is_some() {
                    return Ok((user, ended));
                }
                let user = db::users::set_disabled(conn, target, true).await?;
                let mut event = Event::new(EventType::UserDisabled, Some(target))
                    .by(Some(actor))
                    .with("sessionsEnded", ended);
                if let Some(reason) = reason {
                    event = event.with("reason", reason);
                }
                self.audit(conn, event, client).await?;
                Ok((user, ended))
            })
            .await?;
        warn!(target.id = %target, sessions_ended = ended, "user disabled by an admin");
        Ok(user)
    }

    /// Lets a disabled account sign in again (its old sessions stay ended).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn enable_user(
        &self,
        viewer: &Viewer,
        id: &str,
        client: &ClientInfo,
    ) -> Result<Account, AuthError> {
        self.require_admin_action(viewer).await?;
        let target = user_id(id)?;
        let actor = viewer.user.id;
        let mut conn = self.conn().await?;
        let user = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let user = db::users::lock(conn, target).await?.ok_or_else(no_such_user)?;
                if user.disabled_at.is_none() {
                    return Ok(user);
                }
                let user = db::users::set_disabled(conn, target, false).await?;
                let event = Event::new(EventType::UserEnabled, Some(target)).by(Some(actor));
                self.audit(conn, event, client).await?;
                Ok(user)
            })
            .await?;
        info!(target.id = %target, "user enabled by an admin");
        Ok(user)
    }

    /// Sets a user's role; it applies to their next request (roles are read on each).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn set_user_role(
        &self,
        viewer: &Viewer,
        id: &str,
        role: Role,
        client: &ClientInfo,
    ) -> Result<Account, AuthError> {
        self.require_admin_action(viewer).await?;
        let target = user_id(id)?;
        let actor = viewer.user.id;
        let mut conn = self.conn().await?;
        let user = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let user = self.lock_target(conn, target, role != Role::Admin).await?;
                if user.role == role {
                    return Ok(user);
                }
                let updated = db::users::set_role_of(conn, target, role).await?;
                let event = Event::new(EventType::RoleChanged, Some(target))
                    .by(Some(actor))
                    .with("from", user.role.as_str())
                    .with("to", role.as_str());
                self.audit(conn, event, client).await?;
                Ok(updated)
            })
            .await?;
        warn!(target.id = %target, role = role.as_str(), "role set by an admin");
        Ok(user)
    }

    /// Ends every live session of a user; answers how many there were.
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn revoke_user_sessions(
        &self,
        viewer: &Viewer,
        id: &str,
        client: &ClientInfo,
    ) -> Result<usize, AuthError> {
        self.require_admin_action(viewer).await?;
        let target = user_id(id)?;
        let actor = viewer.user.id;
        let mut conn = self.conn().await?;
        let ended = conn
            .transaction::<_, AuthError, _>(async |conn| {
                db::users::lock(conn, target).await?.ok_or_else(no_such_user)?;
                let ended = db::sessions::revoke_all_for_user(conn, target, "admin").await?;
                let event = Event::new(EventType::SessionRevoked, Some(target))
                    .by(Some(actor))
                    .with("reason", "admin")
                    .with("sessionsEnded", ended);
                self.audit(conn, event, client).await?;
                Ok(ended)
            })
            .await?;
        warn!(target.id = %target, sessions_ended = ended, "sessions ended by an admin");
        Ok(ended)
    }

    /// Removes every second factor and recovery code of a user (who lost them).
    #[instrument(skip_all, fields(user.id = %viewer.user.id))]
    pub async fn reset_user_mfa(
        &self,
        viewer: &Viewer,
        id: &str,
        client: &ClientInfo,
    ) -> Result<Account, AuthError> {
        self.require_admin_action(viewer).await?;
        let target = user_id(id)?;
        let actor = viewer.user.id;
        let mut conn = self.conn().await?;
        let (user, factors) = conn
            .transaction::<_, AuthError, _>(async |conn| {
                let user = db::users::lock(conn, target).await?.ok_or_else(no_such_user)?;
                let (factors, _) = self.clear_factors(conn, target, Some(actor), client).await?;
                Ok((user, factors))
            })
            .await?;
        warn!(target.id = %target, factors.removed = factors, "MFA reset by an admin");
        Ok(user)
    }

    /// Locks the target of a role or disable change. When the change takes away admin
    /// rights (`removes_admin`) from the last enabled admin, it is `FORBIDDEN`.
    async fn lock_target(
        &self,
        conn: &mut AsyncPgConnection,
        target: Uuid,
        removes_admin: bool,
    ) -> Result<Account, AuthError> {
        let admins = db::users::lock_active_admins(conn).await?;
        let user = db::users::lock(conn, target).await?.ok_or_else(no_such_user)?;
        if removes_admin && admins.contains(&target) && admins.len() == 1 {
            info!("refused: it would leave no enabled admin");
            return Err(AuthError::Forbidden);
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_garbage_is_bad_input() {
        let at = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(parse_cursor(&cursor(at, id)).unwrap(), (at, id));
        for bad in ["", "!!", "bm90IGEgY3Vyc29y", &URL_SAFE_NO_PAD.encode("12:nope")] {
            assert!(matches!(
                parse_cursor(bad),
                Err(AuthError::InvalidInput { field: "after", .. })
            ));
        }
    }

    #[test]
    fn page_sizes_are_bounded() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        for bad in [0, -1, 101] {
            assert!(matches!(
                page_size(Some(bad)),
                Err(AuthError::InvalidInput { field: "first", .. })
            ));
        }
    }
}
