//! A bad configuration is refused at start with one clear line and a non-zero exit.

use crate::common;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::command;

/// How long a refused config may take to be refused; a config that is not
/// refused keeps `run` going, and is then stopped after this long.
const REFUSAL_WITHIN: Duration = Duration::from_secs(20);

/// Runs `edge-agent ARGS` with the config and env; returns (exit code, stderr lines, stdout).
fn run(config: &str, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, Vec<String>, String) {
    run_with_files(config, args, env, &[])
}

/// Like [`run`], with extra files (name, contents) in the agent's working folder,
/// which relative paths in the config name. The exit code is `None` when the
/// agent was still running after [`REFUSAL_WITHIN`] and had to be killed.
fn run_with_files(
    config: &str,
    args: &[&str],
    env: &[(&str, &str)],
    files: &[(&str, &[u8])],
) -> (Option<i32>, Vec<String>, String) {
    let (mut cmd, dir) = command(config, args, env);
    for (name, contents) in files {
        std::fs::write(dir.path().join(name), contents).expect("write a file for the config");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edge-agent");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = r.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + REFUSAL_WITHIN;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait for edge-agent") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = stderr.join().unwrap_or_default();
    (
        code,
        stderr.lines().map(str::to_string).collect(),
        stdout.join().unwrap_or_default(),
    )
}

/// Waits up to 10 s for the agent's log (on stderr) to say `online base=BASE`,
/// which it does once the broker let it in.
fn wait_online(agent: &common::Agent, base: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = agent.stderr_text();
        if log
            .lines()
            .any(|l| l.contains(" online ") && l.contains(base))
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_one_clear_line(config: &str, env: &[(&str, &str)], must_contain: &[&str]) {
    assert_one_clear_line_with_files(config, env, &[], must_contain);
}

/// `run` and `config check` both refuse the config: exit code 2 and one line
/// on stderr that contains each of `must_contain`.
fn assert_one_clear_line_with_files(
    config: &str,
    env: &[(&str, &str)],
    files: &[(&str, &[u8])],
    must_contain: &[&str],
) {
    for args in [&["run"][..], &["config", "check"][..]] {
        let (code, stderr, _) = run_with_files(config, args, env, files);
        assert_eq!(code, Some(2), "{args:?}: exit code; stderr: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{args:?}: exactly one line: {stderr:?}");
        for needle in must_contain {
            assert!(
                stderr[0].contains(needle),
                "{args:?}: {:?} lacks {needle:?}",
                stderr[0]
            );
        }
    }
}

#[test]
fn unknown_key_in_the_file() {
    assert_one_clear_line("[mqtt]\nurll = \"mqtt://x\"\n", &[], &["mqtt.urll", "url"]);
}

#[test]
fn bad_toml_in_the_file() {
    assert_one_clear_line("[mqtt\nurl = 3\n", &[], &["config"]);
}

#[test]
fn bad_url_in_the_file() {
    assert_one_clear_line(
        "[broker]\nenabled = false\n[mqtt]\nurl = \"http://broker\"\n",
        &[],
        &["mqtt.url", "http://broker", "mqtt://"],
    );
}

#[test]
fn bad_env_value() {
    assert_one_clear_line(
        "",
        &[("EDGE_AGENT_MQTT__KEEP_ALIVE_S", "soon")],
        &["mqtt.keep_alive_s", "soon", "EDGE_AGENT_MQTT__KEEP_ALIVE_S"],
    );
}

#[test]
fn out_of_range_env_value() {
    assert_one_clear_line(
        "",
        &[("EDGE_AGENT_MQTT__KEEP_ALIVE_S", "0")],
        &["mqtt.keep_alive_s", "5 to 65535"],
    );
}

#[test]
fn keep_alive_under_five_seconds() {
    // rumqttc's MQTT 5 client panics on a keep-alive under 5 s.
    for v in ["1", "4"] {
        assert_one_clear_line(
            &format!("[mqtt]\nkeep_alive_s = {v}\n"),
            &[],
            &["mqtt.keep_alive_s", "5 to 65535"],
        );
    }
}

#[test]
fn unknown_env_key() {
    assert_one_clear_line("", &[("EDGE_AGENT_MQTT__COLOUR", "red")], &["mqtt.colour"]);
}

#[test]
fn pin_conflict() {
    assert_one_clear_line(
        "[button]\npin = 5\n",
        &[],
        &["tilt.left_pin", "button.pin", "5"],
    );
}

#[test]
fn open_embedded_broker_without_credentials() {
    assert_one_clear_line(
        "[broker]\nlisten = \"0.0.0.0:1883\"\n",
        &[],
        &["broker.listen", "0.0.0.0:1883"],
    );
}

#[test]
fn missing_config_file() {
    let (code, stderr, _) = {
        let out = common::agent_command()
            .args(["config", "check", "--config", "/nonexistent/edge.toml"])
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
            (),
        )
    };
    assert_eq!(code, Some(2));
    assert_eq!(stderr.len(), 1, "{stderr:?}");
    assert!(stderr[0].contains("/nonexistent/edge.toml"), "{stderr:?}");
}

#[test]
fn config_show_redacts_secrets_from_file_and_env() {
    let cfg = "[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"u\"\n";
    let (code, stderr, stdout) = run(
        cfg,
        &["config", "show"],
        &[("EDGE_AGENT_MQTT__PASSWORD", "s3cr3t-pw")],
    );
    assert_eq!(code, Some(0), "{stderr:?}");
    assert!(!stdout.contains("s3cr3t-pw"), "{stdout}");
    assert!(stdout.contains("password = \"***\""), "{stdout}");
    assert!(stdout.contains("url = \"mqtt://127.0.0.1:1\""), "{stdout}");
    // A bad value next to a password never prints the password either.
    let (_, stderr, _) = run("[mqtt]\npassword = 12345678\n", &["config", "check"], &[]);
    assert!(!stderr.join("\n").contains("12345678"), "{stderr:?}");
}

#[test]
fn the_documented_default_config_checks_clean() {
    let text = include_str!("../../config/edge-agent.toml");
    let (code, stderr, stdout) = run(text, &["config", "check"], &[]);
    assert_eq!(code, Some(0), "{stderr:?}");
    assert!(stdout.starts_with("config ok"), "{stdout}");
}

#[test]
fn a_busy_broker_port_is_one_clear_line() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let cfg = common::embedded_config("busy", port, common::free_port());
    let (code, stderr, _) = run(&cfg, &["run"], &[]);
    assert_eq!(code, Some(1), "{stderr:?}");
    let errs: Vec<_> = stderr
        .iter()
        .filter(|l| l.starts_with("edge-agent:"))
        .collect();
    assert_eq!(errs.len(), 1, "{stderr:?}");
    assert!(
        errs[0].contains("broker.listen") && errs[0].contains(&port.to_string()),
        "{errs:?}"
    );
}

#[test]
fn a_link_loop_is_refused_at_start() {
    let cfg = "[device]\nid = \"me\"\n[[link]]\non = \"edge/me/matrix\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n";
    assert_one_clear_line(cfg, &[], &["link[0]", "loop"]);
}

#[test]
fn mqtts_without_a_ca_file() {
    assert_one_clear_line(
        "[broker]\nenabled = false\n[mqtt]\nurl = \"mqtts://127.0.0.1:1\"\n",
        &[],
        &["mqtt.ca_file", "(unset)", "mqtts://"],
    );
}

#[test]
fn a_ca_file_without_a_certificate() {
    let cfg =
        "[broker]\nenabled = false\n[mqtt]\nurl = \"mqtts://127.0.0.1:1\"\nca_file = \"ca.pem\"\n";
    for text in [
        &b""[..],
        b"not PEM at all\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert_one_clear_line_with_files(
            cfg,
            &[],
            &[("ca.pem", text)],
            &["mqtt.ca_file", "ca.pem", "CERTIFICATE"],
        );
    }
}

