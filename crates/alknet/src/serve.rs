//! `alknet serve`: load configuration, start the node, run until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use alknet_call::admin::AdminHandle;
use alknet_call::overlay::{OverlayBudget, OverlayLimits};
use alknet_call::{CallHandler, Registry, SessionLimits, builtins};
use alknet_core::config::{Config, LogFormat};
use alknet_core::protocol_keys::{KeyDeclaration, ProtocolKeys};
use alknet_core::tls::ServerIdentity;
use alknet_core::{IdentityProvider, NodeConfig, NodeKey};
use alknet_dns::publish::{CacheSweeper, NodeRecord, Publisher};
use alknet_dns::{Dns, DnsSection, DoqHandler, DotHandler, PkarrSection, UdpDns};
use alknet_git::{Git, GitHandler, GitSection, Service};
use alknet_http::config::{DecoyKind, HttpSection};
use alknet_identity::StoreIdentities;
use alknet_sftp::{Sftp, SftpHandler, SftpSection};
use alknet_ssh::{SshHandler, SshSection};
use alknet_supervisors::{Node, ShutdownReason};
use anyhow::Context;

use crate::credentials::{self, Credentials};
use crate::data_dir::{self, DataDir, InitOptions};
use crate::git_command::GitCommand;
use crate::imports::{self, CredentialSource};
use crate::keystore::{self, PassphraseSource};
use crate::reload::{self, Reloader, SetLogFilter};
use crate::sections::{Diagnostics, Imports, Metrics, Upstreams};
use crate::sftp_subsystem::SftpSubsystem;
use crate::{metrics_endpoint, service, upstreams, vault_keys};

pub struct ServeArgs {
    pub data_dir: PathBuf,
    /// Create the data directory when it is missing, wherever it is.
    pub init: bool,
    pub listen: Option<SocketAddr>,
    pub config: Option<PathBuf>,
    pub passphrase: PassphraseSource,
    /// Print the banner as one JSON object line.
    pub json: bool,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::new(&args.data_dir);
    // Everything the operator wrote is checked before anything is created.
    let config_path = args
        .config
        .clone()
        .or_else(|| Some(dir.config()).filter(|p| p.exists()));
    let (mut config, mut started_text) = reload::read(config_path.as_deref())?;
    if let Some(listen) = args.listen {
        config.node.listen = listen;
    }
    let filter = log_filter_source(&config.node, config_path.as_deref())?;

    data_dir::ensure_exists(&args.data_dir, args.init)?;
    let _lock = dir.lock()?;
    dir.check_permissions()?;
    let mut admin_token = None;
    if !dir.is_initialised() {
        // The one-command start never blocks on a prompt: no passphrase, and
        // the mnemonic stays out of the output (which often goes to a log).
        eprintln!(
            "{} has no node identity yet: initialising it without a passphrase",
            args.data_dir.display()
        );
        admin_token =
            data_dir::init(&args.data_dir, InitOptions::unattended())?.announce(args.json);
    }
    if config_path.is_none() && dir.config().exists() {
        // `init` just wrote the template, every key at its default: what a
        // reload compares with is that file, not an empty one.
        started_text = reload::read(Some(&dir.config()))?.1;
    }
    let config_path = config_path.or_else(|| Some(dir.config()).filter(|p| p.exists()));
    // Unlock before anything starts: a wrong passphrase or a credential that
    // does not open stops here, with nothing listening and nothing written.
    let identity = keystore::node_identity(&dir, &args.passphrase)?;
    let credentials = credentials::load(&dir, identity.vault.as_ref())?;
    let has_vault = identity.vault.is_some();
    let protocol_keys = vault_keys::derive(
        &dir,
        identity.vault.as_ref(),
        &declared_keys(&config, has_vault),
    )?;
    // The seed is not needed past this point: drop (and zero) it.
    let node_key = identity.node_key;
    drop(identity.vault);
    let set_log_filter = init_logging(filter, config.node.log_format);
    let runtime = runtime(config.node.workers).context("cannot start the async runtime")?;
    tracing::info!(workers = runtime.metrics().num_workers(), "runtime started");
    // The lock is held until the node has stopped.
    runtime.block_on(serve(
        dir,
        config,
        config_path,
        node_key,
        credentials,
        Started {
            protocol_keys,
            text: started_text,
            set_log_filter,
            json_banner: args.json.then_some(admin_token),
        },
    ))
}

