//! Listeners and their rules: Create/Describe/Modify/DeleteListener, their attributes and
//! certificates, Create/Describe/Modify/DeleteRule and SetRulePriorities.
//!
//! A load balancer's listeners and rules live in its record, so that a port or a priority is
//! taken under one compare-and-swap. A write that makes rules forward to target groups also
//! compares every load balancer of the scope it read (a target group belongs to one load
//! balancer at most) and the target groups themselves (one deleted meanwhile fails the write).

use crate::load_balancers::{forwarded_by, pairs};
use crate::records::{LbRecord, ListenerRecord, RuleRecord};
use crate::validate::{self, TgInfo, validation};
use crate::{ATTEMPTS, Elbv2, conflict, keys, listener_not_found, page, rule_not_found};
use gantry_core::{Scope, ServiceError};
use gantry_model::elbv2::*;
use gantry_runtime::records::{Before, Stored, TxnExt};
use gantry_store::Txn;
use std::cell::RefCell;

/// ELB's security policies (the ones ELB lists; a listener may name any).
pub const SSL_POLICIES: &[&str] = &[
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-1-2021-06",
    "ELBSecurityPolicy-TLS13-1-0-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04",
    "ELBSecurityPolicy-2016-08",
    "ELBSecurityPolicy-TLS-1-0-2015-04",
    "ELBSecurityPolicy-TLS-1-1-2017-01",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-2018-06",
    "ELBSecurityPolicy-FS-1-1-2019-08",
    "ELBSecurityPolicy-FS-1-2-2019-08",
    "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
    "ELBSecurityPolicy-2015-05",
];
pub const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-TLS13-1-2-2021-06";
const ALPN_POLICIES: &[&str] = &["HTTP1Only", "HTTP2Only", "HTTP2Optional", "HTTP2Preferred", "None"];

/// Where a rule ARN points in a load balancer's record.
enum RuleAt {
    Default(usize),
    Rule(usize, usize),
}

/// What a write that sets actions must also compare: the revisions of the load balancers and
/// target groups it read.
#[derive(Default)]
struct Guards(Vec<(String, i64)>);

impl Guards {
    fn apply(&self, mut txn: Txn, skip: &str) -> Txn {
        for (k, rev) in &self.0 {
            if k != skip {
                txn = txn.when(k.clone(), *rev);
            }
        }
        txn
    }
}

fn tls(protocol: &str) -> bool {
    matches!(protocol, "HTTPS" | "TLS")
}

fn rule_sort_key(r: &Rule) -> String {
    match r.priority.as_deref() {
        Some("default") | None => "99999".to_string(),
        Some(p) => format!("{:0>5}", p),
    }
}

impl Elbv2 {
    /// Checks actions for a listener of `lb` and returns them normalized, with the guards
    /// their write needs.
    fn check_actions(
        &self,
        scope: &Scope,
        lb: &LbRecord,
        protocol: &str,
        acts: &[Action],
    ) -> Result<(Vec<Action>, Guards), ServiceError> {
        let guards = RefCell::new(Guards::default());
        let lookup = |arn: &str| -> Result<TgInfo, ServiceError> {
            let tg = self.tg_by_arn(scope, arn)?;
            guards.borrow_mut().0.push((tg.key.clone(), tg.mod_revision));
            Ok(TgInfo { arn: arn.to_string(), protocol: tg.value.tg.protocol.clone().unwrap_or_default() })
        };
        let out = validate::actions(acts, lb.is_network(), protocol, &lookup)?;
        let mut guards = guards.into_inner();
        // A target group belongs to one load balancer at most.
        let targets = validate::forwarded(&out);
        let others = self.load_lbs(scope)?;
        let mut taken = Vec::new();
        for other in &others {
            guards.0.push((other.key.clone(), other.mod_revision));
            if other.value.arn() == lb.arn() {
                continue;
            }
            let used = forwarded_by(&other.value);
            taken.extend(targets.iter().filter(|t| used.contains(t)).cloned());
        }
        if !taken.is_empty() {
            taken.sort();
            taken.dedup();
            return Err(ServiceError::sender(
                "TargetGroupAssociationLimit",
                format!(
                    "The following target groups cannot be associated with more than one load balancer: {}",
                    taken.join(", ")
                ),
            ));
        }
        Ok((out, guards))
    }

