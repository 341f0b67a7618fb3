//! `ivan dev …`: a test PKI, TLS test material and a signer, for trying `ivan` locally.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::{read_file, to_json};
use crate::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write a test CA, employer certificates (valid, revoked, expired, from another CA) and a CRL into DIR.
    Keys {
        /// Directory to write the test PKI into (created if missing).
        dir: PathBuf,
        /// Name this URL as the CRL distribution point of the employer certificates
        /// (where `ivan serve` then fetches the CA's CRL from).
        #[arg(long, value_name = "URL")]
        crl_url: Option<String>,
        /// Print the result as JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write TLS test material for the authority link into DIR: a CA, a server
    /// certificate for localhost/127.0.0.1, a client certificate, and a second CA's
    /// server and client certificates (for "wrong certificate" tests).
    Tls {
        /// Directory to write the TLS test material into (created if missing).
        dir: PathBuf,
    },
    /// Sign IN.xml with an enveloped XML-DSig (the profile `ivan` accepts); the signed document goes to stdout.
    Sign {
        /// Private key, PKCS#8 PEM (EC P-256 or RSA).
        #[arg(long)]
        key: PathBuf,
        /// The certificate of that key, PEM or DER (embedded in KeyInfo).
        #[arg(long)]
        cert: PathBuf,
        /// CA certificates to send beside it (PEM, the signer's issuer first), for a
        /// signer under an intermediate CA.
        #[arg(long)]
        chain: Option<PathBuf>,
        /// The XML document to sign (IN.xml).
        input: PathBuf,
    },
}

pub fn dev(cmd: DevCommand) -> Result<ExitCode> {
    match cmd {
        DevCommand::Keys { dir, crl_url, json } => {
            let pki = crate::dev::make_keys(&dir, chrono::Utc::now(), crl_url.as_deref())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            if json {
                outln!("{}", to_json(&pki));
            } else {
                outln!("test PKI written to {}:", dir.display());
                super::print_fields(&[
                    ("CA certificate", &pki.ca_cert.display()),
                    ("CA key", &pki.ca_key.display()),
                    ("CRL", &pki.crl.display()),
                    ("employer certificate", &pki.employer_cert.display()),
                    ("employer key", &pki.employer_key.display()),
                    ("employer fingerprint", &pki.employer_fingerprint),
                    ("revoked certificate", &pki.revoked_cert.display()),
                    ("revoked key", &pki.revoked_key.display()),
                    ("expired certificate", &pki.expired_cert.display()),
                    ("expired key", &pki.expired_key.display()),
                    ("other CA certificate", &pki.other_ca_cert.display()),
                    ("stranger certificate", &pki.stranger_cert.display()),
                    ("stranger key", &pki.stranger_key.display()),
                ]);
                eprintln!("These keys are for testing only.");
            }
        }
        DevCommand::Tls { dir } => {
            for path in crate::sandbox::write_dev_tls(&dir)? {
                outln!("{}", path.display());
            }
            eprintln!("These certificates are for testing only.");
        }
        DevCommand::Sign {
            key,
            cert,
            chain,
            input,
        } => {
            let key = read_file(&key)?;
            let cert = crate::intake::trust::parse_certificate_pem_or_der(&read_file(&cert)?)
                .map_err(|e| Error::Invalid(e.to_string()))?;
            let xml = String::from_utf8(read_file(&input)?)
                .map_err(|_| Error::Invalid(format!("{} is not UTF-8", input.display())))?;
            let chain = match chain {
                Some(path) => pem::parse_many(read_file(&path)?)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?
                    .into_iter()
                    .map(|p| p.into_contents())
                    .collect(),
                None => Vec::new(),
            };
            let signed =
                crate::intake::signature::sign_enveloped_chain(&xml, &key, &cert.der, &chain)
                    .map_err(Error::Invalid)?;
            out!("{signed}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