/// The node's runtime: `workers` threads (`[node] workers`), or tokio's
/// default, one per CPU core (or `TOKIO_WORKER_THREADS`).
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// What `run` prepared for `serve` besides the configuration.
struct Started {
    /// The keys the served protocols declared, derived from the vault.
    protocol_keys: ProtocolKeys,
    /// The configuration file as the node starts with it.
    text: toml::Table,
    /// Replaces the log filter on reload (`None` under `ALKNET_LOG`).
    set_log_filter: Option<SetLogFilter>,
    /// `serve --json`: the banner as JSON, with the admin token when this
    /// start created it.
    json_banner: Option<Option<String>>,
}

/// The keys the served protocols declare (`alknet_core::protocol_keys`), one
/// entry per protocol that needs one, derived while the vault is open.
fn declared_keys(config: &Config, has_vault: bool) -> Vec<&'static KeyDeclaration> {
    let mut keys = Vec::new();
    if config.section::<SshSection>().served(has_vault) {
        keys.push(&alknet_ssh::keys::HOST_KEY);
    }
    keys
}

/// The log filter: `ALKNET_LOG` when set, else the configuration's `log`
/// (which validation has checked, naming the file).
fn log_filter_source(
    node: &NodeConfig,
    config_path: Option<&std::path::Path>,
) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    match std::env::var("ALKNET_LOG") {
        Ok(filter) => {
            alknet_core::config::check_log_filter(&filter).map_err(|expected| {
                anyhow::anyhow!("environment variable ALKNET_LOG={filter:?}: expected {expected}")
            })?;
            log_filter(&filter).context("environment variable ALKNET_LOG")
        }
        Err(_) => log_filter(&node.log).with_context(|| match config_path {
            Some(path) => format!("{}: key `log`", path.display()),
            None => "the default log filter".to_owned(),
        }),
    }
}

/// Dependencies that log, at `warn`, what a peer did wrong (a malformed
/// ClientHello, an illegal packet, a reset flood): one line per input anyone
/// can send. The node reports what matters about such connections itself,
/// rate-limited (`alknet_core::log_limit`); these are kept to errors unless
/// the operator's filter names their target (a later directive for the same
/// target wins).
const QUIET_DEPENDENCIES: &str = "rustls=error,quinn=error,quinn_proto=error,h2=error,hyper=error,\
                                  tungstenite=error,tokio_tungstenite=error";

/// The operator's filter, after the dependencies' defaults.
fn log_filter(filter: &str) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    tracing_subscriber::EnvFilter::try_new(format!("{QUIET_DEPENDENCIES},{filter}"))
        .with_context(|| format!("invalid log filter `{filter}`"))
}

/// A panic is contained to its actor, and a peer may be able to cause one on
/// every connection: a few lines a window.
static PANIC_LOG: alknet_core::log_limit::LogLimit =
    alknet_core::log_limit::LogLimit::error("panic in a connection, session or handler");

/// Installs the subscriber; returns what replaces its filter on reload, or
/// `None` when `ALKNET_LOG` chose the filter (the environment wins over the
/// file until the node restarts).
fn init_logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) -> Option<SetLogFilter> {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // The two formats are two subscriber types, hence two handles.
    let set: SetLogFilter = match format {
        LogFormat::Text => {
            let builder = builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| Ok(handle.reload(log_filter(filter)?)?))
        }
        // Fields beside `message` at the top level, where collectors look.
        LogFormat::Json => {
            let builder = builder.json().flatten_event(true).with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |filter| Ok(handle.reload(log_filter(filter)?)?))
        }
    };
    // Panics are contained to their actor; route their message through the log
    // so operators see them with the same format and filtering as the rest.
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        if PANIC_LOG.admit() {
            tracing::error!(target: "alknet::panic", %location, "panic: {message}");
        }
    }));
    std::env::var_os("ALKNET_LOG").is_none().then_some(set)
}

