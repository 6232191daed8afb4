//! A linearizability checker: Wing and Gong's search with Lowe's memoization, as Porcupine and
//! Knossos do it.
//!
//! A history is a set of operations, each with the time it was invoked and the time it returned
//! (`None`: it never returned, or timed out, so it may take effect at any point after its call,
//! or never, which is the same as "at the end"). The search tries to order the operations so
//! that each takes effect between its call and its return and the model accepts every output.
//! Memoization on (set of operations already placed, model state) makes it polynomial in
//! practice. A time budget bounds it: past the budget the answer is `Unknown`, never a hang.
//!
//! Histories are P-compositional: [`check_partitioned`] checks each key on its own.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What the operations act on: a sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Input: Clone + Debug;
    type Output: Clone + Debug;

    fn init(&self) -> Self::State;

    /// The state after applying `input` to `state` if the operation could have returned
    /// `output` there (`None` as output: unknown, anything goes), else `None`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Debug, Clone)]
pub struct Operation<I, O> {
    pub call: u64,
    /// `None`: no response (pending, or indeterminate like a timeout).
    pub ret: Option<u64>,
    pub input: I,
    /// `None`: the result is unknown.
    pub output: Option<O>,
    /// An identifier to report (e.g. the history index of the invocation).
    pub id: usize,
}

/// A history of one model's operations, each tagged with its key.
pub type Keyed<K, M> = Vec<(K, Operation<<M as Model>::Input, <M as Model>::Output>)>;

/// A checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// Not linearizable; the witness names the operations of the longest linearizable prefix
    /// found and the operation that could not be placed after it.
    NotLinearizable {
        witness: String,
    },
    /// The time budget ran out first.
    Unknown,
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// A node of the search's doubly linked list of call and return events.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    /// The matching return event's index for a call (None: no return).
    matching: Option<usize>,
    prev: Option<usize>,
    next: Option<usize>,
}

/// Checks one history (one key) against `model` within `budget`.
pub fn check<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>], budget: Duration) -> Verdict {
    check_until(model, ops, Instant::now() + budget)
}

