//! `/v1/devices` and `/v1/devices/:id...`: listing, describing, calling, reading, renaming, signalling and
//! releasing the caller's devices.

use super::*;

/// The device `id` (an id or one of the user's device names) if the user owns it. A device without an owner is
/// reachable by no one and answers as an unknown one; another user's device (by id) is `403`.
pub(super) async fn resolve(cloud: &Cloud, user: &User, id: &str) -> Result<DeviceRecord, Reply> {
    let device = cloud
        .find_device(id, &user.name)
        .await
        .map_err(|_| storage_failed())?
        .filter(|d| d.owner.is_some())
        .ok_or_else(|| ok_false(StatusCode::NOT_FOUND, "Device not found."))?;
    if device.owner.as_deref() == Some(user.name.as_str()) {
        Ok(device)
    } else {
        Err(ok_false(StatusCode::FORBIDDEN, "Permission Denied"))
    }
}

/// The hub's key for a stored device: its id. Ids are checked when they are stored, so one that does not parse
/// belongs to no device that could be connected.
pub(super) fn hub_id(device: &DeviceRecord) -> Result<DeviceId, HubError> {
    device.id.parse().map_err(|_| HubError::NotConnected)
}

/// Whether a stored device is connected now.
pub(super) fn is_connected(cloud: &Cloud, device: &DeviceRecord) -> bool {
    hub_id(device).is_ok_and(|id| cloud.hub.is_connected(id))
}

pub(super) fn visible(user: &User, device: &DeviceRecord) -> bool {
    device.owner.as_deref() == Some(user.name.as_str())
}

/// Whether a reported CC3000 service-pack version predates 1.28, the deep update's.
pub(super) fn requires_deep_update(version: &str) -> Option<bool> {
    let (major, minor) = version.trim().split_once('.')?;
    let major: u32 = major.parse().ok()?;
    let minor: u32 = minor.parse().ok()?;
    Some((major, minor) < (1, 28))
}

/// A device as listed: what is stored and what the cloud knows of it now.
pub(super) fn device_view(cloud: &Cloud, device: &DeviceRecord) -> replies::DeviceView {
    let status = cloud.device_status(&device.id);
    replies::DeviceView {
        requires_deep_update: status
            .cc3000_patch_version
            .as_deref()
            .and_then(requires_deep_update),
        cc3000_patch_version: status.cc3000_patch_version,
        connected: is_connected(cloud, device),
        functions: None,
        id: device.id.clone(),
        last_app: status.last_app,
        last_heard: status.last_heard.map(iso8601),
        name: device.name.clone(),
        platform_id: status.platform_id,
        product_firmware_version: status.product_firmware_version,
        product_id: status.product_id,
        server_key: cloud
            .key_use(&device.id)
            .map(crate::rotation::KeyUse::as_str),
        variables: None,
    }
}

pub(super) async fn list_devices(cloud: &Cloud, user: &User) -> Reply {
    let Ok(devices) = cloud.store.devices().await else {
        return storage_failed();
    };
    let list: Vec<replies::DeviceView> = devices
        .iter()
        .filter(|d| visible(user, d))
        .map(|d| device_view(cloud, d))
        .collect();
    json_reply(StatusCode::OK, &list)
}

pub(super) fn hub_error(e: HubError, what: &str) -> Reply {
    match e {
        HubError::NotConnected => ok_false(StatusCode::NOT_FOUND, "Device is not connected."),
        HubError::UnknownFunction => ok_false(StatusCode::NOT_FOUND, "Function not found"),
        HubError::UnknownVariable => ok_false(StatusCode::NOT_FOUND, "Variable not found"),
        HubError::TimedOut => json_reply(
            StatusCode::REQUEST_TIMEOUT,
            &replies::ErrorOnly {
                error: "Timed out.",
            },
        ),
        HubError::Busy(why) | HubError::Device(why) => {
            ok_false(StatusCode::BAD_REQUEST, &format!("{what}: {why}"))
        }
    }
}

pub(super) async fn with_timeout<T>(
    f: impl Future<Output = Result<T, HubError>>,
) -> Result<T, HubError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .unwrap_or(Err(HubError::TimedOut))
}

pub(super) async fn device_info(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let device = resolve(cloud, &user, id).await?;
    let mut view = device_view(cloud, &device);
    let description = if let Ok(id) = hub_id(&device)
        && cloud.hub.is_connected(id)
    {
        with_timeout(cloud.hub.describe(id)).await.ok()
    } else {
        None
    };
    // Both are `null` while the device cannot say.
    view.variables = Some(description.as_ref().map(|d| {
        d.variables
            .iter()
            .map(|(k, t)| (k.clone(), t.name()))
            .collect()
    }));
    view.functions = Some(description.map(|d| d.functions));
    Ok(json_reply(StatusCode::OK, &view))
}

