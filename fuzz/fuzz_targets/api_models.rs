//! spark-api's JSON models and error bodies on arbitrary bytes: every reply shape the client decodes, and
//! `ErrorBody::parse`, never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_api::{
    ClaimResult, CompileResult, CreatedWebhook, Device, ErrorBody, FunctionCallResult, OkResult,
    PingResult, UpdateResult, VariableResult, Webhook,
};

fuzz_target!(|data: &[u8]| {
    let _ = ErrorBody::parse(data);
    let _ = serde_json::from_slice::<Vec<Device>>(data);
    let _ = serde_json::from_slice::<Device>(data);
    let _ = serde_json::from_slice::<FunctionCallResult>(data);
    let _ = serde_json::from_slice::<VariableResult>(data);
    let _ = serde_json::from_slice::<UpdateResult>(data);
    let _ = serde_json::from_slice::<ClaimResult>(data);
    let _ = serde_json::from_slice::<OkResult>(data);
    let _ = serde_json::from_slice::<PingResult>(data);
    let _ = serde_json::from_slice::<Vec<Webhook>>(data);
    let _ = serde_json::from_slice::<CreatedWebhook>(data);
    let _ = serde_json::from_slice::<CompileResult>(data);
});
