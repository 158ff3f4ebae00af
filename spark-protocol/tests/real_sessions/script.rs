//! What each side's application does in the end-to-end runs, as reactions to events, so the
//! blocking and the tokio drivers run the same conversation.

use std::time::Duration;

use spark_protocol::session::Instant;
use spark_protocol::session::cloud::{
    CloudEvent, OtaEvent, OtaOptions, OutgoingEvent, VariableValue,
};
use spark_protocol::session::device::{DeviceEvent, Scope};
use spark_protocol::wire::describe::VarType;
use spark_protocol::wire::message::{Value, Visibility};

use super::{Cloud, Device, image};

pub const OTA_LEN: usize = 100 * 1024;

/// The cloud's side: call, read, wait for the device's event, send one back, then OTA in
/// stop-and-wait and in fast mode. `done` once both transfers succeeded.
#[derive(Debug, Default)]
pub struct CloudScript {
    pub returned: Option<i32>,
    pub read: Option<VariableValue>,
    pub published: Option<(Vec<u8>, Option<Vec<u8>>)>,
    pub ota_times: Vec<(bool, Duration)>,
    ota_started: Option<std::time::Instant>,
    pub done: bool,
}

impl CloudScript {
    pub fn on_event(&mut self, cloud: &mut Cloud, now: Instant, event: CloudEvent) {
        match event {
            CloudEvent::Connected(_) => {
                let _ = cloud.call_function(now, b"led", b"on").unwrap();
            }
            CloudEvent::FunctionReturned { result, .. } => {
                self.returned = Some(result.unwrap());
                let _ = cloud.read_variable(now, b"temp", VarType::Double).unwrap();
            }
            CloudEvent::VariableRead { result, .. } => {
                self.read = Some(result.unwrap());
            }
            CloudEvent::Published(e) => {
                self.published = Some((e.name, e.data));
                let out = OutgoingEvent {
                    name: b"alarm/fire",
                    data: Some(b"kitchen"),
                    ttl: 60,
                    private: true,
                };
                cloud.deliver_event(&out).unwrap();
                self.ota_started = Some(std::time::Instant::now());
                let _ = cloud
                    .start_ota(now, image(OTA_LEN), OtaOptions::default())
                    .unwrap();
            }
            CloudEvent::Ota {
                event: OtaEvent::Finished(result),
                ..
            } => {
                let report = result.unwrap();
                assert_eq!(report.image_len, OTA_LEN);
                let took = self.ota_started.take().unwrap().elapsed();
                self.ota_times.push((report.fast, took));
                if report.fast {
                    self.done = true;
                } else {
                    self.ota_started = Some(std::time::Instant::now());
                    let _ = cloud
                        .start_ota(now, image(OTA_LEN), OtaOptions::fast())
                        .unwrap();
                }
            }
            _ => {}
        }
    }
}

/// The device's side: answers the call and the read, publishes once connected, records the
/// event it gets and checks each committed image byte for byte.
#[derive(Debug, Default)]
pub struct DeviceScript {
    pub received: Option<(Vec<u8>, Vec<u8>)>,
    pub updates: Vec<bool>,
    /// Images committed and checked byte for byte.
    pub committed: usize,
}

impl DeviceScript {
    pub fn on_event(&mut self, dev: &mut Device, now: Instant, event: DeviceEvent) {
        match event {
            DeviceEvent::Connected => {
                dev.subscribe(b"alarm", Scope::MyDevices).unwrap();
            }
            DeviceEvent::FunctionCall(c) => {
                assert_eq!((&c.name[..], &c.argument[..]), (&b"led"[..], &b"on"[..]));
                dev.function_return(c.call, 1).unwrap();
            }
            DeviceEvent::VariableRequest(v) => {
                dev.variable_value(v.request, Value::Double(21.5)).unwrap();
                dev.publish(now, b"lake/depth", Some(b"28m"), Visibility::Private, 60)
                    .unwrap();
            }
            DeviceEvent::Event(e) => {
                self.received = Some((e.name.to_vec(), e.data.to_vec()));
            }
            DeviceEvent::UpdateStarted { fast, .. } => self.updates.push(fast),
            DeviceEvent::UpdateFinished { size } => {
                assert_eq!(size as usize, OTA_LEN);
                assert_eq!(dev.sink().committed(), Some(&image(OTA_LEN)[..]));
                self.committed += 1;
            }
            _ => {}
        }
    }
}

pub fn check(cloud: &CloudScript, dev: &DeviceScript) {
    assert!(cloud.done);
    assert_eq!(cloud.returned, Some(1));
    assert_eq!(cloud.read, Some(VariableValue::Double(21.5)));
    assert_eq!(
        cloud.published,
        Some((b"lake/depth".to_vec(), Some(b"28m".to_vec())))
    );
    assert_eq!(
        dev.received,
        Some((b"alarm/fire".to_vec(), b"kitchen".to_vec()))
    );
    assert_eq!(dev.updates, vec![false, true]);
    assert_eq!(dev.committed, 2);
    assert_eq!(
        cloud.ota_times.iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![false, true]
    );
}
