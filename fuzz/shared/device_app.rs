//! The application side of a fuzzed device session: takes every event the device queued and
//! answers the calls and reads among them, so the answers' code paths run too. Shared by the
//! device session targets.

use spark_protocol::session::Connection;
use spark_protocol::session::device::{
    DeviceConnection, DeviceEvent, DeviceHandshake, FirmwareSink,
};
use spark_protocol::wire::message::Value;

/// Drains `dev`'s events, answering each function call with 1 and each variable read with "x".
pub fn answer_events<S: FirmwareSink, H: DeviceHandshake>(dev: &mut DeviceConnection<S, H>) {
    while let Some(ev) = dev.poll_event() {
        match ev {
            DeviceEvent::FunctionCall(c) => {
                let _ = dev.function_return(c.call, 1);
            }
            DeviceEvent::VariableRequest(r) => {
                let _ = dev.variable_value(r.request, Value::String(b"x"));
            }
            _ => {}
        }
    }
}
