//! A real `nats-server` for the tests: [`spark_cloud::services::NatsServer`], failing the test when it cannot start.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use spark_cloud::services;

/// A running `nats-server`, stopped when dropped.
pub struct NatsServer {
    server: services::NatsServer,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl NatsServer {
    /// Starts one (panics, failing the test, when it cannot).
    pub fn start() -> NatsServer {
        NatsServer::started(None)
    }

    /// Starts one whose messages may carry `max_payload` bytes at most (the default is 1 MiB).
    pub fn start_with_max_payload(max_payload: usize) -> NatsServer {
        NatsServer::started(Some(max_payload))
    }

    fn started(max_payload: Option<usize>) -> NatsServer {
        let server = services::NatsServer::start(max_payload).unwrap_or_else(|e| panic!("{e}"));
        NatsServer {
            addr: server.addr(),
            server,
        }
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }
}
