//! `spark keys new|server|load|save`: device key pairs and server-key images; `server` also writes the image to
//! the device over DFU, `load` and `save` move the device key (in [`crate::usb`]).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use spark_dfu::platform::server_key::{self, ServerAddress, ServerKeyImage};
use spark_dfu::platform::{Platform, Transport};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::dtls;

use crate::output::Context;
use crate::{Failure, Outcome};

/// `spark keys ...`
#[derive(Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// Generate a device key pair: `<name>.pem` (private), `<name>.pub.pem` (public) and `<name>.der` (private,
    /// PKCS#1 DER, as the device stores it), like particle-cli `keys new`. With `--ec`, a P-256 pair for a UDP
    /// device (Electron and later): SEC1 PEM, SPKI PEM, and SEC1 DER as the device keeps it in its DCT.
    New {
        /// The base file name.
        #[arg(default_value = "device")]
        name: PathBuf,
        /// Key size in bits, 1024 to 4096 (1024 for a Spark Core).
        #[arg(long, default_value_t = 1024, conflicts_with = "ec")]
        bits: usize,
        /// A P-256 (EC) key for the UDP protocol instead of an RSA key.
        #[arg(long)]
        ec: bool,
    },
    /// Write a server public key with the server's address in the device's storage form to a file and, unless
    /// `--file-only`, to the device over DFU.
    Server(ServerArgs),
    #[command(flatten)]
    Device(crate::usb::DeviceKeyCommand),
    /// Read the server address the device connects to (the record in its server-key image, over DFU), or write a
    /// new one with `--host` (and `--port`), keeping the key.
    Address {
        /// The new server address: an IPv4 address or a host name.
        #[arg(long)]
        host: Option<String>,
        /// The new server port (with `--host`).
        #[arg(long, requires = "host")]
        port: Option<u16>,
        #[command(flatten)]
        select: crate::usb::Select,
    },
    /// Give a device a new key pair: generate it, write the private key over DFU (the old one saved first), send
    /// the public key to the cloud, as particle-cli `keys doctor` does. With `--ec`, a P-256 key for a UDP device,
    /// written to its UDP key place (DCT offset 3106) and sent as `ecc`.
    Doctor {
        /// The device id (24 hex digits).
        device: String,
        /// Key size in bits, 1024 to 4096.
        #[arg(long, default_value_t = 1024, conflicts_with = "ec")]
        bits: usize,
        /// A P-256 (EC) key for the UDP protocol instead of an RSA key.
        #[arg(long)]
        ec: bool,
        #[command(flatten)]
        select: crate::usb::Select,
        #[command(flatten)]
        cloud: crate::cloud::Settings,
    },
    /// Provision a device's public key with the cloud (`POST /v1/provisioning/<id>`), as particle-cli `keys send`:
    /// the key file may be the device's private key (PEM or DER, e.g. `spark keys save` output or a virtual Core's
    /// `core_private_key.der`), whose public half is sent, or its public key.
    Send {
        /// The device id (24 hex digits).
        device: String,
        /// The device's key file.
        key: PathBuf,
        #[command(flatten)]
        cloud: crate::cloud::Settings,
    },
}

/// The public half of a key file holding an RSA private or public key, PEM or DER.
pub(crate) fn public_key_of(path: &Path) -> Result<RsaPublicKey, Failure> {
    let bytes = crate::files::read(path, crate::files::KEY)?;
    let bad = || {
        Failure(format!(
            "{}: not an RSA key (private or public, PEM or DER)",
            path.display()
        ))
    };
    if let Ok(text) = std::str::from_utf8(&bytes)
        && text.contains("-----BEGIN")
    {
        return match RsaPrivateKey::from_pem(text) {
            Ok(private) => Ok(private.public_key()),
            Err(_) => RsaPublicKey::from_pem(text).map_err(|_| bad()),
        };
    }
    // DER, possibly padded with 0xFF as the device stores it: read the DER value only.
    let len = server_key::der_len(&bytes).map_err(|_| bad())?;
    let der = &bytes[..len];
    match RsaPrivateKey::from_der(der) {
        Ok(private) => Ok(private.public_key()),
        Err(_) => RsaPublicKey::from_der(der).map_err(|_| bad()),
    }
}

