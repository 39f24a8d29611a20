//! The client CA that signs client certificates for joins that send a CSR. Both files
//! unset: the feature is off and a join with a CSR is answered 501.

use std::path::PathBuf;

use clap::Args;

use crate::client_ca::ClientCa;
use crate::error::Error;

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client certificates")]
pub struct ClientCertificatesConfig {
    /// Client CA certificate (PEM) that signs client certificates for joins sending a
    /// `csr` (`session-manager certs` writes client-ca.pem). Unset: no client certificates.
    #[arg(long, env = "ISM_CLIENT_CA_CERT_FILE")]
    pub client_ca_cert_file: Option<PathBuf>,

    /// The client CA's private key (PEM; client-ca.key). Never the token signing key.
    #[arg(long, env = "ISM_CLIENT_CA_KEY_FILE")]
    pub client_ca_key_file: Option<PathBuf>,
}

impl ClientCertificatesConfig {
    /// The configured client CA, `None` when both settings are unset; one without the
    /// other is a configuration error.
    pub fn load(&self) -> Result<Option<ClientCa>, Error> {
        match (&self.client_ca_cert_file, &self.client_ca_key_file) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ClientCa::load(cert, key).map(Some),
            _ => Err(Error::Config(
                "ISM_CLIENT_CA_CERT_FILE and ISM_CLIENT_CA_KEY_FILE go together: set both or neither"
                    .to_owned(),
            )),
        }
    }
}