fn check_until<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>], deadline: Instant) -> Verdict {
    if ops.is_empty() {
        return Verdict::Linearizable;
    }
    // Events in time order; at equal times, returns before calls (an operation that returned
    // at t does not overlap one invoked at t), then by operation.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, true, i));
        if let Some(ret) = op.ret {
            order.push((ret.max(op.call), false, i));
        }
    }
    order.sort_by_key(|&(t, is_call, i)| (t, is_call, i));
    let mut events: Vec<Event> = order
        .iter()
        .map(|&(_, is_call, op)| Event {
            op,
            is_call,
            matching: None,
            prev: None,
            next: None,
        })
        .collect();
    let mut return_of = vec![None; ops.len()];
    for (i, e) in events.iter().enumerate() {
        if !e.is_call {
            return_of[e.op] = Some(i);
        }
    }
    for e in events.iter_mut() {
        if e.is_call {
            e.matching = return_of[e.op];
        }
    }
    let n = events.len();
    for (i, e) in events.iter_mut().enumerate() {
        e.prev = i.checked_sub(1);
        e.next = (i + 1 < n).then_some(i + 1);
    }
    let mut head: Option<usize> = Some(0);

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    // (call event, state before it) of each operation placed so far.
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut best: Vec<usize> = Vec::new();
    let mut stuck_on: Option<usize> = None;
    let mut cursor = head;
    let mut steps: u64 = 0;
    // Operations with a response not yet placed: when none is left, what remains never
    // returned and can take effect after everything (or not at all).
    let mut unplaced_returns = ops.iter().filter(|o| o.ret.is_some()).count();

    // Unlinks call event `c` and its return event (if any) from the list.
    fn lift(events: &mut [Event], head: &mut Option<usize>, c: usize) {
        let mut unlink = |events: &mut [Event], i: usize| {
            let (prev, next) = (events[i].prev, events[i].next);
            match prev {
                Some(p) => events[p].next = next,
                None => *head = next,
            }
            if let Some(nx) = next {
                events[nx].prev = prev;
            }
        };
        unlink(events, c);
        if let Some(r) = events[c].matching {
            unlink(events, r);
        }
    }
    // Puts them back (in reverse order of lifting).
    fn unlift(events: &mut [Event], head: &mut Option<usize>, c: usize) {
        let mut relink = |events: &mut [Event], i: usize| {
            let (prev, next) = (events[i].prev, events[i].next);
            match prev {
                Some(p) => events[p].next = Some(i),
                None => *head = Some(i),
            }
            if let Some(nx) = next {
                events[nx].prev = Some(i);
            }
        };
        if let Some(r) = events[c].matching {
            relink(events, r);
        }
        relink(events, c);
    }

    loop {
        steps += 1;
        if steps % 1024 == 0 && Instant::now() > deadline {
            return Verdict::Unknown;
        }
        if unplaced_returns == 0 {
            return Verdict::Linearizable;
        }
        // At a return (the operation it ends was not placed in time), or past the last event
        // with only calls without responses left and none fitting here: backtrack.
        let at_return = cursor.filter(|c| !events[*c].is_call);
        if cursor.is_none() || at_return.is_some() {
            let Some((c, previous)) = stack.pop() else {
                let stuck = stuck_on.or(at_return.map(|r| events[r].op));
                return Verdict::NotLinearizable {
                    witness: witness(ops, &best, stuck),
                };
            };
            state = previous;
            let op = events[c].op;
            linearized[op / 64] &= !(1 << (op % 64));
            if ops[op].ret.is_some() {
                unplaced_returns += 1;
            }
            unlift(&mut events, &mut head, c);
            cursor = events[c].next;
            continue;
        }
        let Some(c) = cursor else { continue };
        let e = events[c];
        let op = &ops[e.op];
        if let Some(next_state) = model.step(&state, &op.input, op.output.as_ref()) {
            let mut key = linearized.clone();
            key[e.op / 64] |= 1 << (e.op % 64);
            if cache.insert((key.clone(), next_state.clone())) {
                stack.push((c, state.clone()));
                state = next_state;
                linearized = key;
                lift(&mut events, &mut head, c);
                if op.ret.is_some() {
                    unplaced_returns -= 1;
                }
                if stack.len() > best.len() {
                    best = stack.iter().map(|(c, _)| events[*c].op).collect();
                    stuck_on = None;
                }
                cursor = head;
                continue;
            }
        } else if stack.len() >= best.len() && stuck_on.is_none() {
            stuck_on = Some(e.op);
        }
        cursor = e.next;
    }
}

fn witness<I: Debug, O: Debug>(ops: &[Operation<I, O>], placed: &[usize], stuck: Option<usize>) -> String {
    let describe = |i: usize| {
        let op = &ops[i];
        format!(
            "#{} {:?} -> {:?} [{}, {}]",
            op.id,
            op.input,
            op.output,
            op.call,
            op.ret.map_or("∞".to_string(), |r| r.to_string())
        )
    };
    // The end of the prefix is what matters: the operations just before the one that fails.
    const SHOWN: usize = 8;
    let skipped = placed.len().saturating_sub(SHOWN);
    let prefix: Vec<String> = placed[skipped..].iter().map(|i| describe(*i)).collect();
    format!(
        "linearizable prefix ({} ops{}): {}; then cannot place: {}",
        placed.len(),
        if skipped > 0 {
            format!(", the last {SHOWN} shown")
        } else {
            String::new()
        },
        prefix.join(", "),
        stuck.map_or("?".to_string(), describe)
    )
}

