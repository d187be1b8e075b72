//! `cargo run -p session-demo -- --help`

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use session_demo::{
    Options, app, cookie_config, metrics_handle, metrics_routes, serve, session_config,
};
use session_kit::Manager;

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1), |k| std::env::var(k).ok()) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("session-demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("session-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> Result<(), Box<dyn std::error::Error>> {
    // INFO and above on stderr: failed loads and saves (with their cause, never a raw id),
    // purge failures; the storage layers' per-call spans are DEBUG
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let metrics = metrics_handle()?;
    let store = options.store.open().await?;
    let manager = Manager::new(store.clone(), session_config())?;
    let router = app(manager.clone(), cookie_config(options.secret.as_deref()))?
        .merge(metrics_routes(metrics));
    // deletes expired sessions every minute where the store does not expire them itself;
    // stopped when `run` returns
    let purge = manager.start_purge()?;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, options.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    println!(
        "session demo on http://{bound}/ (store: {}, cookie {}); Ctrl-C stops it",
        store.name(),
        if options.secret.is_some() {
            "signed"
        } else {
            "unsigned"
        }
    );
    serve(listener, router, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("\nshutting down: finishing the requests in flight");
    })
    .await?;
    let stats = purge.stop().await;
    println!(
        "purged {} expired sessions in {} rounds",
        stats.purged, stats.rounds
    );
    Ok(())
}
