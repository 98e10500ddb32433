//! `POST /auth/register`: a new account with the `user` role (never another), signed in,
//! and a verification mail to its address (written with the account, in one transaction).
//!
//! With an `invitationToken` (docs/api/tracking.md, "Invitations") the account is made and
//! joins the invitation's project in one transaction, which uses the invitation up; its
//! address counts as verified (the token came by mail to it), so no verification mail is
//! sent. `KEEL_REGISTRATION` decides who may register: `open` (anyone; an invalid token is
//! a 400 `INVALID_TOKEN` and creates nothing), `invite` (only with a valid invitation for
//! that exact address: anything else is the 403 `closed` answers), `closed` (nobody).

use keel_domain::StoreError;
use keel_domain::events::{Change, EventType};
use keel_domain::identity::account_tokens::{PresentedAccountToken, TokenPurpose};
use keel_domain::identity::{Email, Password, Principal, Role, User, UserName, UserStatus};
use keel_domain::tracking::Member;
use keel_domain::tracking::invitations::{Invitation, NewAccount};
use serde_json::json;
use uuid::Uuid;

use crate::AppError;
use crate::context::RequestMeta;
use crate::identity::views::{AuthView, UserView};
use crate::identity::{IdentityPorts, RegistrationMode, collect};
use crate::tracking::invitations::stale_after_joining;
use crate::tracking::views::MemberView;

#[derive(Clone)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    pub name: String,
    /// The token of an invitation's mail: the account joins its project.
    pub invitation_token: Option<String>,
}

impl std::fmt::Debug for RegisterInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterInput").finish_non_exhaustive()
    }
}

/// Registers an account (see the module's rules on `KEEL_REGISTRATION` and invitations).
pub async fn register(
    ports: &IdentityPorts,
    input: RegisterInput,
    meta: &RequestMeta,
) -> Result<AuthView, AppError> {
    match (ports.registration, input.invitation_token.is_some()) {
        (RegistrationMode::Closed, _) | (RegistrationMode::Invite, false) => return Err(AppError::Forbidden),
        (_, true) => return register_invited(ports, input, meta).await,
        (RegistrationMode::Open, false) => {}
    }
    let user = ports
        .create_account(
            &input.email,
            &input.password,
            &input.name,
            Role::User,
            Some(TokenPurpose::EmailVerification),
        )
        .await?;
    let tokens = ports.start_session(&user, meta).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.registered",
            ("user", Some(user.id.to_string())),
            None,
        )
        .await?;
    Ok(AuthView {
        user: UserView::from(&user),
        tokens,
    })
}

