//! `spark function list`, `spark variable list|monitor`: what the devices expose to the cloud, as particle-cli
//! shows it.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;
use spark_api::{Device, VariableValue};

use crate::cloud::{Settings, api_failure, client};
use crate::output::Context;
use crate::{Failure, Outcome};

/// `spark function ...`
#[derive(Subcommand, Debug)]
pub(crate) enum FunctionCommand {
    /// The functions of every online device.
    List,
}

/// `spark variable ...`
#[derive(Subcommand, Debug)]
pub(crate) enum VariableCommand {
    /// The variables of every online device, with their types.
    List,
    /// Read a variable again and again, one line each, until Ctrl-C (or `--count` reads).
    Monitor(MonitorArgs),
}

/// `spark variable monitor`.
#[derive(Args, Debug)]
pub(crate) struct MonitorArgs {
    /// Device id or name.
    device: String,
    /// Variable name.
    variable: String,
    /// Milliseconds between reads.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    delay: u64,
    /// Stop after this many reads (for scripts).
    #[arg(long)]
    count: Option<u64>,
}

/// The online devices with their functions and variables (the list does not carry them: each is asked).
async fn online_devices(settings: &Settings) -> Result<Vec<Device>, Failure> {
    let api = client(settings)?;
    let devices = api.list_devices().await.map_err(api_failure)?;
    let mut detailed = Vec::new();
    for d in devices.into_iter().filter(|d| d.connected) {
        detailed.push(api.device(&d.id).await.map_err(api_failure)?);
    }
    Ok(detailed)
}

fn heading(d: &Device) -> String {
    format!("{} ({})", d.name.as_deref().unwrap_or("<no name>"), d.id)
}

#[derive(Serialize)]
struct FunctionRow {
    device: String,
    name: Option<String>,
    functions: Vec<String>,
}

/// `spark function list`.
pub(crate) async fn function(ctx: &Context, settings: &Settings, _: FunctionCommand) -> Outcome {
    let rows: Vec<FunctionRow> = online_devices(settings)
        .await?
        .into_iter()
        .map(|d| FunctionRow {
            functions: d.functions.clone().unwrap_or_default(),
            name: d.name.clone(),
            device: d.id.to_string(),
        })
        .collect();
    if ctx.json {
        return ctx.print_json(&rows);
    }
    if rows.is_empty() {
        crate::out!("No online devices.");
    }
    for row in &rows {
        crate::out!(
            "{} has {} functions",
            display(row.name.as_deref(), &row.device),
            row.functions.len()
        );
        for f in &row.functions {
            crate::out!("  int {f}(String args)");
        }
    }
    Ok(())
}

fn display(name: Option<&str>, id: &str) -> String {
    format!("{} ({id})", name.unwrap_or("<no name>"))
}

#[derive(Serialize)]
struct VariableRow {
    device: String,
    name: Option<String>,
    variables: std::collections::BTreeMap<String, String>,
}

/// `spark variable list|monitor`.
pub(crate) async fn variable(
    ctx: &Context,
    settings: &Settings,
    command: VariableCommand,
) -> Outcome {
    match command {
        VariableCommand::List => variable_list(ctx, settings).await,
        VariableCommand::Monitor(args) => monitor(ctx, settings, args).await,
    }
}

async fn variable_list(ctx: &Context, settings: &Settings) -> Outcome {
    let devices = online_devices(settings).await?;
    let rows: Vec<VariableRow> = devices
        .iter()
        .map(|d| VariableRow {
            device: d.id.to_string(),
            name: d.name.clone(),
            variables: d
                .variables
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
        .collect();
    if ctx.json {
        return ctx.print_json(&rows);
    }
    if rows.is_empty() {
        crate::out!("No online devices.");
    }
    for (d, row) in devices.iter().zip(&rows) {
        crate::out!("{} has {} variables", heading(d), row.variables.len());
        for (name, ty) in &row.variables {
            crate::out!("  {name} ({ty})");
        }
    }
    Ok(())
}

fn value_text(v: &VariableValue) -> String {
    v.to_string()
}

async fn monitor(ctx: &Context, settings: &Settings, args: MonitorArgs) -> Outcome {
    let api = client(settings)?;
    let delay = Duration::from_millis(args.delay);
    let mut reads = 0u64;
    loop {
        let read = api
            .variable(&args.device, &args.variable)
            .await
            .map_err(api_failure)?;
        if ctx.json {
            // One JSON object a line, as `subscribe` prints events.
            crate::out!("{}", serde_json::to_string(&read)?);
        } else {
            crate::out!("{}", value_text(&read.result));
        }
        reads += 1;
        if args.count.is_some_and(|c| reads >= c) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
