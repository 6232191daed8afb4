//! TLS: the certificates `ecsd tls` makes, the identity a certificate carries, and the
//! material a node loads from its `[tls]` files.
//!
//! One CA per cluster signs every certificate. A certificate names exactly one identity in a
//! DNS subject alternative name under `.ecsd`: `node-<id>.ecsd` (a member: it serves the API
//! and the node-to-node port, and dials peers), `agent-<name>.ecsd` (a container instance's
//! agent) or `client-<name>.ecsd` (an operator's tool). Peers dial each other by the name of the
//! node they mean, so a node proves to a peer which node it is, both ways.

use std::sync::Arc;

/// The DNS suffix of identities.
pub const DOMAIN: &str = "ecsd";

/// Who a certificate says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Node(u64),
    Agent(String),
    Client(String),
}

impl Identity {
    /// The DNS name that carries the identity (`node-3.ecsd`).
    pub fn dns_name(&self) -> String {
        format!("{}.{DOMAIN}", self.stem())
    }

    /// `node-3`, `agent-web-1`, `client-ci`: also the certificate's file name.
    pub fn stem(&self) -> String {
        match self {
            Identity::Node(id) => format!("node-{id}"),
            Identity::Agent(name) => format!("agent-{name}"),
            Identity::Client(name) => format!("client-{name}"),
        }
    }

    /// The identity a DNS name carries, if it is one.
    pub fn of_dns(name: &str) -> Option<Identity> {
        let stem = name.strip_suffix(DOMAIN)?.strip_suffix('.')?;
        if let Some(id) = stem.strip_prefix("node-") {
            return id.parse().ok().filter(|id| *id > 0).map(Identity::Node);
        }
        let valid =
            |n: &str| !n.is_empty() && n.len() <= 63 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if let Some(name) = stem.strip_prefix("agent-").filter(|n| valid(n)) {
            return Some(Identity::Agent(name.to_string()));
        }
        stem.strip_prefix("client-")
            .filter(|n| valid(n))
            .map(|n| Identity::Client(n.to_string()))
    }
}

/// The one identity in a certificate (DER), or `None` when it names none or several.
///
/// Every peer RPC asks this of its connection's certificate; the answers for the few
/// certificates a node sees (its peers' and agents') are kept, so that a certificate is parsed
/// once rather than on every message. The cache holds at most [`SEEN_MAX`] certificates and
/// starts over when full, so a caller cycling through certificates cannot grow it.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    use std::collections::HashMap;
    use std::sync::{LazyLock, Mutex};
    static SEEN: LazyLock<Mutex<HashMap<Vec<u8>, Option<Identity>>>> = LazyLock::new(Mutex::default);
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = seen.get(der) {
        return known.clone();
    }
    // A miss is once per certificate: parsing under the lock costs nothing that matters.
    let identity = parse_identity(der);
    if seen.len() >= SEEN_MAX {
        seen.clear();
    }
    seen.insert(der.to_vec(), identity.clone());
    identity
}

/// How many certificates' identities [`identity_of`] keeps.
const SEEN_MAX: usize = 256;

fn parse_identity(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = san.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Identity::of_dns(dns),
        _ => None,
    });
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Sets a certificate's validity: from yesterday (clocks a little behind still accept it) to
/// `days` from now.
fn validity(params: &mut rcgen::CertificateParams, days: u32) {
    use chrono::Datelike;
    let day = |offset: i64| {
        let at = chrono::Utc::now() + chrono::Duration::days(offset);
        rcgen::date_time_ymd(at.year(), at.month() as u8, at.day() as u8)
    };
    params.not_before = day(-1);
    params.not_after = day(i64::from(days));
}

