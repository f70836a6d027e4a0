//! The agent's configuration: one TOML document merged from several layers,
//! checked once at start so that a bad value is refused before anything runs.
//!
//! Layers, later wins: built-in defaults, `/etc/edge-agent/config.toml`, the
//! file given by `--config`, and `EDGE_AGENT_<SECTION>__<KEY>` environment
//! variables. `config/edge-agent.toml` in the repository documents every key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub(crate) mod error;
pub(crate) mod gpio;
pub(crate) mod secret;

pub use self::error::ConfigError;
use self::error::{one_line, quote};
pub use self::gpio::{Backend, HardwareConfig};
use self::gpio::{GpioPlan, UsedLine};
pub use self::secret::Secret;
use crate::mqtt::broker::{connect_host, EmbeddedBroker};
use crate::mqtt::topic::{covers, disjoint, matches, plain_topic, valid_filter, Topics, Verb};
pub use crate::parts::button::config::ButtonConfig;
pub use crate::parts::buzzer::config::{BuzzerConfig, DEFAULT_BUZZER_PIN};
pub use crate::parts::health::config::DiagConfig;
pub use crate::parts::leds::config::TiltConfig;
pub use crate::parts::matrix::config::{MatrixConfig, DEFAULT_MATRIX_LINES};
pub use crate::parts::message_board::config::{DisplayBackend, DisplayConfig};
use crate::parts::Section;

/// The system-wide configuration file, read when it exists.
pub(crate) const SYSTEM_CONFIG: &str = "/etc/edge-agent/config.toml";

/// Prefix of the environment variables that override the files.
pub(crate) const ENV_PREFIX: &str = "EDGE_AGENT_";

/// Keys whose environment variables are taken as the exact text given, never
/// as a number or a boolean: `EDGE_AGENT_MQTT__PASSWORD=0123` is the password
/// `0123`. Passwords, user names and ids; every one is a string key.
pub(crate) const RAW_ENV_KEYS: [&str; 8] = [
    "mqtt.password",
    "mqtt.username",
    "broker.password",
    "broker.username",
    "mqtt.client_id",
    "mqtt.base_topic",
    "device.id",
    "device.name",
];

/// The most entries of `mqtt.group_topics`.
pub(crate) const MAX_GROUP_TOPICS: usize = 16;

/// The shortest `mqtt.keep_alive_s` the MQTT client accepts.
pub(crate) const MIN_KEEP_ALIVE_S: u64 = 5;

/// The whole configuration, as merged from all layers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Who this device is.
    pub device: DeviceConfig,
    /// How the agent reaches its MQTT broker.
    pub mqtt: MqttConfig,
    /// The embedded MQTT broker.
    pub broker: BrokerConfig,
    /// Which hardware backend drives the parts.
    pub hardware: HardwareConfig,
    /// The e-paper message board.
    pub display: DisplayConfig,
    /// The button.
    pub button: ButtonConfig,
    /// The two PWM LEDs that follow a phone's tilt.
    pub tilt: TiltConfig,
    /// The 5×5 LED matrix.
    pub matrix: MatrixConfig,
    /// The buzzer.
    pub buzzer: BuzzerConfig,
    /// The board's report on itself, `<base>/diag`.
    pub diag: DiagConfig,
    /// Home Assistant MQTT discovery.
    pub homeassistant: HomeAssistantConfig,
    /// What the outputs do when nobody can command them.
    pub safety: SafetyConfig,
    /// Links: MQTT messages turned into local commands.
    #[serde(rename = "link", skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkConfig>,
}

/// The outputs' safe values, and when the agent falls back to them on its
/// own: after the broker has been away for `offline_timeout_ms`, and when a
/// task of the agent panics (the agent then stops with a non-zero exit).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SafetyConfig {
    /// How long the broker may be away before the outputs go safe; 0: never.
    pub offline_timeout_ms: u64,
    /// The LEDs' brightness when safe, in percent.
    pub led_percent: u8,
    /// The matrix when safe: `off`, or a frame such as `00000/00000/00100/00000/00000`.
    pub matrix: String,
}

impl Default for SafetyConfig {
    fn default() -> Self {
        SafetyConfig {
            offline_timeout_ms: 30_000,
            led_percent: 0,
            matrix: "off".into(),
        }
    }
}

impl SafetyConfig {
    /// Its values, checked and parsed.
    fn typed(&self) -> Result<Safety, ConfigError> {
        if self.offline_timeout_ms > 86_400_000 {
            return Err(ConfigError::new(
                "safety.offline_timeout_ms",
                self.offline_timeout_ms,
                "0 (never) to 86400000 ms (a day)",
            ));
        }
        if self.led_percent > 100 {
            return Err(ConfigError::new(
                "safety.led_percent",
                self.led_percent,
                "0 to 100",
            ));
        }
        let matrix = if self.matrix == "off" {
            Ok(crate::parts::matrix::Frame::OFF)
        } else {
            crate::parts::matrix::Frame::parse(&self.matrix)
        };
        let matrix = matrix.map_err(|_| {
            ConfigError::new(
                "safety.matrix",
                quote(&self.matrix),
                "\"off\" or a frame of 5 rows of 5 '0'/'1' separated by '/'",
            )
        })?;
        Ok(Safety {
            offline_timeout: Duration::from_millis(self.offline_timeout_ms),
            led_duty: f64::from(self.led_percent) / 100.0,
            matrix,
        })
    }
}

/// Home Assistant MQTT discovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// Announce the device to Home Assistant.
    pub enabled: bool,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// How long after Home Assistant's `online` the agent announces itself
    /// again, in ms (Home Assistant says `online` before its discovery is
    /// ready); announcements come at most once per
    /// [`ANNOUNCE_SPACING`](crate::agent::core::ANNOUNCE_SPACING).
    pub announce_delay_ms: u64,
}

impl HomeAssistantConfig {
    /// `<discovery_prefix>/status`, which the agent listens to when enabled.
    pub(crate) fn status_topic(&self) -> Option<String> {
        self.enabled
            .then(|| format!("{}/status", self.discovery_prefix))
    }
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            enabled: true,
            discovery_prefix: "homeassistant".into(),
            announce_delay_ms: 1000,
        }
    }
}

/// One link: messages on `on` become the local command `do`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Topic filter (wildcards allowed), of this or another device.
    pub on: String,
    /// Command topic below `<base>`, e.g. `matrix/set`.
    #[serde(rename = "do")]
    pub command: String,
    /// Fixed payload; default: the incoming payload.
    pub payload: Option<String>,
    /// Most triggers a second; more are dropped.
    #[serde(default = "default_link_rate")]
    pub max_per_second: u32,
    /// Whether a retained message fires it too: one the broker hands over on
    /// subscribing, at start and after every reconnection.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retained: bool,
}

fn default_link_rate() -> u32 {
    10
}

