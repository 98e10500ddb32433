//! The use cases' ports on the production adapters.

use std::sync::Arc;

use keel_application::cache::Cache;
use keel_application::identity::IdentityPorts;
use keel_application::tracking::TrackingPorts;
use keel_domain::rate_limit::Quota;
use keel_infrastructure::Database;
use keel_infrastructure::audit::SeaOrmAuditLog;
use keel_infrastructure::clock::SystemClock;
use keel_infrastructure::identity::account_tokens::SeaOrmAccountTokenRepository;
use keel_infrastructure::identity::jwt::JwtTokenService;
use keel_infrastructure::identity::metrics::SqlUserMetricsQuery;
use keel_infrastructure::identity::password::{Argon2Hasher, HashSettings};
use keel_infrastructure::identity::personal_data::SeaOrmPersonalDataStore;
use keel_infrastructure::identity::personal_tokens::{SeaOrmPersonalTokenRepository, Sha256TokenSecrets};
use keel_infrastructure::identity::sessions::SeaOrmSessionRepository;
use keel_infrastructure::identity::users::SeaOrmUserRepository;
use keel_infrastructure::rate_limit::InProcessRateLimiter;
use keel_infrastructure::tracking::{
    SeaOrmCommentRepository, SeaOrmInvitationRepository, SeaOrmLabelRepository, SeaOrmLinkRepository,
    SeaOrmMemberRepository, SeaOrmProjectRepository, SeaOrmRelationRepository, SeaOrmSearchIndex,
    SeaOrmStateRepository, SeaOrmTaskRepository,
};
use keel_infrastructure::webhooks::policy::{AddressPolicy, SealedSecrets};
use keel_infrastructure::webhooks::store::SeaOrmWebhookRepository;
use keel_infrastructure::webhooks::{SecretBox, parse_key};
use secrecy::ExposeSecret;

use crate::config::{JwtSecret, Settings};

use super::*;

/// The identity use cases' ports on the production adapters, reading through `cache`, with
/// an in-process login limiter (`Application::build` puts the shared one in its place).
pub fn identity_ports(
    settings: &Settings,
    db: &Database,
    cache: Arc<dyn Cache>,
) -> Result<IdentityPorts, StartupError> {
    let secret = match &settings.jwt_secret {
        JwtSecret::Configured(s) | JwtSecret::Generated(s) => s.expose_secret().as_bytes().to_vec(),
    };
    let hasher = Argon2Hasher::new(HashSettings {
        memory_kib: settings.argon2.memory_kib,
        iterations: settings.argon2.iterations,
        parallelism: settings.argon2.parallelism,
        max_concurrent: settings.argon2.max_concurrent as usize,
        queue_timeout: HASH_QUEUE_TIMEOUT,
    })
    .map_err(StartupError::Hashing)?;
    Ok(IdentityPorts {
        users: Arc::new(SeaOrmUserRepository::new(db.clone())),
        sessions: Arc::new(SeaOrmSessionRepository::new(db.clone())),
        hasher: Arc::new(hasher),
        tokens: Arc::new(
            JwtTokenService::new(&secret, settings.access_token_ttl, settings.refresh_token_ttl)
                .with_previous_secrets(
                    settings
                        .jwt_previous_secrets
                        .iter()
                        .map(|s| s.expose_secret().as_bytes()),
                ),
        ),
        audit: Arc::new(SeaOrmAuditLog::new(db.clone())),
        clock: Arc::new(SystemClock),
        limiter: Arc::new(InProcessRateLimiter::new()),
        user_metrics: Arc::new(SqlUserMetricsQuery::new(db.clone())),
        personal_tokens: Arc::new(SeaOrmPersonalTokenRepository::new(db.clone())),
        token_secrets: Arc::new(Sha256TokenSecrets),
        token_uses: Arc::default(),
        personal_data: Arc::new(SeaOrmPersonalDataStore::new(db.clone())),
        account_tokens: Arc::new(SeaOrmAccountTokenRepository::new(db.clone())),
        cache,
        registration: settings.registration,
        invitations: Arc::new(SeaOrmInvitationRepository::new(db.clone())),
        login_quota: quota(settings.rate_limits.login),
    })
}

pub(super) fn quota(limit: crate::config::RateLimit) -> Quota {
    Quota {
        requests: limit.requests,
        window: limit.window,
    }
}

/// The tracking use cases' ports on the database, sharing the identity's users and clock.
pub fn tracking_ports(
    db: &Database,
    identity: &IdentityPorts,
    webhooks: &crate::config::WebhookSettings,
    secret_box: SecretBox,
) -> TrackingPorts {
    TrackingPorts {
        projects: Arc::new(SeaOrmProjectRepository::new(db.clone())),
        members: Arc::new(SeaOrmMemberRepository::new(db.clone())),
        labels: Arc::new(SeaOrmLabelRepository::new(db.clone())),
        tasks: Arc::new(SeaOrmTaskRepository::new(db.clone())),
        comments: Arc::new(SeaOrmCommentRepository::new(db.clone())),
        links: Arc::new(SeaOrmLinkRepository::new(db.clone())),
        relations: Arc::new(SeaOrmRelationRepository::new(db.clone())),
        states: Arc::new(SeaOrmStateRepository::new(db.clone())),
        search: Arc::new(SeaOrmSearchIndex::new(db.clone())),
        activity: Arc::new(SeaOrmAuditLog::new(db.clone())),
        users: Arc::clone(&identity.users),
        clock: Arc::clone(&identity.clock),
        cache: Arc::clone(&identity.cache),
        webhooks: Arc::new(SeaOrmWebhookRepository::new(db.clone())),
        webhook_urls: Arc::new(AddressPolicy {
            allow_private: webhooks.allow_private,
        }),
        webhook_secrets: Arc::new(SealedSecrets { secret_box }),
        invitations: Arc::new(SeaOrmInvitationRepository::new(db.clone())),
        token_secrets: Arc::clone(&identity.token_secrets),
    }
}

/// The box that seals webhook signing secrets: the configured key (and the previous ones,
/// during a rotation), or a random key per process in development.
pub fn secret_box(settings: &crate::config::WebhookSettings) -> Result<SecretBox, StartupError> {
    let previous = settings
        .previous_keys
        .iter()
        .map(|k| parse_key(k.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| StartupError::WebhookKey)?;
    let current = match &settings.encryption_key {
        Some(key) => parse_key(key.expose_secret()).map_err(|_| StartupError::WebhookKey)?,
        None => {
            tracing::warn!(
                "KEEL_WEBHOOK_ENCRYPTION_KEY is not set: webhook secrets are sealed with a random key for this process; \
                 webhooks created now cannot sign deliveries after a restart"
            );
            let mut key = [0_u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            key
        }
    };
    Ok(SecretBox::new(current, previous))
}
