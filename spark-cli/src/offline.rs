//! The offline commands: firmware binaries, DFU files and CC3000 service-pack images.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde::Serialize;
use spark_cc3000::patch::{Identification, ImageKind, PatchImage, find_embedded};
use spark_dfu::file::DfuFile;
use spark_dfu::file::dfuse::{self, BinImage, DfuseFile, Element};
use spark_dfu::module::{self, Check, Format, ModuleFunction, Outcome as CheckOutcome};
use spark_dfu::platform::{Item, Platform};

use crate::output::{Context, hex, parse_u32};
use crate::{Failure, Outcome};

/// `spark binary ...`
#[derive(Subcommand, Debug)]
pub(crate) enum BinaryCommand {
    /// Describe a firmware binary: platform, module type, addresses, CRC and SHA-256 checks.
    Inspect {
        /// The binary.
        file: PathBuf,
        /// Where a legacy (header-less) Core image is checked to load (default: the Core's user firmware address).
        #[arg(long, value_parser = parse_u32)]
        load_address: Option<u32>,
    },
}

/// `spark dfu ...`
#[derive(Subcommand, Debug)]
pub(crate) enum DfuCommand {
    /// Write a DfuSe file from plain binaries, as `dfuse-pack -b address@alt:file -D vendor:product` does.
    Pack {
        /// `address[@alt]:file`; repeat for more images (a change of alt setting starts a new target).
        #[arg(short = 'b', long = "binary", required = true, value_parser = parse_bin_arg)]
        binaries: Vec<BinArg>,
        /// `vendor:product` in hex for the suffix (default: the Spark Core in DFU mode, 1d50:607f).
        #[arg(short = 'D', long = "device", value_parser = parse_usb_id)]
        device: Option<(u16, u16)>,
        /// The file to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Describe a DFU or DfuSe file: the suffix, and each DfuSe target and element.
    Inspect {
        /// The file.
        file: PathBuf,
    },
}

/// `spark cc3000 ...`
#[derive(Subcommand, Debug)]
pub(crate) enum Cc3000Command {
    /// Identify a CC3000 service-pack image (or the images embedded in a firmware binary).
    Inspect {
        /// The image or binary.
        image: PathBuf,
        /// List every record (address and length) after the summary (`--json` always has them).
        #[arg(long)]
        records: bool,
    },
    /// What the patch programmer would write from a driver and a firmware patch (two image files, or one firmware
    /// binary that embeds both, such as the 2014 deep update); refuses a pair it would refuse.
    Plan {
        /// A firmware binary embedding both images (instead of `--driver` and `--firmware`).
        #[arg(conflicts_with_all = ["driver", "firmware"], required_unless_present_all = ["driver", "firmware"])]
        binary: Option<PathBuf>,
        /// The driver patch image.
        #[arg(long, requires = "firmware")]
        driver: Option<PathBuf>,
        /// The firmware patch image.
        #[arg(long, requires = "driver")]
        firmware: Option<PathBuf>,
        /// The service pack the chip reports now (e.g. `1.24`), to say whether it needs the update.
        #[arg(long)]
        from: Option<String>,
    },
}

/// One `-b address[@alt]:file` argument.
#[derive(Debug, Clone)]
pub(crate) struct BinArg {
    address: u32,
    alt: u8,
    path: PathBuf,
}

fn parse_bin_arg(text: &str) -> Result<BinArg, String> {
    let (place, path) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected address[@alt]:file"))?;
    let (address, alt) = match place.split_once('@') {
        Some((a, alt)) => (
            a,
            alt.parse::<u8>()
                .map_err(|_| format!("`{alt}` is not an alt setting (0-255)"))?,
        ),
        None => (place, 0),
    };
    if path.is_empty() {
        return Err(format!("`{text}`: no file name"));
    }
    Ok(BinArg {
        address: parse_u32(address)?,
        alt,
        path: PathBuf::from(path),
    })
}

fn parse_usb_id(text: &str) -> Result<(u16, u16), String> {
    let (v, p) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}`: expected vendor:product in hex"))?;
    let hex16 = |s: &str| {
        let s = s.trim_start_matches("0x");
        u16::from_str_radix(s, 16).map_err(|_| format!("`{s}` is not a 16-bit hex id"))
    };
    Ok((hex16(v)?, hex16(p)?))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    crate::files::read(path, crate::files::IMAGE)
}

fn function_name(f: ModuleFunction) -> String {
    match f {
        ModuleFunction::None => "none".into(),
        ModuleFunction::Resource => "resource".into(),
        ModuleFunction::Bootloader => "bootloader".into(),
        ModuleFunction::MonoFirmware => "monolithic firmware".into(),
        ModuleFunction::SystemPart => "system part".into(),
        ModuleFunction::UserPart => "user part".into(),
        ModuleFunction::Settings => "settings".into(),
        ModuleFunction::NcpFirmware => "NCP firmware".into(),
        ModuleFunction::RadioStack => "radio stack".into(),
        ModuleFunction::Asset => "asset".into(),
        ModuleFunction::Unknown(n) => format!("unknown ({n})"),
    }
}

fn check_name(c: Check) -> &'static str {
    match c {
        Check::ModuleLength => "module_length",
        Check::Crc => "crc",
        Check::SuffixSize => "suffix_size",
        Check::Sha256 => "sha256",
        Check::LegacySize => "legacy_size",
        Check::StackInSram => "stack_in_sram",
        Check::StackInCoreSram => "stack_in_core_sram",
        Check::ResetInImage => "reset_in_image",
        Check::ExceptionVectorsInImage => "exception_vectors_in_image",
        _ => "other",
    }
}

#[derive(Serialize)]
struct ModuleReport {
    info_offset: usize,
    platform_id: u16,
    platform: Option<&'static str>,
    function: String,
    index: u8,
    version: u16,
    start: String,
    end: String,
    flags: u8,
    dependencies: Vec<DependencyReport>,
}

#[derive(Serialize)]
struct DependencyReport {
    function: String,
    index: u8,
    version: u16,
}

#[derive(Serialize)]
struct CrcReport {
    stored: String,
    computed: String,
    ok: bool,
}

#[derive(Serialize)]
struct BinaryReport {
    file: String,
    size: usize,
    format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    module: Option<ModuleReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crc: Option<CrcReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_id: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    product_version: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_sp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_vector: Option<String>,
    checks: std::collections::BTreeMap<&'static str, bool>,
    ok: bool,
}

/// `spark binary`.
pub(crate) fn binary(ctx: &Context, command: BinaryCommand) -> Outcome {
    let BinaryCommand::Inspect { file, load_address } = command;
    let bytes = read(&file)?;
    let default_load = Platform::Core
        .location(Item::UserFirmware)
        .map_or(0x0800_5000, |l| l.address);
    let found = module::inspect(&bytes, load_address.unwrap_or(default_load));
    let checks: std::collections::BTreeMap<&'static str, bool> = found
        .checks()
        .filter(|(_, o)| *o != CheckOutcome::NotApplicable)
        .map(|(c, o)| (check_name(c), o == CheckOutcome::Passed))
        .collect();
    let (format, module, load) = match found.format {
        Format::Module { offset, info } => (
            "module",
            Some(ModuleReport {
                info_offset: offset,
                platform_id: info.platform_id,
                platform: Platform::from_id(info.platform_id).map(Platform::name),
                function: function_name(info.function),
                index: info.index,
                version: info.version,
                start: format!("0x{:08x}", info.start),
                end: format!("0x{:08x}", info.end),
                flags: info.flags,
                dependencies: info
                    .required()
                    .map(|d| DependencyReport {
                        function: function_name(d.function),
                        index: d.index,
                        version: d.version,
                    })
                    .collect(),
            }),
            None,
        ),
        // A header-less file is a legacy Core image only when its vector table passes every check.
        Format::Legacy { load_address } if found.first_failure().is_none() => {
            ("legacy", None, Some(format!("0x{load_address:08x}")))
        }
        Format::Legacy { .. } => ("not_firmware", None, None),
    };
    let report = BinaryReport {
        file: file.display().to_string(),
        size: bytes.len(),
        format,
        module,
        load_address: load,
        crc: found.crc.map(|c| CrcReport {
            stored: format!("{:08x}", c.stored),
            computed: format!("{:08x}", c.computed),
            ok: c.ok(),
        }),
        sha256: found.suffix.map(|s| hex(s.sha256)),
        product_id: found.suffix.and_then(|s| s.product_id),
        product_version: found.suffix.and_then(|s| s.product_version),
        initial_sp: found.vectors.map(|v| format!("0x{:08x}", v.initial_sp)),
        reset_vector: found.vectors.map(|v| format!("0x{:08x}", v.reset)),
        ok: found.first_failure().is_none(),
        checks,
    };
    let failure = found.first_failure().map(|check| match found.format {
        Format::Legacy { .. } => Failure(format!(
            "{}: not a firmware image: {}",
            report.file,
            check.failure()
        )),
        Format::Module { .. } => Failure(format!("{}: {}", report.file, check.failure())),
    });
    if ctx.json {
        ctx.print_json(&report)?;
    } else {
        print_binary_report(&report);
    }
    failure.map_or(Ok(()), Err)
}

fn print_binary_report(report: &BinaryReport) {
    crate::out!("{}", report.file);
    match (&report.module, &report.crc) {
        (Some(m), Some(crc)) => {
            if crc.ok {
                crate::out!(" CRC is ok ({})", crc.stored);
            } else {
                crate::out!(
                    " CRC failed (should be {} but is {})",
                    crc.computed,
                    crc.stored
                );
            }
            match m.platform {
                Some(p) => crate::out!(
                    " Compiled for {} (platform {})",
                    p.to_lowercase(),
                    m.platform_id
                ),
                None => crate::out!(" Compiled for an unknown platform (id {})", m.platform_id),
            }
            crate::out!(
                " This is a {} number {} at version {}",
                m.function,
                m.index,
                m.version
            );
            crate::out!(" It goes from {} to {}", m.start, m.end);
            for d in &m.dependencies {
                crate::out!(
                    " It depends on a {} number {} at version {}",
                    d.function,
                    d.index,
                    d.version
                );
            }
        }
        _ if report.format == "not_firmware" => {
            crate::out!(" Not a firmware image: no module header, and not a Core vector table");
        }
        _ => {
            crate::out!(
                " No module header: a legacy Core image checked at {}",
                report.load_address.as_deref().unwrap_or("?")
            );
            if let (Some(sp), Some(reset)) = (&report.initial_sp, &report.reset_vector) {
                crate::out!(" Initial stack pointer {sp}, reset vector {reset}");
            }
        }
    }
    for (name, passed) in &report.checks {
        crate::out!(" {name}: {}", if *passed { "ok" } else { "FAILED" });
    }
}

#[derive(Serialize)]
struct SuffixReport {
    vendor: String,
    product: String,
    device: String,
    bcd_dfu: String,
    length: u8,
    crc: String,
    dfuse: bool,
}

#[derive(Serialize)]
struct ElementReport {
    address: String,
    size: usize,
}

#[derive(Serialize)]
struct TargetReport {
    alt: u8,
    name: Option<String>,
    size: u32,
    elements: Vec<ElementReport>,
}

#[derive(Serialize)]
struct DfuReport {
    file: String,
    size: usize,
    suffix: Option<SuffixReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    firmware_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    targets: Option<Vec<TargetReport>>,
}

/// `spark dfu`.
pub(crate) fn dfu(ctx: &Context, command: DfuCommand) -> Outcome {
    match command {
        DfuCommand::Inspect { file } => dfu_inspect(ctx, &file),
        DfuCommand::Pack {
            binaries,
            device,
            output,
        } => dfu_pack(ctx, &binaries, device, &output),
    }
}

fn dfu_inspect(ctx: &Context, file: &Path) -> Outcome {
    let bytes = read(file)?;
    let parsed = DfuFile::parse(&bytes).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    let suffix = parsed.suffix();
    let is_dfuse = bytes.starts_with(&dfuse::SIGNATURE);
    let targets = if is_dfuse {
        let d =
            DfuseFile::parse(&bytes).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
        Some(
            d.targets()
                .map(|t| TargetReport {
                    alt: t.alt(),
                    name: t.name().map(|n| String::from_utf8_lossy(n).into_owned()),
                    size: t.size(),
                    elements: t
                        .elements()
                        .map(|e| ElementReport {
                            address: format!("0x{:08x}", e.address),
                            size: e.data.len(),
                        })
                        .collect(),
                })
                .collect::<Vec<_>>(),
        )
    } else {
        None
    };
    let report = DfuReport {
        file: file.display().to_string(),
        size: bytes.len(),
        suffix: suffix.map(|s| SuffixReport {
            vendor: format!("{:04x}", s.id_vendor),
            product: format!("{:04x}", s.id_product),
            device: format!("{:04x}", s.bcd_device),
            bcd_dfu: format!("{:04x}", s.bcd_dfu),
            length: s.length,
            crc: format!("{:08x}", s.crc),
            dfuse: s.is_dfuse(),
        }),
        firmware_size: (!is_dfuse).then(|| parsed.firmware().len()),
        targets,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    crate::out!("{}", report.file);
    match &report.suffix {
        Some(s) => {
            crate::out!(
                " Suffix: DFU {} (bcdDFU 0x{}), vendor 0x{}, product 0x{}, device 0x{}, length {}, CRC 0x{}",
                if s.dfuse { "DfuSe" } else { "1.0" },
                s.bcd_dfu,
                s.vendor,
                s.product,
                s.device,
                s.length,
                s.crc
            );
        }
        None => crate::out!(" No DFU suffix"),
    }
    if let Some(size) = report.firmware_size {
        crate::out!(" Firmware: {size} bytes");
    }
    if let Some(targets) = &report.targets {
        crate::out!(" DfuSe file with {} target(s)", targets.len());
        for (i, t) in targets.iter().enumerate() {
            crate::out!(
                "  Target {i}: alt {}, name {:?}, {} bytes, {} element(s)",
                t.alt,
                t.name.as_deref().unwrap_or(""),
                t.size,
                t.elements.len()
            );
            for (j, e) in t.elements.iter().enumerate() {
                crate::out!("   Element {j}: address {}, {} bytes", e.address, e.size);
            }
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct PackReport {
    file: String,
    size: usize,
    vendor: String,
    product: String,
    images: usize,
}

fn dfu_pack(ctx: &Context, bins: &[BinArg], device: Option<(u16, u16)>, output: &Path) -> Outcome {
    let contents = bins
        .iter()
        .map(|b| match read(&b.path)? {
            data if data.is_empty() => Err(Failure(format!(
                "{} is empty: nothing to pack",
                b.path.display()
            ))),
            data => Ok(data),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let images: Vec<BinImage<'_>> = bins
        .iter()
        .zip(&contents)
        .map(|(b, data)| BinImage {
            alt: b.alt,
            element: Element {
                address: b.address,
                data,
            },
        })
        .collect();
    let (vendor, product) = device.unwrap_or_else(|| {
        let usb = Platform::Core.dfu_usb();
        (usb.vendor, usb.product)
    });
    let file = dfuse::pack_to_vec(&images, vendor, product)?;
    std::fs::write(output, &file)
        .map_err(|e| Failure(format!("cannot write {}: {e}", output.display())))?;
    let report = PackReport {
        file: output.display().to_string(),
        size: file.len(),
        vendor: format!("{vendor:04x}"),
        product: format!("{product:04x}"),
        images: images.len(),
    };
    ctx.report(&report, |r| {
        format!(
            "Wrote {} ({} bytes, {} image(s), device {}:{})",
            r.file, r.size, r.images, r.vendor, r.product
        )
    })
}

#[derive(Serialize)]
struct PatchReport {
    offset: usize,
    kind: String,
    size: usize,
    records: usize,
    data_size: usize,
    ram_end: String,
    sha256: String,
    known: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reports_version: Option<String>,
    service_packs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hotfix: Option<&'static str>,
    layout: Vec<ElementReport>,
}

#[derive(Serialize)]
struct Cc3000Report {
    file: String,
    size: usize,
    embedded: bool,
    images: Vec<PatchReport>,
}

fn patch_report(offset: usize, image: &PatchImage<'_>, id: Identification) -> PatchReport {
    let known = id.known();
    PatchReport {
        offset,
        kind: match image.kind() {
            ImageKind::Driver => "driver".into(),
            ImageKind::Firmware => "firmware".into(),
            other => other.to_string(),
        },
        size: image.len(),
        records: image.record_count(),
        data_size: image.data_len(),
        ram_end: format!("0x{:08x}", image.ram_end()),
        sha256: hex(&image.sha256()),
        known: known.is_some(),
        name: known.map(|k| k.name),
        label: known.and_then(|k| k.label),
        reports_version: known.and_then(|k| k.reports).map(|v| v.to_string()),
        service_packs: known
            .map(|k| k.service_packs.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        hotfix: known.and_then(|k| k.hotfix),
        layout: image
            .records()
            .map(|r| ElementReport {
                address: format!("0x{:08x}", r.address),
                size: r.data.len(),
            })
            .collect(),
    }
}

/// `spark cc3000`.
pub(crate) fn cc3000(ctx: &Context, command: Cc3000Command) -> Outcome {
    match command {
        Cc3000Command::Inspect { image, records } => cc3000_inspect(ctx, &image, records),
        Cc3000Command::Plan {
            binary,
            driver,
            firmware,
            from,
        } => cc3000_plan(
            ctx,
            binary.as_deref(),
            driver.as_deref(),
            firmware.as_deref(),
            from.as_deref(),
        ),
    }
}

#[derive(Serialize)]
struct FileWrite {
    file: u8,
    what: &'static str,
    source: String,
    size: usize,
    writes: usize,
    sha256: String,
}

#[derive(Serialize)]
struct TableEntry {
    file: u8,
    address: String,
    length: usize,
}

#[derive(Serialize)]
struct PlanReport {
    driver: Option<&'static str>,
    firmware: Option<&'static str>,
    service_pack: Option<String>,
    expected_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    needs_update: Option<bool>,
    write_chunk: usize,
    patch_writes: Vec<FileWrite>,
    table: Vec<TableEntry>,
    restored: Vec<&'static str>,
}

/// The driver and firmware patch images for `cc3000 plan`, with where each came from.
fn plan_sources(
    binary: Option<&Path>,
    driver: Option<&Path>,
    firmware: Option<&Path>,
) -> Result<(Vec<u8>, Vec<u8>, String, String), Failure> {
    let (driver_bytes, firmware_bytes, driver_src, firmware_src);
    match (binary, driver, firmware) {
        (Some(bin), _, _) => {
            let bytes = read(bin)?;
            let found: Vec<_> = find_embedded(&bytes).collect();
            let pick = |kind: ImageKind| {
                let mut it = found.iter().filter(|e| e.image.kind() == kind);
                match (it.next(), it.next()) {
                    (Some(e), None) => Ok((e.image.as_bytes().to_vec(), e.offset)),
                    (None, _) => Err(Failure(format!("{}: no {kind} embedded", bin.display()))),
                    (Some(_), Some(_)) => Err(Failure(format!(
                        "{}: several {kind}es embedded; pass --driver and --firmware",
                        bin.display()
                    ))),
                }
            };
            let (d, d_at) = pick(ImageKind::Driver)?;
            let (f, f_at) = pick(ImageKind::Firmware)?;
            driver_src = format!("{} at 0x{d_at:x}", bin.display());
            firmware_src = format!("{} at 0x{f_at:x}", bin.display());
            driver_bytes = d;
            firmware_bytes = f;
        }
        (None, Some(d), Some(f)) => {
            driver_bytes = read(d)?;
            firmware_bytes = read(f)?;
            driver_src = d.display().to_string();
            firmware_src = f.display().to_string();
        }
        _ => return Err(Failure("give a binary, or --driver and --firmware".into())),
    }
    Ok((driver_bytes, firmware_bytes, driver_src, firmware_src))
}

fn cc3000_plan(
    ctx: &Context,
    binary: Option<&Path>,
    driver: Option<&Path>,
    firmware: Option<&Path>,
    from: Option<&str>,
) -> Outcome {
    use spark_cc3000::nvmem::{FatTable, FileId};
    use spark_cc3000::programmer::{Config, Programmer};

    let (driver_bytes, firmware_bytes, driver_src, firmware_src) =
        plan_sources(binary, driver, firmware)?;
    let config = Config::default();
    let programmer = Programmer::new(&driver_bytes, &firmware_bytes, config)
        .map_err(|e| Failure(format!("the programmer refuses these images: {e}")))?;
    let d = programmer.driver();
    let f = programmer.firmware();
    let d_known = d.identify().known();
    let f_known = f.identify().known();
    let service_pack = d_known
        .and_then(|k| k.service_packs.first())
        .map(ToString::to_string);
    let expected = programmer.expected_version();
    let from_sp = from
        .map(|v| {
            v.parse::<spark_cc3000::ServicePack>()
                .map_err(|e| Failure(format!("--from {v}: {e}")))
        })
        .transpose()?;
    let chunk = config.write_chunk;
    let write = |file: FileId, what, source: &str, image: &PatchImage<'_>| FileWrite {
        file: file.id(),
        what,
        source: source.to_owned(),
        size: image.len(),
        writes: image.len().div_ceil(chunk),
        sha256: hex(&image.sha256()),
    };
    let table = FatTable::programmer_default();
    let report = PlanReport {
        driver: d_known.map(|k| k.name),
        firmware: f_known.map(|k| k.name),
        service_pack,
        expected_version: expected.map(|v| v.to_string()),
        from: from_sp.map(|v| v.to_string()),
        needs_update: match (from_sp, expected) {
            (Some(now), Some(target)) => Some(now.needs_update_to(target)),
            _ => None,
        },
        write_chunk: chunk,
        patch_writes: vec![
            write(FileId::WlanDriverSp, "driver patch", &driver_src, d),
            write(FileId::WlanFwSp, "firmware patch", &firmware_src, f),
        ],
        table: table
            .entries()
            .iter()
            .enumerate()
            .filter(|(_, e)| e.length != 0)
            .map(|(i, e)| TableEntry {
                file: i as u8,
                address: format!("0x{:04x}", e.address),
                length: usize::from(e.length),
            })
            .collect(),
        restored: vec![
            "radio parameters (file 11)",
            "WLAN configuration (file 2, first 100 bytes)",
            "MAC address (file 6)",
            "Spark user file 14 (when unreadable)",
        ],
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    print_plan(&report, chunk);
    Ok(())
}

fn print_plan(report: &PlanReport, chunk: usize) {
    crate::out!(
        "CC3000 patch plan: driver {}, firmware {}",
        report.driver.unwrap_or("(unknown image)"),
        report.firmware.unwrap_or("(unknown image)")
    );
    if let Some(v) = &report.expected_version {
        crate::out!(" The chip will report {v} afterwards");
    }
    if let (Some(now), Some(needs)) = (&report.from, report.needs_update) {
        crate::out!(
            " A chip on {now} {}",
            if needs {
                "needs this update"
            } else {
                "does not need this update"
            }
        );
    }
    crate::out!(
        " Writes, each read back and verified, only where the file differs ({chunk}-byte chunks):"
    );
    for w in &report.patch_writes {
        crate::out!(
            "  file {}: {} from {}, {} bytes in {} writes",
            w.file,
            w.what,
            w.source,
            w.size,
            w.writes
        );
    }
    crate::out!(
        " Restored after a table rewrite: {}",
        report.restored.join(", ")
    );
    crate::out!(" File table it enforces (rewritten only when the layout differs):");
    for e in &report.table {
        crate::out!("  file {:2}: {} {} bytes", e.file, e.address, e.length);
    }
}

fn cc3000_inspect(ctx: &Context, image: &Path, records: bool) -> Outcome {
    let bytes = read(image)?;
    let (embedded, images) = match PatchImage::parse(&bytes) {
        Ok(p) => (false, vec![patch_report(0, &p, p.identify())]),
        Err(direct) => {
            let found: Vec<PatchReport> = find_embedded(&bytes)
                .map(|e| patch_report(e.offset, &e.image, e.identification))
                .collect();
            if found.is_empty() {
                return Err(Failure(format!(
                    "{}: not a CC3000 service-pack image ({direct}) and none is embedded in it",
                    image.display()
                )));
            }
            (true, found)
        }
    };
    let report = Cc3000Report {
        file: image.display().to_string(),
        size: bytes.len(),
        embedded,
        images,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    crate::out!("{} ({} bytes)", report.file, report.size);
    crate::out!(" {}", cc3000_summary(&report));
    for p in &report.images {
        if report.embedded {
            crate::out!(" Embedded image at offset 0x{:x}:", p.offset);
        }
        match p.name {
            Some(name) => crate::out!(
                "  {} patch {}{}: service pack {}{}",
                p.kind,
                name,
                p.label.map(|l| format!(" ({l})")).unwrap_or_default(),
                p.service_packs.join(", "),
                p.hotfix
                    .map(|h| format!(", hotfix {h}"))
                    .unwrap_or_default()
            ),
            None => crate::out!("  {} patch, not a published service pack", p.kind),
        }
        if let Some(v) = &p.reports_version {
            crate::out!("  The chip reports {v} once it is burnt");
        }
        crate::out!(
            "  {} bytes, {} record(s), {} data bytes, RAM end {}",
            p.size,
            p.records,
            p.data_size,
            p.ram_end
        );
        crate::out!("  SHA-256 {}", p.sha256);
        if records {
            for r in &p.layout {
                crate::out!("   {} {} bytes", r.address, r.size);
            }
        }
    }
    if !records {
        crate::out!(" (--records lists each record's address and length)");
    }
    Ok(())
}

/// One line: how many images, of which kind, and which service pack they make.
fn cc3000_summary(report: &Cc3000Report) -> String {
    let images: Vec<String> = report
        .images
        .iter()
        .map(|p| {
            let name = p.name.unwrap_or("unknown");
            match p.service_packs.first() {
                Some(sp) => format!("{} patch {name} (service pack {sp})", p.kind),
                None => format!("{} patch {name}", p.kind),
            }
        })
        .collect();
    format!(
        "{} CC3000 image(s){}: {}",
        images.len(),
        if report.embedded { " embedded" } else { "" },
        images.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bin_arguments_like_dfuse_pack() {
        let a = parse_bin_arg("0x08005000:fw.bin").unwrap();
        assert_eq!(
            (a.address, a.alt, a.path.to_str()),
            (0x0800_5000, 0, Some("fw.bin"))
        );
        let b = parse_bin_arg("4096@1:dir/x:y.bin").unwrap();
        assert_eq!(
            (b.address, b.alt, b.path.to_str()),
            (4096, 1, Some("dir/x:y.bin"))
        );
        for bad in [
            "fw.bin",
            "0x1000:",
            "0x1000@256:f",
            "0xzz:f",
            "@1:f",
            "0x100000000:f",
        ] {
            assert!(parse_bin_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn usb_ids_in_hex() {
        assert_eq!(parse_usb_id("1d50:607f"), Ok((0x1d50, 0x607f)));
        assert_eq!(parse_usb_id("0x0483:0xdf11"), Ok((0x0483, 0xdf11)));
        for bad in ["1d50", "1d50:", "10000:1", "g:1"] {
            assert!(parse_usb_id(bad).is_err(), "{bad}");
        }
    }
}
