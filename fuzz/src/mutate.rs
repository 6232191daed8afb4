//! Mutations: of JSON documents (structure-aware: a value replaced by a hostile one, a key
//! removed or added, an array grown) and of raw bytes (flips, splices, truncation).

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// Picks one element of a non-empty slice.
pub fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Values chosen to break assumptions: edges of every integer type, floats where integers
/// belong, empty, huge and odd strings, deep nesting, big arrays, every JSON type.
pub fn hostile(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..24) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(i32::MAX),
        3 => json!(i32::MAX as i64 + 1),
        4 => json!(i64::MAX),
        5 => json!(i64::MIN),
        6 => json!(u64::MAX),
        7 => json!(1e308),
        8 => json!(-0.5),
        9 => json!(""),
        10 => json!(" "),
        11 => Value::String("x".repeat(rng.gen_range(256..70_000))),
        12 => json!("\u{0000}\u{001f}\u{202e}ü🚀\\\""),
        13 => json!("(((((((((("),
        14 => json!("attribute:ecs.x =~ (a+)+$"),
        15 => json!("arn:aws:ecs:us-east-1:000000000000:task/../../x"),
        16 => Value::Null,
        17 => json!(true),
        18 => json!({}),
        19 => json!([]),
        20 => nested(rng.gen_range(16..300)),
        21 => Value::Array(vec![json!("a"); rng.gen_range(100..20_000)]),
        22 => json!("-9223372036854775809"),
        _ => Value::String({
            let n = rng.gen_range(0..40);
            random_text(rng, n)
        }),
    }
}

/// `depth` arrays or objects inside each other.
fn nested(depth: usize) -> Value {
    let mut v = json!(1);
    for i in 0..depth {
        v = if i % 2 == 0 { json!([v]) } else { json!({ "k": v }) };
    }
    v
}

/// Printable ASCII with a few odd characters.
pub fn random_text(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcXYZ019-_:/.=~!()[]{}, \"'\\*$@";
    (0..len)
        .map(|_| {
            if rng.gen_ratio(1, 50) {
                char::from_u32(rng.gen_range(0..0x11000)).unwrap_or('?')
            } else {
                *pick(rng, ALPHABET) as char
            }
        })
        .collect()
}

/// Applies `n` structure-aware mutations to `doc`.
pub fn json(rng: &mut StdRng, doc: &mut Value, n: usize) {
    for _ in 0..n {
        let target = random_node(rng, doc);
        match rng.gen_range(0..10) {
            0..=3 => *target = hostile(rng),
            4 => *target = type_swap(rng, target),
            5 => {
                if let Value::Object(map) = target {
                    if !map.is_empty() {
                        let key = map.keys().nth(rng.gen_range(0..map.len())).cloned().unwrap_or_default();
                        map.remove(&key);
                    }
                }
            }
            6 => {
                if let Value::Object(map) = target {
                    map.insert(random_text(rng, 6), hostile(rng));
                }
            }
            7 => {
                if let Value::Array(items) = target {
                    if let Some(first) = items.first().cloned() {
                        // Up to about 2 MB: past the API's body limit, short of a hang in the harness.
                        let size = serde_json::to_vec(&first).map_or(1, |v| v.len().max(1));
                        let copies = rng.gen_range(1..2_000).min(2_000_000 / size).max(1);
                        items.extend(std::iter::repeat_n(first, copies));
                    }
                }
            }
            8 => {
                if let Value::Array(items) = target {
                    items.clear();
                }
            }
            _ => {
                if let Value::String(s) = target {
                    string(rng, s);
                }
            }
        }
    }
}

/// The same content in another JSON type.
fn type_swap(rng: &mut StdRng, v: &Value) -> Value {
    match v {
        Value::String(s) => match s.parse::<i64>() {
            Ok(n) => json!(n),
            Err(_) => json!([s]),
        },
        Value::Number(n) => json!(n.to_string()),
        Value::Bool(b) => json!(b.to_string()),
        Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
        Value::Object(map) => Value::Array(map.values().cloned().collect()),
        Value::Null => hostile(rng),
    }
}

/// A node of `doc` chosen by walking down from the root, stopping at each level with some chance.
fn random_node<'a>(rng: &mut StdRng, doc: &'a mut Value) -> &'a mut Value {
    let descend = match doc {
        Value::Object(map) if !map.is_empty() => rng.gen_ratio(3, 4),
        Value::Array(items) if !items.is_empty() => rng.gen_ratio(3, 4),
        _ => false,
    };
    if !descend {
        return doc;
    }
    match doc {
        Value::Object(map) => {
            let i = rng.gen_range(0..map.len());
            let child = map.values_mut().nth(i).expect("index within the map");
            random_node(rng, child)
        }
        Value::Array(items) => {
            let i = rng.gen_range(0..items.len());
            random_node(rng, &mut items[i])
        }
        _ => unreachable!("descend only into non-empty containers"),
    }
}

/// Edits a string in place: characters inserted, removed or repeated.
pub fn string(rng: &mut StdRng, s: &mut String) {
    let mut chars: Vec<char> = s.chars().collect();
    match rng.gen_range(0..5) {
        0 if !chars.is_empty() => {
            let at = rng.gen_range(0..chars.len());
            chars.remove(at);
        }
        1 => {
            let at = rng.gen_range(0..=chars.len());
            let insert: Vec<char> = {
                let n = rng.gen_range(1..4);
                random_text(rng, n)
            }
            .chars()
            .collect();
            chars.splice(at..at, insert);
        }
        2 if !chars.is_empty() => {
            let from = rng.gen_range(0..chars.len());
            let to = rng.gen_range(from..=chars.len().min(from + 8));
            let span: Vec<char> = chars[from..to].to_vec();
            for _ in 0..rng.gen_range(1..64) {
                chars.splice(from..from, span.iter().copied());
            }
        }
        3 if !chars.is_empty() => chars.truncate(rng.gen_range(0..chars.len())),
        _ => chars.push(*pick(rng, &['(', ')', '"', '\\', '\u{0}', 'é', '🚀', ' '])),
    }
    *s = chars.into_iter().collect();
}

/// Applies `n` byte-level mutations to `data`.
pub fn bytes(rng: &mut StdRng, data: &mut Vec<u8>, n: usize) {
    for _ in 0..n {
        let len = data.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let at = rng.gen_range(0..len);
                data[at] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let at = rng.gen_range(0..len);
                data[at] = *pick(rng, &[0, 0xff, 0x7f, 0x80, b'"', b'{', b'}', b'[', b'\\', b'0']);
            }
            2 if len > 0 => data.truncate(rng.gen_range(0..len)),
            3 => {
                let at = rng.gen_range(0..=len);
                let fill: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                data.splice(at..at, fill);
            }
            4 if len > 1 => {
                let from = rng.gen_range(0..len);
                let to = rng.gen_range(from..len.min(from + 32) + 1);
                data.drain(from..to);
            }
            5 if len > 0 => {
                let from = rng.gen_range(0..len);
                let to = rng.gen_range(from..len.min(from + 32) + 1);
                let span = data[from..to].to_vec();
                let at = rng.gen_range(0..=len);
                data.splice(at..at, span);
            }
            _ => data.push(rng.gen()),
        }
    }
}

/// Every string in `v` that looks like an ECS ARN, for later requests to name.
pub fn arns(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.starts_with("arn:aws:ecs:") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| arns(i, out)),
        Value::Object(map) => map.values().for_each(|i| arns(i, out)),
        _ => {}
    }
}
