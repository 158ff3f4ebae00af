//! A virtual Core on `DeviceConnection` and the tokio driver, against a test cloud written here from the crypto and
//! wire layers (the server's half of the handshake, the framing, and the messages the original server sent): the
//! handshake, the patch-version event, Describe, a Tinker call, a variable read, and the OTA of the real deep update
//! that changes the CC3000's version, with the OTA-success flag in the next Hello.

mod common;

use common::{TempDir, server_key};
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_cc3000::ServicePack;
use spark_protocol::crypto::handshake::{
    DEVICE_CREDENTIALS_LEN, Nonce, SESSION_REPLY_LEN, decrypt_device_credentials, seal_session_key,
};
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{Aes128Cbc, FrameDecoder, FrameEncoder, SessionKey};
use spark_protocol::wire::describe::{Description, VarType};
use spark_protocol::wire::hello::HelloPayload;
use spark_protocol::wire::message::{
    Chunk, ChunkReceived, Describe, FunctionCall, FunctionReturn, Hello, UpdateBegin, UpdateDone,
    UpdateReady, VariableRequest,
};
use spark_protocol::wire::ota::UpdateParams;
use spark_protocol::wire::{Header, Message, MessageKind, MessageType, Repr, Role, classify_repr};
use spark_vcore::VirtualCore;
use spark_vcore::image::synthetic_deep_update;
use spark_vcore::link::LinkFaults;
use spark_vcore::run::{SessionEnd, SharedCore, Status, session};
use spark_vcore::tinker::{Bank, Pin};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The cloud's side of one connection.
struct TestCloud {
    io: DuplexStream,
    encoder: FrameEncoder<Aes128Cbc>,
    decoder: FrameDecoder<Aes128Cbc, Vec<u8>>,
    next_id: u16,
    next_token: u8,
    device_hello_flags: u16,
    input: Vec<u8>,
}

impl TestCloud {
    async fn accept(mut io: DuplexStream, device_key: &RsaPrivateKey, expect_id: [u8; 12]) -> Self {
        let mut rng = StdRng::seed_from_u64(99);
        let server_priv = RustCryptoPrivateKey::new(&server_key().as_ref_key()).unwrap();
        let device_pub = RustCryptoPublicKey::new(&device_key.public_key().as_ref_key()).unwrap();
        let nonce = Nonce::generate(&mut rng);
        io.write_all(&nonce.0).await.unwrap();
        let mut creds = [0u8; DEVICE_CREDENTIALS_LEN];
        io.read_exact(&mut creds).await.unwrap();
        let got = decrypt_device_credentials(&server_priv, &mut rng, &nonce, &creds).unwrap();
        assert_eq!(got.device_id, expect_id);
        let session = SessionKey::generate(&mut rng);
        let mut reply = [0u8; SESSION_REPLY_LEN];
        seal_session_key(&device_pub, &server_priv, &mut rng, &session, &mut reply).unwrap();
        io.write_all(&reply).await.unwrap();
        let mut cloud = TestCloud {
            io,
            encoder: session.encoder(),
            decoder: session.decoder(vec![0u8; 1 << 16]),
            next_id: 0x4000,
            next_token: 0,
            device_hello_flags: 0xFFFF,
            input: Vec::new(),
        };
        // The device's Hello, then ours.
        let hello = cloud.recv_kind(MessageKind::Hello).await;
        let repr = Repr::parse_bytes(&hello).unwrap();
        let Ok(Message::Hello(h)) = Message::parse(&repr, MessageKind::Hello) else {
            panic!("not a Hello");
        };
        if let HelloPayload::Core(core) = h.payload {
            cloud.device_hello_flags = core.flags.0;
        }
        let id = cloud.id();
        cloud
            .send(Message::Hello(Hello {
                header: Header::non(id),
                payload: HelloPayload::None,
            }))
            .await;
        cloud
    }

    fn id(&mut self) -> u16 {
        self.next_id = self.next_id.wrapping_add(1);
        self.next_id
    }

    fn token(&mut self) -> u8 {
        self.next_token = self.next_token.wrapping_add(1);
        self.next_token
    }

    async fn send(&mut self, msg: Message<'_>) {
        let plain = msg.to_vec().unwrap();
        let mut out = vec![0u8; plain.len() + 64];
        let n = self.encoder.seal(&plain, &mut out).unwrap();
        self.io.write_all(&out[..n]).await.unwrap();
    }