/// The public half of a key file holding a P-256 private or public key, PEM or DER; `None` if it holds none.
pub(crate) fn ec_public_key_of(path: &Path) -> Result<Option<dtls::PublicKey>, Failure> {
    use spark_cloud::udp::keys;
    let bytes = crate::files::read(path, crate::files::KEY)?;
    if let Ok(text) = std::str::from_utf8(&bytes)
        && text.contains("-----BEGIN")
    {
        return Ok(keys::private_key_from_pem(text)
            .map(|k| k.public_key())
            .or_else(|_| keys::public_key_from_pem(text))
            .ok());
    }
    // DER, possibly padded as the device stores it (0xFF or zeros): read the DER value only.
    let Ok(len) = server_key::der_len(&bytes) else {
        return Ok(None);
    };
    let der = &bytes[..len];
    Ok(dtls::PrivateKey::from_der(der)
        .map(|k| k.public_key())
        .or_else(|_| dtls::PublicKey::from_spki(der))
        .ok())
}

#[derive(Serialize)]
struct SendReport {
    device: String,
    key: String,
    key_bits: usize,
    algorithm: &'static str,
}

/// `spark keys send`.
async fn send(
    ctx: &Context,
    settings: &crate::cloud::Settings,
    device: String,
    key: &Path,
) -> Outcome {
    // A P-256 key is a UDP device's ("ecc", as particle-cli says); anything else must be RSA.
    let (pem, bits, algorithm) = match ec_public_key_of(key)? {
        Some(ec) => (spark_cloud::udp::keys::public_key_pem(&ec), 256, "ecc"),
        None => {
            let public = public_key_of(key)?;
            (public.to_spki_pem()?, public.bits(), "rsa")
        }
    };
    let api = crate::cloud::client(settings)?;
    api.send_public_key(&device, &pem, Some(algorithm))
        .await
        .map_err(crate::cloud::api_failure)?;
    let report = SendReport {
        device,
        key: key.display().to_string(),
        key_bits: bits,
        algorithm,
    };
    ctx.report(&report, |r| {
        let kind = if r.algorithm == "ecc" { "P-256" } else { "RSA" };
        format!(
            "Sent the {}-bit {kind} public key of {} for device {}",
            r.key_bits, r.key, r.device
        )
    })
}

/// `spark keys server`.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// The server public key (PEM or DER): RSA for the TCP protocol, or P-256 (such as spark-cloud's
    /// `udp_key.pub.pem`) for the UDP protocol's place (DCT offset 3298, 320 bytes).
    key: PathBuf,
    /// Insist on a P-256 key for the UDP protocol (a P-256 key file implies it).
    #[arg(long)]
    ec: bool,
    /// The server address: an IPv4 address or a host name.
    #[arg(long)]
    host: Option<String>,
    /// The server port.
    #[arg(long)]
    port: Option<u16>,
    /// The platform whose storage form to write (default: the device's; core with `--file-only`).
    #[arg(long)]
    platform: Option<String>,
    /// The file to write (default: `<key>.der` beside the key, with `-<host>` when a host is given).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Only write the file; do not touch a device.
    #[arg(long)]
    file_only: bool,
    #[command(flatten)]
    select: crate::usb::Select,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    crate::output::write_private(path, bytes)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[derive(Serialize)]
struct NewReport {
    bits: usize,
    private_pem: String,
    public_pem: String,
    private_der: String,
}

#[derive(Serialize)]
struct ServerReport {
    file: String,
    protocol: &'static str,
    platform: &'static str,
    size: usize,
    key_size: usize,
    host: Option<String>,
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<crate::usb::DeviceWrite>,
}

fn platform_named(name: &str) -> Result<Platform, Failure> {
    spark_dfu::platform::ALL
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| Failure(format!("unknown platform `{name}`")))
}

