//! `/api/v1/auth/*` (docs/api/identity.md).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use keel_application::AppError;
use keel_application::identity::account::{AccountExport, erase_account, export_account};
use keel_application::identity::auth::login::{LoginInput, login};
use keel_application::identity::auth::logout::{logout, logout_all};
use keel_application::identity::auth::password::{ChangePasswordInput, change_password};
use keel_application::identity::auth::profile::{profile, update_profile};
use keel_application::identity::auth::recovery::{ResetPasswordInput, forgot_password, reset_password};
use keel_application::identity::auth::refresh::refresh;
use keel_application::identity::auth::register::{RegisterInput, register};
use keel_application::identity::auth::sessions::{list_sessions, revoke_session};
use keel_application::identity::auth::verification::{resend_verification, verify_email};
use keel_application::identity::views::{AuthView, SessionView, TokensView, UserView};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::extract::JsonObject;
use crate::extractors::{AuthUser, ClientContext};
use crate::openapi::response;
use crate::state::AppState;

/// `Debug` that names the type and none of its fields: these bodies carry secrets.
macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t)).finish_non_exhaustive()
            }
        }
    )*};
}
redacted_debug!(RegisterBody, LoginBody, RefreshBody, ChangePasswordBody);

/// The attempt limits the account use cases enforce themselves (`AppError::RateLimited`),
/// beside the per-request limiter: each a `policy` of `rate_limit_rejections_total`.
#[derive(Debug, Clone, Copy)]
enum AttemptLimit {
    /// Logins and forgot-password mails, per address and e-mail.
    Login,
    /// Password and one-time-token guesses, per address and account.
    Password,
}

/// A use case's outcome, with a refusal by an [`AttemptLimit`] counted in the metrics.
trait Counted {
    fn counted(self, state: &AppState, limit: AttemptLimit) -> Self;
}

impl<T> Counted for Result<T, AppError> {
    fn counted(self, state: &AppState, limit: AttemptLimit) -> Self {
        if matches!(self, Err(AppError::RateLimited(_))) {
            state.metrics.rate_limit_rejection(match limit {
                AttemptLimit::Login => "login",
                AttemptLimit::Password => "password",
            });
        }
        self
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterBody {
    /// Trimmed and lower-cased; unique.
    #[schema(format = "email", max_length = 254, example = "ann@example.com")]
    pub email: String,
    /// 8–128 characters including an ASCII lower-case letter, upper-case letter and digit.
    #[schema(min_length = 8, max_length = 128, example = "Correct-h0rse")]
    pub password: String,
    /// 2–50 characters after trimming white space; no control characters.
    #[schema(example = "Ann")]
    pub name: String,
    /// The token of a project invitation's mail (the link's `token` parameter): the account
    /// joins that project in the same transaction, and its address counts as verified. It
    /// must invite this `email`.
    #[schema(max_length = 200, pattern = "^[0-9a-f]{32}\\.[A-Za-z0-9_-]{1,128}$")]
    pub invitation_token: Option<String>,
}

/// Creates an account (role `user`; a `role` field is refused) and signs it in.
#[utoipa::path(
    post, path = "/api/v1/auth/register", operation_id = "register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthView,
            headers(("Location" = String, description = "The new account's profile"))),
        (status = 400, description = "A field is invalid, or an unknown field was sent; or `INVALID_TOKEN`: with \
            registration open, the `invitationToken` is unknown, used, expired, malformed or for another e-mail \
            (nothing is created)", body = ErrorBody),
        (status = 403, description = "`FORBIDDEN`: registration is closed (`KEEL_REGISTRATION=closed`: an admin \
            creates accounts, `POST /api/v1/admin/users`), or invite-only (`KEEL_REGISTRATION=invite`) and there \
            is no valid `invitationToken` for this e-mail", body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the e-mail is taken", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 503, description = "Hashing capacity or the database is unavailable", body = ErrorBody)
    )
)]
pub async fn register_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<RegisterBody>,
) -> Result<HttpResponse, ApiError> {
    let RegisterBody {
        email,
        password,
        name,
        invitation_token,
    } = body.into_inner();
    let view = register(
        &state.identity,
        RegisterInput {
            email,
            password,
            name,
            invitation_token,
        },
        &ctx.0,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, "/api/v1/auth/profile"))
        .json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(example = "ann@example.com")]
    pub email: String,
    #[schema(example = "Correct-h0rse")]
    pub password: String,
}

