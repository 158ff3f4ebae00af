//! Serde types for the cloud's responses and request parameters.
//!
//! Every response type ignores fields it does not know and makes optional what the 2014 cloud, the local cloud and
//! today's cloud do not all send, so the same types read all three.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A device id, 24 hex digits in JSON: the workspace's one device-id type, from `spark-protocol`.
/// Reading takes either case, writing gives lowercase, as the cloud sends it.
pub use spark_protocol::DeviceId;

/// How a call names a device: by its [`DeviceId`], or by text as a person typed it (an id, or on the clouds that
/// resolve them, a device name). Calls take `impl Into<DeviceRef>`, so a `DeviceId`, a `&DeviceId` and a `&str`
/// all serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRef<'a> {
    /// A device id.
    Id(DeviceId),
    /// Text sent as given: an id or a name.
    Text(&'a str),
}

impl DeviceRef<'_> {
    /// The text that goes into a path or a form: 24 lowercase hex digits for an id, the text itself otherwise.
    #[must_use]
    pub fn to_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            DeviceRef::Id(id) => std::borrow::Cow::Owned(id.to_string()),
            DeviceRef::Text(text) => std::borrow::Cow::Borrowed(text),
        }
    }
}

impl From<DeviceId> for DeviceRef<'_> {
    fn from(id: DeviceId) -> Self {
        DeviceRef::Id(id)
    }
}

impl From<&DeviceId> for DeviceRef<'_> {
    fn from(id: &DeviceId) -> Self {
        DeviceRef::Id(*id)
    }
}

impl<'a> From<&'a str> for DeviceRef<'a> {
    fn from(text: &'a str) -> Self {
        DeviceRef::Text(text)
    }
}

impl<'a> From<&'a String> for DeviceRef<'a> {
    fn from(text: &'a String) -> Self {
        DeviceRef::Text(text)
    }
}

impl fmt::Display for DeviceRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRef::Id(id) => fmt::Display::fmt(id, f),
            DeviceRef::Text(text) => f.write_str(text),
        }
    }
}

/// A device as listed by `GET /v1/devices` and described by `GET /v1/devices/:id`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Device {
    /// The device id.
    pub id: DeviceId,
    /// The device's name (absent or `null` when it has none).
    #[serde(default)]
    pub name: Option<String>,
    /// The last application flashed, when known.
    #[serde(default)]
    pub last_app: Option<String>,
    /// When the cloud last heard from it (ISO-8601).
    #[serde(default)]
    pub last_heard: Option<String>,
    /// When the device last completed a handshake (ISO-8601; today's cloud).
    #[serde(default)]
    pub last_handshake_at: Option<String>,
    /// Whether it is connected to the cloud now.
    #[serde(default)]
    pub connected: bool,
    /// Today's cloud also says `online`.
    #[serde(default)]
    pub online: Option<bool>,
    /// The platform id (0 = Spark Core; today's cloud).
    #[serde(default)]
    pub platform_id: Option<u32>,
    /// The product id (today's cloud).
    #[serde(default)]
    pub product_id: Option<u32>,
    /// Whether the device is cellular (today's cloud).
    #[serde(default)]
    pub cellular: Option<bool>,
    /// The device's variables by name, with their type names (`int32`, `double`, `string`), in the device info;
    /// `None` when the device is offline or in a listing.
    #[serde(default)]
    pub variables: Option<BTreeMap<String, String>>,
    /// The device's function names, in the device info; `None` when offline or in a listing.
    #[serde(default)]
    pub functions: Option<Vec<String>>,
    /// The CC3000 service-pack version the Core reported (2014 cloud, local cloud).
    #[serde(default)]
    pub cc3000_patch_version: Option<String>,
    /// Whether the Core needs the CC3000 patch ("deep update") (2014 cloud, local cloud).
    #[serde(default)]
    pub requires_deep_update: Option<bool>,
    /// Which server key the device's last handshake used: `current`, `previous` (still to be moved during a
    /// migration window) or `retired` (local cloud).
    #[serde(default)]
    pub server_key: Option<String>,
    /// The system firmware version (today's cloud).
    #[serde(default)]
    pub system_firmware_version: Option<String>,
    /// User notes (today's cloud).
    #[serde(default)]
    pub notes: Option<String>,
}