    fn certificate_list(&self, certs: &[Certificate]) -> Result<Option<Vec<Certificate>>, ServiceError> {
        if certs.len() > 1 {
            return Err(validation(
                "Only one certificate, the default one, can be specified for a listener; add others with AddListenerCertificates",
            ));
        }
        let Some(c) = certs.first() else { return Ok(None) };
        let arn = c.certificate_arn.clone().unwrap_or_default();
        if self.certificates.certificate(&arn).is_none() {
            return Err(ServiceError::sender(
                "CertificateNotFound",
                format!("Certificate '{arn}' not found"),
            ));
        }
        Ok(Some(vec![Certificate { certificate_arn: Some(arn), is_default: None }]))
    }

    fn listener_by_arn(&self, scope: &Scope, arn: &str) -> Result<(Stored<LbRecord>, usize), ServiceError> {
        if let Some(keys::ArnRef::Listener { lb_name, .. }) = keys::parse_arn(scope, arn)
            && let Some(lb) = self.load_lb(scope, &lb_name)?
            && let Some(i) = lb.value.listeners.iter().position(|l| l.arn() == arn)
        {
            return Ok((lb, i));
        }
        Err(listener_not_found(&[arn.to_string()]))
    }

    fn rule_by_arn(&self, scope: &Scope, arn: &str) -> Result<(Stored<LbRecord>, RuleAt), ServiceError> {
        if let Some(keys::ArnRef::Rule { lb_name, .. }) = keys::parse_arn(scope, arn)
            && let Some(lb) = self.load_lb(scope, &lb_name)?
        {
            for (li, l) in lb.value.listeners.iter().enumerate() {
                if l.default_rule_arn() == arn {
                    return Ok((lb, RuleAt::Default(li)));
                }
                if let Some(ri) = l.rules.iter().position(|r| r.arn() == arn) {
                    return Ok((lb, RuleAt::Rule(li, ri)));
                }
            }
        }
        Err(rule_not_found(&[arn.to_string()]))
    }

    /// A rule (a listener's default rule included) as DescribeRules shows it, with its load
    /// balancer and the index of its listener.
    pub(crate) fn rule_and_listener(
        &self,
        scope: &Scope,
        arn: &str,
    ) -> Result<(Stored<LbRecord>, usize, Rule), ServiceError> {
        let (lb, at) = self.rule_by_arn(scope, arn)?;
        Ok(match at {
            RuleAt::Default(li) => {
                let rule = default_rule(&lb.value.listeners[li]);
                (lb, li, rule)
            }
            RuleAt::Rule(li, ri) => {
                let rule = lb.value.listeners[li].rules[ri].rule.clone();
                (lb, li, rule)
            }
        })
    }

