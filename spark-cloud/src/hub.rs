//! The interface between the REST layer and the connected devices.
//!
//! The REST layer never talks to a socket: it asks a [`DeviceHub`] to call a function, read a variable, describe a
//! device, deliver an event or flash an image. The device listener implements it on top of the protocol sessions;
//! [`ScriptedHub`] implements it with in-process scripted devices, for tests and demos.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use spark_protocol::DeviceId;

/// A boxed future returned by the hub (object-safe, `Send`).
pub type HubFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, HubError>> + Send + 'a>>;

/// Why the hub could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The device is not connected now (REST: 404).
    #[error("device is not connected")]
    NotConnected,
    /// The device does not expose that function (REST: 404 `Function not found`).
    #[error("function not found")]
    UnknownFunction,
    /// The device does not expose that variable (REST: 404 `Variable not found`).
    #[error("variable not found")]
    UnknownVariable,
    /// The device did not answer in time (REST: 408 `Timed out.`).
    #[error("timed out")]
    TimedOut,
    /// The device is busy with another exclusive operation (an update in progress; REST: 400).
    #[error("device is busy: {0}")]
    Busy(String),
    /// The device answered with an error, or the link failed (REST: 400 with this text).
    #[error("{0}")]
    Device(String),
}

pub use spark_protocol::{VarType, VariableValue};

/// What a device exposes (its Describe message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// Function names, as the device reports them (at most 12 characters on a Core).
    pub functions: Vec<String>,
    /// Variables by name with their types.
    pub variables: BTreeMap<String, VarType>,
}

/// An event the cloud delivers to devices (a publish through the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// The event name.
    pub name: String,
    /// The event data, if any.
    pub data: Option<String>,
    /// Time to live in seconds.
    pub ttl: u32,
    /// Whether the event is public.
    pub public: bool,
}

/// Receives the progress of an over-the-air update.
pub trait FlashProgress: Send + Sync {
    /// `sent` of `total` bytes have been acknowledged by the device.
    fn progress(&self, sent: usize, total: usize);
}

/// The devices the REST layer reaches. Implemented by the device listener and by [`ScriptedHub`].
pub trait DeviceHub: Send + Sync + 'static {
    /// Whether `device` is connected now.
    fn is_connected(&self, device: DeviceId) -> bool;

    /// What `device` exposes.
    fn describe<'a>(&'a self, device: DeviceId) -> HubFuture<'a, Description>;

    /// Calls `function` with `argument` on `device` and returns its result.
    fn call<'a>(
        &'a self,
        device: DeviceId,
        function: &'a str,
        argument: &'a str,
    ) -> HubFuture<'a, i32>;

    /// Reads `variable` from `device`.
    fn get<'a>(&'a self, device: DeviceId, variable: &'a str) -> HubFuture<'a, VariableValue>;

    /// Turns the status LED's "signal" (rainbow) on or off.
    fn signal<'a>(&'a self, device: DeviceId, on: bool) -> HubFuture<'a, ()>;

    /// Delivers an event published through the API to `device` (when it subscribed to it).
    fn deliver<'a>(&'a self, device: DeviceId, event: &'a DeviceEvent) -> HubFuture<'a, ()>;

    /// Flashes `image` over the air and resolves when the device has accepted it (or the update failed).
    fn flash<'a>(
        &'a self,
        device: DeviceId,
        image: Bytes,
        progress: Arc<dyn FlashProgress>,
    ) -> HubFuture<'a, ()>;
}

/// A function of a scripted device: the argument in, the result out.
pub type ScriptedFunction = Arc<dyn Fn(&str) -> Result<i32, HubError> + Send + Sync>;

/// One in-process device of a [`ScriptedHub`].
#[derive(Clone, Default)]
pub struct ScriptedDevice {
    /// Its functions.
    pub functions: BTreeMap<String, ScriptedFunction>,
    /// Its variables and their current values.
    pub variables: BTreeMap<String, VariableValue>,
    /// Events delivered to it, in order.
    pub received: Vec<DeviceEvent>,
    /// Images flashed to it, in order.
    pub flashed: Vec<Bytes>,
    /// Whether its LED signals.
    pub signaling: bool,
}

impl core::fmt::Debug for ScriptedDevice {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScriptedDevice")
            .field("functions", &self.functions.keys().collect::<Vec<_>>())
            .field("variables", &self.variables)
            .field("received", &self.received)
            .field("flashed", &self.flashed.len())
            .field("signaling", &self.signaling)
            .finish()
    }
}

