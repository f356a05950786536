//! DescribeParameters and the filters it shares with GetParametersByPath.

use crate::{ParamRecord, parameter_arn, validation};
use gantry_core::{Scope, ServiceError};
use gantry_model::ssm as m;

/// MaxResults: 0 (absent) is the default; otherwise 1..=max.
pub fn limit(max_results: Option<i32>, max: i32) -> Result<usize, ServiceError> {
    match max_results {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) if n < 1 => Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value greater than or equal to 1"
        ))),
        Some(n) => Err(validation(format!(
            "1 validation error detected: Value '{n}' at 'maxResults' failed to satisfy constraint: Member must have value less than or equal to {max}"
        ))),
    }
}

/// The key a NextToken resumes after.
pub fn after(token: Option<&str>) -> Result<Option<String>, ServiceError> {
    match token {
        None | Some("") => Ok(None),
        Some(t) => gantry_core::page::decode(t).map(Some).ok_or_else(|| {
            ServiceError::sender("InvalidNextToken", format!("The specified token is not valid: {t}"))
        }),
    }
}

fn invalid_filter_value(v: &str) -> ServiceError {
    ServiceError::sender("InvalidFilterValue", format!("The filter value is not valid: {v}"))
}

/// Whether a ParameterStringFilter passes a parameter (its latest version).
pub fn passes(_scope: &Scope, r: &ParamRecord, f: &m::ParameterStringFilter) -> bool {
    let v = r.latest();
    let values = f.values.as_deref().unwrap_or_default();
    let option = f.option.as_deref().unwrap_or("Equals");
    let test = |field: &str| {
        values.iter().any(|x| match option {
            "BeginsWith" => field.starts_with(x.as_str()),
            "Contains" => field.contains(x.as_str()),
            _ => field == x,
        })
    };
    match f.key.as_str() {
        "Name" => {
            let bare = r.name.trim_start_matches('/');
            values.iter().any(|x| {
                let x = x.trim_start_matches('/');
                match option {
                    "BeginsWith" => bare.starts_with(x),
                    "Contains" => bare.contains(x),
                    _ => bare == x,
                }
            })
        }
        "Type" => test(&v.kind),
        "KeyId" => v.key_id.as_deref().is_some_and(test),
        "Tier" => test(&v.tier),
        "DataType" => test(&v.data_type),
        "Label" => r.versions.iter().any(|v| v.labels.iter().any(|l| test(l))),
        "Path" => values.iter().any(|p| {
            let base = if p.ends_with('/') { p.clone() } else { format!("{p}/") };
            r.name.starts_with(&base) && (option == "Recursive" || !r.name[base.len()..].contains('/'))
        }),
        k => match k.strip_prefix("tag:") {
            Some(tag) => {
                r.tags.iter().any(|t| t.key == tag && (values.is_empty() || values.contains(&t.value)))
            }
            None => false,
        },
    }
}

pub fn describe(
    scope: &Scope,
    all: Vec<ParamRecord>,
    req: m::DescribeParametersRequest,
) -> Result<m::DescribeParametersResult, ServiceError> {
    if req.filters.is_some() && req.parameter_filters.is_some() {
        return Err(validation("You can use either Filters or ParameterFilters in a single request."));
    }
    let limit = limit(req.max_results, 50)?;
    let after = after(req.next_token.as_deref())?;
    // Filters (the older form): Name, Type, KeyId; any value matches (Name by prefix).
    let mut filters: Vec<m::ParameterStringFilter> = Vec::new();
    for f in req.filters.iter().flatten() {
        let option = match f.key.as_str() {
            "Name" => "BeginsWith",
            "Type" | "KeyId" => "Equals",
            other => {
                return Err(ServiceError::sender(
                    "InvalidFilterKey",
                    format!(
                        "The following filter key is not valid: {other}. Valid filter keys include: [Name, Type, KeyId]."
                    ),
                ));
            }
        };
        filters.push(m::ParameterStringFilter {
            key: f.key.clone(),
            option: Some(option.into()),
            values: Some(f.values.clone()),
        });
    }
    for f in req.parameter_filters.iter().flatten() {
        let ok_key = ["Name", "Type", "KeyId", "Path", "Tier", "DataType", "Label"].contains(&f.key.as_str())
            || f.key.starts_with("tag:");
        if !ok_key {
            return Err(ServiceError::sender(
                "InvalidFilterKey",
                format!(
                    "The following filter key is not valid: {}. Valid filter keys include: [Path, Name, Type, KeyId, Tier, DataType, Label, tag:KEY].",
                    f.key
                ),
            ));
        }
        let option = f.option.as_deref().unwrap_or("Equals");
        let allowed: &[&str] = match f.key.as_str() {
            "Path" => &["Recursive", "OneLevel"],
            "Name" => &["Equals", "BeginsWith", "Contains"],
            k if k.starts_with("tag:") => &["Equals"],
            _ => &["Equals", "BeginsWith"],
        };
        if f.option.is_some() && !allowed.contains(&option) {
            return Err(ServiceError::sender(
                "InvalidFilterOption",
                format!("The filter option is not valid: {option}. Valid options include: {allowed:?}."),
            ));
        }
        if f.key == "Type" {
            for v in f.values.iter().flatten() {
                if !["String", "StringList", "SecureString"].contains(&v.as_str()) {
                    return Err(invalid_filter_value(v));
                }
            }
        }
        let mut f = f.clone();
        if f.key == "Path" && f.option.is_none() {
            f.option = Some("OneLevel".into());
        }
        filters.push(f);
    }
    let items: Vec<ParamRecord> = all
        .into_iter()
        .filter(|r| filters.iter().all(|f| passes(scope, r, f)))
        .filter(|r| after.as_deref().is_none_or(|a| r.name.as_str() > a))
        .collect();
    let (page, next_token) = gantry_core::page::paginate(items, limit, |r| r.name.clone());
    let parameters = page
        .iter()
        .map(|r| {
            let v = r.latest();
            m::ParameterMetadata {
                name: Some(r.name.clone()),
                arn: Some(parameter_arn(scope, &r.name)),
                r#type: Some(v.kind.clone()),
                key_id: v.key_id.clone(),
                last_modified_date: Some(v.modified),
                last_modified_user: Some(v.user.clone()),
                description: v.description.clone(),
                allowed_pattern: v.allowed_pattern.clone(),
                version: v.version,
                tier: Some(v.tier.clone()),
                policies: Some(vec![]),
                data_type: Some(v.data_type.clone()),
            }
        })
        .collect();
    Ok(m::DescribeParametersResult { parameters: Some(parameters), next_token })
}