/// Signs in. An unknown e-mail and a wrong password answer the same 401.
#[utoipa::path(
    post, path = "/api/v1/auth/login", operation_id = "login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in", body = AuthView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = "`INVALID_CREDENTIALS`: unknown e-mail or wrong password (the same answer)", body = ErrorBody),
        (status = 403, description = "`ACCOUNT_DISABLED`", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = "Too many attempts for this IP and e-mail, or this client's general limit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn login_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<LoginBody>,
) -> Result<HttpResponse, ApiError> {
    let LoginBody { email, password } = body.into_inner();
    let view = login(&state.identity, LoginInput { email, password }, &ctx.0)
        .await
        .counted(&state, AttemptLimit::Login)?;
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshBody {
    pub refresh_token: String,
}

/// Rotates a refresh token: the presented one is used up. Presenting a used one revokes the
/// whole session (`TOKEN_REUSED`).
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", operation_id = "refreshTokens", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "A new token pair", body = TokensView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = "`UNAUTHORIZED`, `TOKEN_EXPIRED` or `TOKEN_REUSED`", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn refresh_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<RefreshBody>,
) -> Result<HttpResponse, ApiError> {
    let tokens = refresh(&state.identity, &body.refresh_token, &ctx.0).await?;
    Ok(HttpResponse::Ok().json(tokens))
}

/// Revokes the current session; its tokens are refused from now on.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", operation_id = "logout", tag = "auth", security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody)
    )
)]
pub async fn logout_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    logout(&state.identity, &user.0, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Revokes every session of the caller.
#[utoipa::path(
    post, path = "/api/v1/auth/logout-all", operation_id = "logoutAll", tag = "auth", security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Every session signed out"),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody)
    )
)]
pub async fn logout_all_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    logout_all(&state.identity, &user.0, &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/v1/auth/profile", operation_id = "getProfile", tag = "auth", security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody)
    )
)]
pub async fn profile_route(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(profile(&state.identity, &user.0).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileBody {
    /// 2–50 characters after trimming white space; no control characters.
    #[schema(example = "Ann")]
    pub name: String,
}

/// Renames the caller.
#[utoipa::path(
    patch, path = "/api/v1/auth/profile", operation_id = "updateProfile", tag = "auth", security(("bearerAuth" = [])),
    request_body = UpdateProfileBody,
    responses(
        (status = 200, description = "The renamed account", body = UserView),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody)
    )
)]
pub async fn update_profile_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<UpdateProfileBody>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(update_profile(&state.identity, &user.0, &body.name, &ctx.0).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ChangePasswordBody {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Changes the password and revokes every other session.
#[utoipa::path(
    post, path = "/api/v1/auth/password", operation_id = "changePassword", tag = "auth", security(("bearerAuth" = [])),
    request_body = ChangePasswordBody,
    responses(
        (status = 204, description = "Changed; other sessions revoked"),
        (status = 400, description = "The new password breaks the policy", body = ErrorBody),
        (status = 401, description = "Not signed in, or `INVALID_CREDENTIALS` for a wrong current password", body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: the general limit, or password attempts beyond the login limit \
            (`KEEL_RATE_LIMIT_LOGIN`), counted per user and per client address, right or wrong", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn change_password_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<ChangePasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let ChangePasswordBody {
        current_password,
        new_password,
    } = body.into_inner();
    change_password(
        &state.identity,
        &user.0,
        ChangePasswordInput {
            current_password,
            new_password,
        },
        &ctx.0,
    )
    .await
    .counted(&state, AttemptLimit::Password)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Everything Keel holds about the caller: profile, sessions, tokens' metadata,
/// memberships, the tasks they created or are assigned to, their comments and the audit
/// entries where they are the actor.
#[utoipa::path(
    get, path = "/api/v1/auth/export", operation_id = "exportAccount", tag = "auth", security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's data", body = AccountExport),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn export_account_route(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(export_account(&state.identity, &user.0).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseAccountBody {
    pub password: String,
}

impl std::fmt::Debug for EraseAccountBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EraseAccountBody").finish_non_exhaustive()
    }
}

