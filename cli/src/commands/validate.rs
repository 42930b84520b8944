//! `relay validate`: load a config as the functions do; every problem with file:line.

use super::{emit, load};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    config: PathBuf,
}

pub fn run(Args { config }: Args) -> Result<(), String> {
    let c = load(&config)?;
    emit(&format!(
        "{}: valid ({} endpoints, {} connections, {} rules)\n",
        config.display(),
        c.endpoints.len(),
        c.connections.len(),
        c.rules.len()
    ))
}
