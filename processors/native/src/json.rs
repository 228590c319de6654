//! A strict JSON reader into a borrowed tree, for request bodies.
//!
//! Why not serde_json's Value: with key order kept (an IndexMap per object, SipHash per key) it cost
//! ~6 µs per event, the whole budget. This tree borrows unescaped strings from the body and keeps
//! objects as vectors of pairs, with Python's dict semantics for repeated keys (the last value wins,
//! at the first key's place), which is what orjson.loads builds.
//!
//! It accepts no more than orjson does (RFC 8259; numbers that overflow f64 refused; integers beyond
//! 64 bits read as floats); where it is stricter (nesting deeper than MAX_DEPTH) the caller leaves the
//! request to the Python reference, so the two never disagree on what a body holds.

use std::borrow::Cow;

pub const MAX_DEPTH: usize = 128;

/// The bytes that end a string's plain run: the quote, the backslash and the control characters.
static STOPS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

#[derive(Debug, Clone)]
pub enum J<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<J<'a>>),
    Obj(Vec<(Cow<'a, str>, J<'a>)>),
}

pub type Obj<'a> = [(Cow<'a, str>, J<'a>)];

impl<'a> J<'a> {
    pub fn get(&self, key: &str) -> Option<&J<'a>> {
        match self {
            J::Obj(pairs) => get(pairs, key),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }
}

pub fn get<'b, 'a>(pairs: &'b Obj<'a>, key: &str) -> Option<&'b J<'a>> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

struct Reader<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    keep: usize, // objects and arrays at this depth or deeper are checked but not built
    growth: usize, // bytes orjson's re-encoding may add to what has been read (numbers it writes longer)
    sized: Option<Sizes<'a>>,
}

/// Bounds on the sizes of a document's parts as orjson.dumps re-encodes them: their text, less nothing
/// (whitespace, escapes and repeated keys only shrink it), plus what a number not written as orjson
/// writes it may add (``1e5`` is written ``100000.0``).
#[derive(Default)]
pub struct Sizes<'a> {
    /// the document's members, in the order read (a repeated key appears each time)
    pub members: Vec<(Cow<'a, str>, usize)>,
    /// the items of the document's arrays, in the order read
    pub items: Vec<usize>,
}

/// The longest number orjson writes (``-2.2250738585072014e-308``).
const LONGEST_NUMBER: usize = 24;

pub fn parse(body: &[u8]) -> Option<J<'_>> {
    Some(read(body, usize::MAX, None)?.0)
}

/// Like `parse`, but an object or array nested ``keep`` levels deep (the document is level 0) is
/// read, and refused where orjson refuses it, without being built: it stands in the tree as an
/// empty one of its kind (for callers that look at the top levels only: the collector). Such a
/// skipped object may have more than the 64 keys a built one may (that limit is only there to keep
/// building linear). With the size bounds of the document's members and of its arrays' items.
pub fn parse_sized(body: &[u8], keep: usize) -> Option<(J<'_>, Sizes<'_>)> {
    let (doc, sizes) = read(body, keep, Some(Sizes::default()))?;
    Some((doc, sizes.unwrap_or_default()))
}

fn read<'a>(body: &'a [u8], keep: usize, sized: Option<Sizes<'a>>) -> Option<(J<'a>, Option<Sizes<'a>>)> {
    let s = std::str::from_utf8(body).ok()?;
    let mut r = Reader { b: body, s, i: 0, keep, growth: 0, sized };
    r.ws();
    let v = r.value(0)?;
    r.ws();
    if r.i != r.b.len() {
        return None;
    }
    Some((v, r.sized))
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn lit(&mut self, word: &[u8], v: J<'a>) -> Option<J<'a>> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(v)
        } else {
            None
        }
    }

    fn value(&mut self, depth: usize) -> Option<J<'a>> {
        match *self.b.get(self.i)? {
            b'{' if depth >= self.keep => self.skip(depth).map(|()| J::Obj(Vec::new())),
            b'[' if depth >= self.keep => self.skip(depth).map(|()| J::Arr(Vec::new())),
            b'{' => {
                let mut pairs: Vec<(Cow<'a, str>, J<'a>)> = Vec::with_capacity(8);
                if self.opened_empty(depth, b'}')? {
                    return Some(J::Obj(pairs));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return None;
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return None;
                    }
                    self.i += 1;
                    self.ws();
                    let (start, grown) = (self.i, self.growth);
                    let v = self.value(depth + 1)?;
                    if let Some(sized) = self.sized.as_mut().filter(|_| depth == 0) {
                        sized.members.push((k.clone(), self.i - start + self.growth - grown));
                    }
                    // a repeated key: the last value, at the first one's place (a Python dict)
                    if pairs.len() > 64 {
                        return None; // quadratic beyond this: the reference reads such objects
                    }
                    match pairs.iter_mut().find(|(pk, _)| *pk == k) {
                        Some(slot) => slot.1 = v,
                        None => pairs.push((k, v)),
                    }
                    if self.closed_after_item(b'}')? {
                        return Some(J::Obj(pairs));
                    }
                }
            }
            b'[' => {
                let mut items = Vec::new();
                if self.opened_empty(depth, b']')? {
                    return Some(J::Arr(items));
                }
                loop {
                    self.ws();
                    let (start, grown) = (self.i, self.growth);
                    items.push(self.value(depth + 1)?);
                    if let Some(sized) = self.sized.as_mut().filter(|_| depth == 1) {
                        sized.items.push(self.i - start + self.growth - grown);
                    }
                    if self.closed_after_item(b']')? {
                        return Some(J::Arr(items));
                    }
                }
            }
            b'"' => Some(J::Str(self.string()?)),
            b't' => self.lit(b"true", J::Bool(true)),
            b'f' => self.lit(b"false", J::Bool(false)),
            b'n' => self.lit(b"null", J::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// A value read and refused as `value` would refuse it (bar the 64 keys), without building it.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match *self.b.get(self.i)? {
            open @ (b'{' | b'[') => {
                let close = open + 2; // '}' and ']'
                if self.opened_empty(depth, close)? {
                    return Some(());
                }
                loop {
                    self.ws();
                    if open == b'{' {
                        if self.b.get(self.i) != Some(&b'"') {
                            return None;
                        }
                        self.skip_string()?;
                        self.ws();
                        if self.b.get(self.i) != Some(&b':') {
                            return None;
                        }
                        self.i += 1;
                        self.ws();
                    }
                    self.skip(depth + 1)?;
                    if self.closed_after_item(close)? {
                        return Some(());
                    }
                }
            }
            b'"' => self.skip_string().map(drop),
            _ => self.value(depth).map(drop), // a number or a literal: nothing to build
        }
    }

    fn number(&mut self) -> Option<J<'a>> {
        let start = self.i;
        let b = self.b;
        if b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_start = self.i;
        match b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let int_end = self.i;
        let mut float = false;
        if b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        if matches!(b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
            float = true;
        }
        let text = &self.s[start..self.i];
        if !float {
            let neg = start != int_start;
            if int_end - int_start <= 20 {
                if neg {
                    if let Ok(v) = text.parse::<i64>() {
                        return Some(J::Int(v));
                    }
                } else if let Ok(v) = text.parse::<u64>() {
                    return Some(if v <= i64::MAX as u64 { J::Int(v as i64) } else { J::UInt(v) });
                }
            }
        }
        let f: f64 = text.parse().ok()?;
        if !f.is_finite() {
            return None; // orjson: "number is infinity when parsed as double"
        }
        self.growth += LONGEST_NUMBER.saturating_sub(text.len()); // 1e5 is written 100000.0
        Some(J::Float(f))
    }

    /// Past an object's or array's opening bracket (None beyond MAX_DEPTH): true when ``close`` follows at once.
    fn opened_empty(&mut self, depth: usize, close: u8) -> Option<bool> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&close) {
            self.i += 1;
            return Some(true);
        }
        Some(false)
    }

    /// After an object's or array's item: true at its closing ``close`` (consumed), false after a comma.
    fn closed_after_item(&mut self, close: u8) -> Option<bool> {
        self.ws();
        let c = *self.b.get(self.i)?;
        self.i += 1;
        match c {
            b',' => Some(false),
            c if c == close => Some(true),
            _ => None,
        }
    }

    /// Skips a run of ASCII digits; how many there were.
    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.b.get(self.i), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    /// The end of the run of plain string bytes from ``self.i``: up to the next quote or backslash;
    /// None for a raw control character in it, which JSON forbids. Most strings in events are short
    /// (keys, ids, names): a byte at a time with a table, one pass; past 64 bytes, memchr.
    fn plain_run(&self) -> Option<usize> {
        let b = self.b;
        let short_end = (self.i + 64).min(b.len());
        if let Some(n) = b[self.i..short_end].iter().position(|&c| STOPS[c as usize]) {
            return if b[self.i + n] < 0x20 { None } else { Some(self.i + n) };
        }
        let end = short_end + memchr::memchr2(b'"', b'\\', &b[short_end..])?;
        if b[short_end..end].iter().any(|&c| c < 0x20) {
            return None;
        }
        Some(end)
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// Past a string, from its opening quote, checked: whether it holds escapes.
    fn skip_string(&mut self) -> Option<bool> {
        self.i += 1;
        let mut escaped = false;
        loop {
            self.i = self.plain_run()?;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Some(escaped);
            }
            escaped = true;
            self.escape(None)?;
        }
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        let start = self.i + 1;
        if !self.skip_string()? {
            return Some(Cow::Borrowed(&self.s[start..self.i - 1]));
        }
        // escapes (rare): decode the string, which the pass above has checked
        let end = self.i;
        let mut out = String::with_capacity(end - start);
        self.i = start;
        loop {
            let run = self.i;
            self.i = self.plain_run()?;
            out.push_str(&self.s[run..self.i]);
            if self.b[self.i] == b'"' {
                self.i = end;
                return Some(Cow::Owned(out));
            }
            self.escape(Some(&mut out))?;
        }
    }

    /// One escape, from its backslash: checked, and its character pushed to ``out``.
    fn escape(&mut self, out: Option<&mut String>) -> Option<()> {
        let b = self.b;
        let e = *b.get(self.i + 1)?;
        self.i += 2;
        let c = match e {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) {
                    if b.get(self.i..self.i + 2)? != b"\\u" {
                        return None;
                    }
                    self.i += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return None;
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return None;
                } else {
                    hi
                };
                char::from_u32(code)?
            }
            _ => return None,
        };
        if let Some(out) = out {
            out.push(c);
        }
        Some(())
    }
}

/// The tree as a serde_json value, for the registry's validators (only for events with a schema).
pub fn to_serde(v: &J) -> serde_json::Value {
    use serde_json::Value;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Int(i) => Value::from(*i),
        J::UInt(u) => Value::from(*u),
        J::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        J::Str(s) => Value::String(s.to_string()),
        J::Arr(a) => Value::Array(a.iter().map(to_serde).collect()),
        J::Obj(pairs) => Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), to_serde(v))).collect()),
    }
}

pub fn obj_to_serde(pairs: &Obj) -> serde_json::Value {
    serde_json::Value::Object(pairs.iter().map(|(k, v)| (k.to_string(), to_serde(v))).collect())
}