/// Erases the caller's account: it stays only as a tombstone (`Deleted user`,
/// `deleted-<id>@invalid`) that its tasks and comments keep pointing at; sessions and
/// tokens are revoked, the password hash and every recorded IP address and user agent are
/// removed.
#[utoipa::path(
    delete, path = "/api/v1/auth/account", operation_id = "eraseAccount", tag = "auth", security(("bearerAuth" = [])),
    request_body = EraseAccountBody,
    responses(
        (status = 204, description = "Erased"),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 401, description = "Not signed in, or `INVALID_CREDENTIALS` for a wrong password", body = ErrorBody),
        (status = 403, description = response::SESSION_ONLY, body = ErrorBody),
        (status = 409, description = "`CONFLICT`: the caller owns projects (the message names them), or is the last active admin", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: the general limit, or password attempts beyond the login limit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn erase_account_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    body: JsonObject<EraseAccountBody>,
) -> Result<HttpResponse, ApiError> {
    erase_account(&state.identity, &user.0, &body.password, &ctx.0)
        .await
        .counted(&state, AttemptLimit::Password)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<SessionView>,
}

/// The caller's active sessions, most recently used first.
#[utoipa::path(
    get, path = "/api/v1/auth/sessions", operation_id = "listSessions", tag = "auth", security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The caller's active sessions", body = SessionList),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody)
    )
)]
pub async fn sessions_route(state: web::Data<AppState>, user: AuthUser) -> Result<HttpResponse, ApiError> {
    let data = list_sessions(&state.identity, &user.0).await?;
    Ok(HttpResponse::Ok().json(SessionList { data }))
}

/// Revokes one of the caller's sessions.
#[utoipa::path(
    delete, path = "/api/v1/auth/sessions/{id}", operation_id = "revokeSession", tag = "auth", security(("bearerAuth" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = response::INVALID_ID, body = ErrorBody),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 404, description = "No such active session of the caller", body = ErrorBody)
    )
)]
pub async fn revoke_session_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    revoke_session(&state.identity, &user.0, id.into_inner(), &ctx.0).await?;
    Ok(HttpResponse::NoContent().finish())
}

redacted_debug!(ForgotPasswordBody, ResetPasswordBody, VerifyEmailBody);

