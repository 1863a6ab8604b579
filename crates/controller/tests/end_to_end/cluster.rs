//! The product as a user meets it: the real `kubectl` and the real `asyncscale run` against a real
//! kube-apiserver and etcd (built from source, see `controlplane.rs`), the controller
//! authenticated as its ServiceAccount with exactly the RBAC of `deploy/`, and AWS behind
//! `asyncscale sim serve`. Apply a resource, wait for Ready, read `kubectl get aes`, check AWS,
//! Events, managed fields and metrics, delete, shut down; leader election and partitions.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BIN, Process, http, start_sim};
use asyncscale_controlplane::{ControlPlane, kubectl_as};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], "")
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    kubectl_as(kubeconfig, args)
}

fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

pub(crate) struct Cluster {
    /// What the controller authenticates with: the `asyncscale` ServiceAccount's token.
    pub(crate) kubeconfig: PathBuf,
    /// What a person (or a test acting as one) uses: an administrator.
    pub(crate) admin: PathBuf,
    _sim: Process,
    pub(crate) aws: String,
    // Last: the control plane stops after the controllers the tests started.
    pub(crate) plane: ControlPlane,
}

/// A control plane with asyncscale installed as `deploy/` installs it (kustomize base: namespace,
/// CRD, ServiceAccount, RBAC, Deployment, which nothing runs here), the namespace `ml`, and a
/// token for the ServiceAccount.
pub(crate) async fn cluster(tag: &str) -> Cluster {
    let plane = ControlPlane::start(tag);
    let deploy = root().join("deploy");
    let install = plane.kubectl(&["apply", "--server-side", "-k", deploy.to_str().unwrap()]);
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let established = plane.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/asyncendpointscalings.asyncscale.io",
        "--timeout=30s",
    ]);
    assert!(established.status.success());
    assert!(
        plane
            .kubectl(&["create", "namespace", "ml"])
            .status
            .success()
    );
    let token = plane.kubectl(&[
        "create",
        "token",
        "asyncscale",
        "-n",
        "asyncscale-system",
        "--duration=2h",
    ]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8(token.stdout).unwrap();
    let kubeconfig = plane.kubeconfig_with_token("asyncscale.kubeconfig", token.trim());
    let (sim, aws) = start_sim(&["ml.g4dn.xlarge=4"]);
    Cluster {
        kubeconfig,
        admin: plane.admin.clone(),
        _sim: sim,
        aws,
        plane,
    }
}

impl Cluster {
    /// `asyncscale run` against this cluster; returns the process and its metrics address.
    fn controller(&self, pod: &str, extra: &[&str]) -> (Process, String) {
        self.controller_through(&self.kubeconfig, pod, extra)
    }

    /// A controller that reaches the API server through `kubeconfig` (a proxy, say).
    fn controller_through(
        &self,
        kubeconfig: &PathBuf,
        pod: &str,
        extra: &[&str],
    ) -> (Process, String) {
        let metrics_addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(BIN)
            .args([
                "run",
                "--aws-endpoint",
                &format!("http://{}", self.aws),
                "--region",
                "us-east-1",
                "--metrics-addr",
                &metrics_addr,
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "asyncscale-system")
            .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("POD_NAME", pod)
            // The default log level, as in a pod: its lifecycle lines are what a test reads.
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            // A file, not a pipe nobody reads: a full pipe would stop the controller mid-test.
            .stderr(std::fs::File::create(controller_log(pod)).unwrap())
            .spawn()
            .unwrap();
        (Process(child), metrics_addr)
    }
}

/// Where a test's controller logs (kept after the test, for reading when it fails).
fn controller_log(pod: &str) -> PathBuf {
    std::env::temp_dir().join(format!("asyncscale-e2e-{}-{pod}.log", std::process::id()))
}

fn metric_with_labels(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The names a scrape of `metrics` (OpenMetrics text) offers to PromQL: each family's samples,
/// counters with `_total`, histograms with their `_bucket`, `_sum` and `_count`.
fn exposed_names(metrics: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in metrics.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
    }
    names
}

/// The alerts and the Grafana dashboard of the Helm chart query only metrics a running
/// controller exposes: a renamed metric breaks this test, not someone's on-call night.
fn every_metric_the_chart_queries_is_exposed(metrics: &str) {
    let exposed = exposed_names(metrics);
    let chart = root().join("deploy/helm/asyncscale");
    for file in ["templates/prometheusrule.yaml", "files/dashboard.json"] {
        let text = std::fs::read_to_string(chart.join(file)).unwrap();
        let queried: std::collections::BTreeSet<&str> = text
            .match_indices("asyncscale_")
            .map(|(at, _)| {
                let rest = &text[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        assert!(queried.len() >= 8, "{file}: {queried:?}");
        for name in queried {
            assert!(
                exposed.contains(name),
                "{file} queries {name}, which /metrics does not expose: {exposed:?}"
            );
        }
    }
}

fn metric(addr: &str, name: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .1
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_reconciles_through_the_controller_and_delete_cleans_aws() {
    let cluster = cluster("apply").await;
    let kubeconfig = cluster.admin.clone();
    let aws = cluster.aws.clone();
    let (mut controller, metrics_addr) = cluster.controller("asyncscale-test-0", &[]);
    let pid = controller.0.id();
    until(
        "the controller to be ready",
        Duration::from_secs(20),
        || TcpStream::connect(&metrics_addr).is_ok() && http_get(&metrics_addr, "/readyz").0 == 200,
    );

    let example = root().join("examples/sdxl.yaml");
    let apply = kubectl(&kubeconfig, &["apply", "-f", example.to_str().unwrap()]);
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    let wait = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "aes/sdxl",
            "-n",
            "ml",
            "--timeout=30s",
        ],
    );
    assert!(
        wait.status.success(),
        "{}{}",
        String::from_utf8_lossy(&wait.stdout),
        String::from_utf8_lossy(&wait.stderr)
    );

    let get = String::from_utf8(kubectl(&kubeconfig, &["get", "aes", "-n", "ml"]).stdout).unwrap();
    let row: Vec<&str> = get
        .lines()
        .nth(1)
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..8],
        ["sdxl", "sdxl-async", "0", "20", "4", "0/0", "True", "Ready"],
        "{get}"
    );

    let object: Value = serde_json::from_slice(
        &kubectl(
            &kubeconfig,
            &["get", "aes", "sdxl", "-n", "ml", "-o", "json"],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(object["metadata"]["finalizers"][0], "asyncscale.io/cleanup");
    assert_eq!(
        object["status"]["observedGeneration"],
        object["metadata"]["generation"]
    );
    // The endpoint as SageMaker reports it, and the share of the quota (this endpoint alone).
    assert_eq!(object["status"]["endpoint"]["status"], "InService");
    assert_eq!(
        object["status"]["endpoint"]["instanceType"],
        "ml.g4dn.xlarge"
    );
    assert_eq!(object["status"]["quota"]["inUse"], 0);
    assert_eq!(object["status"]["quota"]["sharingEndpoints"], 1);
    let quota_clamped = object["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "QuotaClamped")
        .unwrap();
    assert!(
        quota_clamped["message"]
            .as_str()
            .unwrap()
            .contains("0 of 4 in use by 1 endpoint; this endpoint may grow to 4"),
        "{quota_clamped}"
    );
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    assert_eq!(state["ScalableTargets"][0]["MaxCapacity"], 4);
    assert_eq!(
        state["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"],
        "ml/sdxl"
    );

    // Status by server-side apply with field manager asyncscale, and Events anyone can read.
    let with_managers: Value = serde_json::from_slice(
        &kubectl(
            &kubeconfig,
            &[
                "get",
                "aes",
                "sdxl",
                "-n",
                "ml",
                "-o",
                "json",
                "--show-managed-fields",
            ],
        )
        .stdout,
    )
    .unwrap();
    let managers: Vec<(String, String, String)> = with_managers["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or("").to_string();
            (s("manager"), s("operation"), s("subresource"))
        })
        .collect();
    assert!(
        managers.contains(&("asyncscale".into(), "Apply".into(), "status".into())),
        "{managers:?}"
    );
    let events = kubectl(&kubeconfig, &["events", "-n", "ml", "--for", "aes/sdxl"]);
    let events = String::from_utf8_lossy(&events.stdout).to_string();
    assert!(events.contains("QuotaClampApplied"), "{events}");

    // Another field manager writes a status field asyncscale owns: asyncscale takes it back
    // (server-side apply with force), once, and does not patch in a loop.
    let other = kubectl(
        &kubeconfig,
        &[
            "patch",
            "aes",
            "sdxl",
            "-n",
            "ml",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"effectiveMaxCapacity":99}}"#,
        ],
    );
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let field = |path: &str| {
        let out = kubectl(
            &kubeconfig,
            &[
                "get",
                "aes",
                "sdxl",
                "-n",
                "ml",
                "-o",
                &format!("jsonpath={path}"),
            ],
        );
        String::from_utf8(out.stdout).unwrap()
    };
    until(
        "asyncscale to take its field back",
        Duration::from_secs(20),
        || field("{.status.effectiveMaxCapacity}") == "4",
    );
    let settled = field("{.metadata.resourceVersion}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        field("{.metadata.resourceVersion}"),
        settled,
        "no status write loop"
    );

    let metrics = http_get(&metrics_addr, "/metrics").1;
    for line in [
        "asyncscale_managed_resources 1",
        "asyncscale_resources_clamped 1",
        "asyncscale_leader 1",
        "asyncscale_fleet_observation_age_seconds{account=\"\",region=\"us-east-1\"}",
        "asyncscale_fleet_refresh_duration_seconds{account=\"\",region=\"us-east-1\"}",
        "asyncscale_fleet_refreshes_total{account=\"\",region=\"us-east-1\",outcome=\"failed\"} 0",
        // The on-call view of the quota: 4 instances, none in use, all 4 left to grant.
        "asyncscale_quota_instances{account=\"\",region=\"us-east-1\",instance_type=\"ml.g4dn.xlarge\"} 4",
        "asyncscale_quota_in_use_instances{account=\"\",region=\"us-east-1\",instance_type=\"ml.g4dn.xlarge\"} 0",
        "asyncscale_quota_grantable_instances{account=\"\",region=\"us-east-1\",instance_type=\"ml.g4dn.xlarge\"} 4",
        "asyncscale_endpoints_blocked_by_quota{account=\"\",region=\"us-east-1\",instance_type=\"ml.g4dn.xlarge\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    every_metric_the_chart_queries_is_exposed(&metrics);
    assert!(
        metric_with_labels(
            &metrics,
            "asyncscale_fleet_refreshes_total{account=\"\",region=\"us-east-1\",outcome=\"ok\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    std::thread::sleep(Duration::from_secs(2));
    eprintln!(
        "controller resident memory at idle with one resource: {:.1} MiB",
        rss_mib(pid)
    );

    // A spec change reaches AWS: raise minCapacity, so the scale-from-zero alarm and policy go.
    let patched = kubectl(
        &kubeconfig,
        &[
            "patch",
            "aes",
            "sdxl",
            "-n",
            "ml",
            "--type=merge",
            "-p",
            r#"{"spec":{"minCapacity":1}}"#,
        ],
    );
    assert!(
        patched.status.success(),
        "{}",
        String::from_utf8_lossy(&patched.stderr)
    );
    until("the alarm to be removed", Duration::from_secs(20), || {
        let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
        state["ScalableTargets"][0]["MinCapacity"] == 1
            && state["MetricAlarms"].as_array().unwrap().iter().all(|a| {
                a["AlarmName"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("TargetTracking-"))
            })
    });

    let delete = kubectl(
        &kubeconfig,
        &["delete", "aes", "sdxl", "-n", "ml", "--timeout=30s"],
    );
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    assert_eq!(
        state["ScalableTargets"],
        serde_json::json!([]),
        "nothing of ours remains"
    );
    assert_eq!(state["MetricAlarms"], serde_json::json!([]));
    let gone = kubectl(&kubeconfig, &["get", "aes", "sdxl", "-n", "ml"]);
    assert!(
        !gone.status.success(),
        "the resource is gone once the finalizer is released"
    );

    // SIGTERM: a graceful shutdown.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let started = Instant::now();
    let code = loop {
        if let Some(status) = controller.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no shutdown within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code:?}");
    let logs = std::fs::read_to_string(controller_log("asyncscale-test-0")).unwrap();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "watch cache synced"),
        "{logs}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "shutting down"),
        "{logs}"
    );
    assert!(
        !logs.contains("forbidden"),
        "the RBAC of deploy/ covers every call: {logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_within_the_lease_duration() {
    let cluster = cluster("lease").await;
    let lease = [
        "--leader-elect",
        "--lease-namespace",
        "asyncscale-system",
        "--lease-duration",
        "4s",
    ];
    let (first, first_addr) = cluster.controller("asyncscale-0", &lease);
    until("the first replica to lead", Duration::from_secs(20), || {
        TcpStream::connect(&first_addr).is_ok()
            && metric(&first_addr, "asyncscale_leader") == Some(1.0)
    });
    let (_second, second_addr) = cluster.controller("asyncscale-1", &lease);
    until("the standby to be ready", Duration::from_secs(20), || {
        TcpStream::connect(&second_addr).is_ok() && http_get(&second_addr, "/readyz").0 == 200
    });

    let example = root().join("examples/sdxl.yaml");
    assert!(
        kubectl(&cluster.admin, &["apply", "-f", example.to_str().unwrap()])
            .status
            .success()
    );
    let wait = kubectl(
        &cluster.admin,
        &[
            "wait",
            "--for=condition=Ready",
            "aes/sdxl",
            "-n",
            "ml",
            "--timeout=30s",
        ],
    );
    assert!(
        wait.status.success(),
        "{}",
        String::from_utf8_lossy(&wait.stderr)
    );
    assert_eq!(metric(&second_addr, "asyncscale_leader"), Some(0.0));
    let standby_reconciles = http_get(&second_addr, "/metrics")
        .1
        .lines()
        .filter(|l| l.starts_with("asyncscale_reconciles_total"))
        .count();
    assert_eq!(standby_reconciles, 0, "a standby reconciles nothing");
    let lease_object: Value = serde_json::from_slice(
        &kubectl(
            &cluster.admin,
            &[
                "get",
                "lease",
                "asyncscale-leader",
                "-n",
                "asyncscale-system",
                "-o",
                "json",
            ],
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(lease_object["spec"]["holderIdentity"], "asyncscale-0");

    // The leader dies without releasing the Lease; the standby takes over once it expires.
    let killed = Instant::now();
    drop(first);
    until("the standby to take over", Duration::from_secs(15), || {
        metric(&second_addr, "asyncscale_leader") == Some(1.0)
    });
    let took = killed.elapsed();
    eprintln!(
        "standby took over {:.1} s after the leader died (lease duration 4 s)",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(4 + 2 + 2),
        "within the lease duration and its grace: {took:?}"
    );
    let _ = &first_addr;
}

/// A TCP proxy in front of the API server for one replica. `cut` turns it into a black hole:
/// open connections drop, new ones are accepted and never answered (a partition, not a refusal);
/// `restore` ends it.
struct Partition {
    addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    held: std::sync::Arc<std::sync::Mutex<Vec<tokio::net::TcpStream>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn in_front_of(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pipes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (cut, pipes, held) = (cut.clone(), pipes.clone(), held.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        held.lock().unwrap().push(client); // accepted, never answered
                        continue;
                    }
                    let upstream = upstream.clone();
                    pipes.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            })
        };
        Partition {
            addr,
            cut,
            pipes,
            held,
            _accept: accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// New connections reach the API server again; the ones held during the cut are closed.
    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
        self.held.lock().unwrap().clear();
    }
}

fn max_capacity_in_aws(aws: &str) -> Option<i64> {
    let state: Value = serde_json::from_str(&http_get(aws, "/_sim/state").1).ok()?;
    state["ScalableTargets"][0]["MaxCapacity"].as_i64()
}

/// A leader cut off from the API server while AWS stays reachable must stop
/// writing before a standby may take the Lease; before the fix it kept reconciling its stale spec
/// and AWS's MaxCapacity flapped between the two replicas' views.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_a_standby_takes_over() {
    let cluster = cluster("partition").await;
    let server = cluster
        .plane
        .server
        .trim_start_matches("https://")
        .to_string();
    let partition = Partition::in_front_of(server).await;
    let cut_off_kubeconfig = cluster.plane.kubeconfig_via(
        "partitioned.kubeconfig",
        &cluster.kubeconfig,
        &partition.addr,
    );
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "asyncscale-system",
        "--lease-duration",
        "4s",
        "--resync",
        "1s",
    ];
    let (_first, first_addr) =
        cluster.controller_through(&cut_off_kubeconfig, "asyncscale-0", &flags);
    until("the first replica to lead", Duration::from_secs(20), || {
        TcpStream::connect(&first_addr).is_ok()
            && metric(&first_addr, "asyncscale_leader") == Some(1.0)
    });
    let (_second, second_addr) = cluster.controller("asyncscale-1", &flags);
    until("the standby to be ready", Duration::from_secs(20), || {
        TcpStream::connect(&second_addr).is_ok() && http_get(&second_addr, "/readyz").0 == 200
    });
    let manifest =
        std::env::temp_dir().join(format!("asyncscale-e2e-split-{}.yaml", std::process::id()));
    std::fs::write(
        &manifest,
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {name: sdxl, namespace: ml}\nspec: {endpointName: sdxl-async, instanceType: ml.g4dn.xlarge, maxCapacity: 2, targetTracking: {targetValue: 5}}\n",
    )
    .unwrap();
    let apply = kubectl(&cluster.admin, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        apply.status.success(),
        "{}",
        String::from_utf8_lossy(&apply.stderr)
    );
    until(
        "the leader to set MaxCapacity 2",
        Duration::from_secs(30),
        || max_capacity_in_aws(&cluster.aws) == Some(2),
    );

    // The leader loses the API server; AWS stays reachable for it.
    let cut = Instant::now();
    partition.cut();
    until(
        "the cut-off leader to stop leading",
        Duration::from_secs(10),
        || metric(&first_addr, "asyncscale_leader") == Some(0.0),
    );
    let stopped = cut.elapsed();
    until("the standby to take over", Duration::from_secs(20), || {
        metric(&second_addr, "asyncscale_leader") == Some(1.0)
    });
    let took_over = cut.elapsed();
    eprintln!(
        "cut-off leader stopped after {:.1} s; standby led after {:.1} s (lease 4 s)",
        stopped.as_secs_f64(),
        took_over.as_secs_f64()
    );
    assert!(
        stopped < took_over,
        "the old leader stops before the new one starts"
    );

    let patch = kubectl(
        &cluster.admin,
        &[
            "patch",
            "aes",
            "sdxl",
            "-n",
            "ml",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"maxCapacity":1}}"#,
        ],
    );
    assert!(
        patch.status.success(),
        "{}",
        String::from_utf8_lossy(&patch.stderr)
    );
    until(
        "the new leader to set MaxCapacity 1",
        Duration::from_secs(30),
        || max_capacity_in_aws(&cluster.aws) == Some(1),
    );
    // With a 1 s resync, the old leader would rewrite 2 within a second or two if it still wrote.
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        assert_eq!(
            max_capacity_in_aws(&cluster.aws),
            Some(1),
            "MaxCapacity flapped: split brain"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::fs::remove_file(&manifest);
}

