//! Firmware routes: flash over the air, cloud compile, binary download, device public-key upload.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue};
use serde_json::Value;

use crate::client::{Body, Call, Client, decode, segment};
use crate::error::{ApiError, Error, ErrorBody, strip_query};
use crate::models::{CompileResult, DeviceRef, FirmwareFile, UpdateResult};
use crate::multipart::{Part, encode};

/// The multipart field name of the `index`th file (0-based): `file`, `file2`, `file3`, ... as the CLIs send them.
fn file_field(index: usize) -> String {
    if index == 0 {
        "file".to_owned()
    } else {
        format!("file{}", index + 1)
    }
}

impl Client {
    /// Flash a compiled binary over the air (`PUT /v1/devices/:id`, multipart `file` plus `file_type=binary`).
    ///
    /// The cloud answers once the update has started (`status: "Update started"` on the local cloud); a failure
    /// reported with HTTP 200 and `"ok": false` is an [`Error::Api`]. Never retried.
    pub async fn flash_binary(
        &self,
        device: impl Into<DeviceRef<'_>>,
        binary: &FirmwareFile,
    ) -> Result<UpdateResult, Error> {
        if binary.contents.is_empty() {
            return Err(Error::invalid("firmware binary", "empty"));
        }
        let parts = [
            Part::file(file_field(0), &binary.file_name, &binary.contents),
            Part::text("file_type", "binary"),
        ];
        self.flash_multipart(device.into(), &parts).await
    }

    /// Send source files for the cloud to compile and flash (`PUT /v1/devices/:id`, multipart `file`, `file2`, ...).
    /// Never retried.
    pub async fn flash_sources(
        &self,
        device: impl Into<DeviceRef<'_>>,
        sources: &[FirmwareFile],
    ) -> Result<UpdateResult, Error> {
        if sources.is_empty() {
            return Err(Error::invalid("source files", "none given"));
        }
        let parts: Vec<Part<'_>> = sources
            .iter()
            .enumerate()
            .map(|(i, f)| Part::file(file_field(i), &f.file_name, &f.contents))
            .collect();
        self.flash_multipart(device.into(), &parts).await
    }

    /// Flash an application the cloud already knows by name, such as `tinker` (`PUT /v1/devices/:id`, `app=`).
    /// Never retried.
    pub async fn flash_known_app(
        &self,
        device: impl Into<DeviceRef<'_>>,
        app: &str,
    ) -> Result<UpdateResult, Error> {
        if app.is_empty() {
            return Err(Error::invalid("app name", "empty"));
        }
        let call = Call::new(Method::PUT, self.device_path(device.into())?)
            .form(&[("app", app)])?
            .idempotent(false);
        self.call_json(call).await
    }

    async fn flash_multipart(
        &self,
        device: DeviceRef<'_>,
        parts: &[Part<'_>],
    ) -> Result<UpdateResult, Error> {
        let (boundary, bytes) = encode(parts);
        let mut call = Call::new(Method::PUT, self.device_path(device)?).idempotent(false);
        call.body = Body::Multipart { boundary, bytes };
        self.call_json(call).await
    }

    /// Compile source files in the cloud (`POST /v1/binaries`, multipart `file`, `file2`, ...; optional
    /// `platform_id` (0 = Core) and `build_target_version`). Download the result with [`Client::download_binary`].
    pub async fn compile(
        &self,
        sources: &[FirmwareFile],
        platform_id: Option<u32>,
        build_target_version: Option<&str>,
    ) -> Result<CompileResult, Error> {
        if sources.is_empty() {
            return Err(Error::invalid("source files", "none given"));
        }
        let platform = platform_id.map(|p| p.to_string());
        let mut parts: Vec<Part<'_>> = sources
            .iter()
            .enumerate()
            .map(|(i, f)| Part::file(file_field(i), &f.file_name, &f.contents))
            .collect();
        if let Some(platform) = &platform {
            parts.push(Part::text("platform_id", platform));
        }
        if let Some(version) = build_target_version {
            parts.push(Part::text("build_target_version", version));
        }
        let (boundary, bytes) = encode(&parts);
        let mut call = Call::new(Method::POST, "/v1/binaries".to_owned()).idempotent(false);
        call.body = Body::Multipart { boundary, bytes };
        self.call_json(call).await
    }

    /// Download a compiled binary (`GET /v1/binaries/:id`), to flash it over USB for instance.
    pub async fn download_binary(&self, binary_id: &str) -> Result<Bytes, Error> {
        if binary_id.is_empty() {
            return Err(Error::invalid("binary id", "empty"));
        }
        let path = format!("/v1/binaries/{}", segment(binary_id));
        let call = Call::new(Method::GET, path);
        let url = self.url(&call.path);
        // The generic path asks for JSON; a binary download asks for bytes.
        let reply = {
            let policy = self.inner.retry.max_retries;
            let mut attempt = 0;
            loop {
                let request = self
                    .request(&call, Some(self.inner.request_timeout))?
                    .header(ACCEPT, HeaderValue::from_static("application/octet-stream"));
                match request.send().await {
                    Ok(response) => break response,
                    Err(e) if attempt < policy && e.is_connect() && !e.is_timeout() => {
                        tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(Error::from_reqwest(&url, e)),
                }
            }
        };
        let status = reply.status();
        let limit = if status.is_success() {
            self.inner.max_response_bytes
        } else {
            crate::client::MAX_ERROR_BODY_BYTES
        };
        let bytes = crate::client::read_capped(reply, limit, &url).await?;
        if !status.is_success() {
            return Err(Error::Api(Box::new(ApiError {
                status: status.as_u16(),
                method: "GET".to_owned(),
                url: strip_query(&url),
                body: ErrorBody::parse(&bytes),
                retry_after: None,
            })));
        }
        Ok(bytes)
    }

    /// Upload a device's public key (`POST /v1/provisioning/:id`, form `deviceID`, `publicKey` (SPKI PEM,
    /// `-----BEGIN PUBLIC KEY-----`), `order`, `filename`, and `algorithm` when given: `rsa` for a Core).
    pub async fn send_public_key(
        &self,
        device_id: impl Into<DeviceRef<'_>>,
        public_key_pem: &str,
        algorithm: Option<&str>,
    ) -> Result<(), Error> {
        let device_id = device_id.into();
        let device_id = device_id.to_text();
        let device_id = device_id.as_ref();
        if device_id.is_empty() {
            return Err(Error::invalid("device id", "empty"));
        }
        if !public_key_pem.contains("-----BEGIN ") {
            return Err(Error::invalid("public key", "not PEM"));
        }
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let order = format!("manual_{millis}");
        let mut form = vec![
            ("deviceID", device_id),
            ("publicKey", public_key_pem),
            ("order", &order),
            ("filename", "spark-api"),
        ];
        if let Some(algorithm) = algorithm {
            form.push(("algorithm", algorithm));
        }
        let path = format!("/v1/provisioning/{}", segment(device_id));
        let call = Call::new(Method::POST, path).form(&form)?.idempotent(false);
        let reply = self.execute(call).await?;
        decode::<Value>(&reply).map(drop)
    }
}
