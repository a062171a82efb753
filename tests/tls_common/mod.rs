//! Certificates made in the test (a CA, server and client certificates signed by it), web
//! config files written beside them, and HTTPS clients that trust only the test's CA.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert: String,
    pub key: String,
}

impl Issued {
    /// Certificate and key in one PEM, as reqwest's `Identity::from_pem` takes them.
    pub fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert, self.key).as_bytes())
            .expect("a valid client identity")
    }
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Issued {
        self.issue(
            vec!["localhost".into(), "127.0.0.1".into()],
            "dingtalk-exporter",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(vec![], name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        usage: ExtendedKeyUsagePurpose,
    ) -> Issued {
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    pub fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap()
    }
}

/// Writes `contents` to `path` by renaming a temporary file over it, the way certificate
/// tools and Kubernetes replace files, so a reader never sees half a file.
pub fn replace_file(path: &Path, contents: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A directory holding a server certificate (`tls.crt`, `tls.key`) and the web config
/// `web.yml` written by the test.
pub struct WebConfigDir {
    pub dir: tempfile::TempDir,
}

impl WebConfigDir {
    pub fn new(server: &Issued) -> WebConfigDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls.crt"), &server.cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), &server.key).unwrap();
        WebConfigDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `web.yml` and returns its path.
    pub fn write_config(&self, text: &str) -> PathBuf {
        let path = self.path("web.yml");
        replace_file(&path, text);
        path
    }

    /// Replaces the server certificate and key (each file atomically).
    pub fn rotate(&self, server: &Issued) {
        replace_file(&self.path("tls.key"), &server.key);
        replace_file(&self.path("tls.crt"), &server.cert);
    }
}

/// A client that trusts only `ca` and opens a fresh connection for every request, so each
/// request goes through a TLS handshake.
pub fn https_client(ca: &TestCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([ca.certificate()])
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
}

/// A bcrypt hash of `password`, at the lowest cost to keep tests fast.
pub fn bcrypt_hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}
