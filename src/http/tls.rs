//! The `tls_server_config` section of a web config, turned into a rustls server
//! configuration (with rustls' default aws-lc-rs provider).
//!
//! Keys and values follow the Prometheus exporter-toolkit, so existing files work. What
//! rustls cannot do, or what would weaken the exporter, is refused with a message naming
//! the key instead of being ignored:
//! - `min_version`/`max_version` `TLS10` and `TLS11` (rustls speaks TLS 1.2 and 1.3 only);
//! - `client_auth_type` `RequestClientCert` and `RequireAnyClientCert` (a client certificate
//!   that is not verified proves nothing);
//! - cipher suites and curves rustls does not implement (CBC and RSA key exchange suites,
//!   `CurveP521`).
//!
//! TLS 1.3 suites cannot be chosen (as in Go): naming one in `cipher_suites` is accepted and
//! changes nothing.
//!
//! Client certificates are verified as Go verifies them for exporter-toolkit:
//! - against `client_ca_file` (or `client_ca`) when given, else against the system's roots
//!   (a warning says so for `RequireAndVerifyClientCert`: any publicly trusted certificate
//!   is then admitted);
//! - a certificate listed in `client_ca_file` itself is admitted while it is valid, even a
//!   self-signed CA certificate (what `openssl req -x509` makes): such a file pins its
//!   clients, and webpki alone would refuse them as "CA used as end entity";
//! - with `client_allowed_sans`, only certificates with one of those subject alternative
//!   names (DNS, e-mail, IP or URI) are admitted;
//! - a configuration that can admit no client certificate at all (every client CA expired,
//!   or no system roots) is refused when certificates are required, and warned about when
//!   they are optional.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use tokio_rustls::rustls::client::danger::HandshakeSignatureValid;
use tokio_rustls::rustls::crypto::{
    CryptoProvider, SupportedKxGroup, WebPkiSupportedAlgorithms, aws_lc_rs,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::version::{TLS12, TLS13};
use tokio_rustls::rustls::{
    self, CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedCipherSuite, SupportedProtocolVersion,
};

use super::certificate;
use super::problems::Problems;
use crate::secret::Secret;

/// The section as written.
#[derive(Debug, Default, Deserialize)]
pub(super) struct TlsSection {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    /// The certificate chain inline, instead of `cert_file`.
    cert: Option<String>,
    /// The private key inline, instead of `key_file`.
    key: Option<Secret>,
    client_ca_file: Option<PathBuf>,
    /// The client CAs inline, instead of `client_ca_file`.
    client_ca: Option<String>,
    client_auth_type: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    prefer_server_cipher_suites: Option<bool>,
    /// Admit only client certificates with one of these subject alternative names.
    client_allowed_sans: Option<Vec<String>>,
}

/// Who must show a client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default).
    None,
    /// `VerifyClientCertIfGiven`: a client may show none; one it shows must verify.
    VerifiedIfGiven,
    /// `RequireAndVerifyClientCert`.
    Required,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// What a TLS configuration amounts to, for the log and `--config.check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsSummary {
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    pub client_auth: ClientAuth,
    /// Whether `client_allowed_sans` narrows the client certificates admitted.
    pub client_sans_restricted: bool,
}

impl std::fmt::Display for TlsSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let version = |version| match version {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        };
        if self.min_version == self.max_version {
            write!(f, "TLS {}", version(self.min_version))?;
        } else {
            write!(
                f,
                "TLS {} to {}",
                version(self.min_version),
                version(self.max_version)
            )?;
        }
        f.write_str(match self.client_auth {
            ClientAuth::None => ", no client certificates",
            ClientAuth::VerifiedIfGiven => ", client certificates verified when shown",
            ClientAuth::Required => ", client certificates required",
        })?;
        if self.client_sans_restricted {
            f.write_str(" (allowed SANs only)")?;
        }
        Ok(())
    }
}

const KEY: &str = "tls_server_config";