/// Refuses links that can trigger themselves, directly or through others,
/// and links whose command this device lacks, by the same topic table the
/// agent routes with.
fn check_links(links: &[LinkConfig], topics: &Topics) -> Result<(), ConfigError> {
    let mut outputs = Vec::with_capacity(links.len());
    for (i, l) in links.iter().enumerate() {
        let key = format!("link[{i}]");
        if l.on.starts_with("$share/") {
            return Err(ConfigError::new(
                format!("{key}.on"),
                quote(&l.on),
                "a filter without $share/<group>/: a link hears every message on it, a shared subscription only some",
            ));
        }
        if !valid_filter(&l.on) {
            return Err(ConfigError::new(
                format!("{key}.on"),
                quote(&l.on),
                "an MQTT topic filter ('+' for one level, '#' only at the end)",
            ));
        }
        match topics.outputs(&l.command) {
            Ok(out) => outputs.push(out),
            Err(allowed) => {
                return Err(ConfigError::new(
                    format!("{key}.do"),
                    quote(&l.command),
                    allowed,
                ))
            }
        }
        if !(1..=1000).contains(&l.max_per_second) {
            return Err(ConfigError::new(
                format!("{key}.max_per_second"),
                l.max_per_second,
                "1 to 1000",
            ));
        }
    }
    // Edges: link a -> link b when a's command publishes a topic b listens to.
    let triggers = |a: usize, b: usize| {
        outputs[a]
            .iter()
            .chain([&links[a].command])
            .any(|t| matches(&links[b].on, &topics.at(t)))
    };
    for start in 0..links.len() {
        // Depth-first search for a path back to `start`.
        let mut stack = vec![(start, vec![start])];
        let mut seen = vec![false; links.len()];
        while let Some((at, path)) = stack.pop() {
            for (next, visited) in seen.iter_mut().enumerate() {
                if !triggers(at, next) {
                    continue;
                }
                if next == start {
                    let l = &links[start];
                    let chain: Vec<String> = path
                        .iter()
                        .chain([&start])
                        .map(|i| format!("link[{i}]"))
                        .collect();
                    return Err(ConfigError::new(
                        format!("link[{start}]"),
                        format!("on = {:?}, do = {:?}", l.on, l.command),
                        format!(
                            "a link that cannot trigger itself; {} form a loop (each one's command publishes what the next listens to)",
                            chain.join(" -> ")
                        ),
                    ));
                }
                if !*visited {
                    *visited = true;
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    Ok(())
}

/// Refuses links whose filters overlap others only in part so widely that
/// hearing each message once would take a subscription to every top-level
/// topic of the broker (`+/+/#`): the agent subscribes to disjoint filters
/// (`topic::disjoint`), and merging those would flood it.
fn check_subscriptions(
    links: &[LinkConfig],
    topics: &Topics,
    ha_status: Option<String>,
) -> Result<(), ConfigError> {
    let wanted = topics.wanted(ha_status, links.iter().map(|l| l.on.clone()));
    let spans_all = |f: &str| matches!(f.split('/').next(), Some("+" | "#"));
    for merged in disjoint(&wanted) {
        if !spans_all(&merged) || wanted.contains(&merged) {
            continue;
        }
        let part: Vec<String> = links
            .iter()
            .enumerate()
            .filter(|(_, l)| covers(&merged, &l.on))
            .map(|(i, l)| format!("link[{i}].on = {:?}", l.on))
            .collect();
        return Err(ConfigError::new(
            "link",
            part.join(", "),
            format!(
                "link filters that overlap each other only in part this widely would need a subscription to {merged:?}, nearly every topic on the broker, to hear each message once: narrow them, or make one cover the other"
            ),
        ));
    }
    Ok(())
}

/// Identity of the device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id used in topics; default: the host name, sanitized.
    pub id: Option<String>,
    /// Human-readable name; default: `edge-agent <id>`.
    pub name: Option<String>,
    /// The room it is in (Home Assistant's suggested area), if given.
    pub area: Option<String>,
    /// Where the agent keeps what it must remember across restarts (the
    /// saved matrix patterns); systemd's `StateDirectory=edge-agent`.
    pub state_dir: PathBuf,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            id: None,
            name: None,
            area: None,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// The default `device.state_dir`.
pub(crate) const DEFAULT_STATE_DIR: &str = "/var/lib/edge-agent";

/// Connection to the MQTT broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host[:port]` or `mqtts://host[:port]`; default: the embedded broker.
    pub url: Option<String>,
    /// Topic prefix; default `edge/<device id>`.
    pub base_topic: Option<String>,
    /// MQTT client id; default `edge-agent-<device id>`.
    pub client_id: Option<String>,
    /// User name for the broker.
    pub username: Option<String>,
    /// Password for the broker.
    pub password: Option<Secret>,
    /// File holding the password (first line).
    pub password_file: Option<PathBuf>,
    /// Keep-alive interval in seconds, 5 to 65535.
    pub keep_alive_s: u64,
    /// PEM file with the CA certificate(s) for `mqtts://`; required with it.
    pub ca_file: Option<PathBuf>,
    /// First delay before reconnecting, in milliseconds.
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnect attempts, in milliseconds.
    pub reconnect_max_ms: u64,
    /// How long the broker keeps the agent's session (its subscriptions and
    /// the QoS 1 commands sent to it) while it is away, in seconds; 0 = a
    /// clean session on every connection.
    pub session_expiry_s: u32,
    /// Command roots shared by many boards (`edge/all`): commands below each
    /// are taken like commands below `<base>`.
    pub group_topics: Vec<String>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            base_topic: None,
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            keep_alive_s: 30,
            ca_file: None,
            reconnect_min_ms: 100,
            reconnect_max_ms: 1000,
            session_expiry_s: 600,
            group_topics: Vec::new(),
        }
    }
}

/// The embedded rumqttd broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Start the embedded broker in-process.
    pub enabled: bool,
    /// Address of the MQTT 3.1.1 listener.
    pub listen: String,
    /// Address of the MQTT 5 listener.
    pub listen_v5: String,
    /// rumqttd config file for router/connection settings; default: the built-in copy of `broker/rumqttd.toml`.
    pub config_file: Option<PathBuf>,
    /// User name clients must give.
    pub username: Option<String>,
    /// Password clients must give.
    pub password: Option<Secret>,
    /// File holding that password (first line).
    pub password_file: Option<PathBuf>,
    /// Most clients connected at once, the agent's own connection included;
    /// replaces `router.max_connections` of the rumqttd config file.
    pub max_connections: usize,
}

/// The default `broker.max_connections`: a few hundred clients.
pub(crate) const DEFAULT_BROKER_MAX_CONNECTIONS: usize = 500;

/// The largest `broker.max_connections` accepted.
pub(crate) const MAX_BROKER_CONNECTIONS: usize = 10_000;

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            enabled: true,
            listen: "127.0.0.1:1883".into(),
            listen_v5: "127.0.0.1:1884".into(),
            config_file: None,
            username: None,
            password: None,
            password_file: None,
            max_connections: DEFAULT_BROKER_MAX_CONNECTIONS,
        }
    }
}

/// Where a configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Read `/etc/edge-agent/config.toml` (on by default; tests turn it off).
    pub system_file: Option<PathBuf>,
    /// The `--config` file: it must exist.
    pub file: Option<PathBuf>,
    /// Read `EDGE_AGENT_*` environment variables.
    pub env: bool,
}