/// The answer to a function call (`POST /v1/devices/:id/:function`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FunctionCallResult {
    /// The device id.
    #[serde(default)]
    pub id: Option<DeviceId>,
    /// The device name.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the device is connected.
    #[serde(default)]
    pub connected: Option<bool>,
    /// The last application (local cloud).
    #[serde(default)]
    pub last_app: Option<String>,
    /// What the function returned (an `int` on the device).
    pub return_value: i32,
}

/// A variable's value, typed as the cloud sent it: the workspace's one value type, from
/// `spark-protocol` (an `int32` is [`VariableValue::Int`], a JSON integer beyond `i32` a
/// [`VariableValue::Double`]).
pub use spark_protocol::VariableValue;

/// The answer to a variable read (`GET /v1/devices/:id/:variable`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct VariableResult {
    /// `"VarReturn"` in the 2014 cloud and the local cloud.
    #[serde(default)]
    pub cmd: Option<String>,
    /// The variable name.
    #[serde(default)]
    pub name: Option<String>,
    /// The value.
    pub result: VariableValue,
    /// Details of the device.
    #[serde(default, rename = "coreInfo")]
    pub core_info: Option<CoreInfo>,
}

/// The `coreInfo` object of a variable read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CoreInfo {
    /// The device id.
    #[serde(default, rename = "deviceID")]
    pub device_id: Option<DeviceId>,
    /// The device name.
    #[serde(default)]
    pub name: Option<String>,
    /// The last application.
    #[serde(default)]
    pub last_app: Option<String>,
    /// When the cloud last heard from it.
    #[serde(default)]
    pub last_heard: Option<String>,
    /// When it last completed a handshake.
    #[serde(default)]
    pub last_handshake_at: Option<String>,
    /// Whether it is connected.
    #[serde(default)]
    pub connected: Option<bool>,
}

/// The answer to `PUT /v1/devices/:id` (rename, signal, flash): the 2014 cloud, the local cloud and today's cloud each
/// fill in different fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UpdateResult {
    /// `true` on success, when sent.
    #[serde(default)]
    pub ok: Option<bool>,
    /// The device id.
    #[serde(default)]
    pub id: Option<DeviceId>,
    /// The device's (new) name.
    #[serde(default)]
    pub name: Option<String>,
    /// Whether the device is connected.
    #[serde(default)]
    pub connected: Option<bool>,
    /// Whether the LED is now signaling (rainbow).
    #[serde(default)]
    pub signaling: Option<bool>,
    /// A flash status, such as `"Update started"`.
    #[serde(default)]
    pub status: Option<String>,
    /// The id of the binary being flashed (2014 cloud).
    #[serde(default, deserialize_with = "string_or_number")]
    pub firmware_binary_id: Option<String>,
    /// A message (today's cloud).
    #[serde(default)]
    pub message: Option<String>,
}

/// The account behind a token (`GET /v1/user`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// The account's user name (its e-mail address).
    pub username: String,
}

/// The answer to a claim (`POST /v1/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClaimResult {
    /// `true` on success.
    #[serde(default)]
    pub ok: Option<bool>,
    /// The claimed device id (today's cloud).
    #[serde(default, rename = "deviceID")]
    pub device_id: Option<DeviceId>,
    /// Whether the claim completed (today's cloud).
    #[serde(default)]
    pub claimed: Option<bool>,
}

/// A plain `{"ok": true}` answer (release, delete token, publish, delete webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct OkResult {
    /// `true` on success; absent in some answers.
    #[serde(default)]
    pub ok: Option<bool>,
}

/// The answer to a ping (`PUT /v1/devices/:id/ping`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct PingResult {
    /// Whether the device answered.
    pub online: bool,
    /// `true` when the request itself succeeded.
    #[serde(default)]
    pub ok: Option<bool>,
}

