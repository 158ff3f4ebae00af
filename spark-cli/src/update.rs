//! `spark update`: the Core's deep update over USB, as particle-cli offered it for the Core (`spark flash --usb
//! deep_update_2014_06`): Spark's image, which carries the CC3000 service pack, written at the user-firmware address
//! over DFU; the Core then resets into it and it patches the CC3000.

use std::path::PathBuf;

use clap::Args;
use spark_cc3000::patch::{ImageKind, find_embedded};

use crate::output::Context;
use crate::usb::{FlashArgs, Select};
use crate::{Failure, Outcome};

/// Where a user finds the image (facts from the 2014 spark-cli releases).
const WHERE_TO_GET_IT: &str = "Spark's deep update is `deep_update_2014_06.bin`: it shipped as \
binaries/deep_update_2014_06.bin in the spark-cli npm package from 0.3.93 (July 2014) and in particle-cli until \
2021; pass it with --image";

/// `spark update`.
#[derive(Args, Debug)]
pub(crate) struct UpdateArgs {
    /// The deep-update image (`deep_update_2014_06.bin`).
    #[arg(long, value_name = "FILE")]
    image: Option<PathBuf>,
    #[command(flatten)]
    select: Select,
}

/// `spark update`: checks that the image is a deep update (a firmware image with a CC3000 driver and firmware patch
/// inside), then flashes it as `flash --usb` does and leaves DFU mode so the Core boots it.
pub(crate) fn update(ctx: &Context, args: UpdateArgs) -> Outcome {
    let Some(image) = args.image else {
        return Err(Failure(format!("no image given. {WHERE_TO_GET_IT}")));
    };
    let bytes = crate::files::read(&image, crate::files::IMAGE).map_err(|Failure(e)| {
        Failure(if image.exists() {
            e
        } else {
            format!("{e}. {WHERE_TO_GET_IT}")
        })
    })?;
    crate::usb::firmware_check(&image, &bytes)?;
    let kinds: Vec<ImageKind> = find_embedded(&bytes).map(|e| e.image.kind()).collect();
    if !kinds.contains(&ImageKind::Driver) || !kinds.contains(&ImageKind::Firmware) {
        return Err(Failure(format!(
            "{}: not a deep update (no CC3000 service pack inside). {WHERE_TO_GET_IT}",
            image.display()
        )));
    }
    crate::usb::flash(ctx, FlashArgs::user_firmware(&image, args.select))?;
    if !ctx.json {
        crate::out!(
            "The Core now boots the deep update, which patches its CC3000 (it blinks magenta while it does) and \
             reconnects; `spark info <device>` then shows the new service pack."
        );
    }
    Ok(())
}
