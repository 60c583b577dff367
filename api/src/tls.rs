//! TLS for gateway connections: rustls with the ring provider, TLS 1.3 and
//! 1.2, set up from PEM files.
//!
//! TLS only protects the bytes in transit (and, with client certificates,
//! says which machine connected); the HMAC handshake inside it still decides
//! which gateway this is. Server side: [`server_acceptor`] from the `[tls]`
//! section of the config. Client side: [`ClientTls`] in
//! `client::ClientConfig`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TlsSection;

/// rustls's ring provider. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange; its default, aws-lc-rs, builds a second C
/// library (cmake, minutes on this machine). Classical X25519/ECDHE key
/// exchange with TLS 1.3 is what gateways use today.
#[allow(deprecated)]
fn provider() -> CryptoProvider {
    tokio_rustls::rustls::crypto::ring::default_provider()
}

/// Why TLS could not be set up; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| TlsError(format!("cannot read {}: {error}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            TlsError(format!(
                "{} is not PEM certificates: {error}",
                path.display()
            ))
        })?;
    if certificates.is_empty() {
        return Err(TlsError(format!("{} holds no certificate", path.display())));
    }
    Ok(certificates)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|error| TlsError(format!("no private key in {}: {error}", path.display())))
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(path)? {
        roots.add(certificate).map_err(|error| {
            TlsError(format!(
                "{}: not a usable CA certificate: {error}",
                path.display()
            ))
        })?;
    }
    Ok(roots)
}

/// The acceptor for `section`, or None when TLS is off.
pub fn server_acceptor(section: &TlsSection) -> Result<Option<TlsAcceptor>, TlsError> {
    if !section.enabled {
        return Ok(None);
    }
    let (Some(certificate), Some(key)) = (&section.certificate, &section.private_key) else {
        return Err(TlsError(
            "tls.enabled needs tls.certificate and tls.private_key".to_owned(),
        ));
    };
    let provider = Arc::new(provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError(error.to_string()))?;
    let builder = match &section.client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(client_ca)?), provider)
                    .build()
                    .map_err(|error| {
                        TlsError(format!("client CA {}: {error}", client_ca.display()))
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certificates(certificate)?, private_key(key)?)
        .map_err(|error| {
            TlsError(format!(
                "{} and {} do not make a usable certificate: {error}",
                certificate.display(),
                key.display()
            ))
        })?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// How a client reaches a server over TLS: the CA that signed the server's
/// certificate, the name to check it against, and optionally a client
/// certificate.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates in `server_ca` (PEM) for a server
    /// certificate valid for `server_name` (a DNS name or an IP address);
    /// presents `client` (certificate chain PEM, private key PEM) if given.
    pub fn new(
        server_ca: &Path,
        server_name: &str,
        client: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let builder = ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError(error.to_string()))?
            .with_root_certificates(roots(server_ca)?);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((certificate, key)) => builder
                .with_client_auth_cert(certificates(certificate)?, private_key(key)?)
                .map_err(|error| TlsError(format!("client certificate: {error}")))?,
        };
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|error| TlsError(format!("server name '{server_name}': {error}")))?;
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    pub(crate) fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }
}
