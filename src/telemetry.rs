//! Logging and tracing setup (tracing-subscriber), pretty or JSON.
//!
//! [`get_subscriber`] takes the sink as a parameter, so tests can send logs to `std::io::sink`
//! (quiet by default) or to stdout (`TEST_LOG=1`), and the binary to stdout. A panic hook routes
//! panics through tracing, so they land in the same (possibly JSON) log stream.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// A subscriber writing to `sink`, filtered by `RUST_LOG` or else `filter`. `ansi`: colour codes,
/// for a terminal only (a file or a pipe gets plain text).
pub fn get_subscriber<Sink>(
    filter: &str,
    format: LogFormat,
    ansi: bool,
    sink: Sink,
) -> Box<dyn Subscriber + Send + Sync>
where
    Sink: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(sink);
    match format {
        LogFormat::Pretty => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().flatten_event(true).finish()),
    }
}

/// Installs `subscriber` globally (once per process; later calls are ignored) and the panic hook.
pub fn init_subscriber(subscriber: Box<dyn Subscriber + Send + Sync>) {
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            tracing::error!(panic = %info, "panic");
            default(info);
        }));
    }
}
