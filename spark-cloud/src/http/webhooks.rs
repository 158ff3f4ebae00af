//! `/v1/webhooks`: create, list, show and delete the caller's webhooks. Another user's hook answers `404`, as an
//! unknown one.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hyper::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::{Cloud, Reply, Req, User, bearer, done, json_reply, ok_false, resolve, storage_failed};
use crate::encoding::{hex, iso8601};
use crate::webhooks::{BasicAuth, WebhookError, WebhookRecord, check_url};

/// A hook as the API shows it: everything but its credentials' password and its owner.
#[derive(Serialize)]
struct HookView<'a> {
    id: &'a str,
    event: &'a str,
    url: &'a str,
    #[serde(rename = "requestType")]
    request_type: &'a str,
    #[serde(rename = "deviceID", skip_serializing_if = "Option::is_none")]
    device_id: Option<&'a str>,
    mydevices: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    headers: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    form: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a BTreeMap<String, String>>,
    #[serde(rename = "noDefaults")]
    no_defaults: bool,
    created_at: &'a str,
}

impl<'a> From<&'a WebhookRecord> for HookView<'a> {
    fn from(h: &'a WebhookRecord) -> Self {
        HookView {
            id: &h.id,
            event: &h.event,
            url: &h.url,
            request_type: &h.request_type,
            device_id: h.device_id.as_deref(),
            mydevices: h.mydevices,
            headers: &h.headers,
            json: h.json.as_ref(),
            form: h.form.as_ref(),
            query: h.query.as_ref(),
            no_defaults: h.no_defaults,
            created_at: &h.created_at,
        }
    }
}

/// The answer to a creation.
#[derive(Serialize)]
struct Created<'a> {
    ok: bool,
    id: &'a str,
    url: &'a str,
    event: &'a str,
    created_at: &'a str,
}

fn invalid(why: &str) -> Reply {
    ok_false(StatusCode::BAD_REQUEST, why)
}

/// A field that holds a JSON object of strings (sent as an object in a JSON body, or as JSON text in a form).
fn string_map(req: &Req, name: &str) -> Result<Option<BTreeMap<String, String>>, Reply> {
    let Some(text) = req.field(name) else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|_| invalid(&format!("{name} must be a JSON object")))?;
    let Value::Object(map) = value else {
        return Err(invalid(&format!("{name} must be a JSON object")));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            Value::Number(_) | Value::Bool(_) => Ok((k, v.to_string())),
            _ => Err(invalid(&format!("{name}.{k} must be a string"))),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

fn flag(req: &Req, name: &str, default: bool) -> Result<bool, Reply> {
    match req.field(name) {
        None => Ok(default),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(_) => Err(invalid(&format!("{name} must be true or false"))),
    }
}

/// Headers a hook may not set: the request's framing and target are the cloud's.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
];

fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), Reply> {
    for (k, v) in headers {
        if hyper::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || hyper::header::HeaderValue::from_str(v).is_err()
        {
            return Err(invalid(&format!("headers.{k} is not a valid header")));
        }
        if RESERVED_HEADERS.iter().any(|r| k.eq_ignore_ascii_case(r)) {
            return Err(invalid(&format!("headers.{k} is set by the cloud")));
        }
    }
    Ok(())
}

/// `POST /v1/webhooks`.
pub(super) async fn create(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let event = req.field("event").unwrap_or_default();
    if event.is_empty()
        || event.len() > 63
        || !event.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(invalid("event must be 1 to 63 printable ASCII characters"));
    }
    if event.len() >= 5 && event[..5].eq_ignore_ascii_case("spark") {
        return Err(invalid(
            "the cloud's own spark/ events do not fire webhooks",
        ));
    }
    let url = req.field("url").unwrap_or_default();
    check_url(url).map_err(|why| invalid(&why))?;
    let request_type = req
        .field("requestType")
        .unwrap_or("POST")
        .to_ascii_uppercase();
    if !["GET", "POST", "PUT", "DELETE"].contains(&request_type.as_str()) {
        return Err(invalid("requestType must be GET, POST, PUT or DELETE"));
    }
    let device_id = match req.field("deviceID").or_else(|| req.field("deviceid")) {
        None | Some("") => None,
        Some(d) => Some(device_of(cloud, &user, d).await?),
    };
    let headers = string_map(req, "headers")?.unwrap_or_default();
    check_headers(&headers)?;
    let json = match req.field("json") {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<Value>(text)
                .ok()
                .filter(Value::is_object)
                .ok_or_else(|| invalid("json must be a JSON object"))?,
        ),
    };
    let form = string_map(req, "form")?;
    if json.is_some() && form.is_some() {
        return Err(invalid("json and form cannot both be given"));
    }
    let query = string_map(req, "query")?;
    let auth = string_map(req, "auth")?.map(|mut a| BasicAuth {
        username: a.remove("username").unwrap_or_default(),
        password: a.remove("password").unwrap_or_default(),
    });
    let mut id = [0u8; 12];
    rand_core::Rng::fill_bytes(&mut crate::system_rng(), &mut id);
    let hook = WebhookRecord {
        id: hex(&id),
        owner: user.name.clone(),
        event: event.to_owned(),
        url: url.to_owned(),
        request_type,
        device_id,
        mydevices: flag(req, "mydevices", true)?,
        headers,
        json,
        form,
        query,
        auth,
        no_defaults: flag(req, "noDefaults", false)?,
        created_at: iso8601(SystemTime::now()),
    };
    cloud.webhooks().add(hook.clone()).map_err(|e| match e {
        WebhookError::Storage => storage_failed(),
        other => invalid(&other.to_string()),
    })?;
    Ok(json_reply(
        StatusCode::OK,
        &Created {
            ok: true,
            id: &hook.id,
            url: &hook.url,
            event: &hook.event,
            created_at: &hook.created_at,
        },
    ))
}

/// A device filter names one of the caller's devices (by id or name); it is stored as the id.
async fn device_of(cloud: &Cloud, user: &User, id_or_name: &str) -> Result<String, Reply> {
    resolve(cloud, user, id_or_name)
        .await
        .map(|d| d.id)
        .map_err(|_| invalid("deviceID is not one of your devices"))
}

/// `GET /v1/webhooks`.
pub(super) async fn list(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let hooks = cloud.webhooks().list(&user.name);
    let views: Vec<HookView<'_>> = hooks.iter().map(HookView::from).collect();
    Ok(json_reply(StatusCode::OK, &views))
}

fn not_found() -> Reply {
    ok_false(StatusCode::NOT_FOUND, "Webhook not found.")
}

/// `GET /v1/webhooks/:id`.
pub(super) async fn show(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let hook = cloud.webhooks().get(&user.name, id).ok_or_else(not_found)?;
    Ok(json_reply(StatusCode::OK, &HookView::from(&hook)))
}

/// `DELETE /v1/webhooks/:id`.
pub(super) async fn delete(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    match cloud.webhooks().remove(&user.name, id) {
        Ok(()) => Ok(done()),
        Err(WebhookError::NotFound) => Err(not_found()),
        Err(_) => Err(storage_failed()),
    }
}
