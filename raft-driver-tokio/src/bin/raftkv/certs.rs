//! `raftkv certs`: generates the cluster certificate authority and the node and client
//! certificates, or adds certificates to an existing directory.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use raft_driver_tokio::tls;

/// Arguments of `raftkv certs`.
#[derive(clap::Args, Debug)]
pub struct CertsArgs {
    /// Output directory (created if missing; a CA already in it is reused)
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Node ids, comma separated (e.g. 1,2,3)
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<u64>,
    /// Client certificate names, comma separated (lowercase letters, digits, '-')
    #[arg(long, value_delimiter = ',', default_value = "client")]
    pub clients: Vec<String>,
    /// Cluster name written into a newly generated CA certificate
    #[arg(long, default_value = "raftkv")]
    pub cluster_name: String,
}

/// Checks the arguments before anything is written.
fn validate(args: &CertsArgs) -> anyhow::Result<()> {
    if args.nodes.is_empty() {
        bail!("--nodes: give at least one node id");
    }
    let mut ids = BTreeSet::new();
    for &id in &args.nodes {
        if id == 0 {
            bail!("--nodes: node id 0 is invalid, node ids start at 1");
        }
        if !ids.insert(id) {
            bail!("--nodes: node id {id} is listed twice");
        }
    }
    let mut names = BTreeSet::new();
    for name in &args.clients {
        if name.is_empty() {
            bail!("--clients: empty client name (check for stray commas)");
        }
        tls::validate_client_name(name).context("--clients")?;
        if !names.insert(name.as_str()) {
            bail!("--clients: client name {name:?} is listed twice");
        }
    }
    tls::validate_cluster_name(&args.cluster_name).context("--cluster-name")?;
    Ok(())
}

/// Runs `raftkv certs`: validates the arguments, writes the certificate directory and
/// prints the files written.
pub fn run(args: &CertsArgs) -> anyhow::Result<()> {
    validate(args)?;
    let written =
        tls::write_cluster_certs(&args.out, &args.cluster_name, &args.nodes, &args.clients)
            .with_context(|| format!("writing certificates to {}", args.out.display()))?;
    let ca_cert = args.out.join(format!("{}.pem", tls::CA_FILE_STEM));
    if !written.contains(&ca_cert) {
        println!("reusing the CA in {}", ca_cert.display());
    }
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "hint: each node needs ca.pem and its node-<id>.pem/.key, each client ca.pem and its \
         <name>.pem/.key; keep ca.key private (it is only needed to issue more certificates)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser as _;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        certs: CertsArgs,
    }

    fn parse(argv: &[&str]) -> Result<CertsArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("certs").chain(argv.iter().copied()))
            .map(|cli| cli.certs)
    }

    #[test]
    fn defaults_and_lists() {
        let args = parse(&["--nodes", "1,2,3"]).unwrap();
        assert_eq!(args.nodes, [1, 2, 3]);
        assert_eq!(args.clients, ["client"]);
        assert_eq!(args.out, PathBuf::from("certs"));
        assert_eq!(args.cluster_name, "raftkv");
        assert!(parse(&[]).is_err(), "--nodes is required");
        assert!(parse(&["--nodes", "x"]).is_err());
    }

    #[test]
    fn bad_arguments_are_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let out_arg = out.to_str().unwrap();
        for (argv, expected) in [
            (vec!["--nodes", "0"], "node id 0"),
            (vec!["--nodes", "1,2,1"], "listed twice"),
            (vec!["--nodes", "1", "--clients", ""], "empty client name"),
            (
                vec!["--nodes", "1", "--clients", "a,,b"],
                "empty client name",
            ),
            (vec!["--nodes", "1", "--clients", "a,a"], "listed twice"),
            (vec!["--nodes", "1", "--clients", "Bad Name"], "client name"),
            (vec!["--nodes", "1", "--clients", "node-2"], "client name"),
            (vec!["--nodes", "1", "--cluster-name", ""], "cluster name"),
        ] {
            let mut argv = argv;
            argv.extend(["--out", out_arg]);
            let err = run(&parse(&argv).unwrap()).unwrap_err();
            assert!(format!("{err:#}").contains(expected), "{argv:?}: {err:#}");
        }
        assert!(!out.exists());
    }

    #[test]
    fn writes_and_extends_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("certs");
        let out_arg = out.to_str().unwrap();
        run(&parse(&["--nodes", "1,2", "--out", out_arg]).unwrap()).unwrap();
        for file in ["ca.pem", "ca.key", "node-1.pem", "node-2.key", "client.pem"] {
            assert!(out.join(file).exists(), "{file}");
        }
        let ca = std::fs::read(out.join("ca.pem")).unwrap();
        run(&parse(&["--nodes", "3", "--clients", "alice", "--out", out_arg]).unwrap()).unwrap();
        assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca);
        tls::Identity::load(&tls::TlsFiles::for_node(&out, 3)).unwrap();
        tls::Identity::load(&tls::TlsFiles::in_dir(&out, "alice")).unwrap();
    }
}
