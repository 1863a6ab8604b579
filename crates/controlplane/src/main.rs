//! `asyncscale-controlplane --kubeconfig FILE`: starts a real kube-apiserver and etcd (built by
//! `make controlplane`), writes an administrator's kubeconfig to FILE, and runs until SIGTERM or
//! Ctrl-C, then stops both and removes everything it made. `make demo-cluster` uses it.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let kubeconfig = match args.as_slice() {
        [_, flag, path] if flag == "--kubeconfig" => path.clone(),
        _ => {
            eprintln!("usage: asyncscale-controlplane --kubeconfig FILE");
            return ExitCode::from(2);
        }
    };
    let plane = asyncscale_controlplane::ControlPlane::start("demo");
    if let Err(e) = std::fs::copy(&plane.admin, &kubeconfig) {
        eprintln!("error: cannot write {kubeconfig}: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "control plane ready at {}: kubeconfig {kubeconfig}",
        plane.server
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    drop(plane);
    let _ = std::fs::remove_file(&kubeconfig);
    ExitCode::SUCCESS
}
