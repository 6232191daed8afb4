//! A service's placement, stored typed and validated: its strategies and constraints are parsed
//! once, when the request is validated, and a stored record that holds one that does not parse
//! does not decode (it is refused, never dropped). The rest of what CreateService stores is
//! echoed as given.
//!
//! The stored JSON is the API's echo, byte for byte: `{"field": …, "type": …}` and
//! `{"expression": …, "type": …}`, with the spec's keys in order, as earlier versions wrote it.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A placement strategy, as the placement engine applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Least remaining CPU (or memory) first.
    Binpack(BinpackField),
    /// Fewest tasks of the group in the instance's bucket first.
    Spread(SpreadField),
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinpackField {
    Cpu,
    Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpreadField {
    /// `instanceId` or `host`: each instance is its own bucket.
    Instance,
    /// `attribute:<name>`: instances with the same value share a bucket.
    Attribute(String),
}

impl Strategy {
    /// Parses a `{type, field}` pair as the API gives it, with an error naming what is wrong.
    pub fn parse(kind: &str, field: Option<&str>) -> Result<Strategy, String> {
        match (kind, field) {
            ("random", None) => Ok(Strategy::Random),
            ("random", Some(f)) => Err(format!("the random strategy takes no field, got {f}")),
            ("binpack", Some(f)) if f.eq_ignore_ascii_case("cpu") => Ok(Strategy::Binpack(BinpackField::Cpu)),
            ("binpack", Some(f)) if f.eq_ignore_ascii_case("memory") => Ok(Strategy::Binpack(BinpackField::Memory)),
            ("binpack", f) => Err(format!(
                "the binpack strategy takes the field cpu or memory, got {}",
                f.unwrap_or("none")
            )),
            ("spread", Some(f)) if f == "instanceId" || f == "host" => Ok(Strategy::Spread(SpreadField::Instance)),
            ("spread", Some(f)) => match f.strip_prefix("attribute:") {
                Some(name) if !name.is_empty() => Ok(Strategy::Spread(SpreadField::Attribute(name.to_string()))),
                _ => Err(format!(
                    "the spread strategy takes instanceId, host or attribute:<name>, got {f}"
                )),
            },
            ("spread", None) => Err("the spread strategy needs a field".to_string()),
            (other, _) => Err(format!("{other} is not one of random, spread, binpack")),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Strategy::Binpack(_) => "binpack",
            Strategy::Spread(_) => "spread",
            Strategy::Random => "random",
        }
    }
}

/// A strategy as a request gave it: parsed, with its field as spelled (ECS echoes `MEMORY` or
/// `host` as given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct PlacementStrategy {
    pub strategy: Strategy,
    field: Option<String>,
}

impl PlacementStrategy {
    pub fn parse(kind: &str, field: Option<&str>) -> Result<PlacementStrategy, String> {
        Ok(PlacementStrategy {
            strategy: Strategy::parse(kind, field)?,
            field: field.map(str::to_string),
        })
    }

    /// The ECS JSON of the strategy: `{type, field}`.
    pub fn to_json(&self) -> Value {
        Value::Object(self.clone().into())
    }
}

impl From<PlacementStrategy> for Map<String, Value> {
    fn from(s: PlacementStrategy) -> Self {
        let mut m = Map::new();
        m.insert("type".into(), Value::from(s.strategy.kind()));
        if let Some(f) = s.field {
            m.insert("field".into(), Value::from(f));
        }
        m
    }
}

impl TryFrom<Map<String, Value>> for PlacementStrategy {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        let kind = m.get("type").and_then(Value::as_str).unwrap_or_default();
        PlacementStrategy::parse(kind, m.get("field").and_then(Value::as_str))
    }
}

/// A placement constraint's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConstraintKind {
    /// Each task of the launch on a different instance.
    DistinctInstance,
    /// Only instances that the cluster query language expression selects.
    MemberOf,
}

/// A placement constraint as a request or a task definition gave it. A `memberOf` constraint
/// has a non-empty expression (whose syntax the API checks with `cql` before it stores one); a
/// `distinctInstance` one has none but an empty one, which ECS tolerates and echoes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
pub struct PlacementConstraint {
    pub kind: ConstraintKind,
    expression: Option<String>,
}

impl PlacementConstraint {
    /// Parses a `{type, expression}` pair as the API gives it; the error names the field
    /// (`type` or `expression`) and what is wrong with it.
    pub fn parse(kind: Option<&str>, expression: Option<&str>) -> Result<PlacementConstraint, (&'static str, String)> {
        let kind = match (kind, expression.filter(|e| !e.is_empty())) {
            (Some("distinctInstance"), None) => ConstraintKind::DistinctInstance,
            (Some("distinctInstance"), Some(_)) => {
                return Err(("expression", "distinctInstance takes no expression".into()))
            }
            (Some("memberOf"), Some(_)) => ConstraintKind::MemberOf,
            (Some("memberOf"), None) => return Err(("expression", "memberOf needs an expression".into())),
            (Some(other), _) => return Err(("type", format!("{other} is not one of distinctInstance, memberOf"))),
            (None, _) => return Err(("type", "is required".into())),
        };
        Ok(PlacementConstraint {
            kind,
            expression: expression.map(str::to_string),
        })
    }

