//! Admin fields (`users`, `auditEvents`) and mutations (`disableUser`, `enableUser`,
//! `setUserRole`, `revokeUserSessions`, `resetUserMfa`), merged into the roots, and the
//! `AuditEvent` type. The rules (ADMIN, step-up, last admin) live in `auth::admin`.

use async_graphql::{
    ComplexObject, Context, Guard, ID, InputObject, Json, Object, Result, SimpleObject,
    connection::{Connection, Edge},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    context::ContextExt,
    types::{Role, User},
};
use crate::{
    auth::{
        AuthError,
        admin::{Page, cursor},
        audit::EventType,
    },
    db,
};

/// `totalCount` of a connection.
#[derive(SimpleObject)]
pub struct TotalCount {
    /// How many items the whole listing has (every page).
    pub total_count: i64,
}

/// A Relay connection of `T` with `totalCount`.
type Listing<T> = Connection<String, T, TotalCount>;

fn listing<R, T>(
    page: Page<R>,
    key: impl Fn(&R) -> (DateTime<Utc>, Uuid),
    node: impl Fn(R) -> T,
) -> Listing<T>
where
    T: async_graphql::OutputType,
{
    let mut connection = Connection::with_additional_fields(
        false,
        page.has_next,
        TotalCount {
            total_count: page.total,
        },
    );
    connection.edges.extend(page.rows.into_iter().map(|row| {
        let (at, id) = key(&row);
        Edge::new(cursor(at, id), node(row))
    }));
    connection
}

/// Whether the selection asks for `totalCount`: counting is the one costly part of a
/// page, so it runs only when asked.
fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

/// The admin part of `Query`.
#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// ADMIN: users in (createdAt, id) order, `first` (default 20, at most 100) after the
    /// cursor `after`; `search` matches the start of the email or of the display name,
    /// case-insensitive.
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> Result<Listing<User>> {
        let viewer = ctx.viewer().await?;
        let page = ctx
            .state()
            .auth
            .list_users(
                viewer,
                first,
                after.as_deref(),
                search.as_deref(),
                wants_total(ctx),
            )
            .await?;
        Ok(listing(page, |u| (u.created_at, u.id), User::public))
    }

    /// ADMIN: the audit log, newest first, `first` (default 20, at most 100) after the
    /// cursor `after`, narrowed by `filter`.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditFilter>,
    ) -> Result<Listing<AuditEvent>> {
        let viewer = ctx.viewer().await?;
        let filter = filter.map(AuditFilter::parse).transpose()?.unwrap_or_default();
        let page = ctx
            .state()
            .auth
            .list_audit_events(viewer, first, after.as_deref(), &filter, wants_total(ctx))
            .await?;
        Ok(listing(page, |e| (e.created_at, e.id), AuditEvent::full))
    }
}

/// The admin part of `Mutation`: each needs role ADMIN and step-up.
#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// ADMIN: disables an account. Every session ends at once; signing in with valid
    /// credentials then answers `ACCOUNT_DISABLED`.
    async fn disable_user(&self, ctx: &Context<'_>, id: ID, reason: Option<String>) -> Result<User> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        let user = ctx
            .state()
            .auth
            .disable_user(viewer, &id, reason.as_deref(), client)
            .await?;
        Ok(User::public(user))
    }

    /// ADMIN: lets a disabled account sign in again.
    async fn enable_user(&self, ctx: &Context<'_>, id: ID) -> Result<User> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        Ok(User::public(
            ctx.state().auth.enable_user(viewer, &id, client).await?,
        ))
    }

    /// ADMIN: sets a user's role; it applies to their next request.
    async fn set_user_role(&self, ctx: &Context<'_>, id: ID, role: Role) -> Result<User> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        let user = ctx
            .state()
            .auth
            .set_user_role(viewer, &id, role.into(), client)
            .await?;
        Ok(User::public(user))
    }

    /// ADMIN: ends every session of a user; answers how many were live.
    async fn revoke_user_sessions(&self, ctx: &Context<'_>, id: ID) -> Result<i32> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        let ended = ctx.state().auth.revoke_user_sessions(viewer, &id, client).await?;
        Ok(i32::try_from(ended).unwrap_or(i32::MAX))
    }

    /// ADMIN: removes a user's second factors and recovery codes (they lost them).
    async fn reset_user_mfa(&self, ctx: &Context<'_>, id: ID) -> Result<User> {
        let viewer = ctx.viewer().await?;
        let client = &ctx.request().client;
        Ok(User::public(
            ctx.state().auth.reset_user_mfa(viewer, &id, client).await?,
        ))
    }
}

