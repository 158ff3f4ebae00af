//! `/v1/events`, `/v1/devices/events`, `/v1/devices/:id/events` (server-sent events) and publishing.

use super::*;

/// Event data: at most 63 bytes (2014 Core limit).
pub(super) const MAX_DATA: usize = 63;

/// Largest `ttl` of an event.
pub(super) const MAX_TTL: u32 = 16_777_215;

pub(super) fn subscribe(cloud: &Cloud, user: &User, scope: Scope, prefix: &[&str]) -> Reply {
    let filter = Filter {
        user: user.name.clone(),
        scope,
        prefix: prefix.join("/"),
    };
    let credential = Credential {
        token: user.token_digest.clone(),
        user: user.name.clone(),
        expires_at: user.expires_at,
        issued_at: user.issued_at,
    };
    let body = cloud
        .bus
        .subscribe_with(filter, credential)
        .into_body()
        .boxed();
    let mut r = reply(StatusCode::OK, body, "text/event-stream");
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

pub(super) fn event_name_error(name: &str) -> Option<&'static str> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Some("The event name must be 1 to 63 printable ASCII characters");
    }
    if name.len() >= 5 && name[..5].eq_ignore_ascii_case("spark") {
        return Some("Event names starting with 'spark' are reserved");
    }
    None
}

pub(super) async fn publish(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let name = req.field("name").unwrap_or_default();
    if let Some(why) = event_name_error(name) {
        return Err(ok_false(StatusCode::BAD_REQUEST, why));
    }
    let data = req.field("data");
    if data.is_some_and(|d| d.len() > MAX_DATA) {
        return Err(ok_false(
            StatusCode::BAD_REQUEST,
            "The event data is limited to 63 bytes",
        ));
    }
    let public = !matches!(req.field("private"), Some(p) if !p.is_empty() && p != "false");
    let ttl = match req.field("ttl").map(str::parse::<u32>) {
        None => 60,
        Some(Ok(t)) if t <= MAX_TTL => t,
        _ => {
            return Err(ok_false(
                StatusCode::BAD_REQUEST,
                "ttl must be 0 to 16777215",
            ));
        }
    };
    let from = Publisher::user(&user.id, &user.name);
    let event = Event::new(name, data, ttl, public, SystemTime::now(), from);
    cloud.bus.publish(&event);
    let delivered = DeviceEvent {
        name: name.to_owned(),
        data: data.map(str::to_owned),
        ttl,
        public,
    };
    let devices = cloud.store.devices().await.map_err(|_| storage_failed())?;
    for device in devices {
        let reaches = if public {
            true
        } else {
            device.owner.as_deref() == Some(user.name.as_str())
        };
        if reaches
            && let Ok(id) = hub_id(&device)
            && cloud.hub.is_connected(id)
        {
            // A device that fails to take the event does not fail the publish.
            let _ = with_timeout(cloud.hub.deliver(id, &delivered)).await;
        }
    }
    Ok(done())
}