impl Sources {
    /// The layers the command line uses: system file, `--config`, environment.
    pub(crate) fn standard(file: Option<PathBuf>) -> Self {
        Sources {
            system_file: Some(PathBuf::from(SYSTEM_CONFIG)),
            file,
            env: true,
        }
    }
}

impl Config {
    /// Every part's section, in the order they are checked in (a line two
    /// parts claim is reported at the later one) and announced in.
    pub(crate) fn sections(&self) -> [&dyn Section; 6] {
        [
            &self.display,
            &self.buzzer,
            &self.button,
            &self.tilt,
            &self.matrix,
            &self.diag,
        ]
    }

    /// The commands this configuration enables, in the topic table's terms:
    /// those of the fitted parts, and the simulated backend's own.
    pub(crate) fn verbs(&self) -> Vec<Verb> {
        let sim = self.hardware.backend == Backend::Sim;
        let parts = self.sections().into_iter().filter(|s| s.enabled());
        let mut verbs: Vec<Verb> = parts.flat_map(|s| s.verbs().iter().copied()).collect();
        if sim && self.button.enabled {
            verbs.push(Verb::SimPress);
        }
        if sim {
            verbs.push(Verb::SimPanic);
        }
        verbs.push(Verb::Identify);
        verbs
    }

    /// Merges the layers, then checks the result.
    pub fn load(sources: &Sources) -> Result<Settings, ConfigError> {
        let mut figment = Figment::new();
        if let Some(system) = &sources.system_file {
            figment = figment.merge(Toml::file(system));
        }
        if let Some(file) = &sources.file {
            if let Err(e) = std::fs::metadata(file) {
                return Err(ConfigError::new(
                    "--config",
                    file.display(),
                    format!("a readable TOML file ({e})"),
                ));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        if sources.env {
            let env = || Env::prefixed(ENV_PREFIX).split("__");
            figment = figment.merge(env().ignore(&RAW_ENV_KEYS));
            // figment's Env turns `0123` into 123 and `true` into a boolean;
            // these keys take the variable's text as it is.
            for (key, value) in env().only(&RAW_ENV_KEYS).iter() {
                figment = figment.merge(Serialized::default(key.as_str(), value));
            }
        }
        let config: Config = figment.extract().map_err(from_figment)?;
        config.validate()
    }

    /// Parses one TOML document on its own (no other layers).
    pub fn from_toml(text: &str) -> Result<Settings, ConfigError> {
        let figment = Figment::from(Toml::string(text));
        let config: Config = figment.extract().map_err(from_figment)?;
        config.validate()
    }

    /// Checks every value and derives the settings the agent runs with.
    pub(crate) fn validate(self) -> Result<Settings, ConfigError> {
        let (device_id, base_topic, client_id) = self.identity()?;
        let group_topics = self.group_topics(&base_topic)?;
        self.check_timing()?;
        let broker = self.embedded_broker()?;
        let (endpoint, credentials, ca) = self.connection(broker.as_ref())?;
        let time_zone = self.check_parts(&base_topic, &group_topics)?;
        let safety = self.safety.typed()?;
        let m = &self.mqtt;
        let timing = Timing {
            keep_alive: Duration::from_secs(m.keep_alive_s),
            backoff_min: Duration::from_millis(m.reconnect_min_ms),
            backoff_max: Duration::from_millis(m.reconnect_max_ms),
            session_expiry_s: m.session_expiry_s,
        };
        let name = self
            .device
            .name
            .clone()
            .unwrap_or_else(|| format!("edge-agent {device_id}"));
        Ok(Settings {
            time_zone,
            device_id,
            device_name: name,
            base_topic,
            group_topics,
            client_id,
            endpoint,
            credentials,
            ca,
            broker,
            timing,
            safety,
            config: self,
        })
    }

    /// The device id, the base topic and the MQTT client id.
    fn identity(&self) -> Result<(String, String, String), ConfigError> {
        let device_id = match &self.device.id {
            Some(id) => {
                if id.is_empty()
                    || !id.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
                    })
                {
                    return Err(ConfigError::new(
                        "device.id",
                        quote(id),
                        "one or more of a-z, 0-9, '_' and '-'",
                    ));
                }
                id.clone()
            }
            None => sanitize_device_id(&host_name()),
        };
        let base_topic = match &self.mqtt.base_topic {
            Some(t) => {
                if !plain_topic(t) {
                    return Err(ConfigError::new(
                        "mqtt.base_topic",
                        quote(t),
                        "a topic without wildcards (+, #), not starting with '$' or '/', not ending with '/'",
                    ));
                }
                t.clone()
            }
            None => format!("edge/{device_id}"),
        };
        let client_id = self
            .mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| format!("edge-agent-{device_id}"));
        if client_id.is_empty() || client_id.len() > 128 {
            return Err(ConfigError::new(
                "mqtt.client_id",
                quote(&client_id),
                "1 to 128 characters",
            ));
        }
        Ok((device_id, base_topic, client_id))
    }

    /// The group topics, each a root of its own: not the base, not above or
    /// below it or another group (a command would then arrive twice, or
    /// another board's commands would look like this one's).
    fn group_topics(&self, base_topic: &str) -> Result<Vec<String>, ConfigError> {
        let groups = &self.mqtt.group_topics;
        if groups.len() > MAX_GROUP_TOPICS {
            return Err(ConfigError::new(
                "mqtt.group_topics",
                format!("{} topics", groups.len()),
                format!("at most {MAX_GROUP_TOPICS} group topics"),
            ));
        }
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        for (i, g) in groups.iter().enumerate() {
            let key = format!("mqtt.group_topics[{i}]");
            if !plain_topic(g) {
                return Err(ConfigError::new(
                    key,
                    quote(g),
                    "a topic without wildcards (+, #), not starting with '$' or '/', not ending with '/', e.g. \"edge/all\"",
                ));
            }
            if nested(g, base_topic) || nested(base_topic, g) {
                return Err(ConfigError::new(
                    key,
                    quote(g),
                    format!("a topic neither the base topic ({base_topic}) nor above or below it"),
                ));
            }
            if let Some(other) = groups[..i].iter().find(|o| nested(g, o) || nested(o, g)) {
                return Err(ConfigError::new(
                    key,
                    quote(g),
                    format!("a topic neither another group topic ({other}) nor above or below it"),
                ));
            }
        }
        Ok(groups.clone())
    }

    /// The MQTT keep-alive and reconnection delays.
    fn check_timing(&self) -> Result<(), ConfigError> {
        // rumqttc's MQTT 5 client panics on a keep-alive under 5 s, 0 included
        // (v5 `MqttOptions::set_keep_alive`), so "no keep-alive" is not offered.
        if !(MIN_KEEP_ALIVE_S..=65535).contains(&self.mqtt.keep_alive_s) {
            return Err(ConfigError::new(
                "mqtt.keep_alive_s",
                self.mqtt.keep_alive_s,
                format!("a whole number of seconds from {MIN_KEEP_ALIVE_S} to 65535"),
            ));
        }
        if !(10..=60_000).contains(&self.mqtt.reconnect_min_ms) {
            return Err(ConfigError::new(
                "mqtt.reconnect_min_ms",
                self.mqtt.reconnect_min_ms,
                "milliseconds from 10 to 60000",
            ));
        }
        if self.mqtt.reconnect_max_ms < self.mqtt.reconnect_min_ms
            || self.mqtt.reconnect_max_ms > 600_000
        {
            return Err(ConfigError::new(
                "mqtt.reconnect_max_ms",
                self.mqtt.reconnect_max_ms,
                format!(
                    "milliseconds from mqtt.reconnect_min_ms ({}) to 600000",
                    self.mqtt.reconnect_min_ms
                ),
            ));
        }

        Ok(())
    }

    /// The embedded broker's settings, when it is enabled.
    fn embedded_broker(&self) -> Result<Option<EmbeddedBroker>, ConfigError> {
        if !self.broker.enabled {
            return Ok(None);
        }
        let listen = parse_addr("broker.listen", &self.broker.listen)?;
        let listen_v5 = parse_addr("broker.listen_v5", &self.broker.listen_v5)?;
        if listen == listen_v5 {
            return Err(ConfigError::new(
                "broker.listen_v5",
                quote(&self.broker.listen_v5),
                "an address other than broker.listen (MQTT 3.1.1 and 5 need a port each)",
            ));
        }
        let credentials = self.broker_credentials(listen, listen_v5)?;
        let config_file = match &self.broker.config_file {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(
                    "broker.config_file",
                    path.display(),
                    format!("a readable rumqttd TOML file ({e})"),
                )
            })?),
            None => None,
        };
        if !(1..=MAX_BROKER_CONNECTIONS).contains(&self.broker.max_connections) {
            return Err(ConfigError::new(
                "broker.max_connections",
                self.broker.max_connections,
                format!("1 to {MAX_BROKER_CONNECTIONS} clients (the agent's own connection is one of them)"),
            ));
        }
        let embedded = EmbeddedBroker {
            listen,
            listen_v5,
            credentials,
            rumqttd_toml: config_file,
            max_connections: self.broker.max_connections,
        };
        // The broker is configured exactly as `run` will configure it.
        if let Err(e) = crate::mqtt::broker::rumqttd_config(&embedded) {
            let reason = match e {
                crate::mqtt::broker::BrokerError::BadConfig(m) => m,
                other => other.to_string(),
            };
            return Err(ConfigError::new(
                "broker.config_file",
                match &self.broker.config_file {
                    Some(path) => path.display().to_string(),
                    None => "(built-in)".into(),
                },
                format!(
                    "a rumqttd 0.20 config file with one [v4.1] and one [v5.1] server ({reason})"
                ),
            ));
        }
        Ok(Some(embedded))
    }

    /// The broker's credentials; refused beyond loopback without them.
    fn broker_credentials(
        &self,
        listen: SocketAddr,
        listen_v5: SocketAddr,
    ) -> Result<Option<(String, Secret)>, ConfigError> {
        let password = secret(
            "broker",
            self.broker.password.as_ref(),
            self.broker.password_file.as_deref(),
        )?;
        let credentials = match (&self.broker.username, password) {
            (Some(u), Some(p)) if !u.is_empty() => Some((u.clone(), p)),
            (None, None) => None,
            (Some(u), None) => {
                return Err(ConfigError::new(
                    "broker.username",
                    quote(u),
                    "set together with broker.password or broker.password_file",
                ))
            }
            (_, Some(_)) => {
                return Err(ConfigError::new(
                    "broker.username",
                    "(unset)",
                    "a non-empty user name when a broker password is set",
                ))
            }
        };
        for (key, addr) in [("broker.listen", listen), ("broker.listen_v5", listen_v5)] {
            if addr.ip().is_loopback() {
                continue;
            }
            match &credentials {
                None => {
                    return Err(ConfigError::new(
                        key,
                        quote(&addr.to_string()),
                        "a loopback address (127.0.0.1) unless broker.username and broker.password are set",
                    ))
                }
                // rumqttd takes a client without a password for one with
                // the empty password: that would let anyone in.
                Some((_, p)) if p.expose().is_empty() => {
                    let (pkey, value) = match &self.broker.password_file {
                        Some(f) => ("broker.password_file", f.display().to_string()),
                        None => ("broker.password", "(empty)".to_string()),
                    };
                    return Err(ConfigError::new(
                        pkey,
                        value,
                        format!("a non-empty password, since {key} = {addr} is beyond loopback"),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(credentials)
    }

    /// Where the agent connects, with which credentials and CA.
    #[allow(clippy::type_complexity)]
    fn connection(
        &self,
        broker: Option<&EmbeddedBroker>,
    ) -> Result<(Endpoint, Option<(String, Secret)>, Option<Vec<u8>>), ConfigError> {
        let password = secret(
            "mqtt",
            self.mqtt.password.as_ref(),
            self.mqtt.password_file.as_deref(),
        )?;
        let endpoint = match (&self.mqtt.url, broker) {
            (Some(url), _) => parse_url(url)?,
            (None, Some(b)) => Endpoint {
                host: connect_host(b.listen_v5),
                port: b.listen_v5.port(),
                tls: false,
            },
            (None, None) => {
                return Err(ConfigError::new(
                    "mqtt.url",
                    "(unset)",
                    "an mqtt:// or mqtts:// URL when broker.enabled = false",
                ))
            }
        };
        let credentials = match (&self.mqtt.username, password) {
            (Some(u), p) => Some((u.clone(), p.unwrap_or_default())),
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "mqtt.username",
                    "(unset)",
                    "a user name when mqtt.password or mqtt.password_file is set",
                ))
            }
            // Talking to our own broker: use its credentials.
            (None, None) if self.mqtt.url.is_none() => broker.and_then(|b| b.credentials.clone()),
            (None, None) => None,
        };
        let ca = match &self.mqtt.ca_file {
            Some(path) if endpoint.tls => Some(read_ca_file(path)?),
            Some(path) => {
                return Err(ConfigError::new(
                    "mqtt.ca_file",
                    path.display(),
                    "only with an mqtts:// URL",
                ))
            }
            // The MQTT client trusts only the CAs it is given, not the system's roots.
            None if endpoint.tls => {
                return Err(ConfigError::new(
                    "mqtt.ca_file",
                    "(unset)",
                    "a PEM file with the CA that signed the broker's certificate; an mqtts:// URL needs it (the system's roots are not used)",
                ))
            }
            None => None,
        };

        Ok((endpoint, credentials, ca))
    }

    /// Every part's section, their GPIO lines together, Home Assistant and
    /// the links; returns the clock's time zone.
    fn check_parts(
        &self,
        base_topic: &str,
        groups: &[String],
    ) -> Result<crate::clock::Zone, ConfigError> {
        let gpio = GpioPlan::new(&self.hardware, self.matrix.chip.as_deref());
        let mut lines: Vec<UsedLine> = Vec::new();
        let time_zone =
            crate::clock::resolve_zone(self.display.time_zone.as_deref()).map_err(|allowed| {
                ConfigError::new(
                    "display.time_zone",
                    quote(self.display.time_zone.as_deref().unwrap_or("")),
                    allowed,
                )
            })?;
        for section in self.sections().into_iter().filter(|s| s.enabled()) {
            section.check(&gpio, &mut lines)?;
        }
        {
            let p = &self.homeassistant.discovery_prefix;
            if p.is_empty() || p.contains(['+', '#']) || p.starts_with('/') || p.ends_with('/') {
                return Err(ConfigError::new(
                    "homeassistant.discovery_prefix",
                    quote(p),
                    "a topic prefix without wildcards, e.g. homeassistant",
                ));
            }
            let delay = self.homeassistant.announce_delay_ms;
            if delay > 60_000 {
                return Err(ConfigError::new(
                    "homeassistant.announce_delay_ms",
                    delay,
                    "0 to 60000 ms",
                ));
            }
        }
        let topics = Topics::new(base_topic, self.verbs()).with_groups(groups.to_vec());
        check_links(&self.links, &topics)?;
        check_subscriptions(&self.links, &topics, self.homeassistant.status_topic())?;
        gpio.check(&lines)?;

        Ok(time_zone)
    }
}

/// The validated configuration plus the values derived from it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time zone of the clock and of the times shown.
    pub time_zone: crate::clock::Zone,
    /// Device id used in topics and discovery.
    pub device_id: String,
    /// Human-readable device name.
    pub device_name: String,
    /// Topic prefix, e.g. `edge/kitchen`.
    pub base_topic: String,
    /// Command roots shared with other boards, e.g. `edge/all`.
    pub group_topics: Vec<String>,
    /// MQTT client id.
    pub client_id: String,
    /// Where the agent connects.
    pub endpoint: Endpoint,
    /// User name and password for the broker.
    pub credentials: Option<(String, Secret)>,
    /// CA certificates (PEM) for TLS.
    pub ca: Option<Vec<u8>>,
    /// The embedded broker, when enabled.
    pub broker: Option<EmbeddedBroker>,
    /// How the connection is kept up (`[mqtt]`'s timing).
    pub timing: Timing,
    /// The outputs' safe values and when they apply (`[safety]`).
    pub safety: Safety,
    /// The merged configuration as given, checked: each part reads its own
    /// section from it when it starts (a typed copy of every section here
    /// would be one more place to add a part), and `config show` prints it.
    pub config: Config,
}

