//! The `gochat` binary: arguments → configuration → telemetry → startup.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gochat::config::Config;
use gochat::startup::Application;

#[derive(Parser)]
#[command(name = "gochat", version, about = "GoChat: a real-time chat server (REST, WebSocket, web client)")]
struct Cli {
    /// A TOML file with settings (same keys as the GOCHAT_* environment variables, which override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, WebSockets and web client (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Print a new VAPID key pair for push notifications: the private key (for GOCHAT_VAPID_PRIVATE_KEY, the same
    /// on every node) on the first line, its public key on the second.
    VapidKey,
}

/// Large allocations (argon2's 19 MiB per hash, big frames) go straight to `mmap` and back to the system when
/// freed. glibc's default raises its mmap threshold after the first such free, after which each thread's arena
/// keeps those blocks, and an idle node that served a few registrations holds hundreds of MB (README, "Measurements
/// behind the tunables").
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::VapidKey) = cli.command {
        let key = gochat::push::VapidKey::generate("mailto:admin@localhost");
        println!("{}\n{}", key.private_base64url(), key.public_key());
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Openapi) = cli.command {
        print!("{}", gochat::api::spec_json());
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gochat: {e}");
            return ExitCode::from(2);
        }
    };
    gochat::telemetry::init(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gochat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Some(Command::Migrate) => {
                gochat::store::Stores::open(&config.database_url, 1).await?;
                tracing::info!("migrations applied");
                Ok(())
            }
            _ => serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "gochat stopped with an error");
            eprintln!("gochat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let handle = app.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        handle.shutdown();
    });
    app.run_until_stopped().await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("signal received");
}