/// A resource applied just before its leader loses the Lease (the API server unreachable for a
/// few seconds): the reconcile under way is aborted after its first status write, Ready Unknown.
/// When the same replica takes the Lease back, the new term reconciles the resource at once; the
/// aborted visit must not make it look visited and not due before the reconcile timeout (2
/// minutes of "Reconciling", no EFFECTIVE-MAX, the resource missing from the metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_aborted_with_the_lease_is_redone_when_the_lease_comes_back() {
    let cluster = cluster("lostterm").await;
    let server = cluster
        .plane
        .server
        .trim_start_matches("https://")
        .to_string();
    let partition = Partition::in_front_of(server).await;
    let through_partition =
        cluster
            .plane
            .kubeconfig_via("lostterm.kubeconfig", &cluster.kubeconfig, &partition.addr);
    let flags = [
        "--leader-elect",
        "--lease-namespace",
        "asyncscale-system",
        "--lease-duration",
        "4s",
        "--reconcile-timeout",
        "2m",
    ];
    let (_controller, addr) =
        cluster.controller_through(&through_partition, "asyncscale-0", &flags);
    until("the replica to lead", Duration::from_secs(20), || {
        TcpStream::connect(&addr).is_ok() && metric(&addr, "asyncscale_leader") == Some(1.0)
    });
    // The reconcile's first AWS write is answered 8 s late: it is still under way when the
    // Lease is lost.
    let slow = r#"{"operation": "RegisterScalableTarget", "delaySeconds": 8, "count": 1}"#;
    assert_eq!(http(&cluster.aws, "POST", "/_sim/faults", &[], slow).0, 204);
    let dir = std::env::temp_dir();
    let file = format!("asyncscale-e2e-lostterm-{}.yaml", std::process::id());
    let apply = apply_text(&cluster.admin, &dir, &file, &example("sdxl", ""));
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let reason = |cluster: &Cluster| {
        aes_json(&cluster.admin, "sdxl")["status"]["conditions"]
            .as_array()
            .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready").cloned())
            .map(|ready| (ready["status"].clone(), ready["reason"].clone()))
    };
    until("the first visit's status", Duration::from_secs(20), || {
        reason(&cluster).is_some()
    });
    assert_eq!(reason(&cluster).unwrap().0, "Unknown", "still reconciling");

    partition.cut();
    until(
        "the replica to lose the Lease",
        Duration::from_secs(10),
        || metric(&addr, "asyncscale_leader") == Some(0.0),
    );
    partition.restore();
    until(
        "the replica to take the Lease back",
        Duration::from_secs(20),
        || metric(&addr, "asyncscale_leader") == Some(1.0),
    );
    let regained = Instant::now();
    // Far sooner than the reconcile timeout (2 minutes).
    until("Ready in the new term", Duration::from_secs(30), || {
        reason(&cluster).is_some_and(|(status, _)| status == "True")
    });
    let status = aes_json(&cluster.admin, "sdxl")["status"].clone();
    assert_eq!(status["effectiveMaxCapacity"], 4, "{status}");
    until(
        "the resource in the metrics",
        Duration::from_secs(10),
        || metric(&addr, "asyncscale_managed_resources") == Some(1.0),
    );
    eprintln!(
        "Ready {:.1} s after the Lease came back",
        regained.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_file(dir.join(file));
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A manifest of the README's example with `spec_extra` added to its spec (YAML flow entries).
fn example(name: &str, spec_extra: &str) -> String {
    format!(
        "apiVersion: asyncscale.io/v1alpha1\nkind: AsyncEndpointScaling\nmetadata: {{name: {name}, namespace: ml}}\nspec: {{endpointName: {name}-async, instanceType: ml.g4dn.xlarge, maxCapacity: 20, targetTracking: {{targetValue: 5}}{spec_extra}}}\n"
    )
}

fn apply_text(
    kubeconfig: &std::path::Path,
    dir: &std::path::Path,
    file: &str,
    text: &str,
) -> Output {
    let path = dir.join(file);
    std::fs::write(&path, text).unwrap();
    kubectl(kubeconfig, &["apply", "-f", path.to_str().unwrap()])
}

/// The real API server refuses what the CLI refuses, with the same words, applies the
/// schema's defaults, explains the type, and accepts the install manifests of both install paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_api_server_validates_defaults_and_accepts_the_install_manifests() {
    let cluster = cluster("schema").await;
    let admin = &cluster.admin;
    let dir = cluster.plane.dir.clone();

    // Discovery lags the CRD's Established condition by a moment.
    until("aes in discovery", Duration::from_secs(20), || {
        kubectl(admin, &["explain", "aes.spec"]).status.success()
    });
    let explain = kubectl(admin, &["explain", "aes.spec"]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains("endpointName") && text.contains("Immutable."),
        "{text}"
    );

    let created = apply_text(admin, &dir, "defaults.yaml", &example("defaults", ""));
    assert!(created.status.success(), "{}", stderr_of(&created));
    let object: Value = serde_json::from_slice(
        &kubectl(admin, &["get", "aes", "defaults", "-n", "ml", "-o", "json"]).stdout,
    )
    .unwrap();
    let spec = &object["spec"];
    for (field, want) in [
        ("/variantName", serde_json::json!("AllTraffic")),
        ("/minCapacity", serde_json::json!(0)),
        ("/scaleFromZero/periodSeconds", serde_json::json!(60)),
        ("/scaleFromZero/evaluationPeriods", serde_json::json!(2)),
        (
            "/targetTracking/scaleInCooldownSeconds",
            serde_json::json!(300),
        ),
        ("/quota/policy", serde_json::json!("Share")),
        ("/deletionPolicy", serde_json::json!("Delete")),
    ] {
        assert_eq!(
            spec.pointer(field),
            Some(&want),
            "default of spec{field}: {spec}"
        );
    }

    // Every rule and bound, broken: refused by the server, with the words the CLI prints.
    use asyncscale_api::rules;
    let cases: Vec<(&str, String, String)> = vec![
        (
            "min-above-max",
            example("a1", ", minCapacity: 30"),
            rules::MIN_NOT_ABOVE_MAX.message.into(),
        ),
        (
            "period",
            example("a2", ", scaleFromZero: {periodSeconds: 90}"),
            rules::ALARM_PERIOD.message.into(),
        ),
        (
            "short-period",
            example("a3", ", scaleFromZero: {periodSeconds: 30}"),
            "spec.scaleFromZero.periodSeconds".into(),
        ),
        (
            "datapoints",
            example(
                "a4",
                ", scaleFromZero: {evaluationPeriods: 2, datapointsToAlarm: 3}",
            ),
            rules::DATAPOINTS_NOT_ABOVE_PERIODS.message.into(),
        ),
        (
            "window",
            example(
                "a5",
                ", scaleFromZero: {periodSeconds: 600, evaluationPeriods: 145, datapointsToAlarm: 1}",
            ),
            rules::ALARM_WINDOW.message.into(),
        ),
        (
            "max-zero",
            example("a6", "").replace("maxCapacity: 20", "maxCapacity: 0"),
            "spec.maxCapacity".into(),
        ),
        (
            "endpoint-name",
            example("a7", "").replace("a7-async", "-bad-"),
            "spec.endpointName".into(),
        ),
        (
            "instance-type",
            example("a8", "").replace("ml.g4dn.xlarge", "g4dn.xlarge"),
            "spec.instanceType".into(),
        ),
        (
            "target-value",
            example("a9", "").replace("targetValue: 5", "targetValue: 0"),
            "spec.targetTracking.targetValue".into(),
        ),
        (
            "region",
            example("a10", ", region: useast1"),
            "spec.region".into(),
        ),
        (
            "region-length",
            example("a11", ", region: us-eastsoutheastnorthwestcentral-1"),
            "spec.region".into(),
        ),
        (
            "min-negative",
            example("a12", ", minCapacity: -1"),
            "spec.minCapacity".into(),
        ),
        (
            "variant-name",
            example("a13", ", variantName: 'All Traffic'"),
            "spec.variantName".into(),
        ),
        (
            "endpoint-name-length",
            example("a14", "").replace("a14-async", &"e".repeat(64)),
            "spec.endpointName".into(),
        ),
        (
            "long-period",
            example("a15", ", scaleFromZero: {periodSeconds: 86460}"),
            "spec.scaleFromZero.periodSeconds".into(),
        ),
        (
            "evaluation-periods",
            example("a16", ", scaleFromZero: {evaluationPeriods: 0}"),
            "spec.scaleFromZero.evaluationPeriods".into(),
        ),
        (
            "datapoints-zero",
            example("a17", ", scaleFromZero: {datapointsToAlarm: 0}"),
            "spec.scaleFromZero.datapointsToAlarm".into(),
        ),
        (
            "cooldown",
            example("a18", ", scaleFromZero: {cooldownSeconds: -1}"),
            "spec.scaleFromZero.cooldownSeconds".into(),
        ),
        (
            "scaling-adjustment",
            example("a19", ", scaleFromZero: {scalingAdjustment: 0}"),
            "spec.scaleFromZero.scalingAdjustment".into(),
        ),
        (
            "scale-in-cooldown",
            example("a20", "").replace(
                "targetValue: 5",
                "targetValue: 5, scaleInCooldownSeconds: -1",
            ),
            "spec.targetTracking.scaleInCooldownSeconds".into(),
        ),
        (
            "scale-out-cooldown",
            example("a21", "").replace(
                "targetValue: 5",
                "targetValue: 5, scaleOutCooldownSeconds: -1",
            ),
            "spec.targetTracking.scaleOutCooldownSeconds".into(),
        ),
        (
            "deletion-policy",
            example("a22", ", deletionPolicy: Keep"),
            "spec.deletionPolicy".into(),
        ),
        (
            "quota-policy",
            example("a23", ", quota: {policy: Bogus}"),
            "spec.quota.policy".into(),
        ),
        (
            "schedule-sets-nothing",
            example("a24", ", schedules: [{name: s, schedule: 'rate(1 hour)'}]"),
            rules::SCHEDULE_SETS_CAPACITY.message.into(),
        ),
        (
            "schedule-min-above-max",
            example(
                "a25",
                ", schedules: [{name: s, schedule: 'rate(1 hour)', minCapacity: 3, maxCapacity: 2}]",
            ),
            rules::SCHEDULE_MIN_NOT_ABOVE_MAX.message.into(),
        ),
        (
            "schedule-end-before-start",
            example(
                "a26",
                ", schedules: [{name: s, schedule: 'rate(1 hour)', minCapacity: 1, startTime: '2026-12-02T00:00:00Z', endTime: '2026-12-01T00:00:00Z'}]",
            ),
            rules::SCHEDULE_END_AFTER_START.message.into(),
        ),
        (
            "schedule-min-above-spec-max",
            example(
                "a27",
                ", schedules: [{name: s, schedule: 'rate(1 hour)', minCapacity: 21}]",
            ),
            rules::SCHEDULE_MIN_WITHIN_SPEC_MAX.message.into(),
        ),
        (
            "schedule-max-below-spec-min",
            example(
                "a28",
                ", minCapacity: 2, schedules: [{name: s, schedule: 'rate(1 hour)', maxCapacity: 1}]",
            ),
            rules::SCHEDULE_MAX_NOT_BELOW_SPEC_MIN.message.into(),
        ),
        (
            "schedule-max-above-share",
            example(
                "a31",
                ", schedules: [{name: s, schedule: 'rate(1 hour)', maxCapacity: 21}]",
            ),
            rules::SCHEDULE_MAX_WITHIN_SHARE.message.into(),
        ),
        (
            "schedules-disagree",
            example(
                "a32",
                ", schedules: [{name: day, schedule: 'cron(0 8 * * ? *)', minCapacity: 3}, {name: night, schedule: 'cron(0 22 * * ? *)', maxCapacity: 2}]",
            ),
            rules::SCHEDULES_AGREE.message.into(),
        ),
        (
            "schedule-expression",
            example(
                "a29",
                ", schedules: [{name: s, schedule: 'every day at 8', minCapacity: 1}]",
            ),
            "spec.schedules[0].schedule".into(),
        ),
        (
            "schedule-name",
            example(
                "a30",
                ", schedules: [{name: Office_Hours, schedule: 'rate(1 hour)', minCapacity: 1}]",
            ),
            "spec.schedules[0].name".into(),
        ),
        (
            "role-arn",
            example(
                "a31",
                ", roleArn: 'arn:aws:iam::123456789012:user/not-a-role'",
            ),
            "spec.roleArn".into(),
        ),
        (
            "role-arn-partition",
            example("a34", ", roleArn: 'arn:awsfoo:iam::123456789012:role/x'"),
            "spec.roleArn".into(),
        ),
        (
            "external-id-without-role",
            example("a32", ", externalId: tenant-42"),
            rules::EXTERNAL_ID_NEEDS_ROLE.message.into(),
        ),
        (
            "external-id",
            example(
                "a33",
                ", roleArn: 'arn:aws:iam::123456789012:role/x', externalId: 'has space'",
            ),
            "spec.externalId".into(),
        ),
    ];
    for (case, manifest, words) in &cases {
        let server = apply_text(admin, &dir, &format!("{case}.yaml"), manifest);
        assert!(!server.status.success(), "{case}: the server accepted it");
        assert!(
            stderr_of(&server).contains(words.as_str()),
            "{case}: server said {}",
            stderr_of(&server)
        );
        let path = dir.join(format!("{case}.yaml"));
        let cli = Command::new(BIN)
            .args(["plan", "-f", path.to_str().unwrap(), "--aws", "simulated"])
            .output()
            .unwrap();
        assert_eq!(cli.status.code(), Some(1), "{case}");
        assert!(
            stderr_of(&cli).contains(words.as_str()),
            "{case}: CLI said {}",
            stderr_of(&cli)
        );
    }
    // Transition rules: endpointName, variantName, region and roleArn cannot change.
    for (change, words) in [
        (
            example("defaults", "").replace("defaults-async", "other-async"),
            rules::ENDPOINT_NAME_IMMUTABLE.message,
        ),
        (
            example("defaults", ", variantName: Blue"),
            rules::VARIANT_NAME_IMMUTABLE.message,
        ),
        (
            example("defaults", ", region: eu-west-1"),
            rules::REGION_IMMUTABLE.message,
        ),
        (
            example(
                "defaults",
                ", roleArn: 'arn:aws:iam::123456789012:role/asyncscale'",
            ),
            rules::ROLE_ARN_IMMUTABLE.message,
        ),
    ] {
        let refused = apply_text(admin, &dir, "change.yaml", &change);
        assert!(!refused.status.success(), "{change}");
        assert!(
            stderr_of(&refused).contains(words),
            "{}",
            stderr_of(&refused)
        );
    }

    // Both install paths, as the real server takes them (server-side dry run).
    let kustomized = kubectl(
        admin,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-k",
            root().join("deploy").to_str().unwrap(),
        ],
    );
    assert!(kustomized.status.success(), "{}", stderr_of(&kustomized));
    let helm = asyncscale_controlplane::tool("helm");
    let chart = root().join("deploy/helm/asyncscale");
    let lint = Command::new(&helm)
        .args(["lint", chart.to_str().unwrap(), "--kube-version", "1.37.2"])
        .output()
        .unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        stderr_of(&lint)
    );
    let rendered = Command::new(&helm)
        .args([
            "template",
            "asyncscale",
            chart.to_str().unwrap(),
            "--namespace",
            "asyncscale-system",
            "--include-crds",
            "--kube-version",
            "1.37.2",
        ])
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr_of(&rendered));
    let path = dir.join("helm.yaml");
    std::fs::write(&path, &rendered.stdout).unwrap();
    let dry = kubectl(
        admin,
        &[
            "apply",
            "--server-side",
            "--dry-run=server",
            "-f",
            path.to_str().unwrap(),
        ],
    );
    assert!(dry.status.success(), "{}", stderr_of(&dry));
}

/// RBAC is really exercised: with one verb taken from the ClusterRole, the controller
/// fails visibly instead of passing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_status_patch_verb_the_controller_fails_visibly() {
    let cluster = cluster("rbac").await;
    let base = std::fs::read_to_string(root().join("deploy/base/asyncscale.yaml")).unwrap();
    let cluster_role = base
        .split("\n---\n")
        .find(|doc| doc.contains("\nkind: ClusterRole\n"))
        .expect("the ClusterRole of deploy/");
    let limited = cluster_role
        .replace("name: asyncscale\n", "name: asyncscale-limited\n")
        .replace(
            "  - apiGroups: [\"asyncscale.io\"]\n    resources: [\"asyncendpointscalings/status\"]\n    verbs: [\"patch\"]\n",
            "",
        );
    assert!(
        !limited.contains("asyncendpointscalings/status"),
        "{limited}"
    );
    let dir = cluster.plane.dir.clone();
    let setup = format!(
        "{limited}\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: limited, namespace: asyncscale-system}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: asyncscale-limited}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: asyncscale-limited}}\nsubjects: [{{kind: ServiceAccount, name: limited, namespace: asyncscale-system}}]\n"
    );
    let applied = apply_text(&cluster.admin, &dir, "limited.yaml", &setup);
    assert!(applied.status.success(), "{}", stderr_of(&applied));
    let token = kubectl(
        &cluster.admin,
        &["create", "token", "limited", "-n", "asyncscale-system"],
    );
    let kubeconfig = cluster.plane.kubeconfig_with_token(
        "limited.kubeconfig",
        String::from_utf8(token.stdout).unwrap().trim(),
    );
    let (mut controller, _) = cluster.controller_through(&kubeconfig, "limited-0", &[]);
    let applied = apply_text(&cluster.admin, &dir, "sdxl.yaml", &example("sdxl", ""));
    assert!(applied.status.success());
    std::thread::sleep(Duration::from_secs(6));
    let object: Value = serde_json::from_slice(
        &kubectl(
            &cluster.admin,
            &["get", "aes", "sdxl", "-n", "ml", "-o", "json"],
        )
        .stdout,
    )
    .unwrap();
    assert!(
        object["status"]["conditions"].is_null(),
        "no status without the verb: {object}"
    );
    let _ = Command::new("kill")
        .arg(controller.0.id().to_string())
        .status();
    let _ = controller.0.wait();
    let logs = std::fs::read_to_string(controller_log("limited-0")).unwrap();
    assert!(logs.contains("forbidden"), "the log says why: {logs}");
}

