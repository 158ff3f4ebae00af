//! `spark device add|remove|rename` and `spark webhook create|list|delete`: the account's devices and webhooks.

use clap::Subcommand;
use serde::Serialize;
use spark_api::NewWebhook;

use crate::Outcome;
use crate::cloud::{Settings, api_failure, client};
use crate::output::Context;

/// `spark device ...`
#[derive(Subcommand, Debug)]
pub(crate) enum DeviceCommand {
    /// Claim a device for your account (`POST /v1/devices`).
    Add {
        /// The device id.
        device: String,
    },
    /// Release a device from your account (`DELETE /v1/devices/<id>`).
    Remove {
        /// Device id or name.
        device: String,
    },
    /// Give a device a new name.
    Rename {
        /// Device id or name.
        device: String,
        /// The new name.
        name: String,
    },
}

/// `spark webhook ...`
#[derive(Subcommand, Debug)]
pub(crate) enum WebhookCommand {
    /// Send an HTTP request to a URL whenever an event starting with a prefix is published.
    Create {
        /// The event-name prefix.
        event: String,
        /// The URL to call.
        url: String,
        /// Only events from this device.
        #[arg(long)]
        device: Option<String>,
        /// `GET`, `POST` (the default), `PUT` or `DELETE`.
        #[arg(long, value_name = "METHOD")]
        request_type: Option<String>,
    },
    /// The account's webhooks.
    List,
    /// Delete a webhook.
    Delete {
        /// The webhook id.
        id: String,
    },
}

#[derive(Serialize)]
struct DeviceReport<'a> {
    device: &'a str,
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// `spark device ...`
pub(crate) async fn device(ctx: &Context, settings: &Settings, command: DeviceCommand) -> Outcome {
    let api = client(settings)?;
    let (device, action, name, text) = match &command {
        DeviceCommand::Add { device } => {
            api.claim_device(device).await.map_err(api_failure)?;
            (
                device,
                "added",
                None,
                format!("Added {device} to your account"),
            )
        }
        DeviceCommand::Remove { device } => {
            api.release_device(device).await.map_err(api_failure)?;
            let text = format!("Removed {device} from your account");
            (device, "removed", None, text)
        }
        DeviceCommand::Rename { device, name } => {
            api.rename_device(device, name).await.map_err(api_failure)?;
            let text = format!("Renamed {device} to {name}");
            (device, "renamed", Some(name.as_str()), text)
        }
    };
    let report = DeviceReport {
        device,
        action,
        name,
    };
    ctx.report(&report, |_| text)
}

/// `spark webhook ...`
pub(crate) async fn webhook(
    ctx: &Context,
    settings: &Settings,
    command: WebhookCommand,
) -> Outcome {
    let api = client(settings)?;
    match command {
        WebhookCommand::Create {
            event,
            url,
            device,
            request_type,
        } => {
            let mut hook = NewWebhook::new(event, url);
            hook.deviceid = device;
            hook.request_type = request_type;
            let created = api.create_webhook(&hook).await.map_err(api_failure)?;
            ctx.report(&created, |c| {
                format!(
                    "Created webhook {} on \"{}\" to {}",
                    c.id, hook.event, hook.url
                )
            })?;
        }
        WebhookCommand::List => {
            let hooks = api.list_webhooks().await.map_err(api_failure)?;
            if ctx.json {
                return ctx.print_json(&hooks);
            }
            if hooks.is_empty() {
                crate::out!("No webhooks.");
            }
            for h in &hooks {
                crate::out!(
                    "{}: {} \"{}\" -> {}",
                    h.id,
                    h.request_type.as_deref().unwrap_or("POST"),
                    h.event.as_deref().unwrap_or(""),
                    h.url.as_deref().unwrap_or("")
                );
            }
        }
        WebhookCommand::Delete { id } => {
            api.delete_webhook(&id).await.map_err(api_failure)?;
            if ctx.json {
                return ctx.print_json(&serde_json::json!({ "deleted": id }));
            }
            crate::out!("Deleted webhook {id}");
        }
    }
    Ok(())
}