async fn serve(
    dir: DataDir,
    config: Config,
    config_path: Option<PathBuf>,
    node_key: NodeKey,
    credentials: Credentials,
    started: Started,
) -> anyhow::Result<ExitCode> {
    let Started {
        mut protocol_keys,
        text: started_text,
        set_log_filter,
        json_banner,
    } = started;
    // Credentials are handed to registrations as capabilities
    // (`Credentials::grant`); they live, zeroed on drop, as long as the node.
    if !credentials.names().is_empty() {
        tracing::info!(names = ?credentials.names(), "sealed credentials decrypted");
    }
    let http_section: &HttpSection = config.section();
    let diagnostics: &Diagnostics = config.section();
    let imports: &Imports = config.section();
    let certificates =
        dir.browser_certificates(node_key.node_id(), &config.node.tls, http_section.stealth)?;
    let browser_certificate = certificates.described;
    let mut identity = ServerIdentity::new(&node_key, certificates.web, certificates.operator)?;
    if http_section.stealth {
        identity = identity.hiding_the_node();
    }
    // Tokens and peers, followed while the node runs (`alknet token|peer …`).
    dir.identity_store()?;
    let identities: Arc<dyn IdentityProvider> = Arc::new(StoreIdentities::open(dir.identities())?);
    let admin = AdminHandle::default();
    let sessions = session_limits(&config.node);
    let (call, registry) = call_handler(diagnostics, &admin, identities.clone(), &sessions)?;
    let call_limits = call.live_limits();
    // HTTP imports join the registry before anything listens; MCP imports
    // follow in the background once the node runs.
    let outbound = Arc::new(alknet_adapters::outbound::Outbound::new(
        imports::outbound_settings(&imports.client, &dir)?,
    )?);
    // Shared with reloads, which grant them to changed imports.
    let credentials = Arc::new(credentials);
    let source = CredentialSource::Decrypted(&credentials);
    let resolved = imports::resolve_http(imports, &dir, &source, &outbound).await?;
    let imported = imports::register(&registry, resolved)?;
    if !imported.is_empty() {
        tracing::info!(operations = ?imported, "imported HTTP operations");
    }
    let mcp_jobs = imports::mcp_jobs(imports, &dir, &source)?;
    let git_section: &GitSection = config.section();
    let git = if git_section.enabled {
        let git = Git::new(git_section, dir.root())?;
        alknet_git::ops::register(&registry, &git)?;
        Some(git)
    } else {
        None
    };
    let dns_section: &DnsSection = config.section();
    let pkarr_section: &PkarrSection = config.section();
    let mut pkarr = if dns_section.enabled {
        Some(pkarr_parts(pkarr_section, &dir, &node_key, &outbound)?)
    } else {
        None
    };
    let dns = if dns_section.enabled {
        let resolver = pkarr
            .as_ref()
            .map(|parts| (parts.resolver.clone(), parts.own.clone()));
        let dns = Dns::with_pkarr(dns_section, dir.root(), resolver)?;
        alknet_dns::ops::register(&registry, &dns)?;
        Some(dns)
    } else {
        None
    };
    let dns_plain = dns_plain_sockets(dns_section, dns.as_ref())?;
    let upstreams = upstreams::options(
        config.section::<Upstreams>(),
        &node_key,
        dns.as_ref().and_then(Dns::resolver),
    )?;
    let mut extra_routes: Vec<alknet_http::ExtraRoute> = git
        .iter()
        .map(|git| alknet_git::http::route(git.clone()))
        .collect();
    if dns_section.doh {
        extra_routes.extend(dns.iter().map(|dns| alknet_dns::doh::route(dns.clone())));
    }
    if pkarr_section.relay {
        extra_routes.extend(
            pkarr
                .iter()
                .map(|parts| alknet_dns::relay::route(parts.resolver.clone())),
        );
    }
    let http = http_section.enabled.then(|| {
        http_handler(
            &config.node,
            http_section,
            &dir,
            &registry,
            &identities,
            &sessions,
            extra_routes,
        )
    });
    let serves_console = http_section.enabled && http_section.console;
    let ssh_section: &SshSection = config.section();
    let ssh = ssh_handler(
        ssh_section,
        &mut protocol_keys,
        &identities,
        diagnostics.fault,
    )?;
    let sftp_section: &SftpSection = config.section();
    let sftp = if sftp_section.enabled {
        Some(Sftp::new(sftp_section, dir.root())?)
    } else {
        None
    };
    let ssh = ssh.map(|ssh| match &sftp {
        Some(sftp) => ssh.with_subsystem("sftp", SftpSubsystem(sftp.clone())),
        None => ssh,
    });
    let ssh = ssh.map(|mut ssh| {
        for service in [Service::UploadPack, Service::ReceivePack] {
            if let Some(git) = &git {
                let git = git.clone();
                ssh = ssh.with_command(service.name(), GitCommand { git, service });
            }
        }
        ssh
    });
    let ssh_listener = ssh_plain_listener(ssh_section, ssh.is_some())?;
    let ssh_banner = ssh.as_ref().map(|ssh| crate::banner::Ssh {
        host_key: ssh.host_key().to_owned(),
        plain: ssh_listener.as_ref().and_then(|l| l.local_addr().ok()),
    });
    let http_limits = http.as_ref().map(alknet_http::HttpHandler::live_limits);
    let node = Node::builder(config.node.clone(), identity.clone())
        .identities(identities)
        .protocol(call)
        .protocols(http)
        .protocols(diagnostics.echo.then_some(alknet_echo::EchoHandler))
        .protocols(
            diagnostics
                .fault
                .then(alknet_core::fault::handler)
                .flatten(),
        )
        .protocols(ssh)
        .protocols(sftp.clone().map(SftpHandler::new))
        .protocols(git.clone().map(GitHandler::new))
        .protocols(dns.clone().map(DoqHandler::new))
        .protocols(dns.clone().map(DotHandler::new))
        .plain_listeners(ssh_listener.map(|listener| (alknet_ssh::ALPN, listener)))
        .plain_listeners(
            dns_plain
                .tcp
                .map(|listener| (alknet_dns::DOT_ALPN, listener)),
        )
        .tls_listeners(
            dns_plain
                .dot
                .map(|listener| (alknet_dns::DOT_ALPN, listener)),
        )
        .services(dns_plain.udp)
        .services(pkarr.as_mut().and_then(|parts| parts.publisher.take()))
        .services(
            pkarr
                .as_ref()
                .map(|parts| CacheSweeper(parts.resolver.clone())),
        )
        .start()
        .await
        .map_err(|error| match &error {
            alknet_supervisors::StartError::Bind { source, .. }
                if source.kind() == std::io::ErrorKind::AddrInUse =>
            {
                anyhow::anyhow!("{error}; choose another address with --listen")
            }
            _ => anyhow::Error::new(error),
        })
        .with_context(|| match &config_path {
            Some(path) => format!("cannot start the node (configuration {})", path.display()),
            None => "cannot start the node".to_owned(),
        })?;

    // Each protocol took its key while it was built; none lingers unused.
    drop(protocol_keys);
    let metrics_addr = match config.section::<Metrics>().listen {
        Some(listen) => Some(metrics_endpoint::start(listen).await?),
        None => None,
    };
    let signal = shutdown_signal();
    let mut reloader = Reloader {
        dir: DataDir::new(dir.root()),
        config_path: config_path.clone(),
        node_id: node_key.node_id(),
        identity,
        node: node.clone(),
        log: config.node.log.clone(),
        started_text,
        set_log_filter,
        limits: config.node.limits.clone(),
        call_limits,
        http_limits,
        serves_mcp: http_section.enabled && http_section.mcp,
        imports: reload::ImportState {
            registry: registry.clone(),
            outbound: outbound.clone(),
            credentials: credentials.clone(),
            applied: imports.clone(),
            names: imported.clone(),
        },
    };
    let hangups = reload_signal();
    admin.attach(node.clone());
    let alpns: Vec<String> = node.alpns().iter().map(ToString::to_string).collect();
    // The node's pkarr record can be said only now: its port and ALPNs.
    if let Some(parts) = &pkarr {
        let _ = parts.record.send(Some(NodeRecord {
            node_id: node_key.node_id().to_string(),
            port: node.local_addr().port(),
            addresses: NodeRecord::addresses_for(&pkarr_section.addresses, node.local_addr()),
            alpns: alpns.clone(),
            ttl: pkarr_section.ttl,
        }));
    }
    let dht_addr = match pkarr.as_ref().and_then(|parts| parts.resolver.dht()) {
        Some(dht) => Some(dht.local_addr().await),
        None => None,
    };
    let dns_banner = dns.as_ref().map(|dns| crate::banner::Dns {
        zones: dns
            .section()
            .origins()
            .iter()
            .map(ToString::to_string)
            .collect(),
        doh: dns_section.doh && http_section.enabled,
        plain: dns_plain.addr,
        dot: dns_plain.dot_addr,
        zone_dir: alknet_dns::Dns::zone_dir(dir.root()),
        pkarr: pkarr.as_ref().map(|parts| crate::banner::Pkarr {
            name: format!("{}.", parts.own.to_z32()),
            publish: pkarr_section.publish,
            relay: pkarr_section.relay && http_section.enabled,
            relays: pkarr_section.relays.len(),
            dht: dht_addr,
        }),
    });
    if let Some(admin_token) = &json_banner {
        crate::banner::print_json(&crate::banner::Facts {
            node_id: node_key.node_id().to_string(),
            data_dir: dir.root(),
            listen: node.local_addr(),
            alpns: &alpns,
            certificate: &browser_certificate,
            console: serves_console,
            metrics: metrics_addr,
            ssh: ssh_banner.as_ref(),
            sftp_root: sftp.as_ref().map(Sftp::root),
            git_root: git.as_ref().map(|git| git.repositories().root()),
            dns: dns_banner.as_ref(),
            admin_token: admin_token.as_deref(),
        })?;
    } else {
        println!("alknet node {}", node_key.node_id());
        println!("data directory: {}", dir.root().display());
        println!(
            "listening on {} (QUIC over UDP and TLS over TCP)",
            node.local_addr()
        );
        if serves_console {
            println!(
                "console: https://{}/console ({browser_certificate}; sign in with a token)",
                node.local_addr()
            );
        }
        if let Some(addr) = metrics_addr {
            println!("metrics: http://{addr}/metrics");
        }
        if let Some(ssh) = &ssh_banner {
            println!("{}", ssh.text());
        }
        if let Some(sftp) = &sftp {
            println!("{}", crate::banner::sftp_text(sftp.root()));
        }
        if let Some(git) = &git {
            println!(
                "{}",
                crate::banner::git_text(node.local_addr(), git.repositories().root())
            );
        }
        if let Some(dns) = &dns_banner {
            println!("{}", dns.text());
            if let Some(pkarr) = &dns.pkarr {
                println!("{}", pkarr.text());
            }
        }
        println!("serving: {}", alpns.join(", "));
    }
    tracing::info!(addr = %node.local_addr(), node_id = %node_key.node_id(), alpns = ?alpns, "node started");
    service::ready(&format!("serving on {}", node.local_addr()));
    service::spawn_watchdog();
    for upstream in upstreams {
        tokio::spawn(upstreams::import(registry.clone(), upstream));
    }
    for job in mcp_jobs {
        tokio::spawn(imports::import_mcp(registry.clone(), outbound.clone(), job));
    }

    // Rate-limited lines report what they suppressed even after an attack
    // stops.
    tokio::spawn(alknet_core::log_limit::report_suppressed_periodically());
    let stopper = node.clone();
    tokio::spawn(async move {
        signal.await;
        service::stopping();
        stopper.shutdown();
    });
    if let Some(mut hangups) = hangups {
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                // Reading files and parsing certificates: off the async threads.
                service::reloading();
                tokio::task::block_in_place(|| reloader.reload());
                service::reloaded("serving; configuration reloaded");
            }
        });
    }
    match node.wait().await {
        ShutdownReason::Requested => Ok(ExitCode::SUCCESS),
        ShutdownReason::Escalated { .. } => Ok(ExitCode::from(1)),
    }
}