/// The kustomize base is rendered from the Helm chart, so the two install paths cannot
/// drift; a stale copy fails here (regenerate with `make deploy-base`).
#[test]
fn the_kustomize_base_is_the_helm_charts_rendering() {
    let helm = asyncscale_controlplane::tool("helm");
    let rendered = Command::new(root().join("scripts/render-deploy-base.sh"))
        .arg(&helm)
        .output()
        .unwrap();
    assert!(rendered.status.success(), "{}", stderr_of(&rendered));
    let committed = std::fs::read_to_string(root().join("deploy/base/asyncscale.yaml")).unwrap();
    assert!(
        String::from_utf8(rendered.stdout).unwrap() == committed,
        "deploy/base/asyncscale.yaml is stale: run `make deploy-base`"
    );
}

/// The Argo CD health check in Argo CD's own Lua VM (gopher-lua with the libraries Argo
/// CD opens for a user script: no `string`, no `math`), on every documented case.
#[test]
fn the_argo_cd_health_check_passes_in_argo_cds_lua_vm() {
    let out = Command::new(asyncscale_controlplane::tool("luahealth"))
        .arg(root().join("deploy/argocd/health.lua"))
        .arg(root().join("deploy/argocd/health_cases.json"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

/// The `kubectl` and `helm` commands of the README's install section, in order, as written: each
/// one on its own line of text, continuation lines joined.
fn readme_install_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Installing the controller in a cluster")
        .expect("install section");
    let section = &readme[start..];
    let section = &section[..section.find("\n### ").unwrap_or(section.len())];
    let joined = section.replace("\n", " ");
    joined
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|span| span.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|command| command.starts_with("kubectl ") || command.starts_with("helm "))
        .filter(|command| command.split(' ').count() > 2)
        .collect()
}

/// Every README command of the install section works as written on a fresh cluster,
/// once by the kustomize path and once by the Helm path (two fresh control planes: the two
/// install the same objects). Nothing runs the Deployment here, so no finalizer holds the delete.
#[test]
fn the_readme_install_commands_work_as_written_on_a_fresh_cluster() {
    let commands = readme_install_commands();
    let install = |c: &String| c.starts_with("kubectl apply -k") || c.starts_with("helm install");
    let installs: Vec<&String> = commands.iter().filter(|c| install(c)).collect();
    let after: Vec<&String> = commands.iter().filter(|c| !install(c)).collect();
    assert_eq!(installs.len(), 2, "{commands:#?}");
    assert!(
        after.iter().any(|c| c.starts_with("kubectl delete aes")),
        "{commands:#?}"
    );
    let bin = asyncscale_controlplane::tool("helm");
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (tag, installing) in ["readme-kustomize", "readme-helm"].iter().zip(installs) {
        let plane = ControlPlane::start(tag);
        for command in std::iter::once(installing).chain(after.iter().copied()) {
            let out = Command::new("sh")
                .args(["-c", command])
                .current_dir(root())
                .env("KUBECONFIG", &plane.admin)
                .env("PATH", &path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{tag}: `{command}` failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                stderr_of(&out)
            );
            if command.starts_with("kubectl apply -k") || command.starts_with("helm install") {
                // The README's next command uses the CRD: as a person would, wait until the API
                // server serves it.
                until("the CRD to be served", Duration::from_secs(30), || {
                    plane.kubectl(&["get", "aes", "-A"]).status.success()
                });
            }
        }
    }
}

fn aes_json(kubeconfig: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(
        &kubectl(kubeconfig, &["get", "aes", name, "-n", "ml", "-o", "json"]).stdout,
    )
    .unwrap()
}

/// Schedules through the controller: the schedules of a resource become scheduled actions (the
/// scheduled maxCapacity held to the quota), status shows their next run, a run that AWS makes is
/// seen through its scaling activity (status lastRun, a ScheduledActionRan Event) and never
/// undone, and removing the schedules with kubectl deletes the actions and puts the spec's
/// minCapacity back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_run_through_the_controller_and_are_never_undone() {
    let cluster = cluster("schedules").await;
    let kubeconfig = cluster.admin.clone();
    let aws = cluster.aws.clone();
    let (_controller, metrics_addr) =
        cluster.controller("asyncscale-schedules-0", &["--resync", "1s"]);
    until(
        "the controller to be ready",
        Duration::from_secs(20),
        || TcpStream::connect(&metrics_addr).is_ok() && http_get(&metrics_addr, "/readyz").0 == 200,
    );
    let dir = std::env::temp_dir().join(format!("asyncscale-schedules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = example(
        "sdxl",
        ", schedules: [{name: office-hours, schedule: \"cron(50 7 ? * MON-FRI *)\", timeZone: Europe/Berlin, minCapacity: 1, maxCapacity: 20}, {name: every-minute, schedule: \"rate(1 minute)\", minCapacity: 1}]",
    );
    // The API server takes a year-9999 start; asyncscale refuses it for that resource alone
    // (once, it stopped the controller's list of every resource).
    let far = example(
        "far",
        ", schedules: [{name: s, schedule: 'rate(1 hour)', minCapacity: 1, startTime: '9999-12-31T23:59:59Z'}]",
    );
    let apply = apply_text(&kubeconfig, &dir, "far.yaml", &far);
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let apply = apply_text(&kubeconfig, &dir, "sdxl.yaml", &manifest);
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let wait = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "aes/sdxl",
            "-n",
            "ml",
            "--timeout=30s",
        ],
    );
    assert!(wait.status.success(), "{}", stderr_of(&wait));
    until(
        "the far resource to be InvalidSpec",
        Duration::from_secs(20),
        || {
            aes_json(&kubeconfig, "far")["status"]["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c["reason"] == "InvalidSpec"
                            && c["message"].as_str().unwrap_or("").contains("startTime")
                    })
                })
        },
    );
    let object = aes_json(&kubeconfig, "sdxl");
    let schedules = object["status"]["schedules"].as_array().unwrap().clone();
    assert_eq!(schedules.len(), 2, "{object}");
    assert_eq!(schedules[0]["name"], "office-hours");
    assert_eq!(schedules[0]["actionName"], "asyncscale-office-hours");
    assert_eq!(
        schedules[0]["effectiveMaxCapacity"], 4,
        "20 held to the quota of 4"
    );
    let next: k8s_openapi::jiff::Timestamp =
        schedules[0]["nextRun"].as_str().unwrap().parse().unwrap();
    let berlin = next.to_zoned(k8s_openapi::jiff::tz::TimeZone::get("Europe/Berlin").unwrap());
    assert_eq!((berlin.hour(), berlin.minute()), (7, 50), "{next}");
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    let names: Vec<&str> = state["ScheduledActions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ScheduledActionName"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["asyncscale-every-minute", "asyncscale-office-hours"]
    );
    assert_eq!(state["ScalableTargets"][0]["MinCapacity"], 0);
    // Another tool's scheduled action on the same target (a Saturday floor of 2).
    let (status, body) = http(
        &aws,
        "POST",
        "/",
        &[
            ("X-Amz-Target", "AnyScaleFrontendService.PutScheduledAction"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        &serde_json::json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/sdxl-async/variant/AllTraffic",
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount", "ScheduledActionName": "team-saturday",
            "Schedule": "cron(0 9 ? * SAT *)", "ScalableTargetAction": {"MinCapacity": 2}})
        .to_string(),
    );
    assert_eq!(status, 200, "{body}");

    // AWS runs the every-minute action (the local endpoint's clock moved on).
    let registers = |calls: &Value| {
        calls["application-autoscaling"]["RegisterScalableTarget"]
            .as_u64()
            .unwrap_or(0)
    };
    let calls: Value = serde_json::from_str(&http_get(&aws, "/_sim/calls").1).unwrap();
    let registered = registers(&calls);
    let (status, _) = http(&aws, "POST", "/_sim/advance", &[], r#"{"seconds": 180}"#);
    assert_eq!(status, 200);
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    assert_eq!(
        state["ScalableTargets"][0]["MinCapacity"], 1,
        "the run set it"
    );
    until("status to show the run", Duration::from_secs(30), || {
        aes_json(&kubeconfig, "sdxl")["status"]["schedules"][1]["lastRun"].is_string()
    });
    until(
        "the ScheduledActionRan Event",
        Duration::from_secs(20),
        || {
            let events = kubectl(&kubeconfig, &["events", "-n", "ml", "--for", "aes/sdxl"]);
            String::from_utf8_lossy(&events.stdout).contains("ScheduledActionRan")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    assert_eq!(state["ScalableTargets"][0]["MinCapacity"], 1, "not undone");
    let calls: Value = serde_json::from_str(&http_get(&aws, "/_sim/calls").1).unwrap();
    assert_eq!(
        registers(&calls),
        registered,
        "the target was not written back"
    );

    // Without schedules: the actions go, and MinCapacity is the spec's again.
    let patch = kubectl(
        &kubeconfig,
        &[
            "patch",
            "aes",
            "sdxl",
            "-n",
            "ml",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/schedules"}]"#,
        ],
    );
    assert!(patch.status.success(), "{}", stderr_of(&patch));
    until(
        "ours to be deleted (the other tool's kept) and min put back",
        Duration::from_secs(30),
        || {
            let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
            let names: Vec<&str> = state["ScheduledActions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["ScheduledActionName"].as_str().unwrap())
                .collect();
            names == ["team-saturday"] && state["ScalableTargets"][0]["MinCapacity"] == 0
        },
    );
    until("status without schedules", Duration::from_secs(20), || {
        aes_json(&kubeconfig, "sdxl")["status"]["schedules"].is_null()
    });
    until(
        "status to list the other tool's action",
        Duration::from_secs(20),
        || {
            aes_json(&kubeconfig, "sdxl")["status"]["foreignScheduledActions"]
                == serde_json::json!(["team-saturday"])
        },
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// One controller, many accounts. Resources land in the account of their role (or of
/// --default-role-arn), each account with its own instance quota; the same endpoint name in two
/// accounts is two endpoints; a role STS refuses shows in that resource's status with STS's
/// words, holds up nothing else, and is retried with backoff until its trust policy is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_land_in_the_account_of_their_role_and_a_refused_role_holds_up_nothing() {
    const ROLE_A: &str = "arn:aws:iam::111111111111:role/asyncscale";
    const ROLE_B: &str = "arn:aws:iam::222222222222:role/asyncscale";
    const ROLE_C: &str = "arn:aws:iam::333333333333:role/asyncscale";
    let cluster = cluster("accounts").await;
    let kubeconfig = cluster.admin.clone();
    let aws = cluster.aws.clone();
    for (account, quota) in [
        ("111111111111", 3),
        ("222222222222", 7),
        ("333333333333", 2),
    ] {
        let quotas = serde_json::json!({"applied": {"ml.g4dn.xlarge": quota}}).to_string();
        let path = format!("/_sim/quotas?account={account}");
        assert_eq!(http(&aws, "POST", &path, &[], &quotas).0, 204);
        let endpoint = r#"{"endpoint": "shared-async", "instanceType": "ml.g4dn.xlarge"}"#;
        let path = format!("/_sim/endpoints?account={account}");
        assert_eq!(http(&aws, "POST", &path, &[], endpoint).0, 204);
    }
    // Roles A and B trust the controller (B with an external id); C does not, yet.
    for role in [
        serde_json::json!({"arn": ROLE_A}),
        serde_json::json!({"arn": ROLE_B, "externalId": "team-b"}),
    ] {
        assert_eq!(
            http(&aws, "POST", "/_sim/roles", &[], &role.to_string()).0,
            204
        );
    }
    let (_controller, metrics_addr) = cluster.controller(
        "asyncscale-accounts-0",
        &["--resync", "2s", "--default-role-arn", ROLE_A],
    );
    until(
        "the controller to be ready",
        Duration::from_secs(20),
        || TcpStream::connect(&metrics_addr).is_ok() && http_get(&metrics_addr, "/readyz").0 == 200,
    );
    let dir = std::env::temp_dir().join(format!("asyncscale-accounts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shared = |name: &str, extra: &str| {
        example(name, extra).replace(&format!("{name}-async"), "shared-async")
    };
    let manifests = [
        ("team-a", shared("team-a", "")),
        (
            "team-b",
            shared(
                "team-b",
                &format!(", roleArn: '{ROLE_B}', externalId: team-b"),
            ),
        ),
        (
            "team-c",
            shared("team-c", &format!(", roleArn: '{ROLE_C}'")),
        ),
    ];
    for (name, manifest) in &manifests {
        let apply = apply_text(&kubeconfig, &dir, &format!("{name}.yaml"), manifest);
        assert!(apply.status.success(), "{}", stderr_of(&apply));
    }
    for name in ["team-a", "team-b"] {
        let wait = kubectl(
            &kubeconfig,
            &[
                "wait",
                "--for=condition=Ready",
                &format!("aes/{name}"),
                "-n",
                "ml",
                "--timeout=30s",
            ],
        );
        assert!(wait.status.success(), "{name}: {}", stderr_of(&wait));
    }
    let target = |account: &str| -> Value {
        let state = http_get(&aws, &format!("/_sim/state?account={account}")).1;
        let state: Value = serde_json::from_str(&state).unwrap();
        state["ScalableTargets"][0].clone()
    };
    assert_eq!(
        target("111111111111")["MaxCapacity"],
        3,
        "the default role's account"
    );
    assert_eq!(
        target("222222222222")["MaxCapacity"],
        7,
        "spec.roleArn's account"
    );
    assert_eq!(
        target("123456789012"),
        Value::Null,
        "nothing in the controller's own"
    );

    // The refused role: its resource alone, in STS's words, with an Event.
    let condition = |name: &str, type_: &str| -> Value {
        let object = aes_json(&kubeconfig, name);
        object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == type_).cloned())
            .unwrap_or(Value::Null)
    };
    until(
        "team-c to say RoleNotAssumed",
        Duration::from_secs(30),
        || condition("team-c", "Ready")["reason"] == "RoleNotAssumed",
    );
    let synced = condition("team-c", "Synced");
    assert_eq!(synced["status"], "False");
    assert!(
        synced["message"].as_str().unwrap().contains(&format!(
            "could not assume the role {ROLE_C} with asyncscale's own credentials: AccessDenied: User: arn:aws:iam::123456789012:user/asyncscale-local is not authorized to perform: sts:AssumeRole on resource: {ROLE_C}"
        )),
        "{synced}"
    );
    let events = kubectl(&kubeconfig, &["events", "-n", "ml", "--for", "aes/team-c"]);
    assert!(
        String::from_utf8_lossy(&events.stdout).contains("RoleNotAssumed"),
        "{}",
        String::from_utf8_lossy(&events.stdout)
    );

    // Each account's quota in the metrics, by account.
    let metrics = http_get(&metrics_addr, "/metrics").1;
    for (account, quota) in [("111111111111", 3.0), ("222222222222", 7.0)] {
        let series = format!(
            "asyncscale_quota_instances{{account=\"{account}\",region=\"us-east-1\",instance_type=\"ml.g4dn.xlarge\"}}"
        );
        assert_eq!(
            metric_with_labels(&metrics, &series),
            Some(quota),
            "{metrics}"
        );
    }

    // The trust policy fixed: the next retry assumes the role, and team-c lands in its account.
    let role = serde_json::json!({"arn": ROLE_C}).to_string();
    assert_eq!(http(&aws, "POST", "/_sim/roles", &[], &role).0, 204);
    let wait = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "aes/team-c",
            "-n",
            "ml",
            "--timeout=60s",
        ],
    );
    assert!(wait.status.success(), "{}", stderr_of(&wait));
    assert_eq!(target("333333333333")["MaxCapacity"], 2);

    // Deleting cleans each account.
    let delete = kubectl(
        &kubeconfig,
        &["delete", "aes", "--all", "-n", "ml", "--timeout=60s"],
    );
    assert!(delete.status.success(), "{}", stderr_of(&delete));
    for account in ["111111111111", "222222222222", "333333333333"] {
        assert_eq!(target(account), Value::Null, "{account} cleaned");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each shared target's MaxCapacity in the local endpoint, by endpoint name.
fn shared_maxes(aws: &str) -> std::collections::BTreeMap<String, i64> {
    let state: Value = serde_json::from_str(&http_get(aws, "/_sim/state").1).unwrap();
    state["ScalableTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let id = t["ResourceId"].as_str().unwrap();
            (
                id.split('/').nth(1).unwrap().to_string(),
                t["MaxCapacity"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The controller holds a raise until AWS holds the lowering that pays for it. a and b share a
/// quota of 4 (maxCapacity 3 each: caps 2 and 2); b is lowered to 1 while its
/// RegisterScalableTarget is refused. Before, a went 2 → 3 at its next resync and AWS allowed
/// 3 + 2 = 5 for as long as the fault lasted, while b's status said 1. Now a stays at 2 and says
/// whose lowering it waits for, b's status says what AWS holds, the failed write is in the log at
/// warning level, and once the fault clears both settle with the quota never exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_waits_for_a_lowering_that_fails_and_status_says_what_aws_holds() {
    let cluster = cluster("raise-waits").await;
    let kubeconfig = cluster.admin.clone();
    let aws = cluster.aws.clone();
    for name in ["a-async", "b-async"] {
        crate::support::declare_endpoint(&aws, name, "ml.g4dn.xlarge");
    }
    let pod = "asyncscale-raise-0";
    let (_controller, metrics_addr) = cluster.controller(pod, &["--resync", "2s"]);
    until(
        "the controller to be ready",
        Duration::from_secs(20),
        || TcpStream::connect(&metrics_addr).is_ok() && http_get(&metrics_addr, "/readyz").0 == 200,
    );
    let dir = std::env::temp_dir().join(format!("asyncscale-raise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let two = |a: u32, b: u32| {
        format!(
            "{}---\n{}",
            example("a", "").replace("maxCapacity: 20", &format!("maxCapacity: {a}")),
            example("b", "").replace("maxCapacity: 20", &format!("maxCapacity: {b}"))
        )
    };
    let apply = apply_text(&kubeconfig, &dir, "ab.yaml", &two(3, 3));
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    until("caps 2 and 2", Duration::from_secs(30), || {
        shared_maxes(&aws) == [("a-async".to_string(), 2), ("b-async".to_string(), 2)].into()
    });
    // b's writes are refused from now on.
    let fault = serde_json::json!({
        "operation": "RegisterScalableTarget", "code": "ValidationException", "status": 400,
        "message": "refused (injected)", "count": 0,
        "inputHas": ["ResourceId", "endpoint/b-async/variant/AllTraffic"],
    });
    let (status, body) = http(&aws, "POST", "/_sim/faults", &[], &fault.to_string());
    assert_eq!(status, 204, "{body}");
    let apply = apply_text(&kubeconfig, &dir, "ab.yaml", &two(3, 1));
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    // Five resyncs' worth, sampled: a never goes past 2 while b holds 2.
    let sampled = Instant::now();
    while sampled.elapsed() < Duration::from_secs(10) {
        let maxes = shared_maxes(&aws);
        assert!(
            maxes.values().sum::<i64>() <= 4,
            "over the quota: {maxes:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(shared_maxes(&aws)["a-async"], 2);
    let a = aes_json(&kubeconfig, "a");
    let clamp = a["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "QuotaClamped")
        .unwrap()
        .clone();
    assert!(
        clamp["message"]
            .as_str()
            .unwrap()
            .contains("until AWS holds the lowering of endpoint/b-async/variant/AllTraffic"),
        "{clamp}"
    );
    assert_eq!(a["status"]["effectiveMaxCapacity"], 2, "{a}");
    let b = aes_json(&kubeconfig, "b");
    assert_eq!(
        b["status"]["effectiveMaxCapacity"], 2,
        "what AWS holds, not what failed to be written: {b}"
    );
    let logs = std::fs::read_to_string(controller_log(pod)).unwrap();
    assert!(
        logs.lines().any(|l| l.contains("\"WARN\"")
            && l.contains("AWS write failed")
            && l.contains("ml/b")),
        "{logs}"
    );
    // The fault clears: b is lowered, then a raised, never over the quota.
    let (status, _) = http(&aws, "DELETE", "/_sim/faults", &[], "");
    assert_eq!(status, 204);
    until("caps 3 and 1", Duration::from_secs(40), || {
        let maxes = shared_maxes(&aws);
        assert!(
            maxes.values().sum::<i64>() <= 4,
            "over the quota: {maxes:?}"
        );
        maxes == [("a-async".to_string(), 3), ("b-async".to_string(), 1)].into()
    });
}

/// A new endpoint's minCapacity waits for another endpoint's lowering, and that lowering is made
/// at once, not at the other's resync. a shares a quota of 4 alone (cap 4); b arrives asking for
/// minCapacity 1, which only fits once a's MaxCapacity in AWS comes down to its share. b's
/// reconcile holds (nothing is written for b while a still holds 4) and asks for a's reconcile;
/// a lowers, and b's recheck a few seconds later registers b. With a resync of five minutes,
/// b waited for a's resync before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_endpoints_minimum_has_the_lowering_it_waits_for_made_at_once() {
    let cluster = cluster("awaited").await;
    let kubeconfig = cluster.admin.clone();
    let aws = cluster.aws.clone();
    for name in ["a-async", "b-async"] {
        crate::support::declare_endpoint(&aws, name, "ml.g4dn.xlarge");
    }
    let pod = "asyncscale-awaited-0";
    let (_controller, metrics_addr) = cluster.controller(pod, &["--resync", "300s"]);
    until(
        "the controller to be ready",
        Duration::from_secs(20),
        || TcpStream::connect(&metrics_addr).is_ok() && http_get(&metrics_addr, "/readyz").0 == 200,
    );
    let dir = std::env::temp_dir().join(format!("asyncscale-awaited-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let a = example("a", "").replace("maxCapacity: 20", "maxCapacity: 4");
    let apply = apply_text(&kubeconfig, &dir, "a.yaml", &a);
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    until(
        "a alone takes the whole quota",
        Duration::from_secs(30),
        || shared_maxes(&aws) == [("a-async".to_string(), 4)].into(),
    );
    let b = example("b", ", minCapacity: 1").replace("maxCapacity: 20", "maxCapacity: 4");
    let apply = apply_text(&kubeconfig, &dir, "b.yaml", &b);
    assert!(apply.status.success(), "{}", stderr_of(&apply));
    let asked = Instant::now();
    until(
        "b registered beside a lowered a",
        Duration::from_secs(30),
        || {
            let maxes = shared_maxes(&aws);
            assert!(
                maxes.values().sum::<i64>() <= 4,
                "over the quota: {maxes:?}"
            );
            maxes.len() == 2 && maxes["a-async"] < 4 && maxes["b-async"] >= 1
        },
    );
    let waited = asked.elapsed();
    let ready = kubectl(
        &kubeconfig,
        &[
            "wait",
            "-n",
            "ml",
            "aes/b",
            "--for=condition=Ready",
            "--timeout=20s",
        ],
    );
    assert!(ready.status.success(), "{}", stderr_of(&ready));
    eprintln!("b registered {waited:?} after it was applied (resync 300 s)");
    let _ = std::fs::remove_dir_all(&dir);
}
