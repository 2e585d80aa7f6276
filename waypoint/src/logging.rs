//! Logging: `RUST_LOG` as env_logger reads it, plus a level that the admin
//! `/logging?level=` endpoint raises or lowers at run time for every module.

mod from_tracing;

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The admin-set level; `Off` until someone sets one.
static OVERRIDE: AtomicUsize = AtomicUsize::new(0);

struct Dynamic {
    env: env_logger::Logger,
}

fn override_level() -> log::LevelFilter {
    match OVERRIDE.load(Ordering::Relaxed) {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

impl log::Log for Dynamic {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= override_level() || self.env.enabled(m)
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.env.matches(record) {
            self.env.log(record);
        } else if record.level() <= override_level() {
            let _ = writeln!(
                std::io::stderr(),
                "[{} {:<5} {}] {}",
                jiff::Timestamp::now(),
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {
        self.env.flush();
    }
}

pub fn init() {
    let env =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = env.filter();
    if log::set_boxed_logger(Box::new(Dynamic { env })).is_ok() {
        log::set_max_level(max);
    }
    from_tracing::install();
}

/// Sets the run-time level for all modules (`Off` returns to `RUST_LOG` alone).
pub fn set_level(level: log::LevelFilter) {
    OVERRIDE.store(level as usize, Ordering::Relaxed);
    let env_max = log::max_level();
    log::set_max_level(env_max.max(level));
    from_tracing::level_changed();
}
