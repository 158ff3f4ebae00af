//! The JSON bodies of the REST API's answers, as types. Fields are declared in the order of their JSON names, so the
//! bytes are those the 2014 cloud's clients were written against (keys sorted).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::events::BusStats;

/// `{"ok": true}`.
#[derive(Serialize)]
pub(super) struct Done {
    pub(super) ok: bool,
}

/// `{"error": ..., "ok": false}`.
#[derive(Serialize)]
pub(super) struct Failed<'a> {
    pub(super) error: &'a str,
    pub(super) ok: bool,
}

/// `{"errors": [...], "ok": false}` (the device and user routes' form).
#[derive(Serialize)]
pub(super) struct FailedErrors<'a> {
    pub(super) errors: [&'a str; 1],
    pub(super) ok: bool,
}

/// An OAuth error (`/oauth/token` and the token checks).
#[derive(Serialize)]
pub(super) struct OAuthError<'a> {
    pub(super) code: u16,
    pub(super) error: &'a str,
    pub(super) error_description: &'a str,
}

/// A `401` for a bad bearer token.
#[derive(Serialize)]
pub(super) struct InvalidToken<'a> {
    pub(super) error: &'static str,
    pub(super) error_description: &'a str,
}

/// `{"error": ...}` alone (a device that timed out, a provisioning error).
#[derive(Serialize)]
pub(super) struct ErrorOnly<'a> {
    pub(super) error: &'a str,
}

/// `GET /v1/user`.
#[derive(Serialize)]
pub(super) struct Account<'a> {
    pub(super) username: &'a str,
}

/// `GET /server/health`.
#[derive(Serialize)]
pub(super) struct Health {
    pub(super) connected: usize,
    pub(super) devices: usize,
    pub(super) events: BusStats,
    pub(super) ok: bool,
}

/// A granted token (`POST /oauth/token`).
#[derive(Serialize)]
pub(super) struct Grant<'a> {
    pub(super) access_token: &'a str,
    pub(super) expires_in: u64,
    pub(super) token_type: &'static str,
}

/// A listed token: only its digest is stored, so a token is listed, and deleted, by its SHA-256.
#[derive(Serialize)]
pub(super) struct TokenView {
    pub(super) client: String,
    pub(super) expires_at: Option<String>,
    pub(super) token: String,
}

/// `DELETE /v1/access_tokens`.
#[derive(Serialize)]
pub(super) struct Revoked {
    pub(super) ok: bool,
    pub(super) revoked: usize,
}

/// A device as listed (`GET /v1/devices`) and described (`GET /v1/devices/:id`, with functions and variables,
/// `null` while the device is not connected).
#[derive(Serialize)]
pub(super) struct DeviceView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) cc3000_patch_version: Option<String>,
    pub(super) connected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) functions: Option<Option<Vec<String>>>,
    pub(super) id: String,
    pub(super) last_app: Option<String>,
    pub(super) last_heard: Option<String>,
    pub(super) name: Option<String>,
    /// The platform of the device's last Hello (0 for a Core); absent before it connects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) platform_id: Option<u16>,
    /// The product firmware version of its last Hello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) product_firmware_version: Option<u16>,
    /// The product id of its last Hello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) product_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) requires_deep_update: Option<bool>,
    /// Which server key its last handshake used (`current`, `previous`, `retired`); absent before it connects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) server_key: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) variables: Option<Option<BTreeMap<String, &'static str>>>,
}

/// A function's result (`POST /v1/devices/:id/:function`).
#[derive(Serialize)]
pub(super) struct FunctionResult {
    pub(super) connected: bool,
    pub(super) id: String,
    pub(super) last_app: Option<String>,
    pub(super) name: Option<String>,
    pub(super) return_value: i32,
}

/// A variable's value (`GET /v1/devices/:id/:variable`).
#[derive(Serialize)]
pub(super) struct VariableResult<'a> {
    pub(super) cmd: &'static str,
    #[serde(rename = "coreInfo")]
    pub(super) core_info: CoreInfo,
    pub(super) name: &'a str,
    pub(super) result: Value,
}

/// The device part of a [`VariableResult`].
#[derive(Serialize)]
pub(super) struct CoreInfo {
    pub(super) connected: bool,
    #[serde(rename = "deviceID")]
    pub(super) device_id: String,
    pub(super) last_app: Option<String>,
    pub(super) last_heard: Option<String>,
    pub(super) name: Option<String>,
}

/// What `PUT /v1/devices/:id` changed: a name, a signal, or both.
#[derive(Serialize, Default)]
pub(super) struct Updated<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) connected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) signaling: Option<bool>,
}

/// An update that started (`PUT /v1/devices/:id` with a binary).
#[derive(Serialize)]
pub(super) struct UpdateStarted<'a> {
    pub(super) id: &'a str,
    pub(super) status: &'static str,
}

/// `POST /v1/devices` for a device the caller owns.
#[derive(Serialize)]
pub(super) struct Claimed<'a> {
    pub(super) claimed: bool,
    #[serde(rename = "deviceID")]
    pub(super) device_id: &'a str,
    pub(super) ok: bool,
}

/// `POST /v1/device_claims`.
#[derive(Serialize)]
pub(super) struct ClaimCode<'a> {
    pub(super) claim_code: &'a str,
    pub(super) device_ids: Vec<String>,
}
