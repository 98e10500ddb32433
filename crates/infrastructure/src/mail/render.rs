//! Mail templates (kept in `templates/mail/`, compiled in) and their rendering: a subject,
//! a plain-text body and an HTML body per template, with `{{name}}` placeholders filled
//! from the mail's values (HTML-escaped in the HTML body) and `{{link}}`, the page of the
//! front end at `KEEL_PUBLIC_URL` that takes the mail's token.

use std::collections::BTreeMap;

use keel_application::mail::MailMessage;
use keel_domain::mail::MailTemplate;
use uuid::Uuid;

/// What rendering needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// `From:` of every mail (`KEEL_MAIL_FROM`), such as `Keel <keel@example.com>`.
    pub from: String,
    /// The base of links in mails (`KEEL_PUBLIC_URL`), without a trailing slash.
    pub public_url: String,
}

struct Template {
    subject: &'static str,
    text: &'static str,
    html: &'static str,
    /// The front end's page the link opens (with `?token=`).
    page: &'static str,
}

fn template(t: MailTemplate) -> Template {
    match t {
        MailTemplate::EmailVerification => Template {
            subject: include_str!("../../templates/mail/email_verification.subject"),
            text: include_str!("../../templates/mail/email_verification.txt"),
            html: include_str!("../../templates/mail/email_verification.html"),
            page: "/verify-email",
        },
        MailTemplate::PasswordReset => Template {
            subject: include_str!("../../templates/mail/password_reset.subject"),
            text: include_str!("../../templates/mail/password_reset.txt"),
            html: include_str!("../../templates/mail/password_reset.html"),
            page: "/reset-password",
        },
        // The first password is set on the reset page, with the same route.
        MailTemplate::AccountCreated => Template {
            subject: include_str!("../../templates/mail/account_created.subject"),
            text: include_str!("../../templates/mail/account_created.txt"),
            html: include_str!("../../templates/mail/account_created.html"),
            page: "/reset-password",
        },
        // The front end's page signs the invitee in (or registers them with the token) and
        // accepts it.
        MailTemplate::Invitation => Template {
            subject: include_str!("../../templates/mail/invitation.subject"),
            text: include_str!("../../templates/mail/invitation.txt"),
            html: include_str!("../../templates/mail/invitation.html"),
            page: "/accept-invitation",
        },
    }
}

/// Why a stored mail cannot be rendered (a bug or a mail from another release): it is
/// given up, never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render the mail: {0}")]
pub struct RenderError(pub String);

/// The link a mail of `template` carries for `token`.
pub fn link(settings: &RenderSettings, template: MailTemplate, token: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    format!(
        "{}{}?token={encoded}",
        settings.public_url,
        self::template(template).page
    )
}

/// Renders the mail `id` to `to` from `template` with `values`.
pub fn render(
    settings: &RenderSettings,
    id: Uuid,
    to: &str,
    template: MailTemplate,
    values: &BTreeMap<String, String>,
) -> Result<MailMessage, RenderError> {
    let t = self::template(template);
    let mut values = values.clone();
    if let Some(token) = values.get("token") {
        let link = link(settings, template, token);
        values.insert("link".to_owned(), link);
    }
    Ok(MailMessage {
        id,
        from: settings.from.clone(),
        to: to.to_owned(),
        subject: fill(t.subject.trim(), &values, false)?,
        text: fill(t.text, &values, false)?,
        html: fill(t.html, &values, true)?,
    })
}

/// `text` with every `{{key}}` replaced by its value (escaped for HTML with `html`). A
/// placeholder without a value is an error: a mail never goes out half-filled.
fn fill(text: &str, values: &BTreeMap<String, String>, html: bool) -> Result<String, RenderError> {
    let mut out = String::with_capacity(text.len() + 128);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| RenderError("an unclosed placeholder".into()))?;
        let key = after[..end].trim();
        let value = values
            .get(key)
            .ok_or_else(|| RenderError(format!("no value for {{{{{key}}}}}")))?;
        if html {
            out.push_str(&escape_html(value));
        } else {
            // A plain-text body and a subject hold no markup; line breaks in a value could
            // forge lines (or headers, in a subject): they become spaces.
            out.push_str(&value.replace(['\r', '\n'], " "));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `value` safe in HTML text and in a double-quoted attribute.
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RenderSettings {
        RenderSettings {
            from: "Keel <keel@example.com>".into(),
            public_url: "https://keel.example.com/app".into(),
        }
    }

    fn values(name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("name".to_owned(), name.to_owned()),
            ("token".to_owned(), "0123abcd.s3cr-et_X".to_owned()),
            ("validFor".to_owned(), "30 minutes".to_owned()),
            ("project".to_owned(), "Apollo".to_owned()),
            ("inviter".to_owned(), "Cai".to_owned()),
            ("role".to_owned(), "member".to_owned()),
        ])
    }

    #[test]
    fn every_template_renders_with_its_link_in_both_bodies() {
        for t in MailTemplate::ALL {
            let m = render(&settings(), Uuid::nil(), "ann@example.com", t, &values("Ann")).unwrap();
            let link = link(&settings(), t, "0123abcd.s3cr-et_X");
            assert!(link.starts_with("https://keel.example.com/app/"), "{link}");
            assert!(link.ends_with("?token=0123abcd.s3cr-et_X"), "{link}");
            assert!(m.text.contains(&link), "{t:?} text");
            assert!(m.html.contains(&format!("href=\"{link}\"")), "{t:?} html");
            assert!(m.text.contains("30 minutes"));
            if t == MailTemplate::Invitation {
                // The invitee may have no account: no name, but who invited them to what.
                assert!(m.text.contains("Cai invited") && m.text.contains("\"Apollo\""));
                assert!(m.subject.contains("Apollo") && m.text.contains("/accept-invitation?token="));
            } else {
                assert!(m.text.contains("Hello Ann"));
            }
            assert!(!m.subject.is_empty() && !m.subject.contains('\n'));
            assert!(!m.text.contains("{{") && !m.html.contains("{{"));
        }
        let reset = render(
            &settings(),
            Uuid::nil(),
            "a@b.co",
            MailTemplate::PasswordReset,
            &values("Ann"),
        )
        .unwrap();
        assert!(reset.text.contains("/reset-password?token="));
        let verify = render(
            &settings(),
            Uuid::nil(),
            "a@b.co",
            MailTemplate::EmailVerification,
            &values("Ann"),
        )
        .unwrap();
        assert!(verify.text.contains("/verify-email?token="));
    }

    #[test]
    fn values_are_escaped_in_html_and_kept_on_one_line_in_text() {
        let m = render(
            &settings(),
            Uuid::nil(),
            "a@b.co",
            MailTemplate::EmailVerification,
            &values("<script>alert('x')</script>\r\nBcc: evil@example.com"),
        )
        .unwrap();
        assert!(!m.html.contains("<script>"), "{}", m.html);
        assert!(m.html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(m.text.contains("</script>  Bcc: evil@example.com"), "{}", m.text);
    }

    #[test]
    fn a_missing_value_is_an_error_not_a_half_filled_mail() {
        let mut v = values("Ann");
        v.remove("validFor");
        let e = render(
            &settings(),
            Uuid::nil(),
            "a@b.co",
            MailTemplate::PasswordReset,
            &v,
        )
        .unwrap_err();
        assert!(e.0.contains("validFor"), "{e}");
    }

    #[test]
    fn a_token_with_reserved_characters_is_encoded_in_the_link() {
        let l = link(&settings(), MailTemplate::PasswordReset, "a b&c=d");
        assert!(l.ends_with("?token=a+b%26c%3Dd"), "{l}");
    }
}