/// One event from an event stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The event name (from the `event:` line).
    pub name: String,
    /// The payload; `None` when the publisher sent none.
    pub data: Option<String>,
    /// Time to live in seconds. The 2014 cloud and the local cloud send it as a string, others as a number.
    pub ttl: Option<u32>,
    /// When it was published (ISO-8601).
    pub published_at: Option<String>,
    /// The publishing device's id (or `particle-internal`, or the user id for API-published events on the local
    /// cloud), as sent; [`Event::device_id`] reads it as a [`DeviceId`].
    pub coreid: Option<String>,
}

/// The JSON in the `data:` line of an event.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EventPayload {
    #[serde(default)]
    pub(crate) data: Option<String>,
    #[serde(default, deserialize_with = "ttl_string_or_number")]
    pub(crate) ttl: Option<u32>,
    #[serde(default)]
    pub(crate) published_at: Option<String>,
    #[serde(default)]
    pub(crate) coreid: Option<String>,
}

impl Event {
    /// The publishing device, when `coreid` is a device id (it is not for events the cloud or an API user
    /// published).
    #[must_use]
    pub fn device_id(&self) -> Option<DeviceId> {
        self.coreid.as_deref().and_then(|c| c.parse().ok())
    }

    /// Decode an event from its name and the JSON of its `data:` line.
    pub fn from_sse(name: &str, json: &str) -> Result<Event, String> {
        if !json.trim_start().starts_with('{') {
            return Err("the event data is not a JSON object".to_owned());
        }
        let mut de = serde_json::Deserializer::from_str(json);
        let payload: EventPayload = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| format!("at `{}`: {}", e.path(), e.inner()))?;
        de.end().map_err(|e| e.to_string())?;
        Ok(Event {
            name: name.to_owned(),
            data: payload.data,
            ttl: payload.ttl,
            published_at: payload.published_at,
            coreid: payload.coreid,
        })
    }
}

/// What to publish with `POST /v1/devices/events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// The name: 1 to 63 ASCII characters; names starting with `spark` are reserved by the cloud.
    pub name: String,
    /// The payload (63 bytes on the 2014 cloud).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Whether only the owner's streams see it.
    pub private: bool,
    /// Time to live in seconds (the cloud's default is 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

impl Publish {
    /// A private event with no data and the default TTL.
    pub fn new(name: impl Into<String>) -> Publish {
        Publish {
            name: name.into(),
            data: None,
            private: true,
            ttl: None,
        }
    }
    /// Set the payload.
    pub fn data(mut self, data: impl Into<String>) -> Publish {
        self.data = Some(data.into());
        self
    }
    /// Make it public (`private=false`).
    pub fn public(mut self) -> Publish {
        self.private = false;
        self
    }
    /// Set the TTL in seconds.
    pub fn ttl(mut self, seconds: u32) -> Publish {
        self.ttl = Some(seconds);
        self
    }
}

/// A webhook as listed by `GET /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Webhook {
    /// The webhook id.
    pub id: String,
    /// The event-name prefix it fires on.
    #[serde(default)]
    pub event: Option<String>,
    /// The target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The HTTP method it uses.
    #[serde(default, rename = "requestType")]
    pub request_type: Option<String>,
    /// The device it is limited to.
    #[serde(default, alias = "deviceID")]
    pub deviceid: Option<DeviceId>,
    /// Whether it only fires for the owner's devices.
    #[serde(default, deserialize_with = "bool_or_string")]
    pub mydevices: Option<bool>,
    /// When it was created (ISO-8601).
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What to create with `POST /v1/webhooks` (the 2015 fields; all but `event` and `url` optional).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewWebhook {
    /// The event-name prefix to fire on.
    pub event: String,
    /// The target URL (may contain `{{SPARK_EVENT_VALUE}}`-style templates).
    pub url: String,
    /// `GET`, `POST`, `PUT` or `DELETE` (the cloud defaults to `POST`).
    #[serde(rename = "requestType", skip_serializing_if = "Option::is_none")]
    pub request_type: Option<String>,
    /// Only events from this device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deviceid: Option<String>,
    /// Only events from the owner's devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mydevices: Option<bool>,
    /// Extra request headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Fields sent form-encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub form: Option<BTreeMap<String, String>>,
    /// A JSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Query parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<BTreeMap<String, String>>,
    /// HTTP Basic credentials for the target, as `{"username", "password"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<BTreeMap<String, String>>,
}

