//! Events from crates that log with `tracing` (kube, h2, tonic), passed to the
//! `log` logger, and spans made free.
//!
//! With no `tracing` subscriber installed, the `log` feature some dependency
//! turns on makes every span (h2 opens several per request) fall back to a
//! `log` check and record its fields first: about 1% of the proxy's CPU. A
//! subscriber that never wants spans turns each into a cached no; events still
//! reach the log, filtered as `RUST_LOG` and `/logging` say.

use std::fmt::Write as _;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Interest, Level, LevelFilter, Metadata, Subscriber};

pub struct ToLog;

/// Installs `ToLog` as the process's subscriber; later calls do nothing.
pub fn install() {
    let _ = tracing_core::dispatcher::set_global_default(tracing_core::Dispatch::new(ToLog));
}

/// Makes `tracing` read the log's level again, after it changed at run time.
pub fn level_changed() {
    tracing_core::callsite::rebuild_interest_cache();
}

fn log_level(level: &Level) -> log::Level {
    match *level {
        Level::ERROR => log::Level::Error,
        Level::WARN => log::Level::Warn,
        Level::INFO => log::Level::Info,
        Level::DEBUG => log::Level::Debug,
        Level::TRACE => log::Level::Trace,
    }
}

fn log_metadata<'a>(meta: &Metadata<'a>) -> log::Metadata<'a> {
    log::Metadata::builder()
        .level(log_level(meta.level()))
        .target(meta.target())
        .build()
}

impl Subscriber for ToLog {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() {
            return Interest::never();
        }
        // The log's filter can change at run time: ask per event.
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match log::max_level() {
            log::LevelFilter::Off => LevelFilter::OFF,
            log::LevelFilter::Error => LevelFilter::ERROR,
            log::LevelFilter::Warn => LevelFilter::WARN,
            log::LevelFilter::Info => LevelFilter::INFO,
            log::LevelFilter::Debug => LevelFilter::DEBUG,
            log::LevelFilter::Trace => LevelFilter::TRACE,
        })
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && log::logger().enabled(&log_metadata(meta))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Unreachable while every span's interest is `never`; any id will do.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = Line(String::new());
        event.record(&mut line);
        log::logger().log(
            &log::Record::builder()
                .metadata(log_metadata(meta))
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .args(format_args!("{}", line.0))
                .build(),
        );
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its other fields as `name=value`.
struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}{rest}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Keeps what reaches the `log` side, for one test's dispatcher.
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                SEEN.lock()
                    .unwrap()
                    .push(format!("{} {} {}", r.level(), r.target(), r.args()));
            }
        }
        fn flush(&self) {}
    }

    #[test]
    fn events_reach_the_log_and_spans_are_never_made() {
        let _ = log::set_logger(&Capture);
        log::set_max_level(log::LevelFilter::Info);
        let dispatch = tracing_core::Dispatch::new(ToLog);
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("request", id = 7);
            assert!(span.is_disabled(), "spans cost nothing");
            let _in = span.enter();
            tracing::warn!(target: "kube_runtime", attempt = 3, "watch failed: {}", "gone");
            tracing::debug!(target: "kube_runtime", "below the log's level");
        });
        let seen = SEEN.lock().unwrap().clone();
        assert_eq!(seen, ["WARN kube_runtime watch failed: gone attempt=3"]);
    }
}
