//! End to end: the local cloud (device listener and REST API, started in-process on loopback ports), virtual Cores
//! (the Tinker / external-flash / CC3000 model on spark-protocol's `DeviceConnection`, run as the `spark-vcore`
//! binary runs them) and spark-api's client, all over real sockets (the Spark protocol over TCP, HTTP, server-sent
//! events). Every request below goes through spark-api; what the Core did is checked on the Core's side (its pins,
//! its files, what it reported).

#[path = "support/e2e_env.rs"]
mod env;

use std::collections::BTreeSet;

use env::{Env, Relay, app_image, within};
use spark_api::{Error, FirmwareFile, Publish, VariableValue};
use spark_cc3000::ServicePack;
use spark_vcore::flash::OTA_ADDRESS;
use spark_vcore::image::{SYNTHETIC_DEEP_UPDATE_NAME, synthetic_deep_update};
use spark_vcore::run::Status;
use spark_vcore::tinker::{Bank, Pin, PinMode};
use spark_vcore::{Firmware, MAX_SUBSCRIPTIONS, VirtualCore};

const CORE_A: [u8; 12] = [
    0x53, 0xff, 0x6c, 0x06, 0x50, 0x75, 0x53, 0x51, 0x19, 0x51, 0x16, 0x87,
];
const CORE_B: [u8; 12] = [
    0x48, 0xff, 0x6a, 0x06, 0x50, 0x67, 0x55, 0x50, 0x08, 0x34, 0x23, 0x87,
];
const CORE_C: [u8; 12] = [
    0x55, 0xff, 0x70, 0x06, 0x50, 0x75, 0x55, 0x48, 0x49, 0x58, 0x09, 0x87,
];

fn pin(bank: Bank, n: u8) -> Pin {
    Pin::new(bank, n).unwrap()
}

/// What a Core's function calls were, in order, from its statuses.
fn calls(statuses: &[Status]) -> Vec<(String, String, i32)> {
    statuses
        .iter()
        .filter_map(|s| match s {
            Status::Called {
                name,
                argument,
                result,
            } => Some((name.clone(), argument.clone(), *result)),
            _ => None,
        })
        .collect()
}