/// A new CA, valid for `days`.
pub fn make_ca(days: u32) -> Result<Pem, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "ecsd CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `who`, signed by `ca`, valid for `days`: its identity name, plus `hosts`
/// (names and IP addresses it is reached at; a node's always include `localhost` and
/// 127.0.0.1). Usable as both server and client.
pub fn make_cert(ca: &Pem, who: &Identity, hosts: &[String], days: u32) -> Result<Pem, String> {
    if let Some(bad) = hosts.iter().find(|h| h.ends_with(&format!(".{DOMAIN}"))) {
        return Err(format!("{bad}: names under .{DOMAIN} are identities, not hosts"));
    }
    let ca_key = rcgen::KeyPair::from_pem(&ca.key).map_err(|e| format!("the CA key: {e}"))?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|e| format!("the CA certificate: {e}"))?;
    let mut names = vec![who.dns_name()];
    if matches!(who, Identity::Node(_)) {
        names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
    }
    for host in hosts {
        if !names.contains(host) {
            names.push(host.clone());
        }
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, who.stem());
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A node's TLS files, read: the CA, its certificate and its key (PEM).
#[derive(Clone)]
pub struct Material {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl Material {
    /// Reads the files of `[tls]`; `None` when TLS is off. The certificate must name node
    /// `node_id`.
    pub fn load(config: &crate::config::TlsConfig, node_id: u64) -> Result<Option<Material>, String> {
        let (Some(ca), Some(cert), Some(key)) = (&config.ca_file, &config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|e| format!("config key `{key}`: read {}: {e}", path.display()))
        };
        let (ca_pem, cert_pem, key_pem) = (
            read("tls.ca_file", ca)?,
            read("tls.cert_file", cert)?,
            read("tls.key_file", key)?,
        );
        let chain = certs(&cert_pem).map_err(|e| format!("config key `tls.cert_file`: {e}"))?;
        let identity = chain.first().and_then(|c| parse_identity(c)).ok_or_else(|| {
            format!(
                "config key `tls.cert_file`: {} names no ecsd identity (make it with `ecsd tls cert --node {node_id}`)",
                cert.display()
            )
        })?;
        if identity != Identity::Node(node_id) {
            return Err(format!(
                "config key `tls.cert_file`: {} is the certificate of {}, not of node {node_id}",
                cert.display(),
                identity.stem()
            ));
        }
        certs(&ca_pem).map_err(|e| format!("config key `tls.ca_file`: {e}"))?;
        private_key(&key_pem).map_err(|e| format!("config key `tls.key_file`: {e}"))?;
        Ok(Some(Material {
            ca: ca_pem,
            cert: cert_pem,
            key: key_pem,
        }))
    }

    /// The ECS API's HTTPS acceptor (HTTP/1.1; clients present no certificate).
    pub fn https_acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        // ring, as everywhere here (tonic's `tls-ring`, reqwest's): rustls deprecates it for
        // lacking post-quantum key exchange, which aws-lc-rs has at the cost of a second
        // crypto library built from C.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // A client may present a certificate of the cluster's CA (Prometheus does, for
        // `/metrics`: `ecsd tls cert --client NAME`); the aws CLI and the SDKs present none.
        let mut roots = rustls::RootCertStore::empty();
        for ca in certs(&self.ca)? {
            roots.add(ca).map_err(|e| format!("the CA: {e}"))?;
        }
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("the client verifier: {e}"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(clients)
            .with_single_cert(certs(&self.cert)?, private_key(&self.key)?)
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

fn certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("holds no certificate".into());
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_names() {
        for who in [
            Identity::Node(3),
            Identity::Agent("web-1".into()),
            Identity::Client("ci".into()),
        ] {
            assert_eq!(Identity::of_dns(&who.dns_name()), Some(who));
        }
        for not in [
            "node-0.ecsd",
            "node-x.ecsd",
            "agent-.ecsd",
            "agent-a.b.ecsd",
            "node-1.ecsd.evil",
            "localhost",
        ] {
            assert_eq!(Identity::of_dns(not), None, "{not}");
        }
    }

    #[test]
    fn a_certificate_carries_the_identity_it_was_made_for() {
        let ca = make_ca(30).unwrap();
        let cert = make_cert(&ca, &Identity::Node(2), &["10.0.0.2".into(), "n2.example".into()], 30).unwrap();
        let der = certs(cert.cert.as_bytes()).unwrap();
        assert_eq!(identity_of(&der[0]), Some(Identity::Node(2)));
        let agent = make_cert(&ca, &Identity::Agent("a1".into()), &[], 30).unwrap();
        let der = certs(agent.cert.as_bytes()).unwrap();
        assert_eq!(identity_of(&der[0]), Some(Identity::Agent("a1".into())));
        // An extra host cannot smuggle in a second identity.
        assert!(make_cert(&ca, &Identity::Agent("a1".into()), &["node-1.ecsd".into()], 30).is_err());
    }
}
