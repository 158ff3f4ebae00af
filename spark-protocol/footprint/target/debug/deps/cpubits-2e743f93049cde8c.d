/work/main/spark-protocol/footprint/target/debug/deps/cpubits-2e743f93049cde8c.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/../README.md

/work/main/spark-protocol/footprint/target/debug/deps/libcpubits-2e743f93049cde8c.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/../README.md

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/cpubits-0.1.1/src/../README.md:
