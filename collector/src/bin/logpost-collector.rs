//! `logpost-collector`: argument parsing, logging, signals and exit codes;
//! everything else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use logpost_collector::config::CollectorConfig;
use logpost_shared::config::SourceText;
use tokio_util::sync::CancellationToken;

/// Receives log batches from logpost agents, stores them in partitioned
/// topic logs under its data directory, and serves them to queries.
///
/// Exit codes: 0 clean stop; 1 runtime failure; 2 bad arguments or config.
#[derive(Debug, Parser)]
#[command(
    name = "logpost-collector",
    version,
    after_help = "Examples:\n  logpost-collector --config /etc/logpost/collector.toml\n  logpost-collector --data-dir /tmp/lp --listen 127.0.0.1:7070\n  logpost-collector validate --config collector.toml"
)]
struct Args {
    /// Config file (TOML). Without one, defaults apply and --data-dir is required.
    #[arg(short = 'c', long, global = true, env = "LOGPOST_COLLECTOR_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Overrides `http.listen` (host:port; port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the config and exits: 0 if valid, 2 with every problem named if not.
    Validate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging(args.verbose);
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logpost-collector: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Validate) = args.command {
        println!(
            "config ok: listen {}, data_dir {}",
            config.listen,
            config.data_dir.display()
        );
        return ExitCode::SUCCESS;
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logpost-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<CollectorConfig> {
    let mut text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?
        }
        None => String::new(),
    };
    if let Some(dir) = &args.data_dir {
        // Command-line overrides win; appended keys would clash, so prepend
        // and drop the file's own line for that key.
        text = override_key(&text, "data_dir", &toml_string(&dir.display().to_string()));
    } else if args.config.is_none() {
        anyhow::bail!("either --config or --data-dir is required");
    }
    let path = args.config.clone().unwrap_or_else(|| PathBuf::from("(command line)"));
    let mut config = CollectorConfig::from_source(&SourceText { path, text })?;
    if let Some(listen) = &args.listen {
        config.listen = listen
            .parse()
            .with_context(|| format!("--listen {listen:?}: expected host:port"))?;
        config.http.listen = config.listen;
        if let Some(msg) = logpost_collector::config::anonymous_remote(config.listen, &config.auth) {
            anyhow::bail!("--listen: {msg}");
        }
    }
    Ok(config)
}

/// Replaces a top-level `key = ...` line (or adds one at the top).
fn override_key(text: &str, key: &str, value: &str) -> String {
    let mut out = format!("{key} = {value}\n");
    let mut in_table = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            in_table = true;
        }
        let is_key = !in_table
            && trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
        if is_key {
            out.push_str("# (overridden on the command line)\n");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn run(config: logpost_collector::config::CollectorConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting runtime")?;
    let scheme = if config.http.tls.is_some() { "https" } else { "http" };
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
        // Announced on stdout so that scripts and tests can find the ports.
        let result = logpost_collector::server::run_with(
            config,
            shutdown.clone(),
            |addr| println!("logpost-collector listening on {scheme}://{addr}"),
            |addr| println!("logpost-collector kafka listening on {addr}"),
        )
        .await;
        signals.abort();
        result.context("collector failed")
    })
}

/// SIGTERM and SIGINT stop the collector cleanly. SIGHUP (systemd's
/// `reload`) must not kill it, which is the default action: the collector
/// does not reload its config in place (listeners, TLS, storage layout
/// are fixed at start), so it says so and keeps running.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = hup.recv() => tracing::warn!("SIGHUP: the collector does not reload its config; restart it to apply changes"),
        }
    }
    shutdown.cancel();
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only for a person at a terminal, not in log files and journals.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
