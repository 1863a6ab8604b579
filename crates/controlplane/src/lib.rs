//! A real Kubernetes control plane for the tests, as controller-runtime's envtest starts one:
//! etcd and kube-apiserver built from their Go modules (`make controlplane`), on random loopback
//! ports, with a client CA, a serving certificate and a service-account signing key of our own,
//! RBAC authorization, and no controller-manager. Dropping it stops both processes and removes
//! every file it made, also when a test fails.
//!
//! Network rule: everything listens on 127.0.0.1; the addresses kube-apiserver insists on
//! (`--advertise-address`, the service range) are documentation ranges nothing connects to.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A child process, killed when dropped (also when a test panics).
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where `make controlplane` puts kube-apiserver, etcd, helm and luahealth.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("ASYNCSCALE_CONTROLPLANE_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/controlplane/bin"),
        PathBuf::from,
    )
}

pub fn tool(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `make controlplane` (builds kube-apiserver, etcd, helm and luahealth from source)",
        path.display()
    );
    path
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ControlPlane {
    pub dir: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// A kubeconfig for an administrator (group `system:masters`).
    pub admin: PathBuf,
    // Dropped (killed) before `dir` is removed: the API server first, then etcd.
    apiserver: Process,
    etcd: Process,
    etcd_args: Vec<String>,
    etcd_client: String,
    apiserver_args: Vec<String>,
}

