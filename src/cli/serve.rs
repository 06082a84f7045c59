//! `cellnets serve`: the study's page in a browser, live while it trains.

use super::options::{ClaimTimeout, OutDir};
use crate::serve;
use crate::study::manifest;
use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServeArgs {
    /// The manifest whose study to show.
    #[arg(default_value = "experiments.yaml")]
    manifest: PathBuf,
    #[command(flatten)]
    out: OutDir,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 8022)]
    port: u16,
    /// Address to listen on. Any but a loopback address (127.0.0.1, ::1) gets a random
    /// access token, printed in the URL, that every request must carry.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    #[command(flatten)]
    claims: ClaimTimeout,
}

pub fn run(args: ServeArgs) -> Result<()> {
    let manifest = manifest::load(&args.manifest)?;
    let settings = serve::ServeSettings {
        out_dir: args.out.of(&manifest),
        bind: args.bind,
        port: args.port,
        claim_timeout: args.claims.duration(),
    };
    let server = serve::Server::bind(manifest, &args.manifest, &settings)?;
    let url = server.url()?;
    println!("serving {} at {url}", args.manifest.display());
    if args.bind.is_unspecified() {
        println!(
            "(on every address of this machine: put its name or address in place of the host)"
        );
    }
    println!(
        "read-only: it never writes under {}; Ctrl-C stops it",
        settings.out_dir.display()
    );
    std::io::stdout().flush()?;
    server.run()
}
