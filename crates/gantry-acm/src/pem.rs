//! What ACM reads from an imported certificate, pure: the PEM certificate parsed as X.509
//! (names, validity, key algorithm, signature algorithm, serial, key usages), its chain, and a
//! check that the private key is the certificate's (RSA: the modulus; EC: the public point, when
//! the key carries it).

use der::{Decode, Encode};
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName, name::GeneralName};
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::{Certificate, TbsCertificate};

/// An imported certificate, as ACM describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The subject's CN, else the first DNS name.
    pub domain_name: String,
    /// The DNS names of the subjectAltName extension, else the CN.
    pub subject_alternative_names: Vec<String>,
    /// RFC 4514, as ACM shows it (`CN=www.example.com,O=Example`).
    pub subject: String,
    /// The issuer's O, else its CN.
    pub issuer: String,
    /// Hex pairs separated by colons.
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    /// `RSA_2048`, `EC_prime256v1`, ...
    pub key_algorithm: String,
    /// `SHA256WITHRSA`, `SHA256WITHECDSA`, ...
    pub signature_algorithm: String,
    /// `DIGITAL_SIGNATURE`, `KEY_ENCIPHERMENT`, ...
    pub key_usages: Vec<String>,
    /// (name, OID): `TLS_WEB_SERVER_AUTHENTICATION`, ...
    pub extended_key_usages: Vec<(String, String)>,
    /// The certificate, re-encoded as PEM.
    pub certificate_pem: String,
}

/// An import that ACM refuses, with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(m: impl Into<String>) -> Invalid {
    Invalid(m.into())
}

fn pem_blocks(input: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut label: Option<String> = None;
    let mut body = String::new();
    for line in input.lines().map(str::trim) {
        if let Some(l) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            label = Some(l.to_string());
            body.clear();
        } else if line.starts_with("-----END ") {
            if let Some(l) = label.take() {
                use base64::Engine;
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(body.as_bytes()) {
                    out.push((l, der));
                }
            }
        } else if label.is_some() {
            body.push_str(line);
        }
    }
    out
}

fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn oid_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.1.1.5" => "SHA1WITHRSA",
        "1.2.840.113549.1.1.11" => "SHA256WITHRSA",
        "1.2.840.113549.1.1.12" => "SHA384WITHRSA",
        "1.2.840.113549.1.1.13" => "SHA512WITHRSA",
        "1.2.840.113549.1.1.10" => "RSASSA_PSS",
        "1.2.840.10045.4.1" => "SHA1WITHECDSA",
        "1.2.840.10045.4.3.2" => "SHA256WITHECDSA",
        "1.2.840.10045.4.3.3" => "SHA384WITHECDSA",
        "1.2.840.10045.4.3.4" => "SHA512WITHECDSA",
        _ => return None,
    })
}

fn curve_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.10045.3.1.7" => "EC_prime256v1",
        "1.3.132.0.34" => "EC_secp384r1",
        "1.3.132.0.35" => "EC_secp521r1",
        _ => return None,
    })
}

const RSA: &str = "1.2.840.113549.1.1.1";
const EC: &str = "1.2.840.10045.2.1";

/// A DER element: its tag and contents, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The elements of a SEQUENCE's contents.
fn elements(mut contents: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !contents.is_empty() {
        let (tag, value, rest) = tlv(contents)?;
        out.push((tag, value));
        contents = rest;
    }
    Some(out)
}

fn sequence(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (tag, value, _) = tlv(der)?;
    (tag == 0x30).then_some(())?;
    elements(value)
}

fn unsigned(int: &[u8]) -> &[u8] {
    let mut i = int;
    while i.len() > 1 && i[0] == 0 {
        i = &i[1..];
    }
    i
}

