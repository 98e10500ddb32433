//! Mocks and builders shared by the identity use-case tests.

use crate::cache::testing::RecordingCache;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use keel_domain::audit::MockAuditLog;
use keel_domain::clock::Clock;
use keel_domain::identity::personal_data::MockPersonalDataStore;
use keel_domain::identity::ports::{
    MockAccountTokenRepository, MockPasswordHasher, MockPersonalTokenRepository, MockSessionRepository,
    MockTokenSecrets, MockTokenService, MockUserMetricsQuery, MockUserRepository,
};
use keel_domain::identity::{Email, PasswordHash, Role, Session, User, UserName, UserStatus};
use keel_domain::rate_limit::{MockRateLimiter, Quota};
use keel_domain::tracking::invitations::MockInvitationRepository;
use uuid::Uuid;

use super::IdentityPorts;
use crate::context::RequestMeta;

pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().unwrap()
}

pub fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("req-1".into()),
        ip: Some("203.0.113.7".into()),
        user_agent: Some("test-agent".into()),
        token_id: None,
    }
}

pub fn user(role: Role, status: UserStatus) -> User {
    User {
        id: Uuid::now_v7(),
        email: Email::parse("ann@example.com").unwrap(),
        name: UserName::parse("Ann").unwrap(),
        role,
        status,
        password_hash: Fixture::hash(),
        email_verified: false,
        created_at: now(),
        updated_at: now(),
    }
}

pub fn session(user_id: Uuid) -> Session {
    Session {
        id: Uuid::now_v7(),
        user_id,
        created_at: now(),
        last_used_at: now(),
        expires_at: now() + chrono::Duration::days(7),
        revoked_at: None,
        user_agent: None,
        ip: None,
    }
}

pub struct Fixture {
    pub users: MockUserRepository,
    pub sessions: MockSessionRepository,
    pub hasher: MockPasswordHasher,
    pub tokens: MockTokenService,
    pub audit: MockAuditLog,
    pub limiter: MockRateLimiter,
    pub user_metrics: MockUserMetricsQuery,
    pub personal_tokens: MockPersonalTokenRepository,
    pub token_secrets: MockTokenSecrets,
    pub personal_data: MockPersonalDataStore,
    pub account_tokens: MockAccountTokenRepository,
    pub invitations: MockInvitationRepository,
    /// Loads through; tests read what was invalidated.
    pub cache: Arc<RecordingCache>,
}

impl Fixture {
    pub fn new() -> Self {
        Self {
            users: MockUserRepository::new(),
            sessions: MockSessionRepository::new(),
            hasher: MockPasswordHasher::new(),
            tokens: MockTokenService::new(),
            audit: MockAuditLog::new(),
            limiter: MockRateLimiter::new(),
            user_metrics: MockUserMetricsQuery::new(),
            personal_tokens: MockPersonalTokenRepository::new(),
            token_secrets: MockTokenSecrets::new(),
            personal_data: MockPersonalDataStore::new(),
            account_tokens: MockAccountTokenRepository::new(),
            invitations: MockInvitationRepository::new(),
            cache: Arc::new(RecordingCache::default()),
        }
    }

    pub fn hash() -> PasswordHash {
        PasswordHash::new("$argon2id$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA".into())
    }

    /// A session and its first token pair are created once.
    pub fn expect_session_start(&mut self) {
        self.sessions.expect_create().times(1).returning(|_, _| Ok(()));
        self.expect_token_pair();
    }

    pub fn expect_token_pair(&mut self) {
        self.tokens
            .expect_refresh_ttl()
            .returning(|| chrono::Duration::days(7));
        self.tokens
            .expect_issue_access()
            .times(1)
            .returning(|_, _| ("access-token".into(), 900));
        self.tokens
            .expect_issue_refresh()
            .times(1)
            .returning(|_, _, _| "refresh-token".into());
    }

    /// Exactly one audit entry with this action, and it holds no secret.
    pub fn expect_audit(&mut self, action: &'static str) {
        self.audit
            .expect_record()
            .withf(move |e| {
                let details = e.details.as_ref().map(ToString::to_string).unwrap_or_default();
                e.action == action && !details.contains("Passw0rd") && !details.contains("token")
            })
            .times(1)
            .returning(|_| Ok(()));
    }

    pub fn into_ports(self) -> IdentityPorts {
        IdentityPorts {
            users: Arc::new(self.users),
            sessions: Arc::new(self.sessions),
            hasher: Arc::new(self.hasher),
            tokens: Arc::new(self.tokens),
            audit: Arc::new(self.audit),
            clock: Arc::new(FixedClock(now())),
            limiter: Arc::new(self.limiter),
            user_metrics: Arc::new(self.user_metrics),
            personal_tokens: Arc::new(self.personal_tokens),
            token_secrets: Arc::new(self.token_secrets),
            token_uses: Arc::default(),
            personal_data: Arc::new(self.personal_data),
            account_tokens: Arc::new(self.account_tokens),
            cache: self.cache,
            registration: super::RegistrationMode::Open,
            invitations: Arc::new(self.invitations),
            login_quota: Quota {
                requests: 10,
                window: Duration::from_secs(900),
            },
        }
    }
}

/// The principal of a signed-in user with a fresh session id.
pub fn principal(user_id: Uuid, role: Role) -> keel_domain::identity::Principal {
    keel_domain::identity::Principal {
        user_id,
        session_id: Uuid::now_v7(),
        role,
        expires_at: now() + chrono::Duration::minutes(15),
        grant: None,
    }
}

/// The principal of a personal access token of `user_id` with the `write` scope.
pub fn token_principal(user_id: Uuid) -> keel_domain::identity::Principal {
    let mut p = principal(user_id, Role::User);
    p.grant = Some(Arc::new(keel_domain::identity::tokens::Grant {
        token_id: Uuid::now_v7(),
        scopes: keel_domain::identity::tokens::Scopes::parse(&["write"]).unwrap(),
        project_ids: None,
    }));
    p
}

/// The limiter refuses keys that start with `refused`, and allows the rest.
pub fn limit(f: &mut Fixture, refused: &'static str) {
    f.limiter.expect_hit().returning(move |key, q| {
        let allowed = !key.starts_with(refused);
        keel_domain::rate_limit::RateDecision {
            allowed,
            limit: q.requests,
            remaining: u32::from(allowed),
            retry_after_secs: if allowed { 0 } else { 42 },
            reset_secs: 900,
        }
    });
}