    /// A `memberOf` constraint's expression.
    pub fn member_of(&self) -> Option<&str> {
        match self.kind {
            ConstraintKind::MemberOf => self.expression.as_deref(),
            ConstraintKind::DistinctInstance => None,
        }
    }

    /// The ECS JSON of the constraint: `{type, expression}`.
    pub fn to_json(&self) -> Value {
        Value::Object(self.clone().into())
    }
}

impl From<PlacementConstraint> for Map<String, Value> {
    fn from(c: PlacementConstraint) -> Self {
        let mut m = Map::new();
        let kind = match c.kind {
            ConstraintKind::DistinctInstance => "distinctInstance",
            ConstraintKind::MemberOf => "memberOf",
        };
        m.insert("type".into(), Value::from(kind));
        if let Some(e) = c.expression {
            m.insert("expression".into(), Value::from(e));
        }
        m
    }
}

impl TryFrom<Map<String, Value>> for PlacementConstraint {
    type Error = String;

    fn try_from(m: Map<String, Value>) -> Result<Self, String> {
        PlacementConstraint::parse(
            m.get("type").and_then(Value::as_str),
            m.get("expression").and_then(Value::as_str),
        )
        .map_err(|(field, why)| format!("placement constraint {field}: {why}"))
    }
}

const STRATEGY: &str = "placementStrategy";
const CONSTRAINTS: &str = "placementConstraints";

/// What CreateService stores beyond the service's own fields: its placement, typed, and the
/// request fields echoed as given (loadBalancers, serviceRegistries, roleArn,
/// healthCheckGracePeriodSeconds, enableECSManagedTags, propagateTags).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct ServiceSpec {
    pub placement_strategy: Vec<PlacementStrategy>,
    pub placement_constraints: Vec<PlacementConstraint>,
    /// The other fields, by their ECS name.
    pub echoed: Map<String, Value>,
}

impl ServiceSpec {
    /// The spec as ECS JSON, every field by its ECS name.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = self.echoed.clone();
        m.insert(
            STRATEGY.into(),
            self.placement_strategy.iter().map(PlacementStrategy::to_json).collect(),
        );
        m.insert(
            CONSTRAINTS.into(),
            self.placement_constraints
                .iter()
                .map(PlacementConstraint::to_json)
                .collect(),
        );
        m
    }

    /// An echoed string field (`propagateTags`, `roleArn`).
    pub fn text(&self, key: &str) -> Option<&str> {
        self.echoed.get(key).and_then(Value::as_str)
    }
}

impl From<ServiceSpec> for Value {
    fn from(spec: ServiceSpec) -> Self {
        Value::Object(spec.to_json())
    }
}

impl TryFrom<Value> for ServiceSpec {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        let mut echoed = match value {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => return Err(format!("a service spec is an object, not {other}")),
        };
        let mut list = |key: &str| match echoed.remove(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items),
            Some(other) => Err(format!("{key}: a list, not {other}")),
        };
        let strategies = list(STRATEGY)?;
        let constraints = list(CONSTRAINTS)?;
        Ok(ServiceSpec {
            placement_strategy: strategies
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{STRATEGY}: {e}"))?,
            placement_constraints: constraints
                .into_iter()
                .map(serde_json::from_value)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{CONSTRAINTS}: {e}"))?,
            echoed,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_spec_stores_the_json_that_earlier_versions_wrote() {
        // The bytes of a spec that CreateService stored before the placement was typed.
        let stored = r#"{"enableECSManagedTags":true,"loadBalancers":[],"placementConstraints":[{"expression":"attribute:ecs.os-type == linux","type":"memberOf"},{"type":"distinctInstance"}],"placementStrategy":[{"field":"MEMORY","type":"binpack"},{"field":"host","type":"spread"},{"type":"random"}],"propagateTags":"SERVICE","serviceRegistries":[]}"#;
        let spec: ServiceSpec = serde_json::from_str(stored).unwrap();
        assert_eq!(
            spec.placement_strategy
                .iter()
                .map(|s| s.strategy.clone())
                .collect::<Vec<_>>(),
            vec![
                Strategy::Binpack(BinpackField::Memory),
                Strategy::Spread(SpreadField::Instance),
                Strategy::Random
            ]
        );
        assert_eq!(
            spec.placement_constraints[0].member_of(),
            Some("attribute:ecs.os-type == linux")
        );
        assert_eq!(spec.placement_constraints[1].kind, ConstraintKind::DistinctInstance);
        assert_eq!(spec.text("propagateTags"), Some("SERVICE"));
        assert_eq!(serde_json::to_string(&spec).unwrap(), stored);
    }

    #[test]
    fn a_stored_strategy_or_constraint_that_does_not_parse_is_refused() {
        for bad in [
            json!({"placementStrategy": [{"type": "binpack", "field": "disk"}]}),
            json!({"placementStrategy": [{"field": "cpu"}]}),
            json!({"placementConstraints": [{"type": "memberOf"}]}),
            json!({"placementConstraints": [{"type": "nearby"}]}),
            json!({"placementConstraints": {"type": "memberOf"}}),
            json!([]),
        ] {
            assert!(serde_json::from_value::<ServiceSpec>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_empty_spec_reads_as_no_placement() {
        for empty in [json!({}), Value::Null] {
            let spec: ServiceSpec = serde_json::from_value(empty).unwrap();
            assert!(spec.placement_strategy.is_empty() && spec.placement_constraints.is_empty());
        }
    }
}