/// Checks each key's sub-history on its own (P-compositionality): the history is linearizable
/// only if every key's is. The budget is for the whole check. Keys are tried in rounds with
/// growing budgets (iterative deepening), so a key whose violation is quick to find is found
/// even when another key's search is long.
pub fn check_partitioned<M: Model, K: Ord + Debug>(model: &M, mut ops: Keyed<K, M>, budget: Duration) -> Verdict {
    let deadline = Instant::now() + budget;
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    type Part<'a, K, M> = (&'a K, Vec<Operation<<M as Model>::Input, <M as Model>::Output>>);
    let mut parts: Vec<Part<'_, K, M>> = Vec::new();
    for (key, op) in &ops {
        match parts.last_mut() {
            Some((k, part)) if *k == key => part.push(op.clone()),
            _ => parts.push((key, vec![op.clone()])),
        }
    }
    let mut round = Duration::from_millis(10);
    loop {
        let mut undecided = Vec::new();
        for (key, part) in parts {
            let now = Instant::now();
            if now >= deadline {
                return Verdict::Unknown;
            }
            match check_until(model, &part, (now + round).min(deadline)) {
                Verdict::Linearizable => {}
                Verdict::Unknown => undecided.push((key, part)),
                Verdict::NotLinearizable { witness } => {
                    return Verdict::NotLinearizable {
                        witness: format!("key {key:?}: {witness}"),
                    }
                }
            }
        }
        if undecided.is_empty() {
            return Verdict::Linearizable;
        }
        parts = undecided;
        round *= 4;
    }
}