/// Starts etcd (its log appended to, so that restarts keep what came before) and waits for it.
fn spawn_etcd(dir: &Path, args: &[String], client: &str) -> Process {
    let etcd = Process(
        Command::new(tool("etcd"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(append(&dir.join("etcd.log")))
            .spawn()
            .expect("start etcd"),
    );
    until("etcd", Duration::from_secs(30), || {
        try_http(client, "GET", "/health")
            .is_some_and(|(status, body)| status == 200 && body.contains("true"))
    });
    etcd
}

fn spawn_apiserver(dir: &Path, args: &[String]) -> Process {
    Process(
        Command::new(tool("kube-apiserver"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(append(&dir.join("apiserver.log")))
            .spawn()
            .expect("start kube-apiserver"),
    )
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

impl ControlPlane {
    pub fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "asyncscale-controlplane-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs")).unwrap();

        // One CA signs the serving certificate and the client certificates.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.distinguished_name = name("asyncscale-test-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        write(&dir.join("ca.crt"), &ca_cert.pem());
        let issuer = Issuer::new(ca, &ca_key);

        let serving_key = KeyPair::generate().unwrap();
        let mut serving = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        serving
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        serving.distinguished_name = name("kube-apiserver", None);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer).unwrap();
        write(&dir.join("serving.crt"), &serving_cert.pem());
        write(&dir.join("serving.key"), &serving_key.serialize_pem());

        // Users are client certificates: CN is the user, O the groups.
        let admin_key = KeyPair::generate().unwrap();
        let mut admin = CertificateParams::default();
        admin.distinguished_name = name("admin", Some("system:masters"));
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer).unwrap();
        write(&dir.join("admin.crt"), &admin_cert.pem());
        write(&dir.join("admin.key"), &admin_key.serialize_pem());

        // The key the API server signs service-account tokens with (`kubectl create token`).
        let sa_key = KeyPair::generate().unwrap();
        write(&dir.join("sa.key"), &sa_key.serialize_pem());
        write(&dir.join("sa.pub"), &sa_key.public_key_pem());

        let (client, peer) = (free_port(), free_port());
        let etcd_args: Vec<String> = vec![
            "--name=test".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=test=http://127.0.0.1:{peer}"),
            "--unsafe-no-fsync=true".into(),
            "--log-level=warn".into(),
        ];
        let etcd_client = format!("127.0.0.1:{client}");
        let etcd = spawn_etcd(&dir, &etcd_args, &etcd_client);

        let secure = free_port();
        let server = format!("https://127.0.0.1:{secure}");
        let path = |f: &str| dir.join(f).display().to_string();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers=http://127.0.0.1:{client}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={secure}"),
            // Required, never connected to: documentation ranges (RFC 5737).
            "--advertise-address=192.0.2.10".into(),
            "--service-cluster-ip-range=198.51.100.0/24".into(),
            format!("--cert-dir={}", path("certs")),
            format!("--tls-cert-file={}", path("serving.crt")),
            format!("--tls-private-key-file={}", path("serving.key")),
            format!("--client-ca-file={}", path("ca.crt")),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--authorization-mode=RBAC".into(),
            // No controller-manager creates default service accounts.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--allow-privileged=true".into(),
            "--v=1".into(),
        ];
        let apiserver = spawn_apiserver(&dir, &apiserver_args);
        let admin = dir.join("admin.kubeconfig");
        write(
            &admin,
            &kubeconfig(
                &server,
                &path("ca.crt"),
                &format!(
                    "client-certificate: {}\n    client-key: {}",
                    path("admin.crt"),
                    path("admin.key")
                ),
            ),
        );
        let plane = ControlPlane {
            dir,
            server,
            admin,
            apiserver,
            etcd,
            etcd_args,
            etcd_client,
            apiserver_args,
        };
        plane.wait_ready();
        until("the default namespace", Duration::from_secs(30), || {
            plane
                .kubectl(&["get", "namespace", "default"])
                .status
                .success()
        });
        plane
    }

    fn wait_ready(&self) {
        until("kube-apiserver /readyz", Duration::from_secs(90), || {
            self.kubectl(&["get", "--raw", "/readyz"]).status.success()
        });
    }

    /// Kills etcd (SIGKILL), keeps it down for `down`, and starts it again on the same data
    /// directory and ports, as a crashed etcd member comes back. Returns once it is healthy.
    pub fn restart_etcd(&mut self, down: Duration) {
        self.kill_etcd();
        std::thread::sleep(down);
        self.start_etcd();
    }

    /// Kills kube-apiserver (SIGKILL), keeps it down for `down`, and starts it again on the same
    /// port. Returns once it is ready.
    pub fn restart_apiserver(&mut self, down: Duration) {
        self.kill_apiserver();
        std::thread::sleep(down);
        self.start_apiserver();
    }

    /// The first half of [`Self::restart_etcd`], for a caller that waits out the downtime
    /// itself (and may stop meanwhile: dropping the plane then is fine).
    pub fn kill_etcd(&mut self) {
        let _ = self.etcd.0.kill();
        let _ = self.etcd.0.wait();
    }

    /// The second half of [`Self::restart_etcd`]: etcd again, on the same data; once healthy.
    pub fn start_etcd(&mut self) {
        self.etcd = spawn_etcd(&self.dir, &self.etcd_args, &self.etcd_client);
    }

    /// The first half of [`Self::restart_apiserver`].
    pub fn kill_apiserver(&mut self) {
        let _ = self.apiserver.0.kill();
        let _ = self.apiserver.0.wait();
    }

    /// The second half of [`Self::restart_apiserver`]: kube-apiserver again; once ready.
    pub fn start_apiserver(&mut self) {
        self.apiserver = spawn_apiserver(&self.dir, &self.apiserver_args);
        self.wait_ready();
    }

    /// `kubectl` as the administrator.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_as(&self.admin, args)
    }

    /// A kubeconfig that authenticates with a bearer token (a service account's).
    pub fn kubeconfig_with_token(&self, file: &str, token: &str) -> PathBuf {
        let path = self.dir.join(file);
        write(
            &path,
            &kubeconfig(
                &self.server,
                &self.dir.join("ca.crt").display().to_string(),
                &format!("token: {token}"),
            ),
        );
        path
    }

    /// The same server through another address (a proxy in front of it, say).
    pub fn kubeconfig_via(&self, file: &str, from: &Path, address: &str) -> PathBuf {
        let text = std::fs::read_to_string(from).unwrap();
        let path = self.dir.join(file);
        let port = self.server.rsplit(':').next().unwrap();
        write(
            &path,
            &text.replace(
                &format!("https://127.0.0.1:{port}"),
                &format!("https://{address}"),
            ),
        );
        path
    }
}

fn kubeconfig(server: &str, ca: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: default\ncurrent-context: test\nusers:\n- name: user\n  user:\n    {user}\n"
    )
}

pub fn kubectl_as(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl ships with the machine image")
}

/// One HTTP/1.1 request, or None when nothing answers yet.
fn try_http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.get(9..12)?.parse().ok()?;
    Some((
        status,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    ))
}
