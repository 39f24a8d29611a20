//! What every handler shares: the store, the signer, the join throttle, the refusal log,
//! the broker link and presence table and the settings they need, plus the clock.

use std::sync::Arc;

use ipnet::IpNet;

use crate::broker::{BrokerLink, PresenceTable};
use crate::client_ca::ClientCa;
use crate::clock::Clock;
use crate::conductor::Conductors;
use crate::events::{EventBus, EventKind};
use crate::metrics::handle::LazyCounter;
use crate::metrics::KICKS_TOTAL;
use crate::monitor::Monitor;
use crate::rate_limit::JoinThrottle;
use crate::refusal_log::RefusalLog;
use crate::signer::TokenSigner;
use crate::store::{Kick, SessionStore};

#[derive(Clone)]
pub struct AppState {
    /// Where sessions live; which backend is the configuration's business.
    pub store: Arc<dyn SessionStore>,
    pub signer: Arc<dyn TokenSigner>,
    pub throttle: Arc<JoinThrottle>,
    /// Refused joins: the first of each source logged at once, repeats counted.
    pub refusals: Arc<RefusalLog>,
    pub tokens: Arc<TokenPolicy>,
    pub trusted_proxies: Arc<[IpNet]>,
    /// The link that tells the broker about closed sessions and kicked devices, when
    /// configured.
    pub revocation: Option<BrokerLink>,
    /// Who is connected to the broker, from the link's presence reports (empty without
    /// a link).
    pub presence: Arc<PresenceTable>,
    /// The one source of time for handlers, the join path and the store.
    pub clock: Arc<dyn Clock>,
    /// What happened, for the SSE stream and webhooks; publishing never waits.
    pub events: EventBus,
    /// The sessions' traffic as the broker link sees it: logged, counted, streamed live.
    pub monitor: Monitor,
    /// Signs client certificates for joins that send a CSR, when configured.
    pub client_ca: Option<Arc<ClientCa>>,
    /// The sessions' conductors.
    pub conductors: Arc<Conductors>,
}

impl AppState {
    /// Publishes an event (stamped by the state's clock) to the SSE stream and webhooks;
    /// never waits.
    pub fn emit(&self, event: EventKind) {
        self.events.publish(event, self.clock.unix_now_ms());
    }

    /// After the store confirmed a close: tells the broker, which disconnects the
    /// session's devices.
    pub fn session_closed(&self, session_id: &str) {
        if let Some(link) = &self.revocation {
            link.session_closed(session_id);
        }
        self.presence.forget_session(session_id);
        self.conductors.session_closed(session_id);
        self.monitor.session_ended(session_id);
    }

    /// After the store confirmed a kick: tells the broker, which disconnects the device
    /// and refuses its older tokens, and announces it.
    pub fn device_kicked(&self, kick: &Kick) {
        if let Some(link) = &self.revocation {
            link.device_kicked(crate::broker::kicked_device(kick, self.tokens.ttl_secs));
        }
        KICKS.increment(1);
        self.emit(EventKind::DeviceKicked {
            session_id: kick.id.as_str().to_owned(),
            client: kick.client.as_str().to_owned(),
        });
    }
}

/// `ism_kicks_total`.
static KICKS: LazyCounter = LazyCounter::new(KICKS_TOTAL);

/// How device tokens are issued.
#[derive(Debug, Clone)]
pub struct TokenPolicy {
    /// `iss` of every token.
    pub issuer: String,
    /// Token lifetime; a session that ends sooner shortens it.
    pub ttl_secs: u64,
}
