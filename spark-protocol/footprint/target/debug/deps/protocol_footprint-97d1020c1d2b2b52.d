/work/main/spark-protocol/footprint/target/debug/deps/protocol_footprint-97d1020c1d2b2b52.d: src/main.rs

/work/main/spark-protocol/footprint/target/debug/deps/libprotocol_footprint-97d1020c1d2b2b52.rmeta: src/main.rs

src/main.rs:
