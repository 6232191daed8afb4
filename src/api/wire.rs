//! ECS JSON shapes shared by several actions, with the validation rules the reference gives them.

use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::model::Tag;

/// Most tags on a resource.
pub const MAX_TAGS: usize = 50;

/// A tag as ECS JSON spells it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TagWire {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
}

/// `{arn, reason}` of a Describe* item that could not be returned.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub arn: String,
    pub reason: String,
}

/// `{name, value}` pairs, as in cluster statistics.
#[derive(Debug, Clone, Serialize)]
pub struct KeyValuePair {
    pub name: String,
    pub value: String,
}

/// Characters of tag keys and values: letters, separators, digits and `_ . : / + = - @`.
fn tag_char_ok(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric() || c.is_whitespace() || "_.:/+=-@".contains(c)
}

/// Validates `tags` (field name `field`) and converts them.
pub fn tags_from_wire(field: &str, tags: Option<Vec<TagWire>>) -> Result<Vec<Tag>, ApiError> {
    let tags = tags.unwrap_or_default();
    if tags.len() > MAX_TAGS {
        return Err(ApiError::InvalidParameter(format!(
            "{field}: at most {MAX_TAGS} tags are allowed, got {}",
            tags.len()
        )));
    }
    let mut out: Vec<Tag> = Vec::with_capacity(tags.len());
    for (i, tag) in tags.into_iter().enumerate() {
        let key = tag.key.unwrap_or_default();
        let value = tag.value.unwrap_or_default();
        let key_len = key.chars().count();
        if !(1..=128).contains(&key_len) {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].key: must be 1 to 128 characters"
            )));
        }
        if value.chars().count() > 256 {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].value: must be at most 256 characters"
            )));
        }
        if !key.chars().all(tag_char_ok) {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].key: may contain only letters, digits, spaces and _ . : / + = - @"
            )));
        }
        if !value.chars().all(tag_char_ok) {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].value: may contain only letters, digits, spaces and _ . : / + = - @"
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].key: the aws: prefix is reserved"
            )));
        }
        if out.iter().any(|t| t.key == key) {
            return Err(ApiError::InvalidParameter(format!(
                "{field}[{i}].key: duplicate tag key {key}"
            )));
        }
        out.push(Tag { key, value });
    }
    Ok(out)
}

/// Converts stored tags to the wire.
pub fn tags_to_wire(tags: &[Tag]) -> Vec<TagWire> {
    tags.iter()
        .map(|t| TagWire {
            key: Some(t.key.clone()),
            value: Some(t.value.clone()),
        })
        .collect()
}

/// Epoch milliseconds as ECS timestamps: epoch seconds with a millisecond fraction.
pub fn epoch_seconds(ms: u64) -> serde_json::Value {
    serde_json::json!(ms as f64 / 1000.0)
}

/// Checks `maxResults` against `1..=max` and returns it, or `default` when absent.
pub fn max_results(value: Option<i64>, max: usize, default: usize) -> Result<usize, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        Some(n) => Err(ApiError::InvalidParameter(format!(
            "maxResults: must be between 1 and {max}, got {n}"
        ))),
    }
}