/// Narrows `auditEvents`; every part is optional.
#[derive(InputObject)]
pub struct AuditFilter {
    /// Events about this user.
    pub user_id: Option<ID>,
    /// Events of these types (`login.failed`, ...).
    pub types: Option<Vec<String>>,
    /// At or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Before this time.
    pub to: Option<DateTime<Utc>>,
}

impl AuditFilter {
    fn parse(self) -> Result<db::audit::Filter, AuthError> {
        let user_id = self
            .user_id
            .map(|id| Uuid::parse_str(id.trim()))
            .transpose()
            .map_err(|_| AuthError::input("userId", "not a user id"))?;
        if let Some(unknown) = self
            .types
            .iter()
            .flatten()
            .find(|t| EventType::parse(t).is_none())
        {
            return Err(AuthError::input(
                "types",
                format!("`{unknown}` is not an audit event type"),
            ));
        }
        Ok(db::audit::Filter {
            user_id,
            types: self.types,
            from: self.from,
            to: self.to,
        })
    }
}

/// A security event: who did what to whom, when, from where.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AuditEvent {
    /// Its id.
    pub id: ID,
    /// Dotted lower case: `login.succeeded`, `user.disabled`, ... (API.md).
    #[graphql(name = "type")]
    pub kind: String,
    /// When it happened.
    pub created_at: DateTime<Utc>,
    /// The client address of the request; null on events whose actor is not the user
    /// when read through `securityEvents`.
    pub client_address: Option<String>,
    /// The `User-Agent` of the request; null as `clientAddress` is.
    pub user_agent: Option<String>,
    /// The session involved.
    pub session_id: Option<ID>,
    /// The request id (`X-Request-Id`), to find its log lines.
    pub request_id: Option<String>,
    /// Event-specific facts (reason, roles, counts), never a secret.
    pub details: Json<serde_json::Value>,
    #[graphql(skip)]
    user_id: Option<Uuid>,
    #[graphql(skip)]
    actor_id: Option<Uuid>,
}

impl AuditEvent {
    /// An event as admins see it.
    pub fn full(row: db::audit::AuditEvent) -> Self {
        Self {
            id: ID(row.id.to_string()),
            kind: row.kind,
            created_at: row.created_at,
            client_address: row.client_address,
            user_agent: row.user_agent,
            session_id: row.session_id.map(|id| ID(id.to_string())),
            request_id: row.request_id,
            details: Json(row.details),
            user_id: row.user_id,
            actor_id: row.actor_id,
        }
    }

    /// An event as its user sees it: another actor's (an admin's) address and user agent
    /// are not theirs to see.
    pub fn for_its_user(row: db::audit::AuditEvent) -> Self {
        let own = row.actor_id.is_some() && row.actor_id == row.user_id;
        let mut event = Self::full(row);
        if !own {
            event.client_address = None;
            event.user_agent = None;
            event.request_id = None;
        }
        event
    }
}

#[ComplexObject]
impl AuditEvent {
    /// The user the event is about; null when the account is gone (or was never known).
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load(ctx, self.user_id).await
    }

    /// Who caused it: the user, an admin, or null (an operator command).
    async fn actor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        load(ctx, self.actor_id).await
    }
}

async fn load(ctx: &Context<'_>, id: Option<Uuid>) -> Result<Option<User>> {
    let Some(id) = id else { return Ok(None) };
    Ok(ctx.users().load_one(id).await?.map(User::public))
}

/// Passes for admins only; `FORBIDDEN` for everyone else.
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if ctx.viewer().await?.user.role == crate::auth::Role::Admin {
            Ok(())
        } else {
            Err(AuthError::Forbidden.into())
        }
    }
}
