/work/main/spark-protocol/footprint/target/debug/deps/cbc-2c035332be913163.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/decrypt.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/encrypt.rs

/work/main/spark-protocol/footprint/target/debug/deps/libcbc-2c035332be913163.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/decrypt.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/encrypt.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/decrypt.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cbc-0.2.1/src/encrypt.rs:
