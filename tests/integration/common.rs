//! Shared test harness: agent processes, brokers and an MQTT 5 test client,
//! all on 127.0.0.1 with ports picked free per test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

/// The agent binary under test.
pub const AGENT: &str = env!("CARGO_BIN_EXE_edge-agent");

/// A command that runs the agent binary: directly, or through the emulator
/// named in `EDGE_AGENT_TEST_WRAPPER` (e.g. `qemu-aarch64`)
/// when the tests of a cross build run under qemu-user.
pub fn agent_command() -> Command {
    match std::env::var("EDGE_AGENT_TEST_WRAPPER") {
        Ok(w) if !w.trim().is_empty() => {
            let mut parts = w.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap_or_default());
            cmd.args(parts).arg(AGENT);
            cmd
        }
        _ => Command::new(AGENT),
    }
}

/// A TCP port on 127.0.0.1 that is free now and that no other call of this
/// process gave. It lies below the kernel's ephemeral range, from which
/// every client connection of the other tests takes its own port: a port
/// of that range (what binding port 0 gives) may be some connection's by
/// the time a broker binds it, which then cannot listen.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST);
    if span < 1_000 {
        // No room below it: any free port.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port on 127.0.0.1");
    }
    // Each test process starts elsewhere in the span.
    let start = std::process::id() % span;
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        assert!(n < span, "no free port left below {ephemeral}");
        let port = (LOWEST + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_port(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Until nothing listens on 127.0.0.1:`port`, for at most `within`; whether it came free.
pub fn wait_port_free(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("PPid:"))
                        .and_then(|v| v.trim().parse::<u32>().ok())
                })
                == Some(pid)
        })
        .collect()
}

/// CPU time in clock ticks a process has used, with that of the children
/// it has waited for (`/proc/PID/stat`: utime, stime, cutime, cstime).
pub fn cpu_ticks_with_children(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    rest.split_whitespace()
        .skip(11)
        .take(4)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

/// Sends a signal to a process by PID.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{sig} {pid} failed");
}

