//! Standard Webhooks signatures: `v1,` and the base64 HMAC-SHA256, keyed with the
//! decoded `WEBHOOK_SECRET`, of `{webhook-id}.{webhook-timestamp}.{body}`.

use aws_lc_rs::hmac;
use base64::Engine;

/// The `webhook-signature` header value for one attempt.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body.as_bytes());
    let tag = ctx.sign();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::webhooks::WebhookSecret;

    #[test]
    fn matches_the_reference_vector_of_the_spec() {
        // The example of the Standard Webhooks reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            secret.bytes(),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_part_is_signed() {
        let key = b"0123456789abcdef";
        let base = sign(key, "msg_1", 10, "{}");
        assert_ne!(base, sign(key, "msg_2", 10, "{}"));
        assert_ne!(base, sign(key, "msg_1", 11, "{}"));
        assert_ne!(base, sign(key, "msg_1", 10, "{ }"));
        assert_ne!(base, sign(b"0123456789abcdeF", "msg_1", 10, "{}"));
    }
}
