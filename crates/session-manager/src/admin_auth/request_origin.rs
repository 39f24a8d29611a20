//! Who may talk to the admin port from a browser: nobody but the admin's own pages.
//!
//! The admin API may run without a key on loopback, so a web page open in the operator's
//! browser must not be able to use it. Two doors are closed:
//!
//! - **DNS rebinding**: a foreign page whose name resolves to 127.0.0.1 sends its own name
//!   in `Host`. Requests whose `Host` is not an allowed admin host are refused, so such a
//!   page can neither change nor read anything (`ISM_ADMIN_ALLOWED_HOSTS`; by default the
//!   loopback names and the bind address, on any port).
//! - **Cross-site requests** (forms, images, `fetch` in no-cors mode): browsers say where
//!   a request comes from. `Sec-Fetch-Site` other than `same-origin`/`none`, an `Origin`
//!   or `Referer` naming a host that is not allowed, or `Origin: null` are refused.
//!
//! Clients that are not browsers (curl, the original clients, SDKs) send none of these
//! headers, or an allowed `Host`, and are unaffected. Refusals are 403 with the usual JSON
//! error body.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN, REFERER};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Written in `ISM_ADMIN_ALLOWED_HOSTS`, turns the `Host` check off (origins are still
/// checked against the request's own `Host`).
pub const ANY_HOST: &str = "*";

/// The hosts the admin API answers to.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    /// None: any host.
    hosts: Option<Vec<AllowedHost>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    name: String,
    /// None: any port.
    port: Option<u16>,
}

impl AllowedHosts {
    /// `configured` (`ISM_ADMIN_ALLOWED_HOSTS`: names or IPs, each optionally with
    /// `:port`; `*` for any); when empty, the loopback names and the bind address.
    pub fn new(configured: &[String], bind: SocketAddr) -> Result<Self, String> {
        if configured.iter().any(|entry| entry.trim() == ANY_HOST) {
            return Ok(AllowedHosts { hosts: None });
        }
        let mut hosts = Vec::new();
        for entry in configured
            .iter()
            .map(|entry| entry.trim())
            .filter(|e| !e.is_empty())
        {
            let host = parse_host(entry).ok_or_else(|| {
                format!("{entry:?} is not a host name or address (optionally with :port)")
            })?;
            hosts.push(host);
        }
        if hosts.is_empty() {
            hosts = ["localhost", "127.0.0.1", "::1"]
                .into_iter()
                .map(|name| AllowedHost {
                    name: name.to_owned(),
                    port: None,
                })
                .collect();
            if !bind.ip().is_unspecified() && !bind.ip().is_loopback() {
                hosts.push(AllowedHost {
                    name: bind.ip().to_string(),
                    port: None,
                });
            }
        }
        Ok(AllowedHosts { hosts: Some(hosts) })
    }

    fn allows(&self, host: &AllowedHost) -> bool {
        match &self.hosts {
            None => true,
            Some(hosts) => hosts.iter().any(|allowed| {
                allowed.name == host.name && allowed.port.is_none_or(|port| Some(port) == host.port)
            }),
        }
    }

    /// Why `headers` (of a request to the admin port) are refused, if they are.
    pub fn refusal(&self, uri: &Uri, headers: &HeaderMap) -> Option<String> {
        let host_value = headers
            .get(HOST)
            .map(|value| value.to_str().ok().and_then(parse_host))
            .or_else(|| {
                uri.authority()
                    .map(|authority| parse_host(authority.as_str()))
            });
        let request_host = match host_value {
            // HTTP/1.0 without Host: no browser sends that.
            None => None,
            Some(None) => return Some("the Host header is not a valid host".to_owned()),
            Some(Some(host)) if !self.allows(&host) => {
                return Some(format!(
                    "the admin API does not answer to the host {:?} (see ISM_ADMIN_ALLOWED_HOSTS)",
                    host.name
                ))
            }
            Some(Some(host)) => Some(host),
        };
        if let Some(site) = headers.get("sec-fetch-site") {
            let same = matches!(site.to_str(), Ok("same-origin" | "none"));
            if !same {
                return Some("cross-site requests to the admin API are refused".to_owned());
            }
        }
        for (header, value) in [
            (ORIGIN, headers.get(ORIGIN)),
            (REFERER, headers.get(REFERER)),
        ] {
            let Some(value) = value else { continue };
            let origin_host = value
                .to_str()
                .ok()
                .and_then(|value| value.parse::<Uri>().ok())
                .and_then(|uri| uri.authority().and_then(|a| parse_host(a.as_str())));
            let same_site = origin_host.is_some_and(|origin| {
                self.allows(&origin)
                    && request_host
                        .as_ref()
                        .is_none_or(|own| own.name == origin.name)
            });
            if !same_site {
                return Some(format!(
                    "requests from other sites are refused by the admin API ({header})"
                ));
            }
        }
        None
    }
}

