//! The product as a user meets it: the real `kubectl` and the real `asyncscale run` against a real
//! kube-apiserver and etcd (built from source, see `controlplane.rs`), the controller
//! authenticated as its ServiceAccount with exactly the RBAC of `deploy/`, and AWS behind
//! `asyncscale sim serve`. Apply a resource, wait for Ready, read `kubectl get aes`, check AWS,
//! Events, managed fields and metrics, delete, shut down; leader election and partitions.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::controlplane::{ControlPlane, kubectl_as};
use crate::support::{BIN, Process, http, start_sim};

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

fn kubectl(kubeconfig: &PathBuf, args: &[&str]) -> Output {
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
    assert!(plane.kubectl(&["create", "namespace", "ml"]).status.success());
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
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (Process(child), metrics_addr)
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
        &row[..7],
        ["sdxl", "sdxl-async", "0", "20", "4", "True", "Ready"],
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
    let state: Value = serde_json::from_str(&http_get(&aws, "/_sim/state").1).unwrap();
    assert_eq!(state["ScalableTargets"][0]["MaxCapacity"], 4);
    assert_eq!(
        state["ScalableTargets"][0]["Tags"]["asyncscale.io/owner"],
        "ml/sdxl"
    );

    let metrics = http_get(&metrics_addr, "/metrics").1;
    for line in [
        "asyncscale_managed_resources 1",
        "asyncscale_resources_clamped 1",
        "asyncscale_leader 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
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
    let mut logs = String::new();
    controller
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
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
        kubectl(
            &cluster.admin,
            &["apply", "-f", example.to_str().unwrap()]
        )
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
/// open connections drop, new ones are accepted and never answered (a partition, not a refusal).
struct Partition {
    addr: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn in_front_of(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pipes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = {
            let (cut, pipes) = (cut.clone(), pipes.clone());
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(std::sync::atomic::Ordering::SeqCst) {
                        held.push(client); // accepted, never answered
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
            _accept: accept,
        }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

fn max_capacity_in_aws(aws: &str) -> Option<i64> {
    let state: Value = serde_json::from_str(&http_get(aws, "/_sim/state").1).ok()?;
    state["ScalableTargets"][0]["MaxCapacity"].as_i64()
}

/// Issue 15, item 1: a leader cut off from the API server while AWS stays reachable must stop
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
    let cut_off_kubeconfig =
        cluster
            .plane
            .kubeconfig_via("partitioned.kubeconfig", &cluster.kubeconfig, &partition.addr);
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
    let apply = kubectl(
        &cluster.admin,
        &["apply", "-f", manifest.to_str().unwrap()],
    );
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
