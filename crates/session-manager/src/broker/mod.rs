//! The service's link to the broker (`ISM_BROKER_CONTROL_URL`): revocations (of closed
//! sessions and of service tokens) and kicks out, presence in.
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

pub use link::{kicked_device, link, revoked_token, LinkTask};
pub use pending::BrokerLink;
pub use presence::PresenceTable;
