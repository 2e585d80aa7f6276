//! End-to-end tests: the real `waypoint` binary on loopback, real TLS with
//! certificates made per test, real echo backends, the project's own HBONE client.

mod cases;
mod common;