/// What a private key says of its public half: the RSA modulus, or the EC point if present.
enum KeyPublic<'a> {
    Rsa(&'a [u8]),
    Ec(Option<&'a [u8]>),
}

fn rsa_private(der: &[u8]) -> Option<KeyPublic<'_>> {
    let e = sequence(der)?;
    (e.len() >= 3 && e[1].0 == 0x02).then(|| KeyPublic::Rsa(unsigned(e[1].1)))
}

fn ec_private(der: &[u8]) -> Option<KeyPublic<'_>> {
    let e = sequence(der)?;
    let point = e.iter().find(|(t, _)| *t == 0xa1).and_then(|(_, v)| {
        let (tag, bits, _) = tlv(v)?;
        (tag == 0x03 && !bits.is_empty()).then(|| &bits[1..])
    });
    Some(KeyPublic::Ec(point))
}

fn private_key(pem: &str) -> Result<(Vec<u8>, &'static str), Invalid> {
    let blocks = pem_blocks(pem);
    let (label, der) =
        blocks.into_iter().next().ok_or_else(|| invalid("The private key is not a valid PEM private key"))?;
    match label.as_str() {
        "PRIVATE KEY" => {
            let e =
                sequence(&der).ok_or_else(|| invalid("The private key is not a valid PKCS#8 private key"))?;
            let alg = e.get(1).and_then(|(_, v)| elements(v)).and_then(|a| a.first().copied());
            let key = e.get(2).filter(|(t, _)| *t == 0x04).map(|(_, v)| v.to_vec());
            match (alg, key) {
                (Some((0x06, oid)), Some(key)) => {
                    let oid = der::asn1::ObjectIdentifier::from_bytes(oid)
                        .map(|o| o.to_string())
                        .unwrap_or_default();
                    match oid.as_str() {
                        RSA => Ok((key, "rsa")),
                        EC => Ok((key, "ec")),
                        other => Err(invalid(format!("The private key algorithm {other} is not supported"))),
                    }
                }
                _ => Err(invalid("The private key is not a valid PKCS#8 private key")),
            }
        }
        "RSA PRIVATE KEY" => Ok((der, "rsa")),
        "EC PRIVATE KEY" => Ok((der, "ec")),
        "ENCRYPTED PRIVATE KEY" => Err(invalid("The private key is encrypted: import it unencrypted")),
        other => Err(invalid(format!("The private key is not valid: found a PEM block of type '{other}'"))),
    }
}

/// Parses an import: the certificate (one PEM certificate), its private key (PEM, unencrypted,
/// RSA or EC) and its chain (zero or more PEM certificates), at `now` (epoch seconds).
pub fn parse(
    certificate: &str,
    private_key_pem: &str,
    chain: Option<&str>,
    now: i64,
) -> Result<Parsed, Invalid> {
    let cert = load_certificate(certificate, chain)?;
    let tbs = &cert.tbs_certificate;
    let (not_before, not_after) = check_validity(tbs, now)?;
    let ext = Extensions::of(tbs);
    let mut sans = ext.sans;
    let domain_name =
        attrs(&tbs.subject, "CN").into_iter().next().or_else(|| sans.first().cloned()).ok_or_else(|| {
            invalid(
                "The certificate has no domain name: it needs a subject CN or a DNS subject alternative name",
            )
        })?;
    if sans.is_empty() {
        sans.push(domain_name.clone());
    }
    let issuer = attrs(&tbs.issuer, "O")
        .into_iter()
        .next()
        .or_else(|| attrs(&tbs.issuer, "CN").into_iter().next())
        .unwrap_or_default();
    let key_algorithm = key_algorithm(&tbs.subject_public_key_info)?;
    check_private_key(private_key_pem, &tbs.subject_public_key_info)?;
    let sig_oid = cert.signature_algorithm.oid.to_string();
    let serial =
        tbs.serial_number.as_bytes().iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let der = cert.to_der().map_err(|e| invalid(format!("The certificate could not be encoded: {e}")))?;
    Ok(Parsed {
        domain_name,
        subject_alternative_names: sans,
        subject: tbs.subject.to_string(),
        issuer,
        serial,
        not_before,
        not_after,
        key_algorithm,
        signature_algorithm: oid_name(&sig_oid).map(str::to_string).unwrap_or(sig_oid),
        key_usages: ext.key_usages,
        extended_key_usages: ext.ekus,
        certificate_pem: to_pem("CERTIFICATE", &der),
    })
}

