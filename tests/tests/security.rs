//! Issue 8: bearer tokens with scopes, the loopback-only default without
//! tokens, and TLS (server verified against a CA made here with rcgen,
//! optional client certificates), for the agent and the `logpost` command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use logpost_e2e::ingest::{BATCH_CONTENT_TYPE, batch};
use logpost_e2e::process::{Agent, Collector, agent_config_for, bin};
use logpost_e2e::{PATIENCE, wait_for};

const INGEST: &str = "ingest-token-0123456789abcdef";
const READ: &str = "read-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn auth_section(dir: &Path) -> String {
    // One token of each kind given each way: inline, in a file, in the env
    // (the env one is set by `start_collector_with_env`).
    let file = dir.join("read.token");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&file, format!("{READ}\n")).unwrap();
    format!(
        "[[auth.tokens]]\nname = \"agents\"\ntoken = \"{INGEST}\"\nscopes = [\"ingest\"]\n\
         [[auth.tokens]]\nname = \"grafana\"\ntoken_file = {:?}\nscopes = [\"read\"]\n\
         [[auth.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n",
        file.display().to_string()
    )
}

/// Status and `error` message of a request.
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Vec<u8>>) -> (u16, String) {
    let client = logpost_e2e::http();
    let mut req = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", BATCH_CONTENT_TYPE).body(b);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, message)
}