impl ScriptedDevice {
    /// A device with nothing exposed.
    pub fn new() -> ScriptedDevice {
        ScriptedDevice::default()
    }

    /// Adds a function.
    pub fn function(
        mut self,
        name: &str,
        f: impl Fn(&str) -> Result<i32, HubError> + Send + Sync + 'static,
    ) -> ScriptedDevice {
        self.functions.insert(name.to_owned(), Arc::new(f));
        self
    }

    /// Adds a variable.
    pub fn variable(mut self, name: &str, value: VariableValue) -> ScriptedDevice {
        self.variables.insert(name.to_owned(), value);
        self
    }
}

/// A [`DeviceHub`] whose devices are in-process scripts: connected while present.
#[derive(Debug, Default)]
pub struct ScriptedHub {
    devices: Mutex<HashMap<DeviceId, ScriptedDevice>>,
}

impl ScriptedHub {
    /// An empty hub.
    pub fn new() -> ScriptedHub {
        ScriptedHub::default()
    }

    /// Connects a device under `id` (replacing one with the same id).
    pub fn connect(&self, id: DeviceId, device: ScriptedDevice) {
        self.lock().insert(id, device);
    }

    /// Disconnects a device; returns it.
    pub fn disconnect(&self, id: DeviceId) -> Option<ScriptedDevice> {
        self.lock().remove(&id)
    }

    /// Runs `f` on a connected device.
    pub fn with_device<T>(
        &self,
        id: DeviceId,
        f: impl FnOnce(&mut ScriptedDevice) -> T,
    ) -> Option<T> {
        self.lock().get_mut(&id).map(f)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeviceId, ScriptedDevice>> {
        super::lock(&self.devices)
    }

    fn on<T>(
        &self,
        device: DeviceId,
        f: impl FnOnce(&mut ScriptedDevice) -> Result<T, HubError>,
    ) -> Result<T, HubError> {
        self.lock()
            .get_mut(&device)
            .ok_or(HubError::NotConnected)
            .and_then(f)
    }
}

impl DeviceHub for ScriptedHub {
    fn is_connected(&self, device: DeviceId) -> bool {
        self.lock().contains_key(&device)
    }

    fn describe<'a>(&'a self, device: DeviceId) -> HubFuture<'a, Description> {
        let r = self.on(device, |d| {
            Ok(Description {
                functions: d.functions.keys().cloned().collect(),
                variables: d
                    .variables
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.var_type()?)))
                    .collect(),
            })
        });
        Box::pin(async move { r })
    }

    fn call<'a>(
        &'a self,
        device: DeviceId,
        function: &'a str,
        argument: &'a str,
    ) -> HubFuture<'a, i32> {
        let f = self.on(device, |d| {
            d.functions
                .get(function)
                .cloned()
                .ok_or(HubError::UnknownFunction)
        });
        // The function runs outside the lock so that it may use the hub itself.
        Box::pin(async move { f.and_then(|f| f(argument)) })
    }

    fn get<'a>(&'a self, device: DeviceId, variable: &'a str) -> HubFuture<'a, VariableValue> {
        let r = self.on(device, |d| {
            d.variables
                .get(variable)
                .cloned()
                .ok_or(HubError::UnknownVariable)
        });
        Box::pin(async move { r })
    }

    fn signal<'a>(&'a self, device: DeviceId, on: bool) -> HubFuture<'a, ()> {
        let r = self.on(device, |d| {
            d.signaling = on;
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn deliver<'a>(&'a self, device: DeviceId, event: &'a DeviceEvent) -> HubFuture<'a, ()> {
        let r = self.on(device, |d| {
            d.received.push(event.clone());
            Ok(())
        });
        Box::pin(async move { r })
    }

    fn flash<'a>(
        &'a self,
        device: DeviceId,
        image: Bytes,
        progress: Arc<dyn FlashProgress>,
    ) -> HubFuture<'a, ()> {
        let r = self.on(device, |d| {
            let total = image.len();
            for sent in (0..total).step_by(512).skip(1).chain([total]) {
                progress.progress(sent, total);
            }
            d.flashed.push(image.clone());
            Ok(())
        });
        Box::pin(async move { r })
    }
}