    /// The next plaintext message from the device.
    async fn recv(&mut self) -> Vec<u8> {
        let mut out = vec![0u8; 1 << 16];
        loop {
            if let Some(n) = self.decoder.poll_message(&mut out).unwrap() {
                return out[..n].to_vec();
            }
            let used = self.decoder.handle_input(&self.input).unwrap();
            self.input.drain(..used);
            if used > 0 {
                continue;
            }
            let mut buf = [0u8; 4096];
            let n = self.io.read(&mut buf).await.unwrap();
            assert!(n > 0, "the device closed the connection");
            self.input.extend_from_slice(&buf[..n]);
        }
    }

    /// Messages until one of `kind` (as the cloud classifies it); others (ACKs) are skipped.
    async fn recv_kind(&mut self, kind: MessageKind) -> Vec<u8> {
        loop {
            let msg = self.recv().await;
            let repr = Repr::parse_bytes(&msg).unwrap();
            if classify_repr(&repr, Role::Cloud) == kind {
                return msg;
            }
        }
    }

    /// Messages until the answer (same token) to a request; returns its payload.
    async fn recv_answer(&mut self, token: u8) -> (Vec<u8>, Vec<u8>) {
        loop {
            let msg = self.recv().await;
            let repr = Repr::parse_bytes(&msg).unwrap();
            if repr.token.as_bytes() == [token] {
                let payload = repr.payload.unwrap_or(&[]).to_vec();
                return (msg, payload);
            }
        }
    }
}

/// The separate response to a request (FunctionReturn, UpdateReady, ChunkReceived): the cloud knows it by the
/// request's token, not by its shape.
async fn separate_response(cloud: &mut TestCloud, token: u8) -> Vec<u8> {
    loop {
        let (msg, _) = cloud.recv_answer(token).await;
        let repr = Repr::parse_bytes(&msg).unwrap();
        if repr.msg_type != MessageType::Acknowledgement {
            return msg;
        }
    }
}

async fn function_return(cloud: &mut TestCloud, token: u8) -> FunctionReturn {
    let msg = separate_response(cloud, token).await;
    FunctionReturn::parse(&Repr::parse_bytes(&msg).unwrap()).unwrap()
}

type Log = Arc<Mutex<Vec<Status>>>;

