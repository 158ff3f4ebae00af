//! `POST /oauth/token` and the access-token endpoints.

use std::time::SystemTime;

use reqwest::Method;
use zeroize::Zeroizing;

use crate::auth::{
    AccessToken, AccessTokenInfo, Credentials, TokenGrant, TokenGrantWire, TokenLifetime,
};
use crate::client::{Auth, Body, Call, Client, decode, segment};
use crate::error::Error;
use crate::models::{OkResult, UserInfo};

impl Client {
    /// Log in with the password grant (`POST /oauth/token`) and return the new token; the client's OAuth client id
    /// and secret travel in the form, as both CLIs send them. Use [`Client::with_token`] to make calls with it.
    ///
    /// An account with two-step verification answers [`crate::ErrorBody::OAuth`] with `error == "mfa_required"` and
    /// an `mfa_token`; finish with [`Client::login_mfa`].
    pub async fn login(
        &self,
        credentials: &Credentials,
        lifetime: TokenLifetime,
    ) -> Result<TokenGrant, Error> {
        let oauth = &self.inner.oauth_client;
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "password"),
            ("username", &credentials.username),
            ("password", credentials.password.expose()),
            ("client_id", &oauth.id),
            ("client_secret", oauth.secret.expose()),
        ];
        let seconds;
        match &lifetime {
            TokenLifetime::Default => {}
            TokenLifetime::Seconds(s) => {
                seconds = s.to_string();
                form.push(("expires_in", &seconds));
            }
            TokenLifetime::Never => form.push(("expires_in", "0")),
            TokenLifetime::Until(date) => form.push(("expires_at", date)),
        }
        self.token_request(&form).await
    }

    /// Finish a login that answered `mfa_required`, with the `mfa_token` it returned and the one-time code.
    pub async fn login_mfa(&self, mfa_token: &str, otp: &str) -> Result<TokenGrant, Error> {
        let oauth = &self.inner.oauth_client;
        let form = [
            ("grant_type", "urn:custom:mfa-otp"),
            ("mfa_token", mfa_token),
            ("otp", otp),
            ("client_id", &oauth.id),
            ("client_secret", oauth.secret.expose()),
        ];
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<TokenGrant, Error> {
        let encoded = Zeroizing::new(
            serde_urlencoded::to_string(form)
                .map_err(|e| Error::invalid("login form", e.to_string()))?,
        );
        let mut call = Call::new(Method::POST, "/oauth/token".to_owned())
            .auth(Auth::None)
            .idempotent(false);
        call.body = Body::Form(encoded.to_string());
        let reply = self.execute(call).await?;
        let wire: TokenGrantWire = decode(&reply)?;
        Ok(wire.into_grant(SystemTime::now()))
    }

    /// List the account's tokens (`GET /v1/access_tokens`, HTTP Basic with the account's credentials; the 2014
    /// cloud and the local cloud).
    pub async fn list_access_tokens(
        &self,
        credentials: &Credentials,
    ) -> Result<Vec<AccessTokenInfo>, Error> {
        let call =
            Call::new(Method::GET, "/v1/access_tokens".to_owned()).auth(Auth::Basic(credentials));
        self.call_json(call).await
    }

    /// Revoke a token (`DELETE /v1/access_tokens/:token`, HTTP Basic with the account's credentials).
    pub async fn delete_access_token(
        &self,
        credentials: &Credentials,
        token: &AccessToken,
    ) -> Result<(), Error> {
        let path = format!("/v1/access_tokens/{}", segment(token.expose()));
        let call = Call::new(Method::DELETE, path).auth(Auth::Basic(credentials));
        self.call_json::<OkResult>(call).await.map(drop)
    }

    /// Revoke every token of the account at once (`DELETE /v1/access_tokens`, HTTP Basic with the account's
    /// credentials; the local cloud). The response to a leaked password or token: particle-api-js calls the same
    /// endpoint `deleteActiveAccessTokens`. Returns how many tokens were revoked when the cloud says.
    pub async fn delete_all_access_tokens(
        &self,
        credentials: &Credentials,
    ) -> Result<Option<u64>, Error> {
        #[derive(serde::Deserialize)]
        struct Revoked {
            #[serde(default)]
            revoked: Option<u64>,
        }
        let call = Call::new(Method::DELETE, "/v1/access_tokens".to_owned())
            .auth(Auth::Basic(credentials));
        self.call_json::<Revoked>(call).await.map(|r| r.revoked)
    }

    /// The account this client's token belongs to (`GET /v1/user`), as `particle whoami` asks.
    pub async fn user(&self) -> Result<UserInfo, Error> {
        self.call_json(Call::new(Method::GET, "/v1/user".to_owned()))
            .await
    }

    /// Revoke the token this client uses (`DELETE /v1/access_tokens/current`, today's cloud).
    pub async fn delete_current_access_token(&self) -> Result<(), Error> {
        let call = Call::new(Method::DELETE, "/v1/access_tokens/current".to_owned());
        self.call_json::<OkResult>(call).await.map(drop)
    }
}