/// How the connection is kept up, from `[mqtt]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The MQTT keep-alive interval.
    pub keep_alive: Duration,
    /// The first delay before reconnecting.
    pub backoff_min: Duration,
    /// The longest delay between reconnect attempts.
    pub backoff_max: Duration,
    /// How long the broker keeps the session while the agent is away, in
    /// seconds (0: a clean session each time).
    pub session_expiry_s: u32,
}

/// The outputs' safe values, from `[safety]`, parsed once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Safety {
    /// How long the broker may be away before the outputs go safe; zero: never.
    pub offline_timeout: Duration,
    /// Every LED's duty when safe, 0..=1.
    pub led_duty: f64,
    /// The matrix when safe.
    pub matrix: crate::parts::matrix::Frame,
}

impl Settings {
    /// The merged configuration as TOML, with secrets shown as `***`.
    pub(crate) fn to_redacted_toml(&self) -> String {
        let mut shown = self.config.clone();
        shown.device.id = Some(self.device_id.clone());
        shown.device.name = Some(self.device_name.clone());
        shown.mqtt.base_topic = Some(self.base_topic.clone());
        shown.mqtt.client_id = Some(self.client_id.clone());
        toml::to_string_pretty(&shown)
            .unwrap_or_else(|e| format!("# could not render the config: {e}\n"))
    }
}