fn start(
    core: &SharedCore,
    server_pub: &RsaPublicKey,
) -> (DuplexStream, Log, tokio::task::JoinHandle<SessionEnd>) {
    let (device_end, cloud_end) = tokio::io::duplex(1 << 16);
    let log: Log = Arc::default();
    let (core, key, sink) = (core.clone(), server_pub.clone(), log.clone());
    let task = tokio::spawn(async move {
        let mut report = move |s: Status| sink.lock().unwrap().push(s);
        session(
            &core,
            device_end,
            &key,
            LinkFaults::RELIABLE,
            1,
            &mut report,
        )
        .await
        .unwrap()
    });
    (cloud_end, log, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_core_talks_to_a_cloud_and_takes_the_deep_update_over_the_air() {
    let der = common::device_key().to_pkcs1_der();
    let image = synthetic_deep_update(ServicePack::SP_1_28);
    let device_key = RsaPrivateKey::from_der(&der).unwrap();
    let dir = TempDir::new();
    let id = [0x53; 12];
    let mut vc =
        VirtualCore::create_with_identity(&dir.0, ServicePack::SP_1_24, id, device_key.clone())
            .unwrap();
    vc.boot().unwrap();
    let core: SharedCore = Arc::new(Mutex::new(vc));
    let server_pub = server_key().public_key();

    let (io, log, task) = start(&core, &server_pub);
    let mut cloud = TestCloud::accept(io, &device_key, id).await;
    assert_eq!(cloud.device_hello_flags & 1, 0, "no OTA before");

    // The patch version, published once the cloud's Hello arrived.
    let ev = cloud.recv_kind(MessageKind::Event).await;
    let repr = Repr::parse_bytes(&ev).unwrap();
    let Ok(Message::Event(event)) = Message::parse(&repr, MessageKind::Event) else {
        panic!("not an event");
    };
    assert!(event.name == "spark/cc3000-patch-version");
    assert_eq!(event.data, Some(&b"1.24"[..]));
    assert_eq!(event.ttl(), 60);

    // Describe: Tinker's functions and the variables.
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::Describe(Describe {
            header: Header::con(mid).with_token(token),
            flags: None,
        }))
        .await;
    let (_, json) = cloud.recv_answer(token).await;
    let description = Description::parse(&json).unwrap();
    for f in ["digitalread", "digitalwrite", "analogread", "analogwrite"] {
        assert!(description.has_function(f.as_bytes()), "{f} missing");
    }
    assert_eq!(description.variable_type(b"cc3000"), Some(VarType::String));
    assert_eq!(description.variable_type(b"boots"), Some(VarType::Int));

    // digitalwrite D7,HIGH returns 1 and drives the pin.
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::FunctionCall(FunctionCall {
            header: Header::con(mid).with_token(token),
            name: b"digitalwrite",
            argument: Some(b"D7,HIGH"),
        }))
        .await;
    let r = function_return(&mut cloud, token).await;
    assert_eq!(r.value, Some(1));
    assert!(
        core.lock()
            .unwrap()
            .tinker()
            .pin(Pin::new(Bank::D, 7).unwrap())
            .level
    );

    // A bad argument returns Tinker's code.
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::FunctionCall(FunctionCall {
            header: Header::con(mid).with_token(token),
            name: b"analogread",
            argument: Some(b"D3"),
        }))
        .await;
    let r = function_return(&mut cloud, token).await;
    assert_eq!(r.value, Some(-3));

    // The cc3000 variable.
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::VariableRequest(VariableRequest {
            header: Header::con(mid).with_token(token),
            name: b"cc3000",
        }))
        .await;
    let (_, value) = cloud.recv_answer(token).await;
    assert_eq!(value, b"1.24");

    // OTA: UpdateBegin with the size, stop-and-wait chunks, UpdateDone.
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::UpdateBegin(UpdateBegin {
            header: Header::con(mid).with_token(token),
            params: Some(UpdateParams {
                flags: 0,
                chunk_size: 512,
                file_size: image.len() as u32,
                destination: UpdateParams::DESTINATION_FIRMWARE,
                address: 0x0800_5000,
            }),
        }))
        .await;
    let ready = separate_response(&mut cloud, token).await;
    let _ready = UpdateReady::parse(&Repr::parse_bytes(&ready).unwrap()).unwrap();
    for chunk in image.chunks(512) {
        let (token, mid) = (cloud.token(), cloud.id());
        cloud
            .send(Message::Chunk(Chunk::new(
                Header::con(mid).with_token(token),
                None,
                chunk,
            )))
            .await;
        let got = separate_response(&mut cloud, token).await;
        let r = ChunkReceived::parse(&Repr::parse_bytes(&got).unwrap()).unwrap();
        assert!(r.ok);
    }
    let (token, mid) = (cloud.token(), cloud.id());
    cloud
        .send(Message::UpdateDone(UpdateDone {
            header: Header::con(mid).with_token(token),
            result: b"",
        }))
        .await;
    assert_eq!(task.await.unwrap(), SessionEnd::Reboot);
    drop(cloud);
    {
        let log = log.lock().unwrap();
        assert!(log.contains(&Status::Called {
            name: "digitalwrite".into(),
            argument: "D7,HIGH".into(),
            result: 1
        }));
        assert!(log.contains(&Status::UpdateFinished {
            size: image.len() as u32
        }));
    }

    // The reset installs the deep update, which patches the CC3000.
    let report = core.lock().unwrap().boot().unwrap();
    assert_eq!(
        report.patched,
        Some((ServicePack::SP_1_24, ServicePack::SP_1_28))
    );

    // Next connection: the Hello says the OTA succeeded, and the event says 1.28.
    let (io, log, task) = start(&core, &server_pub);
    let mut cloud = TestCloud::accept(io, &device_key, id).await;
    assert_eq!(cloud.device_hello_flags & 1, 1, "OTA-success flag");
    let ev = cloud.recv_kind(MessageKind::Event).await;
    let repr = Repr::parse_bytes(&ev).unwrap();
    let Ok(Message::Event(event)) = Message::parse(&repr, MessageKind::Event) else {
        panic!("not an event");
    };
    assert_eq!(event.data, Some(&b"1.28"[..]));
    // The session ends when the cloud goes away.
    drop(cloud);
    assert_eq!(task.await.unwrap(), SessionEnd::Lost);
    assert!(matches!(
        log.lock().unwrap().first(),
        Some(Status::Connected { ota_succeeded: true, patch_version }) if patch_version == "1.28"
    ));
    // The flag is sent once.
    assert!(!core.lock().unwrap().ota_succeeded());
}
