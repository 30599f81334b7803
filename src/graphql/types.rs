//! GraphQL object and input types, converted at this boundary from what `auth` answers
//! (`auth::Account`, `auth::Role`, session rows).

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    admin::{AdminOnly, AuditEvent},
    context::ContextExt,
    guards::{OwnerOnly, OwnerOrAdmin},
    mfa::MfaFactor,
    passkeys::Passkey,
};
use crate::{
    auth::{self, Account, Issued},
    db,
};

/// What a user may do beyond their own account.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "auth::Role")]
pub enum Role {
    /// A regular account.
    User,
    /// May read every user's private fields.
    Admin,
}

/// An account.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct User {
    /// Opaque, unguessable id (a UUID).
    pub id: ID,
    /// Whether the email address has been proven.
    pub email_verified: bool,
    /// Name shown to others.
    pub display_name: Option<String>,
    /// USER or ADMIN.
    pub role: Role,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the profile last changed.
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub(super) uuid: Uuid,
    #[graphql(skip)]
    email_address: Option<String>,
    #[graphql(skip)]
    pub(super) seen_by: SeenBy,
    #[graphql(skip)]
    disabled_at: Option<DateTime<Utc>>,
}

/// Who is looking at a [`User`], which decides its private fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SeenBy {
    /// Whoever the request's access token names (checked when a private field is read).
    Token,
    /// The user themself, signed in with this session, known without reading a token:
    /// the user of an `AuthPayload`, or the caller's own profile just updated.
    Owner {
        /// The owner's session: the `current` one among `sessions`.
        session_id: Uuid,
    },
}

impl User {
    /// A user as anyone may see it; private fields depend on the caller's token.
    pub fn public(account: Account) -> Self {
        Self::build(account, SeenBy::Token)
    }

    /// The user a token pair was just issued to: the caller, whatever the header says.
    pub fn issued(issued: &Issued) -> Self {
        Self::own(issued.user.clone(), issued.session_id)
    }

    /// The caller's own user, as seen through its session.
    pub fn own(account: Account, session_id: Uuid) -> Self {
        Self::build(account, SeenBy::Owner { session_id })
    }

    fn build(account: Account, seen_by: SeenBy) -> Self {
        Self {
            id: ID(account.id.to_string()),
            email_verified: account.email_verified_at.is_some(),
            display_name: account.display_name,
            role: account.role.into(),
            created_at: account.created_at,
            updated_at: account.updated_at,
            uuid: account.id,
            email_address: account.email,
            seen_by,
            disabled_at: account.disabled_at,
        }
    }
}

#[ComplexObject]
impl User {
    /// The email address: visible to the user themself and to admins only.
    #[graphql(guard = "OwnerOrAdmin::of(self)")]
    async fn email(&self) -> Option<&str> {
        self.email_address.as_deref()
    }

    /// The user's live sessions: visible to the user themself only.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Option<Vec<Session>>> {
        let current = match self.seen_by {
            SeenBy::Owner { session_id } => session_id,
            SeenBy::Token => ctx.viewer().await?.session_id,
        };
        let rows = ctx.state().auth.sessions_of(self.uuid).await?;
        Ok(Some(
            rows.into_iter().map(|row| Session::new(row, current)).collect(),
        ))
    }

    /// Whether an admin disabled the account: visible to admins only.
    #[graphql(guard = "AdminOnly")]
    async fn disabled(&self) -> Option<bool> {
        Some(self.disabled_at.is_some())
    }

    /// Recent sign-ins and security changes, newest first (`first`: default 20, at most
    /// 100): visible to the user themself only. Client address and user agent are null
    /// on events another actor (an admin) caused.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn security_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> Result<Option<Vec<AuditEvent>>> {
        let rows = ctx.state().auth.security_events(self.uuid, first).await?;
        Ok(Some(rows.into_iter().map(AuditEvent::for_its_user).collect()))
    }

    /// The user's active second factors (TOTP): visible to the user themself only.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn factors(&self, ctx: &Context<'_>) -> Result<Option<Vec<MfaFactor>>> {
        let rows = ctx.state().auth.factors_of(self.uuid).await?;
        Ok(Some(rows.into_iter().map(MfaFactor::from).collect()))
    }

    /// The user's passkeys, oldest first: visible to the user themself only.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn passkeys(&self, ctx: &Context<'_>) -> Result<Option<Vec<Passkey>>> {
        let rows = ctx.state().auth.passkeys_of(self.uuid).await?;
        Ok(Some(rows.into_iter().map(Passkey::from).collect()))
    }

    /// Linked social sign-in identities: visible to the user themself only.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn identities(&self, ctx: &Context<'_>) -> Result<Option<Vec<super::social::Identity>>> {
        let rows = ctx.state().auth.identities_of(self.uuid).await?;
        Ok(Some(rows.into_iter().map(Into::into).collect()))
    }

    /// Unused recovery codes: visible to the user themself only. They belong to the
    /// user, not to one factor.
    #[graphql(guard = "OwnerOnly::of(self)")]
    async fn recovery_codes_left(&self, ctx: &Context<'_>) -> Result<Option<i32>> {
        let left = ctx.state().auth.recovery_codes_left(self.uuid).await?;
        Ok(Some(i32::try_from(left).unwrap_or(i32::MAX)))
    }
}

/// One signed-in device or browser.
#[derive(SimpleObject)]
pub struct Session {
    /// Equal to the `sid` claim of its access tokens.
    pub id: ID,
    /// Sign-in time.
    pub created_at: DateTime<Utc>,
    /// Last sign-in or refresh.
    pub last_used_at: DateTime<Utc>,
    /// Expiry of its current refresh token.
    pub expires_at: DateTime<Utc>,
    /// The client that signed in.
    pub user_agent: Option<String>,
    /// Whether this is the session of the token making the request.
    pub current: bool,
}

impl Session {
    fn new(row: db::sessions::Session, current: Uuid) -> Self {
        Self {
            id: ID(row.id.to_string()),
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            user_agent: row.user_agent,
            current: row.id == current,
        }
    }
}

/// Tokens issued by `register`, `login`, `refresh`, `changePassword` and `verifyMfa`.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque refresh token; null when it was delivered as a cookie instead.
    pub refresh_token: Option<String>,
    /// Always "Bearer".
    pub token_type: String,
    /// Access token lifetime, in seconds.
    pub expires_in: i32,
    /// The signed-in user, private fields included.
    pub user: User,
}

/// New account details.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Email address; trimmed and lowercased.
    pub email: String,
    /// 8 to 128 characters.
    #[graphql(secret)]
    pub password: String,
    /// Optional, 1 to 64 characters.
    pub display_name: Option<String>,
}

/// Profile changes: an absent field is left as it is, `null` clears it.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// 1 to 64 characters, or null to clear.
    pub display_name: MaybeUndefined<String>,
}

/// A password change.
#[derive(InputObject)]
pub struct ChangePasswordInput {
    /// The password in use now.
    #[graphql(secret)]
    pub current_password: String,
    /// 8 to 128 characters.
    #[graphql(secret)]
    pub new_password: String,
}

/// Credentials.
#[derive(InputObject)]
pub struct LoginInput {
    /// Email address.
    pub email: String,
    /// Password.
    #[graphql(secret)]
    pub password: String,
}

/// A mailed password reset token and the new password.
#[derive(InputObject)]
pub struct ResetPasswordInput {
    /// The token from the reset link (`PUBLIC_URL/reset-password?token=...`).
    #[graphql(secret)]
    pub token: String,
    /// 8 to 128 characters.
    #[graphql(secret)]
    pub new_password: String,
}
