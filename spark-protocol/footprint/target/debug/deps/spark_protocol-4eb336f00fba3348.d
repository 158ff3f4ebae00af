/work/main/spark-protocol/footprint/target/debug/deps/spark_protocol-4eb336f00fba3348.d: /work/main/spark-protocol/src/lib.rs /work/main/spark-protocol/src/crypto/mod.rs /work/main/spark-protocol/src/crypto/backend.rs /work/main/spark-protocol/src/crypto/cipher.rs /work/main/spark-protocol/src/crypto/framing.rs /work/main/spark-protocol/src/crypto/handshake.rs /work/main/spark-protocol/src/crypto/keys/mod.rs /work/main/spark-protocol/src/crypto/keys/der.rs /work/main/spark-protocol/src/crypto/keys/pem.rs /work/main/spark-protocol/src/crypto/keys/storage.rs /work/main/spark-protocol/src/crypto/rng.rs /work/main/spark-protocol/src/crypto/session.rs /work/main/spark-protocol/src/crypto/fixed.rs /work/main/spark-protocol/src/crypto/fixed/montgomery.rs /work/main/spark-protocol/src/id.rs /work/main/spark-protocol/src/session/mod.rs /work/main/spark-protocol/src/session/device/mod.rs /work/main/spark-protocol/src/session/device/sink.rs /work/main/spark-protocol/src/session/device/handshake.rs /work/main/spark-protocol/src/session/driver/mod.rs /work/main/spark-protocol/src/session/driver/asynch.rs /work/main/spark-protocol/src/session/time.rs /work/main/spark-protocol/src/variable.rs /work/main/spark-protocol/src/wire/mod.rs /work/main/spark-protocol/src/wire/classify.rs /work/main/spark-protocol/src/wire/coap.rs /work/main/spark-protocol/src/wire/describe.rs /work/main/spark-protocol/src/wire/hello.rs /work/main/spark-protocol/src/wire/limits.rs /work/main/spark-protocol/src/wire/message.rs /work/main/spark-protocol/src/wire/ota.rs

/work/main/spark-protocol/footprint/target/debug/deps/libspark_protocol-4eb336f00fba3348.rmeta: /work/main/spark-protocol/src/lib.rs /work/main/spark-protocol/src/crypto/mod.rs /work/main/spark-protocol/src/crypto/backend.rs /work/main/spark-protocol/src/crypto/cipher.rs /work/main/spark-protocol/src/crypto/framing.rs /work/main/spark-protocol/src/crypto/handshake.rs /work/main/spark-protocol/src/crypto/keys/mod.rs /work/main/spark-protocol/src/crypto/keys/der.rs /work/main/spark-protocol/src/crypto/keys/pem.rs /work/main/spark-protocol/src/crypto/keys/storage.rs /work/main/spark-protocol/src/crypto/rng.rs /work/main/spark-protocol/src/crypto/session.rs /work/main/spark-protocol/src/crypto/fixed.rs /work/main/spark-protocol/src/crypto/fixed/montgomery.rs /work/main/spark-protocol/src/id.rs /work/main/spark-protocol/src/session/mod.rs /work/main/spark-protocol/src/session/device/mod.rs /work/main/spark-protocol/src/session/device/sink.rs /work/main/spark-protocol/src/session/device/handshake.rs /work/main/spark-protocol/src/session/driver/mod.rs /work/main/spark-protocol/src/session/driver/asynch.rs /work/main/spark-protocol/src/session/time.rs /work/main/spark-protocol/src/variable.rs /work/main/spark-protocol/src/wire/mod.rs /work/main/spark-protocol/src/wire/classify.rs /work/main/spark-protocol/src/wire/coap.rs /work/main/spark-protocol/src/wire/describe.rs /work/main/spark-protocol/src/wire/hello.rs /work/main/spark-protocol/src/wire/limits.rs /work/main/spark-protocol/src/wire/message.rs /work/main/spark-protocol/src/wire/ota.rs

/work/main/spark-protocol/src/lib.rs:
/work/main/spark-protocol/src/crypto/mod.rs:
/work/main/spark-protocol/src/crypto/backend.rs:
/work/main/spark-protocol/src/crypto/cipher.rs:
/work/main/spark-protocol/src/crypto/framing.rs:
/work/main/spark-protocol/src/crypto/handshake.rs:
/work/main/spark-protocol/src/crypto/keys/mod.rs:
/work/main/spark-protocol/src/crypto/keys/der.rs:
/work/main/spark-protocol/src/crypto/keys/pem.rs:
/work/main/spark-protocol/src/crypto/keys/storage.rs:
/work/main/spark-protocol/src/crypto/rng.rs:
/work/main/spark-protocol/src/crypto/session.rs:
/work/main/spark-protocol/src/crypto/fixed.rs:
/work/main/spark-protocol/src/crypto/fixed/montgomery.rs:
/work/main/spark-protocol/src/id.rs:
/work/main/spark-protocol/src/session/mod.rs:
/work/main/spark-protocol/src/session/device/mod.rs:
/work/main/spark-protocol/src/session/device/sink.rs:
/work/main/spark-protocol/src/session/device/handshake.rs:
/work/main/spark-protocol/src/session/driver/mod.rs:
/work/main/spark-protocol/src/session/driver/asynch.rs:
/work/main/spark-protocol/src/session/time.rs:
/work/main/spark-protocol/src/variable.rs:
/work/main/spark-protocol/src/wire/mod.rs:
/work/main/spark-protocol/src/wire/classify.rs:
/work/main/spark-protocol/src/wire/coap.rs:
/work/main/spark-protocol/src/wire/describe.rs:
/work/main/spark-protocol/src/wire/hello.rs:
/work/main/spark-protocol/src/wire/limits.rs:
/work/main/spark-protocol/src/wire/message.rs:
/work/main/spark-protocol/src/wire/ota.rs:
