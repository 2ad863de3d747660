//! A linearizability checker: the Wing–Gong search with Lowe's memoisation
//! (as in Porcupine), run per key.
//!
//! Models are small and may be nondeterministic (a server that is starting
//! may become ready at any moment without anyone asking), so the search runs
//! over *sets* of model states, a bitmask of at most 32 concrete states: a
//! step maps every state in the set and unions the results; an empty set
//! means the operation could not have happened there. An operation whose
//! outcome the client never learnt (timeout, connection reset, 5xx) may have
//! taken effect or not, at any point after it was invoked.

use std::collections::{HashMap, HashSet};

/// What a client saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<O> {
    /// A definite answer.
    Ok(O),
    /// No answer (or one that does not say whether it took effect).
    Unknown,
}

/// One operation in a history. Times are on one clock, in any unit.
#[derive(Clone, Debug)]
pub struct Op<I, O> {
    pub input: I,
    pub output: Outcome<O>,
    pub call: u64,
    /// Ignored for `Outcome::Unknown` (it may take effect at any later time).
    pub ret: u64,
}

/// A model's operation.
pub type ModelOp<M> = Op<<M as Model>::Input, <M as Model>::Output>;

/// A set of concrete states, one bit each.
pub type States = u32;

pub trait Model {
    type Input;
    type Output;
    fn init(&self) -> States;
    /// The states reachable from concrete state `s` by applying `input` and
    /// seeing `output` (0 = impossible).
    fn step(&self, s: u8, input: &Self::Input, output: &Self::Output) -> States;
    /// The states reachable from `s` by applying `input` whatever it
    /// answered (for operations whose outcome is unknown).
    fn apply(&self, s: u8, input: &Self::Input) -> States;
    /// Add what can happen spontaneously (e.g. a spawn completing).
    fn closure(&self, set: States) -> States {
        set
    }
}

/// The checker's verdict for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order of the operations explains what clients saw.
    NotLinearizable,
    /// The search gave up after its step budget.
    Unknown,
}

fn each_state(set: States) -> impl Iterator<Item = u8> {
    (0..32u8).filter(move |i| set & (1 << i) != 0)
}

fn step_set<M: Model>(m: &M, set: States, op: &Op<M::Input, M::Output>) -> States {
    let mut out = 0;
    for s in each_state(set) {
        out |= match &op.output {
            Outcome::Ok(o) => m.step(s, &op.input, o),
            // It took effect (any answer) or it never did.
            Outcome::Unknown => m.apply(s, &op.input) | (1 << s),
        };
    }
    m.closure(out)
}

const NIL: usize = usize::MAX;

/// Checks one key's history. `budget` bounds the number of search steps.
pub fn check<M: Model>(m: &M, history: &[Op<M::Input, M::Output>], budget: u64) -> Verdict {
    let n = history.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Events: (time, is_return, op). Calls sort before returns at the same
    // time, so touching operations count as concurrent (the lenient choice).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in history.iter().enumerate() {
        let ret = match op.output {
            Outcome::Ok(_) => op.ret.max(op.call),
            Outcome::Unknown => u64::MAX,
        };
        events.push((op.call, false, i));
        events.push((ret, true, i));
    }
    events.sort();
    // A doubly linked list over the events, node 0 a sentinel head.
    let len = events.len() + 1;
    let mut next = vec![NIL; len];
    let mut prev = vec![NIL; len];
    for i in 0..len {
        next[i] = if i + 1 < len { i + 1 } else { NIL };
        prev[i] = if i == 0 { NIL } else { i - 1 };
    }
    let mut ret_node = vec![0usize; n];
    for (k, &(_, is_ret, op)) in events.iter().enumerate() {
        if is_ret {
            ret_node[op] = k + 1;
        }
    }
    let node_op = |node: usize| events[node - 1].2;
    let node_is_call = |node: usize| !events[node - 1].1;

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, States)> = HashSet::new();
    let mut stack: Vec<(usize, States)> = Vec::new();
    let mut state = m.closure(m.init());
    let mut entry = next[0];
    let mut steps = 0u64;

    while next[0] != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::Unknown;
        }
        if entry == NIL {
            // Cannot happen: a call's return always follows it.
            return Verdict::Unknown;
        }
        if node_is_call(entry) {
            let op = node_op(entry);
            let new_state = step_set(m, state, &history[op]);
            let mut advanced = false;
            if new_state != 0 {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((entry, state));
                    state = new_state;
                    // lift: unlink the call and its return.
                    let r = ret_node[op];
                    next[prev[entry]] = next[entry];
                    if next[entry] != NIL {
                        prev[next[entry]] = prev[entry];
                    }
                    next[prev[r]] = next[r];
                    if next[r] != NIL {
                        prev[next[r]] = prev[r];
                    }
                    entry = next[0];
                    advanced = true;
                } else {
                    linearized[op / 64] &= !(1 << (op % 64));
                }
            }
            if !advanced {
                entry = next[entry];
            }
        } else {
            // A return whose call is not linearized yet: backtrack.
            let Some((call, old_state)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            let op = node_op(call);
            state = old_state;
            linearized[op / 64] &= !(1 << (op % 64));
            // unlift: relink the return, then the call.
            let r = ret_node[op];
            next[prev[r]] = r;
            if next[r] != NIL {
                prev[next[r]] = r;
            }
            next[prev[call]] = call;
            if next[call] != NIL {
                prev[next[call]] = call;
            }
            entry = next[call];
        }
    }
    Verdict::Linearizable
}

/// Splits a history by key and checks each part.
pub fn check_by_key<K: std::hash::Hash + Eq + Clone + Ord, M: Model>(
    m: &M,
    history: Vec<(K, ModelOp<M>)>,
    budget: u64,
) -> Vec<(K, usize, Verdict)>
where
    M::Input: Clone,
    M::Output: Clone,
{
    let mut parts: HashMap<K, Vec<ModelOp<M>>> = HashMap::new();
    for (k, op) in history {
        parts.entry(k).or_default().push(op);
    }
    let mut out: Vec<(K, usize, Verdict)> = parts
        .into_iter()
        .map(|(k, ops)| {
            let v = check(m, &ops, budget);
            (k, ops.len(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

// ---------------------------------------------------------------- models

/// A user's existence: `POST/DELETE/GET /hub/api/users/{name}`.
pub struct UserModel;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserOp {
    Create,
    Delete,
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserResult {
    /// 201 / 204 / 200: it took effect (create, delete) or exists (read).
    Yes,
    /// 409 / 404 / 404: already there, not there, not found.
    No,
}

const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

impl Model for UserModel {
    type Input = UserOp;
    type Output = UserResult;
    /// The run starts on a live cluster: the user may or may not exist.
    fn init(&self) -> States {
        (1 << ABSENT) | (1 << PRESENT)
    }
    fn step(&self, s: u8, input: &UserOp, output: &UserResult) -> States {
        match (input, output, s) {
            (UserOp::Create, UserResult::Yes, ABSENT) => 1 << PRESENT,
            (UserOp::Create, UserResult::No, PRESENT) => 1 << PRESENT,
            (UserOp::Delete, UserResult::Yes, PRESENT) => 1 << ABSENT,
            (UserOp::Delete, UserResult::No, ABSENT) => 1 << ABSENT,
            (UserOp::Read, UserResult::Yes, PRESENT) => 1 << PRESENT,
            (UserOp::Read, UserResult::No, ABSENT) => 1 << ABSENT,
            _ => 0,
        }
    }
    fn apply(&self, s: u8, input: &UserOp) -> States {
        match input {
            UserOp::Create => 1 << PRESENT,
            UserOp::Delete => 1 << ABSENT,
            UserOp::Read => 1 << s,
        }
    }
}

/// A user's default server: `POST/DELETE /hub/api/users/{name}/server` and
/// what `GET /hub/api/users/{name}` reports. The controller moves a
/// starting server to running (or, if the spawn fails, to stopped) and a
/// stopping one to stopped on its own; nothing else changes by itself.
pub struct ServerModel;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Off = 0,
    Starting = 1,
    On = 2,
    Stopping = 3,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerOp {
    Start,
    Stop,
    Read,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerResult {
    /// 201/202 for a start (202 also while one is pending, as JupyterHub
    /// answers), 202 for a stop still under way.
    Accepted,
    /// 204 for a stop: the server is not running (this stop took it
    /// through stopping to gone, or it was not running at all: JupyterHub
    /// answers 204 for both).
    Stopped,
    /// 400: already running or stopping (start); from a release before
    /// log format 7 also already starting (start) or not running (stop).
    Refused,
    /// What a read reported.
    Seen(Phase),
}

const fn bit(p: Phase) -> States {
    1 << (p as u8)
}

impl Model for ServerModel {
    type Input = ServerOp;
    type Output = ServerResult;
    /// The run starts on a live cluster: the server may be in any phase.
    fn init(&self) -> States {
        bit(Phase::Off) | bit(Phase::Starting) | bit(Phase::On) | bit(Phase::Stopping)
    }
    fn step(&self, s: u8, input: &ServerOp, output: &ServerResult) -> States {
        let on = |p: Phase| s == p as u8;
        match (input, output) {
            (ServerOp::Start, ServerResult::Accepted) if on(Phase::Off) || on(Phase::Starting) => {
                bit(Phase::Starting)
            }
            // Releases before log format 7 also refuse a start while one
            // is pending, and a stop of a stopped server, with 400: the
            // rolling upgrade runs both releases at once.
            (ServerOp::Start, ServerResult::Refused) if !on(Phase::Off) => 1 << s,
            (ServerOp::Stop, ServerResult::Accepted) if !on(Phase::Off) => bit(Phase::Stopping),
            // Done: it was not running, or this stop took it through
            // stopping (which reads may see meanwhile) and it has gone.
            (ServerOp::Stop, ServerResult::Stopped) if on(Phase::Off) => bit(Phase::Off),
            (ServerOp::Stop, ServerResult::Stopped) => bit(Phase::Stopping),
            (ServerOp::Stop, ServerResult::Refused) if on(Phase::Off) => 1 << s,
            (ServerOp::Read, ServerResult::Seen(p)) if on(*p) => 1 << s,
            _ => 0,
        }
    }
    fn apply(&self, s: u8, input: &ServerOp) -> States {
        match input {
            ServerOp::Start if s == Phase::Off as u8 => bit(Phase::Starting),
            ServerOp::Stop if s != Phase::Off as u8 => bit(Phase::Stopping),
            _ => 1 << s,
        }
    }
    fn closure(&self, mut set: States) -> States {
        if set & bit(Phase::Starting) != 0 {
            set |= bit(Phase::On) | bit(Phase::Off);
        }
        if set & bit(Phase::Stopping) != 0 {
            set |= bit(Phase::Off);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(call, ret, op, result)`; result `None` = unknown outcome.
    fn users(ops: &[(u64, u64, UserOp, Option<UserResult>)]) -> Vec<Op<UserOp, UserResult>> {
        ops.iter()
            .map(|(c, r, i, o)| Op {
                input: i.clone(),
                output: o.clone().map(Outcome::Ok).unwrap_or(Outcome::Unknown),
                call: *c,
                ret: *r,
            })
            .collect()
    }

    use UserOp::*;
    use UserResult::{No, Yes};

    type UserCase = (
        &'static str,
        Vec<(u64, u64, UserOp, Option<UserResult>)>,
        Verdict,
    );
    type ServerCase = (&'static str, Vec<Op<ServerOp, ServerResult>>, Verdict);

    #[test]
    fn user_histories() {
        let cases: Vec<UserCase> = vec![
            ("empty", vec![], Verdict::Linearizable),
            (
                "create then read",
                vec![(0, 1, Create, Some(Yes)), (2, 3, Read, Some(Yes))],
                Verdict::Linearizable,
            ),
            (
                "acknowledged create lost",
                vec![(0, 1, Create, Some(Yes)), (2, 3, Read, Some(No))],
                Verdict::NotLinearizable,
            ),
            (
                "concurrent read may see either",
                vec![
                    (0, 10, Create, Some(Yes)),
                    (2, 3, Read, Some(No)),
                    (4, 5, Read, Some(Yes)),
                ],
                Verdict::Linearizable,
            ),
            (
                "reads must not go back in time",
                vec![
                    (0, 10, Create, Some(Yes)),
                    (2, 3, Read, Some(Yes)),
                    (4, 5, Read, Some(No)),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "two creates cannot both win",
                vec![(0, 10, Create, Some(Yes)), (1, 9, Create, Some(Yes))],
                Verdict::NotLinearizable,
            ),
            (
                "create, concurrent create sees it, delete",
                vec![
                    (0, 10, Create, Some(Yes)),
                    (1, 9, Create, Some(No)),
                    (11, 12, Delete, Some(Yes)),
                    (13, 14, Read, Some(No)),
                ],
                Verdict::Linearizable,
            ),
            (
                "unknown create may have happened",
                vec![(0, 1, Create, None), (5, 6, Read, Some(Yes))],
                Verdict::Linearizable,
            ),
            (
                "unknown create may not have happened",
                vec![
                    (0, 1, Create, None),
                    (5, 6, Read, Some(No)),
                    (7, 8, Create, Some(Yes)),
                ],
                Verdict::Linearizable,
            ),
            (
                "unknown create takes effect at most once",
                vec![
                    (0, 1, Read, Some(No)),
                    (2, 3, Create, None),
                    (5, 6, Read, Some(Yes)),
                    (7, 8, Delete, Some(Yes)),
                    (9, 10, Read, Some(Yes)),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "the initial state is unknown",
                vec![(0, 1, Delete, Some(Yes))],
                Verdict::Linearizable,
            ),
            (
                "delete of a missing user",
                vec![(0, 1, Read, Some(No)), (2, 3, Delete, Some(Yes))],
                Verdict::NotLinearizable,
            ),
        ];
        for (name, ops, want) in cases {
            assert_eq!(check(&UserModel, &users(&ops), 1_000_000), want, "{name}");
        }
    }

    #[test]
    fn server_histories() {
        use Phase::*;
        use ServerOp::{Read as R, Start, Stop};
        use ServerResult::{Accepted, Refused, Seen, Stopped};
        let op = |c: u64, r: u64, i: ServerOp, o: Option<ServerResult>| Op {
            input: i,
            output: o.map(Outcome::Ok).unwrap_or(Outcome::Unknown),
            call: c,
            ret: r,
        };
        let cases: Vec<ServerCase> = vec![
            (
                "start, becomes ready by itself, stop",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, R, Some(Seen(Starting))),
                    op(4, 5, R, Some(Seen(On))),
                    op(6, 7, Stop, Some(Accepted)),
                    op(8, 9, R, Some(Seen(Off))),
                ],
                Verdict::Linearizable,
            ),
            (
                "ready never goes back to starting",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, R, Some(Seen(On))),
                    op(4, 5, R, Some(Seen(Starting))),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "an acknowledged stop is not undone",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, Stop, Some(Accepted)),
                    op(4, 5, R, Some(Seen(On))),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "a second start is refused",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, Start, Some(Refused)),
                ],
                Verdict::Linearizable,
            ),
            (
                "two starts cannot both be accepted without a stop",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, R, Some(Seen(On))),
                    op(4, 5, Start, Some(Accepted)),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "an older release's refused stop of a stopped server",
                vec![
                    op(0, 1, Stop, Some(Refused)),
                    op(2, 3, Stop, Some(Accepted)),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "a stop that answers stopped may be seen stopping meanwhile",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 9, Stop, Some(Stopped)),
                    op(3, 4, R, Some(Seen(Stopping))),
                    op(10, 11, R, Some(Seen(Off))),
                ],
                Verdict::Linearizable,
            ),
            (
                "a stop of a stopped server that answered stopped stops nothing",
                vec![
                    op(0, 1, R, Some(Seen(Off))),
                    op(2, 3, Stop, Some(Stopped)),
                    op(4, 5, R, Some(Seen(Stopping))),
                ],
                Verdict::NotLinearizable,
            ),
            (
                "stopped ends any phase",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, Stop, Some(Stopped)),
                    op(4, 5, R, Some(Seen(Off))),
                    op(6, 7, Stop, Some(Stopped)),
                ],
                Verdict::Linearizable,
            ),
            (
                "after stopped the server is not seen running",
                vec![op(0, 1, Stop, Some(Stopped)), op(2, 3, R, Some(Seen(On)))],
                Verdict::NotLinearizable,
            ),
            (
                "a start while one is pending is accepted",
                vec![
                    op(0, 1, Start, Some(Accepted)),
                    op(2, 3, R, Some(Seen(Starting))),
                    op(4, 5, Start, Some(Accepted)),
                ],
                Verdict::Linearizable,
            ),
            (
                "the initial phase is unknown",
                vec![op(0, 1, R, Some(Seen(On))), op(2, 3, Stop, Some(Accepted))],
                Verdict::Linearizable,
            ),
            (
                "an unknown start may have happened",
                vec![op(0, 1, Start, None), op(2, 3, R, Some(Seen(On)))],
                Verdict::Linearizable,
            ),
        ];
        for (name, ops, want) in cases {
            assert_eq!(check(&ServerModel, &ops, 1_000_000), want, "{name}");
        }
    }

    #[test]
    fn many_concurrent_clients_stay_tractable() {
        // 8 clients, 400 overlapping operations on one key, all consistent
        // with one sequential run: must be found linearizable quickly.
        let mut ops = Vec::new();
        let mut present = false;
        for i in 0..400u64 {
            let (input, output) = match i % 3 {
                0 => {
                    let r = if present { No } else { Yes };
                    present = true;
                    (Create, r)
                }
                1 => (Read, if present { Yes } else { No }),
                _ => {
                    let r = if present { Yes } else { No };
                    present = false;
                    (Delete, r)
                }
            };
            // Each op overlaps the next 3 (call i*10, return i*10+35).
            ops.push(Op {
                input,
                output: Outcome::Ok(output),
                call: i * 10,
                ret: i * 10 + 35,
            });
        }
        assert_eq!(check(&UserModel, &ops, 5_000_000), Verdict::Linearizable);
    }
}