/// A register of optional integers: read, write, and compare-and-set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Register;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOp {
    Read,
    Write(i64),
    /// Compare-and-set from the first value to the second.
    Cas(i64, i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOut {
    /// What a read returned (`None`: never written).
    Value(Option<i64>),
    /// Whether a cas took effect.
    Swapped(bool),
    /// A write's acknowledgement.
    Done,
}

impl Model for Register {
    type State = Option<i64>;
    type Input = RegisterOp;
    type Output = RegisterOut;

    fn init(&self) -> Option<i64> {
        None
    }

    fn step(&self, state: &Option<i64>, input: &RegisterOp, output: Option<&RegisterOut>) -> Option<Option<i64>> {
        match (input, output) {
            (RegisterOp::Read, Some(RegisterOut::Value(v))) => (v == state).then_some(*state),
            (RegisterOp::Read, _) => Some(*state),
            (RegisterOp::Write(v), _) => Some(Some(*v)),
            (RegisterOp::Cas(old, new), Some(RegisterOut::Swapped(true))) => {
                (*state == Some(*old)).then_some(Some(*new))
            }
            (RegisterOp::Cas(old, _), Some(RegisterOut::Swapped(false))) => (*state != Some(*old)).then_some(*state),
            // Unknown outcome: it took effect if it could have (else it failed).
            (RegisterOp::Cas(old, new), _) => Some(if *state == Some(*old) { Some(*new) } else { *state }),
        }
    }
}

/// Drops, from a history of reads and writes, each write without a response whose value no
/// read returned. Such a write may never have happened, and placing it can only change what
/// reads see until the next write, none of which saw its value, so the verdict is the same
/// without it; the search is smaller, since each open write could otherwise go anywhere after
/// its call. Keys with a compare-and-set keep everything (a refused cas can lean on any write).
pub fn drop_unobserved_writes<K: Ord + Clone>(ops: Keyed<K, Register>) -> Keyed<K, Register> {
    use std::collections::BTreeSet;
    let mut read: BTreeSet<(K, i64)> = BTreeSet::new();
    let mut with_cas: BTreeSet<K> = BTreeSet::new();
    for (key, op) in &ops {
        match (&op.input, &op.output) {
            (RegisterOp::Read, Some(RegisterOut::Value(Some(v)))) => {
                read.insert((key.clone(), *v));
            }
            (RegisterOp::Cas(..), _) => {
                with_cas.insert(key.clone());
            }
            _ => {}
        }
    }
    ops.into_iter()
        .filter(|(key, op)| match op.input {
            RegisterOp::Write(v) if op.ret.is_none() => with_cas.contains(key) || read.contains(&(key.clone(), v)),
            _ => true,
        })
        .collect()
}

/// A string per key: get, put, append (every key starts empty).
#[derive(Debug, Clone, Copy, Default)]
pub struct Strings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StringOp {
    Get,
    Put(String),
    Append(String),
}

impl Model for Strings {
    type State = String;
    type Input = StringOp;
    /// A get's result; puts and appends answer nothing.
    type Output = String;

    fn init(&self) -> String {
        String::new()
    }

    fn step(&self, state: &String, input: &StringOp, output: Option<&String>) -> Option<String> {
        match input {
            StringOp::Get => output.is_none_or(|o| o == state).then(|| state.clone()),
            StringOp::Put(v) => Some(v.clone()),
            StringOp::Append(v) => Some(format!("{state}{v}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(
        id: usize,
        call: u64,
        ret: Option<u64>,
        input: RegisterOp,
        output: Option<RegisterOut>,
    ) -> Operation<RegisterOp, RegisterOut> {
        Operation {
            call,
            ret,
            input,
            output,
            id,
        }
    }

    const BUDGET: Duration = Duration::from_secs(5);

    #[test]
    fn sequential_and_concurrent_histories() {
        use RegisterOp::*;
        use RegisterOut::*;
        // write 1, then read 1: fine.
        let h = vec![
            op(0, 0, Some(1), Write(1), Some(Done)),
            op(1, 2, Some(3), Read, Some(Value(Some(1)))),
        ];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // A read after the write returned sees the old value: a stale read.
        let h = vec![
            op(0, 0, Some(1), Write(1), Some(Done)),
            op(1, 2, Some(3), Read, Some(Value(None))),
        ];
        assert!(matches!(check(&Register, &h, BUDGET), Verdict::NotLinearizable { .. }));
        // Concurrent with the write, either value is fine.
        let h = vec![
            op(0, 0, Some(5), Write(1), Some(Done)),
            op(1, 1, Some(2), Read, Some(Value(None))),
            op(2, 3, Some(4), Read, Some(Value(Some(1)))),
        ];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // ...but not back again once seen.
        let h = vec![
            op(0, 0, Some(5), Write(1), Some(Done)),
            op(1, 1, Some(2), Read, Some(Value(Some(1)))),
            op(2, 3, Some(4), Read, Some(Value(None))),
        ];
        assert!(matches!(check(&Register, &h, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn indeterminate_operations_may_or_may_not_take_effect() {
        use RegisterOp::*;
        use RegisterOut::*;
        // A timed-out write may have happened...
        let h = vec![
            op(0, 0, None, Write(1), None),
            op(1, 2, Some(3), Read, Some(Value(Some(1)))),
        ];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // ...or not.
        let h = vec![
            op(0, 0, None, Write(1), None),
            op(1, 2, Some(3), Read, Some(Value(None))),
        ];
        assert_eq!(check(&Register, &h, BUDGET), Verdict::Linearizable);
        // A failed cas had no effect: reading its new value is a violation.
        let h = vec![
            op(0, 0, Some(1), Write(1), Some(Done)),
            op(1, 2, Some(3), Cas(1, 2), Some(Swapped(false))),
        ];
        assert!(matches!(check(&Register, &h, BUDGET), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn open_writes_nobody_read_are_dropped_without_changing_the_verdict() {
        use RegisterOp::*;
        use RegisterOut::*;
        let keyed = |h: Vec<Operation<RegisterOp, RegisterOut>>| h.into_iter().map(|o| ("k", o)).collect::<Vec<_>>();
        let ids = |ops: &Keyed<&str, Register>| ops.iter().map(|(_, o)| o.id).collect::<Vec<_>>();
        // The open write of 1 was read, the one of 2 was not: only the second goes.
        let h = keyed(vec![
            op(0, 0, None, Write(1), None),
            op(1, 0, None, Write(2), None),
            op(2, 2, Some(3), Read, Some(Value(Some(1)))),
        ]);
        assert_eq!(ids(&drop_unobserved_writes(h)), vec![0, 2]);
        // A key with a cas keeps every write: a refused cas may lean on one nobody read.
        let h = keyed(vec![
            op(0, 0, Some(1), Write(1), Some(Done)),
            op(1, 2, None, Write(2), None),
            op(2, 3, Some(4), Cas(1, 3), Some(Swapped(false))),
        ]);
        assert_eq!(check_partitioned(&Register, h.clone(), BUDGET), Verdict::Linearizable);
        assert_eq!(ids(&drop_unobserved_writes(h)), vec![0, 1, 2]);
        // Sixty open writes of distinct values and a stale read after an acknowledged write:
        // without them the violation is found at once.
        let mut h: Vec<_> = (0..60)
            .map(|i| op(i, 10 + i as u64, None, Write(100 + i as i64), None))
            .collect();
        h.push(op(60, 0, Some(1), Write(1), Some(Done)));
        h.push(op(61, 2, Some(3), Write(2), Some(Done)));
        h.push(op(62, 200, Some(201), Read, Some(Value(Some(1)))));
        let pruned = drop_unobserved_writes(keyed(h));
        assert_eq!(pruned.len(), 3);
        assert!(matches!(
            check_partitioned(&Register, pruned, BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn the_witness_names_the_operation_that_cannot_be_placed() {
        use RegisterOp::*;
        use RegisterOut::*;
        let h = vec![
            op(10, 0, Some(1), Write(1), Some(Done)),
            op(11, 2, Some(3), Write(2), Some(Done)),
            op(12, 4, Some(5), Read, Some(Value(Some(1)))),
        ];
        let Verdict::NotLinearizable { witness } = check(&Register, &h, BUDGET) else {
            panic!("a stale read must be found")
        };
        assert!(witness.contains("#12"), "{witness}");
    }

    #[test]
    fn keys_are_checked_apart_and_budgets_answer_unknown() {
        let ops = vec![
            (
                "a",
                Operation {
                    call: 0,
                    ret: Some(1),
                    input: StringOp::Append("x".into()),
                    output: None,
                    id: 0,
                },
            ),
            (
                "b",
                Operation {
                    call: 0,
                    ret: Some(1),
                    input: StringOp::Append("y".into()),
                    output: None,
                    id: 1,
                },
            ),
            (
                "a",
                Operation {
                    call: 2,
                    ret: Some(3),
                    input: StringOp::Get,
                    output: Some("x".to_string()),
                    id: 2,
                },
            ),
            (
                "b",
                Operation {
                    call: 2,
                    ret: Some(3),
                    input: StringOp::Get,
                    output: Some("y".to_string()),
                    id: 3,
                },
            ),
        ];
        assert_eq!(check_partitioned(&Strings, ops.clone(), BUDGET), Verdict::Linearizable);
        let mut bad = ops;
        bad[3].1.output = Some("x".to_string());
        assert!(
            matches!(check_partitioned(&Strings, bad, BUDGET), Verdict::NotLinearizable { witness } if witness.starts_with("key \"b\""))
        );
        // Many concurrent writes with no reads: trivially fine, but with a zero budget the
        // answer may only be unknown or valid, never a hang.
        let many: Vec<Operation<RegisterOp, RegisterOut>> = (0..2000)
            .map(|i| op(i, 0, Some(100), RegisterOp::Write(i as i64), Some(RegisterOut::Done)))
            .collect();
        let v = check(&Register, &many, Duration::ZERO);
        assert!(matches!(v, Verdict::Linearizable | Verdict::Unknown), "{v:?}");
    }
}