/// Encodes a pagination position as an opaque token of list `kind`, bound to `params`: the
/// request's parameters that choose the list's items (a canonical rendering, the same on every
/// node), so that it is refused with other parameters, by another list, or altered.
pub fn encode_token(kind: &str, params: &str, position: &str) -> String {
    let check = token_check(kind, params, position);
    format!("{kind}.{check:016x}.{position}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a token made by [`encode_token`] for `kind` and `params`. Any other token, whatever it
/// decodes to, is an `InvalidParameterException` that names `nextToken`.
pub fn decode_token(kind: &str, params: &str, token: &str) -> Result<String, ApiError> {
    let invalid = || ApiError::InvalidParameter("nextToken: invalid or expired pagination token".to_string());
    if token.len() % 2 != 0 || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let rest = text
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or_else(invalid)?;
    let (check, position) = rest.split_at_checked(16).ok_or_else(invalid)?;
    let position = position.strip_prefix('.').ok_or_else(invalid)?;
    let check = u64::from_str_radix(check, 16).map_err(|_| invalid())?;
    if check != token_check(kind, params, position) {
        return Err(invalid());
    }
    Ok(position.to_string())
}

/// What a token carries to show it was made here, for this list and these parameters. Not a
/// secret: it keeps out tokens of other lists, parameters or services and altered ones; a
/// client that computes one on purpose gets no more than a page of the same list.
fn token_check(kind: &str, params: &str, position: &str) -> u64 {
    let mut bytes = b"ecsd-page-token\0".to_vec();
    for part in [kind, params, position] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    crate::model::stable_hash(&bytes)
}

/// One page of `matching` (items after the token's position, in key order): `{field: [ARN…]}`
/// plus `nextToken` when more follow.
pub fn page<T>(
    matching: &[T],
    limit: usize,
    field: &str,
    (kind, params): (&str, &str),
    arn: impl Fn(&T) -> &str,
    position: impl Fn(&T) -> &str,
) -> serde_json::Value {
    let page = &matching[..matching.len().min(limit)];
    let mut out = serde_json::json!({ field: page.iter().map(&arn).collect::<Vec<_>>() });
    if matching.len() > page.len() {
        if let Some(last) = page.last() {
            out["nextToken"] = serde_json::json!(encode_token(kind, params, position(last)));
        }
    }
    out
}

/// The identifiers of a Describe call: 1 to `max` of them.
pub fn describe_ids(field: &str, given: Option<Vec<String>>, max: usize) -> Result<Vec<String>, ApiError> {
    let given = given.unwrap_or_default();
    if given.is_empty() || given.len() > max {
        return Err(ApiError::InvalidParameter(format!("{field}: give 1 to {max} {field}")));
    }
    Ok(given)
}

/// Whether `include` asks for TAGS; `also` lists other values that are accepted and ignored.
pub fn include_tags(include: Option<Vec<String>>, also: &[&str]) -> Result<bool, ApiError> {
    let mut tags = false;
    for (i, value) in include.unwrap_or_default().iter().enumerate() {
        match value.as_str() {
            "TAGS" => tags = true,
            other if also.contains(&other) => {}
            other => return Err(ApiError::InvalidParameter(format!("include[{i}]: {other} is not TAGS"))),
        }
    }
    Ok(tags)
}

/// The `{arn, reason: MISSING}` failure of an identifier that names nothing.
pub fn missing(arn: String) -> Failure {
    Failure {
        arn,
        reason: "MISSING".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> TagWire {
        TagWire {
            key: Some(key.into()),
            value: Some(value.into()),
        }
    }

    #[test]
    fn tag_rules() {
        assert!(tags_from_wire("tags", Some(vec![tag("team", "a b/c:d+e=f@g-h_i.j")])).is_ok());
        let err = tags_from_wire("tags", Some(vec![tag("", "v")])).unwrap_err();
        assert_eq!(err.to_string(), "tags[0].key: must be 1 to 128 characters");
        assert!(tags_from_wire("tags", Some(vec![tag(&"k".repeat(129), "v")])).is_err());
        assert!(tags_from_wire("tags", Some(vec![tag("k", &"v".repeat(257))])).is_err());
        assert!(tags_from_wire("tags", Some(vec![tag("k", "semi;colon")])).is_err());
        assert!(tags_from_wire("tags", Some(vec![tag("k", "1"), tag("k", "2")])).is_err());
        let many: Vec<TagWire> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(tags_from_wire("tags", Some(many)).is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let t = encode_token("clusters", "", "web-1");
        assert_eq!(decode_token("clusters", "", &t).unwrap(), "web-1");
        assert!(decode_token("tasks", "", &t).is_err());
        assert!(decode_token("clusters", "x", &t).is_err());
        assert!(decode_token("clusters", "", "zz").is_err());
        assert!(decode_token("clusters", "", "abc").is_err());
        // A position that holds the separator, and one that is empty.
        let t = encode_token("tasks", "p", "a.b");
        assert_eq!(decode_token("tasks", "p", &t).unwrap(), "a.b");
        let t = encode_token("tasks", "p", "");
        assert_eq!(decode_token("tasks", "p", &t).unwrap(), "");
        // Well-formed but not made here: the earlier format, and an altered position.
        let hex = |text: &str| text.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        assert!(decode_token("clusters", "", &hex("clusters.web-1")).is_err());
        let genuine = String::from_utf8(
            (0..t.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&t[i..i + 2], 16).unwrap())
                .collect(),
        )
        .unwrap();
        assert!(decode_token("tasks", "p", &hex(&format!("{genuine}x"))).is_err());
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(max_results(None, 100, 100).unwrap(), 100);
        assert_eq!(max_results(Some(1), 100, 100).unwrap(), 1);
        assert!(max_results(Some(0), 100, 100).is_err());
        assert!(max_results(Some(101), 100, 100).is_err());
    }
}
