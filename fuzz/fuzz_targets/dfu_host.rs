//! The DFU host against a hostile device: every IN transfer is answered from the fuzz input (bytes, or a
//! transfer error), every OUT transfer succeeds or fails as the input says. Never a panic, never a loop without
//! end, and the bytes reported written never exceed the plan.
#![no_main]

#[path = "../shared/usb_replies.rs"]
mod usb_replies;

use libfuzzer_sys::fuzz_target;
use spark_dfu::host::{Action, Device, Host, Options, Region};
use spark_dfu::platform::Platform;
use usb_replies::Replies;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let data = [0xA5u8; 3000];
    let regions = [
        Region {
            alt: 1,
            address: 0x1_0000,
            data: &data,
        },
        Region {
            alt: 0,
            address: 0x0800_5000,
            data: &data[..1500],
        },
    ];
    let options = Options {
        verify: mode & 1 != 0,
        leave: mode & 2 != 0,
        force: false,
        address_every_block: mode & 4 != 0,
    };
    let device = Device::for_platform(Platform::Core).unwrap();
    let mut out = [0u8; 2100];
    let mut host = if mode & 8 != 0 {
        Host::upload(device, 1, 0x2000, &mut out).unwrap()
    } else {
        Host::download(device, &regions, options).unwrap()
    };
    // Stall, Disconnected and Io; a length tag counts eight bytes.
    let mut replies = Replies {
        rest,
        errors: &usb_replies::ERRORS[..3],
        scale: 8,
    };
    let mut next = |n: usize| replies.next(n);
    for _ in 0..100_000 {
        let Ok(action) = host.poll_action() else {
            break;
        };
        let step = match action {
            Action::SelectAlt(_) | Action::Out { .. } => {
                let Some(r) = next(0) else { break };
                host.handle_out(r.map(|_| ()))
            }
            Action::In { setup } => {
                let Some(r) = next(usize::from(setup.length)) else {
                    break;
                };
                host.handle_in(r.as_deref().map_err(|e| *e))
            }
            Action::Wait(_) | Action::Event(_) => Ok(()),
            Action::Done => break,
        };
        if step.is_err() {
            assert!(host.poll_action().is_err());
            break;
        }
    }
    assert!(host.summary().written <= 4500);
});