/// The answer of the routes that start something whose result is mailed: the same for
/// every input, so it tells nothing about accounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"status": "accepted"}))]
pub struct Accepted {
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

const ACCEPTED: Accepted = Accepted { status: "accepted" };

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgotPasswordBody {
    #[schema(example = "ann@example.com")]
    pub email: String,
}

/// Mails a password reset link (valid 30 minutes, once) to an active account with this
/// e-mail. Answers 202 with the same body and in similar time whether or not there is one.
#[utoipa::path(
    post, path = "/api/v1/auth/password/forgot", operation_id = "requestPasswordReset", tag = "auth",
    request_body = ForgotPasswordBody,
    responses(
        (status = 202, description = "Accepted: if an active account has this e-mail, a reset link is mailed to it \
            (the same answer either way)", body = Accepted),
        (status = 400, description = response::INVALID, body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: the login limit of this client address and e-mail \
            (`KEEL_RATE_LIMIT_LOGIN`, shared with sign-ins), or this client's general limit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn forgot_password_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<ForgotPasswordBody>,
) -> Result<HttpResponse, ApiError> {
    forgot_password(&state.identity, &body.email, &ctx.0)
        .await
        .counted(&state, AttemptLimit::Login)?;
    Ok(HttpResponse::Accepted().json(ACCEPTED))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetPasswordBody {
    /// The token of the mailed link (`…/reset-password?token=<token>`).
    pub token: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Sets a new password with a mailed reset token (once), and signs the account out
/// everywhere (every session is revoked; personal access tokens stay).
#[utoipa::path(
    post, path = "/api/v1/auth/password/reset", operation_id = "resetPassword", tag = "auth",
    request_body = ResetPasswordBody,
    responses(
        (status = 204, description = "The password is set; every session of the account is revoked"),
        (status = 400, description = "`INVALID_TOKEN`: the token is unknown, used, expired or malformed (one answer for \
            all), or `VALIDATION_ERROR`: the new password breaks the policy", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = response::TOKEN_GUESSES, body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn reset_password_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<ResetPasswordBody>,
) -> Result<HttpResponse, ApiError> {
    let ResetPasswordBody { token, new_password } = body.into_inner();
    reset_password(
        &state.identity,
        ResetPasswordInput { token, new_password },
        &ctx.0,
    )
    .await
    .counted(&state, AttemptLimit::Password)?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailBody {
    /// The token of the mailed link (`…/verify-email?token=<token>`).
    pub token: String,
}

/// Marks the account's e-mail verified with a mailed verification token (once). Needs no
/// sign-in: the link may be opened on any device.
#[utoipa::path(
    post, path = "/api/v1/auth/email/verify", operation_id = "verifyEmail", tag = "auth",
    request_body = VerifyEmailBody,
    responses(
        (status = 204, description = "The e-mail is verified (`emailVerified` is `true`)"),
        (status = 400, description = "`INVALID_TOKEN`: the token is unknown, used, expired or malformed (one answer \
            for all), or `VALIDATION_ERROR`: the body is malformed", body = ErrorBody),
        (status = 413, description = response::TOO_LARGE, body = ErrorBody),
        (status = 415, description = response::NOT_JSON, body = ErrorBody),
        (status = 429, description = response::TOKEN_GUESSES, body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn verify_email_route(
    state: web::Data<AppState>,
    ctx: ClientContext,
    body: JsonObject<VerifyEmailBody>,
) -> Result<HttpResponse, ApiError> {
    verify_email(&state.identity, &body.token, &ctx.0)
        .await
        .counted(&state, AttemptLimit::Password)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Mails the signed-in caller a new verification link, unless the e-mail is verified
/// already (then nothing is sent; the answer is the same). A personal access token is
/// refused.
#[utoipa::path(
    post, path = "/api/v1/auth/email/verify/resend", operation_id = "resendEmailVerification", tag = "auth",
    security(("bearerAuth" = [])),
    responses(
        (status = 202, description = "Accepted: a new link is mailed unless the e-mail is verified already", body = Accepted),
        (status = 401, description = response::UNAUTHORIZED, body = ErrorBody),
        (status = 403, description = response::ACCOUNT_DISABLED, body = ErrorBody),
        (status = 429, description = "`RATE_LIMITED`: more resends than the login limit (`KEEL_RATE_LIMIT_LOGIN`) \
            allows per user, or the caller's general limit", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = response::UNAVAILABLE, body = ErrorBody)
    )
)]
pub async fn resend_verification_route(
    state: web::Data<AppState>,
    user: AuthUser,
    ctx: ClientContext,
) -> Result<HttpResponse, ApiError> {
    resend_verification(&state.identity, &user.0, &ctx.0).await?;
    Ok(HttpResponse::Accepted().json(ACCEPTED))
}