/// The pkarr side of DNS: the resolver (over the packet store, which holds
/// the relay's packets and the node's own, and the DHT when the node is on
/// it), and the publisher with the channel that hands it the node's record
/// once the node listens.
struct PkarrParts {
    resolver: Arc<alknet_dns::Resolver>,
    own: pkarr::PublicKey,
    publisher: Option<Publisher>,
    record: tokio::sync::watch::Sender<Option<NodeRecord>>,
}

fn pkarr_parts(
    section: &PkarrSection,
    dir: &DataDir,
    node_key: &NodeKey,
    outbound: &alknet_adapters::outbound::Outbound,
) -> anyhow::Result<PkarrParts> {
    let packets = Arc::new(
        alknet_dns::packets::PacketStore::open(
            &alknet_dns::Dns::packet_dir(dir.root()),
            section.max_stored,
        )
        .context("cannot open the pkarr packet store")?,
    );
    // Relays are checked against the system roots and [import.client]
    // ca_bundle, like every other outbound HTTPS request of the node.
    let http = outbound.raw_client(false);
    let dht = section
        .dht
        .then(|| alknet_dns::Dht::start(&section.dht_bootstrap, section.dht_listen))
        .transpose()
        .context("cannot join the Mainline DHT ([pkarr] dht)")?;
    let resolver = Arc::new(alknet_dns::Resolver::new(
        packets,
        section.relays.clone(),
        http,
        dht,
        section.cache_size,
    ));
    let (record, waiting) = tokio::sync::watch::channel(None);
    let publisher = section.publish.then(|| {
        Publisher::new(
            &node_key.seed(),
            waiting,
            resolver.clone(),
            std::time::Duration::from_secs(section.republish_secs),
        )
    });
    Ok(PkarrParts {
        resolver,
        own: pkarr::Keypair::from_secret_key(&node_key.seed()).public_key(),
        publisher,
        record,
    })
}

