//! Device routes: list, info, rename, signal, claim, release, functions, variables, ping.

use reqwest::Method;
use serde_json::Value;

use crate::client::{Call, Client, Owner, decode, segment};
use crate::error::Error;
use crate::models::{
    ClaimResult, Device, DeviceRef, FunctionCallResult, OkResult, PingResult, UpdateResult,
    VariableResult,
};

impl Client {
    /// The device collection of the current owner: `/v1/devices` or `/v1/products/:product/devices`.
    pub(crate) fn devices_path(&self) -> Result<String, Error> {
        match &self.owner {
            Owner::User => Ok("/v1/devices".to_owned()),
            Owner::Product(product) => Ok(format!("/v1/products/{}/devices", segment(product))),
            Owner::Org(_) => Err(Error::invalid(
                "scope",
                "organizations have no device routes; scope the client to a product",
            )),
        }
    }

    /// One device's path; `device` may be its id or (on the local cloud) its name.
    pub(crate) fn device_path(&self, device: DeviceRef<'_>) -> Result<String, Error> {
        let device = device.to_text();
        if device.is_empty() {
            return Err(Error::invalid("device", "empty device id"));
        }
        Ok(format!("{}/{}", self.devices_path()?, segment(&device)))
    }

    /// List the devices (`GET /v1/devices`; a product's listing, wrapped in `{"devices": [...]}`, is unwrapped).
    pub async fn list_devices(&self) -> Result<Vec<Device>, Error> {
        let reply = self
            .execute(Call::new(Method::GET, self.devices_path()?))
            .await?;
        let value: Value = decode(&reply)?;
        let list = match value {
            Value::Object(mut map) if map.contains_key("devices") => {
                map.remove("devices").unwrap_or(Value::Null)
            }
            other => other,
        };
        crate::client::decode_value(&reply, list)
    }

    /// A device with its variables, functions and (2014 cloud, local cloud) CC3000 patch state
    /// (`GET /v1/devices/:id`).
    pub async fn device(&self, device: impl Into<DeviceRef<'_>>) -> Result<Device, Error> {
        self.call_json(Call::new(Method::GET, self.device_path(device.into())?))
            .await
    }

    /// Rename a device (`PUT /v1/devices/:id`, `name=`).
    pub async fn rename_device(
        &self,
        device: impl Into<DeviceRef<'_>>,
        name: &str,
    ) -> Result<UpdateResult, Error> {
        let call = Call::new(Method::PUT, self.device_path(device.into())?)
            .form(&[("name", name)])?
            .idempotent(true);
        self.call_json(call).await
    }

    /// Make the device's LED shout rainbows, or stop (`PUT /v1/devices/:id`, `signal=1|0`).
    pub async fn signal_device(
        &self,
        device: impl Into<DeviceRef<'_>>,
        on: bool,
    ) -> Result<UpdateResult, Error> {
        let call = Call::new(Method::PUT, self.device_path(device.into())?)
            .form(&[("signal", if on { "1" } else { "0" })])?
            .idempotent(true);
        self.call_json(call).await
    }

    /// Claim a new or released device for the account (`POST /v1/devices`, `id=`).
    pub async fn claim_device(
        &self,
        device_id: impl Into<DeviceRef<'_>>,
    ) -> Result<ClaimResult, Error> {
        let device_id = device_id.into();
        let call = Call::new(Method::POST, self.devices_path()?)
            .form(&[("id", device_id.to_text().as_ref())])?;
        self.call_json(call).await
    }

    /// Release (unclaim) a device (`DELETE /v1/devices/:id`).
    pub async fn release_device(&self, device: impl Into<DeviceRef<'_>>) -> Result<(), Error> {
        self.call_json::<OkResult>(Call::new(Method::DELETE, self.device_path(device.into())?))
            .await
            .map(drop)
    }

    /// Call a function with its one string argument (`POST /v1/devices/:id/:function`, `arg=`) and return what it
    /// returned. Never retried: the function may already have run. The 2014 cloud limits the argument to 63
    /// characters and function names to 12.
    pub async fn call_function(
        &self,
        device: impl Into<DeviceRef<'_>>,
        function: &str,
        argument: &str,
    ) -> Result<FunctionCallResult, Error> {
        if function.is_empty() {
            return Err(Error::invalid("function name", "empty"));
        }
        let path = format!("{}/{}", self.device_path(device.into())?, segment(function));
        let call = Call::new(Method::POST, path)
            .form(&[("arg", argument)])?
            .idempotent(false);
        self.call_json(call).await
    }

    /// Read a variable (`GET /v1/devices/:id/:variable`); the value is typed as the cloud sent it.
    pub async fn variable(
        &self,
        device: impl Into<DeviceRef<'_>>,
        variable: &str,
    ) -> Result<VariableResult, Error> {
        if variable.is_empty() {
            return Err(Error::invalid("variable name", "empty"));
        }
        let path = format!("{}/{}", self.device_path(device.into())?, segment(variable));
        self.call_json(Call::new(Method::GET, path)).await
    }

    /// Ask the cloud whether the device answers (`PUT /v1/devices/:id/ping`, today's cloud).
    pub async fn ping_device(&self, device: impl Into<DeviceRef<'_>>) -> Result<PingResult, Error> {
        let path = format!("{}/ping", self.device_path(device.into())?);
        self.call_json(Call::new(Method::PUT, path).idempotent(true))
            .await
    }
}
