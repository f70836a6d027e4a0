//! The README's lines work against the embedded broker exactly as printed:
//! the agent prints what the README shows, and each printed line, run by a
//! shell, does what it says.

use crate::common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The README's sample output, between the banner markers.
fn readme_banner() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("<!-- banner:start -->")
        .expect("banner start marker");
    let end = readme
        .find("<!-- banner:end -->")
        .expect("banner end marker");
    readme[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```"))
        .map(str::to_string)
        .collect()
}

fn sh(line: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec {line}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh")
}

/// Waits for a child for at most `within`, then kills it; returns (success, stdout).
fn finish(mut child: Child, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    let ok = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.success(),
            _ if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    (ok, out)
}

#[test]
fn readme_lines_work_exactly_as_printed() {
    if !mosquitto_clients() {
        return;
    }
    let (v4, v5) = (free_port(), free_port());
    let cfg = format!(
        "{}[display]\ntime_zone = \"Europe/Berlin\"\n",
        embedded_config("raspberrypi", v4, v5)
    );
    let agent = Agent::start(&cfg);
    assert!(
        agent.wait_stdout("sim/button/press", Duration::from_secs(10)),
        "banner printed"
    );
    let printed = agent.stdout_lines();
    // The agent runs in a temp folder: its PNG path is there, not in /home/pi.
    let png_dir = printed
        .iter()
        .find_map(|l| l.strip_prefix("display: png at "))
        .and_then(|rest| rest.split("/edge-agent-display.png").next())
        .expect("display line")
        .to_string();

    // 1. The agent prints what the README shows (but for the test's ports).
    let expected: Vec<String> = readme_banner()
        .iter()
        .map(|l| {
            l.replace("/home/pi", &png_dir)
                .replace("1883", &v4.to_string())
                .replace("1884", &v5.to_string())
                .replace(
                    "edge-agent 0.1.0",
                    &format!("edge-agent {}", env!("CARGO_PKG_VERSION")),
                )
        })
        .collect();
    assert_eq!(
        printed, expected,
        "the README's banner is what the agent prints"
    );

    // 2. Each printed line works, run exactly as printed.
    let lines: Vec<&str> = printed
        .iter()
        .map(|l| l.trim())
        .filter(|l| l.starts_with("mosquitto_"))
        .collect();
    let sub_line = lines
        .iter()
        .find(|l| l.starts_with("mosquitto_sub"))
        .expect("a sub line");
    let sub = sh(sub_line);
    // The subscriber sees the retained status once it is subscribed.
    std::thread::sleep(Duration::from_millis(500));
    for line in lines.iter().filter(|l| !l.starts_with("mosquitto_sub")) {
        let (ok, out) = finish(sh(line), Duration::from_secs(5));
        assert!(ok, "{line} failed");
        if line.starts_with("mosquitto_rr") {
            assert_eq!(out.trim(), r#"{"ok":true}"#, "{line}");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (_, seen) = finish(sub, Duration::ZERO);
    for want in [
        "edge/raspberrypi/status online",
        r#"edge/raspberrypi/led/left {"brightness":255,"state":"ON"}"#,
        r#"edge/raspberrypi/led/left {"brightness":255,"state":"OFF"}"#,
        r#"edge/raspberrypi/matrix {"effect":null,"frame":"01010/01010/00000/10001/01110","state":"ON"}"#,
        r#"edge/raspberrypi/button/event {"at":"#,
        r#"edge/raspberrypi/display {"clock":"OFF","expires_at":null,"from":null,"mode":"message","#,
    ] {
        assert!(
            seen.lines().any(|l| l.starts_with(want)),
            "mosquitto_sub did not show {want:?}:\n{seen}"
        );
    }
}
