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
        dir: PathBuf,
        /// Name this URL as the CRL distribution point of the employer certificates
        /// (where `ivan serve` then fetches the CA's CRL from).
        #[arg(long, value_name = "URL")]
        crl_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Write TLS test material for the authority link into DIR: a CA, a server
    /// certificate for localhost/127.0.0.1, a client certificate, and a second CA's
    /// server and client certificates (for "wrong certificate" tests).
    Tls { dir: PathBuf },
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
        input: PathBuf,
    },
}

pub fn dev(cmd: DevCommand) -> Result<ExitCode> {
    match cmd {
        DevCommand::Keys { dir, crl_url, json } => {
            let pki = crate::dev::make_keys(&dir, chrono::Utc::now(), crl_url.as_deref())
                .map_err(|e| Error::Invalid(e.to_string()))?;
            if json {
                println!("{}", to_json(&pki));
            } else {
                println!("test PKI written to {}:", dir.display());
                println!("{pki:#?}");
                eprintln!("These keys are for testing only.");
            }
        }
        DevCommand::Tls { dir } => {
            for path in crate::sandbox::write_dev_tls(&dir)? {
                println!("{}", path.display());
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
            print!("{signed}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