/// `spark keys`.
pub(crate) fn keys(ctx: &Context, command: KeysCommand) -> Outcome {
    match command {
        KeysCommand::Device(c) => crate::usb::device_key(ctx, c),
        KeysCommand::Send { device, key, cloud } => {
            crate::run_async(send(ctx, &cloud, device, &key))
        }
        KeysCommand::Address { host, port, select } => {
            crate::usb::server_address(ctx, &select, host.as_deref(), port)
        }
        KeysCommand::Doctor {
            device,
            bits,
            ec,
            select,
            cloud,
        } => {
            let kind = if ec { NewKey::P256 } else { NewKey::Rsa(bits) };
            doctor(ctx, &cloud, &select, &device, kind)
        }
        KeysCommand::New { name, ec: true, .. } => new_ec_key(ctx, &name),
        KeysCommand::New { name, bits, .. } => new_key(ctx, &name, bits),
        KeysCommand::Server(args) => server(ctx, args),
    }
}

/// The RSA key sizes `keys new` and `keys doctor` make: from 1024 bits (a Core's size, and the smallest the RSA
/// implementation generates; shorter keys are factorable) to 4096.
const RSA_BITS: core::ops::RangeInclusive<usize> = 1024..=4096;

/// Refuses an RSA size outside [`RSA_BITS`] before any file is touched.
fn check_rsa_bits(bits: usize) -> Result<(), Failure> {
    if RSA_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(Failure(format!(
            "{bits} bits: choose {} to {} (a Core uses 1024)",
            RSA_BITS.start(),
            RSA_BITS.end()
        )))
    }
}

