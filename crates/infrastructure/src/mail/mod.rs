//! Mail (adr/0018): the mail outbox, the templates, the transports (SMTP, `.eml` files,
//! none) and the background sender; the one-time account tokens' store writes its mails
//! through [`outbox::insert_mail`].

pub mod outbox;
pub mod render;
pub mod sender;
pub mod transport;

pub use outbox::MailOutbox;
pub use render::RenderSettings;
pub use sender::{MailPass, MailSender, MailSenderSettings};
pub use transport::{DisabledTransport, FileTransport, SmtpSecurity, SmtpTransport, SmtpUrl};
