//! `asyncscale-controlplane --kubeconfig FILE`: starts a real kube-apiserver and etcd (built by
//! `make controlplane`), writes an administrator's kubeconfig to FILE, and runs until SIGTERM or
//! Ctrl-C, then stops both and removes everything it made. `make demo-cluster` uses it.
//!
//! It also takes commands on standard input, one per line, for tests of outages (the soak):
//! `restart etcd SECONDS` kills etcd and starts it again on the same data after that long;
//! `restart apiserver SECONDS` does the same for kube-apiserver. Each answers on standard error
//! with `etcd down`/`etcd up` (or `apiserver …`) when it happens.

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
    let mut plane = asyncscale_controlplane::ControlPlane::start("demo");
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
    let (tx, mut commands) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Standard input is read on a thread of its own: tokio's stdin would keep the runtime alive.
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            Some(line) = commands.recv() => command(&mut plane, &line),
        }
    }
    drop(plane);
    let _ = std::fs::remove_file(&kubeconfig);
    ExitCode::SUCCESS
}

/// One command from standard input (see the module's comment).
fn command(plane: &mut asyncscale_controlplane::ControlPlane, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let down = |text: &str| {
        text.parse::<f64>()
            .ok()
            .filter(|s| (0.0..=3600.0).contains(s))
    };
    match words.as_slice() {
        ["restart", which @ ("etcd" | "apiserver"), seconds] if down(seconds).is_some() => {
            let down = std::time::Duration::from_secs_f64(down(seconds).unwrap_or_default());
            eprintln!("{which} down");
            if *which == "etcd" {
                plane.restart_etcd(down);
            } else {
                plane.restart_apiserver(down);
            }
            eprintln!("{which} up");
        }
        [] => {}
        _ => eprintln!(
            "error: unknown command {line:?}: expected `restart etcd SECONDS` or `restart apiserver SECONDS`"
        ),
    }
}