/// `name[:port]` with the name lower-cased, without a trailing dot and IPv6 brackets.
fn parse_host(input: &str) -> Option<AllowedHost> {
    let input = input.trim();
    // A bare IPv6 address (as in a configuration list) has no brackets.
    if let Ok(ip) = input.parse::<IpAddr>() {
        return Some(AllowedHost {
            name: ip.to_string(),
            port: None,
        });
    }
    let authority = input.parse::<Authority>().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host();
    let name = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<IpAddr>().ok()?.to_string(),
        None => host.trim_end_matches('.').to_ascii_lowercase(),
    };
    if name.is_empty() {
        return None;
    }
    Some(AllowedHost {
        name,
        port: authority.port_u16(),
    })
}

/// Middleware in front of every admin route: refuses foreign hosts and other sites.
pub async fn refuse_foreign_requests(
    State(allowed): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    match allowed.refusal(request.uri(), request.headers()) {
        None => next.run(request).await,
        Some(reason) => {
            tracing::warn!(%reason, method = %request.method(), path = %request.uri().path(), "admin request refused");
            ApiError::Forbidden(reason).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn loopback() -> AllowedHosts {
        AllowedHosts::new(&[], "127.0.0.1:50001".parse().unwrap()).unwrap()
    }

    #[test]
    fn loopback_names_pass_with_and_without_port() {
        let allowed = loopback();
        for host in [
            "localhost",
            "LOCALHOST:50001",
            "127.0.0.1",
            "127.0.0.1:50001",
            "[::1]:50001",
            "localhost.",
        ] {
            assert_eq!(
                allowed.refusal(&Uri::default(), &headers(&[("host", host)])),
                None,
                "{host}"
            );
        }
        assert_eq!(allowed.refusal(&Uri::default(), &HeaderMap::new()), None);
    }

    #[test]
    fn foreign_hosts_are_refused() {
        let allowed = loopback();
        for host in [
            "attacker.example",
            "attacker.example:50001",
            "localhost.attacker.example",
            "127.0.0.2",
            "user@localhost",
        ] {
            assert!(
                allowed
                    .refusal(&Uri::default(), &headers(&[("host", host)]))
                    .is_some(),
                "{host}"
            );
        }
    }

    #[test]
    fn configured_hosts_replace_the_defaults_and_ports_bind_when_given() {
        let allowed = AllowedHosts::new(
            &[
                "admin.internal:8443".to_owned(),
                "10.0.0.5".to_owned(),
                "fd00::1".to_owned(),
            ],
            "0.0.0.0:50001".parse().unwrap(),
        )
        .unwrap();
        for host in ["admin.internal:8443", "10.0.0.5", "10.0.0.5:1", "[fd00::1]"] {
            assert_eq!(
                allowed.refusal(&Uri::default(), &headers(&[("host", host)])),
                None,
                "{host}"
            );
        }
        for host in ["admin.internal", "admin.internal:80", "localhost"] {
            assert!(
                allowed
                    .refusal(&Uri::default(), &headers(&[("host", host)]))
                    .is_some(),
                "{host}"
            );
        }
        assert!(AllowedHosts::new(&["a b".to_owned()], "0.0.0.0:1".parse().unwrap()).is_err());
        let any = AllowedHosts::new(&["*".to_owned()], "0.0.0.0:1".parse().unwrap()).unwrap();
        assert_eq!(
            any.refusal(&Uri::default(), &headers(&[("host", "x.example")])),
            None
        );
    }

    #[test]
    fn the_bind_address_is_allowed_by_default() {
        let allowed = AllowedHosts::new(&[], "192.0.2.10:50001".parse().unwrap()).unwrap();
        assert_eq!(
            allowed.refusal(&Uri::default(), &headers(&[("host", "192.0.2.10:50001")])),
            None
        );
    }

    #[test]
    fn cross_site_requests_are_refused_and_same_origin_ones_pass() {
        let allowed = loopback();
        let host = ("host", "127.0.0.1:50001");
        for refused in [
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("origin", "https://attacker.example")],
            vec![host, ("origin", "null")],
            vec![host, ("referer", "https://attacker.example/page")],
            vec![host, ("origin", "http://localhost:50001")],
        ] {
            assert!(
                allowed
                    .refusal(&Uri::default(), &headers(&refused))
                    .is_some(),
                "{refused:?}"
            );
        }
        for passed in [
            vec![
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:50001"),
            ],
            vec![host, ("sec-fetch-site", "none")],
            vec![host, ("referer", "http://127.0.0.1:50001/console")],
        ] {
            assert_eq!(
                allowed.refusal(&Uri::default(), &headers(&passed)),
                None,
                "{passed:?}"
            );
        }
    }
}