/// `spark keys new`.
fn new_key(ctx: &Context, name: &Path, bits: usize) -> Outcome {
    check_rsa_bits(bits)?;
    let spinner = ctx.spinner(format!("generating a {bits}-bit RSA key"));
    let key = RsaPrivateKey::generate(&mut rand::rng(), bits);
    spinner.finish_and_clear();
    let key = key?;
    let private_pem = with_suffix(name, ".pem");
    let public_pem = with_suffix(name, ".pub.pem");
    let private_der = with_suffix(name, ".der");
    write_secret(&private_pem, key.to_pkcs1_pem()?.as_bytes())?;
    let public = key.public_key();
    write(&public_pem, public.to_spki_pem()?.as_bytes())?;
    write_secret(&private_der, &key.to_pkcs1_der())?;
    let report = NewReport {
        bits: key.bits(),
        private_pem: private_pem.display().to_string(),
        public_pem: public_pem.display().to_string(),
        private_der: private_der.display().to_string(),
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    crate::out!("New key {} created!", report.private_pem);
    crate::out!(
        "Public key {}, device form {}",
        report.public_pem,
        report.private_der
    );
    Ok(())
}

/// `spark keys new --ec`: a P-256 pair for a UDP device.
fn new_ec_key(ctx: &Context, name: &Path) -> Outcome {
    use spark_cloud::udp::keys;
    let key = dtls::PrivateKey::generate(&mut rand::rng());
    let private_pem = with_suffix(name, ".pem");
    let public_pem = with_suffix(name, ".pub.pem");
    let private_der = with_suffix(name, ".der");
    write_secret(&private_pem, keys::private_key_pem(&key).as_bytes())?;
    write(
        &public_pem,
        keys::public_key_pem(&key.public_key()).as_bytes(),
    )?;
    let mut der = key.to_sec1_der();
    let written = write_secret(&private_der, &der);
    der.fill(0);
    written?;
    let report = NewReport {
        bits: 256,
        private_pem: private_pem.display().to_string(),
        public_pem: public_pem.display().to_string(),
        private_der: private_der.display().to_string(),
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    crate::out!("New P-256 key {} created!", report.private_pem);
    crate::out!(
        "Public key {}, device form {} (SEC1 DER, the UDP device key at DCT offset {})",
        report.public_pem,
        report.private_der,
        spark_dfu::platform::dct::UDP_DEVICE_PRIVATE_KEY
    );
    Ok(())
}

/// The platform whose server-key form `keys server` writes: `--platform`, checked against the device unless
/// `--file-only` (then the Core by default, or the Electron for a UDP key).
fn server_platform(
    named: Option<&str>,
    file_only: bool,
    protocol: Transport,
    select: &crate::usb::Select,
) -> Result<Platform, Failure> {
    let named = named.map(platform_named).transpose()?;
    if file_only {
        return Ok(named.unwrap_or(match protocol {
            Transport::Tcp => Platform::Core,
            Transport::Udp => Platform::Electron,
        }));
    }
    let found = crate::usb::device_platform(select)?;
    match named.filter(|&p| p != found) {
        Some(p) => Err(Failure(format!(
            "--platform {} given, but the device is a {}",
            p.name(),
            found.name()
        ))),
        None => Ok(found),
    }
}

/// `spark keys server`.
fn server(ctx: &Context, args: ServerArgs) -> Outcome {
    let ServerArgs {
        key,
        ec,
        host,
        port,
        platform,
        output,
        file_only,
        select,
    } = args;
    // The key's type picks the protocol: a P-256 key is the UDP server's.
    let ec_key = ec_public_key_of(&key)?;
    let protocol = match (&ec_key, ec) {
        (Some(_), _) => Transport::Udp,
        (None, true) => {
            return Err(Failure(format!(
                "{}: --ec given, but the file holds no P-256 key",
                key.display()
            )));
        }
        (None, false) => Transport::Tcp,
    };
    let platform = server_platform(platform.as_deref(), file_only, protocol, &select)?;
    let format = server_key_format(platform, protocol)?;
    let der = match ec_key {
        Some(public) => public.to_spki().to_vec(),
        None => {
            let bytes = crate::files::read(&key, crate::files::KEY)?;
            match std::str::from_utf8(&bytes) {
                Ok(text) if text.contains("-----BEGIN") => RsaPublicKey::from_pem(text),
                // A DER key, possibly already padded into a storage image: read the DER value only.
                _ => RsaPublicKey::from_der(&bytes[..server_key::der_len(&bytes)?]),
            }
            .map_err(|e| Failure(format!("{}: {e}", key.display())))?
            .to_spki_der()
        }
    };
    let address = host.as_deref().map(|h| match h.parse::<Ipv4Addr>() {
        Ok(ip) => ServerAddress::Ipv4(ip.octets()),
        Err(_) => ServerAddress::Domain {
            name: h.as_bytes(),
            // As in the published images: the name is followed by a NUL.
            nul: true,
        },
    });
    let mut image = vec![0u8; format.len];
    let n = ServerKeyImage::emit(&der, format, address, port, &mut image)?;
    image.truncate(n);
    let output = output.unwrap_or_else(|| {
        let stem = key.with_extension("");
        match &host {
            Some(h) => with_suffix(&stem, &format!("-{h}.der")),
            None => with_suffix(&stem, ".der"),
        }
    });
    write(&output, &image)?;
    let device = if file_only {
        None
    } else {
        Some(crate::usb::write_server_key(
            ctx, &select, protocol, &image,
        )?)
    };
    let report = ServerReport {
        file: output.display().to_string(),
        protocol: crate::usb::protocol_name(protocol),
        platform: platform.name(),
        size: image.len(),
        key_size: der.len(),
        host,
        port,
        device,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    if let Some(d) = &report.device {
        crate::out!(
            "Wrote the server key ({} bytes) to the {} at {} (alt {}); your device will not restart",
            d.bytes,
            d.platform,
            d.address,
            d.alt
        );
    }
    crate::out!(
        "Wrote {} ({} bytes for the {}{})",
        report.file,
        report.size,
        report.platform,
        report
            .host
            .as_ref()
            .map(|h| format!(", server {h}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The server-key image form for `protocol` on `platform`: the Core's, the DCT's RSA (TCP, offset 2082) or the
/// DCT's EC (UDP, offset 3298, the address record at 192); refused where the platform has no such place.
fn server_key_format(
    platform: Platform,
    protocol: Transport,
) -> Result<server_key::KeyFormat, Failure> {
    spark_dfu::ops::server_key_item(platform, protocol)
        .map_err(|e| crate::usb::op_failure("the server key", e))?;
    Ok(match (platform, protocol) {
        (Platform::Core, _) => server_key::KeyFormat::CORE,
        (_, Transport::Tcp) => server_key::KeyFormat::DCT_RSA,
        (_, Transport::Udp) => server_key::KeyFormat::DCT_EC,
    })
}

/// The key `keys doctor` makes.
#[derive(Debug, Clone, Copy)]
enum NewKey {
    /// RSA of this many bits (TCP).
    Rsa(usize),
    /// P-256 (UDP).
    P256,
}

#[derive(Serialize)]
struct DoctorReport {
    device: String,
    algorithm: &'static str,
    bits: usize,
    private_pem: String,
    backup: Option<String>,
    sent: bool,
}

/// `spark keys doctor`: a new key pair, written over DFU, then sent to the cloud.
fn doctor(
    ctx: &Context,
    cloud: &crate::cloud::Settings,
    select: &crate::usb::Select,
    device: &str,
    kind: NewKey,
) -> Outcome {
    if let NewKey::Rsa(bits) = kind {
        check_rsa_bits(bits)?;
    }
    if device.len() != 24 || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure(format!(
            "`{device}` is not a device id (24 hex digits)"
        )));
    }
    // Checked before anything changes: a logged-out doctor would leave the device with a key the cloud lacks.
    crate::cloud::client(cloud)?;
    let private_pem = PathBuf::from(format!("{device}_new.pem"));
    let backup = PathBuf::from(format!("{device}_old.der"));
    // The new key as the device stores it, and what the cloud is given.
    let (protocol, mut device_der, public_pem, algorithm, bits) = match kind {
        NewKey::Rsa(bits) => {
            let key = RsaPrivateKey::generate(&mut rand::rng(), bits)?;
            write_secret(&private_pem, key.to_pkcs1_pem()?.as_bytes())?;
            let public = key.public_key().to_spki_pem()?;
            (
                Transport::Tcp,
                key.to_pkcs1_der().to_vec(),
                public,
                "rsa",
                key.bits(),
            )
        }
        NewKey::P256 => {
            use spark_cloud::udp::keys;
            let key = dtls::PrivateKey::generate(&mut rand::rng());
            write_secret(&private_pem, keys::private_key_pem(&key).as_bytes())?;
            let public = keys::public_key_pem(&key.public_key());
            (
                Transport::Udp,
                key.to_sec1_der().to_vec(),
                public,
                "ecc",
                256,
            )
        }
    };
    let replaced = crate::usb::replace_device_key(ctx, select, protocol, &device_der, &backup);
    device_der.fill(0);
    let had_key = replaced?;
    crate::run_async(async {
        let api = crate::cloud::client(cloud)?;
        api.send_public_key(device, &public_pem, Some(algorithm))
            .await
            .map_err(|e| {
                Failure(format!(
                    "the device has its new key but the cloud does not ({}); run `spark keys send {device} {}`",
                    crate::cloud::api_failure(e).0,
                    private_pem.display()
                ))
            })
    })?;
    let report = DoctorReport {
        device: device.to_owned(),
        algorithm,
        bits,
        private_pem: private_pem.display().to_string(),
        backup: had_key.then(|| backup.display().to_string()),
        sent: true,
    };
    if ctx.json {
        return ctx.print_json(&report);
    }
    if let Some(b) = &report.backup {
        crate::out!("Saved the device's old key to {b}");
    }
    crate::out!(
        "Wrote a new {}-bit {} key to the device and sent its public half to the cloud (private key: {})",
        report.bits,
        if report.algorithm == "ecc" {
            "P-256"
        } else {
            "RSA"
        },
        report.private_pem
    );
    Ok(())
}
