//! The command line: `run` (the default), `send`, `config check`, `config
//! show` and `config discovery`; the start-up banner, signals and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Backend, Config, Settings, Sources};
use crate::hardware::Hardware;
use crate::mqtt::topic::{Topics, Verb};

/// Exit code for a configuration that was refused.
pub(crate) const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running.
pub(crate) const EXIT_FAILURE: u8 = 1;
/// Exit code after a panic in one of the agent's tasks (outputs were made safe).
pub(crate) const EXIT_PANIC: u8 = 70;

/// edge-agent: a Raspberry Pi-class board as a well-behaved MQTT device.
#[derive(Debug, Parser)]
#[command(version, about)]
pub(crate) struct Cli {
    /// Configuration file, read after /etc/edge-agent/config.toml.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Cmd {
    /// Run the agent (the default).
    Run,
    /// Show a message on the configured device's display and wait for its answer.
    Send {
        /// The message.
        text: String,
        /// Sender shown under the message; default: $USER.
        #[arg(long)]
        from: Option<String>,
        /// Another device on the same broker (its device id), instead of this one.
        #[arg(long, value_name = "ID", conflicts_with = "group")]
        device: Option<String>,
        /// Every board of a group instead: one of `mqtt.group_topics` (or its
        /// last level), or a group topic like `edge/all`; waits for each
        /// board's answer.
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
        /// Wait until the panel has shown it (a second answer), not only
        /// until the board took it.
        #[arg(long, conflicts_with = "group")]
        wait_shown: bool,
        /// Seconds to wait for the agent's answer (with --wait-shown, for both).
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Every device on the broker: status, version, IP and health, from
    /// their retained records.
    Fleet {
        /// One JSON array (with --watch: then a JSON line per change).
        #[arg(long)]
        json: bool,
        /// Keep running and print each change as it comes.
        #[arg(long)]
        watch: bool,
        /// The topic level above the devices' ids; default: the one above
        /// this device's base topic (`edge`).
        #[arg(long, value_name = "TOPIC")]
        prefix: Option<String>,
        /// Seconds to wait for the broker and its retained records.
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Check the configured broker the way this device uses it; exit 0
    /// when nothing is wrong.
    Doctor {
        /// Seconds to wait for the broker to take the connection.
        #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
        timeout: f64,
    },
    /// Validate or print the merged configuration.
    Config {
        /// `check` or `show`.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// What `config` does.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigAction {
    /// Validate the merged configuration; exit non-zero with one line if it is bad.
    Check,
    /// Print the merged configuration as TOML, secrets shown as ***.
    Show,
    /// Print the Home Assistant discovery configs, one JSON line each.
    Discovery,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Config::load(&Sources::standard(cli.config.clone())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("edge-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Config {
            action: ConfigAction::Check,
        } => {
            println!(
                "config ok: device {}, base topic {}",
                settings.device_id, settings.base_topic
            );
            ExitCode::SUCCESS
        }
        Cmd::Config {
            action: ConfigAction::Show,
        } => print_out(&settings.to_redacted_toml()),
        Cmd::Config {
            action: ConfigAction::Discovery,
        } => {
            let library = match crate::parts::matrix::pattern::Library::shared() {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("edge-agent: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
            };
            let mut out = String::new();
            let device = crate::discovery::device(&settings, &crate::host::Host::new("/"));
            for a in crate::discovery::announcements(&settings, &device, &library.names()) {
                let payload: serde_json::Value =
                    serde_json::from_str(&a.payload).unwrap_or_default();
                out.push_str(
                    &serde_json::json!({ "topic": a.topic, "payload": payload }).to_string(),
                );
                out.push('\n');
            }
            print_out(&out)
        }
        Cmd::Run => run(settings),
        Cmd::Doctor { timeout } => doctor(&settings, timeout),
        Cmd::Fleet {
            json,
            watch,
            prefix,
            timeout,
        } => fleet(&settings, json, watch, prefix, timeout),
        Cmd::Send {
            text,
            from,
            device,
            group,
            wait_shown,
            timeout,
        } => send(
            &settings,
            text,
            from,
            Target::new(device, group),
            wait_shown,
            timeout,
        ),
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// Where `send` puts the message.
enum Target {
    /// The configured device.
    This,
    /// Another device, by id.
    Device(String),
    /// Every board below a group topic, by name.
    Group(String),
}

impl Target {
    fn new(device: Option<String>, group: Option<String>) -> Target {
        match (device, group) {
            (Some(d), _) => Target::Device(d),
            (None, Some(g)) => Target::Group(g),
            (None, None) => Target::This,
        }
    }

    /// The root the message goes below, or why not.
    fn root(&self, settings: &Settings) -> Result<String, String> {
        match self {
            Target::This => Ok(settings.base_topic.clone()),
            Target::Device(d) if crate::config::sanitize_device_id(d) == *d => {
                Ok(format!("edge/{d}"))
            }
            Target::Device(d) => Err(format!(
                "--device {d:?}: a device id of a-z, 0-9, '_' and '-'"
            )),
            Target::Group(g) => group_root(&settings.group_topics, g),
        }
    }
}

/// The group topic `name` stands for: a configured group topic, or one whose
/// last level it is, or else a topic given in full.
fn group_root(groups: &[String], name: &str) -> Result<String, String> {
    if let Some(g) = groups
        .iter()
        .find(|g| *g == name || g.rsplit('/').next() == Some(name))
    {
        return Ok(g.clone());
    }
    if name.contains('/') && crate::mqtt::topic::plain_topic(name) {
        return Ok(name.to_string());
    }
    let configured = if groups.is_empty() {
        "none is configured (mqtt.group_topics)".to_string()
    } else {
        format!("configured: {}", groups.join(", "))
    };
    Err(format!(
        "--group {name:?}: a group topic like edge/all, or the last level of one of mqtt.group_topics; {configured}"
    ))
}

fn send(
    settings: &Settings,
    text: String,
    from: Option<String>,
    target: Target,
    wait_shown: bool,
    timeout: f64,
) -> ExitCode {
    use crate::mqtt::transport::{request, Answers, TransportOptions};
    let within = match seconds(timeout) {
        Ok(w) => w,
        Err(e) => return failed(e),
    };
    let root = match target.root(settings) {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let from = from
        .or_else(|| std::env::var("USER").ok())
        .filter(|f| !f.is_empty());
    let payload = serde_json::json!({ "text": text, "from": from }).to_string();
    let topic = Topics::new(root.clone(), []).command(Verb::Message, "");
    let options = TransportOptions::from_settings(settings, Vec::new());
    let runtime = match tool_runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(e),
    };
    let group = matches!(target, Target::Group(_));
    let answers = if group {
        Answers::Many {
            quiet: GROUP_QUIET.min(within),
        }
    } else if wait_shown {
        Answers::Two
    } else {
        Answers::One
    };
    let got = match runtime.block_on(request(&options, &topic, payload.into(), within, answers)) {
        Err(e) => return failed(e.to_string()),
        Ok(got) => got,
    };
    if wait_shown {
        return shown(&root, &got, within);
    }
    // A board answers a message twice (taken, then shown): its first counts.
    let mut boards = std::collections::HashSet::new();
    let got: Vec<_> = got
        .into_iter()
        .filter(|a| a.from.as_ref().is_none_or(|b| boards.insert(b.clone())))
        .collect();
    let mut refused = 0;
    for answer in &got {
        let board = match (&answer.from, group) {
            (Some(b), _) => b.clone(),
            (None, false) => root.clone(),
            (None, true) => "a board".to_string(),
        };
        let reply: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap_or_default();
        if reply["ok"] == true {
            println!("shown on {board}");
        } else {
            refused += 1;
            let why = reply["error"].as_str().unwrap_or("it gave no reason");
            eprintln!("edge-agent: {board} refused the message: {why}");
        }
    }
    if group {
        println!(
            "{} of {} boards below {root} showed it",
            got.len() - refused,
            got.len()
        );
    }
    if refused > 0 {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}

/// What `send --wait-shown` says of the board's two answers.
fn shown(root: &str, got: &[crate::mqtt::transport::Answer], within: Duration) -> ExitCode {
    let json = |a: &crate::mqtt::transport::Answer| -> serde_json::Value {
        serde_json::from_slice(&a.payload).unwrap_or_default()
    };
    let Some(last) = got.last().map(json) else {
        return failed(format!("no answer from {root}"));
    };
    match (got.len(), last["ok"] == true) {
        (2, true) => {
            let at = last["shown_at"].as_str().unwrap_or("a moment ago");
            println!("shown on {root} at {at}");
            ExitCode::SUCCESS
        }
        (_, false) => failed(format!(
            "{root}: {}",
            last["error"].as_str().unwrap_or("it gave no reason")
        )),
        _ => failed(format!(
            "{root} took the message, but did not say within {} s that its panel had shown it",
            within.as_secs_f32()
        )),
    }
}

/// How long `send --group` waits for one more board after the last answer.
const GROUP_QUIET: Duration = Duration::from_secs(1);

/// One line on stderr, and the exit code of a failure.
fn failed(msg: String) -> ExitCode {
    eprintln!("edge-agent: {msg}");
    ExitCode::from(EXIT_FAILURE)
}

/// A `--timeout` in seconds, or why not.
fn seconds(timeout: f64) -> Result<Duration, String> {
    if timeout.is_finite() && timeout > 0.0 && timeout <= 3600.0 {
        Ok(Duration::from_secs_f64(timeout))
    } else {
        Err(format!(
            "--timeout {timeout}: a number of seconds more than 0 and at most 3600 (e.g. 0.5 or 10)"
        ))
    }
}

/// A runtime for the command-line tools, which do one thing each.
fn tool_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn doctor(settings: &Settings, timeout: f64) -> ExitCode {
    let within = match seconds(timeout) {
        Ok(w) => w,
        Err(e) => return failed(e),
    };
    let runtime = match tool_runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(e),
    };
    println!(
        "doctor: device {}, base topic {}",
        settings.device_id, settings.base_topic
    );
    let report = runtime.block_on(crate::doctor::examine(settings, within));
    print_out(&report.text());
    if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn fleet(
    settings: &Settings,
    json: bool,
    watch: bool,
    prefix: Option<String>,
    timeout: f64,
) -> ExitCode {
    let within = match seconds(timeout) {
        Ok(w) => w,
        Err(e) => return failed(e),
    };
    let prefix = prefix.unwrap_or_else(|| {
        settings
            .base_topic
            .rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string())
    });
    if prefix.contains(['+', '#']) || prefix.ends_with('/') {
        return failed(format!(
            "--prefix {prefix:?}: a topic without wildcards, not ending with '/', e.g. edge"
        ));
    }
    let runtime = match tool_runtime() {
        Ok(rt) => rt,
        Err(e) => return failed(e),
    };
    let options = crate::mqtt::transport::TransportOptions::from_settings(settings, Vec::new());
    runtime.block_on(async {
        let mut seen = match crate::fleet::collect(&options, &prefix, within).await {
            Ok(c) => c,
            Err(e) => return failed(e.to_string()),
        };
        if json {
            print_out(&format!("{}\n", seen.fleet.to_json()));
        } else {
            print_out(&seen.fleet.table());
        }
        if !watch {
            let _ = seen.client.try_disconnect();
            let _ = tokio::time::timeout(Duration::from_millis(200), seen.eventloop.poll()).await;
            return ExitCode::SUCCESS;
        }
        loop {
            match seen.eventloop.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::Publish(
                    p,
                ))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let Some(id) = seen.fleet.take(&topic, &p.payload) else {
                        continue;
                    };
                    let now = chrono::Utc::now().with_timezone(&settings.time_zone);
                    seen.fleet.saw_change(&id, crate::clock::rfc3339(&now));
                    let line = if json {
                        seen.fleet
                            .device(&id)
                            .map_or(serde_json::json!({ "id": id, "gone": true }), |d| {
                                d.to_json(&prefix)
                            })
                            .to_string()
                    } else {
                        format!("{} {}", now.format("%H:%M:%S"), seen.fleet.line(&id))
                    };
                    print_out(&format!("{line}\n"));
                }
                Ok(_) => {}
                Err(e) => return failed(format!("lost the broker: {e}")),
            }
        }
    })
}

/// The async runtime `edge-agent run` drives the agent on (the benchmarks
/// use it too, to measure what the binary does).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    // One thread: the agent's own work per message is microseconds, and
    // every hand-off between its tasks (transport → agent → device) stays
    // on it, without waking another thread. With the agent loop on the
    // main thread and its tasks on a worker, each command crossed threads
    // twice: +25–29 µs at the median (+30–48 % over the bare transport),
    // and a few matrix commands were superseded before the engine ran
    // (`cargo bench --bench e2e`, docs/PERFORMANCE.md).
    // Display refreshes run on the blocking pool, the embedded broker in
    // its own process; the Pi Zero has one core.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The blocking pool (display refreshes) runs the agent's code too.
        .on_thread_start(crate::service::claim_thread)
        .build()
}

fn run(settings: Settings) -> ExitCode {
    init_logging();
    // First, while the process has one thread: the broker's own process.
    let broker = match &settings.broker {
        Some(b) => match crate::mqtt::broker::start_isolated(b) {
            Ok(h) => Some(h),
            Err(e) => {
                eprintln!("edge-agent: {e}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        None => None,
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-agent: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let hardware = match Hardware::from_settings(&settings) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("edge-agent: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    print!("{}", banner(&settings));
    // A panic in any task stops the agent like a signal does (outputs safe,
    // `offline`), then the exit code says it failed: systemd restarts it.
    let panicked = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let result = runtime.block_on(async {
        let signal = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("edge-agent: cannot watch for stop signals: {e}");
                return Err(None);
            }
        };
        let panic = crate::service::next_panic();
        let noted = std::sync::Arc::clone(&panicked);
        let shutdown = async move {
            tokio::select! {
                _ = signal => {}
                message = panic => {
                    let _ = noted.set(message);
                }
            }
        };
        let r = crate::agent::run(settings, hardware, shutdown).await;
        if broker.is_some() {
            // Let the embedded broker hand `offline` to its subscribers before it goes.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match r {
            Ok(()) => Ok(()),
            Err(crate::agent::AgentError::Panicked(message)) => Err(Some(message)),
            Err(e) => {
                eprintln!("edge-agent: {e}");
                Err(None)
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
    if let Some(message) = panicked.get() {
        eprintln!("edge-agent: stopped after a panic, outputs made safe: {message}");
        return ExitCode::from(EXIT_PANIC);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Some(message)) => {
            eprintln!("edge-agent: stopped after a panic, outputs made safe: {message}");
            ExitCode::from(EXIT_PANIC)
        }
        Err(None) => ExitCode::from(EXIT_FAILURE),
    }
}

/// Logs to stderr: in colour only on a terminal (and not with `NO_COLOR`);
/// to the journal (stderr is `JOURNAL_STREAM`), plain lines with the
/// journal's level prefix (`<4>` for a warning) and no time stamp, which the
/// journal adds.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let journal = journal_stream();
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour && !journal);
    let registry = tracing_subscriber::registry();
    let _ = if journal {
        let layer = layer.event_format(Journal(tracing_subscriber::fmt::format().without_time()));
        registry.with(layer.with_filter(filter)).try_init()
    } else {
        registry.with(layer.with_filter(filter)).try_init()
    };
}

/// What is logged: `RUST_LOG` as a list of `target=level` directives (or
/// one level), else the agent at `info`, rumqttc's warnings and nothing of
/// rumqttd (its logs are its own business, and noisy).
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing::level_filters::LevelFilter;
    if let Some(v) = rust_log.filter(|v| !v.trim().is_empty()) {
        match v.parse() {
            Ok(targets) => return targets,
            Err(e) => eprintln!("edge-agent: RUST_LOG={v:?} ignored ({e}): use e.g. debug or edge_agent=debug,rumqttc=info"),
        }
    }
    tracing_subscriber::filter::Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("rumqttd", LevelFilter::OFF)
        .with_target("rumqttc", LevelFilter::WARN)
}

/// Whether stderr is the journal's stream: `JOURNAL_STREAM` names its
/// device and inode (systemd sets it; a child whose stderr was redirected
/// inherits the variable, but no longer matches it).
fn journal_stream() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(stderr.dev()) && ino.parse() == Ok(stderr.ino())
}

/// A log line formatter that puts the journal's priority (syslog level)
/// before each line, so `journalctl -p warning` finds the warnings.
struct Journal<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for Journal<F>
where
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Completes on the first SIGINT, SIGTERM, SIGHUP or SIGQUIT: each is the
/// same safe stop (a hang-up of the terminal stops the agent too; there is
/// no reload: systemd restarts the service to read a new config).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {}
            _ = quit.recv() => {}
        }
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What `run` prints on start: where the broker is and lines to paste.
pub fn banner(settings: &Settings) -> String {
    let base = &settings.base_topic;
    let c = &settings.config;
    let mut out = format!(
        "edge-agent {}: device {}, base topic {base}\n",
        env!("CARGO_PKG_VERSION"),
        settings.device_id
    );
    if !settings.group_topics.is_empty() {
        out.push_str(&format!(
            "also takes commands below: {}\n",
            settings.group_topics.join(", ")
        ));
    }
    // mosquitto clients speak MQTT 3.1.1 by default: point them at that listener.
    let (host, port, port_v5) = match &settings.broker {
        Some(b) => {
            out.push_str(&format!(
                "embedded MQTT broker: {} (MQTT 3.1.1), {} (MQTT 5)\n",
                b.listen, b.listen_v5
            ));
            (
                crate::mqtt::broker::connect_host(b.listen),
                b.listen.port(),
                b.listen_v5.port(),
            )
        }
        None => {
            out.push_str(&format!("MQTT broker: {}\n", settings.endpoint));
            let e = &settings.endpoint;
            (e.host.clone(), e.port, e.port)
        }
    };
    if c.display.enabled {
        let d = &c.display;
        let where_ = match d.backend {
            crate::config::DisplayBackend::Png => {
                let p = std::path::absolute(&d.png_path).unwrap_or_else(|_| d.png_path.clone());
                format!(" at {} (open it to see the board)", p.display())
            }
            crate::config::DisplayBackend::Epd => format!(" at {}", d.epd_path.display()),
            _ => String::new(),
        };
        out.push_str(&format!(
            "display: {}{where_}, time zone {}\n",
            d.backend, settings.time_zone
        ));
    }
    out.push_str(&format!(
        "hardware: {}{}\n",
        c.hardware.backend,
        if c.hardware.backend == Backend::Sim {
            " (simulated, nothing is driven)"
        } else {
            ""
        }
    ));
    out.push_str(&try_lines(settings, &host, port, port_v5));
    out
}

/// The banner's lines to paste into another terminal, one per enabled
/// command of the topic table, for the broker at `host`.
fn try_lines(settings: &Settings, host: &str, port: u16, port_v5: u16) -> String {
    let base = &settings.base_topic;
    let c = &settings.config;
    let mut out = String::new();
    let mut auth = String::new();
    if settings.endpoint.tls {
        auth.push_str(" --cafile CA.pem");
    }
    if let Some((user, _)) = &settings.credentials {
        auth.push_str(&format!(" -u {} -P PASSWORD", shell_quote(user)));
    }
    let args = format!("-h {host} -p {port}{auth}");
    out.push_str("try, in another terminal:\n");
    // The subscriber speaks MQTT 5: rumqttd 0.20 drops a 3.1.1 subscriber
    // that is sent an MQTT 5 message with properties (docs/known-issues.md).
    out.push_str(&format!(
        "  mosquitto_sub -V mqttv5 -h {host} -p {port_v5}{auth} -t {} -v\n",
        shell_quote(&format!("{base}/#"))
    ));
    let topics = Topics::new(base.clone(), c.verbs());
    let command = |verb| shell_quote(&topics.command(verb, "left"));
    if topics.has(Verb::Led) {
        out.push_str(&format!(
            "  mosquitto_pub {args} -t {} -m ON\n",
            command(Verb::Led)
        ));
        // MQTT 5 request/response: prints the agent's acknowledgement.
        out.push_str(&format!(
            "  mosquitto_rr -V mqttv5 -h {host} -p {port_v5}{auth} -t {} -e {} -m OFF\n",
            command(Verb::Led),
            shell_quote(&format!("reply/{}", settings.device_id)),
        ));
    }
    if topics.has(Verb::Message) {
        out.push_str(&format!(
            "  mosquitto_pub {args} -t {} -m 'Hello from the README'\n",
            command(Verb::Message)
        ));
    }
    if topics.has(Verb::Matrix) {
        out.push_str(&format!(
            "  mosquitto_pub {args} -t {} -m 01010/01010/00000/10001/01110\n",
            command(Verb::Matrix)
        ));
    }
    if topics.has(Verb::SimPress) {
        out.push_str(&format!(
            "  mosquitto_pub {args} -t {} -n\n",
            command(Verb::SimPress)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::log_filter;
    use tracing::Level;

    #[test]
    fn rust_log_chooses_what_is_logged_and_a_bad_one_leaves_the_default() {
        let default = log_filter(None);
        assert!(default.would_enable("edge_agent::agent", &Level::INFO));
        assert!(!default.would_enable("edge_agent::agent", &Level::DEBUG));
        assert!(!default.would_enable("rumqttd::router", &Level::ERROR));
        assert!(default.would_enable("rumqttc::v5", &Level::WARN));
        assert!(!default.would_enable("rumqttc::v5", &Level::INFO));

        let debug = log_filter(Some("debug"));
        assert!(debug.would_enable("rumqttd::router", &Level::DEBUG));
        let some = log_filter(Some("warn,edge_agent::mqtt=trace"));
        assert!(some.would_enable("edge_agent::mqtt::transport", &Level::TRACE));
        assert!(!some.would_enable("edge_agent::agent", &Level::INFO));

        for bad in [Some("edge_agent=loud"), Some(""), Some("  ")] {
            let f = log_filter(bad);
            assert!(f.would_enable("edge_agent::agent", &Level::INFO), "{bad:?}");
            assert!(!f.would_enable("rumqttd", &Level::ERROR), "{bad:?}");
        }
    }
}