impl NewWebhook {
    /// A POST webhook on `event` to `url`.
    pub fn new(event: impl Into<String>, url: impl Into<String>) -> NewWebhook {
        NewWebhook {
            event: event.into(),
            url: url.into(),
            request_type: None,
            deviceid: None,
            mydevices: None,
            headers: None,
            form: None,
            json: None,
            query: None,
            auth: None,
        }
    }
}

/// The answer to `POST /v1/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CreatedWebhook {
    /// `true` on success.
    #[serde(default)]
    pub ok: Option<bool>,
    /// The new webhook's id.
    pub id: String,
    /// The target URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The event prefix.
    #[serde(default)]
    pub event: Option<String>,
    /// When it was created.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The answer to a cloud compile (`POST /v1/binaries`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct CompileResult {
    /// `true` on success.
    #[serde(default)]
    pub ok: Option<bool>,
    /// The binary's id, for [`crate::Client::download_binary`].
    #[serde(deserialize_with = "required_string_or_number")]
    pub binary_id: String,
    /// The binary's path on the cloud (`/v1/binaries/<id>`).
    #[serde(default)]
    pub binary_url: Option<String>,
    /// When the binary will be deleted.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The compiler's memory statistics, as sent.
    #[serde(default, rename = "sizeInfo")]
    pub size_info: Option<Value>,
}

/// One source or binary file of a flash or compile request.
#[derive(Clone, PartialEq, Eq)]
pub struct FirmwareFile {
    /// The file name sent in the multipart part (the cloud ignores it for binaries).
    pub file_name: String,
    /// The contents.
    pub contents: Vec<u8>,
}

impl fmt::Debug for FirmwareFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FirmwareFile")
            .field("file_name", &self.file_name)
            .field("len", &self.contents.len())
            .finish()
    }
}

impl FirmwareFile {
    /// A file with a name and contents.
    pub fn new(file_name: impl Into<String>, contents: impl Into<Vec<u8>>) -> FirmwareFile {
        FirmwareFile {
            file_name: file_name.into(),
            contents: contents.into(),
        }
    }
}

