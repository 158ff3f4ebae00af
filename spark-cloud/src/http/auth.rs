//! Authentication: bearer tokens (header, query or form), HTTP Basic credentials, and the per-address limit on
//! password attempts.

use super::*;

pub(super) struct User {
    pub(super) name: String,
    pub(super) id: String,
    pub(super) token_digest: String,
    pub(super) expires_at: Option<SystemTime>,
    pub(super) issued_at: Option<u64>,
}

/// The bearer token of a request, from exactly one of: the `Authorization` header, `?access_token=`, or a
/// form-encoded body field.
pub(super) fn token_of(req: &Req) -> Result<Option<String>, Reply> {
    let invalid = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d);
    let mut found = Vec::new();
    if let Some(auth) = &req.authorization {
        let mut words = auth.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(scheme), Some(token), None) if scheme.eq_ignore_ascii_case("bearer") => {
                found.push(token.to_owned());
            }
            (Some(scheme), _, _) if scheme.eq_ignore_ascii_case("basic") => {}
            _ => return Err(invalid("Malformed auth header")),
        }
    }
    if let Some(t) = req.query("access_token") {
        found.push(t.to_owned());
    }
    if let Some((_, t)) = req.form.iter().find(|(k, _)| k == "access_token") {
        if req.method == Method::GET {
            return Err(invalid(
                "Method cannot be GET When putting the token in the body.",
            ));
        }
        if !req.form_is_urlencoded {
            return Err(invalid(
                "When putting the token in the body, content type must be application/x-www-form-urlencoded.",
            ));
        }
        found.push(t.clone());
    }
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => Err(invalid(
            "Only one method may be used to authenticate at a time (Auth header, GET or POST).",
        )),
    }
}

pub(super) async fn bearer(cloud: &Cloud, req: &Req) -> Result<User, Reply> {
    let unauthorized = |d: &str| {
        let mut r = json_reply(
            StatusCode::UNAUTHORIZED,
            &replies::InvalidToken {
                error: "invalid_token",
                error_description: d,
            },
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"spark\", error=\"invalid_token\""),
        );
        r
    };
    let token = token_of(req)?.ok_or_else(|| unauthorized("The access token was not found"))?;
    let digest = crate::state::token_digest(&token);
    match cloud
        .authenticate(&digest)
        .await
        .map_err(StoreError::into_auth)
    {
        Ok(a) => Ok(User {
            name: a.username,
            id: a.user_id,
            token_digest: a.token_digest,
            expires_at: a.expires_at,
            issued_at: a.issued_at,
        }),
        Err(AuthError::ExpiredToken) => Err(unauthorized("The access token provided has expired.")),
        Err(_) => Err(unauthorized("The access token provided is invalid.")),
    }
}

pub(super) fn basic_credentials(req: &Req) -> Option<(String, String)> {
    let auth = req.authorization.as_deref()?;
    let (scheme, encoded) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Base64::decode_vec(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

pub(super) async fn basic_user(cloud: &Cloud, req: &Req) -> Result<String, Reply> {
    let (user, password) = basic_credentials(req).ok_or_else(|| {
        ok_false_errors(
            StatusCode::UNAUTHORIZED,
            "Unauthorized. You must send username and password in HTTP Basic Auth to view your access tokens.",
        )
    })?;
    login_attempt(req)?;
    cloud
        .verify_password(&user, &password)
        .await
        .map_err(|_| ok_false_errors(StatusCode::UNAUTHORIZED, "Bad password"))
}

/// Counts a password attempt against the client's address; `429` once its allowance is spent.
pub(super) fn login_attempt(req: &Req) -> Result<(), Reply> {
    if req.logins.allow(req.peer, Instant::now()) {
        return Ok(());
    }
    let mut r = oauth_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "Too many login attempts from this address; try again later",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    Err(r)
}

/// Password attempts per client address: a bucket of `burst` attempts, one more each `refill`.
pub(super) struct LoginLimiter {
    burst: u32,
    refill: Duration,
    buckets: std::sync::Mutex<std::collections::HashMap<IpAddr, (f64, Instant)>>,
}

impl LoginLimiter {
    pub(super) fn new(limits: &HttpLimits) -> LoginLimiter {
        LoginLimiter {
            burst: limits.login_burst.max(1),
            refill: limits.login_refill,
            buckets: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn allow(&self, peer: IpAddr, now: Instant) -> bool {
        let burst = f64::from(self.burst);
        let per_sec = 1.0 / self.refill.as_secs_f64().max(1e-3);
        let mut buckets = lock(&self.buckets);
        if buckets.len() > 4096 {
            // Forget addresses whose allowance is whole again.
            buckets.retain(|_, (left, at)| {
                *left + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (left, at) = buckets.entry(peer).or_insert((burst, now));
        *left = (*left + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        if *left >= 1.0 {
            *left -= 1.0;
            true
        } else {
            false
        }
    }
}
