//! Multi-node data parallelism: the machines (nodes) of one run, as `--nodes N --node-rank R
//! --coordinator HOST:PORT` (or `EESMM_NODES`, `EESMM_NODE_RANK`, `EESMM_COORDINATOR`) give them.
//!
//! burn-collective's global mode does the work: node 0 runs its orchestrator on the coordinator's
//! port (nodes register there), and every node serves its gradients to the others on its
//! data-service port (peer-to-peer all-reduce). Every node runs its local devices as a one-node
//! run does; replica `i` of node `R` with `L` devices is global replica `R * L + i` of `N * L`,
//! which takes that replica's rows of every batch, so the stage's `train.batch_size` stays the
//! batch of the whole run.
//!
//! A node that dies or hangs must not leave the others waiting: every collective operation of a
//! multi-node run runs under a [`Watchdog`] deadline (`--node-timeout`), past which the waiting
//! node exits 1 naming the nodes it was waiting for.

use std::collections::HashMap;
use std::fmt;
use std::net::{TcpListener, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// Where a replica stands among the replicas of its run (on every node: its global rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rank {
    pub index: usize,
    pub count: usize,
}

impl Rank {
    /// The only replica of a single-device run.
    pub const SINGLE: Rank = Rank { index: 0, count: 1 };

    /// Rank 0 writes metrics, checkpoints and plots.
    pub fn is_main(&self) -> bool {
        self.index == 0
    }

    /// This replica's rows of a micro-batch of `batch` samples (`batch` divides evenly).
    pub fn rows(&self, batch: usize) -> std::ops::Range<usize> {
        let share = batch / self.count;
        self.index * share..(self.index + 1) * share
    }

    /// The seed of this replica's own randomness (drop path): rank 0 keeps `seed`, so a
    /// single-device run draws what it always drew.
    pub fn seed(&self, seed: u64) -> u64 {
        seed ^ (self.index as u64).wrapping_mul(0xA24B_AED4_963E_E407)
    }
}

/// The most nodes a run takes (a guard against a wrapped negative number).
const MAX_NODES: usize = 1 << 16;