/// A broker address the agent connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to use TLS (`mqtts://`).
    pub tls: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// The host name, lower-cased, with characters outside `[a-z0-9_-]` replaced by `_`.
pub(crate) fn sanitize_device_id(host: &str) -> String {
    let id: String = host
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "edge".into()
    } else {
        id
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| {
        ConfigError::new(
            key,
            quote(value),
            "an IP address and port, e.g. 127.0.0.1:1883",
        )
    })
}

fn parse_url(value: &str) -> Result<Endpoint, ConfigError> {
    let allowed = "an mqtt://host[:port] or mqtts://host[:port] URL";
    // mqtt: is not a scheme the URL standard knows, so a host is taken as
    // written, with no IDNA mapping (which the agent does not build in).
    if !value.is_ascii() {
        return Err(ConfigError::new(
            "mqtt.url",
            quote(value),
            "a URL in ASCII: an international host name in its xn-- form",
        ));
    }
    let url =
        url::Url::parse(value).map_err(|_| ConfigError::new("mqtt.url", quote(value), allowed))?;
    let tls = match url.scheme() {
        "mqtt" => false,
        "mqtts" => true,
        _ => return Err(ConfigError::new("mqtt.url", quote(value), allowed)),
    };
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(ConfigError::new("mqtt.url", quote(value), allowed)),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::new(
            "mqtt.url",
            "(a URL with credentials)",
            "a URL without user:password; use mqtt.username and mqtt.password",
        ));
    }
    if !(url.path().is_empty() || url.path() == "/") || url.query().is_some() {
        return Err(ConfigError::new("mqtt.url", quote(value), allowed));
    }
    Ok(Endpoint {
        host,
        port: url.port().unwrap_or(if tls { 8883 } else { 1883 }),
        tls,
    })
}

fn secret(
    section: &str,
    value: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, ConfigError> {
    match (value, file) {
        (Some(_), Some(f)) => Err(ConfigError::new(
            format!("{section}.password_file"),
            f.display(),
            format!("either {section}.password or {section}.password_file, not both"),
        )),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f).map_err(|e| {
                ConfigError::new(
                    format!("{section}.password_file"),
                    f.display(),
                    format!("a readable file holding the password ({e})"),
                )
            })?;
            Ok(Some(Secret::new(text.lines().next().unwrap_or_default())))
        }
        (None, None) => Ok(None),
    }
}

/// Reads `mqtt.ca_file` and checks that it holds at least one CA certificate
/// the TLS library can use, as the MQTT client does when it connects.
fn read_ca_file(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let refuse = |why: String| {
        ConfigError::new(
            "mqtt.ca_file",
            path.display(),
            format!("a PEM file with the CA certificate(s) for mqtts:// ({why})"),
        )
    };
    let pem = std::fs::read(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("it is not valid PEM: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    let (usable, _) = roots.add_parsable_certificates(certs);
    if usable == 0 {
        return Err(refuse(
            "it holds no usable -----BEGIN CERTIFICATE----- section".into(),
        ));
    }
    Ok(pem)
}

/// Turns figment's error into one line naming the key, the value and what is allowed.
fn from_figment(err: figment::Error) -> ConfigError {
    use figment::error::Kind;
    let mut key = err.path.join(".");
    let source_note = match &err.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(p)) => format!(" (in {})", p.display()),
            _ if md.name.contains("environment") => format!(
                " (from {ENV_PREFIX}{})",
                err.path
                    .iter()
                    .map(|k| k.to_uppercase())
                    .collect::<Vec<_>>()
                    .join("__")
            ),
            _ => String::new(),
        },
        None => String::new(),
    };
    let secret_key = err.path.last().is_some_and(|k| k.contains("password"));
    let shown = |a: &figment::error::Actual| {
        if secret_key {
            "***".to_string()
        } else {
            a.to_string()
        }
    };
    let (value, allowed) = match &err.kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            (shown(actual), format!("expected {}", plain_type(expected)))
        }
        Kind::InvalidLength(n, expected) => (format!("{n} items"), format!("expected {expected}")),
        Kind::UnknownVariant(v, allowed) => (quote(v), format!("one of {}", allowed.join(", "))),
        Kind::UnknownField(f, allowed) => {
            // figment's path already ends in the unknown key; be sure it does.
            if err.path.last().is_none_or(|k| k != f) {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(f);
            }
            (
                "(unknown key)".to_string(),
                if allowed.is_empty() {
                    "no keys here".to_string()
                } else {
                    format!("a known key: {}", allowed.join(", "))
                },
            )
        }
        Kind::MissingField(f) => ("(missing)".into(), format!("{f} is required")),
        Kind::Message(m) => ("(unreadable)".into(), one_line(m)),
        other => ("(invalid)".into(), other.to_string()),
    };
    ConfigError {
        key: if key.is_empty() { "(file)".into() } else { key },
        value,
        source_note,
        allowed,
    }
}

