//! Valid-looking ECS requests generated from today's ECS model (`fuzz/model/ecs-inputs.json`,
//! the request shapes of botocore's `ecs/2014-11-13/service-2.json`; `fuzz/model/trim.py`
//! writes it). Identifier fields take names and ARNs that exist in the fuzzed cluster, so that
//! requests get past lookups into validation, placement and apply.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::mutate::{self, pick};

const MODEL: &str = include_str!("../model/ecs-inputs.json");

#[derive(Deserialize)]
pub struct Model {
    #[serde(rename = "targetPrefix")]
    pub target_prefix: String,
    /// Operation → its input shape (none for an operation without input).
    pub operations: BTreeMap<String, Option<String>>,
    shapes: BTreeMap<String, Shape>,
}

#[derive(Deserialize)]
struct Shape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: BTreeMap<String, MemberRef>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<MemberRef>,
    key: Option<MemberRef>,
    value: Option<MemberRef>,
    #[serde(default, rename = "enum")]
    values: Vec<String>,
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Deserialize)]
struct MemberRef {
    shape: String,
}

/// Names and ARNs that exist in the fuzzed cluster, by the (lower-cased) member that holds them.
#[derive(Default, Clone)]
pub struct Names {
    pub by_field: BTreeMap<&'static str, Vec<String>>,
}

impl Names {
    /// A value for the member `field`, if it names something the cluster holds.
    fn for_field(&self, rng: &mut StdRng, field: &str) -> Option<String> {
        let field = field.to_ascii_lowercase();
        let key = match field.as_str() {
            "cluster" | "clusters" => "cluster",
            "taskdefinition" | "family" | "familyprefix" => "taskDefinition",
            "service" | "services" | "servicename" => "service",
            "containerinstance" | "containerinstances" => "containerInstance",
            "task" | "tasks" => "task",
            "resourcearn" | "targetid" => "resource",
            _ => return None,
        };
        let pool = self.by_field.get(key)?;
        (!pool.is_empty()).then(|| pick(rng, pool).clone())
    }

    /// Files an ARN under the field that would name it.
    pub fn learn(&mut self, arn: &str, cap: usize, rng: &mut StdRng) {
        let key = match arn.split(':').nth(5).and_then(|r| r.split('/').next()) {
            Some("cluster") => "cluster",
            Some("task-definition") => "taskDefinition",
            Some("service") => "service",
            Some("container-instance") => "containerInstance",
            Some("task") => "task",
            _ => return,
        };
        for key in [key, "resource"] {
            let pool = self.by_field.entry(key).or_default();
            if pool.len() < cap {
                pool.push(arn.to_string());
            } else {
                let i = rng.gen_range(0..cap);
                pool[i] = arn.to_string();
            }
        }
    }
}

impl Model {
    pub fn load() -> Model {
        serde_json::from_str(MODEL).expect("fuzz/model/ecs-inputs.json is the trimmed botocore model")
    }

    /// A request body for `operation`, valid as far as the model tells.
    pub fn request(&self, rng: &mut StdRng, operation: &str, names: &Names) -> Value {
        match self.operations.get(operation).and_then(Option::as_ref) {
            Some(shape) => self.value(rng, shape, "", names, 0),
            None => json!({}),
        }
    }

    fn value(&self, rng: &mut StdRng, shape_name: &str, field: &str, names: &Names, depth: usize) -> Value {
        let Some(shape) = self.shapes.get(shape_name) else {
            return Value::Null;
        };
        match shape.kind.as_str() {
            "structure" => {
                let mut map = Map::new();
                for (name, member) in &shape.members {
                    let required = shape.required.contains(name);
                    // Few optional members at the top: today's model has many that ecsd refuses
                    // (capacity providers, awsvpc, …), and a request with none of them reaches
                    // placement and apply.
                    let chance = match depth {
                        0 => 6,
                        1 | 2 => 3,
                        _ => 8,
                    };
                    // A small structure (a tag, a strategy, a port mapping) is all but empty
                    // without its members, whatever the model calls required.
                    let small = shape.members.len() <= 4;
                    if required || (small && rng.gen_ratio(3, 4)) || rng.gen_ratio(1, chance) {
                        map.insert(name.clone(), self.value(rng, &member.shape, name, names, depth + 1));
                    }
                }
                Value::Object(map)
            }
            "list" => {
                let min = shape.min.unwrap_or(0.0) as usize;
                let len = rng.gen_range(min..=min.max(if depth < 4 { 3 } else { 1 }));
                let member = shape.member.as_ref().map(|m| m.shape.as_str()).unwrap_or("");
                Value::Array(
                    (0..len)
                        .map(|_| self.value(rng, member, field, names, depth + 1))
                        .collect(),
                )
            }
            "map" => {
                let mut map = Map::new();
                let (key, value) = (shape.key.as_ref(), shape.value.as_ref());
                if let (Some(key), Some(value)) = (key, value) {
                    for _ in 0..rng.gen_range(0..3) {
                        let k = match self.value(rng, &key.shape, "", names, depth + 1) {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        map.insert(k, self.value(rng, &value.shape, "", names, depth + 1));
                    }
                }
                Value::Object(map)
            }
            "string" => {
                if let Some(name) = names.for_field(rng, field).filter(|_| rng.gen_ratio(7, 8)) {
                    return Value::String(name);
                }
                if !shape.values.is_empty() && rng.gen_ratio(15, 16) {
                    return json!(pick(rng, &shape.values));
                }
                let min = shape.min.unwrap_or(1.0) as usize;
                let max = (shape.max.unwrap_or(24.0) as usize).clamp(min, min + 24);
                Value::String({
                    let n = rng.gen_range(min..=max);
                    name_like(rng, n)
                })
            }
            "integer" | "long" => {
                let min = shape.min.unwrap_or(0.0) as i64;
                let max = shape.max.map(|m| m as i64).unwrap_or(2048).min(min + 4096);
                json!(rng.gen_range(min..=max.max(min)))
            }
            "double" | "float" => json!(rng.gen_range(0.0..100.0)),
            "boolean" => json!(rng.gen_bool(0.5)),
            "timestamp" => json!(rng.gen_range(1_500_000_000..1_900_000_000)),
            "blob" => json!("aGVsbG8="),
            _ => Value::Null,
        }
    }
}

/// Letters, digits, `-` and `_`: what most ECS names allow.
fn name_like(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABC0123456789-_";
    let s: String = (0..len).map(|_| *pick(rng, ALPHABET) as char).collect();
    if s.is_empty() || rng.gen_ratio(1, 10) {
        mutate::random_text(rng, len)
    } else {
        s
    }
}
