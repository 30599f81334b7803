//! Webhook events, the queuing side: [`Auth::audit`] hands each recorded event here,
//! inside the transaction of the change, and one delivery per endpoint is queued when
//! its type is subscribed. The worker that sends them is [`crate::webhooks`].

use std::sync::Arc;

use chrono::SecondsFormat;
use diesel_async::AsyncPgConnection;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{Auth, AuthError, audit::EventType};
use crate::{
    config::WebhookConfig,
    db::{self, audit::NewAuditEvent, webhook_deliveries::NewDelivery},
};

/// The `webhook-id` of an audit event: `msg_` and the event's id, the same for every
/// endpoint and every retry, and findable in the audit log.
pub fn event_id(audit_id: Uuid) -> String {
    format!("msg_{}", audit_id.simple())
}

/// The Standard Webhooks body of an event. `data` carries ids, the address when the
/// account exists, and the audit details (reasons, roles, counts): never a password,
/// token, code or secret, and not the client's address or user agent.
pub fn payload(row: &NewAuditEvent<'_>, email: Option<&str>) -> String {
    let mut data = Map::new();
    let mut put = |key: &str, value: Option<Uuid>| {
        data.insert(
            key.to_owned(),
            value.map_or(Value::Null, |id| Value::String(id.to_string())),
        );
    };
    put("userId", row.user_id);
    put("actorId", row.actor_id);
    put("sessionId", row.session_id);
    if let Some(email) = email {
        data.insert("email".to_owned(), Value::String(email.to_owned()));
    }
    data.insert("details".to_owned(), row.details.clone());
    json!({
        "type": row.kind,
        "timestamp": row.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
}

impl Auth {
    /// Wires webhooks (`None`: nothing is queued).
    pub fn with_webhooks(mut self, webhooks: Option<WebhookConfig>) -> Self {
        self.webhooks = webhooks.map(Arc::new);
        self
    }

    /// Whether an event of this type queues deliveries: if not, [`Auth::queue_webhooks`]
    /// sends nothing, and the transaction's COMMIT can go out with its writes.
    pub(super) fn webhooks_send(&self, kind: EventType) -> bool {
        self.webhooks.as_deref().is_some_and(|h| h.sends(kind))
    }

    /// Queues the deliveries of a just-recorded audit event, on the same connection
    /// (and so in the same transaction). Costs nothing when webhooks are off or the type
    /// is not subscribed.
    pub(super) async fn queue_webhooks(
        &self,
        conn: &mut AsyncPgConnection,
        kind: EventType,
        row: &NewAuditEvent<'_>,
    ) -> Result<(), AuthError> {
        let Some(hooks) = self.webhooks.as_deref().filter(|h| h.sends(kind)) else {
            return Ok(());
        };
        let email = match row.user_id {
            Some(id) => db::users::find(conn, id).await?.and_then(|u| u.email),
            None => None,
        };
        let event_id = event_id(row.id);
        let payload = payload(row, email.as_deref());
        let rows: Vec<NewDelivery<'_>> = hooks
            .endpoints
            .iter()
            .map(|endpoint| NewDelivery {
                id: Uuid::new_v4(),
                event_id: &event_id,
                endpoint,
                kind: kind.as_str(),
                payload: &payload,
            })
            .collect();
        Ok(db::webhook_deliveries::insert(conn, &rows).await?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn the_body_has_the_standard_shape_and_no_client_facts() {
        let user = Uuid::new_v4();
        let row = NewAuditEvent {
            id: Uuid::nil(),
            created_at: Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap(),
            kind: "user.disabled",
            user_id: Some(user),
            actor_id: None,
            session_id: None,
            client_address: Some("203.0.113.9".into()),
            user_agent: Some("secret-agent"),
            request_id: Some("req-1"),
            details: json!({ "sessionsEnded": 2 }),
        };
        let body: Value = serde_json::from_str(&payload(&row, Some("a@example.com"))).unwrap();
        assert_eq!(
            body,
            json!({
                "type": "user.disabled",
                "timestamp": "2026-11-30T08:00:00.000000Z",
                "data": {
                    "userId": user.to_string(), "actorId": null, "sessionId": null,
                    "email": "a@example.com", "details": { "sessionsEnded": 2 },
                },
            })
        );
        assert_eq!(event_id(Uuid::nil()), "msg_00000000000000000000000000000000");
    }
}