/// A `HOST:PORT` network endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("'{s}' is not HOST:PORT"))?;
        let port = port
            .parse()
            .map_err(|_| format!("'{s}': the port '{port}' is not a number in [1, 65535]"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(format!("'{s}' is not HOST:PORT with a port in [1, 65535]"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host.contains(':') {
            true => write!(f, "[{}]:{}", self.host, self.port),
            false => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl Endpoint {
    /// The WebSocket URL burn-communication connects to.
    pub fn ws_url(&self) -> String {
        format!("ws://{self}")
    }

    /// The port `offset` after this one.
    fn port_after(&self, offset: usize) -> Result<u16> {
        u16::try_from(usize::from(self.port) + offset)
            .ok()
            .with_context(|| format!("port {} + {offset} is past 65535", self.port))
    }
}

/// The command-line view of the nodes of a run (flags or their `EESMM_*` variables).
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    pub nodes: usize,
    pub node_rank: usize,
    pub coordinator: Option<String>,
    pub node_address: Option<String>,
    pub timeout_s: u64,
}

/// The nodes of a run and this node's place among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    pub count: usize,
    pub rank: usize,
    /// Where node 0's orchestrator listens.
    pub coordinator: Endpoint,
    /// Where the other nodes reach this node's data service.
    pub address: Endpoint,
    /// How long a node waits for the others in one collective operation.
    pub timeout: Duration,
}

impl Nodes {
    /// A run on this machine alone.
    pub fn single() -> Self {
        Self {
            count: 1,
            rank: 0,
            coordinator: Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            },
            address: Endpoint {
                host: "127.0.0.1".into(),
                port: 1,
            },
            timeout: Duration::from_secs(600),
        }
    }

    /// The nodes of `options`, checked. The data-service address defaults to the coordinator's
    /// port + 1 + the node rank, on the address this machine reaches the coordinator from.
    pub fn from_options(options: &NodeOptions) -> Result<Self> {
        let NodeOptions {
            nodes, node_rank, ..
        } = *options;
        ensure!(
            (1..=MAX_NODES).contains(&nodes),
            "--nodes (EESMM_NODES): {nodes} is not in [1, {MAX_NODES}]"
        );
        ensure!(
            node_rank < nodes,
            "--node-rank (EESMM_NODE_RANK): {node_rank} is not below --nodes {nodes} (ranks are 0..{})",
            nodes - 1
        );
        ensure!(
            options.timeout_s > 0,
            "--node-timeout (EESMM_NODE_TIMEOUT): 0 s; expected a number of seconds above 0"
        );
        if nodes == 1 {
            return Ok(Self::single());
        }
        let coordinator: Endpoint = options
            .coordinator
            .as_deref()
            .context(
                "--coordinator (EESMM_COORDINATOR): required with --nodes above 1: HOST:PORT of \
                 node 0, where its orchestrator listens",
            )?
            .parse()
            .map_err(|e| anyhow::anyhow!("--coordinator (EESMM_COORDINATOR): {e}"))?;
        let address = match &options.node_address {
            Some(text) => text
                .parse()
                .map_err(|e| anyhow::anyhow!("--node-address (EESMM_NODE_ADDRESS): {e}"))?,
            None => Endpoint {
                host: local_host_towards(&coordinator)?,
                port: coordinator
                    .port_after(1 + node_rank)
                    .context("--coordinator: no default data-service port; set --node-address")?,
            },
        };
        ensure!(
            !(address.port == coordinator.port && node_rank == 0),
            "--node-address (EESMM_NODE_ADDRESS): node 0's data service cannot use the \
             coordinator's port {}",
            coordinator.port
        );
        Ok(Self {
            count: nodes,
            rank: node_rank,
            coordinator,
            address,
            timeout: Duration::from_secs(options.timeout_s),
        })
    }

    pub fn is_multi(&self) -> bool {
        self.count > 1
    }

    /// The global ranks of this node's `local` replicas.
    pub fn ranks(&self, local: usize) -> Vec<Rank> {
        (0..local)
            .map(|i| Rank {
                index: self.rank * local + i,
                count: self.count * local,
            })
            .collect()
    }

    /// The node a global replica runs on.
    pub fn node_of(&self, rank: Rank) -> usize {
        rank.index / (rank.count / self.count)
    }

    /// The other nodes, in words (`node 1`, `nodes 1, 2`).
    pub fn others(&self) -> String {
        let others: Vec<String> = (0..self.count)
            .filter(|&n| n != self.rank)
            .map(|n| n.to_string())
            .collect();
        match others.len() {
            1 => format!("node {}", others[0]),
            _ => format!("nodes {}", others.join(", ")),
        }
    }

    /// Refuses a port this node is to serve on that is already taken, naming the flag.
    pub fn check_port_free(port: u16, flag: &str) -> Result<()> {
        TcpListener::bind(("0.0.0.0", port))
            .map(drop)
            .with_context(|| format!("{flag}: cannot listen on port {port}"))
    }
}

/// The address of this machine's interface towards `coordinator` (no packet is sent: connecting
/// a UDP socket only picks the route). Loopback stays loopback.
fn local_host_towards(coordinator: &Endpoint) -> Result<String> {
    let target = (coordinator.host.as_str(), coordinator.port)
        .to_socket_addrs()
        .with_context(|| format!("--coordinator: cannot resolve {}", coordinator.host))?
        .next()
        .with_context(|| format!("--coordinator: {} has no address", coordinator.host))?;
    if target.ip().is_loopback() {
        return Ok(target.ip().to_string());
    }
    let any = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any).context("finding this node's address")?;
    socket
        .connect(target)
        .with_context(|| format!("--coordinator: no route to {target}; set --node-address"))?;
    Ok(socket.local_addr()?.ip().to_string())
}

static CURRENT: OnceLock<Nodes> = OnceLock::new();

/// Sets the nodes of this process's runs (once, before training).
pub fn configure(nodes: Nodes) -> Result<()> {
    if nodes.is_multi() {
        tracing::info!(
            "node {} of {}: coordinator {}, data service {}",
            nodes.rank,
            nodes.count,
            nodes.coordinator,
            nodes.address
        );
    }
    if CURRENT.set(nodes.clone()).is_err() && CURRENT.get() != Some(&nodes) {
        bail!("the nodes of this process are already set");
    }
    Ok(())
}

/// The nodes of this process's runs (one node unless [`configure`]d).
pub fn current() -> &'static Nodes {
    CURRENT.get_or_init(Nodes::single)
}

/// Sets this process's nodes from the command line; on a multi-node run checks that this node's
/// data-service port is free, and on node 0 starts the orchestrator.
pub fn start(options: &NodeOptions) -> Result<()> {
    let nodes = Nodes::from_options(options)?;
    configure(nodes.clone())?;
    if nodes.is_multi() {
        quiet_disconnects();
        Nodes::check_port_free(nodes.address.port, "--node-address (the data service)")?;
        if nodes.rank == 0 {
            start_orchestrator(nodes.coordinator.port)?;
        }
    }
    Ok(())
}

