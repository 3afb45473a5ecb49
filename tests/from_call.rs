//! Two nodes (docs/protocol.md §14.2 `from_call`): a hub imports a spoke's
//! operations over a real session, relays calls with `forwarded_for`, cascades
//! aborts across the nodes, and outlives a spoke that is killed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alknet_call::ErrorCode;
use alknet_call::access::AccessControl;
use alknet_call::client::{ClientOptions, Transport};
use alknet_call::from_call::{self, ImportError, UpstreamOptions};
use alknet_call::registry::{OperationDef, RegistrationError, Registry, Visibility};
use alknet_call::{CallClient, CallError, SessionLimits};
use alknet_core::tls::ServerVerification;
use alknet_core::{Fingerprint, Identity, IdentityProvider, NodeKey};
use alknet_e2e::process::NodeProcess;
use alknet_e2e::{start_call_node, test_config};
use alknet_supervisors::NodeHandle;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(5);

/// Tokens and client-certificate fingerprints known to a node.
#[derive(Default)]
struct Known {
    tokens: HashMap<String, Identity>,
    peers: HashMap<Fingerprint, Identity>,
}

impl IdentityProvider for Known {
    fn resolve_fingerprint(&self, fingerprint: &Fingerprint) -> Option<Identity> {
        self.peers.get(fingerprint).cloned()
    }

    fn resolve_token(&self, token: &str) -> Option<Identity> {
        self.tokens.get(token).cloned()
    }
}

/// Sends its name when dropped: how a test sees a handler cancelled.
struct DropSignal(mpsc::UnboundedSender<(&'static str, Instant)>, &'static str);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send((self.1, Instant::now()));
    }
}

