//! Which conductor a session gets, by its type. A type not listed gets the `default`
//! conductor. Adding a conductor: one file in `conductor/` and one line in [`REGISTRY`].

use super::active::ActiveConductor;
use super::default::DefaultConductor;
use super::{Conductor, ConductorContext};

/// Creates a session's conductor.
type Create = fn(ConductorContext) -> Box<dyn Conductor>;

/// Session type → conductor.
const REGISTRY: &[(&str, Create)] = &[("active", ActiveConductor::create)];

/// The conductor of a session of type `session_type`.
pub fn conductor_for(session_type: &str, context: ConductorContext) -> Box<dyn Conductor> {
    let create = REGISTRY
        .iter()
        .find(|(name, _)| *name == session_type)
        .map_or(DefaultConductor::create as Create, |(_, create)| *create);
    create(context)
}
