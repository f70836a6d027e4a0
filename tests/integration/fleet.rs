//! `edge-agent fleet`: every device on the broker from its retained
//! records, with 200 made-up devices beside a real agent.

use crate::common;

use std::io::BufRead;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const FAKES: usize = 200;

/// Publishes the retained records of `FAKES` made-up devices.
async fn fake_fleet(port: u16) -> Client {
    let c = Client::connect(port, "fleet-faker").await;
    for n in 0..FAKES {
        let base = format!("edge/fake-{n:03}");
        let status = if n % 4 == 3 { "offline" } else { "online" };
        c.publish_retained(&format!("{base}/status"), status).await;
        c.publish_retained(
            &format!("{base}/info"),
            format!(
                r#"{{"version":"0.0.{}","started_at":"2026-12-01T08:00:00+00:00"}}"#,
                n % 10
            ),
        )
        .await;
        c.publish_retained(
            &format!("{base}/diag"),
            format!(
                r#"{{"at":"2026-12-01T09:{:02}:00+00:00","ip":"10.0.{}.{}","temperature_c":{}.5,"under_voltage":{}}}"#,
                n % 60,
                n / 250,
                n % 250,
                40 + n % 30,
                n % 7 == 0
            ),
        )
        .await;
    }
    c
}

fn fleet(config: &str, args: &[&str]) -> (std::process::Output, Duration) {
    let mut all = vec!["fleet"];
    all.extend_from_slice(args);
    let (mut cmd, _dir) = command(config, &all, &[]);
    let t0 = Instant::now();
    let out = cmd.output().expect("run fleet");
    (out, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_devices_and_a_real_one() {
    let Some(broker) = Mosquitto::start() else {
        return;
    };
    let config = external_config("fleet-real", broker.port);
    let _agent = Agent::start(&config);
    let mut w = Client::connect(broker.port, "fleet-w").await;
    w.subscribe("edge/fleet-real/status").await;
    w.expect(Duration::from_secs(10), |m| m.text() == "online")
        .await
        .expect("online");
    let faker = fake_fleet(broker.port).await;
    // The records are in the broker once a late subscriber has the last.
    retained(
        broker.port,
        "fleet-r",
        &format!("edge/fake-{:03}/diag", FAKES - 1),
    )
    .await;

    let (out, took) = fleet(&config, &["--json", "--timeout", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("fleet --json with {} devices: {took:?}", FAKES + 1);
    assert!(
        took < Duration::from_secs(10),
        "within its timeout: {took:?}"
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), FAKES + 1);
    let by_id = |id: &str| {
        all.iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{id} listed"))
    };
    let real = by_id("fleet-real");
    assert_eq!(real["status"], "online");
    assert_eq!(real["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(real["base"], "edge/fleet-real");
    assert!(
        real["started_at"].is_string() && real["last_change"].is_string(),
        "{real}"
    );
    let seven = by_id("fake-007");
    assert_eq!(
        seven,
        &serde_json::json!({
            "id": "fake-007", "base": "edge/fake-007", "status": "offline",
            "version": "0.0.7", "started_at": "2026-12-01T08:00:00+00:00",
            "ip": "10.0.0.7", "temperature_c": 47.5, "under_voltage": true,
            "last_change": "2026-12-01T09:07:00+00:00",
        })
    );
    // For a person: a table and a count.
    let (out, _) = fleet(&config, &["--timeout", "10"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&format!(
            "{} devices below edge, {} online",
            FAKES + 1,
            FAKES / 4 * 3 + 1
        )),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("fake-007") && l.contains("YES")),
        "{table}"
    );

    // --watch: the view, then a line per change.
    let (mut cmd, _dir) = command(&config, &["fleet", "--json", "--watch"], &[]);
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("fleet --watch");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the view");
    assert!(first.starts_with('['), "{first}");
    faker
        .publish_retained("edge/fake-001/status", "offline")
        .await;
    let change = rx.recv_timeout(Duration::from_secs(5)).expect("a change");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&change).expect("a JSON line");
    assert_eq!(
        (v["id"].as_str(), v["status"].as_str()),
        (Some("fake-001"), Some("offline")),
        "{v}"
    );
    assert!(v["last_change"].is_string());
}

/// The embedded broker of the agent itself: one device, the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_shows_its_own_agent() {
    let (v4, v5) = (free_port(), free_port());
    let config = embedded_config("fleet-solo", v4, v5);
    let _agent = Agent::start(&config);
    retained(v5, "fleet-solo-r", "edge/fleet-solo/status").await;
    let (out, _) = fleet(&config, &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all}");
    assert_eq!(all[0]["status"], "online");
    assert!(all[0]["started_at"].is_string(), "{all}");
}

/// No broker: one clear line and a failure, within the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_is_one_line_and_a_failure() {
    let port = free_port();
    let (out, took) = fleet(&external_config("fleet-none", port), &["--timeout", "2"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach the broker"), "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}
