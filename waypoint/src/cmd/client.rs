//! `waypoint client`: curl through an HBONE tunnel, for debugging a waypoint.

use super::CmdResult;
use crate::client::{Reply, Tunnel};
use crate::hbone::client::HboneClient;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct ClientArgs {
    /// The waypoint's HBONE address.
    #[arg(long, default_value = "127.0.0.1:15008")]
    pub hbone: SocketAddr,
    /// CONNECT target: the destination service VIP or workload, `ip:port`.
    #[arg(long)]
    pub authority: String,
    /// Client identity: cert-chain.pem, key.pem, root-cert.pem.
    #[arg(long, env = "WAYPOINT_CERT_DIR")]
    pub cert_dir: PathBuf,
    /// Request header `name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    pub method: String,
    /// Request body.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// Send this many requests over one tunnel and print a summary.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub count: usize,
    /// With -n: also count responses by this response header (e.g. x-pod).
    #[arg(long)]
    pub count_by: Option<String>,
    /// Print response headers.
    #[arg(short = 'i', long)]
    pub include: bool,
    /// `http://host[:port]/path`: the Host header and path sent inside the tunnel.
    pub url: String,
}

pub fn client(args: ClientArgs) -> CmdResult {
    let headers = args
        .headers
        .iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("header {h:?} is not `name: value`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let method: http::Method = args.method.parse()?;
    let certs = crate::identity::load_cert_dir(&args.cert_dir)?;
    let tls = crate::hbone::tls::client_config(&certs, None)?;
    let rt = super::runtime(Some(1))?;
    rt.block_on(async move {
        let hbone = HboneClient::connect(args.hbone, tls).await?;
        let mut tunnel = Tunnel::open(&hbone, &args.authority).await?;
        let body = Bytes::from(args.data.clone().unwrap_or_default());
        let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
        let mut by_header: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..args.count {
            let reply = tunnel
                .send(method.clone(), &args.url, &headers, body.clone())
                .await?;
            if args.count == 1 {
                print_reply(&reply, args.include);
            }
            *by_status.entry(reply.status.as_u16()).or_default() += 1;
            if let Some(name) = &args.count_by {
                let v = reply.header(name).unwrap_or("(none)").to_string();
                *by_header.entry(v).or_default() += 1;
            }
        }
        if args.count > 1 {
            println!(
                "{} requests over one tunnel to {}",
                args.count, args.authority
            );
            for (status, n) in by_status {
                println!("  status {status}: {n}");
            }
            for (value, n) in by_header {
                let pct = 100.0 * n as f64 / args.count as f64;
                println!(
                    "  {}={value}: {n} ({pct:.1}%)",
                    args.count_by.as_deref().unwrap_or("")
                );
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_reply(reply: &Reply, include: bool) {
    if include {
        println!("HTTP/1.1 {}", reply.status);
        for (k, v) in &reply.headers {
            println!("{k}: {}", v.to_str().unwrap_or("<binary>"));
        }
        println!();
    }
    print!("{}", reply.text());
}
