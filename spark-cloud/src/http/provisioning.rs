//! `POST /v1/provisioning/:id`: a device's public key, which makes the caller its owner.

use super::*;

pub(super) async fn provision(cloud: &Cloud, req: &Req, path_id: &str) -> Result<Reply, Reply> {
    let user = bearer(cloud, req).await?;
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
    // A P-256 key is a UDP device's (Electron and later); anything else must be a Core's RSA key.
    let udp_key = crate::udp::keys::public_key_from_pem(pem).ok();
    let key = match udp_key {
        Some(_) => None,
        None => Some(RsaPublicKey::from_pem(pem).map_err(|e| bad(&format!("Key error {e}")))?),
    };
    // A known device's key is its owner's to replace; one without an owner is no one's (an administrator assigns
    // it, or the device claims itself with a claim code).
    if let Some(existing) = cloud
        .store
        .device(&id)
        .await
        .map_err(|_| storage_failed())?
        && existing.owner.as_deref() != Some(user.name.as_str())
    {
        return Err(ok_false(StatusCode::FORBIDDEN, "Permission Denied"));
    }
    // The store decides again, atomically: a concurrent change of owner (on any node) is refused there.
    let refused = |e: StoreError| match e {
        StoreError::Owned => ok_false(StatusCode::FORBIDDEN, "Permission Denied"),
        StoreError::KeyTaken => bad("Key error: the key is another device's"),
        _ => storage_failed(),
    };
    match (key, udp_key) {
        (Some(key), _) => {
            cloud
                .store
                .provision(&id, &key, Some(&user.name))
                .await
                .map_err(refused)?;
        }
        (None, Some(key)) => {
            cloud
                .store
                .provision_udp(&id, &key, Some(&user.name))
                .await
                .map_err(refused)?;
        }
        (None, None) => return Err(bad("No key provided")),
    }
    cloud.owner_changed(&id);
    Ok(json_reply(StatusCode::OK, "Success!"))
}