impl TlsSection {
    /// Treats settings given as empty strings as not given, as exporter-toolkit does
    /// (`cert_file: ""` is a missing certificate, not the web config's directory).
    pub(super) fn forget_empty_values(&mut self) {
        for path in [
            &mut self.cert_file,
            &mut self.key_file,
            &mut self.client_ca_file,
        ] {
            if path
                .as_ref()
                .is_some_and(|path| path.as_os_str().is_empty())
            {
                *path = None;
            }
        }
        for text in [
            &mut self.cert,
            &mut self.client_ca,
            &mut self.client_auth_type,
        ] {
            if text.as_ref().is_some_and(|text| text.is_empty()) {
                *text = None;
            }
        }
        if self.key.as_ref().is_some_and(|key| key.expose().is_empty()) {
            self.key = None;
        }
    }

    /// Whether the section asks for TLS at all (as exporter-toolkit decides it: any of the
    /// certificate, key, client CA or client auth settings).
    pub(super) fn is_enabled(&self) -> bool {
        self.cert_file.is_some()
            || self.key_file.is_some()
            || self.cert.is_some()
            || self.key.is_some()
            || self.client_ca_file.is_some()
            || self.client_ca.is_some()
            || self.client_auth_type.is_some()
    }

    /// Reads relative file names against the web config's directory (as Prometheus does).
    pub(super) fn resolve_paths(&mut self, base_dir: &Path) {
        for path in [
            &mut self.cert_file,
            &mut self.key_file,
            &mut self.client_ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
    }

    /// The files the section names, whose changes mean the configuration must be re-read.
    pub(super) fn files(&self) -> Vec<PathBuf> {
        [&self.cert_file, &self.key_file, &self.client_ca_file]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The rustls configuration, or `None` with the problems recorded. `http2` is
    /// `http_server_config.http2` (on unless set to false); `warnings` collects what is
    /// allowed but worth the operator's attention.
    pub(super) fn server_config(
        &self,
        http2: bool,
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> Option<(Arc<ServerConfig>, TlsSummary)> {
        let before = problems.len();
        let min_version = self.version("min_version", &self.min_version, problems);
        let max_version = self.version("max_version", &self.max_version, problems);
        let min_version = min_version.unwrap_or(TlsVersion::Tls12);
        let max_version = max_version.unwrap_or(TlsVersion::Tls13);
        if min_version > max_version {
            problems.add(
                format!("{KEY}.min_version"),
                "is higher than max_version: no TLS version is left",
            );
        }
        let client_auth = self.client_auth(problems);
        let provider = self.provider(min_version, http2, problems);
        let chain = self.certificate_chain(problems);
        let key = self.private_key(problems);
        let client_trust = self.client_trust(client_auth, problems, warnings);
        if problems.len() > before {
            return None;
        }
        let (provider, chain, key) = (provider?, chain?, key?);

        let versions: Vec<&'static SupportedProtocolVersion> =
            [(TlsVersion::Tls12, &TLS12), (TlsVersion::Tls13, &TLS13)]
                .into_iter()
                .filter(|(version, _)| (min_version..=max_version).contains(version))
                .map(|(_, supported)| supported)
                .collect();
        let builder = match ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
        {
            Ok(builder) => builder,
            Err(err) => {
                problems.add(KEY, format!("rustls refuses these settings: {err}"));
                return None;
            }
        };
        // `client_trust` is `Some` exactly when client certificates are asked for.
        let builder = match client_trust {
            None => builder.with_no_client_auth(),
            Some(trust) => {
                let webpki = if trust.roots.is_empty() {
                    None
                } else {
                    let verifier = WebPkiClientVerifier::builder_with_provider(
                        Arc::new(trust.roots),
                        provider.clone(),
                    );
                    let verifier = if client_auth == ClientAuth::VerifiedIfGiven {
                        verifier.allow_unauthenticated()
                    } else {
                        verifier
                    };
                    match verifier.build() {
                        Ok(verifier) => Some(verifier),
                        Err(err) => {
                            problems.add(
                                self.client_ca_key(),
                                format!("cannot verify clients with these CAs: {err}"),
                            );
                            return None;
                        }
                    }
                };
                builder.with_client_cert_verifier(Arc::new(ClientVerifier {
                    webpki,
                    pinned: trust.pinned,
                    allowed_sans: self.client_allowed_sans.clone(),
                    mandatory: client_auth == ClientAuth::Required,
                    algorithms: provider.signature_verification_algorithms,
                }))
            }
        };
        let mut config = match builder.with_single_cert(chain, key) {
            Ok(config) => config,
            Err(rustls::Error::InconsistentKeys(_)) => {
                problems.add(
                    self.key_key(),
                    format!(
                        "does not belong to the certificate of {} (a certificate and its key must be replaced together)",
                        self.cert_key()
                    ),
                );
                return None;
            }
            Err(err) => {
                problems.add(
                    self.key_key(),
                    format!("cannot be used with the certificate: {err}"),
                );
                return None;
            }
        };
        // Exporter-toolkit's default; Go ignores the setting nowadays and so may clients.
        config.ignore_client_order = self.prefer_server_cipher_suites.unwrap_or(true);
        // The server speaks HTTP/1.1 only; saying so lets HTTP/2-capable clients settle at once.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Some((
            Arc::new(config),
            TlsSummary {
                min_version,
                max_version,
                client_auth,
                client_sans_restricted: self.client_allowed_sans.is_some()
                    && client_auth != ClientAuth::None,
            },
        ))
    }

    fn version(
        &self,
        name: &str,
        value: &Option<String>,
        problems: &mut Problems,
    ) -> Option<TlsVersion> {
        let value = value.as_deref()?;
        match value {
            "TLS12" => Some(TlsVersion::Tls12),
            "TLS13" => Some(TlsVersion::Tls13),
            "TLS10" | "TLS11" => {
                problems.add(
                    format!("{KEY}.{name}"),
                    format!("{value} is not supported: the exporter speaks TLS 1.2 and 1.3 only (TLS12, TLS13)"),
                );
                None
            }
            other => {
                problems.add(
                    format!("{KEY}.{name}"),
                    format!("unknown TLS version {other:?}; use TLS12 or TLS13"),
                );
                None
            }
        }
    }

    fn client_auth(&self, problems: &mut Problems) -> ClientAuth {
        let key = format!("{KEY}.client_auth_type");
        let client_auth = match self.client_auth_type.as_deref().unwrap_or("") {
            "" | "NoClientCert" => ClientAuth::None,
            "VerifyClientCertIfGiven" => ClientAuth::VerifiedIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::Required,
            unverified @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
                problems.add(
                    key,
                    format!(
                        "{unverified} is not supported: a client certificate that is not verified proves nothing; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file"
                    ),
                );
                return ClientAuth::None;
            }
            other => {
                problems.add(
                    key,
                    format!(
                        "unknown value {other:?}; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
                    ),
                );
                return ClientAuth::None;
            }
        };
        let has_ca = self.client_ca_file.is_some() || self.client_ca.is_some();
        if client_auth == ClientAuth::None && has_ca {
            problems.add(
                key,
                "client CAs are configured but client_auth_type does not ask for client certificates; set client_auth_type: RequireAndVerifyClientCert",
            );
        }
        if client_auth == ClientAuth::None && self.client_allowed_sans.is_some() {
            problems.add(
                format!("{KEY}.client_allowed_sans"),
                "has no effect while client_auth_type does not ask for client certificates; set client_auth_type: RequireAndVerifyClientCert",
            );
        }
        client_auth
    }

