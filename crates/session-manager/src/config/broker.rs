//! The service's link to the broker: where it connects to publish closed sessions.

use std::fmt;
use std::str::FromStr;

use clap::Args;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Broker link")]
pub struct BrokerConfig {
    /// Broker listener for the revocation link, e.g. mqtt://127.0.0.1:1883. When set (and
    /// tokens are signed), closing a session disconnects its devices at once.
    #[arg(long, env = "ISM_BROKER_CONTROL_URL")]
    pub broker_control_url: Option<BrokerUrl>,
}

/// `mqtt://host[:port]` (or `tcp://`): the broker listener the service connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let rest = input
            .trim()
            .strip_prefix("mqtt://")
            .or_else(|| input.trim().strip_prefix("tcp://"))
            .ok_or_else(|| format!("{input:?} is not an mqtt://host:port URL"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{input:?} has an invalid port"))?;
                (host, port)
            }
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("{input:?} is not an mqtt://host:port URL"));
        }
        Ok(BrokerUrl {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mqtt://{}:{}", self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse() {
        let url = |s: &str| s.parse::<BrokerUrl>();
        assert_eq!(
            url("mqtt://127.0.0.1:1883"),
            Ok(BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1883
            })
        );
        assert_eq!(url("mqtt://mosquitto").map(|u| u.port), Ok(1883));
        assert_eq!(url("tcp://broker:1884/").map(|u| u.port), Ok(1884));
        assert_eq!(url("mqtt://[::1]:1883").map(|u| u.host), Ok("::1".into()));
        for bad in [
            "",
            "http://x:1",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:port",
            "mqtt://u@x:1",
        ] {
            assert!(url(bad).is_err(), "{bad:?}");
        }
    }
}
