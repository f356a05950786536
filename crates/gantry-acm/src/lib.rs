//! AWS Certificate Manager, as far as load balancers need it: certificates imported with their
//! private keys (ImportCertificate, also to re-import under the same ARN), described, listed,
//! fetched, tagged and deleted. Nothing is issued or validated here: there is no CA and no
//! ACME.
//!
//! Operations take and return the JSON form of the generated shapes (`gantry_model::acm`, the
//! awsJson1_1 protocol); the front door does the wire. The imported PEM is parsed for real
//! ([`pem`]) to fill in names, dates and algorithms, and the private key must be the
//! certificate's. Records live under `/ACCOUNT/REGION/acm/certificate/ID`. ELBv2 reads
//! certificates through [`AcmCertificates`] (`gantry_ports::lb::CertificateSource`), and ACM asks
//! ELBv2 which load balancers use one (`gantry_ports::lb::CertificateUse`) for `InUseBy` and to
//! refuse deleting one in use. The private key is stored in the record as imported (the store
//! is the one place secrets at rest live today).
//!
//! This crate knows no HTTP and no wire format, and depends on no other service's crate.

pub mod pem;

use gantry_core::{Clock, IdGen, Scope, Secret, ServiceError};
use gantry_model::acm::*;
use gantry_ports::lb::{Certificate, CertificateSource, CertificateUse};
use gantry_runtime::records::{Before, Record, Stored, TxnExt, load, load_prefix};
use gantry_store::{Op, Store, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

gantry_core::status_enum! {
    /// A certificate's `Status`, in ACM's documented order.
    CertificateStatus {
        PendingValidation => "PENDING_VALIDATION",
        Issued => "ISSUED",
        Inactive => "INACTIVE",
        Expired => "EXPIRED",
        ValidationTimedOut => "VALIDATION_TIMED_OUT",
        Revoked => "REVOKED",
        Failed => "FAILED",
    }
}

/// The service's name in keys and ARNs.
pub const SERVICE: &str = "acm";

const ATTEMPTS: usize = 32;

fn prefix(s: &Scope) -> String {
    format!("/{}/{}/{SERVICE}/certificate/", s.account, s.region)
}

/// Whether `key` is ACM's.
pub fn owns(key: &str) -> bool {
    let mut it = key.strip_prefix('/').unwrap_or_default().splitn(4, '/');
    matches!(
        (it.next(), it.next(), it.next(), it.next()),
        (Some(account), Some(_), Some(SERVICE), Some(_)) if !account.is_empty() && !account.starts_with('_')
    )
}

/// A certificate as stored: what DescribeCertificate shows, the PEM, the key and the tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    pub id: String,
    pub detail: CertificateDetail,
    pub certificate_pem: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_pem: Option<String>,
    pub private_key_pem: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl Record for CertRecord {
    fn key(&self, scope: &Scope) -> String {
        format!("{}{}", prefix(scope), self.id)
    }
}

/// The ACM service.
pub struct Acm {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdGen>,
    users: Arc<dyn CertificateUse>,
}

impl std::fmt::Debug for Acm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acm").finish_non_exhaustive()
    }
}

fn err(code: &str, msg: impl Into<String>) -> ServiceError {
    ServiceError::sender(code, msg)
}

fn not_found(arn: &str) -> ServiceError {
    err("ResourceNotFoundException", format!("Could not find certificate with arn '{arn}'"))
}

fn parse<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(input)
        .map_err(|e| err("ValidationException", format!("The request is not valid: {e}")))
}

fn render<T: Serialize>(v: T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(&v).map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))
}

fn blob(field: &str, b64: &str) -> Result<String, ServiceError> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| err("ValidationException", format!("The {field} is not valid base64")))?;
    String::from_utf8(bytes).map_err(|_| err("ValidationException", format!("The {field} is not PEM text")))
}

fn check_tags(tags: &[Tag]) -> Result<(), ServiceError> {
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(err(
                "InvalidParameterException",
                format!("Tag key '{}' must be 1 to 128 characters", t.key),
            ));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(err(
                "InvalidTagException",
                format!("Tag key '{}' uses the reserved prefix 'aws:'", t.key),
            ));
        }
        if t.value.as_deref().unwrap_or_default().chars().count() > 256 {
            return Err(err(
                "InvalidParameterException",
                format!("The value of tag '{}' is longer than 256 characters", t.key),
            ));
        }
    }
    Ok(())
}