fn logpost(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(bin("logpost"));
    cmd.env_remove("LOGPOST_TOKEN").arg("--collector").arg(url).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn issue_8_tokens_401_without_403_without_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Collector::start(tmp.path(), &auth_section(tmp.path()));
    let topics = format!("{}/v1/topics", c.url);
    let ingest = format!("{}/v1/ingest/secure", c.url);

    assert_eq!(
        call("GET", &format!("{}/health", c.url), None, None).0,
        200,
        "health is open"
    );
    let (status, msg) = call("GET", &topics, None, None);
    assert_eq!(status, 401, "{msg}");
    assert!(msg.contains("bearer token"), "{msg}");
    let (status, msg) = call("GET", &topics, Some("wrong-token-0123456789abcdef"), None);
    assert_eq!((status, msg.as_str()), (401, "unknown token"));
    let (status, msg) = call("GET", &topics, Some(INGEST), None);
    assert_eq!(status, 403, "an ingest token cannot read: {msg}");
    assert!(msg.contains("\"read\""), "{msg}");
    let (status, msg) = call("POST", &ingest, Some(READ), Some(batch(&["x".into()], 1)));
    assert_eq!(status, 403, "a read token cannot ingest: {msg}");
    let (status, msg) = call("POST", &ingest, None, Some(batch(&["x".into()], 1)));
    assert_eq!(status, 401, "{msg}");
    let (status, msg) = call("POST", &ingest, Some(INGEST), Some(batch(&["secret line".into()], 1)));
    assert_eq!(status, 200, "{msg}");
    let (status, msg) = call("DELETE", &format!("{topics}/secure"), Some(READ), None);
    assert_eq!(status, 403, "deleting needs admin: {msg}");
    // A route the router does not know yet is still covered by the prefix rule.
    let (status, _) = call("GET", &format!("{}/loki/api/v1/labels", c.url), None, None);
    assert_eq!(status, 401);

    // The logpost command: token from the environment or a file.
    let out = logpost(&c.url, &[], &["query", "secure"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let out = logpost(&c.url, &[("LOGPOST_TOKEN", READ)], &["query", "secure", "-o", "raw"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"secret line\n");
    let token_file = tmp.path().join("admin.token");
    std::fs::write(&token_file, ADMIN).unwrap();
    let out = logpost(
        &c.url,
        &[],
        &[
            "--token-file",
            token_file.to_str().unwrap(),
            "topics",
            "delete",
            "secure",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The agent sends its token (from token_env) and ships end to end.
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "shipped with a token\n").unwrap();
    let config = agent_config_for(&c.url, &format!("{}/*.log", logs.display()), "agentlines").replace(
        "timeout = \"10s\"",
        "timeout = \"10s\"\ntoken_env = \"LOGPOST_TEST_AGENT_TOKEN\"",
    );
    let env = format!("LOGPOST_TEST_AGENT_TOKEN={INGEST}");
    let _agent = Agent::start_wrapped(&tmp.path().join("agent"), &config, &["env", &env]);
    let out = wait_for("the agent's line to arrive", PATIENCE, || {
        let out = logpost(
            &c.url,
            &[("LOGPOST_TOKEN", READ)],
            &["query", "agentlines", "-o", "raw"],
        );
        out.status.success().then_some(out.stdout)
    });
    assert_eq!(out, b"shipped with a token\n");
}

#[test]
fn issue_8_without_tokens_only_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("c.toml");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", tmp.path().join("d").display().to_string()),
    )
    .unwrap();
    let out = Command::new(bin("logpost-collector"))
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg("0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("allow_anonymous_remote"),
        "{err}"
    );
    // The loopback default says at start that it is unauthenticated.
    let c = Collector::start(&tmp.path().join("open"), "");
    let stderr = wait_for("the start-up warning", PATIENCE, || {
        let e = c.proc.stderr_text();
        e.contains("no [auth] tokens configured").then_some(e)
    });
    assert!(stderr.contains("loopback only"), "{stderr}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) = leaf(vec!["127.0.0.1".into(), "localhost".into()]);
    let (client_pem, client_key_pem) = leaf(vec!["agent-01".into()]);
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_pem),
        server_key: write("server.key", &server_key_pem),
        client_cert: write("client.pem", &client_pem),
        client_key: write("client.key", &client_key_pem),
    }
}

#[test]
fn issue_8_tls_end_to_end_with_a_test_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(&tmp.path().join("pki"));
    let tls = format!(
        "[http.tls]\ncert = {:?}\nkey = {:?}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string()
    );
    let c = Collector::start(
        &tmp.path().join("collector"),
        &format!("{tls}{}", auth_section(tmp.path())),
    );
    assert!(c.url.starts_with("https://127.0.0.1:"), "{}", c.url);
    let ca = pki.ca.to_str().unwrap();

    // The agent verifies the collector against the CA and ships a line.
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "over tls\n").unwrap();
    let config = agent_config_for(&c.url, &format!("{}/*.log", logs.display()), "tls").replace(
        "timeout = \"10s\"",
        &format!("timeout = \"10s\"\ntoken = \"{INGEST}\"\nca_file = {ca:?}"),
    );
    let _agent = Agent::start(&tmp.path().join("agent"), &config);
    let env = [("LOGPOST_TOKEN", READ), ("LOGPOST_CA_FILE", ca)];
    let out = wait_for("the line to arrive over TLS", PATIENCE, || {
        let out = logpost(&c.url, &env, &["query", "tls", "-o", "raw"]);
        out.status.success().then_some(out.stdout)
    });
    assert_eq!(out, b"over tls\n");

    // Without the CA the command refuses the unknown issuer.
    let out = logpost(&c.url, &[("LOGPOST_TOKEN", READ)], &["topics"]);
    assert_eq!(out.status.code(), Some(3));
    // Plain HTTP to the TLS port gets nowhere.
    let plain = c.url.replace("https://", "http://");
    let out = logpost(&plain, &[("LOGPOST_TOKEN", READ)], &["topics"]);
    assert!(!out.status.success());
}

#[test]
fn issue_8_client_certificates_required_when_client_ca_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = make_pki(&tmp.path().join("pki"));
    let extra = format!(
        "[http.tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n",
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string()
    );
    let c = Collector::start(&tmp.path().join("collector"), &extra);
    let ca = pki.ca.to_str().unwrap();
    let out = logpost(&c.url, &[("LOGPOST_CA_FILE", ca)], &["topics"]);
    assert_eq!(out.status.code(), Some(3), "no client certificate: refused");
    let out = logpost(
        &c.url,
        &[
            ("LOGPOST_CA_FILE", ca),
            ("LOGPOST_CLIENT_CERT", pki.client_cert.to_str().unwrap()),
            ("LOGPOST_CLIENT_KEY", pki.client_key.to_str().unwrap()),
        ],
        &["topics"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
