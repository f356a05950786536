//! A linearizability checker for histories of reads and compare-and-swap writes of registers
//! (keys), after Wing & Gong's search with Lowe's memoisation, as Knossos and Porcupine do it:
//! the history's call and return events in time order form a list; the search linearizes a call
//! whose operation is legal in the model's current state (removing its call and return from the
//! list), and backtracks when it meets the return of an operation it has not linearized; a
//! (set of linearized operations, state) pair already explored is never explored again. Keys are
//! independent registers, so each key's sub-history is checked on its own (P-compositionality).
//!
//! Values are unique per write (a write's ID), so a compare on a key's modification revision is
//! a compare on its value. An operation whose outcome is unknown (an error, a timeout) never
//! returned: it may be linearized anywhere after its call, with either outcome.

use std::collections::{BTreeMap, HashSet};

/// A register's value: `None` while the key does not exist.
pub type State = Option<u64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Read,
    /// Writes `new` if the key's value is `expect`.
    Cas {
        expect: State,
        new: u64,
    },
    /// Writes `new` whatever the key holds (SSM's PutParameter with Overwrite).
    Write {
        new: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Read(State),
    Cas(bool),
    /// A write acknowledged.
    Written,
    /// No answer: it may or may not have taken effect.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub input: Input,
    pub output: Output,
    /// When the client invoked it, and when it returned (`None`: never), on one monotonic clock.
    pub call: u64,
    pub ret: Option<u64>,
}

/// The register: the state after `input` answered `output` in `state`, or `None` if it could
/// not have.
pub fn step(state: State, input: Input, output: Output) -> Option<State> {
    match (input, output) {
        (Input::Read, Output::Read(v)) => (v == state).then_some(state),
        (Input::Read, Output::Unknown) => Some(state),
        (Input::Cas { expect, new }, Output::Cas(true)) => (state == expect).then_some(Some(new)),
        (Input::Cas { expect, .. }, Output::Cas(false)) => (state != expect).then_some(state),
        (Input::Cas { expect, new }, Output::Unknown) => {
            Some(if state == expect { Some(new) } else { state })
        }
        (Input::Write { new }, Output::Written | Output::Unknown) => Some(Some(new)),
        _ => None,
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The most operations of the key that could be linearized.
    pub linearized: usize,
    /// An operation that could not be linearized after that prefix.
    pub stuck: Box<Operation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key {}: not linearizable; after {} operations, no order can place {:?}",
            self.key, self.linearized, self.stuck
        )
    }
}

/// Checks every key's sub-history; the first violation found, by key order.
pub fn check(history: &[Operation]) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key.as_str()).or_default().push(op);
    }
    for (key, ops) in by_key {
        check_key(key, &ops)?;
    }
    Ok(())
}

const NONE: usize = usize::MAX;

/// Wing & Gong with memoisation over one key's operations, from the absent state.
fn check_key(key: &str, ops: &[&Operation]) -> Result<(), Violation> {
    let n = ops.len();
    // Node 2i is operation i's call, 2i+1 its return; node 2n is the list's head.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        // At one instant, calls sort before returns: such operations count as concurrent.
        events.push((op.call, 0, 2 * i));
        events.push((op.ret.unwrap_or(u64::MAX), 1, 2 * i + 1));
    }
    events.sort();
    let head = 2 * n;
    let mut next = vec![NONE; 2 * n + 1];
    let mut prev = vec![NONE; 2 * n + 1];
    let mut last = head;
    for &(_, _, node) in &events {
        next[last] = node;
        prev[node] = last;
        last = node;
    }
    let unlink = |next: &mut [usize], prev: &mut [usize], x: usize| {
        next[prev[x]] = next[x];
        if next[x] != NONE {
            prev[next[x]] = prev[x];
        }
    };
    let relink = |next: &mut [usize], prev: &mut [usize], x: usize| {
        next[prev[x]] = x;
        if next[x] != NONE {
            prev[next[x]] = x;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut state: State = None;
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut best = (0usize, NONE);
    let mut entry = next[head];
    while next[head] != NONE {
        if entry.is_multiple_of(2) {
            let i = entry / 2;
            if let Some(after) = step(state, ops[i].input, ops[i].output) {
                linearized[i / 64] |= 1 << (i % 64);
                if seen.insert((linearized.clone(), after)) {
                    stack.push((entry, state));
                    state = after;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, entry + 1);
                    entry = next[head];
                    continue;
                }
                linearized[i / 64] &= !(1 << (i % 64));
            }
            entry = next[entry];
        } else {
            // The return of an operation not linearized yet: undo the last choice.
            if stack.len() >= best.0 {
                best = (stack.len(), entry / 2);
            }
            let Some((call, before)) = stack.pop() else {
                return Err(Violation {
                    key: key.to_string(),
                    linearized: best.0,
                    stuck: Box::new(ops[best.1].clone()),
                });
            };
            let i = call / 2;
            linearized[i / 64] &= !(1 << (i % 64));
            state = before;
            relink(&mut next, &mut prev, call + 1);
            relink(&mut next, &mut prev, call);
            entry = next[call];
        }
    }
    Ok(())
}