impl Acm {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdGen>,
        users: Arc<dyn CertificateUse>,
    ) -> Self {
        Acm { store, clock, ids, users }
    }

    /// Runs one operation in `scope`: its input as JSON, its output as JSON.
    pub async fn call(&self, scope: &Scope, op: &str, input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "ImportCertificate" => render(self.import(scope, parse(input)?).await?),
            "DescribeCertificate" => {
                let r: DescribeCertificateRequest = parse(input)?;
                let c = self.by_arn(scope, &r.certificate_arn)?;
                render(DescribeCertificateResponse { certificate: Some(self.detail(&c.value)) })
            }
            "GetCertificate" => {
                let r: GetCertificateRequest = parse(input)?;
                let c = self.by_arn(scope, &r.certificate_arn)?;
                render(GetCertificateResponse {
                    certificate: Some(c.value.certificate_pem),
                    certificate_chain: c.value.chain_pem,
                })
            }
            "ListCertificates" => render(self.list(scope, parse(input)?)?),
            "DeleteCertificate" => render(self.delete(scope, parse(input)?).await?),
            "AddTagsToCertificate" => {
                let r: AddTagsToCertificateRequest = parse(input)?;
                check_tags(&r.tags)?;
                self.update(scope, &r.certificate_arn, |c| {
                    for t in &r.tags {
                        match c.tags.iter_mut().find(|e| e.key == t.key) {
                            Some(e) => e.value = t.value.clone(),
                            None => c.tags.push(t.clone()),
                        }
                    }
                    if c.tags.len() > 50 {
                        return Err(err("TooManyTagsException", "A certificate can have at most 50 tags"));
                    }
                    Ok(())
                })
                .await?;
                Ok(b"{}".to_vec())
            }
            "RemoveTagsFromCertificate" => {
                let r: RemoveTagsFromCertificateRequest = parse(input)?;
                self.update(scope, &r.certificate_arn, |c| {
                    c.tags.retain(|t| {
                        !r.tags.iter().any(|x| x.key == t.key && (x.value.is_none() || x.value == t.value))
                    });
                    Ok(())
                })
                .await?;
                Ok(b"{}".to_vec())
            }
            "ListTagsForCertificate" => {
                let r: ListTagsForCertificateRequest = parse(input)?;
                let c = self.by_arn(scope, &r.certificate_arn)?;
                render(ListTagsForCertificateResponse { tags: Some(c.value.tags) })
            }
            _ => Err(err(
                "UnknownOperationException",
                format!("Operation {op} is not supported by Gantry's ACM"),
            )),
        }
    }

    fn arn(scope: &Scope, id: &str) -> String {
        format!("arn:aws:acm:{}:{}:certificate/{id}", scope.region, scope.account)
    }

    /// The certificate an ARN names in this scope.
    fn by_arn(&self, scope: &Scope, arn: &str) -> Result<Stored<CertRecord>, ServiceError> {
        let id = arn
            .strip_prefix(&format!("arn:aws:acm:{}:{}:certificate/", scope.region, scope.account))
            .filter(|id| !id.is_empty() && !id.contains('/'));
        let Some(id) = id else {
            if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
                return Err(err("InvalidArnException", format!("String '{arn}' is not a valid ARN")));
            }
            return Err(not_found(arn));
        };
        load::<CertRecord>(self.store.as_ref(), &format!("{}{id}", prefix(scope)))
            .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?
            .ok_or_else(|| not_found(arn))
    }

    fn detail(&self, c: &CertRecord) -> CertificateDetail {
        let mut d = c.detail.clone();
        let arn = d.certificate_arn.clone().unwrap_or_default();
        let now = self.clock.now().as_epoch_seconds();
        if d.not_after.is_some_and(|t| t < now) {
            d.status = Some(CertificateStatus::Expired.as_str().into());
        }
        d.in_use_by = Some(self.users.users(&arn));
        d
    }

    async fn commit(&self, txn: Txn) -> Result<bool, ServiceError> {
        for op in &txn.ops {
            let (Op::Put(k, _) | Op::Delete(k) | Op::DeletePrefix(k) | Op::Add(k, _)) = op;
            if !owns(k) {
                return Err(ServiceError::receiver("InternalFailure", format!("ACM may not write {k}")));
            }
        }
        let r = self
            .store
            .txn(txn)
            .await
            .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
        Ok(r.succeeded)
    }

    async fn update(
        &self,
        scope: &Scope,
        arn: &str,
        f: impl Fn(&mut CertRecord) -> Result<(), ServiceError>,
    ) -> Result<(), ServiceError> {
        for _ in 0..ATTEMPTS {
            let mut c = self.by_arn(scope, arn)?;
            let before = Before::of(scope, &c);
            f(&mut c.value)?;
            if self.commit(Txn::new().put_record(scope, &before, &c.value)).await? {
                return Ok(());
            }
        }
        Err(ServiceError::receiver("InternalFailure", "The request kept conflicting with concurrent changes"))
    }

    async fn import(
        &self,
        scope: &Scope,
        r: ImportCertificateRequest,
    ) -> Result<ImportCertificateResponse, ServiceError> {
        let certificate = blob("certificate", &r.certificate)?;
        let key = blob("private key", &r.private_key)?;
        let chain = r.certificate_chain.as_deref().map(|c| blob("certificate chain", c)).transpose()?;
        let tags = r.tags.clone().unwrap_or_default();
        check_tags(&tags)?;
        if r.certificate_arn.is_some() && !tags.is_empty() {
            return Err(err(
                "InvalidParameterException",
                "Tags cannot be specified when re-importing a certificate",
            ));
        }
        let now = self.clock.now();
        let parsed = pem::parse(&certificate, &key, chain.as_deref(), now.0.div_euclid(1000))
            .map_err(|e| err("ValidationException", e.0))?;
        for _ in 0..ATTEMPTS {
            let (before, id, created, old_tags) = match &r.certificate_arn {
                Some(arn) => {
                    let old = self.by_arn(scope, arn)?;
                    (
                        Before::of(scope, &old),
                        old.value.id.clone(),
                        old.value.detail.created_at,
                        old.value.tags.clone(),
                    )
                }
                None => (Before::absent(), self.ids.uuid(), None, tags.clone()),
            };
            let arn = Self::arn(scope, &id);
            let detail = CertificateDetail {
                certificate_arn: Some(arn.clone()),
                domain_name: Some(parsed.domain_name.clone()),
                subject_alternative_names: Some(parsed.subject_alternative_names.clone()),
                serial: Some(parsed.serial.clone()),
                subject: Some(parsed.subject.clone()),
                issuer: Some(parsed.issuer.clone()),
                created_at: created.or(Some(now.as_epoch_seconds())),
                imported_at: Some(now.as_epoch_seconds()),
                status: Some(CertificateStatus::Issued.as_str().into()),
                not_before: Some(parsed.not_before as f64),
                not_after: Some(parsed.not_after as f64),
                key_algorithm: Some(parsed.key_algorithm.clone()),
                signature_algorithm: Some(parsed.signature_algorithm.clone()),
                r#type: Some("IMPORTED".into()),
                key_usages: Some(
                    parsed.key_usages.iter().map(|k| KeyUsage { name: Some(k.clone()) }).collect(),
                ),
                extended_key_usages: Some(
                    parsed
                        .extended_key_usages
                        .iter()
                        .map(|(n, o)| ExtendedKeyUsage { name: Some(n.clone()), oid: Some(o.clone()) })
                        .collect(),
                ),
                renewal_eligibility: Some("INELIGIBLE".into()),
                options: Some(CertificateOptions {
                    certificate_transparency_logging_preference: Some("DISABLED".into()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let record = CertRecord {
                id,
                detail,
                certificate_pem: parsed.certificate_pem.clone(),
                chain_pem: chain.clone().filter(|c| !c.trim().is_empty()),
                private_key_pem: key.clone(),
                tags: old_tags,
            };
            if self.commit(Txn::new().put_record(scope, &before, &record)).await? {
                return Ok(ImportCertificateResponse { certificate_arn: Some(arn) });
            }
        }
        Err(ServiceError::receiver("InternalFailure", "The request kept conflicting with concurrent changes"))
    }

    fn list(
        &self,
        scope: &Scope,
        r: ListCertificatesRequest,
    ) -> Result<ListCertificatesResponse, ServiceError> {
        let max = match r.max_items {
            None => 1000,
            Some(n @ 1..=1000) => n as usize,
            Some(n) => {
                return Err(err("ValidationException", format!("MaxItems '{n}' must be from 1 to 1000")));
            }
        };
        for s in r.certificate_statuses.iter().flatten() {
            if CertificateStatus::parse(s).is_none() {
                return Err(err("ValidationException", format!("Certificate status '{s}' is not valid")));
            }
        }
        // ACM's default: RSA_1024 and RSA_2048 certificates only.
        let key_types = r
            .includes
            .as_ref()
            .and_then(|i| i.key_types.clone())
            .unwrap_or_else(|| vec!["RSA_1024".into(), "RSA_2048".into()]);
        let records: Vec<Stored<CertRecord>> = load_prefix(self.store.as_ref(), &prefix(scope))
            .map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))?;
        let mut items: Vec<(String, CertificateSummary)> = records
            .iter()
            .map(|c| self.detail(&c.value))
            .filter(|d| {
                r.certificate_statuses
                    .as_ref()
                    .is_none_or(|s| s.is_empty() || s.iter().any(|x| Some(x) == d.status.as_ref()))
            })
            .filter(|d| key_types.iter().any(|k| Some(k) == d.key_algorithm.as_ref()))
            .map(|d| {
                let sans = d.subject_alternative_names.clone().unwrap_or_default();
                (
                    d.certificate_arn.clone().unwrap_or_default(),
                    CertificateSummary {
                        certificate_arn: d.certificate_arn.clone(),
                        domain_name: d.domain_name.clone(),
                        has_additional_subject_alternative_names: Some(sans.len() > 100),
                        subject_alternative_name_summaries: Some(sans.into_iter().take(100).collect()),
                        status: d.status.clone(),
                        r#type: d.r#type.clone(),
                        key_algorithm: d.key_algorithm.clone(),
                        key_usages: d
                            .key_usages
                            .as_ref()
                            .map(|k| k.iter().filter_map(|k| k.name.clone()).collect()),
                        extended_key_usages: d
                            .extended_key_usages
                            .as_ref()
                            .map(|k| k.iter().filter_map(|k| k.name.clone()).collect()),
                        in_use: Some(d.in_use_by.as_ref().is_some_and(|u| !u.is_empty())),
                        renewal_eligibility: d.renewal_eligibility.clone(),
                        not_before: d.not_before,
                        not_after: d.not_after,
                        created_at: d.created_at,
                        imported_at: d.imported_at,
                        ..Default::default()
                    },
                )
            })
            .collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let after =
            match r.next_token.as_deref() {
                None | Some("") => None,
                Some(t) => Some(items.iter().position(|(arn, _)| arn == t).ok_or_else(|| {
                    err("InvalidArgsException", format!("The next token '{t}' is not valid"))
                })?),
            };
        let rest: Vec<(String, CertificateSummary)> =
            items.into_iter().skip(after.map_or(0, |i| i + 1)).collect();
        let next = (rest.len() > max).then(|| rest[max - 1].0.clone());
        Ok(ListCertificatesResponse {
            next_token: next,
            certificate_summary_list: Some(rest.into_iter().take(max).map(|(_, s)| s).collect()),
        })
    }

    async fn delete(
        &self,
        scope: &Scope,
        r: DeleteCertificateRequest,
    ) -> Result<serde_json::Value, ServiceError> {
        for _ in 0..ATTEMPTS {
            let c = self.by_arn(scope, &r.certificate_arn)?;
            let users = self.users.users(&r.certificate_arn);
            if !users.is_empty() {
                return Err(err(
                    "ResourceInUseException",
                    format!(
                        "Certificate {} in account {} is in use by {}",
                        r.certificate_arn,
                        scope.account,
                        users.join(", ")
                    ),
                ));
            }
            if self.commit(Txn::new().delete_record(&Before::of(scope, &c))).await? {
                return Ok(serde_json::json!({}));
            }
        }
        Err(ServiceError::receiver("InternalFailure", "The request kept conflicting with concurrent changes"))
    }
}

/// ACM's side of a listener's certificates (`gantry_ports::lb::CertificateSource`): the PEM,
/// key and names of an imported certificate, read from ACM's records.
pub struct AcmCertificates {
    store: Arc<dyn Store>,
}

impl AcmCertificates {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AcmCertificates { store }
    }
}

impl std::fmt::Debug for AcmCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmCertificates").finish_non_exhaustive()
    }
}

impl CertificateSource for AcmCertificates {
    fn certificate(&self, arn: &str) -> Option<Certificate> {
        let rest = arn.strip_prefix("arn:aws:acm:")?;
        let mut it = rest.splitn(3, ':');
        let (region, account, resource) = (it.next()?, it.next()?, it.next()?);
        let id = resource.strip_prefix("certificate/")?;
        let scope = Scope::new(account, region);
        let c = load::<CertRecord>(self.store.as_ref(), &format!("{}{id}", prefix(&scope))).ok()??.value;
        let mut chain = c.certificate_pem.clone();
        if let Some(extra) = &c.chain_pem {
            chain.push_str(extra);
        }
        Some(Certificate {
            arn: arn.to_string(),
            chain_pem: chain,
            private_key_pem: Secret::new(c.private_key_pem),
            domain_names: c.detail.subject_alternative_names.clone().unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests;