    /// aws-lc-rs with the chosen TLS 1.2 suites and key exchange groups.
    fn provider(
        &self,
        min_version: TlsVersion,
        http2: bool,
        problems: &mut Problems,
    ) -> Option<Arc<CryptoProvider>> {
        let mut provider = aws_lc_rs::default_provider();
        if let Some(names) = &self.cipher_suites {
            let mut chosen: Vec<SupportedCipherSuite> = provider
                .cipher_suites
                .iter()
                .filter(|suite| suite.tls13().is_some())
                .copied()
                .collect();
            let mut tls12_chosen = 0;
            for (index, name) in names.iter().enumerate() {
                if TLS13_SUITES.contains(&name.as_str()) {
                    continue;
                }
                let found = provider.cipher_suites.iter().find(|suite| {
                    suite.tls13().is_none() && suite_names(suite).contains(&name.as_str())
                });
                match found {
                    Some(suite) => {
                        chosen.push(*suite);
                        tls12_chosen += 1;
                    }
                    None => problems.add(
                        format!("{KEY}.cipher_suites[{index}]"),
                        format!(
                            "{name} is not offered by this exporter{}; TLS 1.2 suites on offer: {}",
                            if name.contains("_CBC_") {
                                ": rustls implements no CBC suite (the CBC suites are the ones padding-oracle attacks such as Lucky13 target)"
                            } else {
                                ""
                            },
                            offered_tls12_suites(&provider)
                        ),
                    ),
                }
            }
            if tls12_chosen == 0 && min_version == TlsVersion::Tls12 && !names.is_empty() {
                problems.add(
                    format!("{KEY}.cipher_suites"),
                    "names no TLS 1.2 suite, so TLS 1.2 clients could not connect; add one or set min_version: TLS13",
                );
            }
            // Go's HTTP/2 server refuses a TLS 1.2 suite list without the suite HTTP/2
            // requires, so exporter-toolkit refuses such a file while http2 is on (the
            // default). This server speaks HTTP/1.1 only, but the file must stay valid for
            // the other exporters it is shared with.
            let http2_suites = [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ];
            if http2
                && min_version == TlsVersion::Tls12
                && !names
                    .iter()
                    .any(|name| http2_suites.contains(&name.as_str()))
            {
                problems.add(
                    format!("{KEY}.cipher_suites"),
                    "is missing an HTTP/2-required suite (TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), which exporter-toolkit requires while http_server_config.http2 is on (the default); add one, or set http_server_config.http2: false",
                );
            }
            provider.cipher_suites = chosen;
        }
        if let Some(names) = &self.curve_preferences {
            let mut chosen: Vec<&'static dyn SupportedKxGroup> = Vec::new();
            for (index, name) in names.iter().enumerate() {
                let group: Option<&'static dyn SupportedKxGroup> = match name.as_str() {
                    "X25519" => Some(aws_lc_rs::kx_group::X25519),
                    "CurveP256" => Some(aws_lc_rs::kx_group::SECP256R1),
                    "CurveP384" => Some(aws_lc_rs::kx_group::SECP384R1),
                    "X25519MLKEM768" => Some(aws_lc_rs::kx_group::X25519MLKEM768),
                    _ => None,
                };
                match group {
                    Some(group) => chosen.push(group),
                    None => problems.add(
                        format!("{KEY}.curve_preferences[{index}]"),
                        format!(
                            "{name} is not offered by this exporter{}; use X25519, CurveP256, CurveP384 or X25519MLKEM768",
                            if name == "CurveP521" {
                                ": rustls implements no P-521 key exchange"
                            } else {
                                ""
                            }
                        ),
                    ),
                }
            }
            if !chosen.is_empty() {
                provider.kx_groups = chosen;
            }
        }
        Some(Arc::new(provider))
    }

    fn certificate_chain(&self, problems: &mut Problems) -> Option<Vec<CertificateDer<'static>>> {
        let key = self.cert_key();
        let (pem, source) = self.pem_source(
            "cert",
            &self.cert_file,
            self.cert.as_deref().map(str::as_bytes),
            problems,
        )?;
        let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match chain {
            Ok(chain) if !chain.is_empty() => Some(chain),
            Ok(_) => {
                problems.add(key, format!("{source} holds no PEM certificate"));
                None
            }
            Err(err) => {
                problems.add(key, format!("{source} is not valid PEM: {err}"));
                None
            }
        }
    }

    fn private_key(&self, problems: &mut Problems) -> Option<PrivateKeyDer<'static>> {
        let key = self.key_key();
        let (pem, source) = self.pem_source(
            "key",
            &self.key_file,
            self.key.as_ref().map(|key| key.expose().as_bytes()),
            problems,
        )?;
        // The parser's own message may quote the file; a key's content stays out of errors.
        match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(private_key) => Some(private_key),
            Err(_) => {
                problems.add(
                    key,
                    format!("{source} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"),
                );
                None
            }
        }
    }

    /// What client certificates are verified against, when they are asked for: the client
    /// CAs of the file (each also pinned: see the module documentation), else the system's
    /// roots. Refuses what could admit no client certificate when one is required.
    fn client_trust(
        &self,
        client_auth: ClientAuth,
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> Option<ClientTrust> {
        if client_auth == ClientAuth::None {
            // Refused already for lacking a client auth type; an unreadable file is named
            // too, so that one round of fixes is enough.
            if let Some(path) = &self.client_ca_file
                && let Err(err) = std::fs::read(path)
            {
                problems.add(
                    format!("{KEY}.client_ca_file"),
                    format!("cannot read {}: {err}", path.display()),
                );
            }
            return None;
        }
        if self.client_ca_file.is_none() && self.client_ca.is_none() {
            return Some(self.system_trust(client_auth, problems, warnings));
        }
        let key = self.client_ca_key();
        let (pem, source) = self.pem_source(
            "client_ca",
            &self.client_ca_file,
            self.client_ca.as_deref().map(str::as_bytes),
            problems,
        )?;
        let mut trust = ClientTrust {
            roots: RootCertStore::empty(),
            pinned: Vec::new(),
        };
        for certificate in CertificateDer::pem_slice_iter(&pem) {
            let certificate = match certificate {
                Ok(certificate) => certificate,
                Err(err) => {
                    problems.add(&key, format!("{source} is not valid PEM: {err}"));
                    return None;
                }
            };
            if let Err(err) = trust.roots.add(certificate.clone()) {
                problems.add(&key, format!("{source} holds an unusable CA: {err}"));
                return None;
            }
            trust.pinned.push(certificate);
        }
        if trust.pinned.is_empty() {
            problems.add(key, format!("{source} holds no PEM certificate"));
            return None;
        }
        let now = unix_now();
        let expired = trust
            .pinned
            .iter()
            .filter(|certificate| !certificate::valid_at(certificate, now))
            .count();
        if expired == trust.pinned.len() {
            let admits = "so no client certificate can be verified";
            if client_auth == ClientAuth::Required {
                problems.add(
                    key,
                    format!("every certificate in {source} has expired or is not yet valid, {admits}: no client could connect"),
                );
                return None;
            }
            warnings.push(format!(
                "{key}: every certificate in {source} has expired or is not yet valid, {admits}: clients that show one are refused"
            ));
        } else if expired > 0 {
            warnings.push(format!(
                "{key}: {expired} of the {} certificates in {source} have expired or are not yet valid",
                trust.pinned.len()
            ));
        }
        Some(trust)
    }

    /// The system's roots, as Go uses them when `client_ca_file` is not given.
    fn system_trust(
        &self,
        client_auth: ClientAuth,
        problems: &mut Problems,
        warnings: &mut Vec<String>,
    ) -> ClientTrust {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        let key = format!("{KEY}.client_ca_file");
        match (added, client_auth) {
            (0, ClientAuth::Required) => problems.add(
                key,
                "is not given and this system has no CA certificates to verify clients with, so no client could connect; give the CA that signs your clients' certificates",
            ),
            (0, _) => warnings.push(format!(
                "{key} is not given and this system has no CA certificates, so clients that show a certificate are refused; give the CA that signs your clients' certificates"
            )),
            (_, ClientAuth::Required) => warnings.push(format!(
                "{key} is not given, so client certificates are verified against this system's {added} public CAs: any client with a publicly trusted certificate is admitted; give the CA that signs your clients' certificates"
            )),
            _ => {}
        }
        ClientTrust {
            roots,
            pinned: Vec::new(),
        }
    }

    /// The PEM of a file setting (`{name}_file`) or its inline twin (`{name}`): exactly one
    /// of them must be given. Returns the PEM and how to name its source in a message.
    fn pem_source(
        &self,
        name: &str,
        file: &Option<PathBuf>,
        inline: Option<&[u8]>,
        problems: &mut Problems,
    ) -> Option<(Vec<u8>, String)> {
        match (file, inline) {
            (Some(_), Some(_)) => {
                problems.add(
                    format!("{KEY}.{name}"),
                    format!("give either {name}_file or {name}, not both"),
                );
                None
            }
            (Some(path), None) => match std::fs::read(path) {
                Ok(pem) => Some((pem, path.display().to_string())),
                Err(err) => {
                    problems.add(
                        format!("{KEY}.{name}_file"),
                        format!("cannot read {}: {err}", path.display()),
                    );
                    None
                }
            },
            (None, Some(pem)) => Some((pem.to_vec(), format!("{KEY}.{name}"))),
            (None, None) => {
                problems.add(
                    format!("{KEY}.{name}_file"),
                    format!(
                        "missing one of {name} or {name}_file: TLS is configured, so give the path of the PEM file as {name}_file or its PEM text as {name}"
                    ),
                );
                None
            }
        }
    }

    /// The key a problem with the certificate is reported under: the inline one when used.
    fn cert_key(&self) -> String {
        inline_or_file_key(self.cert.is_some(), "cert")
    }

    fn key_key(&self) -> String {
        inline_or_file_key(self.key.is_some(), "key")
    }

    fn client_ca_key(&self) -> String {
        inline_or_file_key(self.client_ca.is_some(), "client_ca")
    }
}