pub(super) async fn call_function(
    cloud: &Cloud,
    req: &Req,
    id: &str,
    function: &str,
) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let device = resolve(cloud, &user, id).await?;
    // `arg` (today) or `args` (2014); otherwise the first field, as the original forwarded it.
    let argument = req
        .field("arg")
        .or_else(|| req.field("args"))
        .or_else(|| {
            req.form
                .iter()
                .find(|(k, _)| k != "access_token")
                .map(|(_, v)| v.as_str())
        })
        .unwrap_or("");
    if argument.chars().count() > MAX_NAME {
        return Err(ok_false(
            StatusCode::BAD_REQUEST,
            "Argument too long (at most 63 characters)",
        ));
    }
    let value = with_timeout(async { cloud.hub.call(hub_id(&device)?, function, argument).await })
        .await
        .map_err(|e| hub_error(e, "Function call failed"))?;
    let status = cloud.device_status(&device.id);
    Ok(json_reply(
        StatusCode::OK,
        &replies::FunctionResult {
            connected: true,
            id: device.id,
            last_app: status.last_app,
            name: device.name,
            return_value: value,
        },
    ))
}

pub(super) async fn get_variable(
    cloud: &Cloud,
    req: &Req,
    id: &str,
    variable: &str,
) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let device = resolve(cloud, &user, id).await?;
    let value = with_timeout(async { cloud.hub.get(hub_id(&device)?, variable).await })
        .await
        .map_err(|e| hub_error(e, "Variable read failed"))?;
    if req.query("format") == Some("raw") {
        return Ok(reply(
            StatusCode::OK,
            full(value.to_string()),
            "text/plain; charset=utf-8",
        ));
    }
    let status = cloud.device_status(&device.id);
    Ok(json_reply(
        StatusCode::OK,
        &replies::VariableResult {
            cmd: "VarReturn",
            core_info: replies::CoreInfo {
                connected: true,
                device_id: device.id,
                last_app: status.last_app,
                last_heard: status.last_heard.map(iso8601),
                name: device.name,
            },
            name: variable,
            result: serde_json::to_value(&value).unwrap_or_default(),
        },
    ))
}

pub(super) async fn release(cloud: &Cloud, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let device = resolve(cloud, &user, id).await?;
    cloud
        .store
        .release(&device.id, &user.name)
        .await
        .map_err(|e| match e {
            StoreError::Owned => ok_false(StatusCode::FORBIDDEN, "Permission Denied"),
            _ => storage_failed(),
        })?;
    cloud.owner_changed(&device.id);
    Ok(done())
}

pub(super) async fn update_device(cloud: &Arc<Cloud>, req: &Req, id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let device = resolve(cloud, &user, id).await?;
    if let Some(file) = req
        .parts
        .iter()
        .find(|p| p.file_name.is_some() || p.name == "file")
    {
        if req.field("file_type") != Some("binary") {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "The local cloud does not compile sources: send a binary with file_type=binary",
            ));
        }
        let name = file
            .file_name
            .clone()
            .unwrap_or_else(|| "firmware.bin".into());
        return flash(cloud, &device, Bytes::from(file.data.clone()), name).await;
    }
    let mut updated = replies::Updated::default();
    if let Some(name) = req.field("name") {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(ok_false_errors(StatusCode::BAD_REQUEST, "Invalid name"));
        }
        if is_device_id(name) {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "A name cannot look like a device id",
            ));
        }
        let taken = cloud
            .store
            .devices()
            .await
            .map_err(|_| storage_failed())?
            .iter()
            .any(|d| d.id != device.id && d.name.as_deref() == Some(name) && visible(&user, d));
        if taken {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "Name already taken",
            ));
        }
        cloud
            .store
            .rename(&device.id, &user.name, name)
            .await
            .map_err(|e| match e {
                StoreError::Owned => ok_false(StatusCode::FORBIDDEN, "Permission Denied"),
                _ => storage_failed(),
            })?;
        // The record changed: forgotten here at once and told to the other nodes (the owner's word covers the
        // whole record).
        cloud.owner_changed(&device.id);
        updated.ok = Some(true);
        updated.name = Some(name);
    }
    if let Some(signal) = req.field("signal") {
        let on = match signal {
            "1" | "true" => true,
            "0" | "false" => false,
            _ => {
                return Err(ok_false_errors(
                    StatusCode::BAD_REQUEST,
                    "signal must be 1 or 0",
                ));
            }
        };
        with_timeout(async { cloud.hub.signal(hub_id(&device)?, on).await })
            .await
            .map_err(|e| hub_error(e, "Signal failed"))?;
        updated.id = Some(&device.id);
        updated.connected = Some(true);
        updated.signaling = Some(on);
    }
    if updated.ok.is_none() && updated.signaling.is_none() {
        return Err(ok_false_errors(StatusCode::BAD_REQUEST, "Nothing to do?"));
    }
    Ok(json_reply(StatusCode::OK, &updated))
}