/// The invitation `raw` names, when its secret matches (compared in constant time), it is
/// pending at `now` and it invites `email`; `None` otherwise.
async fn invitation_for(
    ports: &IdentityPorts,
    raw: &str,
    email: &Email,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<Invitation>, AppError> {
    let Some(presented) = PresentedAccountToken::parse(raw.trim()) else {
        return Ok(None);
    };
    let Some(invitation) = ports.invitations.find(presented.id).await? else {
        return Ok(None);
    };
    let matches = ports
        .token_secrets
        .matches(presented.secret, &invitation.secret_hash);
    Ok((matches && invitation.pending(now) && invitation.is_for(email)).then_some(invitation))
}

/// Register with an invitation: the account and its membership in one transaction.
async fn register_invited(
    ports: &IdentityPorts,
    input: RegisterInput,
    meta: &RequestMeta,
) -> Result<AuthView, AppError> {
    let (email, password, name) = collect(
        Email::parse(&input.email),
        Password::parse(&input.password, "password"),
        UserName::parse(&input.name),
    )?;
    // What an unusable invitation answers: in invite mode the register is refused as a
    // closed instance refuses it; in open mode the token is invalid (nothing is created).
    let refused = || match ports.registration {
        RegistrationMode::Open => AppError::InvalidToken,
        RegistrationMode::Invite | RegistrationMode::Closed => AppError::Forbidden,
    };
    let now = ports.clock.now();
    let token = input.invitation_token.as_deref().unwrap_or_default();
    let Some(invitation) = invitation_for(ports, token, &email, now).await? else {
        ports
            .audit(
                meta,
                None,
                "auth.register.invitation_refused",
                ("user", None),
                None,
            )
            .await?;
        return Err(refused());
    };
    let password_hash = ports.hasher.hash(&password).await?;
    let user = User {
        id: Uuid::now_v7(),
        email,
        name,
        role: Role::User,
        status: UserStatus::Active,
        password_hash,
        // The invitation's token reached this address.
        email_verified: true,
        created_at: now,
        updated_at: now,
    };
    // The new account is the actor of its joining; it has no session yet.
    let actor = Principal {
        user_id: user.id,
        session_id: Uuid::nil(),
        role: Role::User,
        expires_at: now,
        grant: None,
    };
    let joined = Member {
        project_id: invitation.project_id,
        user_id: user.id,
        role: invitation.role,
        name: user.name.as_str().to_owned(),
        email: user.email.as_str().to_owned(),
        joined_at: now,
    };
    let change = Change::by(&actor, EventType::MemberAdded, invitation.project_id, now)
        .request(meta.request_id.clone(), meta.ip.clone())
        .resource(user.id)
        .details(json!({
            "userId": user.id,
            "role": invitation.role.as_str(),
            "invitationId": invitation.id,
        }))
        .data(crate::tracking::views::event_data(&MemberView::from(&joined)))
        .build();
    let account = NewAccount {
        user: &user,
        verification: None,
    };
    let accepted = ports
        .invitations
        .accept(
            invitation.id,
            user.id,
            invitation.role,
            now,
            Some(account),
            &change,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                AppError::Conflict("an account with this e-mail already exists".into())
            }
            other => other.into(),
        })?;
    if !accepted {
        // Used, withdrawn or expired since it was read.
        return Err(refused());
    }
    ports
        .cache
        .invalidate(&stale_after_joining(invitation.project_id, user.id))
        .await;
    let tokens = ports.start_session(&user, meta).await?;
    ports
        .audit(
            meta,
            Some(user.id),
            "auth.registered",
            ("user", Some(user.id.to_string())),
            Some(json!({ "projectId": invitation.project_id, "invitationId": invitation.id })),
        )
        .await?;
    Ok(AuthView {
        user: UserView::from(&user),
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use keel_domain::StoreError;
    use keel_domain::mail::MailTemplate;

    use super::*;
    use crate::identity::fixtures::{Fixture, meta};

    fn input(email: &str, password: &str, name: &str) -> RegisterInput {
        RegisterInput {
            email: email.into(),
            password: password.into(),
            name: name.into(),
            invitation_token: None,
        }
    }

    #[tokio::test]
    async fn creates_a_user_with_the_user_role_a_session_and_a_verification_mail() {
        let mut f = Fixture::new();
        f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
        f.token_secrets
            .expect_generate()
            .times(1)
            .returning(|| "secret".into());
        f.token_secrets
            .expect_hash()
            .times(1)
            .returning(|s| format!("hash({s})"));
        f.users
            .expect_create_with_token()
            .withf(|u, token, mail| {
                u.role == Role::User
                    && u.email.as_str() == "ann@example.com"
                    && u.name.as_str() == "Ann"
                    && !u.email_verified
                    && token.user_id == u.id
                    && token.purpose == TokenPurpose::EmailVerification
                    && token.secret_hash == "hash(secret)"
                    && mail.template == MailTemplate::EmailVerification
                    && mail.to == "ann@example.com"
                    && mail.values["token"].ends_with(".secret")
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        f.expect_session_start();
        f.expect_audit("auth.registered");
        let view = register(
            &f.into_ports(),
            input(" Ann@Example.com", "Passw0rdX", " Ann "),
            &meta(),
        )
        .await
        .unwrap();
        assert_eq!(view.user.role, "user");
        assert_eq!(view.user.email, "ann@example.com");
        assert_eq!(view.tokens.token_type, "Bearer");
    }

    #[tokio::test]
    async fn reports_every_invalid_field_and_touches_nothing() {
        let f = Fixture::new();
        let err = register(&f.into_ports(), input("nope", "short", "A"), &meta())
            .await
            .unwrap_err();
        let AppError::Validation(details) = err else {
            panic!("expected validation")
        };
        let fields: Vec<_> = details.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(fields, ["email", "password", "name"]);
    }

    #[tokio::test]
    async fn a_taken_email_is_a_conflict() {
        let mut f = Fixture::new();
        f.hasher.expect_hash().returning(|_| Ok(Fixture::hash()));
        f.token_secrets.expect_generate().returning(|| "secret".into());
        f.token_secrets.expect_hash().returning(|s| format!("hash({s})"));
        f.users
            .expect_create_with_token()
            .returning(|_, _, _| Err(StoreError::Conflict("users_email_key".into())));
        let err = register(&f.into_ports(), input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(
            matches!(err, AppError::Conflict(ref m) if m.contains("already exists")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn closed_registration_refuses_every_register_and_touches_nothing() {
        let mut ports = Fixture::new().into_ports();
        ports.registration = RegistrationMode::Closed;
        let err = register(&ports, input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Forbidden), "{err:?}");
    }

    fn invitation_to(email: &str, expires_in: chrono::Duration) -> Invitation {
        use crate::identity::fixtures::now;
        Invitation {
            id: Uuid::from_u128(0x1111),
            project_id: Uuid::from_u128(0xAAAA),
            email: Email::parse(email).unwrap(),
            role: keel_domain::tracking::ProjectRole::Member,
            invited_by: Uuid::from_u128(1),
            secret_hash: "hash(s3cret)".into(),
            expires_at: now() + expires_in,
            created_at: now(),
        }
    }

    fn invited(email: &str, token: &str) -> RegisterInput {
        RegisterInput {
            invitation_token: Some(token.into()),
            ..input(email, "Passw0rdX", "Bea")
        }
    }

    fn token() -> String {
        format!("{}.s3cret", Uuid::from_u128(0x1111).simple())
    }

    /// A fixture whose invitation store holds `invitation`, and whose secrets compare by
    /// hashing.
    fn holding(invitation: Invitation) -> Fixture {
        let mut f = Fixture::new();
        f.invitations
            .expect_find()
            .returning(move |id| Ok((id == invitation.id).then(|| invitation.clone())));
        f.token_secrets
            .expect_matches()
            .returning(|secret, hash| format!("hash({secret})") == hash);
        f
    }

    #[tokio::test]
    async fn invite_only_refuses_a_register_without_a_valid_invitation_for_that_address_as_closed_does() {
        let no_token = {
            let mut ports = Fixture::new().into_ports();
            ports.registration = RegistrationMode::Invite;
            register(&ports, input("bea@example.com", "Passw0rdX", "Bea"), &meta()).await
        };
        assert!(matches!(no_token, Err(AppError::Forbidden)), "{no_token:?}");
        let wrong = [
            (
                invitation_to("cai@example.com", chrono::Duration::days(6)),
                token(),
            ),
            (
                invitation_to("bea@example.com", chrono::Duration::zero()),
                token(),
            ),
            (
                invitation_to("bea@example.com", chrono::Duration::days(6)),
                format!("{}.guess", Uuid::from_u128(0x1111).simple()),
            ),
            (
                invitation_to("bea@example.com", chrono::Duration::days(6)),
                "junk".into(),
            ),
        ];
        for mode in [RegistrationMode::Invite, RegistrationMode::Open] {
            for (invitation, raw) in wrong.clone() {
                let mut f = holding(invitation);
                f.hasher.expect_hash().never();
                f.invitations.expect_accept().never();
                f.audit
                    .expect_record()
                    .withf(|e| e.action == "auth.register.invitation_refused" && e.details.is_none())
                    .times(1)
                    .returning(|_| Ok(()));
                let mut ports = f.into_ports();
                ports.registration = mode;
                let e = register(&ports, invited("bea@example.com", &raw), &meta())
                    .await
                    .unwrap_err();
                match mode {
                    RegistrationMode::Invite => assert!(matches!(e, AppError::Forbidden), "{e:?}"),
                    _ => assert!(matches!(e, AppError::InvalidToken), "{e:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_valid_invitation_creates_the_account_and_the_membership_at_once() {
        for mode in [RegistrationMode::Invite, RegistrationMode::Open] {
            let mut f = holding(invitation_to("bea@example.com", chrono::Duration::days(6)));
            f.hasher.expect_hash().times(1).returning(|_| Ok(Fixture::hash()));
            f.users.expect_create_with_token().never();
            f.invitations
                .expect_accept()
                .withf(|id, user, role, _, account, change| {
                    let account = account.as_ref().unwrap();
                    *id == Uuid::from_u128(0x1111)
                        && *role == keel_domain::tracking::ProjectRole::Member
                        && account.user.id == *user
                        && account.user.email.as_str() == "bea@example.com"
                        && account.user.email_verified
                        && account.user.role == Role::User
                        && account.verification.is_none()
                        && change.event_type() == EventType::MemberAdded
                        && change.project_id() == Uuid::from_u128(0xAAAA)
                        && change.audit.actor_id == Some(*user)
                        && !change
                            .audit
                            .details
                            .as_ref()
                            .unwrap()
                            .to_string()
                            .contains("s3cret")
                })
                .times(1)
                .returning(|_, _, _, _, _, _| Ok(true));
            f.expect_session_start();
            f.expect_audit("auth.registered");
            let cache = f.cache.clone();
            let mut ports = f.into_ports();
            ports.registration = mode;
            let view = register(&ports, invited(" Bea@Example.com", &token()), &meta())
                .await
                .unwrap();
            assert!(view.user.email_verified);
            let user = view.user.id;
            assert_eq!(
                cache.invalidated(),
                [
                    format!("project:{}", Uuid::from_u128(0xAAAA)),
                    format!("projects-of:{user}")
                ]
            );
        }
    }

    #[tokio::test]
    async fn an_invitation_used_meanwhile_creates_nothing_and_closed_refuses_even_a_valid_one() {
        let mut f = holding(invitation_to("bea@example.com", chrono::Duration::days(6)));
        f.hasher.expect_hash().returning(|_| Ok(Fixture::hash()));
        f.invitations
            .expect_accept()
            .times(1)
            .returning(|_, _, _, _, _, _| Ok(false));
        let mut ports = f.into_ports();
        ports.registration = RegistrationMode::Invite;
        let e = register(&ports, invited("bea@example.com", &token()), &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::Forbidden), "{e:?}");
        let mut ports = Fixture::new().into_ports();
        ports.registration = RegistrationMode::Closed;
        let e = register(&ports, invited("bea@example.com", &token()), &meta())
            .await
            .unwrap_err();
        assert!(matches!(e, AppError::Forbidden), "{e:?}");
    }

    #[tokio::test]
    async fn hashing_capacity_exhausted_is_unavailable() {
        let mut f = Fixture::new();
        f.hasher
            .expect_hash()
            .returning(|_| Err(keel_domain::identity::ports::HashError::Busy));
        let err = register(&f.into_ports(), input("a@b.co", "Passw0rdX", "Ann"), &meta())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::Unavailable(_)));
    }
}
