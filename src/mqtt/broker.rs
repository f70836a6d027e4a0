//! The embedded MQTT broker: rumqttd, started in-process so that one board
//! works with no server at all.
//!
//! rumqttd serves MQTT 3.1.1 and MQTT 5 on separate listeners that share one
//! router; it has no stop call. `edge-agent run` starts it in a process of
//! its own (`start_isolated`), watched by a small supervisor process that
//! starts it again whenever it ends: a client that makes rumqttd panic (it
//! has several such bugs, docs/known-issues.md) costs a reconnection, never
//! the agent. [`start`] runs it on threads of the calling process instead
//! (tests, benchmarks), until that process exits.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::Protocol;

use crate::config::error::one_line;
use crate::config::secret::Secret;

/// The built-in rumqttd settings: `broker/rumqttd.toml` of the repository.
pub(crate) const DEFAULT_RUMQTTD_TOML: &str = include_str!("../../broker/rumqttd.toml");

/// Validated settings of the embedded broker.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    /// MQTT 3.1.1 listener.
    pub listen: SocketAddr,
    /// MQTT 5 listener.
    pub listen_v5: SocketAddr,
    /// Credentials every client must give.
    pub credentials: Option<(String, Secret)>,
    /// Contents of `broker.config_file`, when given.
    pub rumqttd_toml: Option<String>,
    /// Most clients connected at once (`broker.max_connections`).
    pub max_connections: usize,
}

/// The host to connect to for a listener: loopback when it listens on all addresses.
pub(crate) fn connect_host(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        if addr.is_ipv4() {
            "127.0.0.1".into()
        } else {
            "::1".into()
        }
    } else {
        addr.ip().to_string()
    }
}

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The rumqttd settings file is unusable.
    #[error("broker.config_file: {0}")]
    BadConfig(String),
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
    /// The broker thread or process could not be started.
    #[error("cannot start the broker: {0}")]
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
pub(crate) fn rumqttd_config(settings: &EmbeddedBroker) -> Result<rumqttd::Config, BrokerError> {
    let text = settings
        .rumqttd_toml
        .as_deref()
        .unwrap_or(DEFAULT_RUMQTTD_TOML);
    let one_line = |e: toml::de::Error| BrokerError::BadConfig(one_line(&e.to_string()));
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
            .ok_or_else(|| BrokerError::BadConfig(format!("needs exactly one {section} server")))?;
        for server in map.values_mut() {
            server.listen = addr;
            server.connections.auth = auth.clone();
        }
    }
    // The agent exposes no console, metrics port or websocket listener.
    config.console = None;
    config.prometheus = None;
    config.ws = None;
    // Nor does it start the rest of what rumqttd's `Broker::start` would.
    for (section, given) in [
        ("[bridge]", config.bridge.is_some()),
        ("[metrics]", config.metrics.is_some()),
        ("[cluster]", config.cluster.is_some()),
    ] {
        if given {
            return Err(BrokerError::BadConfig(format!(
                "{section} is not supported: the embedded broker runs its router and its \
                 [v4.1] and [v5.1] servers only"
            )));
        }
    }
    Ok(config)
}

/// Starts rumqttd and waits until both listeners accept connections.
pub fn start(settings: &EmbeddedBroker) -> Result<BrokerHandle, BrokerError> {
    let config = rumqttd_config(settings)?;
    check_free(settings)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let why = run_servers(config, move || {
                let _ = ready_tx.send(());
            });
            tracing::error!(error = %why, "embedded broker stopped");
        })
        .map_err(BrokerError::Thread)?;
    // Ready once the listeners exist and have Nagle's algorithm off.
    let _ = ready_rx.recv_timeout(READY_WITHIN);
    for addr in [settings.listen, settings.listen_v5] {
        wait_listening(addr)?;
    }
    Ok(BrokerHandle {
        listen: settings.listen,
        listen_v5: settings.listen_v5,
    })
}

/// How long the broker's listeners may take to come up.
const READY_WITHIN: Duration = Duration::from_secs(5);

