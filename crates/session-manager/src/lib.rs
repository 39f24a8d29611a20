//! IoT Session Manager service (being built).
pub mod domain;
pub mod store;
