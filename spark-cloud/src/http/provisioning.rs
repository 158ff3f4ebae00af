//! `POST /v1/provisioning/:id`: a device's public key, which makes the caller its owner.

use super::*;

pub(super) async fn provision(cloud: &Cloud, req: &Req, path_id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req)?;
    let bad = |e: &str| json_reply(StatusCode::BAD_REQUEST, &replies::ErrorOnly { error: e });
    let id = req
        .field("deviceID")
        .unwrap_or(path_id)
        .to_ascii_lowercase();
    if id.is_empty() {
        return Err(bad("No deviceID provided"));
    }
    if !is_device_id(&id) {
        return Err(bad("Invalid deviceID"));
    }
    let pem = req
        .field("publicKey")
        .ok_or_else(|| bad("No key provided"))?;
    let key = RsaPublicKey::from_pem(pem).map_err(|e| bad(&format!("Key error {e}")))?;
    // A known device's key is its owner's to replace; one without an owner is no one's (an administrator assigns
    // it, or the device claims itself with a claim code).
    if let Some(existing) = cloud.state.device(&id)
        && existing.owner.as_deref() != Some(user.name.as_str())
    {
        return Err(ok_false(StatusCode::FORBIDDEN, "Permission Denied"));
    }
    cloud
        .state
        .provision_durable(&id, &key, Some(&user.name))
        .await
        .map_err(|_| storage_failed())?;
    Ok(json_reply(StatusCode::OK, "Success!"))
}
