//! `/oauth/token`, `/v1/users` and `/v1/access_tokens`: signing up, signing in, listing and revoking tokens.

use super::*;

pub(super) fn valid_client_id(id: &str) -> bool {
    (3..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(super) async fn create_token(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    if !req.form_is_urlencoded
        && !req
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Method must be POST with application/x-www-form-urlencoded encoding",
        ));
    }
    let (client_id, client_secret) = match basic_credentials(req) {
        Some(pair) => pair,
        None => (
            req.field("client_id").unwrap_or_default().to_owned(),
            req.field("client_secret").unwrap_or_default().to_owned(),
        ),
    };
    if !valid_client_id(&client_id) {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Invalid or missing client_id parameter",
        ));
    }
    if client_secret.is_empty() {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing client_secret parameter",
        ));
    }
    if req.field("grant_type") != Some("password") {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid or missing grant_type parameter",
        ));
    }
    let (Some(username), Some(password)) = (req.field("username"), req.field("password")) else {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "Missing parameters. \"username\" and \"password\" are required",
        ));
    };
    login_attempt(req)?;
    let username = cloud
        .verify_password(username, password)
        .await
        .map_err(|_| {
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "User credentials are invalid",
            )
        })?;
    let lifetime = match req.field("expires_in").map(str::parse::<u64>) {
        None => Some(TOKEN_LIFETIME),
        Some(Ok(0)) => None,
        Some(Ok(secs)) if secs <= MAX_TOKEN_LIFETIME.as_secs() => Some(Duration::from_secs(secs)),
        Some(_) => {
            return Err(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "expires_in must be a number of seconds from 0 (never) to {}",
                    MAX_TOKEN_LIFETIME.as_secs()
                ),
            ));
        }
    };
    let (token, _record) =
        crate::store::issue_token(&*cloud.store, &username, &client_id, lifetime)
            .await
            .map_err(|_| storage_failed())?;
    let mut r = json_reply(
        StatusCode::OK,
        &replies::Grant {
            access_token: &token,
            expires_in: lifetime.map_or(0, |l| l.as_secs()),
            token_type: "bearer",
        },
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

pub(super) async fn create_user(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let username = req.field("username").unwrap_or_default();
    let password = req.field("password").unwrap_or_default();
    match crate::store::create_user(&*cloud.store, username, password).await {
        Ok(()) => Ok(done()),
        Err(AuthError::UserExists) => Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "User already exists",
        )),
        Err(AuthError::Invalid(why)) => Err(ok_false_errors(StatusCode::BAD_REQUEST, why)),
        Err(_) => Err(storage_failed()),
    }
}

pub(super) async fn list_tokens(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = basic_user(cloud, req).await?;
    let list: Vec<replies::TokenView> = cloud
        .store
        .tokens(&user)
        .await
        .map_err(|_| storage_failed())?
        .into_iter()
        .map(|t| replies::TokenView {
            client: t.client,
            expires_at: t
                .expires_at
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
                .map(iso8601),
            token: t.digest,
        })
        .collect();
    Ok(json_reply(StatusCode::OK, &list))
}

pub(super) async fn delete_token(cloud: &Cloud, req: &Req, token: &str) -> Result<Reply, Reply> {
    let user = basic_user(cloud, req).await?;
    match cloud.revoke_token_async(&user, token).await {
        Ok(true) => Ok(done()),
        Ok(false) => Err(ok_false_errors(StatusCode::NOT_FOUND, "Token not found")),
        Err(_) => Err(storage_failed()),
    }
}

/// `DELETE /v1/access_tokens` (Basic auth, or a bearer token as particle-api-js's `deleteActiveAccessTokens`
/// sends): revokes every token of the user.
pub(super) async fn revoke_all_tokens(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = match basic_user(cloud, req).await {
        Ok(user) => user,
        Err(refused) => match bearer(cloud, req).await {
            Ok(user) => user.name,
            Err(_) => return Err(refused),
        },
    };
    let count = cloud
        .revoke_all_tokens_async(&user)
        .await
        .map_err(|_| storage_failed())?;
    Ok(json_reply(
        StatusCode::OK,
        &replies::Revoked {
            ok: true,
            revoked: count,
        },
    ))
}

/// `DELETE /v1/access_tokens/current`: revokes the token the request carries.
pub(super) async fn revoke_current_token(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let token = token_of(req)?.unwrap_or_default();
    cloud
        .revoke_token_async(&user.name, &token)
        .await
        .map_err(|_| storage_failed())?;
    Ok(done())
}
