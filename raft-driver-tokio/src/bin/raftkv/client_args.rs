//! How client commands find and authenticate to a cluster.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use raft_driver_tokio::tls::{Identity, TlsFiles};
use raft_driver_tokio::{Client, ClientOptions};

/// Connection flags shared by the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientArgs {
    /// Node addresses (any subset of the cluster), comma separated.
    #[arg(long, env = "RAFTKV_NODES", value_delimiter = ',', required = true)]
    pub nodes: Vec<SocketAddr>,
    /// The cluster id.
    #[arg(long, env = "RAFTKV_CLUSTER_ID")]
    pub cluster_id: u64,
    /// Directory with ca.pem and the client's NAME.pem / NAME.key (as `raftkv certs` writes).
    #[arg(long, env = "RAFTKV_CERTS", default_value = "certs")]
    pub certs: PathBuf,
    /// Name of the client certificate in the certificate directory.
    #[arg(long, env = "RAFTKV_CLIENT_NAME", default_value = "client")]
    pub name: String,
    /// Deadline of one request, redirects and retries included, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// How long to wait for one node before trying another, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub attempt_timeout_ms: u64,
}

impl ClientArgs {
    /// Loads the identity and builds the client options.
    pub fn options(&self) -> anyhow::Result<ClientOptions> {
        let files = TlsFiles::in_dir(&self.certs, &self.name);
        let identity = Identity::load(&files).with_context(|| {
            format!(
                "loading the client certificate from {} (create one with `raftkv certs`)",
                self.certs.display()
            )
        })?;
        Ok(ClientOptions {
            cluster_id: self.cluster_id,
            nodes: self.nodes.clone(),
            identity,
            timeout: Duration::from_millis(self.timeout_ms.max(1)),
            attempt_timeout: Duration::from_millis(self.attempt_timeout_ms.max(1)),
        })
    }

    /// A connected client (connections open lazily).
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::new(self.options()?).context("opening the client endpoint")
    }
}
