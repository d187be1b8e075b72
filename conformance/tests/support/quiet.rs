//! Keeps the expected panics of failing cases (they run on tokio worker threads) out of the test
//! output: `run_all` already collects their messages. Panics anywhere else print as usual.

use std::sync::Once;

/// Installs the filtering panic hook once per test binary.
pub fn quiet_case_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_worker = std::thread::current().name().is_some_and(|n| {
                n.starts_with("tokio-rt-worker") || n.starts_with("tokio-runtime-worker")
            });
            if !on_worker {
                default(info);
            }
        }));
    });
}