/// Plain DNS sockets (`[dns] listen`), bound before the node starts so that
/// an address in use is reported at once.
struct DnsPlain {
    udp: Option<UdpDns>,
    tcp: Option<std::net::TcpListener>,
    addr: Option<std::net::SocketAddr>,
    /// `[dns] dot_listen`: DoT for clients that offer no ALPN.
    dot: Option<std::net::TcpListener>,
    dot_addr: Option<std::net::SocketAddr>,
}

fn dns_plain_sockets(section: &DnsSection, dns: Option<&Dns>) -> anyhow::Result<DnsPlain> {
    let mut sockets = DnsPlain {
        udp: None,
        tcp: None,
        addr: None,
        dot: None,
        dot_addr: None,
    };
    let Some(dns) = dns else {
        return Ok(sockets);
    };
    if let Some(listen) = section.listen {
        let (udp, tcp) = alknet_dns::udp::bind_plain(listen)
            .with_context(|| format!("cannot listen for plain DNS on {listen} ([dns] listen)"))?;
        tcp.set_nonblocking(true)?;
        let udp = UdpDns::new(dns.clone(), udp)?;
        sockets.addr = Some(udp.local_addr()?);
        sockets.udp = Some(udp);
        sockets.tcp = Some(tcp);
    }
    if let Some(listen) = section.dot_listen {
        let dot = std::net::TcpListener::bind(listen).with_context(|| {
            format!("cannot listen for DNS over TLS on {listen} ([dns] dot_listen)")
        })?;
        sockets.dot_addr = Some(dot.local_addr()?);
        sockets.dot = Some(dot);
    }
    Ok(sockets)
}