/// The one certificate of the certificate field; the chain, if any, must be PEM certificates.
fn load_certificate(certificate: &str, chain: Option<&str>) -> Result<Certificate, Invalid> {
    let certs = Certificate::load_pem_chain(certificate.as_bytes())
        .map_err(|e| invalid(format!("The certificate is not a valid PEM certificate: {e}")))?;
    let mut certs = certs.into_iter();
    let cert = match (certs.next(), certs.next()) {
        (Some(c), None) => c,
        (None, _) => return Err(invalid("The certificate field does not contain a certificate")),
        (Some(_), Some(_)) => {
            return Err(invalid("The certificate field contains more than one certificate"));
        }
    };
    if let Some(chain) = chain.filter(|c| !c.trim().is_empty()) {
        Certificate::load_pem_chain(chain.as_bytes())
            .map_err(|e| invalid(format!("The certificate chain is not valid PEM: {e}")))?;
    }
    Ok(cert)
}

/// The validity period (epoch seconds), which must hold `now`.
fn check_validity(tbs: &TbsCertificate, now: i64) -> Result<(i64, i64), Invalid> {
    let not_before = tbs.validity.not_before.to_unix_duration().as_secs() as i64;
    let not_after = tbs.validity.not_after.to_unix_duration().as_secs() as i64;
    if now < not_before || now > not_after {
        return Err(invalid(format!(
            "The certificate is not valid at this time: it is valid from {} to {}",
            tbs.validity.not_before, tbs.validity.not_after
        )));
    }
    Ok((not_before, not_after))
}

/// The values of attribute `short` (`CN`, `O`) of a name.
fn attrs(name: &x509_cert::name::Name, short: &str) -> Vec<String> {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter_map(|atv| atv.to_string().strip_prefix(&format!("{short}=")).map(str::to_string))
        .collect()
}

/// What ACM shows of a certificate's extensions.
struct Extensions {
    /// The subjectAltName's DNS names.
    sans: Vec<String>,
    key_usages: Vec<String>,
    /// (name, OID).
    ekus: Vec<(String, String)>,
}

