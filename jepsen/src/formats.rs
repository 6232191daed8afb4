//! Readers for histories written by other tools: Jepsen's text logs of one register (the etcd
//! tests) and Jepsen's EDN maps of key-value operations, as in the Porcupine checker's test
//! data (`jepsen/testdata/linearizability/`).

use std::collections::BTreeMap;

use crate::linear::{Operation, RegisterOp, RegisterOut, StringOp};

/// An invocation waiting for its completion.
struct Open<I> {
    call: u64,
    input: I,
    id: usize,
}

impl<I> Open<I> {
    /// The operation, completed at `ret` with `output` (`None`, `None`: it never answered).
    fn done<O>(self, ret: Option<u64>, output: Option<O>) -> Operation<I, O> {
        Operation {
            call: self.call,
            ret,
            input: self.input,
            output,
            id: self.id,
        }
    }
}

/// Parses `INFO  jepsen.util - P<TAB>:TYPE<TAB>:F<TAB>VALUE` lines (others are ignored).
///
/// An `ok` read returns its value; `ok` write and cas took effect; a `fail` cas is a definite
/// "did not hold the old value"; a failed read or write had no effect and constrains nothing;
/// an `info` (or an invocation never completed) may or may not have taken effect.
pub fn jepsen_register_log(text: &str) -> Result<Vec<Operation<RegisterOp, RegisterOut>>, String> {
    let mut open: BTreeMap<String, Open<RegisterOp>> = BTreeMap::new();
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.split_once("jepsen.util - ").map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split('\t').collect();
        if fields.len() < 4 {
            continue;
        }
        let (process, kind, f, value) = (fields[0].trim(), fields[1], fields[2], fields[3].trim());
        if !process.chars().all(|c| c.is_ascii_digit()) || process.is_empty() {
            continue;
        }
        let time = n as u64;
        let at = |what: &str| format!("line {}: {what}: {line}", n + 1);
        match kind {
            ":invoke" => {
                let input = match f {
                    ":read" => RegisterOp::Read,
                    ":write" => RegisterOp::Write(value.parse().map_err(|_| at("a write needs an integer"))?),
                    ":cas" => {
                        let (old, new) = pair(value).ok_or_else(|| at("a cas needs [old new]"))?;
                        RegisterOp::Cas(old, new)
                    }
                    _ => continue,
                };
                open.insert(
                    process.to_string(),
                    Open {
                        call: time,
                        input,
                        id: n + 1,
                    },
                );
            }
            ":ok" | ":fail" | ":info" => {
                let Some(o) = open.remove(process) else {
                    return Err(at("a completion without an invocation"));
                };
                let (ret, output) = match (kind, &o.input) {
                    (":ok", RegisterOp::Read) => {
                        let v = if value == "nil" {
                            None
                        } else {
                            Some(value.parse().map_err(|_| at("a read returns nil or an integer"))?)
                        };
                        (Some(time), Some(RegisterOut::Value(v)))
                    }
                    (":ok", RegisterOp::Write(_)) => (Some(time), Some(RegisterOut::Done)),
                    (":ok", RegisterOp::Cas(..)) => (Some(time), Some(RegisterOut::Swapped(true))),
                    (":fail", RegisterOp::Cas(..)) => (Some(time), Some(RegisterOut::Swapped(false))),
                    (":fail", _) => continue,
                    _ => (None, None),
                };
                ops.push(o.done(ret, output));
            }
            _ => {}
        }
    }
    ops.extend(open.into_values().map(|o| o.done(None, None)));
    Ok(ops)
}

fn pair(text: &str) -> Option<(i64, i64)> {
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    let mut parts = inner.split_whitespace();
    let old = parts.next()?.parse().ok()?;
    let new = parts.next()?.parse().ok()?;
    Some((old, new))
}

