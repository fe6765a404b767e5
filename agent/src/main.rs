//! `logpost-agent`: arguments, logging, signals and exit codes; everything
//! else is in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use logpost_agent::config::AgentConfig;
use logpost_agent::run::RunOptions;
use tokio_util::sync::CancellationToken;

/// Tails log files and ships every line to a logpost collector, resuming
/// where it stopped after a restart.
///
/// Exit codes: 0 clean stop (everything acknowledged); 1 runtime failure or
/// drain deadline passed; 2 bad arguments or config.
#[derive(Debug, Parser)]
#[command(
    name = "logpost-agent",
    version,
    after_help = "Examples:\n  logpost-agent --config /etc/logpost/agent.toml\n  logpost-agent validate --config agent.toml"
)]
struct Args {
    /// Config file (TOML).
    #[arg(
        short = 'c',
        long,
        global = true,
        env = "LOGPOST_AGENT_CONFIG",
        default_value = "/etc/logpost/agent.toml"
    )]
    config: PathBuf,
    /// How long SIGTERM waits for in-flight batches to be acknowledged.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Print the records that would be shipped (one JSON object per line on
    /// stdout) and ship nothing; no checkpoint is written.
    #[arg(long)]
    dry_run: bool,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Checks the config (every mistake named by file, line and key), shows
    /// which files each source matches now, and whether the collector answers.
    Validate,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    logpost_shared::config::HumanDuration::parse(s).map(|d| d.get())
}

fn main() -> ExitCode {
    logpost_agent::memory::use_one_arena();
    let args = Args::parse();
    init_logging(args.verbose);
    let config = match AgentConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logpost-agent: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Validate) = args.command {
        return validate(&config);
    }
    let shutdown = CancellationToken::new();
    // One pending reload at most: a newer SIGHUP supersedes it.
    let (reload_tx, reload_rx) = std::sync::mpsc::sync_channel(1);
    if let Err(e) = install_signal_handlers(shutdown.clone(), args.config.clone(), reload_tx) {
        eprintln!("logpost-agent: cannot install signal handlers: {e}");
        return ExitCode::from(1);
    }
    let options = RunOptions {
        drain_timeout: args.drain_timeout,
        dry_run: args.dry_run,
        reloads: Some(reload_rx),
    };
    match logpost_agent::run::run(config, shutdown, options) {
        Ok(summary) if summary.drained => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                cur = c.source();
            }
            eprintln!("logpost-agent: {msg}");
            ExitCode::from(1)
        }
    }
}

fn validate(config: &AgentConfig) -> ExitCode {
    println!("config ok: {}", config.path.display());
    for url in &config.collector_urls {
        match reachable(url, &config.collector_auth) {
            Ok(()) => {
                println!("collector {url}: reachable");
                for problem in check_topics(url, config) {
                    println!("  {problem}");
                }
            }
            Err(e) => println!("collector {url}: NOT reachable ({e})"),
        }
    }
    let (found, skipped) = logpost_agent::tail::discover::discover(&config.sources);
    for (i, source) in config.sources.iter().enumerate() {
        let n = found.iter().filter(|f| f.source == i).count();
        println!(
            "source {:?} -> topic {:?}: {n} file(s) match now",
            source.name, source.topic
        );
        for f in found.iter().filter(|f| f.source == i).take(20) {
            println!("  {}", f.path.display());
        }
    }
    for s in skipped {
        println!("  skipped {}: {}", s.path.display(), s.reason);
    }
    if let Some(r) = logpost_agent::ship::refusals::current(&config.data_dir) {
        println!("REFUSED: the running agent's requests are refused: {r}");
        println!("  its lines wait in their files; they are sent once the collector takes them");
    }
    let kept = logpost_agent::ship::refusals::dead_letters(&config.data_dir);
    if !kept.is_empty() {
        println!(
            "{} request(s) the collector called malformed are set aside in {} (each .json says why; re-send a .batch with curl --data-binary)",
            kept.len(),
            config
                .data_dir
                .join(logpost_agent::ship::refusals::DEAD_LETTER_DIR)
                .display()
        );
    }
    ExitCode::SUCCESS
}

/// Whether `GET {url}/health` answers within a few seconds (over TLS with
/// the configured CA, so a certificate problem shows here), and whether
/// the token is accepted (`POST /v1/streams` needs the ingest scope).
fn reachable(url: &str, auth: &logpost_agent::config::CollectorAuth) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = logpost_agent::ship::http::client_builder(auth)?
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| e.to_string())?;
        let resp = client.get(format!("{url}/health")).send().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                cur = c.source();
            }
            msg
        })?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        let resp = client
            .post(format!("{url}/v1/streams"))
            .json(&serde_json::json!({"streams": []}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match resp.status().as_u16() {
            200..=299 => {}
            401 => {
                return Err("the collector requires a token ([collector] token, token_file or token_env)".to_owned());
            }
            403 => return Err("the token lacks the ingest scope".to_owned()),
            s => return Err(format!("stream lookup answered {s}")),
        }
        Ok(())
    })
}

/// For each topic the sources write to, whether the collector has it: a
/// topic it neither has nor creates on first write refuses every batch.
fn check_topics(url: &str, config: &AgentConfig) -> Vec<String> {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Vec::new();
    };
    let Ok(client) = logpost_agent::ship::http::client_builder(&config.collector_auth)
        .and_then(|b| b.timeout(Duration::from_secs(3)).build().map_err(|e| e.to_string()))
    else {
        return Vec::new();
    };
    let mut topics: Vec<&str> = config.sources.iter().map(|s| s.topic.as_str()).collect();
    topics.sort_unstable();
    topics.dedup();
    let mut out = Vec::new();
    for topic in topics {
        let status = rt.block_on(async { client.get(format!("{url}/v1/topics/{topic}")).send().await });
        match status.map(|r| r.status().as_u16()) {
            Ok(404) => out.push(format!(
                "topic {topic:?} does not exist on {url}: the first batch creates it, unless the collector's storage.auto_create_topics is off (then create it: logpost topics create {topic})"
            )),
            Ok(_) | Err(_) => {}
        }
    }
    out
}

/// SIGTERM and SIGINT start the two-phase shutdown; SIGHUP reloads the
/// config (validated first; a bad one is reported and the running config
/// kept). A small thread waits for them, with a runtime of its own.
fn install_signal_handlers(
    shutdown: CancellationToken,
    config_path: PathBuf,
    reloads: std::sync::mpsc::SyncSender<AgentConfig>,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new()
        .name("agent-signals".into())
        .spawn(move || {
            rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
            else {
                tracing::error!("cannot install signal handlers");
                return;
            };
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
                    _ = hup.recv() => match AgentConfig::load(&config_path) {
                        Ok(config) => {
                            tracing::info!(path = %config_path.display(), "SIGHUP: config valid; reloading");
                            let _ = reloads.try_send(config);
                        }
                        Err(e) => tracing::error!(error = %e, "SIGHUP: new config is invalid; keeping the running one"),
                    },
                }
            }
            shutdown.cancel();
        });
        })?;
    Ok(())
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