/// Runs rumqttd's router and the servers of `config` (its [v4.1] and [v5.1]
/// listeners), calls `ready` once their listeners exist, and returns why
/// the first server that ended did. rumqttd's own `Broker::start` would also
/// build in its metrics exporter and web console, which the agent never
/// starts.
fn run_servers(config: rumqttd::Config, ready: impl FnOnce()) -> String {
    let router = rumqttd::Router::new(config.id, config.router.clone()).spawn();
    let (ended_tx, ended) = std::sync::mpsc::channel::<String>();
    let mut listens = Vec::new();
    let v4 = config.v4.into_iter().flat_map(HashMap::into_values);
    let v5 = config.v5.into_iter().flat_map(HashMap::into_values);
    for (settings, v5) in v4.map(|s| (s, false)).chain(v5.map(|s| (s, true))) {
        listens.push(settings.listen);
        let name = settings.name.clone();
        let ended_tx = ended_tx.clone();
        let router = router.clone();
        let thread = std::thread::Builder::new().name(name.clone());
        let spawned = thread.spawn({
            let name = name.clone();
            move || {
                let why = if v5 {
                    serve_on(rumqttd::Server::new(settings, router, V5))
                } else {
                    serve_on(rumqttd::Server::new(settings, router, V4))
                };
                let _ = ended_tx.send(format!("server {name}: {why}"));
            }
        });
        if let Err(e) = spawned {
            return format!("cannot start server {name}: {e}");
        }
    }
    drop(ended_tx);
    for addr in listens.iter().copied() {
        if let Err(e) = nagle_off_when_listening(addr, READY_WITHIN) {
            eprintln!("edge-agent: broker: Nagle's algorithm stays on for {addr}: {e}");
        }
    }
    ready();
    ended
        .recv()
        .unwrap_or_else(|_| "every server ended".to_string())
}

/// Runs one rumqttd server on a runtime of this thread, and returns why it ended.
fn serve_on<P: Protocol + Clone + Send + 'static>(mut server: rumqttd::Server<P>) -> String {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return format!("no runtime: {e}"),
    };
    match runtime.block_on(server.start(rumqttd::LinkType::Remote)) {
        Ok(()) => "stopped".to_string(),
        Err(e) => e.to_string(),
    }
}

/// Turns Nagle's algorithm off on this process's listening socket bound to
/// `addr`, once it exists (within `within`). Linux gives each connection it
/// accepts the same setting, so the broker sends a small packet at once
/// instead of holding it until the client has acknowledged the previous
/// one, which a client's TCP may delay by up to 40 ms. rumqttd binds its
/// listeners itself and has no setting for it.
fn nagle_off_when_listening(addr: SocketAddr, within: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(listener) = find_listener(addr)? {
            return listener.set_tcp_nodelay(true);
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no listening socket",
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// This process's listening socket bound to `addr`, as an owned duplicate.
fn find_listener(addr: SocketAddr) -> std::io::Result<Option<socket2::Socket>> {
    Ok(open_files()?.into_iter().find(|socket| {
        socket.is_listener().unwrap_or(false)
            && socket.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr)
    }))
}

/// A duplicate of each of this process's open files, as a socket; the
/// socket calls fail on those that are not one.
fn open_files() -> std::io::Result<Vec<socket2::Socket>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd")? {
        let Some(fd) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<std::os::fd::RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: `fd` was open when listed; if another thread closed it
        // meanwhile, the duplicate fails with EBADF and it is skipped, and
        // if its number was reused, the caller's checks see the new file.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Ok(owned) = borrowed.try_clone_to_owned() {
            files.push(socket2::Socket::from(owned));
        }
    }
    Ok(files)
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

/// Open files the broker may need: one per connection, and some to spare
/// for listeners, the runtime and the agent.
pub(crate) fn files_needed(max_connections: usize) -> u64 {
    max_connections as u64 + 64
}

/// Raises this process's soft limit of open files to `needed` (as far as
/// the hard limit allows; never lowers it) and returns the limit now set.
pub(crate) fn raise_open_files(needed: u64) -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = libc::rlim_t::try_from(needed)
        .unwrap_or(libc::rlim_t::MAX)
        .min(lim.rlim_max);
    if want > lim.rlim_cur {
        lim.rlim_cur = want;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // rlim_t is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(lim.rlim_cur))
}

/// Exit code of a broker process that stopped itself (a panic, or its
/// open files ran out); the supervisor starts it again.
const EXIT_BROKER_FAULT: i32 = 75;

/// Panics of rumqttd's 3.1.1 encoder tolerated before the broker is
/// restarted: each leaves a dead connection in rumqttd's router.
const ENCODER_PANICS_TOLERATED: usize = 16;