type Events = mpsc::UnboundedSender<(&'static str, Instant)>;

async fn serve(registry: Registry, known: Known) -> NodeHandle {
    start_call_node(
        test_config(),
        registry,
        Arc::new(known),
        SessionLimits::default(),
    )
    .await
}

/// The spoke: it knows the hub by its node key's fingerprint (a peer entry).
async fn spoke(hub_key: &NodeKey, events: Events) -> NodeHandle {
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    registry
        .register(
            OperationDef::query("work/whoami").unary(|cx, input| async move {
                Ok(json!({
                    "identity": cx.identity.map(|i| i.id.clone()),
                    "forwarded_for": cx.forwarded_for.map(|i| i.id),
                    "input": input,
                }))
            }),
        )
        .unwrap();
    registry
        .register(
            OperationDef::subscription("work/count").stream(|_, input: Value| {
                let n = input["n"].as_u64().unwrap_or(3);
                futures::stream::iter((0..n).map(|i| Ok(json!(i))))
            }),
        )
        .unwrap();
    registry
        .register(OperationDef::query("work/hang").unary(move |_, _| {
            let signal = DropSignal(events.clone(), "spoke dropped");
            let started = events.clone();
            async move {
                let _signal = signal;
                let _ = started.send(("spoke started", Instant::now()));
                std::future::pending::<()>().await;
                Ok(json!(null))
            }
        }))
        .unwrap();
    registry
        .register(
            OperationDef::query("work/secret")
                .access(AccessControl::scopes(["admin"]))
                .unary(|_, _| async { Ok(json!("secret")) }),
        )
        .unwrap();
    let mut known = Known::default();
    known.peers.insert(
        Fingerprint::Ed25519(hub_key.node_id().0),
        Identity::new("hub", ["peer"]),
    );
    serve(registry, known).await
}

/// The hub: `hub/compose` calls the imported `int/work/hang` as a nested call.
fn hub_registry(events: Events) -> Registry {
    let registry = Registry::new();
    alknet_call::builtins::register_discovery(&registry).unwrap();
    alknet_call::builtins::register_diagnostics(&registry).unwrap();
    registry
        .register(OperationDef::query("hub/compose").unary(move |cx, _| {
            let signal = DropSignal(events.clone(), "hub dropped");
            async move {
                let _signal = signal;
                cx.call("int/work/hang", json!({})).await
            }
        }))
        .unwrap();
    registry
}

fn upstream(
    addr: std::net::SocketAddr,
    transport: Transport,
    hub_key: &NodeKey,
    prefix: &str,
) -> UpstreamOptions {
    UpstreamOptions {
        locate: None,
        addr,
        transport,
        verification: ServerVerification::Insecure,
        token: None,
        client_key_seed: Some(hub_key.seed()),
        prefix: Some(prefix.to_owned()),
        visibility: Visibility::Internal,
        idle_timeout: Duration::from_secs(30),
    }
}

async fn client(node: &NodeHandle, transport: Transport, token: Option<&str>) -> CallClient {
    CallClient::connect(
        node.local_addr(),
        ClientOptions {
            transport,
            token: token.map(str::to_owned),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("client connects")
}

fn both() -> [Transport; 2] {
    [Transport::Quic, Transport::Tcp]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_imports_what_the_spoke_lets_it_call_and_relays_the_caller() {
    for transport in both() {
        let hub_key = NodeKey::generate();
        let (events, _) = mpsc::unbounded_channel();
        let spoke = spoke(&hub_key, events.clone()).await;
        let registry = hub_registry(events);
        let mut known = Known::default();
        known
            .tokens
            .insert("alice-token".into(), Identity::new("alice", ["user"]));
        let mut external = upstream(spoke.local_addr(), transport, &hub_key, "ext");
        external.visibility = Visibility::External;
        let imported = from_call::import(&registry, external).await.unwrap();
        assert!(
            imported.contains(&"ext/work/whoami".to_owned())
                && imported.contains(&"ext/work/count".to_owned()),
            "{transport:?}: {imported:?}"
        );
        assert!(
            !imported.contains(&"ext/work/secret".to_owned()),
            "the spoke does not let the hub call work/secret: {imported:?}"
        );
        let internal = from_call::import(
            &registry,
            upstream(spoke.local_addr(), transport, &hub_key, "int"),
        )
        .await
        .unwrap();
        assert!(internal.contains(&"int/work/hang".to_owned()));
        // A colliding import fails whole and registers nothing new.
        let again = from_call::import(
            &registry,
            upstream(spoke.local_addr(), transport, &hub_key, "ext"),
        )
        .await;
        assert!(
            matches!(
                again,
                Err(ImportError::Register {
                    source: RegistrationError::Duplicate(_),
                    ..
                })
            ),
            "{again:?}"
        );
        let hub = serve(registry, known).await;

        let alice = client(&hub, transport, Some("alice-token")).await;
        let output = alice
            .call("ext/work/whoami", json!({"x": 1}))
            .await
            .unwrap();
        assert_eq!(
            output,
            json!({"identity": "hub", "forwarded_for": "alice", "input": {"x": 1}}),
            "{transport:?}"
        );
        let items: Vec<_> = alice
            .subscribe("ext/work/count", json!({"n": 3}))
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(items, vec![Ok(json!(0)), Ok(json!(1)), Ok(json!(2))]);
        // Internal imports exist only for nested calls.
        assert_eq!(
            alice.call("int/work/whoami", json!({})).await.unwrap_err(),
            CallError::operation_not_found("int/work/whoami")
        );
        let listed = alice.call("services/list", json!({})).await.unwrap();
        assert!(listed.to_string().contains("ext/work/whoami"));
        assert!(!listed.to_string().contains("int/work"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborting_a_hub_call_cancels_the_hub_and_spoke_handlers_within_100_ms() {
    for transport in both() {
        let hub_key = NodeKey::generate();
        let (events, mut seen) = mpsc::unbounded_channel();
        let spoke = spoke(&hub_key, events.clone()).await;
        let registry = hub_registry(events);
        from_call::import(
            &registry,
            upstream(spoke.local_addr(), transport, &hub_key, "int"),
        )
        .await
        .unwrap();
        let hub = serve(registry, Known::default()).await;
        let caller = Arc::new(client(&hub, transport, None).await);
        let call = tokio::spawn({
            let caller = caller.clone();
            async move { caller.call("hub/compose", json!({})).await }
        });
        let (event, _) = tokio::time::timeout(WAIT, seen.recv())
            .await
            .expect("the spoke handler started")
            .unwrap();
        assert_eq!(event, "spoke started");
        // Dropping the call sends `call.aborted` to the hub.
        let aborted_at = Instant::now();
        call.abort();
        let mut dropped = Vec::new();
        while dropped.len() < 2 {
            let (event, at) = tokio::time::timeout(WAIT, seen.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("{transport:?}: handlers not cancelled; saw {dropped:?}")
                })
                .unwrap();
            dropped.push((event, at.duration_since(aborted_at)));
        }
        dropped.sort();
        assert_eq!(
            dropped.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
            ["hub dropped", "spoke dropped"]
        );
        for (event, after) in &dropped {
            assert!(
                *after < Duration::from_millis(100),
                "{transport:?}: {event} {after:?} after the abort"
            );
        }
        // Both nodes serve on.
        assert!(caller.call("services/list", json!({})).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_spoke_fails_calls_in_flight_and_the_hub_keeps_serving() {
    for transport in both() {
        let mut spoke = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
        let hub_key = NodeKey::generate();
        let (events, _) = mpsc::unbounded_channel();
        let registry = hub_registry(events);
        let mut options = upstream(spoke.addr, transport, &hub_key, "spoke");
        options.visibility = Visibility::External;
        // A node killed outright sends no CONNECTION_CLOSE: over QUIC the
        // hub notices by the idle timeout, which this test keeps short.
        options.idle_timeout = Duration::from_secs(1);
        let imported = from_call::import(&registry, options).await.unwrap();
        assert!(
            imported.contains(&"spoke/diag/sleep".to_owned()),
            "{imported:?}"
        );
        let hub = serve(registry, Known::default()).await;
        let caller = Arc::new(client(&hub, transport, None).await);
        assert_eq!(
            caller
                .call("spoke/diag/echo", json!({"via": "hub"}))
                .await
                .unwrap(),
            json!({"via": "hub"}),
            "{transport:?}: a call on the hub reaches the spoke"
        );
        let in_flight = tokio::spawn({
            let caller = caller.clone();
            async move { caller.call("spoke/diag/sleep", json!({"ms": 60000})).await }
        });
        // The sleep is running on the spoke once a later call got through
        // (calls on one session are dispatched in order).
        caller
            .call("spoke/diag/echo", json!({}))
            .await
            .expect("the spoke answers");
        spoke.kill();
        let failed = tokio::time::timeout(Duration::from_secs(10), in_flight)
            .await
            .unwrap_or_else(|_| panic!("{transport:?}: the call in flight never failed"))
            .unwrap();
        assert_eq!(
            failed.unwrap_err(),
            CallError::internal("connection closed"),
            "{transport:?}"
        );
        // The hub keeps serving: its own operations, and a clear error for the
        // dead upstream.
        assert_eq!(
            caller.call("diag/echo", json!("still here")).await.unwrap(),
            json!("still here")
        );
        let unreachable = caller.call("spoke/diag/echo", json!({})).await.unwrap_err();
        assert_eq!(unreachable.code, ErrorCode::Internal, "{unreachable:?}");
    }
}

#[test]
fn a_hub_configured_with_upstreams_serves_the_spokes_operations() {
    let spoke = NodeProcess::start("[diagnostics]\ncall_ops = true\n");
    let hub = NodeProcess::start(&format!(
        "[[upstreams]]\naddress = \"{}\"\npin = \"{}\"\ntransport = \"tcp\"\nprefix = \"spoke\"\nexternal = true\n",
        spoke.addr, spoke.node_id
    ));
    let hub_addr = hub.addr.to_string();
    let call = |operation: &str, input: &str| {
        alknet_e2e::process::run(&[
            "call",
            "--connect",
            &hub_addr,
            "--pin",
            &hub.node_id,
            operation,
            input,
        ])
    };
    // The import runs in the background: wait for it, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = call("spoke/diag/echo", r#"{"from":"hub"}"#);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        out.status.success(),
        "stderr: {}\nhub log: {:?}",
        String::from_utf8_lossy(&out.stderr),
        hub.log()
    );
    let output: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(output, json!({"from": "hub"}));
    assert!(
        hub.log()
            .iter()
            .any(|l| l.contains("imported from upstream")),
        "{:?}",
        hub.log()
    );
}