/// The call protocol, served on every node: discovery, plus the diagnostic
/// operations when enabled. The registry is returned too: imports from
/// upstreams join it while the node runs.
fn call_handler(
    diagnostics: &Diagnostics,
    admin: &AdminHandle,
    identities: Arc<dyn IdentityProvider>,
    sessions: &SessionLimits,
) -> anyhow::Result<(CallHandler, Arc<Registry>)> {
    let registry = Registry::new();
    builtins::register_discovery(&registry)?;
    alknet_call::admin::register(&registry, admin)?;
    if diagnostics.fault && alknet_core::fault::available() {
        alknet_call::admin::register_fault(&registry, admin)?;
    }
    if diagnostics.call_ops {
        builtins::register_diagnostics(&registry)?;
    }
    let registry = Arc::new(registry);
    let handler = CallHandler::new(registry.clone(), identities, sessions.clone());
    Ok((handler, registry))
}

/// The SSH handler when `[ssh]` serves it, with the host key from the vault.
fn ssh_handler(
    section: &SshSection,
    keys: &mut ProtocolKeys,
    identities: &Arc<dyn IdentityProvider>,
    fault_injection: bool,
) -> anyhow::Result<Option<SshHandler>> {
    let host_key = match (section.enabled, keys.take(&alknet_ssh::keys::HOST_KEY)) {
        (Some(false), _) => return Ok(None),
        (_, Ok(host_key)) => host_key,
        (None, Err(_)) => {
            // Not asked for, and a data directory from before the vault has
            // no host key to serve it with.
            tracing::warn!(
                "SSH is not served: this data directory predates the vault, so there is no host key \
                 (set `[ssh] enabled = false` to silence this; a directory made by `alknet init` serves SSH)"
            );
            return Ok(None);
        }
        (Some(true), Err(error)) => return Err(error.into()),
    };
    Ok(Some(
        SshHandler::new(section.clone(), &host_key, identities.clone())
            .with_fault_injection(fault_injection),
    ))
}