/// Starts rumqttd in a process of its own, under a supervisor process that
/// restarts it whenever it ends, and waits until both listeners accept
/// connections. Both processes end when the calling process does. Call it
/// while the process has one thread (before any runtime starts): it forks.
pub(crate) fn start_isolated(settings: &EmbeddedBroker) -> Result<BrokerHandle, BrokerError> {
    let config = rumqttd_config(settings)?;
    check_free(settings)?;
    let needed = files_needed(config.router.max_connections);
    let agent = std::process::id();
    // The first broker process says on it when its listeners are ready.
    let (ready_rx, ready_tx) = UnixStream::pair().map_err(BrokerError::Thread)?;
    // SAFETY: the caller has one thread; the child only calls into the
    // supervisor below, which never returns.
    match unsafe { libc::fork() } {
        -1 => return Err(BrokerError::Thread(std::io::Error::last_os_error())),
        0 => {
            drop(ready_rx);
            supervise(config, agent, needed, ready_tx)
        }
        _ => drop(ready_tx),
    }
    wait_ready(ready_rx);
    for addr in [settings.listen, settings.listen_v5] {
        wait_listening(addr)?;
    }
    Ok(BrokerHandle {
        listen: settings.listen,
        listen_v5: settings.listen_v5,
    })
}

/// Waits (at most [`READY_WITHIN`]) for the broker process's word that its
/// listeners are ready, or for the end of every process that could say it.
fn wait_ready(mut ready: UnixStream) {
    if ready.set_read_timeout(Some(READY_WITHIN)).is_ok() {
        let _ = ready.read(&mut [0u8]);
    }
}

