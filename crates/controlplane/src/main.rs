//! `asyncscale-controlplane --kubeconfig FILE`: starts a real kube-apiserver and etcd (built by
//! `make controlplane`), writes an administrator's kubeconfig to FILE, and runs until SIGTERM or
//! Ctrl-C, then stops both and removes everything it made. `make demo-cluster` uses it.
//!
//! It also takes commands on standard input, one per line, for tests of outages (the soak):
//! `restart etcd SECONDS` kills etcd and starts it again on the same data after that long;
//! `restart apiserver SECONDS` does the same for kube-apiserver. Each answers on standard error
//! with `etcd down`/`etcd up` (or `apiserver …`) when it happens.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use tokio::signal::unix::{Signal, SignalKind, signal};

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
    // Streams, not one-off futures: a signal that comes while a command runs waits in them.
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
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
            _ = interrupt.recv() => break,
            _ = term.recv() => break,
            Some(line) = commands.recv() => {
                if command(&mut plane, &line, &mut term, &mut interrupt).await == Next::Stop {
                    break;
                }
            }
        }
    }
    drop(plane);
    let _ = std::fs::remove_file(&kubeconfig);
    ExitCode::SUCCESS
}

#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    /// A signal came during a command: stop (the plane is dropped, which kills what runs).
    Stop,
}

/// One command from standard input (see the module's comment). The downtime of a restart is
/// waited out here, answering SIGTERM and Ctrl-C meanwhile: a test harness stopping during a
/// long outage must not have to kill this process, which would leave etcd, kube-apiserver and
/// the directory behind. (Starting again is not interruptible: up to 90 s for kube-apiserver.)
async fn command(
    plane: &mut asyncscale_controlplane::ControlPlane,
    line: &str,
    term: &mut Signal,
    interrupt: &mut Signal,
) -> Next {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["restart", which @ ("etcd" | "apiserver"), seconds] => {
            let Some(down) = seconds
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=3600.0).contains(s))
            else {
                eprintln!(
                    "error: {line:?}: SECONDS is how long {which} stays down, a number from 0 to 3600 (e.g. `restart {which} 10`)"
                );
                return Next::Continue;
            };
            eprintln!("{which} down");
            if *which == "etcd" {
                plane.kill_etcd();
            } else {
                plane.kill_apiserver();
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs_f64(down)) => {}
                _ = interrupt.recv() => return Next::Stop,
                _ = term.recv() => return Next::Stop,
            }
            if *which == "etcd" {
                plane.start_etcd();
            } else {
                plane.start_apiserver();
            }
            eprintln!("{which} up");
        }
        [] => {}
        _ => eprintln!(
            "error: unknown command {line:?}: expected `restart etcd SECONDS` or `restart apiserver SECONDS`"
        ),
    }
    Next::Continue
}