    /// Protocol, port, certificates, policies of a new or modified listener, checked.
    #[allow(clippy::too_many_arguments)]
    fn listener_settings(
        &self,
        lb: &LbRecord,
        protocol: Option<String>,
        port: Option<i32>,
        certificates: Option<Vec<Certificate>>,
        ssl_policy: Option<String>,
        alpn: Option<Vec<String>>,
        current: Option<&Listener>,
    ) -> Result<Listener, ServiceError> {
        let protocol = protocol
            .or_else(|| current.and_then(|c| c.protocol.clone()))
            .ok_or_else(|| validation("A listener protocol must be specified"))?;
        let allowed: &[&str] =
            if lb.is_network() { &["TCP", "TLS", "UDP", "TCP_UDP"] } else { &["HTTP", "HTTPS"] };
        if !allowed.contains(&protocol.as_str()) {
            return Err(ServiceError::sender(
                "UnsupportedProtocol",
                format!("Listener protocol '{protocol}' must be one of '{}'", allowed.join(", ")),
            ));
        }
        if matches!(protocol.as_str(), "UDP" | "TCP_UDP") {
            return Err(ServiceError::sender(
                "UnsupportedProtocol",
                format!(
                    "Listener protocol '{protocol}' is not supported by Gantry: its load balancers carry TCP and TLS"
                ),
            ));
        }
        let port = port
            .or_else(|| current.and_then(|c| c.port))
            .ok_or_else(|| validation("A listener port must be specified"))?;
        if !(1..=65535).contains(&port) {
            return Err(validation(format!("Listener port '{port}' must be an integer from 1 to 65535")));
        }
        if let Some(other) = lb.listeners.iter().find(|l| {
            l.listener.port == Some(port) && current.is_none_or(|c| c.listener_arn != l.listener.listener_arn)
        }) {
            let _ = other;
            return Err(ServiceError::sender(
                "DuplicateListener",
                format!("A listener already exists on this port for this load balancer '{}'", lb.arn()),
            ));
        }
        let (certificates, ssl_policy) = if tls(&protocol) {
            let certs = match certificates {
                Some(c) => self.certificate_list(&c)?,
                None => current.and_then(|c| c.certificates.clone()),
            };
            if certs.as_ref().is_none_or(Vec::is_empty) {
                return Err(ServiceError::sender(
                    "CertificateNotFound",
                    format!("A certificate must be specified for {protocol} listeners"),
                ));
            }
            let policy = ssl_policy
                .or_else(|| current.and_then(|c| c.ssl_policy.clone()))
                .unwrap_or_else(|| DEFAULT_SSL_POLICY.to_string());
            if !SSL_POLICIES.contains(&policy.as_str()) {
                return Err(ServiceError::sender(
                    "SSLPolicyNotFound",
                    format!("SSL policy '{policy}' not found"),
                ));
            }
            (certs, Some(policy))
        } else {
            if certificates.as_ref().is_some_and(|c| !c.is_empty()) {
                return Err(validation(format!("Certificates cannot be specified for {protocol} listeners")));
            }
            if ssl_policy.is_some() {
                return Err(validation(format!(
                    "An SSL policy cannot be specified for {protocol} listeners"
                )));
            }
            (None, None)
        };
        let alpn = match alpn {
            Some(a) if !a.is_empty() => {
                if protocol != "TLS" {
                    return Err(validation("An ALPN policy can only be specified for TLS listeners"));
                }
                if a.len() > 1 || !ALPN_POLICIES.contains(&a[0].as_str()) {
                    return Err(ServiceError::sender(
                        "ALPNPolicyNotFound",
                        format!("ALPN policy '{}' not found", a.join(", ")),
                    ));
                }
                Some(a)
            }
            _ if protocol == "TLS" => current.and_then(|c| c.alpn_policy.clone()),
            _ => None,
        };
        Ok(Listener {
            listener_arn: current.and_then(|c| c.listener_arn.clone()),
            load_balancer_arn: Some(lb.arn().to_string()),
            port: Some(port),
            protocol: Some(protocol),
            certificates,
            ssl_policy,
            default_actions: current.and_then(|c| c.default_actions.clone()),
            alpn_policy: alpn,
            mutual_authentication: None,
        })
    }

