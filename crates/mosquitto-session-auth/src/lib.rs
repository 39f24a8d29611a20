//! Mosquitto plugin (being built).