/// A seeded xorshift generator for the histories' random choices: `rand(n)` is in `0..n`.
pub fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut seed = seed;
    move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

/// The generator of client `id` of a recorded history.
pub fn client_rand(id: usize) -> impl FnMut(u64) -> u64 {
    xorshift(0x2545_f491_4f6c_dd1d_u64 ^ ((id as u64 + 1) * 0x9e37_79b9))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, input: Input, output: Output, call: u64, ret: u64) -> Operation {
        Operation { client, key: "k".into(), input, output, call, ret: Some(ret) }
    }
    fn read(client: usize, v: State, call: u64, ret: u64) -> Operation {
        op(client, Input::Read, Output::Read(v), call, ret)
    }
    fn cas(client: usize, expect: State, new: u64, ok: bool, call: u64, ret: u64) -> Operation {
        op(client, Input::Cas { expect, new }, Output::Cas(ok), call, ret)
    }

    #[test]
    fn sequential_and_overlapping_histories_are_linearizable() {
        let h = [
            cas(0, None, 1, true, 0, 10),
            read(1, Some(1), 11, 12),
            cas(1, Some(1), 2, true, 13, 20),
            cas(0, Some(1), 3, false, 21, 22),
            read(0, Some(2), 23, 24),
        ];
        check(&h).unwrap();
        // A read overlapping a write may see either value; two concurrent CAS from one value:
        // one wins, and the loser's compare fails.
        let h = [
            cas(0, None, 1, true, 0, 10),
            cas(1, Some(1), 2, true, 20, 40),
            read(2, Some(1), 21, 25),
            read(3, Some(2), 22, 30),
            cas(4, Some(1), 3, false, 19, 41),
            read(2, Some(2), 42, 43),
        ];
        check(&h).unwrap();
        // Operations listed out of time order are ordered by their timestamps.
        let mut h = h.to_vec();
        h.reverse();
        check(&h).unwrap();
    }

    #[test]
    fn a_stale_read_is_rejected() {
        // The write of 2 returned before the read was called: reading 1 is stale.
        let h = [cas(0, None, 1, true, 0, 10), cas(0, Some(1), 2, true, 11, 20), read(1, Some(1), 21, 22)];
        let v = check(&h).unwrap_err();
        assert_eq!((v.key.as_str(), v.linearized), ("k", 2));
        assert_eq!(*v.stuck, h[2]);
        // The same read overlapping the write is fine.
        let h = [cas(0, None, 1, true, 0, 10), cas(0, Some(1), 2, true, 11, 20), read(1, Some(1), 19, 22)];
        check(&h).unwrap();
    }

    #[test]
    fn blind_writes_are_a_register() {
        let write = |client, new, call, ret| op(client, Input::Write { new }, Output::Written, call, ret);
        // Two overlapping writes: a read after both sees either, and later reads agree with it.
        let h = [write(0, 1, 0, 10), write(1, 2, 5, 12), read(2, Some(1), 13, 14), read(3, Some(1), 15, 16)];
        check(&h).unwrap();
        let h = [write(0, 1, 0, 10), write(1, 2, 5, 12), read(2, Some(2), 13, 14), read(3, Some(2), 15, 16)];
        check(&h).unwrap();
        // Once a read saw 2 (so 2 was written last), a later read of 1 is stale.
        let h = [write(0, 1, 0, 10), write(1, 2, 5, 12), read(2, Some(2), 13, 14), read(3, Some(1), 15, 16)];
        assert_eq!(check(&h).unwrap_err().stuck.input, Input::Read);
        // A write that returned before a read began is seen by it; the absent state before.
        let h = [read(0, None, 0, 1), write(0, 7, 2, 3), read(1, None, 4, 5)];
        assert!(check(&h).is_err());
        // An unanswered write may take effect at any time after its call, or never.
        let unknown = Operation { ret: None, output: Output::Unknown, ..write(0, 9, 2, 0) };
        check(&[write(1, 1, 0, 1), unknown.clone(), read(2, Some(1), 3, 4), read(2, Some(9), 5, 6)]).unwrap();
        check(&[write(1, 1, 0, 1), unknown, read(2, Some(1), 3, 4)]).unwrap();
        // A write's answer is never a read's or a compare's.
        assert_eq!(step(None, Input::Write { new: 1 }, Output::Cas(true)), None);
        assert_eq!(step(None, Input::Read, Output::Written), None);
    }

    #[test]
    fn a_lost_write_is_rejected() {
        // An acknowledged write that later reads never show, whichever order the writes take.
        let h = [
            cas(0, None, 1, true, 0, 10),
            cas(1, Some(1), 2, true, 11, 15),
            read(2, Some(1), 16, 17),
            read(2, Some(1), 18, 19),
        ];
        assert!(check(&h).is_err());
        // Two writes from one value both acknowledged: one of them was lost.
        let h = [
            cas(0, None, 1, true, 0, 10),
            cas(1, Some(1), 2, true, 11, 30),
            cas(2, Some(1), 3, true, 12, 31),
        ];
        assert!(check(&h).is_err());
        // A compare that failed although nothing else wrote.
        let h = [cas(0, None, 1, true, 0, 10), cas(1, Some(1), 2, false, 11, 30), read(0, Some(1), 31, 32)];
        assert!(check(&h).is_err());
        // A value never written.
        assert!(check(&[read(0, Some(9), 0, 1)]).is_err());
    }

    #[test]
    fn an_unanswered_write_may_or_may_not_have_happened() {
        let unknown = |call| Operation {
            client: 1,
            key: "k".into(),
            input: Input::Cas { expect: Some(1), new: 2 },
            output: Output::Unknown,
            call,
            ret: None,
        };
        let base = [cas(0, None, 1, true, 0, 10), unknown(11)];
        let with = |r: Operation| {
            let mut h = base.to_vec();
            h.push(r);
            h
        };
        check(&with(read(0, Some(2), 100, 101))).unwrap();
        check(&with(read(0, Some(1), 100, 101))).unwrap();
        // But it cannot have happened before it was called.
        let mut h = with(read(0, Some(2), 100, 101));
        h.insert(1, read(2, Some(2), 5, 6));
        h[0].ret = Some(4);
        assert!(check(&h).is_err());
    }

    #[test]
    fn keys_are_checked_independently() {
        let mut other = cas(0, None, 1, true, 0, 10);
        other.key = "j".into();
        let mut stale = read(1, None, 20, 21);
        stale.key = "j".into();
        let fine = [cas(0, None, 7, true, 0, 10), read(1, Some(7), 11, 12)];
        let mut h = fine.to_vec();
        check(&h).unwrap();
        h.extend([other, stale]);
        assert_eq!(check(&h).unwrap_err().key, "j");
    }

    /// Random concurrent histories made from a real register (each operation takes effect at a
    /// random instant between its call and return) are always accepted; the same histories with
    /// one read's answer changed to a value written only after it returned, or never, are always
    /// rejected.
    #[test]
    fn histories_of_a_real_register_are_accepted_and_corrupted_ones_rejected() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15);
        for round in 0..200 {
            let clients = 1 + rand(5) as usize;
            let mut ops = Vec::new();
            // Each client: a sequence of operations with effect points; times are distinct.
            let mut effects: Vec<(u64, usize)> = Vec::new();
            for c in 0..clients {
                let mut t = rand(10);
                for _ in 0..(3 + rand(6)) {
                    let call = t * 1000 + c as u64;
                    let effect = call + 1 + rand(3000);
                    let ret = effect + 1 + rand(3000);
                    t = ret / 1000 + 1 + rand(3);
                    effects.push((effect, ops.len()));
                    let input = if rand(2) == 0 { Input::Read } else { Input::Cas { expect: None, new: 0 } };
                    ops.push(Operation {
                        client: c,
                        key: "k".into(),
                        input,
                        output: Output::Unknown,
                        call,
                        ret: Some(ret),
                    });
                }
            }
            effects.sort();
            // Apply at the effect points; a CAS expects what a client might have read: the
            // current value half of the time.
            let mut state: State = None;
            let mut next_value = 1;
            for &(_, i) in &effects {
                match ops[i].input {
                    Input::Read => ops[i].output = Output::Read(state),
                    Input::Cas { .. } => {
                        let expect = if rand(2) == 0 { state } else { Some(rand(next_value + 1)) };
                        ops[i].input = Input::Cas { expect, new: next_value };
                        let ok = expect == state;
                        if ok {
                            state = Some(next_value);
                        }
                        next_value += 1;
                        ops[i].output = Output::Cas(ok);
                    }
                    Input::Write { .. } => unreachable!("the generator makes reads and compare-and-swaps"),
                }
            }
            check(&ops).unwrap_or_else(|v| panic!("round {round}: {v}"));
            // Corrupt one read with a value no order can give it: one written by a write called
            // after the read returned, else one never written.
            let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].input == Input::Read).collect();
            if reads.is_empty() {
                continue;
            }
            let r = reads[rand(reads.len() as u64) as usize];
            let ret = ops[r].ret.unwrap();
            let future = ops.iter().find_map(|o| match (o.input, o.output) {
                (Input::Cas { new, .. }, Output::Cas(true)) if o.call > ret => Some(new),
                _ => None,
            });
            let wrong = Some(future.unwrap_or(1 << 40));
            ops[r].output = Output::Read(wrong);
            assert!(
                check(&ops).is_err(),
                "round {round}: a read of {wrong:?} outside its window was accepted"
            );
        }
    }
}
