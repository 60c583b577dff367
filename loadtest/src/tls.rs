//! TLS for the harness's connections, with the server's own rustls stack
//! (`payrail_api::tls`): `--tls-ca` (and a client certificate if the server
//! asks for one) against a server at `--addr`; `--tls` on the embedded
//! server, which then serves TLS with a certificate made for the run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use payrail_api::client::ClientConfig;
use payrail_api::config::TlsSection;
use payrail_api::tls::ClientTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

use crate::options::Options;

/// `config` over TLS when the options ask for it against `addr`.
pub fn client(config: ClientConfig, options: &Options, addr: &str) -> anyhow::Result<ClientConfig> {
    let Some(ca) = &options.tls_ca else {
        return Ok(config);
    };
    // "host:port", "[v6]:port": the host part, without brackets.
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server_name = options.tls_server_name.as_deref().unwrap_or(host);
    let certificate = match (&options.tls_cert, &options.tls_key) {
        (Some(certificate), Some(key)) => Some((certificate.as_path(), key.as_path())),
        _ => None,
    };
    let tls = ClientTls::new(ca, server_name, certificate).context("--tls-ca")?;
    Ok(config.with_tls(tls))
}

/// The embedded server's TLS: a CA and a server certificate for 127.0.0.1,
/// made for the run and written into `dir`.
pub struct Embedded {
    pub section: TlsSection,
    pub server_ca: PathBuf,
}

/// The embedded server's CA certificate, in its data directory (generator
/// processes trust it from there).
pub const EMBEDDED_CA_FILE: &str = "tls-ca.pem";

pub fn embedded(dir: &Path) -> anyhow::Result<Embedded> {
    let mut authority = CertificateParams::new(Vec::<String>::new())?;
    authority.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    authority
        .distinguished_name
        .push(DnType::CommonName, "payrail-loadtest CA");
    let authority_key = KeyPair::generate()?;
    let authority = authority.self_signed(&authority_key)?;
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()])?;
    server
        .distinguished_name
        .push(DnType::CommonName, "payrail-loadtest server");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server.signed_by(&server_key, &authority, &authority_key)?;
    let server_ca = dir.join(EMBEDDED_CA_FILE);
    let certificate = dir.join("tls-server.pem");
    let private_key = dir.join("tls-server.key");
    for (path, text) in [
        (&server_ca, authority.pem()),
        (&certificate, server.pem()),
        (&private_key, server_key.serialize_pem()),
    ] {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Embedded {
        section: TlsSection {
            enabled: true,
            certificate: Some(certificate),
            private_key: Some(private_key),
            client_ca: None,
        },
        server_ca,
    })
}
