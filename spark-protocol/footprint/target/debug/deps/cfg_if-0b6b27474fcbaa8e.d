/work/main/spark-protocol/footprint/target/debug/deps/cfg_if-0b6b27474fcbaa8e.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/work/main/spark-protocol/footprint/target/debug/deps/libcfg_if-0b6b27474fcbaa8e.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cfg-if-1.0.5/src/lib.rs:
