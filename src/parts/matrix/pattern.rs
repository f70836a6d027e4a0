//! The matrix pattern language (contract §3): small patterns composed into
//! bigger ones, parsed from JSON into a typed tree, checked against limits.
//!
//! Every node's duration is known before it runs, so the frame at any moment
//! of a program is a pure function of the time since it started: the last
//! `frame` shown, with every running `on`/`blink`/`cycle` lighting its LEDs on
//! top. Timing therefore follows absolute deadlines: nothing drifts.

use serde_json::Value;

use crate::parts::matrix::Frame;
use crate::quote::{clip, MAX_ECHO};

/// Limits a program must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of nodes.
    pub max_depth: usize,
    /// Most nodes in one program.
    pub max_nodes: usize,
    /// Shortest `ms` / `interval_ms`.
    pub min_interval_ms: u64,
    /// Largest `times` of `repeat`, `blink` and `cycle`.
    pub max_times: u64,
    /// Longest finite program, in ms.
    pub max_duration_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 16,
            max_nodes: 256,
            min_interval_ms: 10,
            max_times: 100_000,
            max_duration_ms: 7 * 24 * 3600 * 1000,
        }
    }
}

/// A parsed pattern program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Show a frame; it stays until another `frame` replaces it.
    Frame(Frame),
    /// Light the LEDs for `ms` (or until cancelled), then turn them off.
    On {
        /// The LEDs.
        leds: Frame,
        /// How long; `None` = until cancelled.
        ms: Option<u64>,
    },
    /// On for the interval, off for the interval, `times` times (or for ever).
    Blink {
        /// The LEDs.
        leds: Frame,
        /// Half period.
        interval_ms: u64,
        /// How often; `None` = for ever.
        times: Option<u64>,
    },
    /// Light the LEDs one at a time, in order, `times` rounds (or for ever).
    Cycle {
        /// LED indexes in order.
        order: Vec<u8>,
        /// Time each LED is lit.
        interval_ms: u64,
        /// How many rounds; `None` = for ever.
        times: Option<u64>,
    },
    /// One after another.
    Sequence(Vec<Node>),
    /// Together; done when all are done.
    All(Vec<Node>),
    /// Together; done when the first is done, the others are cancelled.
    Any(Vec<Node>),
    /// The body `times` times (`None` = for ever).
    Repeat {
        /// How often; `None` = for ever.
        times: Option<u64>,
        /// The body.
        body: Box<Node>,
    },
}

/// Why a program was refused; the message names the place and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

/// Named frames and patterns available to programs (as `SEL` and by name).
pub trait Names {
    /// The frame of a named frame (`smiley`), if there is one.
    fn frame(&self, name: &str) -> Option<Frame>;
}

/// No names.
pub struct NoNames;

impl Names for NoNames {
    fn frame(&self, _: &str) -> Option<Frame> {
        None
    }
}

/// The named patterns shipped with the agent (`patterns/patterns.json`).
pub(crate) const LIBRARY_JSON: &str = include_str!("../../../patterns/patterns.json");

/// The named patterns, parsed; names whose program is a single frame are
/// also selections (`"leds": "smiley"`).
#[derive(Debug, Clone)]
pub struct Library {
    patterns: Vec<(String, std::sync::Arc<Node>)>,
    /// How many of them, first, are the shipped ones; saved ones follow.
    shipped: usize,
}

impl Names for Library {
    fn frame(&self, name: &str) -> Option<Frame> {
        match self.get(name).map(|n| &**n) {
            Some(Node::Frame(m)) => Some(*m),
            _ => None,
        }
    }
}

struct FramesOf<'a>(&'a serde_json::Map<String, Value>);

impl Names for FramesOf<'_> {
    fn frame(&self, name: &str) -> Option<Frame> {
        let text = self.0.get(name)?.get("frame")?.as_str()?;
        Frame::parse(text).ok()
    }
}

impl Library {
    /// The built-in library.
    pub fn builtin() -> Result<Library, PatternError> {
        Self::from_json(LIBRARY_JSON)
    }

    /// The built-in library, parsed once per process: the matrix and
    /// discovery's effect list share it.
    pub(crate) fn shared() -> Result<&'static Library, PatternError> {
        static SHARED: std::sync::OnceLock<Result<Library, PatternError>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(Library::builtin)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A library from a JSON object of name → program.
    pub(crate) fn from_json(text: &str) -> Result<Library, PatternError> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| PatternError(format!("patterns: {e}")))?;
        let map = v
            .as_object()
            .ok_or_else(|| PatternError("patterns: expected an object".into()))?;
        let names = FramesOf(map);
        let mut patterns = Vec::new();
        for (name, program) in map {
            let node = parse(program, Limits::default(), &names)
                .map_err(|e| PatternError(format!("pattern {name:?}: {e}")))?;
            patterns.push((name.clone(), std::sync::Arc::new(node)));
        }
        let shipped = patterns.len();
        Ok(Library { patterns, shipped })
    }

    /// Whether `name` (in any case) is one of the shipped patterns.
    pub(crate) fn is_shipped(&self, name: &str) -> bool {
        self.patterns[..self.shipped]
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// How many saved patterns it has.
    pub(crate) fn saved(&self) -> usize {
        self.patterns.len() - self.shipped
    }

    /// Adds a saved pattern (the saved ones in the order of their names), or
    /// replaces the saved one of that name; never a shipped one (the caller
    /// refuses those names).
    pub(crate) fn put(&mut self, name: &str, program: std::sync::Arc<Node>) {
        let saved = &mut self.patterns[self.shipped..];
        match saved.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(entry) => entry.1 = program,
            None => {
                // In the order of their names, after the shipped ones.
                let at = saved.partition_point(|(n, _)| n.as_str() < name);
                self.patterns
                    .insert(self.shipped + at, (name.to_string(), program));
            }
        }
    }

    /// Forgets a saved pattern; whether there was one.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let at = self.patterns[self.shipped..]
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name));
        if let Some(i) = at {
            self.patterns.remove(self.shipped + i);
        }
        at.is_some()
    }

    /// The program called `name`.
    pub fn get(&self, name: &str) -> Option<&std::sync::Arc<Node>> {
        self.find(name).map(|(_, p)| p)
    }

    /// The pattern called `name` in any case (`Smiley` is `smiley`, as `on`
    /// is `ON`), with its name as the library spells it.
    pub(crate) fn find(&self, name: &str) -> Option<(&str, &std::sync::Arc<Node>)> {
        self.patterns
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(n, p)| (n.as_str(), p))
    }

    /// Every name, in the file's order.
    pub(crate) fn names(&self) -> Vec<&str> {
        self.patterns.iter().map(|(n, _)| n.as_str()).collect()
    }
}

struct Parser<'a> {
    limits: Limits,
    names: &'a dyn Names,
    nodes: usize,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Parser<'_> {
    fn err(&self, path: &str, msg: impl std::fmt::Display) -> PatternError {
        PatternError(format!("{path}: {msg}"))
    }

    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Result<Node, PatternError> {
        if depth > self.limits.max_depth {
            return Err(self.err(
                path,
                format!(
                    "nested deeper than the limit of {} levels (max_depth)",
                    self.limits.max_depth
                ),
            ));
        }
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            return Err(self.err(
                path,
                format!(
                    "more nodes than the limit of {} (max_nodes)",
                    self.limits.max_nodes
                ),
            ));
        }
        let obj = v.as_object().ok_or_else(|| {
            self.err(
                path,
                format!(
                    "expected a node like {{\"blink\": {{...}}}}, found {}",
                    kind(v)
                ),
            )
        })?;
        if obj.len() != 1 {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            return Err(self.err(
                path,
                format!(
                    "a node has exactly one key, this has {}: {}",
                    obj.len(),
                    clip(&keys.join(", "), MAX_ECHO)
                ),
            ));
        }
        let (key, body) = obj
            .iter()
            .next()
            .ok_or_else(|| self.err(path, "empty node"))?;
        let here = format!("{path}.{}", clip(key, MAX_ECHO));
        self.keyed(key, body, path, &here, depth)
    }

    /// The node `{key: body}` at `path` (`here` is `path.key`).
    fn keyed(
        &mut self,
        key: &str,
        body: &Value,
        path: &str,
        here: &str,
        depth: usize,
    ) -> Result<Node, PatternError> {
        match key {
            "frame" => {
                let text = body.as_str().ok_or_else(|| self.err(here, format!("expected a frame like \"01110/10001/10001/10001/01110\", found {}", kind(body))))?;
                Ok(Node::Frame(self.frame_text(text, here)?))
            }
            "on" => {
                let o = self.fields(body, here, &["leds"], &["ms"])?;
                let leds = self.sel(&o["leds"], &format!("{here}.leds"))?;
                let ms = o.get("ms").map(|v| self.interval(v, &format!("{here}.ms"))).transpose()?;
                Ok(Node::On { leds, ms })
            }
            "blink" => {
                let o = self.fields(body, here, &["leds", "interval_ms"], &["times"])?;
                Ok(Node::Blink {
                    leds: self.sel(&o["leds"], &format!("{here}.leds"))?,
                    interval_ms: self.interval(&o["interval_ms"], &format!("{here}.interval_ms"))?,
                    times: o.get("times").map(|v| self.times(v, &format!("{here}.times"))).transpose()?,
                })
            }
            "cycle" => {
                let o = self.fields(body, here, &["leds", "interval_ms"], &["times"])?;
                let order = self.order(&o["leds"], &format!("{here}.leds"))?;
                Ok(Node::Cycle {
                    order,
                    interval_ms: self.interval(&o["interval_ms"], &format!("{here}.interval_ms"))?,
                    times: o.get("times").map(|v| self.times(v, &format!("{here}.times"))).transpose()?,
                })
            }
            "sequence" | "all" | "any" => {
                let list = body.as_array().ok_or_else(|| self.err(here, format!("expected a list of nodes, found {}", kind(body))))?;
                if list.is_empty() {
                    return Err(self.err(here, "the list is empty; give at least one node"));
                }
                let children = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| self.node(c, &format!("{here}[{i}]"), depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(match key {
                    "sequence" => Node::Sequence(children),
                    "all" => Node::All(children),
                    _ => Node::Any(children),
                })
            }
            "repeat" => {
                let o = self.fields(body, here, &["times", "pattern"], &[])?;
                let times = self.times(&o["times"], &format!("{here}.times"))?;
                let body = self.node(&o["pattern"], &format!("{here}.pattern"), depth + 1)?;
                self.loop_body(&body, here)?;
                Ok(Node::Repeat { times: Some(times), body: Box::new(body) })
            }
            "forever" => {
                let body = self.node(body, here, depth + 1)?;
                self.loop_body(&body, here)?;
                Ok(Node::Repeat { times: None, body: Box::new(body) })
            }
            other => Err(self.err(
                path,
                format!("unknown node {:?}; nodes are frame, on, blink, cycle, sequence, all, any, repeat, forever", clip(other, MAX_ECHO)),
            )),
        }
    }

    fn loop_body(&self, body: &Node, here: &str) -> Result<(), PatternError> {
        if duration(body) == Some(0) {
            return Err(self.err(here, "the pattern repeated takes no time (only frames); add on/blink/cycle with a duration"));
        }
        Ok(())
    }

    fn fields<'v>(
        &self,
        v: &'v Value,
        path: &str,
        required: &[&str],
        optional: &[&str],
    ) -> Result<&'v serde_json::Map<String, Value>, PatternError> {
        let o = v
            .as_object()
            .ok_or_else(|| self.err(path, format!("expected an object, found {}", kind(v))))?;
        for r in required {
            if !o.contains_key(*r) {
                return Err(self.err(path, format!("{r:?} is missing")));
            }
        }
        for k in o.keys() {
            if !required.contains(&k.as_str()) && !optional.contains(&k.as_str()) {
                let all: Vec<&str> = required.iter().chain(optional).copied().collect();
                return Err(self.err(
                    path,
                    format!(
                        "unknown field {:?}; the fields are {}",
                        clip(k, MAX_ECHO),
                        all.join(", ")
                    ),
                ));
            }
        }
        Ok(o)
    }

    fn whole(&self, v: &Value, path: &str) -> Result<u64, PatternError> {
        v.as_u64().ok_or_else(|| {
            self.err(
                path,
                format!("expected a whole number, found {}", describe(v)),
            )
        })
    }

    fn interval(&self, v: &Value, path: &str) -> Result<u64, PatternError> {
        let ms = self.whole(v, path)?;
        if ms < self.limits.min_interval_ms {
            return Err(self.err(
                path,
                format!(
                    "{ms} ms is below the smallest interval of {} ms (min_interval_ms)",
                    self.limits.min_interval_ms
                ),
            ));
        }
        if ms > self.limits.max_duration_ms {
            return Err(self.err(
                path,
                format!(
                    "{ms} ms is longer than the longest program of {} ms (max_duration_ms)",
                    self.limits.max_duration_ms
                ),
            ));
        }
        Ok(ms)
    }

    fn times(&self, v: &Value, path: &str) -> Result<u64, PatternError> {
        let n = self.whole(v, path)?;
        if n == 0 {
            return Err(self.err(path, "times is at least 1"));
        }
        if n > self.limits.max_times {
            return Err(self.err(
                path,
                format!(
                    "{n} is above the largest repeat count of {} (max_times)",
                    self.limits.max_times
                ),
            ));
        }
        Ok(n)
    }

    fn frame_text(&self, text: &str, path: &str) -> Result<Frame, PatternError> {
        Frame::parse(text).map_err(|e| self.err(path, e))
    }

    /// LED indexes of a selection, in its natural order.
    fn order(&self, v: &Value, path: &str) -> Result<Vec<u8>, PatternError> {
        let idx = |r: u64, c: u64| (r * 5 + c) as u8;
        match v {
            Value::String(s) => {
                if let Some(n) = s.strip_prefix("row:") {
                    let r = self.index(n, path)?;
                    Ok((0..5).map(|c| idx(r, c)).collect())
                } else if let Some(n) = s.strip_prefix("col:") {
                    let c = self.index(n, path)?;
                    Ok((0..5).map(|r| idx(r, c)).collect())
                } else {
                    let m = if s == "all" {
                        Frame::ALL
                    } else {
                        self.names.frame(s).ok_or_else(|| {
                            self.err(path, format!("{:?} is not a selection; use \"all\", \"row:N\", \"col:N\" (N 0..4), a named frame, or [[row, col], ...]", clip(s, MAX_ECHO)))
                        })?
                    };
                    Ok(m.lit().map(|i| i as u8).collect())
                }
            }
            Value::Array(pairs) => {
                if pairs.is_empty() {
                    return Err(self.err(path, "the list of LEDs is empty"));
                }
                pairs
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        let here = format!("{path}[{i}]");
                        match p.as_array().map(Vec::as_slice) {
                            Some([r, c]) => match (r.as_u64(), c.as_u64()) {
                                (Some(r), Some(c)) if r < 5 && c < 5 => Ok(idx(r, c)),
                                _ => Err(self.err(&here, "row and column are whole numbers 0..4")),
                            },
                            _ => Err(self
                                .err(&here, format!("expected [row, col], found {}", describe(p)))),
                        }
                    })
                    .collect()
            }
            other => Err(self.err(path, format!("expected a selection, found {}", kind(other)))),
        }
    }

    fn sel(&self, v: &Value, path: &str) -> Result<Frame, PatternError> {
        let order = self.order(v, path)?;
        Ok(order
            .iter()
            .fold(Frame::OFF, |m, &i| m | Frame::led(usize::from(i))))
    }

    fn index(&self, n: &str, path: &str) -> Result<u64, PatternError> {
        n.parse::<u64>().ok().filter(|n| *n < 5).ok_or_else(|| {
            self.err(
                path,
                format!("{:?} is not a row/column number 0..4", clip(n, MAX_ECHO)),
            )
        })
    }
}

fn describe(v: &Value) -> String {
    clip(&v.to_string(), 25).into_owned()
}

/// Parses a program from JSON, within `limits`, with `names` for `SEL`.
pub fn parse(v: &Value, limits: Limits, names: &dyn Names) -> Result<Node, PatternError> {
    let mut p = Parser {
        limits,
        names,
        nodes: 0,
    };
    let node = p.node(v, "program", 1)?;
    if let Some(d) = duration(&node) {
        if d > limits.max_duration_ms {
            return Err(PatternError(format!(
                "program: lasts {d} ms, longer than the limit of {} ms (max_duration_ms); use forever for endless patterns",
                limits.max_duration_ms
            )));
        }
    }
    Ok(node)
}

fn mul(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(0), _) | (_, Some(0)) => Some(0),
        (Some(a), Some(b)) => Some(a.saturating_mul(b)),
        _ => None,
    }
}

/// How long a node runs, in ms; `None` = for ever. Saturates on overflow.
pub(crate) fn duration(n: &Node) -> Option<u64> {
    match n {
        Node::Frame(_) => Some(0),
        Node::On { ms, .. } => *ms,
        Node::Blink {
            interval_ms, times, ..
        } => mul(times.map(|t| t.saturating_mul(2)), Some(*interval_ms)),
        Node::Cycle {
            order,
            interval_ms,
            times,
        } => mul(*times, Some(interval_ms.saturating_mul(order.len() as u64))),
        Node::Sequence(c) => c
            .iter()
            .try_fold(0u64, |acc, c| duration(c).map(|d| acc.saturating_add(d))),
        Node::All(c) => c
            .iter()
            .try_fold(0u64, |acc, c| duration(c).map(|d| acc.max(d))),
        Node::Any(c) => c.iter().filter_map(duration).min(),
        Node::Repeat { times, body } => mul(*times, duration(body)),
    }
}

/// What a node shows `tau` ms after it started: the last frame it set (and
/// when), and the LEDs its running leaves light.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Look {
    /// The last `frame` set, with the time (ms since the node started) it was set.
    pub base: Option<(u64, Frame)>,
    /// LEDs lit by running `on`/`blink`/`cycle` nodes.
    pub lit: Frame,
}

fn later(a: Option<(u64, Frame)>, b: Option<(u64, Frame)>) -> Option<(u64, Frame)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if y.0 >= x.0 { y } else { x }),
        (x, None) => x,
        (None, y) => y,
    }
}

fn shift(b: Option<(u64, Frame)>, by: u64) -> Option<(u64, Frame)> {
    b.map(|(t, m)| (t.saturating_add(by), m))
}

/// The node's look at `tau` ms after its start.
pub fn look(n: &Node, tau: u64) -> Look {
    match n {
        Node::Frame(m) => Look {
            base: Some((0, *m)),
            lit: Frame::OFF,
        },
        Node::On { leds, ms } => Look {
            base: None,
            lit: if ms.is_none_or(|d| tau < d) {
                *leds
            } else {
                Frame::OFF
            },
        },
        Node::Blink {
            leds, interval_ms, ..
        } => {
            let running = duration(n).is_none_or(|d| tau < d);
            let on = (tau / interval_ms) % 2 == 0;
            Look {
                base: None,
                lit: if running && on { *leds } else { Frame::OFF },
            }
        }
        Node::Cycle {
            order, interval_ms, ..
        } => {
            let running = duration(n).is_none_or(|d| tau < d);
            let k = (tau / interval_ms) as usize % order.len().max(1);
            Look {
                base: None,
                lit: if running {
                    order
                        .get(k)
                        .map_or(Frame::OFF, |&i| Frame::led(usize::from(i)))
                } else {
                    Frame::OFF
                },
            }
        }
        Node::Sequence(children) => look_sequence(children, tau),
        Node::All(children) => look_all(children, tau),
        Node::Any(children) => {
            let end = duration(n);
            let mut acc = look_all(children, end.map_or(tau, |e| tau.min(e)));
            if end.is_some_and(|e| tau >= e) {
                acc.lit = Frame::OFF; // the others were cancelled
            }
            acc
        }
        Node::Repeat { times, body } => look_repeat(*times, body, tau),
    }
}

/// The look of children run one after another, at `tau`.
fn look_sequence(children: &[Node], tau: u64) -> Look {
    let mut start = 0u64;
    let mut base = None;
    for c in children {
        if start > tau {
            break;
        }
        let d = duration(c);
        let l = look(c, tau - start);
        base = later(base, shift(l.base, start));
        match d {
            Some(d) if start.saturating_add(d) <= tau => start = start.saturating_add(d),
            // This child is running now.
            _ => return Look { base, lit: l.lit },
        }
    }
    Look {
        base,
        lit: Frame::OFF,
    }
}

/// The look of children run together, at `tau`.
fn look_all(children: &[Node], tau: u64) -> Look {
    children.iter().fold(Look::default(), |acc, c| {
        let l = look(c, tau);
        Look {
            base: later(acc.base, l.base),
            lit: acc.lit | l.lit,
        }
    })
}

/// The look of `body` repeated `times` (`None`: forever), at `tau`.
fn look_repeat(times: Option<u64>, body: &Node, tau: u64) -> Look {
    let Some(d) = duration(body).filter(|d| *d > 0) else {
        return look(body, tau);
    };
    let total = mul(times, Some(d));
    if total.is_some_and(|t| tau >= t) {
        // Done: the last round's final look.
        let last = look(body, d);
        let start = total.unwrap_or(0) - d;
        return Look {
            base: shift(last.base, start),
            lit: Frame::OFF,
        };
    }
    let round = tau / d;
    let within = tau % d;
    let l = look(body, within);
    let base = match l.base {
        Some(b) => Some((b.0 + round * d, b.1)),
        None if round > 0 => shift(look(body, d).base, (round - 1) * d),
        None => None,
    };
    Look { base, lit: l.lit }
}

/// The first time after `tau` at which the node's look can change, in ms
/// since its start; `None` = never.
pub fn next_change(n: &Node, tau: u64) -> Option<u64> {
    let next_step = |interval: u64| (tau / interval + 1).saturating_mul(interval);
    let until_end = |t: u64| duration(n).is_none_or(|d| t <= d).then_some(t);
    match n {
        Node::Frame(_) => None,
        Node::On { ms, .. } => ms.filter(|d| tau < *d),
        Node::Blink { interval_ms, .. } | Node::Cycle { interval_ms, .. } => {
            until_end(next_step(*interval_ms))
        }
        Node::Sequence(children) => {
            let mut start = 0u64;
            for c in children {
                let d = duration(c);
                match d {
                    Some(d) if start.saturating_add(d) <= tau => start = start.saturating_add(d),
                    _ => {
                        if start > tau {
                            return Some(start);
                        }
                        let inner = next_change(c, tau - start).map(|t| t.saturating_add(start));
                        let end = d.map(|d| start.saturating_add(d));
                        return match (inner, end) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                }
            }
            None
        }
        Node::All(children) => children.iter().filter_map(|c| next_change(c, tau)).min(),
        Node::Any(children) => {
            let end = duration(n);
            if end.is_some_and(|e| tau >= e) {
                return None;
            }
            children
                .iter()
                .filter_map(|c| next_change(c, tau))
                .chain(end)
                .min()
        }
        Node::Repeat { times, body } => {
            let d = duration(body).filter(|d| *d > 0)?;
            let total = mul(*times, Some(d));
            if total.is_some_and(|t| tau >= t) {
                return None;
            }
            let round_start = (tau / d) * d;
            let inner = next_change(body, tau - round_start).map(|t| t + round_start);
            let round_end = round_start.saturating_add(d);
            Some(inner.map_or(round_end, |t| t.min(round_end)))
        }
    }
}

/// The whole frame a program shows `tau` ms after it started.
pub fn frame_at(n: &Node, tau: u64) -> Frame {
    let l = look(n, tau);
    l.base.map_or(Frame::OFF, |(_, m)| m) | l.lit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(v: Value) -> Node {
        parse(&v, Limits::default(), &NoNames).unwrap()
    }

    fn e(v: Value) -> String {
        parse(&v, Limits::default(), &NoNames).unwrap_err().0
    }

    /// (time, frame) at every change up to `until`.
    fn timeline(n: &Node, until: u64) -> Vec<(u64, Frame)> {
        let mut out = vec![(0, frame_at(n, 0))];
        let mut t = 0;
        while let Some(next) = next_change(n, t).filter(|x| *x <= until) {
            t = next;
            let f = frame_at(n, t);
            if out.last().map(|(_, m)| *m) != Some(f) {
                out.push((t, f));
            }
        }
        out
    }

    const A: Frame = Frame::led(0);
    const B: Frame = Frame::led(1);

    #[test]
    fn blink_three_times() {
        let n = p(json!({"blink": {"leds": [[0, 0]], "interval_ms": 100, "times": 3}}));
        assert_eq!(duration(&n), Some(600));
        assert_eq!(
            timeline(&n, 10_000),
            vec![
                (0, A),
                (100, Frame::OFF),
                (200, A),
                (300, Frame::OFF),
                (400, A),
                (500, Frame::OFF)
            ]
        );
    }

    #[test]
    fn cycle_in_order() {
        let n = p(json!({"cycle": {"leds": [[0, 0], [0, 1]], "interval_ms": 50, "times": 2}}));
        assert_eq!(
            timeline(&n, 1000),
            vec![(0, A), (50, B), (100, A), (150, B), (200, Frame::OFF)]
        );
    }

    #[test]
    fn sequence_then_frame_stays() {
        let n = p(json!({"sequence": [
            {"on": {"leds": [[0, 0]], "ms": 100}},
            {"frame": "01000/00000/00000/00000/00000"},
            {"on": {"leds": [[0, 0]], "ms": 50}}
        ]}));
        assert_eq!(timeline(&n, 1000), vec![(0, A), (100, A | B), (150, B)]);
    }

    #[test]
    fn all_waits_for_the_longest_and_any_cancels_at_the_first() {
        let all = p(json!({"all": [
            {"on": {"leds": [[0, 0]], "ms": 100}},
            {"on": {"leds": [[0, 1]], "ms": 300}}
        ]}));
        assert_eq!(duration(&all), Some(300));
        assert_eq!(
            timeline(&all, 1000),
            vec![(0, A | B), (100, B), (300, Frame::OFF)]
        );
        let any = p(json!({"any": [
            {"on": {"leds": [[0, 0]], "ms": 100}},
            {"blink": {"leds": [[0, 1]], "interval_ms": 30}}
        ]}));
        assert_eq!(duration(&any), Some(100));
        assert_eq!(
            timeline(&any, 1000),
            vec![(0, A | B), (30, A), (60, A | B), (90, A), (100, Frame::OFF)]
        );
    }

    #[test]
    fn repeat_and_forever() {
        let r = p(json!({"repeat": {"times": 2, "pattern": {"sequence": [
            {"on": {"leds": [[0, 0]], "ms": 10}}, {"on": {"leds": [[0, 1]], "ms": 20}}
        ]}}}));
        assert_eq!(duration(&r), Some(60));
        assert_eq!(
            timeline(&r, 1000),
            vec![(0, A), (10, B), (30, A), (40, B), (60, Frame::OFF)]
        );
        let f =
            p(json!({"forever": {"blink": {"leds": [[0, 0]], "interval_ms": 100, "times": 1}}}));
        assert_eq!(duration(&f), None);
        assert_eq!(frame_at(&f, 3_600_000), A, "in phase after an hour");
        assert_eq!(frame_at(&f, 3_600_000 + 100), Frame::OFF);
        assert_eq!(next_change(&f, 3_600_000), Some(3_600_100));
    }

    #[test]
    fn on_without_ms_stays_until_cancelled() {
        let n = p(json!({"on": {"leds": "row:0"}}));
        assert_eq!(duration(&n), None);
        assert_eq!(frame_at(&n, 999_999), Frame::from_bits(0b11111));
        assert_eq!(next_change(&n, 0), None);
    }

    #[test]
    fn the_library_parses_and_names_frames() {
        let lib = Library::builtin().unwrap();
        // Found in any case; spelt one way, so no two names differ by case alone.
        for name in lib.names() {
            assert_eq!(name, name.to_lowercase(), "{name}");
            assert_eq!(lib.find(&name.to_uppercase()).map(|(n, _)| n), Some(name));
        }
        for name in [
            "smiley",
            "rows",
            "cols",
            "cycle",
            "blink",
            "off",
            "heart",
            "spiral",
            "sparkle",
            "heartbeat",
        ] {
            assert!(lib.get(name).is_some(), "{name}");
        }
        assert_eq!(
            lib.frame("smiley"),
            Some(Frame::parse("01010/01010/00000/10001/01110").unwrap())
        );
        assert_eq!(lib.frame("blink"), None, "a program, not a frame");
        let n = parse(
            &json!({"blink": {"leds": "heart", "interval_ms": 100}}),
            Limits::default(),
            &lib,
        )
        .unwrap();
        assert_eq!(frame_at(&n, 0), lib.frame("heart").unwrap());
    }

    #[test]
    fn selections() {
        let sel = |v: Value| match p(json!({"on": {"leds": v}})) {
            Node::On { leds, .. } => leds,
            _ => unreachable!(),
        };
        assert_eq!(sel(json!("all")), Frame::ALL);
        assert_eq!(
            sel(json!("col:0")),
            Frame::from_bits(1 | 1 << 5 | 1 << 10 | 1 << 15 | 1 << 20)
        );
        assert_eq!(sel(json!([[4, 4]])), Frame::led(24));
    }

    #[test]
    fn every_limit_is_named() {
        assert!(e(json!({"blink": {"leds": "all", "interval_ms": 5}})).contains("min_interval_ms"));
        assert!(e(
            json!({"repeat": {"times": 100_001, "pattern": {"on": {"leds": "all", "ms": 10}}}})
        )
        .contains("max_times"));
        assert!(
            e(json!({"blink": {"leds": "all", "interval_ms": 10, "times": 100_001}}))
                .contains("max_times")
        );
        let mut deep = json!({"on": {"leds": "all", "ms": 10}});
        for _ in 0..16 {
            deep = json!({"sequence": [deep]});
        }
        assert!(e(deep).contains("max_depth"));
        let many: Vec<Value> = (0..300)
            .map(|_| json!({"frame": "00000/00000/00000/00000/00000"}))
            .collect();
        assert!(e(json!({"sequence": many})).contains("max_nodes"));
        let long = json!({"repeat": {"times": 100_000, "pattern": {"repeat": {"times": 100_000, "pattern": {"on": {"leds": "all", "ms": 100}}}}}});
        assert!(e(long).contains("max_duration_ms"));
        // At the limits: accepted.
        let mut ok = json!({"on": {"leds": "all", "ms": 10}});
        for _ in 0..15 {
            ok = json!({"sequence": [ok]});
        }
        parse(&ok, Limits::default(), &NoNames).unwrap();
        p(json!({"blink": {"leds": "all", "interval_ms": 10, "times": 100_000}}));
    }

    #[test]
    fn malformed_programs() {
        for (v, says) in [
            (json!({"wiggle": {}}), "unknown node"),
            (
                json!({"blink": {"leds": "all", "interval_ms": "fast"}}),
                "whole number",
            ),
            (json!({"blink": {"leds": "all"}}), "missing"),
            (
                json!({"blink": {"leds": "all", "interval_ms": 100, "colour": "red"}}),
                "unknown field",
            ),
            (json!({"sequence": []}), "empty"),
            (json!({"all": {}}), "list"),
            (json!({"on": {"leds": "row:7"}}), "0..4"),
            (json!({"on": {"leds": [[0, 9]]}}), "0..4"),
            (json!({"on": {"leds": []}}), "empty"),
            (json!({"on": {"leds": "smiley"}}), "selection"),
            (json!({"frame": "0/0"}), "5 rows"),
            (
                json!({"forever": {"frame": "00000/00000/00000/00000/00000"}}),
                "no time",
            ),
            (
                json!({"blink": {"leds": "all", "interval_ms": 100, "times": 0}}),
                "at least 1",
            ),
            (
                json!({"blink": {"leds": "all", "interval_ms": -1}}),
                "whole number",
            ),
            (json!({"on": {}, "blink": {}}), "exactly one key"),
            (json!([1, 2]), "node"),
        ] {
            let msg = e(v.clone());
            assert!(msg.contains(says), "{v}: {msg}");
            assert!(msg.starts_with("program"), "names the place: {msg}");
        }
    }
}
