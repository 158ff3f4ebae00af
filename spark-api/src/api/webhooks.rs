//! Webhooks: list, create, delete (`/v1/webhooks`, or `/v1/products/:product/webhooks` in a product scope).

use reqwest::Method;

use crate::client::{Call, Client, Owner, segment};
use crate::error::Error;
use crate::models::{CreatedWebhook, NewWebhook, OkResult, Webhook};

impl Client {
    fn webhooks_path(&self) -> Result<String, Error> {
        match &self.owner {
            Owner::User => Ok("/v1/webhooks".to_owned()),
            Owner::Product(product) => Ok(format!("/v1/products/{}/webhooks", segment(product))),
            Owner::Org(_) => Err(Error::invalid(
                "scope",
                "organizations have no webhook route",
            )),
        }
    }

    /// List the webhooks (`GET /v1/webhooks`).
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, Error> {
        self.call_json(Call::new(Method::GET, self.webhooks_path()?))
            .await
    }

    /// Create a webhook (`POST /v1/webhooks`, JSON body). Not retried: a retry could create it twice.
    pub async fn create_webhook(&self, hook: &NewWebhook) -> Result<CreatedWebhook, Error> {
        if hook.event.is_empty() || hook.url.is_empty() {
            return Err(Error::invalid("webhook", "event and url are required"));
        }
        let call = Call::new(Method::POST, self.webhooks_path()?)
            .json(hook)?
            .idempotent(false);
        self.call_json(call).await
    }

    /// Delete a webhook (`DELETE /v1/webhooks/:id`).
    pub async fn delete_webhook(&self, id: &str) -> Result<(), Error> {
        if id.is_empty() {
            return Err(Error::invalid("webhook id", "empty"));
        }
        let path = format!("{}/{}", self.webhooks_path()?, segment(id));
        self.call_json::<OkResult>(Call::new(Method::DELETE, path))
            .await
            .map(drop)
    }
}
