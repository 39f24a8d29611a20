//! IoT Session Manager service (being built).
