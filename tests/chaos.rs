//! Supervisor crashes of the real `alknet serve` through
//! `diag/fault/panic-supervisor` (issue #14's chaos campaign, in short): a
//! crashed protocol supervisor is back serving while another protocol's
//! session never notices, and crashes past the restart intensity end the
//! process with status 1 after one log line. The operation exists only when
//! `[diagnostics] fault = true`, and only for the admin scope.

use std::time::{Duration, Instant};

use alknet_call::ErrorCode;
use alknet_call::client::{ClientOptions, Transport};
use alknet_call::{CallClient, CallError};
use alknet_e2e::client::{quic_connect, quic_echo, quic_endpoint};
use alknet_e2e::eventually;
use alknet_e2e::process::NodeProcess;
use serde_json::json;

const FAULT: &str = "alknet/fault";
const PANIC_SUPERVISOR: &str = "diag/fault/panic-supervisor";

async fn session(node: &NodeProcess, transport: Transport, token: Option<String>) -> CallClient {
    let options = ClientOptions {
        transport,
        token,
        ..ClientOptions::default()
    };
    CallClient::connect(node.addr, options)
        .await
        .expect("call session")
}

/// Restarts of `name` per `admin/tree`.
async fn restarts(admin: &CallClient, name: &str) -> (String, u32) {
    let tree = admin
        .call("admin/tree", json!({}))
        .await
        .expect("admin/tree");
    let tree: alknet_supervisors::TreeNode =
        serde_json::from_value(tree["root"].clone()).expect("a tree");
    let sup = tree.find(name).unwrap_or_else(|| panic!("no {name}"));
    (sup.id.clone(), sup.restarts)
}

/// A fault connection served: its echo comes back.
async fn fault_echo_served(endpoint: &quinn::Endpoint, node: &NodeProcess) -> bool {
    let Ok(connection) = quic_connect(endpoint, node.addr, &[FAULT]).await else {
        return false;
    };
    let served = matches!(quic_echo(&connection, b"eback").await, Ok(echoed) if echoed == b"back");
    connection.close(0u32.into(), b"done");
    served
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_supervisor_serves_again_and_crashes_past_the_intensity_exit_1() {
    let mut node = NodeProcess::start(
        "[diagnostics]\ncall_ops = true\nfault = true\n\
         [protocols.\"alknet/fault\"]\nmax_restarts = 2\nrestart_window = \"60s\"\n",
    );
    let admin = session(&node, Transport::Quic, Some(node.admin_token())).await;
    // A session of the other protocol, open across every crash.
    let bystander = session(&node, Transport::Tcp, None).await;
    let endpoint = quic_endpoint();
    let (first_id, _) = restarts(&admin, "proto/alknet/fault").await;

    for round in 1..=2u32 {
        let ordered = Instant::now();
        let reply = admin
            .call(PANIC_SUPERVISOR, json!({"alpn": FAULT}))
            .await
            .expect("the order is carried out");
        assert_eq!(reply, json!({"crashed": "proto/alknet/fault"}));
        // The reply comes once the old supervisor has stopped; a new one
        // serves the next connection (retried while it restarts).
        let deadline = ordered + Duration::from_secs(5);
        while !fault_echo_served(&endpoint, &node).await {
            assert!(Instant::now() < deadline, "no fault connection served");
        }
        eprintln!("round {round}: served again after {:?}", ordered.elapsed());
        let (id, restarted) = restarts(&admin, "proto/alknet/fault").await;
        assert_eq!(restarted, round);
        assert_ne!(id, first_id);
        let echoed = bystander
            .call("diag/echo", json!({"round": round}))
            .await
            .expect("the other protocol's session never notices");
        assert_eq!(echoed, json!({"round": round}));
    }
    assert_eq!(restarts(&admin, "proto/alknet/call").await.1, 0);

    // The third restart within the window is one too many. The supervisor
    // may still be restarting from the second crash: retry while it is.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match admin.call(PANIC_SUPERVISOR, json!({"alpn": FAULT})).await {
            Err(error) if error.code == ErrorCode::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Answered, or overtaken by the shutdown.
            _ => break,
        }
    }
    let status = node
        .wait_for_exit(Duration::from_secs(10))
        .expect("the node exits after escalating");
    assert_eq!(status.code(), Some(1), "{status:?}");
    // The last lines may still be on their way through the pipe.
    assert!(
        eventually(Duration::from_secs(5), || node
            .log()
            .iter()
            .any(|line| line.contains("shutdown complete")))
        .await,
        "{:#?}",
        node.log()
    );
    let log = node.log();
    let escalations: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("exceeded its restart intensity"))
        .collect();
    assert_eq!(escalations.len(), 1, "{log:#?}");
    assert!(
        escalations[0].contains("proto/alknet/fault") && escalations[0].contains("ERROR"),
        "{}",
        escalations[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crash_order_is_for_the_admin_scope_of_a_fault_node_only() {
    let node = NodeProcess::start("[diagnostics]\ncall_ops = true\nfault = true\n");
    let anonymous = session(&node, Transport::Quic, None).await;
    let refused = anonymous
        .call(PANIC_SUPERVISOR, json!({"alpn": FAULT}))
        .await
        .expect_err("anonymous callers may not crash anything");
    assert_eq!(refused.code, ErrorCode::NotFound, "{refused:?}");
    let admin = session(&node, Transport::Quic, Some(node.admin_token())).await;
    let unknown = admin
        .call(PANIC_SUPERVISOR, json!({"alpn": "nope/1"}))
        .await
        .expect_err("no such protocol");
    assert_eq!(unknown, CallError::not_found("no protocol serves nope/1"));
    assert_eq!(restarts(&admin, "proto/alknet/fault").await.1, 0);

    // Without `fault = true` the operation does not exist, even for admins.
    let plain = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let admin = session(&plain, Transport::Quic, Some(plain.admin_token())).await;
    let missing = admin
        .call(PANIC_SUPERVISOR, json!({"alpn": "alknet/call"}))
        .await
        .expect_err("not registered");
    assert_eq!(missing.code, ErrorCode::NotFound, "{missing:?}");
}