    pub(crate) async fn create_listener(
        &self,
        scope: &Scope,
        req: CreateListenerInput,
    ) -> Result<CreateListenerOutput, ServiceError> {
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags)?;
        if req.mutual_authentication.as_ref().and_then(|m| m.mode.as_deref()).is_some_and(|m| m != "off") {
            return Err(validation("Mutual TLS authentication is not supported by Gantry"));
        }
        for _ in 0..ATTEMPTS {
            let mut lb = self.lb_by_arn(scope, &req.load_balancer_arn)?;
            let before = Before::of(scope, &lb);
            if lb.value.listeners.len() >= 50 {
                return Err(ServiceError::sender(
                    "TooManyListeners",
                    format!(
                        "The load balancer '{}' cannot have more than 50 listeners",
                        req.load_balancer_arn
                    ),
                ));
            }
            let mut listener = self.listener_settings(
                &lb.value,
                req.protocol.clone(),
                req.port,
                req.certificates.clone(),
                req.ssl_policy.clone(),
                req.alpn_policy.clone(),
                None,
            )?;
            let protocol = listener.protocol.clone().unwrap_or_default();
            let (actions, guards) = self.check_actions(scope, &lb.value, &protocol, &req.default_actions)?;
            let arn = keys::listener_arn(lb.value.arn(), &self.new_id());
            listener.listener_arn = Some(arn);
            listener.default_actions = Some(actions);
            lb.value.listeners.push(ListenerRecord {
                listener: listener.clone(),
                extra_certificates: Vec::new(),
                attributes: validate::listener_attribute_defaults(&protocol),
                tags: tags.clone(),
                default_rule_id: self.new_id(),
                default_rule_tags: Vec::new(),
                rules: Vec::new(),
            });
            let txn = guards.apply(Txn::new(), &lb.key).put_record(scope, &before, &lb.value);
            if self.commit(txn).await? {
                return Ok(CreateListenerOutput { listeners: Some(vec![listener]) });
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_listeners(
        &self,
        scope: &Scope,
        req: DescribeListenersInput,
    ) -> Result<DescribeListenersOutput, ServiceError> {
        let arns = req.listener_arns.clone().unwrap_or_default();
        let listeners: Vec<Listener> = match (&req.load_balancer_arn, arns.is_empty()) {
            (Some(_), false) => {
                return Err(validation(
                    "Listener ARNs and a load balancer ARN cannot be specified at the same time",
                ));
            }
            (None, true) => {
                return Err(validation("You must specify either listener ARNs or a load balancer ARN"));
            }
            (Some(lb_arn), true) => {
                let lb = self.lb_by_arn(scope, lb_arn)?;
                let mut ls: Vec<Listener> = lb.value.listeners.iter().map(|l| l.listener.clone()).collect();
                ls.sort_by_key(|l| l.port);
                ls
            }
            (None, false) => {
                let mut out = Vec::new();
                let mut missing = Vec::new();
                for arn in &arns {
                    match self.listener_by_arn(scope, arn) {
                        Ok((lb, i)) => out.push(lb.value.listeners[i].listener.clone()),
                        Err(_) => missing.push(arn.clone()),
                    }
                }
                if !missing.is_empty() {
                    return Err(listener_not_found(&missing));
                }
                out
            }
        };
        let key = |l: &Listener| {
            format!("{:05}!{}", l.port.unwrap_or_default(), l.listener_arn.as_deref().unwrap_or_default())
        };
        let mut listeners = listeners;
        listeners.sort_by_key(key);
        let (items, next) = page(listeners, req.marker.as_deref(), req.page_size, key)?;
        Ok(DescribeListenersOutput { listeners: Some(items), next_marker: next })
    }

    pub(crate) async fn modify_listener(
        &self,
        scope: &Scope,
        req: ModifyListenerInput,
    ) -> Result<ModifyListenerOutput, ServiceError> {
        if req.mutual_authentication.as_ref().and_then(|m| m.mode.as_deref()).is_some_and(|m| m != "off") {
            return Err(validation("Mutual TLS authentication is not supported by Gantry"));
        }
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            let current = lb.value.listeners[i].listener.clone();
            let mut listener = self.listener_settings(
                &lb.value,
                req.protocol.clone(),
                req.port,
                req.certificates.clone(),
                req.ssl_policy.clone(),
                req.alpn_policy.clone(),
                Some(&current),
            )?;
            let protocol = listener.protocol.clone().unwrap_or_default();
            let mut guards = Guards::default();
            let acts = req
                .default_actions
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| current.default_actions.clone());
            if let Some(acts) = acts {
                let (actions, g) = self.check_actions(scope, &lb.value, &protocol, &acts)?;
                listener.default_actions = Some(actions);
                guards = g;
            }
            let entry = &mut lb.value.listeners[i];
            if current.protocol.as_deref() != Some(&protocol) {
                entry.attributes = validate::listener_attribute_defaults(&protocol);
                if !tls(&protocol) {
                    entry.extra_certificates.clear();
                }
            }
            entry.listener = listener.clone();
            let txn = guards.apply(Txn::new(), &lb.key).put_record(scope, &before, &lb.value);
            if self.commit(txn).await? {
                return Ok(ModifyListenerOutput { listeners: Some(vec![listener]) });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn delete_listener(
        &self,
        scope: &Scope,
        req: DeleteListenerInput,
    ) -> Result<DeleteListenerOutput, ServiceError> {
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            lb.value.listeners.remove(i);
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(DeleteListenerOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_listener_attributes(
        &self,
        scope: &Scope,
        req: DescribeListenerAttributesInput,
    ) -> Result<DescribeListenerAttributesOutput, ServiceError> {
        let (lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
        Ok(DescribeListenerAttributesOutput { attributes: Some(listener_attributes(&lb.value.listeners[i])) })
    }

    pub(crate) async fn modify_listener_attributes(
        &self,
        scope: &Scope,
        req: ModifyListenerAttributesInput,
    ) -> Result<ModifyListenerAttributesOutput, ServiceError> {
        let changes = pairs(req.attributes.iter().map(|a| (a.key.clone(), a.value.clone())))?;
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            let entry = &mut lb.value.listeners[i];
            let protocol = entry.listener.protocol.clone().unwrap_or_default();
            validate::modify_listener_attributes(&protocol, &mut entry.attributes, &changes)?;
            let attributes = listener_attributes(entry);
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(ModifyListenerAttributesOutput { attributes: Some(attributes) });
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_listener_certificates(
        &self,
        scope: &Scope,
        req: DescribeListenerCertificatesInput,
    ) -> Result<DescribeListenerCertificatesOutput, ServiceError> {
        let (lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
        let l = &lb.value.listeners[i];
        let mut certs: Vec<Certificate> = l
            .listener
            .certificates
            .iter()
            .flatten()
            .map(|c| Certificate { certificate_arn: c.certificate_arn.clone(), is_default: Some(true) })
            .collect();
        certs.extend(
            l.extra_certificates
                .iter()
                .map(|a| Certificate { certificate_arn: Some(a.clone()), is_default: Some(false) }),
        );
        let (items, next) = page(certs, req.marker.as_deref(), req.page_size, |c| {
            format!(
                "{}{}",
                u8::from(c.is_default != Some(true)),
                c.certificate_arn.as_deref().unwrap_or_default()
            )
        })?;
        Ok(DescribeListenerCertificatesOutput { certificates: Some(items), next_marker: next })
    }

    pub(crate) async fn add_listener_certificates(
        &self,
        scope: &Scope,
        req: AddListenerCertificatesInput,
    ) -> Result<AddListenerCertificatesOutput, ServiceError> {
        let mut arns = Vec::new();
        for c in &req.certificates {
            let arn = c.certificate_arn.clone().unwrap_or_default();
            if self.certificates.certificate(&arn).is_none() {
                return Err(ServiceError::sender(
                    "CertificateNotFound",
                    format!("Certificate '{arn}' not found"),
                ));
            }
            arns.push(arn);
        }
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            let entry = &mut lb.value.listeners[i];
            if !tls(entry.listener.protocol.as_deref().unwrap_or_default()) {
                return Err(validation("Certificates can only be added to HTTPS and TLS listeners"));
            }
            for a in &arns {
                if !entry.extra_certificates.contains(a) {
                    entry.extra_certificates.push(a.clone());
                }
            }
            if entry.extra_certificates.len() > 25 {
                return Err(ServiceError::sender(
                    "TooManyCertificates",
                    "A listener can have at most 25 certificates",
                ));
            }
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(AddListenerCertificatesOutput {
                    certificates: Some(
                        arns.iter()
                            .map(|a| Certificate {
                                certificate_arn: Some(a.clone()),
                                is_default: Some(false),
                            })
                            .collect(),
                    ),
                });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn remove_listener_certificates(
        &self,
        scope: &Scope,
        req: RemoveListenerCertificatesInput,
    ) -> Result<RemoveListenerCertificatesOutput, ServiceError> {
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            let entry = &mut lb.value.listeners[i];
            for c in &req.certificates {
                let arn = c.certificate_arn.clone().unwrap_or_default();
                if entry
                    .listener
                    .certificates
                    .iter()
                    .flatten()
                    .any(|d| d.certificate_arn.as_deref() == Some(&arn))
                {
                    return Err(ServiceError::sender(
                        "OperationNotPermitted",
                        format!(
                            "The default certificate '{arn}' cannot be removed; modify the listener instead"
                        ),
                    ));
                }
                entry.extra_certificates.retain(|a| *a != arn);
            }
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(RemoveListenerCertificatesOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) async fn create_rule(
        &self,
        scope: &Scope,
        req: CreateRuleInput,
    ) -> Result<CreateRuleOutput, ServiceError> {
        if !(1..=50000).contains(&req.priority) {
            return Err(validation(format!(
                "Priority '{}' must be an integer from 1 to 50000",
                req.priority
            )));
        }
        let tags = req.tags.clone().unwrap_or_default();
        validate::tags(&tags)?;
        if req.transforms.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(validation("Rule transforms are not supported by Gantry"));
        }
        let conditions = validate::conditions(&req.conditions)?;
        for _ in 0..ATTEMPTS {
            let (mut lb, i) = self.listener_by_arn(scope, &req.listener_arn)?;
            let before = Before::of(scope, &lb);
            if lb.value.is_network() {
                return Err(validation("Rules can only be added to application load balancer listeners"));
            }
            let entry = &lb.value.listeners[i];
            if entry.rules.iter().any(|r| r.priority() == req.priority as u32) {
                return Err(ServiceError::sender(
                    "PriorityInUse",
                    format!("Priority '{}' is currently in use", req.priority),
                ));
            }
            if entry.rules.len() >= 100 {
                return Err(ServiceError::sender(
                    "TooManyRules",
                    format!("The listener '{}' cannot have more than 100 rules", req.listener_arn),
                ));
            }
            let protocol = entry.listener.protocol.clone().unwrap_or_default();
            let listener_arn = entry.arn().to_string();
            let (actions, guards) = self.check_actions(scope, &lb.value, &protocol, &req.actions)?;
            let rule = Rule {
                rule_arn: Some(keys::rule_arn(&listener_arn, &self.new_id())),
                priority: Some(req.priority.to_string()),
                conditions: Some(conditions.clone()),
                actions: Some(actions),
                is_default: Some(false),
                transforms: None,
            };
            lb.value.listeners[i].rules.push(RuleRecord { rule: rule.clone(), tags: tags.clone() });
            let txn = guards.apply(Txn::new(), &lb.key).put_record(scope, &before, &lb.value);
            if self.commit(txn).await? {
                return Ok(CreateRuleOutput { rules: Some(vec![rule]) });
            }
        }
        Err(conflict())
    }

    pub(crate) fn describe_rules(
        &self,
        scope: &Scope,
        req: DescribeRulesInput,
    ) -> Result<DescribeRulesOutput, ServiceError> {
        let arns = req.rule_arns.clone().unwrap_or_default();
        let mut rules = match (&req.listener_arn, arns.is_empty()) {
            (Some(_), false) => {
                return Err(validation("Rule ARNs and a listener ARN cannot be specified at the same time"));
            }
            (None, true) => return Err(validation("You must specify either listener ARNs or rule ARNs")),
            (Some(l), true) => {
                let (lb, i) = self.listener_by_arn(scope, l)?;
                rules_of(&lb.value.listeners[i])
            }
            (None, false) => {
                let mut out = Vec::new();
                let mut missing = Vec::new();
                for arn in &arns {
                    match self.rule_by_arn(scope, arn) {
                        Ok((lb, RuleAt::Default(li))) => out.push(default_rule(&lb.value.listeners[li])),
                        Ok((lb, RuleAt::Rule(li, ri))) => {
                            out.push(lb.value.listeners[li].rules[ri].rule.clone())
                        }
                        Err(_) => missing.push(arn.clone()),
                    }
                }
                if !missing.is_empty() {
                    return Err(rule_not_found(&missing));
                }
                out
            }
        };
        let key = |r: &Rule| format!("{}!{}", rule_sort_key(r), r.rule_arn.as_deref().unwrap_or_default());
        rules.sort_by_key(key);
        let (items, next) = page(rules, req.marker.as_deref(), req.page_size, key)?;
        Ok(DescribeRulesOutput { rules: Some(items), next_marker: next })
    }

    pub(crate) async fn modify_rule(
        &self,
        scope: &Scope,
        req: ModifyRuleInput,
    ) -> Result<ModifyRuleOutput, ServiceError> {
        if req.transforms.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(validation("Rule transforms are not supported by Gantry"));
        }
        let conditions = match req.conditions.as_ref().filter(|c| !c.is_empty()) {
            Some(c) => Some(validate::conditions(c)?),
            None => None,
        };
        for _ in 0..ATTEMPTS {
            let (mut lb, at) = self.rule_by_arn(scope, &req.rule_arn)?;
            let before = Before::of(scope, &lb);
            let li = match at {
                RuleAt::Default(li) | RuleAt::Rule(li, _) => li,
            };
            let protocol = lb.value.listeners[li].listener.protocol.clone().unwrap_or_default();
            let mut guards = Guards::default();
            let actions = match req.actions.as_ref().filter(|a| !a.is_empty()) {
                Some(a) => {
                    let (actions, g) = self.check_actions(scope, &lb.value, &protocol, a)?;
                    guards = g;
                    Some(actions)
                }
                None => None,
            };
            let rule = match at {
                RuleAt::Default(li) => {
                    if conditions.is_some() {
                        return Err(ServiceError::sender(
                            "OperationNotPermitted",
                            format!(
                                "The conditions of the default rule '{}' cannot be modified",
                                req.rule_arn
                            ),
                        ));
                    }
                    let l = &mut lb.value.listeners[li];
                    if let Some(a) = actions {
                        l.listener.default_actions = Some(a);
                    }
                    default_rule(l)
                }
                RuleAt::Rule(li, ri) => {
                    let r = &mut lb.value.listeners[li].rules[ri].rule;
                    if let Some(c) = &conditions {
                        r.conditions = Some(c.clone());
                    }
                    if let Some(a) = actions {
                        r.actions = Some(a);
                    }
                    r.clone()
                }
            };
            let txn = guards.apply(Txn::new(), &lb.key).put_record(scope, &before, &lb.value);
            if self.commit(txn).await? {
                return Ok(ModifyRuleOutput { rules: Some(vec![rule]) });
            }
        }
        Err(conflict())
    }

    pub(crate) async fn delete_rule(
        &self,
        scope: &Scope,
        req: DeleteRuleInput,
    ) -> Result<DeleteRuleOutput, ServiceError> {
        for _ in 0..ATTEMPTS {
            let (mut lb, at) = self.rule_by_arn(scope, &req.rule_arn)?;
            let before = Before::of(scope, &lb);
            match at {
                RuleAt::Default(_) => {
                    return Err(ServiceError::sender(
                        "OperationNotPermitted",
                        format!("Default rule '{}' cannot be deleted", req.rule_arn),
                    ));
                }
                RuleAt::Rule(li, ri) => {
                    lb.value.listeners[li].rules.remove(ri);
                }
            }
            if self.commit(Txn::new().put_record(scope, &before, &lb.value)).await? {
                return Ok(DeleteRuleOutput {});
            }
        }
        Err(conflict())
    }

    pub(crate) async fn set_rule_priorities(
        &self,
        scope: &Scope,
        req: SetRulePrioritiesInput,
    ) -> Result<SetRulePrioritiesOutput, ServiceError> {
        let mut wanted = Vec::new();
        for p in &req.rule_priorities {
            let arn =
                p.rule_arn.clone().ok_or_else(|| validation("Each rule priority pair needs a rule ARN"))?;
            let prio = p
                .priority
                .ok_or_else(|| validation(format!("A priority must be specified for rule '{arn}'")))?;
            if !(1..=50000).contains(&prio) {
                return Err(validation(format!("Priority '{prio}' must be an integer from 1 to 50000")));
            }
            if wanted.iter().any(|(a, _)| *a == arn) {
                return Err(validation(format!("Rule '{arn}' is listed more than once")));
            }
            wanted.push((arn, prio));
        }
        'attempt: for _ in 0..ATTEMPTS {
            // The load balancers touched, each read once.
            let mut lbs: Vec<(Stored<LbRecord>, Before)> = Vec::new();
            let mut missing = Vec::new();
            for (arn, prio) in &wanted {
                let (lb, at) = match self.rule_by_arn(scope, arn) {
                    Ok(x) => x,
                    Err(_) => {
                        missing.push(arn.clone());
                        continue;
                    }
                };
                let (li, ri) = match at {
                    RuleAt::Default(_) => {
                        return Err(ServiceError::sender(
                            "OperationNotPermitted",
                            format!("The priority of the default rule '{arn}' cannot be changed"),
                        ));
                    }
                    RuleAt::Rule(li, ri) => (li, ri),
                };
                let idx = match lbs.iter().position(|(l, _)| l.key == lb.key) {
                    Some(i) => {
                        if lbs[i].0.mod_revision != lb.mod_revision {
                            continue 'attempt;
                        }
                        i
                    }
                    None => {
                        let before = Before::of(scope, &lb);
                        lbs.push((lb, before));
                        lbs.len() - 1
                    }
                };
                lbs[idx].0.value.listeners[li].rules[ri].rule.priority = Some(prio.to_string());
            }
            if !missing.is_empty() {
                return Err(rule_not_found(&missing));
            }
            for (lb, _) in &lbs {
                for l in &lb.value.listeners {
                    let mut seen = std::collections::BTreeSet::new();
                    for r in &l.rules {
                        if !seen.insert(r.priority()) {
                            return Err(ServiceError::sender(
                                "PriorityInUse",
                                format!("Priority '{}' is currently in use", r.priority()),
                            ));
                        }
                    }
                }
            }
            let mut txn = Txn::new();
            for (lb, before) in &lbs {
                txn = txn.put_record(scope, before, &lb.value);
            }
            if self.commit(txn).await? {
                let mut rules = Vec::new();
                for (arn, _) in &wanted {
                    for (lb, _) in &lbs {
                        for l in &lb.value.listeners {
                            rules.extend(l.rules.iter().filter(|r| r.arn() == arn).map(|r| r.rule.clone()));
                        }
                    }
                }
                return Ok(SetRulePrioritiesOutput { rules: Some(rules) });
            }
        }
        Err(conflict())
    }
}

/// A listener's default rule, as DescribeRules shows it.
pub(crate) fn default_rule(l: &ListenerRecord) -> Rule {
    Rule {
        rule_arn: Some(l.default_rule_arn()),
        priority: Some("default".into()),
        conditions: Some(Vec::new()),
        actions: l.listener.default_actions.clone(),
        is_default: Some(true),
        transforms: None,
    }
}

/// A listener's rules in evaluation order: by priority, the default rule last.
pub(crate) fn rules_of(l: &ListenerRecord) -> Vec<Rule> {
    let mut rules: Vec<&RuleRecord> = l.rules.iter().collect();
    rules.sort_by_key(|r| r.priority());
    let mut out: Vec<Rule> = rules.into_iter().map(|r| r.rule.clone()).collect();
    out.push(default_rule(l));
    out
}

fn listener_attributes(l: &ListenerRecord) -> Vec<ListenerAttribute> {
    l.attributes
        .iter()
        .map(|(k, v)| ListenerAttribute { key: Some(k.clone()), value: Some(v.clone()) })
        .collect()
}
