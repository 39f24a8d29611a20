//! Where the two HTTP ports listen and how their connections are bounded.

use std::net::SocketAddr;

use clap::Args;
use ipnet::IpNet;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Listeners")]
pub struct ListenConfig {
    /// Admin API address (trusted network only). Port 0 picks a free port.
    #[arg(long, env = "ISM_ADMIN_ADDR", default_value = "127.0.0.1:50001")]
    pub admin_addr: SocketAddr,

    /// Public API address (devices join here; the proxy serves it under /api/).
    #[arg(long, env = "ISM_PUBLIC_ADDR", default_value = "127.0.0.1:8888")]
    pub public_addr: SocketAddr,

    /// Comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For is trusted
    /// for the client address (e.g. `127.0.0.1,10.0.0.0/8`). Empty: never trusted.
    #[arg(long, env = "ISM_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_ip_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ISM_MAX_BODY_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u64).range(64..=16 * 1024 * 1024))]
    pub max_body_bytes: u64,

    /// Most connections open at once on the public port; further ones wait in the
    /// backlog. Lowered automatically to fit the open-files limit.
    #[arg(long, env = "ISM_PUBLIC_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub public_max_connections: u32,

    /// Most connections open at once on the admin port.
    #[arg(long, env = "ISM_ADMIN_MAX_CONNECTIONS", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub admin_max_connections: u32,

    /// Seconds a connection may take to send a request's headers (after opening, or
    /// after its previous response) before it is closed.
    #[arg(long, env = "ISM_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout_secs: u64,

    /// Seconds a connection may go without a byte moving either way before it is closed.
    #[arg(long, env = "ISM_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub http_idle_timeout_secs: u64,
}

fn parse_ip_net(input: &str) -> Result<IpNet, String> {
    let input = input.trim();
    input
        .parse::<IpNet>()
        .or_else(|_| input.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{input:?} is neither an IP address nor a CIDR"))
}
