//! Over-the-air flashing (`PUT /v1/devices/:id` with a binary) and its `spark/flash/...` events.

use super::*;

/// Publishes the device's `spark/flash/progress` events (`<sent>/<total>`), at most one per 10 %.
pub(super) struct ProgressEvents {
    cloud: Arc<Cloud>,
    device: String,
    last_decile: std::sync::Mutex<Option<usize>>,
}

impl FlashProgress for ProgressEvents {
    fn progress(&self, sent: usize, total: usize) {
        let decile = sent.saturating_mul(10).checked_div(total).unwrap_or(10);
        {
            let mut last = lock(&self.last_decile);
            if *last == Some(decile) {
                return;
            }
            *last = Some(decile);
        }
        let data = format!("{sent}/{total}");
        self.cloud.publish_device_event(
            &self.device,
            "spark/flash/progress",
            Some(&data),
            60,
            false,
        );
    }
}

pub(super) async fn flash(
    cloud: &Arc<Cloud>,
    device: &DeviceRecord,
    image: Bytes,
    file_name: String,
) -> Result<Reply, Reply> {
    if image.is_empty() {
        return Err(ok_false_errors(
            StatusCode::BAD_REQUEST,
            "The binary is empty",
        ));
    }
    let Some(target) = hub_id(device).ok().filter(|&id| cloud.hub.is_connected(id)) else {
        return Err(ok_false_errors(
            StatusCode::NOT_FOUND,
            "Device is not connected.",
        ));
    };
    // One running update per device, across every node of a shared store.
    let job = match cloud.store.start_flash(&device.id, cloud.node()).await {
        Ok(job) => job,
        Err(StoreError::FlashInProgress) => {
            return Err(ok_false_errors(
                StatusCode::BAD_REQUEST,
                "An update of this device is already in progress",
            ));
        }
        Err(_) => return Err(storage_failed()),
    };
    let cloud = Arc::clone(cloud);
    let id = device.id.clone();
    tokio::spawn(async move {
        let progress = Arc::new(ProgressEvents {
            cloud: Arc::clone(&cloud),
            device: id.clone(),
            last_decile: std::sync::Mutex::new(None),
        });
        cloud.publish_device_event(
            &id,
            "spark/flash/status",
            Some(&format!("started {file_name}")),
            60,
            false,
        );
        let result = cloud.hub.flash(target, image, progress).await;
        let outcome = match result {
            Ok(()) => {
                cloud.touch(&id, |s| s.last_app = Some(file_name.clone()));
                format!("success {file_name}")
            }
            Err(e) => format!("failed {file_name}: {e}"),
        };
        if let Err(e) = cloud.store.finish_flash(job.id, &outcome).await {
            eprintln!(
                "spark-cloud: flash job {} of {id} not recorded as ended: {e}",
                job.id
            );
        }
        cloud.publish_device_event(&id, "spark/flash/status", Some(&outcome), 60, false);
    });
    Ok(json_reply(
        StatusCode::OK,
        &replies::UpdateStarted {
            id: &device.id,
            status: "Update started",
        },
    ))
}
