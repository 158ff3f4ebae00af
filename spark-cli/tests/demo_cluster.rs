//! `spark demo --nodes 3` as a user runs it: the built binary starts PostgreSQL and NATS itself, three cloud nodes
//! on them, and rolls the deep update out to Cores spread over the nodes, each Core's API calls going through
//! another node than the one holding it. The JSON report says so Core by Core and node by node, and nothing the
//! demo started still listens. Without the programs, the demo says which are missing and how to install them,
//! and starts nothing.

use std::process::{Command, Output};

use serde_json::Value;

fn spark(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spark"));
    command
        .args(args)
        .env_remove("SPARK_API_URL")
        .env_remove("PARTICLE_ACCESS_TOKEN");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the spark binary runs")
}

/// The `host:port` of a `scheme://[user@]host:port[/path]` URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap().to_owned()
}

#[test]
#[cfg_attr(
    any(spark_no_postgres, spark_no_nats),
    ignore = "needs postgres and nats-server"
)]
fn three_nodes_on_postgres_and_nats_patch_a_fleet_spread_over_them() {
    let out = spark(&["demo", "--nodes", "3", "--count", "6", "--json"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Every Core that needed the update got it, and each says which node held it and which served its calls.
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for row in rows {
        assert_eq!(row["ok"], true, "{row}");
        assert_eq!(row["after"], "1.28", "{row}");
        let (held, served) = (
            row["node"].as_str().unwrap(),
            row["api_node"].as_str().unwrap(),
        );
        assert_ne!(held, served, "calls go through another node: {row}");
    }
    assert!(rows.iter().any(|r| r["path"] == "ota"));
    let summary = &report["summary"];
    assert_eq!(summary["ota_failed"], 0);
    assert_eq!(summary["ota_patched"], summary["ota_planned"]);

    // Cores on all three nodes, provisioned and called through each of them.
    let cluster = &report["cluster"];
    assert!(
        cluster["postgres"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    assert!(
        cluster["nats"]
            .as_str()
            .unwrap()
            .starts_with("nats://127.0.0.1:")
    );
    let nodes = cluster["nodes"].as_array().unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["n0", "n1", "n2"]);
    for node in nodes {
        for key in ["provisioned", "held", "served"] {
            assert!(node[key].as_u64().unwrap() >= 1, "{key}: {node}");
        }
        let name = node["name"].as_str().unwrap();
        assert!(rows.iter().any(|r| r["node"] == name), "{name} held a Core");
        assert!(
            rows.iter().any(|r| r["api_node"] == name),
            "{name} served calls"
        );
    }
    let held: u64 = nodes.iter().map(|n| n["held"].as_u64().unwrap()).sum();
    assert_eq!(held, 6, "every Core held by one node");

    // One line per phase says which node did what; everything stopped.
    for line in [
        "services:",
        "provisioning:",
        "connecting:",
        "updating:",
        "stopped:",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "no {line} line: {stderr}"
        );
    }
    for name in ["n0:", "n1:", "n2:"] {
        assert!(stderr.lines().any(|l| l.starts_with(name)), "{stderr}");
    }
    // Nothing listens any more where PostgreSQL, NATS and the nodes were.
    let mut addrs: Vec<String> = [&cluster["postgres"], &cluster["nats"]]
        .iter()
        .map(|url| host_port(url.as_str().unwrap()))
        .collect();
    for node in nodes {
        addrs.push(node["http"].as_str().unwrap().to_owned());
        addrs.push(node["device"].as_str().unwrap().to_owned());
    }
    for addr in addrs {
        assert!(
            std::net::TcpStream::connect(&addr).is_err(),
            "{addr} still accepts connections"
        );
    }
}

#[test]
fn without_postgres_and_nats_the_demo_says_what_to_install_and_starts_nothing() {
    // An empty folder as the only place to look: neither PATH nor Debian's folders are searched.
    let empty = tempfile::tempdir().unwrap();
    let out = spark(
        &["demo", "--nodes", "3", "--count", "2", "--json"],
        &[("SPARK_SERVICES_PATH", empty.path().to_str().unwrap())],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("spark: "), "{stderr}");
    for needed in [
        "postgres",
        "initdb",
        "nats-server",
        "not installed",
        "apt-get install postgresql nats-server",
    ] {
        assert!(lines[0].contains(needed), "{needed}: {stderr}");
    }
    // Nothing was started: no cloud came up to print its console.
    assert!(!stderr.contains("watch it at"));

    // With only nats-server missing, only it is named.
    let pg_only = tempfile::tempdir().unwrap();
    for program in ["postgres", "initdb"] {
        let found = spark_cloud::services::find(program);
        if let Some(path) = found {
            std::os::unix::fs::symlink(path, pg_only.path().join(program)).unwrap();
        } else {
            return; // PostgreSQL is not installed here: the first half said so already.
        }
    }
    let out = spark(
        &["demo", "--nodes", "3", "--count", "2"],
        &[("SPARK_SERVICES_PATH", pg_only.path().to_str().unwrap())],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("nats-server is not installed (Debian: apt-get install nats-server)"),
        "{stderr}"
    );
    assert!(!stderr.contains("initdb"), "{stderr}");
}
