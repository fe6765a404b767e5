//! `logpost`: the command-line client of a logpost collector. Argument
//! parsing and exit codes only; the subcommands live in the library.

use std::io::{BufWriter, IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logpost_collector::client::query::QueryRequest;
use logpost_collector::client::render::OutputFormat;
use logpost_collector::client::{
    Client, ClientError, Credentials, DEFAULT_COLLECTOR, cluster, consume, group_consume, labels, query, topics,
};
use logpost_collector::http::admin::CreateTopic;
use logpost_shared::config::{ByteSize, HumanDuration};

/// The order of `logpost query`'s records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum QueryDirection {
    Forward,
    Backward,
}

/// Query and inspect a logpost collector.
///
/// Exit codes: 0 success; 1 the query matched nothing; 2 bad request
/// (arguments, query, unknown topic); 3 collector unreachable or failing.
#[derive(Debug, Parser)]
#[command(
    name = "logpost",
    version,
    after_help = "Examples:\n  logpost topics\n  logpost topics create web --partitions 4 --retention-age 3d\n  logpost topics describe web\n  logpost topics create web --partitions 6 --replication-factor 3\n  logpost cluster\n  logpost query app --since 1h\n  logpost query 'app |= \"error\"' --limit 50 --direction backward\n  logpost query '{topic=\"app\", host=\"web-03\"} | logfmt | status >= 500' -o json\n  logpost query app --output raw > app.log\n  logpost tail -f 'app |~ \"ERROR|WARN\"'\n  logpost labels; logpost labels source\n  logpost consume app --follow -o json\n  logpost consume app --group indexer --follow -o json\n  LOGPOST_COLLECTOR=http://logs.internal:7070 logpost topics\n  LOGPOST_COLLECTOR=https://logs.internal:7070 LOGPOST_CA_FILE=/etc/logpost/ca.pem LOGPOST_TOKEN_FILE=~/.logpost-token logpost topics\n\nExit codes: 0 success; 1 nothing matched; 2 bad request (arguments, query, unknown topic); 3 collector unreachable or failing."
)]
struct Args {
    /// Collector base URL.
    #[arg(long, global = true, env = "LOGPOST_COLLECTOR", default_value = DEFAULT_COLLECTOR)]
    collector: String,
    /// Bearer token for a collector with [auth] tokens (prefer the
    /// environment or --token-file: arguments show in `ps`).
    #[arg(long, global = true, env = "LOGPOST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File whose first line is the token.
    #[arg(long, global = true, env = "LOGPOST_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) to verify an https:// collector with, instead of the system's roots.
    #[arg(long, global = true, env = "LOGPOST_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a collector that requires one; needs --client-key and --ca-file.
    #[arg(long, global = true, env = "LOGPOST_CLIENT_CERT", requires_all = ["client_key", "ca_file"])]
    client_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, global = true, env = "LOGPOST_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists topics with their partitions, record counts and sizes; or
    /// creates, describes or deletes one.
    Topics {
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: Option<TopicsAction>,
    },
    /// Prints the records a LogQL query selects: on a terminal the newest
    /// --limit first (as Loki and Grafana), into a pipe or file the oldest
    /// first (--direction chooses).
    ///
    /// QUERY is LogQL (see docs/logql.md); a bare topic name means
    /// {topic="name"}: `app`, `app |= "error"`, `{topic="app", host="web-03"} | json | status >= 500`.
    Query {
        /// LogQL log query, or a topic name.
        query: String,
        /// Only lines matching this regular expression too (searched, not anchored).
        #[arg(long)]
        grep: Option<String>,
        /// At most this many records (0: no limit, oldest first).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// backward: the newest --limit records, newest first (the default
        /// on a terminal; printed once the range is scanned); forward: the
        /// oldest first, streamed as found (the default into a pipe).
        #[arg(long, value_enum)]
        direction: Option<QueryDirection>,
        /// Only records newer than this: a duration ago (1h, 30m) or a time (RFC 3339, unix seconds).
        #[arg(long)]
        since: Option<String>,
        /// Only records up to this: a duration ago or a time.
        #[arg(long)]
        until: Option<String>,
        /// text: timestamp, labels, line; raw: the line only, byte-exact; json: one object per record.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Prints matching records as they arrive, until interrupted.
    Tail {
        /// Follow (the only mode; accepted for habit's sake).
        #[arg(short = 'f', long)]
        follow: bool,
        /// LogQL log query, or a topic name.
        query: String,
        /// Start this far back (default: only new records), e.g. 5m.
        #[arg(long)]
        since: Option<String>,
        /// text, raw or json, as for `query`.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Reads a topic's records by offset, every partition (oldest first
    /// within each), through the consumer fetch API. With --group, as a
    /// member of a consumer group: only the partitions the group assigns
    /// it, from the group's committed offsets, committing as it prints.
    Consume {
        /// Topic to read.
        topic: String,
        /// Consumer group to join: members split the partitions, a dead
        /// member's partitions go to the others after its session timeout
        /// (10 s), resuming from the committed offsets.
        #[arg(long, short = 'g')]
        group: Option<String>,
        /// Start at the end: only records appended from now on (with
        /// --group: for partitions the group never committed).
        #[arg(long)]
        from_end: bool,
        /// Keep waiting for new records instead of stopping at the end.
        #[arg(short = 'f', long)]
        follow: bool,
        /// text, raw or json, as for `query`.
        #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// In a cluster: its nodes, the controller, and the partitions whose
    /// in-sync replicas are fewer than their replicas (or that have no
    /// leader).
    Cluster {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lists label names, or with NAME the values of that label.
    Labels {
        /// A label name, e.g. source.
        name: Option<String>,
        /// Only labels seen since (duration ago or time; default: all).
        #[arg(long)]
        since: Option<String>,
    },
}

fn now_ns() -> i64 {
    logpost_collector::store::topic::now_ms().saturating_mul(1_000_000)
}

/// A `--since`/`--until` value in ns: a duration ago, or a time.
fn parse_when(flag: &str, v: &str) -> Result<i64, ClientError> {
    if let Ok(d) = HumanDuration::parse(v) {
        let ns = i64::try_from(d.0.as_nanos()).unwrap_or(i64::MAX);
        return Ok(now_ns().saturating_sub(ns));
    }
    logpost_collector::http::loki_params::parse_time(v).ok_or_else(|| {
        ClientError::Usage(format!(
            "--{flag} {v:?}: expected a duration (1h, 30m) or a time (RFC 3339, unix seconds)"
        ))
    })
}

fn when(flag: &str, v: Option<&str>) -> Result<Option<i64>, ClientError> {
    v.map(|v| parse_when(flag, v)).transpose()
}

#[derive(Debug, Subcommand)]
enum TopicsAction {
    /// Lists topics (the default).
    List,
    /// Shows a topic's settings and each partition's offsets and size.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Creates a topic.
    Create {
        /// Topic name: ASCII letters, digits, '.', '_', '-'; at most 249 characters.
        name: String,
        /// Partitions (default: the collector's storage.default_partitions).
        #[arg(long)]
        partitions: Option<u32>,
        /// Bytes kept per partition, e.g. 10GiB (default: the collector's).
        #[arg(long, value_parser = parse_size)]
        retention_bytes: Option<ByteSize>,
        /// Age after which segments are deleted, e.g. 3d (default: the collector's).
        #[arg(long, value_parser = parse_age)]
        retention_age: Option<HumanDuration>,
        /// In a cluster: copies of each partition (default: the cluster's
        /// replication_factor).
        #[arg(long)]
        replication_factor: Option<u32>,
    },
    /// Deletes a topic and all its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s)
}

fn parse_age(s: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(s)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("logpost: cannot start runtime: {e}");
            return ExitCode::from(3);
        }
    };
    let stdout = std::io::stdout();
    let color = stdout.is_terminal();
    let mut out = BufWriter::new(stdout.lock());
    let result = runtime.block_on(async {
        let token = match (&args.token, &args.token_file) {
            (Some(t), _) => Some(t.trim().to_owned()),
            (None, Some(path)) => {
                Some(logpost_shared::config::secret::read_token_file(path).map_err(ClientError::Usage)?)
            }
            (None, None) => None,
        };
        let credentials = Credentials {
            token,
            ca_file: args.ca_file.clone(),
            client_cert: args.client_cert.clone().zip(args.client_key.clone()),
        };
        let client = Client::with_credentials(&args.collector, &credentials)?;
        match args.command {
            Command::Topics { json, action } => match action {
                None | Some(TopicsAction::List) => topics::list(&client, json, &mut out).await,
                Some(TopicsAction::Describe { name }) => topics::describe(&client, &name, json, &mut out).await,
                Some(TopicsAction::Create {
                    name,
                    partitions,
                    retention_bytes,
                    retention_age,
                    replication_factor,
                }) => {
                    let req = CreateTopic {
                        name,
                        partitions,
                        retention_bytes,
                        retention_age,
                        replication_factor,
                    };
                    topics::create(&client, &req, json, &mut out).await
                }
                Some(TopicsAction::Delete { name }) => topics::delete(&client, &name, &mut out).await,
            }
            .map(|()| true),
            Command::Query {
                query,
                grep,
                limit,
                direction,
                since,
                until,
                output,
            } => {
                let backward = match direction {
                    Some(d) => d == QueryDirection::Backward,
                    None => color && limit > 0,
                };
                let req = QueryRequest {
                    query,
                    grep,
                    limit,
                    backward,
                    start: when("since", since.as_deref())?,
                    end: when("until", until.as_deref())?,
                };
                query::run(&client, &req, output, color, &mut out).await.map(|n| n > 0)
            }
            Command::Tail {
                follow: _,
                query,
                since,
                output,
            } => {
                let start = match since {
                    Some(s) => parse_when("since", &s)?,
                    None => now_ns(),
                };
                let req = QueryRequest {
                    query,
                    grep: None,
                    limit: 0,
                    backward: false,
                    start: Some(start),
                    end: None,
                };
                query::follow(&client, &req, output, color, &mut out)
                    .await
                    .map(|()| true)
            }
            Command::Consume {
                topic,
                group: Some(group),
                from_end,
                follow,
                output,
            } => {
                let opts = group_consume::GroupOptions {
                    topic,
                    group,
                    from_end,
                    follow,
                    format: output,
                    color,
                };
                group_consume::run(&client, &opts, &mut out)
                    .await
                    .map(|n| n > 0 || follow)
            }
            Command::Consume {
                topic,
                group: None,
                from_end,
                follow,
                output,
            } => consume::run(&client, &topic, from_end, follow, output, color, &mut out)
                .await
                .map(|n| n > 0 || follow),
            Command::Cluster { json } => cluster::status(&client, json, &mut out).await.map(|()| true),
            Command::Labels { name, since } => {
                let start = when("since", since.as_deref())?.unwrap_or(0);
                labels::run(&client, name.as_deref(), Some(start), None, &mut out)
                    .await
                    .map(|n| n > 0)
            }
        }
    });
    let flushed = out.flush();
    match result {
        Ok(found) => {
            if let Err(e) = flushed
                && e.kind() != std::io::ErrorKind::BrokenPipe
            {
                eprintln!("logpost: cannot write output: {e}");
                return ExitCode::from(1);
            }
            if found { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        // A closed pipe (`logpost query x | head`) is success, as for ripgrep.
        Err(ClientError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = e.to_string();
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                msg.push_str(": ");
                msg.push_str(&c.to_string());
                cur = c.source();
            }
            eprintln!("logpost: {msg}");
            ExitCode::from(e.exit_code())
        }
    }
}