/// Serde's type names in words a person understands.
fn plain_type(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => format!("a whole number ({expected})"),
        "i8" | "i16" | "i32" | "i64" => format!("a whole number ({expected})"),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::gpio::WAVESHARE_SPI_LINES;

    #[test]
    fn defaults_are_valid_and_use_the_embedded_broker() {
        let s = Config::from_toml("").expect("defaults valid");
        assert_eq!(s.endpoint.port, 1884);
        assert_eq!(s.endpoint.host, "127.0.0.1");
        assert!(s.broker.is_some());
        assert_eq!(s.base_topic, format!("edge/{}", s.device_id));
    }

    #[test]
    fn the_repository_default_config_is_valid() {
        let text = include_str!("../../config/edge-agent.toml");
        let s = Config::from_toml(text).expect("config/edge-agent.toml is valid");
        assert!(s.broker.is_some());
    }

    #[test]
    fn group_topics_are_roots_of_their_own() {
        let cfg = |groups: &str| {
            Config::from_toml(&format!(
                "[device]\nid = \"k\"\n[mqtt]\ngroup_topics = {groups}\n"
            ))
        };
        let s = cfg(r#"["edge/all", "site/kitchen-boards"]"#).expect("valid groups");
        assert_eq!(s.group_topics, ["edge/all", "site/kitchen-boards"]);
        assert!(cfg("[]").expect("none").group_topics.is_empty());
        for (groups, key, why) in [
            (r#"["edge/+"]"#, "mqtt.group_topics[0]", "wildcards"),
            (r#"["edge/all/"]"#, "mqtt.group_topics[0]", "wildcards"),
            (
                r#"["edge/all", "$SYS"]"#,
                "mqtt.group_topics[1]",
                "wildcards",
            ),
            (
                r#"["edge/k"]"#,
                "mqtt.group_topics[0]",
                "base topic (edge/k)",
            ),
            (r#"["edge"]"#, "mqtt.group_topics[0]", "above or below"),
            (
                r#"["edge/k/sub"]"#,
                "mqtt.group_topics[0]",
                "above or below",
            ),
            (
                r#"["a/b", "a"]"#,
                "mqtt.group_topics[1]",
                "another group topic (a/b)",
            ),
            (
                r#"["a", "a"]"#,
                "mqtt.group_topics[1]",
                "another group topic (a)",
            ),
        ] {
            let e = cfg(groups).expect_err(groups);
            assert_eq!(e.key, key, "{groups}: {e}");
            assert!(e.allowed.contains(why), "{groups}: {e}");
        }
        let many: Vec<String> = (0..=MAX_GROUP_TOPICS)
            .map(|i| format!("\"g/{i}\""))
            .collect();
        let e = cfg(&format!("[{}]", many.join(", "))).expect_err("too many");
        assert_eq!(e.key, "mqtt.group_topics");
    }

    #[test]
    fn sanitizes_host_names() {
        assert_eq!(sanitize_device_id("Kitchen.Pi 3"), "kitchen_pi_3");
        assert_eq!(sanitize_device_id(""), "edge");
    }

    #[test]
    fn unknown_key_names_the_key() {
        let e = Config::from_toml("[mqtt]\nurll = \"mqtt://x\"\n").unwrap_err();
        assert_eq!(e.key, "mqtt.urll");
        assert!(e.allowed.contains("url"), "{e}");
    }

    #[test]
    fn bad_url_is_refused() {
        for url in [
            "http://x",
            "mqtt://",
            "not a url",
            "mqtt://u:p@host",
            "mqtt://bröker.lan",
        ] {
            let e = Config::from_toml(&format!("[mqtt]\nurl = \"{url}\"\n")).unwrap_err();
            assert_eq!(e.key, "mqtt.url", "{url}: {e}");
        }
        assert_eq!(
            parse_url("mqtts://broker.lan"),
            Ok(Endpoint {
                host: "broker.lan".into(),
                port: 8883,
                tls: true
            })
        );
        let e = parse_url("mqtt://bröker.lan").unwrap_err();
        assert!(e.allowed.contains("xn--"), "{e}");
        assert_eq!(
            parse_url("mqtt://xn--brker-jua.lan:1883").map(|e| e.host),
            Ok("xn--brker-jua.lan".to_string())
        );
    }

    #[test]
    fn mqtts_needs_a_ca_file_with_a_certificate() {
        let e = Config::from_toml("[mqtt]\nurl = \"mqtts://broker.lan\"\n").unwrap_err();
        assert_eq!(e.key, "mqtt.ca_file");
        assert!(e.allowed.contains("mqtts://"), "{e}");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = |name: &str| {
            let path = dir.path().join(name);
            format!(
                "[mqtt]\nurl = \"mqtts://broker.lan\"\nca_file = {:?}\n",
                path.display().to_string()
            )
        };
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["ca.lan".into()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        for (name, text, ok) in [
            ("empty.pem", String::new(), false),
            ("key.pem", key.serialize_pem(), false),
            (
                "garbage.pem",
                "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".into(),
                false,
            ),
            (
                "bad-base64.pem",
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n".into(),
                false,
            ),
            ("ca.pem", cert.pem(), true),
        ] {
            std::fs::write(dir.path().join(name), text).expect("write");
            match Config::from_toml(&config(name)) {
                Ok(s) => assert!(ok && s.ca.is_some(), "{name} was accepted"),
                Err(e) => {
                    assert!(!ok, "{name}: {e}");
                    assert_eq!(e.key, "mqtt.ca_file", "{name}: {e}");
                }
            }
        }
        let e = Config::from_toml(&config("missing.pem")).unwrap_err();
        assert_eq!(e.key, "mqtt.ca_file");
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let e = Config::from_toml("[mqtt]\nkeep_alive_s = 0\n").unwrap_err();
        assert_eq!(e.key, "mqtt.keep_alive_s");
        let e = Config::from_toml("[mqtt]\nkeep_alive_s = -3\n").unwrap_err();
        assert_eq!(e.key, "mqtt.keep_alive_s");
        let e = Config::from_toml("[tilt]\nfrequency_hz = 0\n").unwrap_err();
        assert_eq!(e.key, "tilt.frequency_hz");
        for n in [0, 10_001] {
            let e = Config::from_toml(&format!("[broker]\nmax_connections = {n}\n")).unwrap_err();
            assert_eq!(e.key, "broker.max_connections", "{e}");
        }
        let s = Config::from_toml("").expect("defaults");
        assert_eq!(s.broker.map(|b| b.max_connections), Some(500));
        let e = Config::from_toml("[display]\nwidth = 263\n").unwrap_err();
        assert_eq!(e.key, "display.width");
        let e = Config::from_toml("[display]\ntime_zone = \"Mars/Base\"\n").unwrap_err();
        assert_eq!(e.key, "display.time_zone");
        let e = Config::from_toml("[display]\nbackend = \"oled\"\n").unwrap_err();
        assert_eq!(e.key, "display.backend");
        assert!(e.allowed.contains("png"), "{e}");
    }

    #[test]
    fn keep_alive_below_what_the_client_accepts_is_refused() {
        for v in [0, 1, 4] {
            let e = Config::from_toml(&format!("[mqtt]\nkeep_alive_s = {v}\n")).unwrap_err();
            assert_eq!(e.key, "mqtt.keep_alive_s", "{v}: {e}");
            assert!(e.allowed.contains("5 to 65535"), "{e}");
        }
        Config::from_toml("[mqtt]\nkeep_alive_s = 5\n").expect("5 s is the client's minimum");
    }

    #[cfg(not(feature = "waveshare"))]
    #[test]
    fn waveshare_without_the_feature_is_refused() {
        let e = Config::from_toml("[display]\nbackend = \"waveshare\"\n").unwrap_err();
        assert_eq!(e.key, "display.backend");
        assert!(e.allowed.contains("--features waveshare"), "{e}");
        // A board that is not fitted needs no driver.
        Config::from_toml("[display]\nenabled = false\nbackend = \"waveshare\"\n")
            .expect("a disabled board is fine");
    }

    #[test]
    fn bad_safe_values_are_refused() {
        let e = Config::from_toml("[safety]\nled_percent = 101\n").unwrap_err();
        assert_eq!(e.key, "safety.led_percent");
        let e = Config::from_toml("[safety]\nmatrix = \"11111/00000\"\n").unwrap_err();
        assert_eq!(e.key, "safety.matrix");
        assert!(e.allowed.contains("frame"), "{e}");
        let e = Config::from_toml("[safety]\noffline_timeout_ms = 100000000\n").unwrap_err();
        assert_eq!(e.key, "safety.offline_timeout_ms");
        let s = Config::from_toml("[safety]\nmatrix = \"00000/00000/00100/00000/00000\"\n")
            .expect("a frame is fine");
        assert_eq!(s.safety.matrix.to_text(), "00000/00000/00100/00000/00000");
    }

    #[test]
    fn pin_conflict_names_both_parts() {
        let e = Config::from_toml("[button]\npin = 18\n").unwrap_err();
        assert_eq!(e.key, "tilt.right_pin");
        assert!(e.allowed.contains("button.pin"), "{e}");
        // The same line on another chip is no conflict.
        Config::from_toml(
            "[button]\npin = 18\n[matrix]\nenabled = false\n[tilt]\nenabled = false\n",
        )
        .unwrap();
    }

    #[test]
    fn rppal_puts_every_part_on_the_one_bcm_gpio() {
        // The buzzer on 13 and matrix line 13 on another chip: no conflict
        // for gpiocdev or the simulation, one line for rppal.
        let cfg = |backend: &str| {
            format!("[hardware]\nbackend = \"{backend}\"\n[matrix]\nchip = \"/dev/gpiochip1\"\n[buzzer]\nenabled = true\npin = 13\n")
        };
        Config::from_toml(&cfg("sim")).expect("another chip");
        Config::from_toml(&cfg("gpiocdev")).expect("another chip");
        let e = Config::from_toml(&cfg("rppal")).unwrap_err();
        assert_eq!(e.key, "matrix.lines[12]", "{e}");
        assert!(e.allowed.contains("buzzer.pin"), "{e}");
        assert!(e.allowed.contains("matrix.chip"), "{e}");
    }

    #[test]
    fn line_numbers_the_gpio_cannot_have_are_refused() {
        // rppal takes a u8 BCM number: 283 would have become BCM 27.
        let rppal = "[hardware]\nbackend = \"rppal\"\n[matrix]\nenabled = false\n";
        let e = Config::from_toml(&format!("{rppal}[tilt]\nleft_pin = 283\n")).unwrap_err();
        assert_eq!(e.key, "tilt.left_pin");
        assert!(e.allowed.contains("0 to 27"), "{e}");
        let e = Config::from_toml(&format!("{rppal}[button]\npin = 28\n")).unwrap_err();
        assert_eq!(e.key, "button.pin");
        Config::from_toml(&format!("{rppal}[button]\npin = 26\n")).expect("a header line");
        // gpiocdev: the button is a character device line, the LEDs are rppal's.
        let gpiocdev = "[hardware]\nbackend = \"gpiocdev\"\n[matrix]\nenabled = false\n";
        Config::from_toml(&format!("{gpiocdev}[button]\npin = 283\n")).expect("a chip line");
        let e = Config::from_toml(&format!("{gpiocdev}[tilt]\nright_pin = 283\n")).unwrap_err();
        assert_eq!(e.key, "tilt.right_pin");
        assert!(e.allowed.contains("rppal"), "{e}");
        // The simulation and gpiocdev take any line up to 1023.
        let e = Config::from_toml("[matrix]\nenabled = false\n[button]\npin = 1024\n").unwrap_err();
        assert_eq!(e.key, "button.pin");
        assert!(e.allowed.contains("0 to 1023"), "{e}");
    }

    #[cfg(feature = "waveshare")]
    #[test]
    fn the_waveshare_panel_claims_its_spi_lines() {
        let e = Config::from_toml("[display]\nbackend = \"waveshare\"\n").unwrap_err();
        assert!(e.key.starts_with("matrix.lines["), "{e}");
        assert!(e.allowed.contains("Waveshare"), "{e}");
        let ok = "[display]\nbackend = \"waveshare\"\n[matrix]\nenabled = false\n";
        Config::from_toml(ok).expect("no matrix, no conflict");
        for (pin, name) in [(8, "CE0"), (10, "MOSI"), (11, "SCLK")] {
            let e = Config::from_toml(&format!("{ok}[button]\npin = {pin}\n")).unwrap_err();
            assert_eq!(e.key, "button.pin", "{e}");
            assert!(e.allowed.contains(name), "{e}");
        }
        let e = Config::from_toml(
            "[display]\nbackend = \"waveshare\"\ndc_pin = 10\n[matrix]\nenabled = false\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "display.dc_pin");
        assert!(e.allowed.contains("MOSI"), "{e}");
        let e = Config::from_toml(
            "[display]\nbackend = \"waveshare\"\nrst_pin = 40\n[matrix]\nenabled = false\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "display.rst_pin");
        assert!(e.allowed.contains("0 to 27"), "{e}");
    }

    #[test]
    fn the_buzzer_can_be_enabled_on_the_defaults() {
        let s = Config::from_toml("[buzzer]\nenabled = true\n").expect("a free default pin");
        let b = &s.config.buzzer;
        assert!(!DEFAULT_MATRIX_LINES.contains(&b.pin));
        let d = DisplayConfig::default();
        let t = TiltConfig::default();
        let used = [
            t.left_pin,
            t.right_pin,
            ButtonConfig::default().pin,
            d.rst_pin,
            d.dc_pin,
            d.busy_pin,
        ];
        assert!(!used.contains(&b.pin), "{}", b.pin);
        assert!(!WAVESHARE_SPI_LINES.iter().any(|(l, _)| *l == b.pin));
    }

    #[test]
    fn links_that_loop_are_refused() {
        let ok = "[device]\nid = \"me\"\n[[link]]\non = \"edge/other/button/event\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n";
        Config::from_toml(ok).unwrap();
        // Its own command publishes edge/me/matrix, which it listens to.
        let direct =
            "[device]\nid = \"me\"\n[[link]]\non = \"edge/me/matrix\"\ndo = \"matrix/set\"\n";
        let e = Config::from_toml(direct).unwrap_err();
        assert_eq!(e.key, "link[0]");
        assert!(e.allowed.contains("loop"), "{e}");
        // Two links in a ring.
        let ring = "[device]\nid = \"me\"\n[[link]]\non = \"edge/me/display\"\ndo = \"matrix/set\"\n[[link]]\non = \"edge/me/matrix\"\ndo = \"display/message/set\"\n";
        let e = Config::from_toml(ring).unwrap_err();
        assert!(e.allowed.contains("link[0] -> link[1] -> link[0]"), "{e}");
        // Any error on this device would trigger it again.
        let errors = "[device]\nid = \"me\"\n[buzzer]\nenabled = true\n[[link]]\non = \"edge/me/#\"\ndo = \"buzzer/set\"\n";
        let e = Config::from_toml(errors).unwrap_err();
        assert!(e.allowed.contains("loop"), "{e}");
        let e = Config::from_toml("[[link]]\non = \"a/#/b\"\ndo = \"matrix/set\"\n").unwrap_err();
        assert_eq!(e.key, "link[0].on");
        let e = Config::from_toml("[[link]]\non = \"a/b\"\ndo = \"toaster/set\"\n").unwrap_err();
        assert_eq!(e.key, "link[0].do");
    }

    #[test]
    fn a_link_command_is_one_this_device_has_and_loops_follow_the_topic_table() {
        let link = |on: &str, command: &str| {
            Config::from_toml(&format!(
                "[device]\nid = \"me\"\n[[link]]\non = \"{on}\"\ndo = \"{command}\"\n"
            ))
        };
        let e = link("edge/other/button/event", "led/middle/set").unwrap_err();
        assert_eq!(e.key, "link[0].do");
        assert!(e.allowed.contains("no LED called \"middle\""), "{e}");
        let e = link("edge/other/button/event", "buzzer/set").unwrap_err();
        assert!(e.allowed.contains("disabled"), "{e}");
        // A command to one LED publishes that LED's state alone.
        link("edge/me/led/right", "led/left/set").unwrap();
        let e = link("edge/me/led/left", "led/left/set").unwrap_err();
        assert!(e.allowed.contains("loop"), "{e}");
        // Tilt publishes both.
        let e = link("edge/me/led/right", "tilt/set").unwrap_err();
        assert!(e.allowed.contains("loop"), "{e}");
        let e = link("$share/g/edge/other/button/event", "matrix/set").unwrap_err();
        assert_eq!(e.key, "link[0].on");
        assert!(e.allowed.contains("$share"), "{e}");
    }

    #[test]
    fn links_that_would_need_a_subscription_to_everything_are_refused() {
        let links = |ons: &[&str]| {
            let mut t = String::from("[device]\nid = \"me\"\n");
            for on in ons {
                t.push_str(&format!(
                    "[[link]]\non = \"{on}\"\ndo = \"matrix/set\"\npayload = \"smiley\"\n"
                ));
            }
            Config::from_toml(&t)
        };
        let e = links(&[
            "edge/kitchen/#",
            "edge/+/button/event",
            "+/kitchen/button/event",
        ])
        .unwrap_err();
        assert_eq!(e.key, "link");
        assert!(e.allowed.contains("\"+/+/#\""), "{e}");
        // Merging within one prefix is fine; so is a wide filter asked for as it is.
        links(&["edge/kitchen/#", "edge/+/button/event"]).unwrap();
        links(&["+/kitchen/button/event"]).unwrap();
        links(&["#"]).unwrap_err(); // (a loop: it hears its own state)
    }

    #[test]
    fn open_broker_beyond_loopback_is_refused() {
        let e = Config::from_toml("[broker]\nlisten = \"0.0.0.0:1883\"\n").unwrap_err();
        assert_eq!(e.key, "broker.listen");
        Config::from_toml(
            "[broker]\nlisten = \"0.0.0.0:1883\"\nusername = \"u\"\npassword = \"p\"\n",
        )
        .unwrap();
        // An empty password would let in a client that gives none.
        let e = Config::from_toml(
            "[broker]\nlisten_v5 = \"0.0.0.0:1884\"\nusername = \"u\"\npassword = \"\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "broker.password");
        assert!(e.allowed.contains("broker.listen_v5"), "{e}");
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "\nsecond line\n").expect("write");
        let e = Config::from_toml(&format!(
            "[broker]\nlisten = \"0.0.0.0:1883\"\nusername = \"u\"\npassword_file = {:?}\n",
            file.display().to_string()
        ))
        .unwrap_err();
        assert_eq!(e.key, "broker.password_file");
        // On loopback only, credentials are optional and an empty password harms no one.
        Config::from_toml("[broker]\nusername = \"u\"\npassword = \"\"\n").unwrap();
    }

    #[test]
    fn raw_env_keys_are_string_keys() {
        for key in RAW_ENV_KEYS {
            let c: Config = Figment::new()
                .merge(Serialized::default(key, "0123"))
                .extract()
                .unwrap_or_else(|e| panic!("{key}: {e}"));
            let got = match key {
                "mqtt.password" => c.mqtt.password.map(|p| p.expose().to_string()),
                "mqtt.username" => c.mqtt.username,
                "broker.password" => c.broker.password.map(|p| p.expose().to_string()),
                "broker.username" => c.broker.username,
                "mqtt.client_id" => c.mqtt.client_id,
                "mqtt.base_topic" => c.mqtt.base_topic,
                "device.id" => c.device.id,
                "device.name" => c.device.name,
                other => panic!("{other}: add it here"),
            };
            assert_eq!(got.as_deref(), Some("0123"), "{key}");
        }
    }

    #[test]
    fn secrets_are_never_shown() {
        let s = Config::from_toml(
            "[mqtt]\nurl = \"mqtt://h\"\nusername = \"u\"\npassword = \"hunter2\"\n",
        )
        .unwrap();
        let shown = s.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
        assert!(!format!("{s:?}").contains("hunter2"));
        let e = Config::from_toml("[mqtt]\npassword = 42\n").unwrap_err();
        assert!(!e.to_string().contains("42"), "{e}");
    }
}
