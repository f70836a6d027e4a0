//! The embedded MQTT broker: rumqttd, started in-process so that one board
//! works with no server at all.
//!
//! rumqttd serves MQTT 3.1.1 and MQTT 5 on separate listeners that share one
//! router; it has no stop call, so it runs on its own threads until the
//! process exits.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::config::{connect_host, EmbeddedBroker};

/// The built-in rumqttd settings: `broker/rumqttd.toml` of the repository.
pub const DEFAULT_RUMQTTD_TOML: &str = include_str!("../broker/rumqttd.toml");

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The rumqttd settings file is unusable.
    #[error("broker.config_file: {0}")]
    Config(String),
    /// A listen address cannot be bound.
    #[error("{key} = {addr}: cannot listen there ({reason}); is another broker running? Set {key} to a free address")]
    Bind {
        /// The config key of the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
    },
    /// The broker did not come up.
    #[error("the embedded broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
    /// The broker thread could not be started.
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
}

/// A running embedded broker.
#[derive(Debug, Clone)]
pub struct BrokerHandle {
    /// The MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// The MQTT 5 listener.
    pub listen_v5: SocketAddr,
}

/// The rumqttd configuration for these settings: the rumqttd file with the
/// agent's listen addresses, credentials and connection limit.
pub fn rumqttd_config(settings: &EmbeddedBroker) -> Result<rumqttd::Config, BrokerError> {
    let text = settings
        .rumqttd_toml
        .as_deref()
        .unwrap_or(DEFAULT_RUMQTTD_TOML);
    let one_line =
        |e: toml::de::Error| BrokerError::Config(crate::config::one_line(&e.to_string()));
    let mut table: toml::Table = toml::from_str(text).map_err(one_line)?;
    // `broker.max_connections` decides the limit, so the file need not give one.
    if let Some(toml::Value::Table(router)) = table.get_mut("router") {
        let limit = i64::try_from(settings.max_connections).unwrap_or(i64::MAX);
        router.insert("max_connections".into(), toml::Value::Integer(limit));
    }
    let mut config: rumqttd::Config = table.try_into().map_err(one_line)?;
    // rumqttd 0.20 has one limit, in the router, for all listeners together:
    // a client beyond it gets no CONNACK.
    config.router.max_connections = settings.max_connections;
    let auth = settings
        .credentials
        .as_ref()
        .map(|(u, p)| HashMap::from([(u.clone(), p.expose().to_string())]));
    for (servers, addr, section) in [
        (&mut config.v4, settings.listen, "[v4.1]"),
        (&mut config.v5, settings.listen_v5, "[v5.1]"),
    ] {
        let map = servers
            .as_mut()
            .filter(|m| m.len() == 1)
            .ok_or_else(|| BrokerError::Config(format!("needs exactly one {section} server")))?;
        for server in map.values_mut() {
            server.listen = addr;
            server.connections.auth = auth.clone();
        }
    }
    // The agent exposes no console, metrics port or websocket listener.
    config.console = None;
    config.prometheus = None;
    config.ws = None;
    Ok(config)
}

/// Starts rumqttd and waits until both listeners accept connections.
pub fn start(settings: &EmbeddedBroker) -> Result<BrokerHandle, BrokerError> {
    let config = rumqttd_config(settings)?;
    for (key, addr) in [
        ("broker.listen", settings.listen),
        ("broker.listen_v5", settings.listen_v5),
    ] {
        // rumqttd only logs a failed bind on its own thread: find out here.
        TcpListener::bind(addr).map_err(|e| BrokerError::Bind {
            key,
            addr,
            reason: e.to_string(),
        })?;
    }
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    for addr in [settings.listen, settings.listen_v5] {
        wait_listening(addr)?;
    }
    Ok(BrokerHandle {
        listen: settings.listen,
        listen_v5: settings.listen_v5,
    })
}

fn wait_listening(addr: SocketAddr) -> Result<(), BrokerError> {
    let target = SocketAddr::new(connect_host(addr).parse().unwrap_or(addr.ip()), addr.port());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(BrokerError::NotListening(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn listen_addresses_and_auth_come_from_the_agent_config() {
        let b = EmbeddedBroker {
            listen: "127.0.0.1:2883".parse().unwrap(),
            listen_v5: "127.0.0.1:2884".parse().unwrap(),
            credentials: Some(("u".into(), Secret::new("p"))),
            rumqttd_toml: None,
            max_connections: 321,
        };
        let c = rumqttd_config(&b).unwrap();
        let v4 = c.v4.unwrap().into_values().next().unwrap();
        let v5 = c.v5.unwrap().into_values().next().unwrap();
        assert_eq!(v4.listen, b.listen);
        assert_eq!(v5.listen, b.listen_v5);
        assert_eq!(
            v4.connections.auth.unwrap().get("u").map(String::as_str),
            Some("p")
        );
        assert!(c.console.is_none() && c.prometheus.is_none());
        assert_eq!(c.router.max_connections, 321);
    }

    #[test]
    fn the_connection_limit_comes_from_the_agent_config() {
        // A file without a limit of its own, and one with another limit.
        let file = |limit: &str| {
            format!("id = 0\n[router]\n{limit}max_outgoing_packet_count = 1\nmax_segment_size = 1024\nmax_segment_count = 1\n[v4.1]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nnext_connection_delay_ms = 1\n[v4.1.connections]\nconnection_timeout_ms = 1\nmax_payload_size = 1\nmax_inflight_count = 1\n[v5.1]\nname = \"b\"\nlisten = \"127.0.0.1:2\"\nnext_connection_delay_ms = 1\n[v5.1.connections]\nconnection_timeout_ms = 1\nmax_payload_size = 1\nmax_inflight_count = 1\n")
        };
        for text in [file(""), file("max_connections = 3\n")] {
            let b = EmbeddedBroker {
                listen: "127.0.0.1:2883".parse().unwrap(),
                listen_v5: "127.0.0.1:2884".parse().unwrap(),
                credentials: None,
                rumqttd_toml: Some(text),
                max_connections: 42,
            };
            let c = rumqttd_config(&b).expect("a usable file");
            assert_eq!(c.router.max_connections, 42);
        }
    }

    #[test]
    fn a_file_without_listeners_is_refused() {
        let b = EmbeddedBroker {
            listen: "127.0.0.1:2883".parse().unwrap(),
            listen_v5: "127.0.0.1:2884".parse().unwrap(),
            credentials: None,
            max_connections: 1,
            rumqttd_toml: Some("id = 0\n[router]\nmax_connections = 1\nmax_outgoing_packet_count = 1\nmax_segment_size = 1024\nmax_segment_count = 1\n".into()),
        };
        assert!(matches!(rumqttd_config(&b), Err(BrokerError::Config(_))));
    }
}