#[test]
fn a_broken_rumqttd_config_file() {
    let cfg = "[broker]\nconfig_file = \"rumqttd.toml\"\n";
    for text in [
        &b"[router\nmax_connections = 1\n"[..],
        b"id = 0\n",
        b"id = 0\n[router]\nmax_connections = 10\nmax_outgoing_packet_count = 1\nmax_segment_size = 1024\nmax_segment_count = 1\n",
    ] {
        assert_one_clear_line_with_files(
            cfg,
            &[],
            &[("rumqttd.toml", text)],
            &["broker.config_file", "rumqttd.toml"],
        );
    }
    assert_one_clear_line(
        "[broker]\nconfig_file = \"missing.toml\"\n",
        &[],
        &["broker.config_file", "missing.toml"],
    );
}

#[test]
fn an_empty_broker_password_beyond_loopback() {
    let (v4, v5) = (common::free_port(), common::free_port());
    assert_one_clear_line(
        &format!(
            "[broker]\nlisten = \"0.0.0.0:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\nusername = \"edge\"\npassword = \"\"\n"
        ),
        &[],
        &["broker.password", "non-empty", "broker.listen"],
    );
    // The same from the environment.
    assert_one_clear_line(
        &format!(
            "[broker]\nlisten = \"0.0.0.0:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\nusername = \"edge\"\n"
        ),
        &[("EDGE_AGENT_BROKER__PASSWORD", "")],
        &["broker.password", "non-empty"],
    );
}

#[test]
fn passwords_and_user_names_from_the_environment_are_taken_as_given() {
    let cfg = "[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\n";
    for v in ["123456", "0123", "true", "1.5e3"] {
        let env = [
            ("EDGE_AGENT_MQTT__USERNAME", v),
            ("EDGE_AGENT_MQTT__PASSWORD", v),
            ("EDGE_AGENT_BROKER__USERNAME", v),
            ("EDGE_AGENT_BROKER__PASSWORD", v),
        ];
        let (code, stderr, _) = run(cfg, &["config", "check"], &env);
        assert_eq!(code, Some(0), "{v}: {stderr:?}");
        let (code, stderr, stdout) = run(cfg, &["config", "show"], &env);
        assert_eq!(code, Some(0), "{v}: {stderr:?}");
        assert!(
            stdout.contains(&format!("username = \"{v}\"")),
            "{v}: {stdout}"
        );
        assert!(
            !stdout.contains(&format!("password = \"{v}\"")),
            "{v}: {stdout}"
        );
    }
}

#[test]
fn a_password_from_the_environment_that_looks_like_a_number_is_used_as_given() {
    // The broker's password comes from the environment, the agent's from the
    // file: the agent gets in only if both are the text "0123".
    let (v4, v5) = (common::free_port(), common::free_port());
    let cfg = format!(
        "[device]\nid = \"rawpw\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\nusername = \"edge\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{v5}\"\nusername = \"edge\"\npassword = \"0123\"\n"
    );
    let mut agent = common::Agent::start_with_env(&cfg, &[("EDGE_AGENT_BROKER__PASSWORD", "0123")]);
    let online = wait_online(&agent, "edge/rawpw");
    let stderr = agent.stderr_text();
    agent.kill();
    assert!(
        online,
        "stdout: {:?}; stderr: {stderr}",
        agent.stdout_lines()
    );
}

#[test]
fn rppal_ignores_matrix_chip_so_the_same_number_is_one_line() {
    assert_one_clear_line(
        "[hardware]\nbackend = \"rppal\"\n[matrix]\nchip = \"/dev/gpiochip1\"\n[buzzer]\nenabled = true\npin = 13\n",
        &[],
        &["matrix.lines[12]", "buzzer.pin", "13", "matrix.chip"],
    );
}

