//! The ceiling's statements, written against the shared schema: each is prepared once
//! per connection (`prepare_cached`) and run through tokio-postgres directly.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

/// A uuid in PostgreSQL's binary form (16 bytes), without a tokio-postgres feature:
/// turning one on would rebuild the service with it.
#[derive(Clone, Copy, Debug)]
pub struct PgUuid(pub uuid::Uuid);

impl ToSql for PgUuid {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
    accepts!(UUID);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgUuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Self(uuid::Uuid::from_slice(raw)?))
    }
    accepts!(UUID);
}

/// The session and user check behind every authenticated request: the session is the
/// token's, of the token's user, not ended, within both expiries, its user not disabled.
pub const ME: &str = "select u.id, u.email from sessions s join users u on u.id = s.user_id \
     where s.id = $1 and s.user_id = $2 and s.revoked_at is null \
     and s.expires_at > now() and s.absolute_expires_at > now() and u.disabled_at is null";

/// The account behind a login, with whether it has a confirmed second factor.
pub const FIND_LOGIN: &str = "select u.id, u.password_hash, u.disabled_at is not null, \
     exists (select 1 from mfa_factors f where f.user_id = u.id and f.confirmed_at is not null) \
     from users u where u.email = $1";

/// Counts one attempt on each key in one statement, with the service's rule: a new
/// window once the old one is over, and a wait of `first_wait` doubled per attempt past
/// `free`, at most `max_wait`. A key that is waiting is left alone and not returned, so
/// fewer rows than keys means the attempt is refused.
pub const COUNT: &str = "with r(k, f, w, fw, mw) as ( \
       select * from unnest($1::text[], $2::int4[], $3::float8[], $4::float8[], $5::float8[])) \
     insert into throttle_counters as c (key, attempts, window_ends_at, locked_until) \
     select k, 1, now() + make_interval(secs => w), \
            case when 1 >= f then now() + make_interval(secs => least(fw, mw)) end \
     from r order by k \
     on conflict (key) do update set \
       attempts = case when c.window_ends_at <= now() then 1 else c.attempts + 1 end, \
       window_ends_at = case when c.window_ends_at <= now() then excluded.window_ends_at \
                        else c.window_ends_at end, \
       locked_until = (select case when n.n >= r.f then now() + make_interval(secs => \
                         least(r.fw * power(2, least(n.n - r.f, 31)), r.mw)) end \
                       from r, (select case when c.window_ends_at <= now() then 1 \
                                else c.attempts + 1 end as n) n where r.k = c.key) \
     where c.locked_until is null or c.locked_until <= now() \
     returning c.key";

/// A right password clears its account's counts.
pub const CLEAR: &str = "delete from throttle_counters where key = any($1)";

/// A success gives its address's attempt back.
pub const REFUND: &str = "update throttle_counters set attempts = greatest(attempts - 1, 0), \
     locked_until = case when attempts - 1 < $2 then null else locked_until end where key = $1";

/// `$5`, `$6`: seconds to the refresh expiry and to the session's absolute end.
pub const INSERT_SESSION: &str = "insert into sessions (id, user_id, user_agent, created_at, last_used_at, \
     expires_at, absolute_expires_at, amr, acr, auth_time) \
     values ($1, $2, $3, $4::timestamptz, $4, $4 + make_interval(secs => $5::float8), \
     $4 + make_interval(secs => $6::float8), \
     '{pwd}', 'aal1', $4)";

pub const INSERT_REFRESH: &str = "insert into refresh_tokens (token_hash, session_id, expires_at) \
     values ($1, $2, $3::timestamptz + make_interval(secs => $4::float8))";

pub const INSERT_AUDIT: &str = "insert into audit_events (id, created_at, type, user_id, actor_id, \
     session_id, client_address, user_agent, request_id, details) \
     values ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9::text::jsonb)";

pub const INSERT_USER: &str = "insert into users (id, email, password_hash) values ($1, $2, $3)";

pub const INSERT_EMAIL_TOKEN: &str = "insert into email_tokens (token_hash, user_id, purpose, email, expires_at) \
     values ($1, $2, 'verify_email', $3, now() + interval '24 hours')";

pub const INSERT_MAIL: &str = "insert into outbox (id, user_id, kind, recipient, subject, body_text, body_html, \
     message_id) values ($1, $2, 'verify_email', $3, 'Confirm your email address', $4, $5, $6)";