/// The value after `:name ` in an EDN map line: a keyword, a number, `nil` or a string.
fn edn_field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(":{name} "))? + name.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let end = quoted.find('"')?;
        return Some(&rest[..end + 2]);
    }
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn unquote(text: &str) -> Option<String> {
    text.strip_prefix('"')?.strip_suffix('"').map(str::to_string)
}

/// Parses lines like `{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}`
/// into per-key operations on strings (`get`, `put`, `append`).
pub fn edn_kv(text: &str) -> Result<crate::linear::Keyed<String, crate::linear::Strings>, String> {
    let mut open: BTreeMap<String, (String, Open<StringOp>)> = BTreeMap::new();
    let mut ops = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let at = |what: &str| format!("line {}: {what}: {line}", n + 1);
        let process = edn_field(line, "process").ok_or_else(|| at("no :process"))?.to_string();
        let kind = edn_field(line, "type").ok_or_else(|| at("no :type"))?;
        let time = n as u64;
        match kind {
            ":invoke" => {
                let key = edn_field(line, "key").and_then(unquote).ok_or_else(|| at("no :key"))?;
                let value = edn_field(line, "value").and_then(unquote);
                let input = match edn_field(line, "f") {
                    Some(":get") => StringOp::Get,
                    Some(":put") => StringOp::Put(value.ok_or_else(|| at("a put needs a value"))?),
                    Some(":append") => StringOp::Append(value.ok_or_else(|| at("an append needs a value"))?),
                    _ => return Err(at("unknown :f")),
                };
                open.insert(
                    process,
                    (
                        key,
                        Open {
                            call: time,
                            input,
                            id: n + 1,
                        },
                    ),
                );
            }
            ":ok" | ":fail" | ":info" => {
                let Some((key, o)) = open.remove(&process) else {
                    return Err(at("a completion without an invocation"));
                };
                let (ret, output) = match (kind, &o.input) {
                    (":ok", StringOp::Get) => (
                        Some(time),
                        Some(edn_field(line, "value").and_then(unquote).unwrap_or_default()),
                    ),
                    (":ok", _) => (Some(time), None),
                    (":fail", _) => continue,
                    _ => (None, None),
                };
                ops.push((key, o.done(ret, output)));
            }
            _ => return Err(at("unknown :type")),
        }
    }
    ops.extend(open.into_values().map(|(key, o)| (key, o.done(None, None))));
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jepsen_logs_pair_invocations_with_completions() {
        let log = "INFO  jepsen.util - 0\t:invoke\t:write\t4\n\
                   INFO  jepsen.util - 1\t:invoke\t:cas\t[4 5]\n\
                   noise\n\
                   INFO  jepsen.util - 0\t:ok\t:write\t4\n\
                   INFO  jepsen.util - 1\t:info\t:cas\t:timed-out\n\
                   INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 2\t:ok\t:read\t5\n\
                   INFO  jepsen.util - 3\t:invoke\t:read\tnil\n\
                   INFO  jepsen.util - 3\t:fail\t:read\t:timed-out\n";
        let ops = jepsen_register_log(log).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}");
        assert_eq!(ops[0].input, RegisterOp::Write(4));
        assert_eq!((ops[1].ret, ops[1].output.clone()), (None, None), "info: open forever");
        assert_eq!(ops[2].output, Some(RegisterOut::Value(Some(5))));
    }

    #[test]
    fn edn_maps_are_read_per_key() {
        let text = "{:process 0, :type :invoke, :f :append, :key \"4\", :value \"x 0 1 y\"}\n\
                    {:process 0, :type :ok, :f :append, :key \"4\", :value \"x 0 1 y\"}\n\
                    {:process 1, :type :invoke, :f :get, :key \"4\", :value nil}\n\
                    {:process 1, :type :ok, :f :get, :key \"4\", :value \"x 0 1 y\"}\n";
        let ops = edn_kv(text).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].0, "4");
        assert_eq!(ops[0].1.input, StringOp::Append("x 0 1 y".into()));
        assert_eq!(ops[1].1.output.as_deref(), Some("x 0 1 y"));
    }
}