#[test]
fn a_line_number_rppal_cannot_have() {
    // 283 would be cut to BCM 27 (the button's line) by rppal's u8 numbers.
    assert_one_clear_line(
        "[hardware]\nbackend = \"rppal\"\n[matrix]\nenabled = false\n[tilt]\nleft_pin = 283\n",
        &[],
        &["tilt.left_pin", "283", "0 to 27"],
    );
    assert_one_clear_line(
        "[hardware]\nbackend = \"gpiocdev\"\n[matrix]\nenabled = false\n[buzzer]\nenabled = true\npin = 28\n",
        &[],
        &["buzzer.pin", "28", "0 to 27", "rppal"],
    );
}

#[test]
fn the_buzzer_can_be_enabled_on_the_default_config() {
    let documented = include_str!("../../config/edge-agent.toml");
    let text = documented.replacen("enabled = false\npin = ", "enabled = true\npin = ", 1);
    assert_ne!(
        text, documented,
        "the [buzzer] section starts with enabled, pin"
    );
    let (code, stderr, stdout) = run(&text, &["config", "check"], &[]);
    assert_eq!(code, Some(0), "{stderr:?}");
    assert!(stdout.starts_with("config ok"), "{stdout}");
    // And the agent runs with it.
    let (v4, v5) = (common::free_port(), common::free_port());
    let cfg = format!(
        "{}[buzzer]\nenabled = true\n",
        common::embedded_config("buzz", v4, v5)
    );
    let mut agent = common::Agent::start(&cfg);
    let online = wait_online(&agent, "edge/buzz");
    let stderr = agent.stderr_text();
    agent.kill();
    assert!(online, "stderr: {stderr}");
}

#[test]
fn a_broker_connection_limit_out_of_range() {
    for n in ["0", "10001"] {
        assert_one_clear_line(
            &format!("[broker]\nmax_connections = {n}\n"),
            &[],
            &["broker.max_connections", n, "1 to 10000"],
        );
    }
}

#[test]
fn a_buzzer_tune_limit_out_of_range() {
    for n in ["0", "3601"] {
        assert_one_clear_line(
            &format!("[buzzer]\nenabled = true\nmax_tune_s = {n}\n"),
            &[],
            &["buzzer.max_tune_s", n, "1 to 3600 s"],
        );
    }
}

/// Opens an MQTT 3.1.1 connection to 127.0.0.1:PORT; true if the broker
/// accepted it (CONNACK, return code 0) within 3 s.
fn mqtt_connect(port: u16, client_id: &str) -> (bool, std::net::TcpStream) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let id = client_id.as_bytes();
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60];
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend_from_slice(&body);
    s.write_all(&packet).expect("send CONNECT");
    let mut ack = [0u8; 4];
    let ok = s.read_exact(&mut ack).is_ok() && ack == [0x20, 2, 0, 0];
    (ok, s)
}

#[test]
fn broker_max_connections_is_applied() {
    // The agent is one of the clients: with a limit of 3, two more get in.
    let (v4, v5) = (common::free_port(), common::free_port());
    let cfg = format!(
        "{}max_connections = 3\n",
        common::embedded_config("limit", v4, v5)
    );
    let mut agent = common::Agent::start(&cfg);
    assert!(wait_online(&agent, "edge/limit"), "{}", agent.stderr_text());
    let mut open = Vec::new();
    for i in 0..2 {
        let (ok, s) = mqtt_connect(v4, &format!("c{i}"));
        assert!(ok, "client {i} within the limit");
        open.push(s);
    }
    let (ok, _s) = mqtt_connect(v4, "over");
    assert!(!ok, "a client beyond the limit gets no CONNACK");
    agent.kill();

    // The default lets a few hundred clients in (the built-in file had 64).
    let (v4, v5) = (common::free_port(), common::free_port());
    let mut agent = common::Agent::start(&common::embedded_config("many", v4, v5));
    assert!(wait_online(&agent, "edge/many"), "{}", agent.stderr_text());
    let mut open = Vec::new();
    for i in 0..100 {
        let (ok, s) = mqtt_connect(v4, &format!("m{i}"));
        assert!(ok, "client {i} of 100");
        open.push(s);
    }
    agent.kill();
}