impl Extensions {
    /// The extensions ACM reads; one that does not decode is skipped.
    fn of(tbs: &TbsCertificate) -> Extensions {
        let mut out = Extensions { sans: Vec::new(), key_usages: Vec::new(), ekus: Vec::new() };
        for ext in tbs.extensions.iter().flatten() {
            let oid = ext.extn_id.to_string();
            let bytes = ext.extn_value.as_bytes();
            match oid.as_str() {
                "2.5.29.17" => {
                    if let Ok(san) = SubjectAltName::from_der(bytes) {
                        out.sans.extend(san.0.iter().filter_map(|g| match g {
                            GeneralName::DnsName(d) => Some(d.to_string()),
                            _ => None,
                        }));
                    }
                }
                "2.5.29.15" => {
                    if let Ok(ku) = KeyUsage::from_der(bytes) {
                        out.key_usages.extend(key_usage_names(&ku));
                    }
                }
                "2.5.29.37" => {
                    if let Ok(eku) = ExtendedKeyUsage::from_der(bytes) {
                        out.ekus.extend(eku.0.iter().map(|o| {
                            let o = o.to_string();
                            (extended_key_usage_name(&o).to_string(), o)
                        }));
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// ACM's names of the key usages set.
fn key_usage_names(ku: &KeyUsage) -> Vec<String> {
    [
        (KeyUsages::DigitalSignature, "DIGITAL_SIGNATURE"),
        (KeyUsages::NonRepudiation, "NON_REPUDIATION"),
        (KeyUsages::KeyEncipherment, "KEY_ENCIPHERMENT"),
        (KeyUsages::DataEncipherment, "DATA_ENCIPHERMENT"),
        (KeyUsages::KeyAgreement, "KEY_AGREEMENT"),
        (KeyUsages::KeyCertSign, "CERTIFICATE_SIGNING"),
        (KeyUsages::CRLSign, "CRL_SIGNING"),
        (KeyUsages::EncipherOnly, "ENCIPHER_ONLY"),
        (KeyUsages::DecipherOnly, "DECIPHER_ONLY"),
    ]
    .into_iter()
    .filter(|(flag, _)| ku.0.contains(*flag))
    .map(|(_, name)| name.to_string())
    .collect()
}

/// ACM's name of an extended key usage OID.
fn extended_key_usage_name(oid: &str) -> &'static str {
    match oid {
        "1.3.6.1.5.5.7.3.1" => "TLS_WEB_SERVER_AUTHENTICATION",
        "1.3.6.1.5.5.7.3.2" => "TLS_WEB_CLIENT_AUTHENTICATION",
        "1.3.6.1.5.5.7.3.3" => "CODE_SIGNING",
        "1.3.6.1.5.5.7.3.4" => "EMAIL_PROTECTION",
        "1.3.6.1.5.5.7.3.8" => "TIME_STAMPING",
        "1.3.6.1.5.5.7.3.9" => "OCSP_SIGNING",
        _ => "CUSTOM",
    }
}

/// The certificate's key algorithm as ACM names it (`RSA_2048`, `EC_prime256v1`), one ACM
/// imports.
fn key_algorithm(spki: &SubjectPublicKeyInfoOwned) -> Result<String, Invalid> {
    let public = spki.subject_public_key.raw_bytes();
    let key_algorithm = match spki.algorithm.oid.to_string().as_str() {
        RSA => {
            let n = sequence(public).and_then(|e| e.first().map(|(_, v)| unsigned(v).len())).unwrap_or(0);
            format!("RSA_{}", n * 8)
        }
        EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.decode_as::<der::asn1::ObjectIdentifier>().ok())
                .map(|o| o.to_string())
                .unwrap_or_default();
            curve_name(&curve)
                .ok_or_else(|| invalid(format!("The certificate's elliptic curve {curve} is not supported")))?
                .to_string()
        }
        other => return Err(invalid(format!("The certificate's key algorithm {other} is not supported"))),
    };
    if !matches!(
        key_algorithm.as_str(),
        "RSA_1024" | "RSA_2048" | "RSA_3072" | "RSA_4096" | "EC_prime256v1" | "EC_secp384r1" | "EC_secp521r1"
    ) {
        return Err(invalid(format!("The certificate's key algorithm {key_algorithm} is not supported")));
    }
    Ok(key_algorithm)
}

/// The private key is readable and is the certificate's: the same RSA modulus, or (when the EC
/// key carries it) the same public point.
fn check_private_key(private_key_pem: &str, spki: &SubjectPublicKeyInfoOwned) -> Result<(), Invalid> {
    let key_oid = spki.algorithm.oid.to_string();
    let public = spki.subject_public_key.raw_bytes();
    let (key_der, kind) = private_key(private_key_pem)?;
    let matches = match (kind, if kind == "rsa" { rsa_private(&key_der) } else { ec_private(&key_der) }) {
        ("rsa", Some(KeyPublic::Rsa(n))) => {
            key_oid == RSA
                && sequence(public).and_then(|e| e.first().map(|(_, v)| unsigned(v) == n)).unwrap_or(false)
        }
        ("ec", Some(KeyPublic::Ec(point))) => key_oid == EC && point.is_none_or(|p| p == public),
        _ => return Err(invalid("The private key could not be read")),
    };
    if !matches {
        return Err(invalid("The private key does not match the public key in the certificate"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_PEM: &str = include_str!("../tests/fixtures/rsa.pem");
    const RSA_KEY: &str = include_str!("../tests/fixtures/rsa.key");
    const EC_PEM: &str = include_str!("../tests/fixtures/ec.pem");
    const EC_KEY: &str = include_str!("../tests/fixtures/ec.key");
    const EC_SEC1_KEY: &str = include_str!("../tests/fixtures/ec-sec1.key");
    const OTHER_RSA_KEY: &str = include_str!("../tests/fixtures/other-rsa.key");
    /// 2027-01-01, after the fixtures were made.
    const NOW: i64 = 1_798_761_600;

    #[test]
    fn an_rsa_certificate_is_read_for_real() {
        let p = parse(RSA_PEM, RSA_KEY, None, NOW).unwrap();
        assert_eq!(p.domain_name, "www.example.com");
        assert_eq!(p.subject_alternative_names, ["www.example.com", "example.com"]);
        assert_eq!(p.subject, "O=Gantry Test,CN=www.example.com");
        assert_eq!(p.issuer, "Gantry Test");
        assert_eq!(p.key_algorithm, "RSA_2048");
        assert_eq!(p.signature_algorithm, "SHA256WITHRSA");
        assert_eq!(p.key_usages, ["DIGITAL_SIGNATURE", "KEY_ENCIPHERMENT"]);
        assert_eq!(
            p.extended_key_usages,
            [("TLS_WEB_SERVER_AUTHENTICATION".to_string(), "1.3.6.1.5.5.7.3.1".to_string())]
        );
        assert!(p.not_before < NOW && p.not_after > NOW + 3_000_000_000, "{} {}", p.not_before, p.not_after);
        assert!(p.serial.contains(':'));
        assert!(p.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        // Re-encoding gives back the same certificate.
        assert_eq!(pem_blocks(&p.certificate_pem)[0].1, pem_blocks(RSA_PEM)[0].1);
    }

    #[test]
    fn an_ec_certificate_is_read_with_either_key_form() {
        let p = parse(EC_PEM, EC_KEY, None, NOW).unwrap();
        assert_eq!((p.domain_name.as_str(), p.key_algorithm.as_str()), ("api.example.com", "EC_prime256v1"));
        assert_eq!(p.signature_algorithm, "SHA256WITHECDSA");
        assert!(parse(EC_PEM, EC_SEC1_KEY, None, NOW).is_ok());
    }

    #[test]
    fn bad_imports_are_refused_with_a_reason() {
        let e = parse(RSA_PEM, OTHER_RSA_KEY, None, NOW).unwrap_err();
        assert!(e.0.contains("does not match"), "{}", e.0);
        let e = parse(RSA_PEM, EC_KEY, None, NOW).unwrap_err();
        assert!(e.0.contains("does not match"), "{}", e.0);
        let e = parse("not a certificate", RSA_KEY, None, NOW).unwrap_err();
        assert!(e.0.contains("certificate"), "{}", e.0);
        let two = format!("{RSA_PEM}{EC_PEM}");
        assert!(parse(&two, RSA_KEY, None, NOW).unwrap_err().0.contains("more than one"));
        let e = parse(RSA_PEM, RSA_KEY, None, 0).unwrap_err();
        assert!(e.0.contains("not valid at this time"), "{}", e.0);
        let e = parse(
            RSA_PEM,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            None,
            NOW,
        )
        .unwrap_err();
        assert!(e.0.contains("encrypted"), "{}", e.0);
        assert!(
            parse(
                RSA_PEM,
                RSA_KEY,
                Some("garbage-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----"),
                NOW
            )
            .is_err()
        );
        assert!(parse(RSA_PEM, RSA_KEY, Some(EC_PEM), NOW).is_ok());
    }
}