/// The certificates client certificates are verified against.
struct ClientTrust {
    roots: RootCertStore,
    /// Certificates admitted as they are, while valid (the file's own certificates).
    pinned: Vec<CertificateDer<'static>>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Verifies client certificates the way exporter-toolkit's Go server does (see the module
/// documentation): webpki first, then the pinned certificates, then the allowed SANs.
#[derive(Debug)]
struct ClientVerifier {
    /// `None` when there is no root to verify against: only pinned certificates pass.
    webpki: Option<Arc<dyn ClientCertVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    allowed_sans: Option<Vec<String>>,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki
            .as_ref()
            .map_or(&[], |webpki| webpki.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = match &self.webpki {
            Some(webpki) => webpki.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        };
        if let Err(err) = verified {
            let pinned = self.pinned.iter().any(|pinned| pinned == end_entity)
                && certificate::valid_at(end_entity, now.as_secs() as i64);
            if !pinned {
                return Err(err);
            }
        }
        if let Some(allowed) = &self.allowed_sans {
            let names = certificate::subject_alt_names(end_entity);
            if !names.iter().any(|name| allowed.contains(name)) {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn inline_or_file_key(inline: bool, name: &str) -> String {
    if inline {
        format!("{KEY}.{name}")
    } else {
        format!("{KEY}.{name}_file")
    }
}

/// Go's names of the TLS 1.3 suites, which are always on.
const TLS13_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// The names a TLS 1.2 suite goes by: its IANA name, and Go's short name for the ChaCha20
/// suites.
fn suite_names(suite: &SupportedCipherSuite) -> Vec<&'static str> {
    let Some(name) = suite.suite().as_str() else {
        return Vec::new();
    };
    let mut names = vec![name];
    if let Some(short) = name.strip_suffix("_SHA256")
        && short.ends_with("CHACHA20_POLY1305")
    {
        names.push(short);
    }
    names
}

fn offered_tls12_suites(provider: &CryptoProvider) -> String {
    provider
        .cipher_suites
        .iter()
        .filter(|suite| suite.tls13().is_none())
        .filter_map(|suite| suite.suite().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
