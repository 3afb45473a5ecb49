//! The Prometheus endpoint against real clients: curl calls the node
//! through the HTTP gateway, `promtool check metrics` lints the exposition,
//! and a real Prometheus server scrapes it and answers queries about it.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use alknet_e2e::eventually_blocking;
use alknet_e2e::process::NodeProcess;

const CONFIG: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n[diagnostics]\ncall_ops = true\n";

/// The metrics address `serve` printed.
fn metrics_url(node: &NodeProcess) -> String {
    node.stdout
        .lock()
        .unwrap()
        .iter()
        .find_map(|line| line.strip_prefix("metrics: "))
        .expect("serve printed the metrics address")
        .to_owned()
}

fn curl(args: &[&str]) -> String {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// One gateway call, as an operator's script would make it.
fn gateway_call(node: &NodeProcess, operation: &str) -> String {
    curl(&[
        "--insecure",
        "--header",
        "content-type: application/json",
        "--data",
        &format!("{{\"operation\":\"{operation}\",\"input\":{{\"n\":1}}}}"),
        &format!("https://{}/call", node.addr),
    ])
}

#[test]
fn the_exposition_counts_calls_and_passes_promtool() {
    let node = NodeProcess::start(CONFIG);
    let url = metrics_url(&node);
    assert!(gateway_call(&node, "diag/echo").contains("\"n\":1"));
    gateway_call(&node, "diag/echo");
    // Names a caller makes up share one label value: no new series.
    for i in 0..20 {
        gateway_call(&node, &format!("made/up-{i}"));
    }
    let text = curl(&["--include", &url]);
    assert!(
        text.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{text}"
    );
    assert!(
        text.contains("alknet_calls_total{operation=\"diag/echo\",code=\"OK\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("alknet_calls_total{operation=\"(unknown)\",code=\"NOT_FOUND\"} 20"),
        "{text}"
    );
    assert!(!text.contains("made/up"), "{text}");
    assert!(
        text.contains("alknet_call_duration_seconds_bucket{operation=\"diag/echo\",le=\"+Inf\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("alknet_connections_accepted_total{alpn=\"http/1.1\"}")
            || text.contains("alknet_connections_accepted_total{alpn=\"h2\"}"),
        "{text}"
    );
    assert!(text.contains("# HELP alknet_calls_total"), "{text}");

    let body = curl(&[&url]);
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs (Debian package prometheus)");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // promtool prints lint findings (bad names, missing HELP) even on success.
    assert!(
        output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool lint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    api: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_prometheus(target: &str) -> Prometheus {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: alknet\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus runs (Debian package prometheus)");
    Prometheus {
        child,
        api: format!("http://127.0.0.1:{port}/api/v1"),
        _dir: dir,
    }
}

/// The query's result vector, or empty while Prometheus is not up yet.
fn query(prometheus: &Prometheus, promql: &str) -> Vec<serde_json::Value> {
    let output = Command::new("curl")
        .args(["--silent", "--max-time", "5", "--get"])
        .arg(format!("{}/query", prometheus.api))
        .args(["--data-urlencode", &format!("query={promql}")])
        .output()
        .expect("curl runs");
    serde_json::from_slice::<serde_json::Value>(&output.stdout)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_real_prometheus_scrapes_the_node_and_answers_queries() {
    let node = NodeProcess::start(CONFIG);
    let url = metrics_url(&node);
    for _ in 0..3 {
        gateway_call(&node, "diag/echo");
    }
    let target = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap()
        .to_owned();
    let prometheus = start_prometheus(&target);
    let mut calls = Vec::new();
    assert!(
        eventually_blocking(Duration::from_secs(60), || {
            calls = query(
                &prometheus,
                "alknet_calls_total{job=\"alknet\",operation=\"diag/echo\",code=\"OK\"}",
            );
            !calls.is_empty()
        }),
        "Prometheus never returned the node's series"
    );
    assert_eq!(calls[0]["value"][1], "3", "{calls:?}");
    let up = query(&prometheus, "up{job=\"alknet\"}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    // A histogram Prometheus can compute quantiles from.
    let p99 = query(
        &prometheus,
        "histogram_quantile(0.99, sum by (le) (alknet_call_duration_seconds_bucket))",
    );
    let seconds: f64 = p99[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(seconds > 0.0 && seconds < 30.0, "{p99:?}");
}
