//! The service's link to the broker (`ISM_BROKER_CONTROL_URL`): revocations and kicks
//! out, presence in.
//!
//! - [`pending`]: the handlers' side, [`BrokerLink`]: a closed session or a kicked device
//!   (already durable in the store) is noted and published as soon as the link can;
//! - [`link`]: the task holding the one MQTT connection, republishing from the store on
//!   every (re)connect and reading presence reports;
//! - [`presence`]: the in-memory table of who is connected, for the admin API;
//! - [`outage`]: how loudly a broker that cannot be reached is reported.

mod link;
mod outage;
mod pending;
pub mod presence;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use link::LinkTask;
pub use pending::BrokerLink;
pub use presence::PresenceTable;
use session_token::KickedDevice;

use crate::config::BrokerUrl;
use crate::signer::TokenSigner;
use crate::store::{Kick, SessionStore};

/// Creates the link for the handlers and the task that serves it; `token_ttl_secs` is the
/// lifetime of the device tokens the service issues.
pub fn link(
    url: BrokerUrl,
    signer: Arc<dyn TokenSigner>,
    issuer: String,
    token_ttl_secs: u64,
    store: Arc<dyn SessionStore>,
    presence: Arc<PresenceTable>,
) -> (BrokerLink, LinkTask) {
    let pending = Arc::new(pending::Pending::default());
    let connected = Arc::new(AtomicBool::new(false));
    let task = LinkTask::new(
        url,
        signer,
        issuer,
        token_ttl_secs,
        store,
        presence,
        Arc::clone(&pending),
        Arc::clone(&connected),
    );
    (BrokerLink { pending, connected }, task)
}

/// The control message entry of a kick, for device tokens living `token_ttl_secs`.
pub fn kicked_device(kick: &Kick, token_ttl_secs: u64) -> KickedDevice {
    link::kicked_device(kick, token_ttl_secs)
}