fn ttl_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ttl {
        Number(u64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Ttl>::deserialize(d)? {
        None => None,
        Some(Ttl::Number(n)) => u32::try_from(n).ok(),
        Some(Ttl::Float(f)) if f >= 0.0 && f <= u32::MAX as f64 && f.fract() == 0.0 => {
            Some(f as u32)
        }
        Some(Ttl::Float(_)) => None,
        Some(Ttl::Text(s)) => s.trim().parse().ok(),
    })
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

fn required_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected a string or a number, found {other}"
        ))),
    }
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) => match s.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_list_2015_and_local() {
        let list: Vec<Device> = serde_json::from_str(
            r#"[{"id":"53ff6f065072300000000001","name":"plumber_laser","last_app":null,"last_heard":null,"connected":false},
                {"id":"53FF291839887000000000AB","name":"spark_love","last_app":null,"last_heard":"2014-12-15T20:12:51.974Z","connected":true,"requires_deep_update":true},
                {"id":"0123456789abcdef01234567","last_heard":"x","connected":true,"unknown_field":[1,2]}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 3);
        // Ids are read in either case and written back in lowercase, as the cloud sends them.
        assert_eq!(list[1].id.to_string(), "53ff291839887000000000ab");
        assert_eq!(
            serde_json::to_value(&list[0]).unwrap()["id"],
            "53ff6f065072300000000001"
        );
        assert_eq!(list[1].requires_deep_update, Some(true));
        assert_eq!(list[2].name, None);
        assert!(list[2].connected);
    }

    #[test]
    fn device_info_local_cloud() {
        let d: Device = serde_json::from_str(r#"{"id":"53ff6c065075535119511687","name":"core1","last_app":null,"connected":true,"variables":{"temperature":"int32"},"functions":["brew"],"cc3000_patch_version":"1.29"}"#).unwrap();
        assert_eq!(d.variables.unwrap()["temperature"], "int32");
        assert_eq!(d.functions.unwrap(), vec!["brew".to_owned()]);
        assert_eq!(d.cc3000_patch_version.as_deref(), Some("1.29"));
    }

    #[test]
    fn variable_types() {
        let parse = |s: &str| serde_json::from_str::<VariableResult>(s).unwrap().result;
        assert_eq!(parse(r#"{"result":42}"#), VariableValue::Int(42));
        assert_eq!(parse(r#"{"result":-3}"#), VariableValue::Int(-3));
        assert_eq!(parse(r#"{"result":21.5}"#), VariableValue::Double(21.5));
        assert_eq!(
            parse(r#"{"result":"hi"}"#),
            VariableValue::String("hi".into())
        );
        assert_eq!(parse(r#"{"result":true}"#), VariableValue::Bool(true));
        assert!(serde_json::from_str::<VariableResult>(r#"{"result":[1]}"#).is_err());
        assert!(serde_json::from_str::<VariableResult>(r#"{"name":"x"}"#).is_err());
    }

    #[test]
    fn event_ttl_string_or_number() {
        let e = Event::from_sse(
            "a",
            r#"{"data":"d","ttl":"60","published_at":"t","coreid":"c"}"#,
        )
        .unwrap();
        assert_eq!(e.ttl, Some(60));
        let e = Event::from_sse("a", r#"{"data":null,"ttl":60,"coreid":null,"extra":1}"#).unwrap();
        assert_eq!((e.ttl, e.data), (Some(60), None));
        let e = Event::from_sse("a", r#"{"ttl":"forever"}"#).unwrap();
        assert_eq!(e.ttl, None);
        let err = Event::from_sse("a", r#"{"data":5}"#).unwrap_err();
        assert!(err.contains("data"), "{err}");
        assert!(Event::from_sse("a", "{} x").is_err());
        assert!(Event::from_sse("a", "[]").is_err());
    }

    #[test]
    fn publish_form() {
        let form =
            serde_urlencoded::to_string(Publish::new("temp").data("Hello World").ttl(60)).unwrap();
        assert_eq!(form, "name=temp&data=Hello+World&private=true&ttl=60");
        let form = serde_urlencoded::to_string(Publish::new("x").public()).unwrap();
        assert_eq!(form, "name=x&private=false");
    }

    #[test]
    fn update_results() {
        let r: UpdateResult =
            serde_json::from_str(r#"{"ok":true,"firmware_binary_id":12345}"#).unwrap();
        assert_eq!(r.firmware_binary_id.as_deref(), Some("12345"));
        let r: UpdateResult = serde_json::from_str(
            r#"{"id":"53ff6c065075535119511687","connected":true,"signaling":true}"#,
        )
        .unwrap();
        assert_eq!(r.signaling, Some(true));
        assert_eq!(
            r.id.map(|id| id.as_bytes()[..2] == [0x53, 0xff]),
            Some(true)
        );
        // A device id that is not 24 hex digits is a decoding error, not a silent string.
        assert!(serde_json::from_str::<UpdateResult>(r#"{"id":"x"}"#).is_err());
        assert!(serde_json::from_str::<Device>(r#"{"id":"53ff6c06507553511951168"}"#).is_err());
    }

    #[test]
    fn device_refs_and_event_ids() {
        let id: DeviceId = "53ff6c065075535119511687".parse().unwrap();
        assert_eq!(DeviceRef::from(id).to_text(), "53ff6c065075535119511687");
        assert_eq!(DeviceRef::from("core1").to_text(), "core1");
        let e = Event::from_sse("a", r#"{"coreid":"53FF6C065075535119511687"}"#).unwrap();
        assert_eq!(e.device_id(), Some(id));
        let e = Event::from_sse("a", r#"{"coreid":"particle-internal"}"#).unwrap();
        assert_eq!(e.device_id(), None);
    }
}