/// Refuses listen addresses that are taken, in the agent's own words
/// (rumqttd only logs a failed bind on its own thread).
fn check_free(settings: &EmbeddedBroker) -> Result<(), BrokerError> {
    for (key, addr) in [
        ("broker.listen", settings.listen),
        ("broker.listen_v5", settings.listen_v5),
    ] {
        TcpListener::bind(addr).map_err(|e| BrokerError::Bind {
            key,
            addr,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

/// Ends this process when `parent` is no longer its parent, and makes the
/// kernel end it when the parent ends later.
fn follow_parent(parent: u32) {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number; getppid
    // has no preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() as u32 != parent {
            libc::_exit(0);
        }
    }
}

/// The supervisor: starts the broker process, and again whenever it ends,
/// with a growing pause between quick failures.
fn supervise(config: rumqttd::Config, agent: u32, needed: u64, ready: UnixStream) -> ! {
    follow_parent(agent);
    // Stop signals are for the agent: the broker stays until the agent has
    // said `offline` through it, and ends with it.
    // SAFETY: setting a signal's disposition to "ignore" is always sound.
    unsafe {
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let me = std::process::id();
    // Only the first broker process has someone waiting for it.
    let mut ready = Some(ready);
    let mut pause = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        // SAFETY: this process has one thread.
        let child = unsafe { libc::fork() };
        match child {
            -1 => {}
            0 => serve(config, me, needed, ready.take()),
            pid => {
                drop(ready.take());
                let mut status = 0;
                // SAFETY: waits for our own child; status is a plain int.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                eprintln!(
                    "edge-agent: the embedded broker stopped ({}); starting it again",
                    describe_status(status)
                );
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            pause = Duration::from_millis(50);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

fn describe_status(status: i32) -> String {
    if libc::WIFEXITED(status) {
        format!("exit code {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status}")
    }
}

/// The broker process: rumqttd, ended by its first panic that leaves it
/// in doubt, or when its open files run out (rumqttd's accept loop would
/// spin on the error).
fn serve(config: rumqttd::Config, supervisor: u32, needed: u64, ready: Option<UnixStream>) -> ! {
    follow_parent(supervisor);
    let limit = match raise_open_files(needed) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("edge-agent: broker: cannot read the open-files limit: {e}");
            1024
        }
    };
    if limit < needed {
        eprintln!(
            "edge-agent: broker: the open-files limit is {limit}, below the {needed} that \
             broker.max_connections needs; raise LimitNOFILE"
        );
    }
    let encoder_panics = std::sync::atomic::AtomicUsize::new(0);
    std::panic::set_hook(Box::new(move |info| {
        // rumqttd 0.20's 3.1.1 encoder refuses a message with MQTT 5
        // properties: only that subscriber's connection ends.
        let encoder = info
            .location()
            .is_some_and(|l| l.file().ends_with("protocol/v4/mod.rs"));
        let seen =
            encoder_panics.fetch_add(usize::from(encoder), std::sync::atomic::Ordering::Relaxed);
        if encoder && seen < ENCODER_PANICS_TOLERATED {
            if seen == 0 {
                eprintln!(
                    "edge-agent: the embedded broker dropped an MQTT 3.1.1 subscriber that was \
                     sent an MQTT 5 message with properties (docs/known-issues.md)"
                );
            }
            return;
        }
        eprintln!("edge-agent: the embedded broker failed: {info}");
        // SAFETY: ends the process at once, from any thread.
        unsafe { libc::_exit(EXIT_BROKER_FAULT) };
    }));
    let watched = std::thread::Builder::new()
        .name("files".into())
        .spawn(move || watch_files(limit));
    if let Err(e) = watched {
        eprintln!("edge-agent: broker: cannot watch its open files: {e}");
    }
    let why = run_servers(config, move || {
        if let Some(mut ready) = ready {
            let _ = ready.write_all(&[1]);
        }
    });
    eprintln!("edge-agent: the embedded broker stopped: {why}");
    // SAFETY: as above.
    unsafe { libc::_exit(EXIT_BROKER_FAULT) }
}

/// How often the broker process counts its open files.
const FILES_CHECK: Duration = Duration::from_millis(250);

/// How long its open files may stay at the limit before it is restarted.
const FILES_FULL_FOR: Duration = Duration::from_secs(1);

/// Ends the broker process when its open files have stayed at `limit` for
/// [`FILES_FULL_FOR`]: rumqttd's accept loop retries a failed accept at
/// once, so it would spin until a connection closes.
fn watch_files(limit: u64) {
    let mut full_since: Option<Instant> = None;
    loop {
        std::thread::sleep(FILES_CHECK);
        // Counting them takes a descriptor too: none left is full.
        let full = match std::fs::read_dir("/proc/self/fd") {
            Ok(d) => d.count() as u64 + 2 >= limit,
            Err(e) => e.raw_os_error() == Some(libc::EMFILE),
        };
        full_since = if full {
            full_since.or(Some(Instant::now()))
        } else {
            None
        };
        if full_since.is_some_and(|t| t.elapsed() >= FILES_FULL_FOR) {
            eprintln!(
                "edge-agent: the embedded broker ran out of open files ({limit}); starting it again"
            );
            // SAFETY: as above.
            unsafe { libc::_exit(EXIT_BROKER_FAULT) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(rumqttd_config(&b), Err(BrokerError::BadConfig(_))));
    }

    #[test]
    fn a_bridge_or_metrics_section_is_refused_not_ignored() {
        for section in ["[bridge]\nname = \"b\"\naddr = \"x:1\"\nqos = 0\nsub_path = \"#\"\nreconnection_delay = 1\nping_delay = 1\ntimeout = 1\n    [bridge.connections]\n    connection_timeout_ms = 1\n    max_payload_size = 1\n    max_inflight_count = 1\n", "[metrics]\n    [metrics.alerts]\n    push_interval = 1\n"] {
            let text = format!("{DEFAULT_RUMQTTD_TOML}\n{section}");
            let b = EmbeddedBroker {
                listen: "127.0.0.1:2883".parse().unwrap(),
                listen_v5: "127.0.0.1:2884".parse().unwrap(),
                credentials: None,
                max_connections: 1,
                rumqttd_toml: Some(text),
            };
            match rumqttd_config(&b) {
                Err(BrokerError::BadConfig(why)) => assert!(why.contains("not supported"), "{why}"),
                other => panic!("{section}: {other:?}"),
            }
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    /// The broker's end of the connection from `client`, among this
    /// process's open files.
    fn accepted_end(client: &TcpStream) -> Option<socket2::Socket> {
        let me = client.local_addr().ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let found = open_files()
                .ok()?
                .into_iter()
                .find(|s| s.peer_addr().ok().and_then(|a| a.as_socket()) == Some(me));
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn the_broker_sends_without_nagles_delay_on_both_listeners() {
        let b = EmbeddedBroker {
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            listen_v5: SocketAddr::from(([127, 0, 0, 1], free_port())),
            credentials: None,
            rumqttd_toml: None,
            max_connections: 10,
        };
        let handle = start(&b).expect("the broker starts");
        for addr in [handle.listen, handle.listen_v5] {
            let client = TcpStream::connect(addr).expect("connects");
            let end = accepted_end(&client).expect("the broker accepted it");
            assert!(end.tcp_nodelay().expect("readable"), "{addr}");
        }
    }
}