/// `[ssh] listen`, bound before the node starts so that an address in use
/// stops `serve` with nothing running.
fn ssh_plain_listener(
    section: &SshSection,
    served: bool,
) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some(listen) = section.listen.filter(|_| served) else {
        return Ok(None);
    };
    let listener = std::net::TcpListener::bind(listen).map_err(|error| {
        let hint = if error.kind() == std::io::ErrorKind::AddrInUse {
            "; choose another address for `ssh.listen`"
        } else {
            ""
        };
        anyhow::anyhow!("cannot listen for plain SSH on {listen} (ssh.listen): {error}{hint}")
    })?;
    Ok(Some(listener))
}

/// The HTTP gateway (and MCP when enabled) over the call registry.
fn http_handler(
    config: &NodeConfig,
    http: &HttpSection,
    dir: &DataDir,
    registry: &Arc<Registry>,
    identities: &Arc<dyn IdentityProvider>,
    sessions: &SessionLimits,
    extra: Vec<alknet_http::ExtraRoute>,
) -> alknet_http::HttpHandler {
    let settings = alknet_http::HttpSettings {
        call_timeout: config.limits.call_timeout,
        max_batch: config.limits.max_batch,
        decoy: decoy(http, dir),
        session: sessions.clone(),
        console: http.console,
        limits: connection_limits(&config.limits),
        stealth: http.stealth,
        public_paths: http.public_paths.clone(),
        ..alknet_http::HttpSettings::default()
    };
    let handler = alknet_http::HttpHandler::with_extra_routes(
        registry.clone(),
        identities.clone(),
        settings,
        extra,
    )
    .expect("the node's own routes avoid the built-in paths");
    if !http.mcp {
        return handler;
    }
    handler.with_mcp(alknet_adapters::to_mcp::router(
        registry.clone(),
        identities.clone(),
        alknet_adapters::to_mcp::McpSettings {
            allowed_hosts: http.mcp_allowed_hosts.clone(),
            call_timeout: config.limits.call_timeout,
            max_batch: config.limits.max_batch,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
    ))
}

/// Every call session's limits, native or WebSocket; made once, as the
/// sessions share its overlay budget.
fn session_limits(config: &NodeConfig) -> SessionLimits {
    let limits = &config.limits;
    SessionLimits {
        max_frame: limits.max_frame,
        max_in_flight: limits.max_in_flight,
        call_timeout: limits.call_timeout,
        write_stall: limits.write_stall,
        first_frame_timeout: limits.first_request_timeout,
        overlay: OverlayLimits {
            max_operations: limits.max_overlay_operations,
            max_bytes: limits.max_overlay_bytes,
            budget: OverlayBudget::new(limits.max_overlay_bytes_total),
        },
        ..SessionLimits::default()
    }
}

/// Each HTTP connection's time limits and caps.
pub(crate) fn connection_limits(
    limits: &alknet_core::config::Limits,
) -> alknet_http::ConnectionLimits {
    alknet_http::ConnectionLimits {
        first_request_timeout: limits.first_request_timeout,
        header_read_timeout: limits.header_read_timeout,
        idle_timeout: limits.http_idle_timeout,
        ping_interval: limits.http2_ping_interval,
        ping_timeout: limits.http2_ping_timeout,
        min_body_rate: limits.min_body_rate,
        body_budget: limits.http_body_budget,
        max_streams: limits.http2_max_streams,
        send_buffer: limits.http2_send_buffer,
        max_subscriptions: limits.http_max_subscriptions,
    }
}

/// The configured decoy; paths are relative to the data directory.
fn decoy(http: &HttpSection, dir: &DataDir) -> alknet_http::decoy::Decoy {
    use alknet_http::decoy::Decoy;
    match (http.decoy, &http.decoy_root, &http.decoy_redirect) {
        (DecoyKind::StaticSite, Some(root), _) => Decoy::StaticSite {
            root: dir.root().join(root),
        },
        (DecoyKind::Redirect, _, Some(to)) => Decoy::Redirect { to: to.clone() },
        // Validation makes the other combinations impossible.
        _ => Decoy::NotFound,
    }
}

/// Installs the SIGHUP handler now, before the banner, so that a reload sent
/// as soon as the node is announced never meets the default (fatal) action.
#[cfg(unix)]
fn reload_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(hangups) => Some(hangups),
        Err(error) => {
            tracing::error!("cannot install the SIGHUP handler, reloads are off: {error}");
            None
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers now and returns the future that
/// completes on the first signal. Installed before the banner announces the
/// node, so a signal sent right after `serving:` is a shutdown, never the
/// default (fatal) action.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = handlers else {
                tracing::error!("cannot install signal handlers; stop the node with SIGKILL");
                return std::future::pending().await;
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn under<T>(filter: &str, check: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(filter).unwrap())
            .finish();
        tracing::subscriber::with_default(subscriber, check)
    }

    fn rustls_warns() -> bool {
        tracing::enabled!(target: "rustls::check", tracing::Level::WARN)
    }

    fn rustls_errors() -> bool {
        tracing::enabled!(target: "rustls::check", tracing::Level::ERROR)
    }

    fn node_informs() -> bool {
        tracing::enabled!(target: "alknet_supervisors::router", tracing::Level::INFO)
    }

    #[test]
    fn the_runtime_has_the_configured_workers_or_one_per_core() {
        assert_eq!(runtime(Some(3)).unwrap().metrics().num_workers(), 3);
        let cores = std::thread::available_parallelism().unwrap().get();
        let default = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cores);
        assert_eq!(runtime(None).unwrap().metrics().num_workers(), default);
    }

    #[test]
    fn dependencies_log_errors_only_unless_the_filter_names_them() {
        assert!(!under("info", rustls_warns));
        assert!(under("info", rustls_errors));
        assert!(under("info", node_informs));
        assert!(under("", rustls_errors));
        assert!(under("info,rustls=debug", rustls_warns));
        assert!(log_filter("info,rustls=loud").is_err());
    }
}