/// An agent process; killed when dropped.
pub struct Agent {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

/// Config for an agent that runs the embedded broker on the given ports.
pub fn embedded_config(device: &str, v4: u16, v5: u16) -> String {
    format!(
        "[device]\nid = \"{device}\"\n[broker]\nlisten = \"127.0.0.1:{v4}\"\nlisten_v5 = \"127.0.0.1:{v5}\"\n"
    )
}

/// Config for an agent that connects to an external broker.
pub fn external_config(device: &str, port: u16) -> String {
    format!(
        "[device]\nid = \"{device}\"\n[broker]\nenabled = false\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n"
    )
}

fn collect(reader: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

/// Runs `edge-agent ARGS --config FILE` with the config text, and extra env.
pub fn command(config: &str, args: &[&str], env: &[(&str, &str)]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = agent_command();
    // Files the agent writes (the board's PNG) stay in the temp folder.
    cmd.args(args)
        .arg("--config")
        .arg(&path)
        .current_dir(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("EDGE_AGENT_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info,rumqttd=off");
    // How the agent logs depends on these; a test that wants one sets it.
    cmd.env_remove("NO_COLOR").env_remove("JOURNAL_STREAM");
    for (k, v) in env {
        cmd.env(k, v);
    }
    (cmd, dir)
}

impl Agent {
    /// Starts `edge-agent run` with this config.
    pub fn start(config: &str) -> Agent {
        Self::start_with_env(config, &[])
    }

    /// Starts `edge-agent run` with this config and extra environment.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Agent {
        let (cmd, dir) = command(config, &["run"], env);
        Self::spawn(cmd, dir)
    }

    /// Starts `edge-agent run` with this config and these soft and hard
    /// limits of open files.
    pub fn start_with_open_files(config: &str, soft: u64, hard: u64) -> Agent {
        use std::os::unix::process::CommandExt;
        let (mut cmd, dir) = command(config, &["run"], &[]);
        let limit = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit is async-signal-safe and only reads `limit`.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(cmd, dir)
    }

    fn spawn(mut cmd: Command, dir: tempfile::TempDir) -> Agent {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn edge-agent");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().unwrap(), Arc::clone(&stdout));
        collect(child.stderr.take().unwrap(), Arc::clone(&stderr));
        Agent {
            child,
            stdout,
            stderr,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then the time until it exited and its status.
    pub fn terminate(&mut self) -> (Duration, ExitStatus) {
        let t0 = Instant::now();
        signal(self.pid(), "TERM");
        let status = self
            .wait_exit(Duration::from_secs(5))
            .expect("agent exits after SIGTERM");
        (t0.elapsed(), status)
    }

    /// SIGKILL: no goodbye, the broker must use the last will.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Lines the agent printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Lines the agent printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until stdout has a line containing `needle`.
    pub fn wait_stdout(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.stdout_lines().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A message the test client received.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: Bytes,
    pub retain: bool,
    pub correlation: Option<Bytes>,
    /// The MQTT 5 message expiry left, in seconds.
    pub expiry: Option<u32>,
    /// The MQTT 5 user properties.
    pub user: Vec<(String, String)>,
}

impl Msg {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// An MQTT 5 client for tests.
pub struct Client {
    pub client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Msg>,
    connected: Arc<Mutex<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    /// Connects (retrying for up to 5 s) to 127.0.0.1:port.
    pub async fn connect(port: u16, id: &str) -> Client {
        Self::try_connect(port, id, None, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("test client cannot connect to port {port}"))
    }

    /// Connects as `user` (retrying for up to 5 s).
    pub async fn connect_as(port: u16, id: &str, user: &str, password: &str) -> Client {
        Self::try_connect(port, id, Some((user, password)), Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("test client cannot connect to port {port} as {user}"))
    }

    /// Connects with optional credentials; `None` if not connected within `within`.
    pub async fn try_connect(
        port: u16,
        id: &str,
        credentials: Option<(&str, &str)>,
        within: Duration,
    ) -> Option<Client> {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        if let Some((u, p)) = credentials {
            opts.set_credentials(u, p);
        }
        opts.set_keep_alive(Duration::from_secs(5));
        opts.set_max_packet_size(Some(4 * 1024 * 1024));
        let mut net = rumqttc::NetworkOptions::new();
        net.set_tcp_nodelay(true);
        opts.set_network_options(net);
        let (client, mut eventloop) = AsyncClient::new(opts, 1000);
        let (tx, rx) = mpsc::unbounded_channel();
        let connected = Arc::new(Mutex::new(false));
        let c2 = Arc::clone(&connected);
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => *c2.lock().unwrap() = true,
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(to_msg(p));
                    }
                    Ok(_) => {}
                    Err(_) => {
                        *c2.lock().unwrap() = false;
                        if tokio::time::Instant::now() > deadline {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        let c = Client {
            client,
            rx,
            connected,
            task,
        };
        let deadline = Instant::now() + within;
        while !*c.connected.lock().unwrap() {
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(c)
    }

    pub async fn subscribe(&self, filter: &str) {
        self.client
            .subscribe_many([Filter::new(filter, QoS::AtLeastOnce)])
            .await
            .expect("subscribe");
        // Let the SUBSCRIBE reach the broker before anything it should see.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload.into())
            .await
            .expect("publish");
    }

    /// Publishes a retained message at QoS 1.
    pub async fn publish_retained(&self, topic: &str, payload: impl Into<Bytes>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload.into())
            .await
            .expect("publish");
    }

    /// Publishes with an MQTT 5 response topic and correlation data.
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        reply_topic: &str,
        corr: &[u8],
    ) {
        let props = PublishProperties {
            response_topic: Some(reply_topic.to_string()),
            correlation_data: Some(Bytes::copy_from_slice(corr)),
            ..Default::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload.into(), props)
            .await
            .expect("publish");
    }

    /// The next message matching `pred`, within `within`; others are dropped.
    pub async fn expect(&mut self, within: Duration, pred: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(m)) if pred(&m) => return Some(m),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }

    /// Every message received within `within`.
    pub async fn drain(&mut self, within: Duration) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.rx.recv()).await {
            out.push(m);
        }
        out
    }
}

fn to_msg(p: Publish) -> Msg {
    Msg {
        topic: String::from_utf8_lossy(&p.topic).into_owned(),
        payload: p.payload,
        retain: p.retain,
        correlation: p
            .properties
            .as_ref()
            .and_then(|pr| pr.correlation_data.clone()),
        expiry: p
            .properties
            .as_ref()
            .and_then(|pr| pr.message_expiry_interval),
        user: p
            .properties
            .map(|pr| pr.user_properties)
            .unwrap_or_default(),
    }
}

/// Whether `msg` is `topic` with payload `payload`.
pub fn is(msg: &Msg, topic: &str, payload: &str) -> bool {
    msg.topic == topic && msg.payload == payload.as_bytes()
}

/// A Mosquitto broker process on a free port; killed when dropped.
pub struct Mosquitto {
    /// Plain MQTT listener.
    pub port: u16,
    /// TLS listener, when started with [`Mosquitto::start_tls`].
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// A test CA and a server certificate for 127.0.0.1 / localhost, as PEM files.
pub struct TestPki {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

impl TestPki {
    pub fn generate(dir: &Path) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        let pki = TestPki {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server.key"),
        };
        std::fs::write(&pki.ca_pem, ca_cert.pem()).expect("write ca");
        std::fs::write(&pki.cert_pem, cert.pem()).expect("write cert");
        std::fs::write(&pki.key_pem, key.serialize_pem()).expect("write key");
        pki
    }
}

/// Path of the mosquitto binary, if installed. With `CI` set, a missing
/// Mosquitto fails the test instead of skipping it.
pub fn mosquitto_binary() -> Option<PathBuf> {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return Some(PathBuf::from(p));
        }
    }
    if std::env::var_os("CI").is_some() {
        panic!("CI is set but mosquitto is not installed: run .ci/run, or apt-get install mosquitto mosquitto-clients");
    }
    eprintln!("SKIPPED: mosquitto is not installed (apt-get install mosquitto mosquitto-clients)");
    None
}

/// Whether mosquitto_pub and mosquitto_sub are installed (fails under CI when not).
pub fn mosquitto_clients() -> bool {
    let ok = ["mosquitto_pub", "mosquitto_sub"].iter().all(|b| {
        Command::new(b)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("CI is set but mosquitto-clients is not installed: run .ci/run");
        }
        eprintln!("SKIPPED: mosquitto_pub/mosquitto_sub are not installed");
    }
    ok
}

impl Mosquitto {
    /// Starts Mosquitto on a free port, or `None` (skip) when it is not installed.
    pub fn start() -> Option<Mosquitto> {
        Self::start_at(free_port(), "")
    }

    /// Starts Mosquitto on `port`.
    pub fn start_on(port: u16) -> Option<Mosquitto> {
        Self::start_at(port, "")
    }

    /// Starts Mosquitto on a free port with extra lines of mosquitto.conf.
    pub fn start_with(extra: &str) -> Option<Mosquitto> {
        Self::start_at(free_port(), extra)
    }

    fn start_at(port: u16, extra: &str) -> Option<Mosquitto> {
        let bin = mosquitto_binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut m = Mosquitto {
            port,
            tls_port: None,
            child: None,
            dir,
        };
        m.spawn_with(&bin, extra);
        Some(m)
    }

    /// Starts Mosquitto with a plain listener and a TLS listener using `pki`.
    pub fn start_tls(pki: &TestPki) -> Option<Mosquitto> {
        let bin = mosquitto_binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let tls_port = free_port();
        let mut m = Mosquitto {
            port: free_port(),
            tls_port: Some(tls_port),
            child: None,
            dir,
        };
        let extra = format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            pki.ca_pem.display(),
            pki.cert_pem.display(),
            pki.key_pem.display()
        );
        m.spawn_with(&bin, &extra);
        assert!(
            wait_port(tls_port, Duration::from_secs(5)),
            "mosquitto TLS did not listen"
        );
        Some(m)
    }

    fn spawn(&mut self, bin: &Path) {
        self.spawn_with(bin, "");
    }

    fn spawn_with(&mut self, bin: &Path, extra: &str) {
        // Mosquitto keeps 1000 QoS 1 messages for a client that is away and
        // drops the rest; a killed agent under emulation is away for over a
        // second of the SIGKILL test's 1600 commands a second
        // (docs/known-issues.md).
        const QUEUE: &str = "max_queued_messages 100000";
        let conf = self.dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "per_listener_settings false\nallow_anonymous true\npersistence false\n{QUEUE}\nlistener {} 127.0.0.1\n{extra}",
                self.port
            ),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        self.child = Some(child);
        assert!(
            wait_port(self.port, Duration::from_secs(5)),
            "mosquitto did not listen"
        );
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let bin = mosquitto_binary().expect("mosquitto");
        self.spawn(&bin);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends bad commands one by one and checks each gets an MQTT 5 error reply
/// with its correlation data and an `<base>/error` message; then checks the
/// agent still applies a good command.
pub async fn check_rejections(client: &mut Client, base: &str) {
    let reply = format!("test/{base}/reply");
    client.subscribe(&reply).await;
    client.subscribe(&format!("{base}/error")).await;
    let bad: Vec<(String, Vec<u8>)> = vec![
        (format!("{base}/toaster/set"), b"ON".to_vec()),
        (format!("{base}/a/b/c/set"), b"ON".to_vec()),
        // Deeper than any filter of its own names: answered all the same.
        (format!("{base}/a/b/c/d/e/f/g/set"), b"ON".to_vec()),
        (format!("{base}/a/b/c/d/e/f/g/h/i/j/k/set"), b"ON".to_vec()),
        (format!("{base}/led/left/set"), b"bright!".to_vec()),
        (format!("{base}/led/left/set"), vec![0xff, 0xfe, 0x00]),
        (
            format!("{base}/led/left/set"),
            b"{\"state\":\"ON\",\"brightness\":300}".to_vec(),
        ),
        (format!("{base}/led/left/set"), b"{\"state\":".to_vec()),
        (format!("{base}/led/nope/set"), b"ON".to_vec()),
        (format!("{base}/matrix/set"), b"11111/1".to_vec()),
        (format!("{base}/led/left/set"), vec![b'5'; 100_000]),
    ];
    for (i, (topic, payload)) in bad.iter().enumerate() {
        let corr = format!("c{i}");
        client
            .request(topic, payload.clone(), &reply, corr.as_bytes())
            .await;
        let (mut got_reply, mut got_error) = (None, None);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while got_reply.is_none() || got_error.is_none() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(m) = client.expect(left, |_| true).await else {
                break;
            };
            if m.topic == reply && m.correlation.as_deref() == Some(corr.as_bytes()) {
                got_reply = Some(m.json());
            } else if m.topic == format!("{base}/error") && m.json()["topic"] == topic.as_str() {
                got_error = Some(m.json());
            }
        }
        let r = got_reply.unwrap_or_else(|| panic!("no v5 reply to bad command {i} on {topic}"));
        assert_eq!(r["ok"], false, "reply to {i}: {r}");
        assert!(
            r["error"].as_str().is_some_and(|e| !e.is_empty()),
            "reply to {i}: {r}"
        );
        let e =
            got_error.unwrap_or_else(|| panic!("no {base}/error for bad command {i} on {topic}"));
        assert_eq!(e["error"], r["error"], "same words in both places for {i}");
    }
    // The agent is still up and applies a good command.
    client
        .request(&format!("{base}/led/left/set"), "ON", &reply, b"good")
        .await;
    let ok = client
        .expect(Duration::from_secs(3), |m| {
            m.topic == reply && m.correlation.as_deref() == Some(&b"good"[..])
        })
        .await
        .expect("reply to the good command");
    assert_eq!(ok.json(), serde_json::json!({"ok": true}));
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    vm_rss(pid).expect("VmRSS of a running process")
}

fn vm_rss(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory of process `pid` and of all its descendants (the
/// embedded broker's processes; one that has just ended counts 0), in KiB.
pub fn rss_kib_tree(pid: u32) -> u64 {
    rss_kib(pid) + descendants_rss(pid)
}

fn descendants_rss(pid: u32) -> u64 {
    children(pid)
        .into_iter()
        .map(|c| vm_rss(c).unwrap_or(0) + descendants_rss(c))
        .sum()
}

/// Until `probe` holds, for at most `within`; whether it held.
pub async fn eventually(within: Duration, probe: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if probe() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    probe()
}

/// What a subscriber arriving now gets on `topic`: its retained message.
pub async fn retained(port: u16, id: &str, topic: &str) -> Msg {
    let mut late = Client::connect(port, id).await;
    late.subscribe(topic).await;
    late.expect(Duration::from_secs(3), |m| m.topic == topic)
        .await
        .unwrap_or_else(|| panic!("nothing retained on {topic}"))
}

/// The agent in the test process on simulated hardware — with its embedded
/// broker when the config enables one — so a test sees every write. It runs
/// as `edge-agent run` runs it: on its own thread, on the binary's runtime.
pub struct InProcess {
    /// What the simulated hardware was given.
    pub sim: edge_agent::hardware::sim::SimHandles,
    /// The port of the broker it talks to.
    pub port: u16,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<Result<(), String>>,
}

impl InProcess {
    /// Starts it (and the embedded broker its config enables) on the
    /// system's wall clock.
    pub fn start(config: &str) -> InProcess {
        Self::start_with_clock(config, Arc::new(edge_agent::clock::SystemClock))
    }

    /// Starts it (and the embedded broker its config enables) on the wall
    /// clock `wall`.
    pub fn start_with_clock(
        config: &str,
        wall: Arc<dyn edge_agent::clock::WallClock>,
    ) -> InProcess {
        let settings = edge_agent::config::Config::from_toml(config).expect("config");
        if let Some(b) = settings.broker.as_ref() {
            edge_agent::mqtt::broker::start(b).expect("embedded broker");
        }
        Self::spawn(settings, wall)
    }

    /// Starts it (and the embedded broker its config enables) on a wall
    /// clock that reads `start` (RFC 3339) now and follows tokio's clock;
    /// the clock is returned so a test can set it.
    pub fn start_at(config: &str, start: &str) -> (InProcess, Arc<edge_agent::clock::TokioClock>) {
        let start = chrono::DateTime::parse_from_rfc3339(start)
            .expect("an RFC 3339 time")
            .to_utc();
        let wall = Arc::new(edge_agent::clock::TokioClock::starting_at(start));
        (Self::start_with_clock(config, wall.clone()), wall)
    }

    /// Starts it with `settings` on the system's wall clock; an embedded
    /// broker in them is not started here.
    pub fn from_settings(settings: edge_agent::config::Settings) -> InProcess {
        Self::spawn(settings, Arc::new(edge_agent::clock::SystemClock))
    }

    fn spawn(
        settings: edge_agent::config::Settings,
        wall: Arc<dyn edge_agent::clock::WallClock>,
    ) -> InProcess {
        let hardware = edge_agent::hardware::Hardware::from_settings(&settings).expect("hardware");
        let sim = hardware.sim.clone().expect("simulated hardware");
        let port = settings.endpoint.port;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = edge_agent::cli::runtime().map_err(|e| e.to_string())?;
            rt.block_on(edge_agent::agent::run_with_clock(
                settings,
                hardware,
                wall,
                async move {
                    let _ = stopped.await;
                },
            ))
            .map_err(|e| e.to_string())
        });
        InProcess {
            sim,
            port,
            stop,
            thread,
        }
    }

    /// The frames the matrix was given.
    pub fn matrix(&self) -> edge_agent::hardware::sim::Recording<Vec<bool>> {
        self.sim
            .outputs("matrix")
            .cloned()
            .expect("a simulated matrix")
    }

    /// Waits until the LEDs' last written duties are (left, right).
    pub async fn wait_duties(&self, left: f64, right: f64, within: Duration) -> bool {
        let duties = || {
            (
                self.sim.pwm("led/left").and_then(|r| r.last()),
                self.sim.pwm("led/right").and_then(|r| r.last()),
            )
        };
        let held = eventually(within, || duties() == (Some(left), Some(right))).await;
        if !held {
            let (l, r) = duties();
            eprintln!("duties are {l:?} / {r:?}");
        }
        held
    }

    /// Stops it; it must stop cleanly within 5 s.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let thread = self.thread;
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await
        .expect("the agent stops within 5 s")
        .expect("join")
        .expect("the agent did not panic")
        .expect("clean stop");
    }
}