fn api_status(e: &Error) -> u16 {
    e.status()
        .unwrap_or_else(|| panic!("expected an HTTP error, got {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tinker_functions_called_through_the_api_drive_the_cores_pins() {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let mut b = env.online_core(CORE_B, ServicePack::SP_1_28, &[]).await;
    let api = env.api.clone();

    // Both Cores are listed as connected, with Tinker's functions.
    let listed = api.list_devices().await.unwrap();
    let connected: BTreeSet<_> = listed
        .iter()
        .filter(|d| d.connected)
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(connected, BTreeSet::from([a.id.clone(), b.id.clone()]));
    let info = api.device(&a.id).await.unwrap();
    assert!(info.connected);
    let functions: BTreeSet<_> = info.functions.unwrap().into_iter().collect();
    assert_eq!(
        functions,
        ["analogread", "analogwrite", "digitalread", "digitalwrite"]
            .map(String::from)
            .into()
    );

    let call = |device: String, f: &'static str, arg: &'static str| {
        let api = api.clone();
        async move {
            api.call_function(&device, f, arg)
                .await
                .unwrap()
                .return_value
        }
    };

    // digitalwrite: the pin of that Core (and only that one) becomes an output at the level.
    assert_eq!(call(a.id.clone(), "digitalwrite", "D7,HIGH").await, 1);
    let d7 = a.core.lock().unwrap().tinker().pin(pin(Bank::D, 7));
    assert_eq!((d7.mode, d7.level), (PinMode::Output, true));
    let b_d7 = b.core.lock().unwrap().tinker().pin(pin(Bank::D, 7));
    assert_eq!(b_d7.mode, PinMode::Unset);
    assert_eq!(call(a.id.clone(), "digitalwrite", "D7,LOW").await, 1);
    let d7 = a.core.lock().unwrap().tinker().pin(pin(Bank::D, 7));
    assert_eq!((d7.mode, d7.level), (PinMode::Output, false));

    // digitalread sees what drives the pin: Tinker makes it an input with the pull-down first.
    a.core
        .lock()
        .unwrap()
        .tinker_mut()
        .drive(pin(Bank::D, 3), true);
    assert_eq!(call(a.id.clone(), "digitalread", "D3").await, 1);
    assert_eq!(call(b.id.clone(), "digitalread", "D3").await, 0);
    a.core
        .lock()
        .unwrap()
        .tinker_mut()
        .drive(pin(Bank::D, 3), false);
    assert_eq!(call(a.id.clone(), "digitalread", "D3").await, 0);
    assert_eq!(call(a.id.clone(), "digitalread", "D7").await, 0);
    let d7 = a.core.lock().unwrap().tinker().pin(pin(Bank::D, 7));
    assert_eq!(d7.mode, PinMode::InputPulldown);

    // analogread reads the ADC input; analogwrite sets the duty.
    a.core
        .lock()
        .unwrap()
        .tinker_mut()
        .set_analog_input(pin(Bank::A, 0), 2345);
    assert_eq!(call(a.id.clone(), "analogread", "A0").await, 2345);
    assert_eq!(call(a.id.clone(), "analogread", "D0").await, -3);
    assert_eq!(call(a.id.clone(), "analogwrite", "A1,200").await, 1);
    let a1 = a.core.lock().unwrap().tinker().pin(pin(Bank::A, 1));
    assert_eq!((a1.mode, a1.duty), (PinMode::Pwm, 200));
    // Tinker's own error codes come back as return values.
    assert_eq!(call(a.id.clone(), "digitalwrite", "D9,HIGH").await, -1);
    assert_eq!(call(a.id.clone(), "digitalwrite", "D1,MAYBE").await, -2);

    // A function the Core does not have is a typed 404 and never reaches it.
    let e = api.call_function(&a.id, "reboot", "").await.unwrap_err();
    assert_eq!(api_status(&e), 404, "{e}");

    // The Cores saw exactly these calls, in this order.
    let seen = calls(&a.drain_status());
    let expected: Vec<(String, String, i32)> = [
        ("digitalwrite", "D7,HIGH", 1),
        ("digitalwrite", "D7,LOW", 1),
        ("digitalread", "D3", 1),
        ("digitalread", "D3", 0),
        ("digitalread", "D7", 0),
        ("analogread", "A0", 2345),
        ("analogread", "D0", -3),
        ("analogwrite", "A1,200", 1),
        ("digitalwrite", "D9,HIGH", -1),
        ("digitalwrite", "D1,MAYBE", -2),
    ]
    .iter()
    .map(|(f, a, r)| (f.to_string(), a.to_string(), *r))
    .collect();
    assert_eq!(seen, expected);
    assert_eq!(
        calls(&b.drain_status()),
        vec![("digitalread".into(), "D3".into(), 0)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_and_rename_through_the_api() {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let api = &env.api;
    let signal = |s: &Status| match s {
        Status::Signal(on) => Some(*on),
        _ => None,
    };
    let r = api.signal_device(&a.id, true).await.unwrap();
    assert_eq!(r.signaling, Some(true));
    assert!(a.wait_for(signal).await.0, "the Core starts signalling");
    let r = api.signal_device(&a.id, false).await.unwrap();
    assert_eq!(r.signaling, Some(false));
    assert!(!a.wait_for(signal).await.0, "the Core stops signalling");

    // A renamed Core answers to its name.
    api.rename_device(&a.id, "bench-core").await.unwrap();
    let r = api
        .call_function("bench-core", "digitalwrite", "D2,HIGH")
        .await;
    assert_eq!(r.unwrap().return_value, 1);
    let (called, _) = a
        .wait_for(|s| match s {
            Status::Called { argument, .. } => Some(argument.clone()),
            _ => None,
        })
        .await;
    assert_eq!(called, "D2,HIGH");
    let listed = api.list_devices().await.unwrap();
    assert_eq!(listed[0].name.as_deref(), Some("bench-core"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_of_every_type_read_through_the_api() {
    let mut env = Env::start().await;
    let a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let b = env.online_core(CORE_B, ServicePack::SP_1_28, &[]).await;
    let api = &env.api;

    let info = api.device(&a.id).await.unwrap();
    let variables = info.variables.unwrap();
    let types: Vec<(&str, &str)> = variables
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("boots", "int32"),
            ("cc3000", "string"),
            ("firmware", "string"),
            ("temperature", "double"),
        ]
    );
    // The patch version the Core published after its handshake.
    assert_eq!(info.cc3000_patch_version.as_deref(), Some("1.24"));

    let get = |device: &str, name: &str| {
        let (api, device, name) = (api.clone(), device.to_owned(), name.to_owned());
        async move { api.variable(&device, &name).await.unwrap().result }
    };
    assert_eq!(
        get(&a.id, "cc3000").await,
        VariableValue::String("1.24".into())
    );
    assert_eq!(
        get(&b.id, "cc3000").await,
        VariableValue::String("1.28".into())
    );
    assert_eq!(
        get(&a.id, "firmware").await,
        VariableValue::String("tinker".into())
    );
    assert_eq!(get(&a.id, "boots").await, VariableValue::Int(1));
    // Read when asked: a value changed on the Core is what the next read returns.
    a.core.lock().unwrap().set_temperature(19.25);
    b.core.lock().unwrap().set_temperature(-4.5);
    assert_eq!(
        get(&a.id, "temperature").await,
        VariableValue::Double(19.25)
    );
    assert_eq!(get(&b.id, "temperature").await, VariableValue::Double(-4.5));
    a.core.lock().unwrap().set_temperature(22.0);
    assert_eq!(get(&a.id, "temperature").await, VariableValue::Double(22.0));

    let e = api.variable(&a.id, "humidity").await.unwrap_err();
    assert_eq!(api_status(&e), 404, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_by_cores_reach_the_all_prefix_and_device_streams() {
    let mut env = Env::start().await;
    let mut a = env.new_core(CORE_A, ServicePack::SP_1_24);
    let mut b = env.new_core(CORE_B, ServicePack::SP_1_28);
    env.provision(&a).await;
    env.provision(&b).await;
    let mut all = env
        .stream(|api| api.subscribe_all(Some("spark/cc3000")))
        .await;
    let mut mine = env.stream(|api| api.subscribe_mine(None)).await;
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    // Another user's view of all events: the Cores' events are private to their owner.
    let ann = env.other_user("ann", "ann's password").await;
    let mut anns = env::Events(ann.subscribe_all(None));
    match within(anns.0.next_item()).await {
        Some(Ok(spark_api::StreamItem::Connected)) => {}
        other => panic!("expected ann's stream to connect, got {other:?}"),
    }
    let mut only_a = env.stream(|api| api.subscribe_device(&a_id, None)).await;
    let mut only_b_patch = env
        .stream(|api| api.subscribe_device(&b_id, Some("spark/cc3000-patch-version")))
        .await;

    env.start_core(&mut a).await;
    env.start_core(&mut b).await;

    // The prefix stream has only the patch-version events, one per Core, with each Core's version.
    let mut got = BTreeSet::new();
    for _ in 0..2 {
        let e = all.next_event().await;
        assert_eq!(e.name, "spark/cc3000-patch-version");
        assert_eq!(e.ttl, Some(60));
        got.insert((e.coreid.unwrap(), e.data.unwrap()));
    }
    assert_eq!(
        got,
        BTreeSet::from([(a_id.clone(), "1.24".into()), (b_id.clone(), "1.28".into())])
    );

    // "My devices": each Core comes online, then publishes its version.
    let mut per_core: std::collections::BTreeMap<String, Vec<(String, String)>> =
        Default::default();
    for _ in 0..4 {
        let e = mine.next_event().await;
        per_core
            .entry(e.coreid.unwrap())
            .or_default()
            .push((e.name, e.data.unwrap_or_default()));
    }
    let expect = |version: &str| {
        vec![
            ("spark/status".to_owned(), "online".to_owned()),
            ("spark/cc3000-patch-version".to_owned(), version.to_owned()),
        ]
    };
    assert_eq!(per_core[&a_id], expect("1.24"));
    assert_eq!(per_core[&b_id], expect("1.28"));

    // One device's stream: that Core's events only.
    for (name, data) in expect("1.24") {
        let e = only_a.next_event().await;
        assert_eq!((e.name, e.data.unwrap_or_default()), (name, data));
        assert_eq!(e.coreid.as_deref(), Some(a_id.as_str()));
    }
    let e = only_b_patch.next_event().await;
    assert_eq!(
        (e.name.as_str(), e.data.as_deref(), e.coreid.as_deref()),
        (
            "spark/cc3000-patch-version",
            Some("1.28"),
            Some(b_id.as_str())
        )
    );

    // Ann saw none of it: the first event on her stream is the one she publishes now.
    ann.publish(&Publish::new("ann/hello").data("hi").public())
        .await
        .unwrap();
    let e = anns.next_event().await;
    assert_eq!(
        (e.name.as_str(), e.data.as_deref()),
        ("ann/hello", Some("hi"))
    );

    // Nothing of B's reached A's stream: when A goes away, its offline notice is the next thing there.
    a.stop();
    let e = only_a.next_event().await;
    assert_eq!(
        (e.name.as_str(), e.data.as_deref(), e.coreid.as_deref()),
        ("spark/status", Some("offline"), Some(a_id.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_through_the_api_reach_the_subscribed_cores() {
    let mut env = Env::start().await;
    let mut a = env
        .online_core(CORE_A, ServicePack::SP_1_24, &["tinker/", "fleet"])
        .await;
    let mut b = env
        .online_core(CORE_B, ServicePack::SP_1_28, &["fleet"])
        .await;
    let mut api_stream = env.stream(|api| api.subscribe_all(Some("fleet"))).await;

    let received = |s: &Status| match s {
        Status::EventReceived {
            name,
            data,
            private,
        } => Some((name.clone(), data.clone(), *private)),
        _ => None,
    };
    let api = &env.api;
    // A private event matching only A's subscription.
    api.publish(&Publish::new("tinker/led").data("on"))
        .await
        .unwrap();
    // An event no Core subscribed to.
    api.publish(&Publish::new("weather").data("rain").public())
        .await
        .unwrap();
    // A public event both Cores subscribed to.
    api.publish(&Publish::new("fleet/update").data("now").public())
        .await
        .unwrap();

    let (first, _) = a.wait_for(received).await;
    assert_eq!(first, ("tinker/led".into(), "on".into(), true));
    let (second, _) = a.wait_for(received).await;
    assert_eq!(second, ("fleet/update".into(), "now".into(), false));
    // B's first event is the fleet one: neither `tinker/led` nor `weather` reached it.
    let (only, _) = b.wait_for(received).await;
    assert_eq!(only, ("fleet/update".into(), "now".into(), false));

    // The API's subscribers see it too, from the publishing user, not a device.
    let e = api_stream.next_event().await;
    assert_eq!(
        (e.name.as_str(), e.data.as_deref()),
        ("fleet/update", Some("now"))
    );
    assert_ne!(e.coreid.as_deref(), Some(a.id.as_str()));

    // Names starting with `spark` are the cloud's: refused, and nothing reaches a Core.
    let e = api
        .publish(&Publish::new("spark/flash/status").data("x"))
        .await
        .unwrap_err();
    assert_eq!(api_status(&e), 400, "{e}");
    api.publish(&Publish::new("fleet/after").data("1"))
        .await
        .unwrap();
    let (next, _) = a.wait_for(received).await;
    assert_eq!(next, ("fleet/after".into(), "1".into(), true));
}

/// The image the Core's external flash holds in its download area.
fn downloaded(core: &env::TestCore, len: usize) -> Vec<u8> {
    let flash = std::fs::read(core.path().join("external-flash.bin")).unwrap();
    flash[OTA_ADDRESS as usize..OTA_ADDRESS as usize + len].to_vec()
}

/// How a flash went, as a device's event stream told it.
struct FlashOutcome {
    /// The final `spark/flash/status` (`success <file>` or `failed <file>: <why>`).
    status: String,
    /// The `spark/flash/progress` values, `(sent, total)`.
    progress: Vec<(usize, usize)>,
    /// The device's `spark/cc3000-patch-version`, if it came meanwhile (it has a new session).
    reconnected: Option<String>,
}

/// Follows a device's events from the flash's `started` status to its final one.
async fn flash_outcome(events: &mut env::Events, file: &str) -> FlashOutcome {
    let (started, _) = events.next_named("spark/flash/status").await;
    assert_eq!(started.data.as_deref(), Some(&*format!("started {file}")));
    let mut progress = Vec::new();
    let mut reconnected = None;
    loop {
        let e = events.next_event().await;
        let data = e.data.unwrap_or_default();
        match e.name.as_str() {
            "spark/flash/progress" => {
                let (sent, total) = data.split_once('/').expect("sent/total");
                progress.push((sent.parse().unwrap(), total.parse().unwrap()));
            }
            "spark/flash/status" => {
                return FlashOutcome {
                    status: data,
                    progress,
                    reconnected,
                };
            }
            "spark/cc3000-patch-version" => reconnected = Some(data),
            _ => {}
        }
    }
}

/// Waits until the device has a new session (its patch-version event), unless `outcome` saw it already; returns
/// the version it reported.
async fn until_reconnected(events: &mut env::Events, outcome: &FlashOutcome) -> String {
    match &outcome.reconnected {
        Some(version) => version.clone(),
        None => {
            let (e, _) = events.next_named("spark/cc3000-patch-version").await;
            e.data.unwrap_or_default()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_kib_image_flashed_through_the_api_is_what_the_core_runs_byte_for_byte() {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let mut device_events = env
        .stream(|api| api.subscribe_device(&a.id, Some("spark")))
        .await;
    let image = app_image(100 * 1024, 0x1234_5678);

    let started = env
        .api
        .flash_binary(&a.id, &FirmwareFile::new("app.bin", image.clone()))
        .await
        .unwrap();
    assert_eq!(started.status.as_deref(), Some("Update started"));

    let outcome = flash_outcome(&mut device_events, "app.bin").await;
    assert_eq!(outcome.status, "success app.bin");
    let progress = &outcome.progress;
    assert!(progress.len() >= 2, "progress events: {progress:?}");
    assert!(progress.iter().all(|&(_, total)| total == image.len()));
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );

    // The Core took the announced image, committed it, reset, installed it and came back saying so.
    let (size, _) = a
        .wait_for(|s| match s {
            Status::UpdateStarted { size } => Some(*size),
            _ => None,
        })
        .await;
    assert_eq!(size, Some(image.len() as u32));
    let (finished, skipped) = a
        .wait_for(|s| match s {
            Status::UpdateFinished { size } => Some(*size),
            _ => None,
        })
        .await;
    assert_eq!(finished, image.len() as u32);
    assert!(
        !skipped
            .iter()
            .any(|s| matches!(s, Status::UpdateFailed { .. })),
        "{skipped:?}"
    );
    let (installed, _) = a
        .wait_for(|s| match s {
            Status::Booted(report) => Some(report.installed.clone()),
            _ => None,
        })
        .await;
    let expected = Firmware::Application {
        len: image.len() as u32,
        crc32: spark_protocol::wire::ota::crc32(&image),
        service_pack: None,
    };
    assert_eq!(installed, Some(expected.clone()));
    let (ota_succeeded, _) = a
        .wait_for(|s| match s {
            Status::Connected { ota_succeeded, .. } => Some(*ota_succeeded),
            _ => None,
        })
        .await;
    assert!(ota_succeeded);

    // Byte for byte: in the external flash's download area and in what the Core now runs.
    assert!(
        downloaded(&a, image.len()) == image,
        "external flash differs"
    );
    {
        let core = a.core.lock().unwrap();
        assert!(
            core.firmware_image().unwrap().as_deref() == Some(&image[..]),
            "the installed firmware differs"
        );
        assert_eq!(core.firmware(), &expected);
        assert!(!core.has_staged_image());
    }

    // Through the API: the new firmware answers, after a second boot, and the cloud remembers the app.
    assert_eq!(
        until_reconnected(&mut device_events, &outcome).await,
        "1.24"
    );
    let api = &env.api;
    let v = within(api.variable(&a.id, "firmware"))
        .await
        .unwrap()
        .result;
    assert_eq!(v, VariableValue::String("application".into()));
    let v = api.variable(&a.id, "boots").await.unwrap().result;
    assert_eq!(v, VariableValue::Int(2));
    let r = api.call_function(&a.id, "digitalwrite", "D7,HIGH").await;
    assert_eq!(r.unwrap().return_value, 1);
    assert_eq!(
        api.device(&a.id).await.unwrap().last_app.as_deref(),
        Some("app.bin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deep_update_flashed_through_the_api_patches_the_cc3000_and_the_api_sees_it() {
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    deep_update_through_the_api(&image, SYNTHETIC_DEEP_UPDATE_NAME).await;
}

#[spark_vectors::test]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparks_deep_update_flashed_through_the_api_patches_the_cc3000_the_same_way() {
    let image = spark_vectors::load("dfu", "spark-cli/deep_update_2014_06.bin");
    deep_update_through_the_api(&image, "deep_update_2014_06.bin").await;
}

async fn deep_update_through_the_api(image: &[u8], name: &str) {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let api = env.api.clone();
    assert_eq!(
        api.device(&a.id)
            .await
            .unwrap()
            .cc3000_patch_version
            .as_deref(),
        Some("1.24")
    );
    let mut device_events = env
        .stream(|api| api.subscribe_device(&a.id, Some("spark")))
        .await;
    api.flash_binary(&a.id, &FirmwareFile::new(name, image.to_vec()))
        .await
        .unwrap();
    let outcome = flash_outcome(&mut device_events, name).await;
    assert_eq!(outcome.status, format!("success {name}"));

    // The Core resets into the deep update, which burns the service pack, and says so after its handshake.
    let (patched, _) = a
        .wait_for(|s| match s {
            Status::Booted(report) if report.installed.is_some() => Some(report.patched),
            _ => None,
        })
        .await;
    assert_eq!(patched, Some((ServicePack::SP_1_24, ServicePack::SP_1_28)));
    let version = until_reconnected(&mut device_events, &outcome).await;
    assert_eq!(version, "1.28");
    assert_eq!(
        api.device(&a.id)
            .await
            .unwrap()
            .cc3000_patch_version
            .as_deref(),
        Some("1.28")
    );
    let get = |name: &'static str| {
        let (api, id) = (api.clone(), a.id.clone());
        async move { api.variable(&id, name).await.unwrap().result }
    };
    assert_eq!(get("cc3000").await, VariableValue::String("1.28".into()));
    assert_eq!(
        get("firmware").await,
        VariableValue::String("deep-update".into())
    );
    assert!(
        a.core.lock().unwrap().firmware_image().unwrap().as_deref() == Some(image),
        "the installed firmware differs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_ota_commits_nothing_and_a_second_flash_completes() {
    let mut env = Env::start().await;
    let relay = Relay::start(env.device_addr).await;
    let mut a = env.new_core(CORE_A, ServicePack::SP_1_24);
    env.provision(&a).await;
    let mut device_events = env
        .stream(|api| api.subscribe_device(&a.id, Some("spark")))
        .await;
    env.run_core(&mut a, Some(relay.addr));
    device_events.next_named("spark/cc3000-patch-version").await;

    // About 40 KB of the 100 KiB transfer gets through, then the link dies.
    relay.cut_after(40_000);
    let image = app_image(100 * 1024, 0x0bad_cafe);
    env.api
        .flash_binary(&a.id, &FirmwareFile::new("app.bin", image.clone()))
        .await
        .unwrap();
    let outcome = flash_outcome(&mut device_events, "app.bin").await;
    assert!(
        outcome.status.starts_with("failed app.bin"),
        "{}",
        outcome.status
    );
    assert!(
        outcome.progress.iter().all(|&(sent, _)| sent < image.len()),
        "{:?}",
        outcome.progress
    );
    assert_eq!(relay.cuts(), 1);

    // The Core lost the session part-way through the download and committed nothing: no staged image, the
    // factory firmware still runs, no reset happened.
    let (_, before) = a
        .wait_for(|s| matches!(s, Status::Disconnected { .. }).then_some(()))
        .await;
    assert!(
        before
            .iter()
            .any(|s| matches!(s, Status::UpdateStarted { .. })),
        "{before:?}"
    );
    assert!(
        !before
            .iter()
            .any(|s| matches!(s, Status::UpdateFinished { .. })),
        "{before:?}"
    );
    {
        let core = a.core.lock().unwrap();
        assert!(!core.has_staged_image());
        assert_eq!(core.ota_progress(), None, "the download was abandoned");
        assert_eq!(core.firmware(), &Firmware::FactoryTinker);
        assert_eq!(core.firmware_image().unwrap(), None);
        assert_eq!(core.boots(), 1);
    }
    // The download stopped short of the end: the tail of the download area is still erased.
    let area = downloaded(&a, image.len());
    assert!(area[image.len() - 4096..].iter().all(|&b| b == 0xFF));

    // It reconnects by itself; the same flash then goes through.
    let (_, between) = a
        .wait_for(|s| matches!(s, Status::Connected { .. }).then_some(()))
        .await;
    assert!(
        !between.iter().any(|s| matches!(s, Status::Booted(_))),
        "{between:?}"
    );
    assert_eq!(
        until_reconnected(&mut device_events, &outcome).await,
        "1.24"
    );
    env.api
        .flash_binary(&a.id, &FirmwareFile::new("app.bin", image.clone()))
        .await
        .unwrap();
    let outcome = flash_outcome(&mut device_events, "app.bin").await;
    assert_eq!(outcome.status, "success app.bin");
    let (installed, _) = a
        .wait_for(|s| match s {
            Status::Booted(report) => Some(report.installed.clone()),
            _ => None,
        })
        .await;
    assert!(installed.is_some());
    let core = a.core.lock().unwrap();
    assert!(
        core.firmware_image().unwrap().as_deref() == Some(&image[..]),
        "the installed firmware differs"
    );
    assert_eq!(core.boots(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_core_refuses_is_reported_failed_and_nothing_is_committed() {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let mut flash_events = env
        .stream(|api| api.subscribe_device(&a.id, Some("spark/flash")))
        .await;
    // 100 KiB that is not Core firmware: the stack pointer is not in SRAM.
    let mut image = app_image(100 * 1024, 7);
    image[0..4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    env.api
        .flash_binary(&a.id, &FirmwareFile::new("junk.bin", image))
        .await
        .unwrap();
    let outcome = flash_outcome(&mut flash_events, "junk.bin").await;
    assert!(
        outcome.status.starts_with("failed junk.bin"),
        "{}",
        outcome.status
    );
    let (_, skipped) = a
        .wait_for(|s| matches!(s, Status::UpdateFailed { .. }).then_some(()))
        .await;
    assert!(
        !skipped
            .iter()
            .any(|s| matches!(s, Status::UpdateFinished { .. })),
        "{skipped:?}"
    );
    {
        let core = a.core.lock().unwrap();
        assert!(!core.has_staged_image());
        assert_eq!(core.firmware(), &Firmware::FactoryTinker);
        assert_eq!(core.firmware_image().unwrap(), None);
    }
    // The session survives the refusal: Tinker answers, no reset happened.
    let r = env
        .api
        .call_function(&a.id, "digitalwrite", "D0,HIGH")
        .await;
    assert_eq!(r.unwrap().return_value, 1);
    let v = env.api.variable(&a.id, "boots").await.unwrap().result;
    assert_eq!(v, VariableValue::Int(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cores_the_cloud_has_no_key_for_are_refused_and_never_listed_as_connected() {
    let mut env = Env::start().await;
    let mut mine = env.stream(|api| api.subscribe_mine(None)).await;
    // C was never provisioned; B's id was provisioned with another device's public key.
    let mut c = env.new_core(CORE_C, ServicePack::SP_1_24);
    let mut b = env.new_core(CORE_B, ServicePack::SP_1_24);
    env.api
        .send_public_key(&b.id, env::OTHER_DEVICE_PUB, Some("rsa"))
        .await
        .unwrap();
    env.run_core(&mut c, None);
    env.run_core(&mut b, None);

    // Each is turned away, tries again, and is turned away again; neither ever has a session.
    for core in [&mut c, &mut b] {
        for _ in 0..2 {
            let (_, skipped) = core
                .wait_for(|s| matches!(s, Status::Disconnected { .. }).then_some(()))
                .await;
            assert!(
                !skipped
                    .iter()
                    .any(|s| matches!(s, Status::Connected { .. })),
                "{skipped:?}"
            );
        }
    }
    assert_eq!(env.hub.connected(), 0);

    // The API: C is unknown, B is listed but not connected, and neither can be reached.
    let listed = env.api.list_devices().await.unwrap();
    assert!(listed.iter().all(|d| d.id != c.id), "{listed:?}");
    let b_listed = listed
        .iter()
        .find(|d| d.id == b.id)
        .expect("B is provisioned");
    assert!(!b_listed.connected);
    let e = env.api.device(&c.id).await.unwrap_err();
    assert_eq!(api_status(&e), 404, "{e}");
    let e = env
        .api
        .call_function(&b.id, "digitalwrite", "D7,HIGH")
        .await
        .unwrap_err();
    assert!(matches!(api_status(&e), 400..=499), "{e}");
    assert_eq!(
        b.core.lock().unwrap().tinker().pin(pin(Bank::D, 7)).mode,
        PinMode::Unset
    );

    // A Core with its key provisioned gets in; its online event is the first thing on the user's stream (nothing
    // was ever published for B or C).
    let a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let first = mine.next_event().await;
    assert_eq!(
        (first.name.as_str(), first.coreid.as_deref()),
        ("spark/status", Some(a.id.as_str()))
    );
    assert_eq!(env.hub.connected(), 1);
    assert!(
        c.drain_status()
            .iter()
            .all(|s| !matches!(s, Status::Connected { .. }))
    );
    assert!(
        b.drain_status()
            .iter()
            .all(|s| !matches!(s, Status::Connected { .. }))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_gets_a_typed_401_and_reaches_no_core() {
    let mut env = Env::start().await;
    let mut a = env.online_core(CORE_A, ServicePack::SP_1_24, &[]).await;
    let wrong = env
        .anonymous
        .with_token("0123456789abcdef0123456789abcdef01234567");

    let unauthorized = |e: Error| {
        assert!(e.is_auth(), "{e:?}");
        match &e {
            Error::Api(api) => assert_eq!(api.status, 401, "{e}"),
            other => panic!("expected an API error, got {other:?}"),
        }
    };
    unauthorized(wrong.list_devices().await.unwrap_err());
    unauthorized(wrong.device(&a.id).await.unwrap_err());
    unauthorized(
        wrong
            .call_function(&a.id, "digitalwrite", "D7,HIGH")
            .await
            .unwrap_err(),
    );
    unauthorized(wrong.variable(&a.id, "cc3000").await.unwrap_err());
    unauthorized(
        wrong
            .publish(&Publish::new("fleet/x").public())
            .await
            .unwrap_err(),
    );
    unauthorized(
        wrong
            .flash_binary(&a.id, &FirmwareFile::new("app.bin", app_image(4096, 3)))
            .await
            .unwrap_err(),
    );
    // The event stream gives the error once and ends (no reconnecting with a refused token).
    let mut stream = wrong.subscribe_all(None);
    match within(stream.next_item()).await {
        Some(Err(e)) => unauthorized(e),
        other => panic!("expected a 401, got {other:?}"),
    }
    assert!(within(stream.next_item()).await.is_none());
    // No token at all is refused before anything is sent.
    assert!(matches!(
        env.anonymous.list_devices().await,
        Err(Error::NoToken)
    ));

    // Nothing reached the Core: the first call it ever sees is the next authorised one.
    let r = env.api.call_function(&a.id, "digitalread", "D1").await;
    assert_eq!(r.unwrap().return_value, 0);
    let (first, skipped) = a
        .wait_for(|s| match s {
            Status::Called { name, argument, .. } => Some((name.clone(), argument.clone())),
            Status::Read { name } => Some((name.clone(), String::new())),
            Status::UpdateStarted { .. } => Some(("update".into(), String::new())),
            _ => None,
        })
        .await;
    assert_eq!(first, ("digitalread".into(), "D1".into()));
    assert!(calls(&skipped).is_empty());
    assert_eq!(
        a.core.lock().unwrap().tinker().pin(pin(Bank::D, 7)).mode,
        PinMode::Unset
    );
}

#[test]
fn a_core_holds_at_most_four_subscriptions_of_1_to_63_bytes() {
    let dir = env::TempDir::new("subs");
    let key = spark_protocol::crypto::RsaPrivateKey::from_pem(env::DEVICE_KEY).unwrap();
    let mut core =
        VirtualCore::create_with_identity(&dir.0, ServicePack::SP_1_24, CORE_A, key).unwrap();
    assert!(!core.subscribe(""));
    assert!(!core.subscribe(&"x".repeat(64)));
    assert!(core.subscribe(&"x".repeat(63)));
    assert!(core.subscribe("a"));
    assert!(core.subscribe("a"), "a prefix held already is fine");
    assert!(core.subscribe("b"));
    assert!(core.subscribe("c"));
    assert_eq!(core.subscriptions().len(), MAX_SUBSCRIPTIONS);
    assert!(!core.subscribe("d"));
    assert_eq!(core.subscriptions()[1], "a");
}
