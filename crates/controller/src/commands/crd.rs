//! `asyncscale crd`: the CustomResourceDefinition, as committed in `crds/`.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    print!("{}", asyncscale_api::crd_yaml());
    ExitCode::SUCCESS
}
