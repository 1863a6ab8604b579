//! What the end-to-end tests share: the binary, child processes that die with the test, the
//! local AWS endpoint as a process, and a plain HTTP/1.1 client for its admin routes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_asyncscale");

pub(crate) use asyncscale_controlplane::Process;

/// The SageMaker endpoints every test's account has (asynchronous, variant AllTraffic): the names
/// the tests' manifests use.
pub(crate) const ENDPOINTS: &[&str] = &[
    "sdxl-async=ml.g4dn.xlarge",
    "fine=ml.g4dn.xlarge",
    "kept-async=ml.g4dn.xlarge",
    "orphan-async=ml.g4dn.xlarge",
    "other-async=ml.g4dn.xlarge",
    "g5-async=ml.g5.xlarge",
];

/// `asyncscale sim serve` on a free loopback port, with [`ENDPOINTS`]; returns it and its
/// address (host:port).
pub(crate) fn start_sim(quotas: &[&str]) -> (Process, String) {
    start_sim_with(quotas, ENDPOINTS)
}

/// `asyncscale sim serve` with these endpoints (`NAME=INSTANCE_TYPE`).
pub(crate) fn start_sim_with(quotas: &[&str], endpoints: &[&str]) -> (Process, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["sim", "serve", "--listen", "127.0.0.1:0"]);
    for e in endpoints {
        cmd.args(["--endpoint", e]);
    }
    for q in quotas {
        cmd.args(["--quota", q]);
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start sim serve");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .rsplit("http://")
        .next()
        .expect("the listening line")
        .to_string();
    (Process(child), addr)
}

/// Declares one more asynchronous endpoint (variant AllTraffic, no instances) in a running
/// `sim serve`.
pub(crate) fn declare_endpoint(addr: &str, name: &str, instance_type: &str) {
    let body = format!(r#"{{"endpoint": "{name}", "instanceType": "{instance_type}"}}"#);
    let (status, answer) = http(addr, "POST", "/_sim/endpoints", &[], &body);
    assert!(
        status == 204 || answer.contains("already declared"),
        "{status} {answer}"
    );
}

/// One HTTP/1.1 request; returns the status code and the body.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (
        status,
        response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

/// The `asyncscale` binary with `args`, against the local AWS endpoint at `url` in us-east-1, with
/// fixed credentials and nothing of the machine's AWS configuration.
pub(crate) fn cli_against(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .args(["--aws-endpoint", url, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "AKIDTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // The bulk runs' endpoint cache, out of the user's own (one per test process; each local
        // endpoint's file is its own).
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join(format!("asyncscale-test-cache-{}", std::process::id())),
        )
        .output()
        .unwrap()
}
