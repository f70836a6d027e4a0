//! `edge-agent doctor` against brokers that are right and wrong: one that
//! lets clients without credentials write the device's command topics and
//! one that does not, the embedded broker, and no broker at all.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::*;

/// A Mosquitto with the user `edge` (password `s3cret`), and clients without
/// credentials allowed or not.
fn with_users(anonymous: bool) -> Option<(Mosquitto, tempfile::TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    // Mosquitto started as root reads it as its own user.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let file = dir.path().join("passwd");
    let made = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&file)
        .args(["edge", "s3cret"])
        .status();
    match made {
        Ok(s) if s.success() => {}
        _ if std::env::var_os("CI").is_some() => panic!("mosquitto_passwd is needed in CI"),
        _ => {
            eprintln!("skipped: no mosquitto_passwd");
            return None;
        }
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let broker = Mosquitto::start_with(&format!(
        "password_file {}\nallow_anonymous {anonymous}\n",
        file.display()
    ))?;
    Some((broker, dir))
}

fn config(device: &str, port: u16) -> String {
    format!(
        "{}username = \"edge\"\npassword = \"s3cret\"\n",
        external_config(device, port)
    )
}

fn doctor(config: &str) -> (bool, String) {
    let (mut cmd, _dir) = command(config, &["doctor", "--timeout", "3"], &[]);
    let out = cmd.output().expect("run doctor");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_lets_strangers_write_commands_is_a_warning() {
    let Some((broker, _users)) = with_users(true) else {
        return;
    };
    let config = config("doc-open", broker.port);
    let _agent = Agent::start(&config);
    retained(broker.port, "doc-open-r", "edge/doc-open/status").await;
    let (ok, text) = doctor(&config);
    assert!(!ok, "{text}");
    assert!(
        text.contains("ok      connected to mqtt://127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("as edge"), "{text}");
    assert!(text.contains("note    the agent is online"), "{text}");
    assert!(
        text.contains("ok      retained round trip on edge/doc-open/doctor"),
        "{text}"
    );
    assert!(
        text.contains("ok      a command on edge/doc-open/doctor/set reached"),
        "{text}"
    );
    assert!(
        text.contains("warning a client without credentials could write edge/doc-open/+/set"),
        "{text}"
    );
    assert!(text.ends_with("doctor: 0 errors, 1 warning\n"), "{text}");
    // The probe left nothing behind: no retained record, no error report.
    let mut c = Client::connect_as(broker.port, "doc-open-c", "edge", "s3cret").await;
    c.subscribe("edge/doc-open/#").await;
    let seen = c.drain(Duration::from_millis(500)).await;
    assert!(
        !seen
            .iter()
            .any(|m| m.topic.ends_with("/doctor") || m.topic.ends_with("/error")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_refuses_strangers_is_nothing_wrong() {
    let Some((broker, _users)) = with_users(false) else {
        return;
    };
    let config = config("doc-shut", broker.port);
    let (ok, text) = doctor(&config);
    assert!(ok, "{text}");
    assert!(
        text.contains("ok      the broker refuses clients without credentials"),
        "{text}"
    );
    assert!(
        text.contains("note    the agent has not been on this broker yet"),
        "{text}"
    );
    assert!(text.ends_with("doctor: nothing wrong\n"), "{text}");
    // Wrong credentials: one error, the reason given.
    let (ok, text) = doctor(&config.replace("s3cret", "wrong"));
    assert!(!ok, "{text}");
    assert!(text.contains("error   cannot connect"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_of_a_running_agent_is_nothing_wrong() {
    let (v4, v5) = (free_port(), free_port());
    let config = embedded_config("doc-emb", v4, v5);
    let _agent = Agent::start(&config);
    retained(v5, "doc-emb-r", "edge/doc-emb/status").await;
    let (ok, text) = doctor(&config);
    assert!(ok, "{text}");
    assert!(text.contains("on a broker of this host only"), "{text}");
    assert!(text.contains("discovery configs of this device"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_is_an_error() {
    let (ok, text) = doctor(&external_config("doc-none", free_port()));
    assert!(!ok, "{text}");
    assert!(
        text.contains("error   cannot connect: cannot reach the broker"),
        "{text}"
    );
    assert!(text.ends_with("doctor: 1 error, 0 warnings\n"), "{text}");
}
