//! The detach of a run-time DFU interface against a hostile device: every IN transfer is answered from the fuzz
//! input (bytes, or a transfer error), every OUT, reset and re-enumeration succeeds or fails as the input says.
//! Never a panic, never a loop without end, and a failed run keeps returning its error.
#![no_main]

#[path = "../shared/usb_replies.rs"]
mod usb_replies;

use libfuzzer_sys::fuzz_target;
use spark_dfu::host::runtime::{Detach, DetachAction, DetachOptions};
use usb_replies::Replies;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let mut machine = Detach::new(DetachOptions {
        interface: u16::from(mode >> 4),
        timeout_ms: 1000,
        will_detach: mode & 1 != 0,
        reenumerate_ms: 5000,
    });
    // Every error a tag can name; a length tag is the byte count itself.
    let mut replies = Replies {
        rest,
        errors: &usb_replies::ERRORS,
        scale: 1,
    };
    let mut next = |n: usize| replies.next(n);
    for _ in 0..64 {
        let Ok(action) = machine.poll_action() else {
            break;
        };
        let step = match action {
            DetachAction::Out(_) | DetachAction::Reset | DetachAction::Reenumerate(_) => {
                let Some(r) = next(0) else { break };
                machine.handle_out(r.map(|_| ()))
            }
            DetachAction::In(setup) => {
                let Some(r) = next(usize::from(setup.length)) else {
                    break;
                };
                machine.handle_in(r.as_deref().map_err(|e| *e))
            }
            DetachAction::Wait(_) => Ok(()),
            DetachAction::Done(_) => break,
        };
        if let Err(e) = step {
            assert_eq!(machine.poll_action(), Err(e));
            break;
        }
    }
    // At most GETSTATUS, DETACH and GETSTATE reach the device.
    assert!(machine.transfers() <= 3);
});
