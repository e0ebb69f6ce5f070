//! `spec.policySelector` (a `metav1.LabelSelector`) as the reflector API's `labelSelector`
//! query (Kubernetes selector syntax).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// An invalid selector: Flux stalls with `InvalidPolicySelector`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(String);

fn check_key(key: &str) -> Result<(), SelectorError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(SelectorError(format!("invalid label key {key:?}")))
    }
}

fn check_value(value: &str) -> Result<(), SelectorError> {
    let ok = value.is_empty()
        || (value.len() <= 63
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(SelectorError(format!("invalid label value {value:?}")))
    }
}

/// The selector as a query string; `None` selects everything (nil or empty selector).
pub fn to_query(selector: Option<&LabelSelector>) -> Result<Option<String>, SelectorError> {
    let Some(selector) = selector else {
        return Ok(None);
    };
    let mut parts = Vec::new();
    for (k, v) in selector.match_labels.iter().flatten() {
        check_key(k)?;
        check_value(v)?;
        parts.push(format!("{k}={v}"));
    }
    for expr in selector.match_expressions.iter().flatten() {
        check_key(&expr.key)?;
        let values = expr.values.clone().unwrap_or_default();
        for v in &values {
            check_value(v)?;
        }
        let key = &expr.key;
        match expr.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    return Err(SelectorError(format!(
                        "key {key:?}: for 'in', 'notin' operators, values set can't be empty"
                    )));
                }
                let op = if expr.operator == "In" { "in" } else { "notin" };
                parts.push(format!("{key} {op} ({})", values.join(",")));
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    return Err(SelectorError(format!(
                        "key {key:?}: values set must be empty for exists and does not exist"
                    )));
                }
                parts.push(if expr.operator == "Exists" {
                    key.clone()
                } else {
                    format!("!{key}")
                });
            }
            other => {
                return Err(SelectorError(format!(
                    "key {key:?}: {other:?} is not a valid label selector operator"
                )));
            }
        }
    }
    Ok(if parts.is_empty() {
        None
    } else {
        Some(parts.join(","))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn converts_labels_and_expressions() {
        assert_eq!(to_query(None).unwrap(), None);
        assert_eq!(to_query(Some(&LabelSelector::default())).unwrap(), None);
        let s = LabelSelector {
            match_labels: Some(BTreeMap::from([("team".into(), "web".into())])),
            match_expressions: Some(vec![
                req("env", "In", &["prod", "staging"]),
                req("tier", "NotIn", &["x"]),
                req("app.kubernetes.io/name", "Exists", &[]),
                req("skip", "DoesNotExist", &[]),
            ]),
        };
        assert_eq!(
            to_query(Some(&s)).unwrap().unwrap(),
            "team=web,env in (prod,staging),tier notin (x),app.kubernetes.io/name,!skip"
        );
    }

    #[test]
    fn rejects_invalid_selectors() {
        let bad_op = LabelSelector {
            match_expressions: Some(vec![req("a", "Gt", &["1"])]),
            ..LabelSelector::default()
        };
        assert!(to_query(Some(&bad_op)).is_err());
        let empty_in = LabelSelector {
            match_expressions: Some(vec![req("a", "In", &[])]),
            ..LabelSelector::default()
        };
        assert!(to_query(Some(&empty_in)).is_err());
        let bad_value = LabelSelector {
            match_labels: Some(BTreeMap::from([("a".into(), "x,y".into())])),
            ..LabelSelector::default()
        };
        assert!(to_query(Some(&bad_value)).is_err());
    }
}
