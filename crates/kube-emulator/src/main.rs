//! `kube-emulator --listen 127.0.0.1:PORT --crd crds/x.yaml --kubeconfig out.yaml`: serves the
//! Kubernetes API emulator until killed and writes a kubeconfig that points at it.

use std::net::SocketAddr;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let listen: SocketAddr = value("--listen")
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()
        .expect("--listen ADDRESS:PORT");
    let mut crds = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--crd" {
            let path = args.get(i + 1).expect("--crd FILE");
            let yaml = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            crds.extend(
                asyncscale_kube_emulator::crds_from_yaml(&yaml)
                    .unwrap_or_else(|e| panic!("{path}: {e}")),
            );
        }
    }
    let emulator = asyncscale_kube_emulator::start(listen, &crds)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(path) = value("--kubeconfig") {
        std::fs::write(&path, emulator.kubeconfig()).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    eprintln!("kube emulator listening on {}", emulator.url());
    emulator.wait().await;
}
