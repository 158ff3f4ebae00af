//! `POST /v1/devices` (claim by id, for a device already owned) and `POST /v1/device_claims` (claim codes).

use super::*;

/// `POST /v1/devices` with `id`: a claim by id alone is no proof of holding the device, so it succeeds only for a
/// device the user already owns. A device is claimed with a claim code it presents (`POST /v1/device_claims`).
pub(super) async fn claim(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let id = req.field("id").unwrap_or_default().to_ascii_lowercase();
    if !is_device_id(&id) {
        return Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "Invalid device id",
        ));
    }
    let stored = cloud
        .store
        .device(&id)
        .await
        .map_err(|_| storage_failed())?;
    match stored.and_then(|d| d.owner) {
        Some(owner) if owner == user.name => Ok(json_reply(
            StatusCode::OK,
            &replies::Claimed {
                claimed: true,
                device_id: &id,
                ok: true,
            },
        )),
        Some(_) => Err(ok_false_errors(
            StatusCode::FORBIDDEN,
            "That device belongs to someone else.",
        )),
        None => Err(ok_false_errors(
            StatusCode::NOT_FOUND,
            "Device not found. A device is claimed by presenting a claim code from POST /v1/device_claims.",
        )),
    }
}

/// `POST /v1/device_claims`: a claim code for the user, and the devices they own.
pub(super) async fn create_claim_code(cloud: &Cloud, req: &Req) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
    let code = cloud
        .create_claim_code_async(&user.name)
        .await
        .map_err(|_| storage_failed())?;
    let owned: Vec<String> = cloud
        .store
        .devices()
        .await
        .map_err(|_| storage_failed())?
        .into_iter()
        .filter(|d| visible(&user, d))
        .map(|d| d.id)
        .collect();
    Ok(json_reply(
        StatusCode::OK,
        &replies::ClaimCode {
            claim_code: &code,
            device_ids: owned,
        },
    ))
}
