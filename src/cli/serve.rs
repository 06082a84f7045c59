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
    /// Address to listen on. On every address, loopback included, requests need the
    /// random token printed in the URL (opening it once keeps it in a cookie).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,
    /// A name the browser may use for this server besides localhost, IP addresses and
    /// this machine's name (a DNS alias, the name an SSH tunnel gives it). Repeatable.
    #[arg(long = "allow-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
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
        allowed_hosts: args.allowed_hosts,
    };
    let server = serve::Server::bind(manifest, &args.manifest, &settings)?;
    let url = server.url()?;
    // What it prints is for whoever started it; once printed, a closed stdout
    // (`serve | head -1`, a closed terminal) is no reason to stop serving.
    let mut lines = vec![format!("serving {} at {url}", args.manifest.display())];
    if args.bind.is_unspecified() {
        lines.push(
            "(on every address of this machine: put its name or address in place of the host)"
                .into(),
        );
    }
    lines.push(format!(
        "open that URL once: the browser keeps its token in a cookie. Read-only: it never \
         writes under {}; Ctrl-C stops it",
        settings.out_dir.display()
    ));
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
    drop(stdout);
    server.run()
}
