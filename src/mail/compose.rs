//! Renders the verification and reset mails (text and HTML) into outbox rows, each with
//! its own stable Message-ID.

use std::time::Duration;

use lettre::message::Mailbox;
use uuid::Uuid;

use crate::db::outbox::NewMail;

/// `outbox.kind` of a verification mail.
pub const VERIFY_EMAIL: &str = "verify_email";
/// `outbox.kind` of a password-reset mail.
pub const RESET_PASSWORD: &str = "reset_password";

/// Builds mails with links to the frontend at `PUBLIC_URL`.
#[derive(Clone, Debug)]
pub struct Composer {
    public_url: String,
    message_id_domain: String,
}

impl Composer {
    /// Links point at `public_url`; Message-IDs use the domain of the sender, `from`.
    pub fn new(public_url: &str, from: &Mailbox) -> Self {
        Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            message_id_domain: from.email.domain().to_owned(),
        }
    }

    /// The mail proving `to` with a verification `token`, valid for `valid_for`.
    pub fn verification(&self, user_id: Uuid, to: &str, token: &str, valid_for: Duration) -> NewMail {
        let link = format!("{}/verify-email?token={token}", self.public_url);
        let lifetime = human(valid_for);
        let text = format!(
            "Hello,\n\n\
             please confirm your email address by opening this link:\n\n\
             {link}\n\n\
             The link works once and expires in {lifetime}.\n\
             If you did not create an account, you can ignore this mail.\n"
        );
        let html = html_page(
            "Confirm your email address",
            "Please confirm your email address by opening this link:",
            &link,
            "Confirm my email address",
            &format!(
                "The link works once and expires in {lifetime}. If you did not create an account, you can ignore this mail."
            ),
        );
        self.mail(
            VERIFY_EMAIL,
            user_id,
            to,
            "Confirm your email address",
            text,
            html,
        )
    }

    /// The mail carrying a password-reset `token`, valid for `valid_for`.
    pub fn password_reset(&self, user_id: Uuid, to: &str, token: &str, valid_for: Duration) -> NewMail {
        let link = format!("{}/reset-password?token={token}", self.public_url);
        let lifetime = human(valid_for);
        let text = format!(
            "Hello,\n\n\
             someone asked to reset the password of the account with this email address.\n\
             To choose a new password, open this link:\n\n\
             {link}\n\n\
             The link works once and expires in {lifetime}. A reset signs you out everywhere.\n\
             If you did not ask for it, ignore this mail: your password stays as it is.\n"
        );
        let html = html_page(
            "Reset your password",
            "Someone asked to reset the password of the account with this email address. To choose a new password, open this link:",
            &link,
            "Choose a new password",
            &format!(
                "The link works once and expires in {lifetime}. A reset signs you out everywhere. If you did not ask for it, ignore this mail: your password stays as it is."
            ),
        );
        self.mail(RESET_PASSWORD, user_id, to, "Reset your password", text, html)
    }

    fn mail(
        &self,
        kind: &'static str,
        user_id: Uuid,
        to: &str,
        subject: &str,
        text: String,
        html: String,
    ) -> NewMail {
        let id = Uuid::new_v4();
        NewMail {
            id,
            user_id: Some(user_id),
            kind,
            recipient: to.to_owned(),
            subject: subject.to_owned(),
            body_text: Some(text),
            body_html: Some(html),
            message_id: format!("<{}@{}>", id.simple(), self.message_id_domain),
        }
    }
}

fn html_page(title: &str, intro: &str, link: &str, button: &str, outro: &str) -> String {
    let (title, intro, link, button, outro) = (
        escape(title),
        escape(intro),
        escape(link),
        escape(button),
        escape(outro),
    );
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.5\">\n\
         <p>Hello,</p>\n<p>{intro}</p>\n\
         <p><a href=\"{link}\">{button}</a></p>\n\
         <p>Or copy this address into your browser:<br>{link}</p>\n\
         <p>{outro}</p>\n</body></html>\n"
    )
}

/// Escapes text for HTML content and double-quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `24 hours`, `1 hour`, `30 minutes`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else {
        (secs.div_ceil(60), "minute")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn sender(address: &str) -> Mailbox {
        address.parse().unwrap()
    }

    #[test]
    fn verification_links_to_the_frontend_in_both_parts() {
        let c = Composer::new(
            "https://app.example.com/",
            &sender("Example <no-reply@example.com>"),
        );
        let mail = c.verification(Uuid::nil(), "ada@example.com", "tok_EN-123", DAY);
        let link = "https://app.example.com/verify-email?token=tok_EN-123";
        assert!(mail.body_text.as_deref().unwrap().contains(link));
        assert!(
            mail.body_html
                .as_deref()
                .unwrap()
                .contains(&format!("href=\"{link}\""))
        );
        assert!(mail.body_text.as_deref().unwrap().contains("24 hours"));
        assert_eq!(mail.kind, VERIFY_EMAIL);
        assert_eq!(mail.recipient, "ada@example.com");
    }

    #[test]
    fn reset_links_to_the_reset_page() {
        let c = Composer::new("http://localhost:3000", &sender("authgraph <no-reply@localhost>"));
        let mail = c.password_reset(Uuid::nil(), "ada@example.com", "abc", Duration::from_secs(3600));
        assert!(
            mail.body_text
                .as_deref()
                .unwrap()
                .contains("http://localhost:3000/reset-password?token=abc")
        );
        assert!(mail.body_text.as_deref().unwrap().contains("1 hour."));
        assert_eq!(mail.kind, RESET_PASSWORD);
    }

    #[test]
    fn every_mail_has_its_own_message_id_in_the_sender_domain() {
        let c = Composer::new(
            "http://localhost:3000",
            &sender("Example <no-reply@mail.example.com>"),
        );
        let a = c.verification(Uuid::nil(), "a@example.com", "t", DAY);
        let b = c.verification(Uuid::nil(), "a@example.com", "t", DAY);
        assert_ne!(a.message_id, b.message_id);
        assert!(a.message_id.starts_with('<') && a.message_id.ends_with("@mail.example.com>"));
        assert!(a.message_id.contains(&a.id.simple().to_string()));
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let c = Composer::new("https://example.com/?a=1&b=2", &sender("x@example.com"));
        let mail = c.verification(Uuid::nil(), "a@example.com", "t", DAY);
        assert!(mail.body_html.unwrap().contains("?a=1&amp;b=2/verify-email"));
    }

    #[test]
    fn lifetimes_read_naturally() {
        assert_eq!(human(DAY), "24 hours");
        assert_eq!(human(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human(Duration::from_secs(1800)), "30 minutes");
    }
}