/// burn-communication's data service panics (on its own server thread, which nothing waits on)
/// when a peer's connection resets, as it does whenever another node's process exits, the end of
/// every run included: that panic is logged as one line at debug level instead of a backtrace. A
/// node lost mid-run is reported by the operation that needed it.
fn quiet_disconnects() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let from_data_service = info
            .location()
            .is_some_and(|l| l.file().contains("burn-communication"));
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        match from_data_service && message.contains("ResetWithoutClosingHandshake") {
            true => tracing::debug!("a peer node closed its connection: {message}"),
            false => default(info),
        }
    }));
}

/// Runs burn-collective's global orchestrator on `port` for the rest of the process, on its own
/// thread (node 0 only).
pub fn start_orchestrator(port: u16) -> Result<()> {
    Nodes::check_port_free(port, "--coordinator")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the orchestrator's runtime")?;
    std::thread::Builder::new()
        .name("orchestrator".into())
        .spawn(move || runtime.block_on(burn::collective::start_global_orchestrator(port)))
        .context("starting the orchestrator's thread")?;
    Ok(())
}

/// Deadlines on the collective operations of a multi-node run: one thread watches them and, when
/// one passes, prints what was waited for and exits the process with status 1.
pub struct Watchdog {
    armed: Mutex<HashMap<u64, (Instant, String)>>,
    next: AtomicU64,
}

/// An armed deadline; disarmed when dropped.
pub struct Deadline {
    ticket: u64,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        watchdog()
            .armed
            .lock()
            .expect("watchdog")
            .remove(&self.ticket);
    }
}

/// The process's watchdog (its thread starts on first use).
fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(200));
                let now = Instant::now();
                let armed = watchdog().armed.lock().expect("watchdog");
                if let Some((_, what)) = armed.values().find(|(deadline, _)| *deadline < now) {
                    eprintln!("error: {what}");
                    std::process::exit(1);
                }
            })
            .expect("the watchdog thread");
        Watchdog {
            armed: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        }
    })
}

/// Arms a deadline `after` from now; `message` is printed if it passes.
pub fn deadline(after: Duration, message: String) -> Deadline {
    let dog = watchdog();
    let ticket = dog.next.fetch_add(1, Ordering::Relaxed);
    dog.armed
        .lock()
        .expect("watchdog")
        .insert(ticket, (Instant::now() + after, message));
    Deadline { ticket }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(nodes: usize, rank: usize, coordinator: Option<&str>) -> NodeOptions {
        NodeOptions {
            nodes,
            node_rank: rank,
            coordinator: coordinator.map(str::to_string),
            node_address: None,
            timeout_s: 60,
        }
    }

    #[test]
    fn global_ranks_follow_node_then_device_and_ports_follow_the_coordinator() {
        let nodes = Nodes::from_options(&options(3, 2, Some("127.0.0.1:29500"))).unwrap();
        let ranks = nodes.ranks(2);
        assert_eq!(
            ranks,
            vec![Rank { index: 4, count: 6 }, Rank { index: 5, count: 6 }]
        );
        assert_eq!(nodes.node_of(ranks[1]), 2);
        assert_eq!(nodes.node_of(Rank { index: 1, count: 6 }), 0);
        assert_eq!(nodes.address.to_string(), "127.0.0.1:29503");
        assert_eq!(nodes.coordinator.ws_url(), "ws://127.0.0.1:29500");
        assert_eq!(nodes.others(), "nodes 0, 1");
        assert_eq!(Nodes::single().ranks(2)[1], Rank { index: 1, count: 2 });
    }

    #[test]
    fn node_flags_are_refused_with_the_flag_and_what_was_expected() {
        let error = |o: NodeOptions| Nodes::from_options(&o).unwrap_err().to_string();
        assert_eq!(
            error(options(2, 2, Some("127.0.0.1:29500"))),
            "--node-rank (EESMM_NODE_RANK): 2 is not below --nodes 2 (ranks are 0..1)"
        );
        assert!(
            error(options(2, 0, None)).starts_with("--coordinator (EESMM_COORDINATOR): required")
        );
        assert_eq!(
            error(options(2, 0, Some("127.0.0.1"))),
            "--coordinator (EESMM_COORDINATOR): '127.0.0.1' is not HOST:PORT"
        );
        assert_eq!(
            error(options(0, 0, None)),
            "--nodes (EESMM_NODES): 0 is not in [1, 65536]"
        );
        let mut bad = options(2, 1, Some("127.0.0.1:29500"));
        bad.node_address = Some("127.0.0.1:x".into());
        assert_eq!(
            error(bad),
            "--node-address (EESMM_NODE_ADDRESS): '127.0.0.1:x': the port 'x' is not a number in [1, 65535]"
        );
        assert!(!Nodes::from_options(&options(1, 0, None))
            .unwrap()
            .is_multi());
    }
}
