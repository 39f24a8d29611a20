//! A view of the control channel's stand-in server ([`PluginDouble`]) for tests that only
//! watch what the service's control link sends: who connected (client id, username) and
//! every message on the control topic. Subscriptions are answered but not reported.
//!
//! It binds at once but accepts only after [`Observer::start_accepting`]: until then the
//! service's connection attempts sit in the listen backlog without an answer, which is
//! what a stuck broker looks like.

#![allow(dead_code)]

#[path = "plugin_double.rs"]
mod plugin_double;

use std::time::Duration;

use plugin_double::{PluginDouble, Seen};
use session_token::ControlMessage;

/// What the observer saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Connected { client_id: String, username: String },
    Control(ControlMessage),
}

pub struct Observer {
    pub port: u16,
    double: PluginDouble,
}

impl Observer {
    /// Binds a port on loopback; accepts nothing yet.
    pub async fn bind() -> Observer {
        let double = PluginDouble::bind().await;
        Observer {
            port: double.port,
            double,
        }
    }

    /// Binds and accepts at once.
    pub async fn start() -> Observer {
        let observer = Observer::bind().await;
        observer.start_accepting();
        observer
    }

    pub fn start_accepting(&self) {
        self.double.start_accepting();
    }

    pub fn url(&self) -> String {
        self.double.url()
    }

    /// The next connection or control message seen, within `timeout` for each thing seen.
    pub async fn next(&mut self, timeout: Duration) -> Observed {
        loop {
            match self.double.next(timeout).await {
                Seen::Connected {
                    client_id,
                    username,
                } => {
                    return Observed::Connected {
                        client_id,
                        username,
                    }
                }
                Seen::Control(message) => return Observed::Control(message),
                Seen::Subscribed(_) => {}
            }
        }
    }
}
