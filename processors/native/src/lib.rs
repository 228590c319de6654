//! eventpipe._explode: the processor's per-event work, compiled.
//!
//! `processors/rows_reference.py` is the specification; this module computes the same `events`
//! columns for every request whose events it can judge exactly, as Arrow buffers (no Python object
//! per event), and hands every other request back to the reference ("deferred"): bodies it cannot
//! parse, any event that is rejected, a timestamp in a form it does not parse itself, a schema
//! violation (whose message only Python's jsonschema words). Deferring a whole request keeps the
//! two paths from ever disagreeing on a half-judged request; tests/test_native_explode.py checks
//! that both give identical tables for arbitrary input.
//!
//! Also here: the 64-bit message keys of `message_keys` (MD5) and the in-batch dedup mask, so the
//! writer's messageId lookup needs no Python per event either; and (`batch_judge`) the collector's
//! one-pass check of a request body, by the same contract and the same JSON reader.

use md5::{Digest, Md5};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use std::borrow::Cow;

mod batch_judge;
mod json;
mod key_filter;
use json::{Obj, J};
use std::collections::{HashMap, HashSet};
use std::io::Write;

// ClickHouse's DateTime64(3) range, 1900-01-01 .. 2299-12-31, in epoch ms (rows_reference.MIN_MS/MAX_MS)
const MIN_MS: i64 = -2_208_988_800_000;
const MAX_MS: i64 = 10_413_791_999_999;
const MAX_REVENUE: f64 = 1e13;
const COERCED: &str = "field_coerced";

// ---------------------------------------------------------------------------------------------
// JSON text exactly as orjson.dumps writes it
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The sign, significant digits and decimal exponent of Rust's ``{:e}`` text of a float.
fn sci_digits(s: &str) -> (bool, Vec<u8>, i32) {
    let (mant, exp) = s.split_once('e').unwrap();
    (mant.starts_with('-'), mant.bytes().filter(|c| c.is_ascii_digit()).collect(), exp.parse().unwrap())
}

/// A finite float as orjson writes it: shortest round-trip digits, fixed notation for decimal
/// exponents -5..=15 (always with a fraction: `1.0`), else `1.5e+16` / `1e-7`.
fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v == 0.0 {
        out.extend_from_slice(if v.is_sign_negative() { b"-0.0" } else { b"0.0" });
        return;
    }
    let (neg, mut digits, mut exp) = sci_digits(&format!("{:e}", v));
    // A tie: v lies exactly halfway between the two shortest candidates. Python and orjson take the one
    // whose last digit is even (562949953421312.25 -> ...312.2); Rust's shortest form may take the other.
    // Both candidates read back as v only if one unit in their last place is within a double's precision,
    // so only at 16 or more digits (checked from 15): shorter forms are never ties, and cost nothing here.
    let exact = if digits.len() >= 15 { Some(sci_digits(&format!("{:.39e}", v))) } else { None };
    if let Some((_, exact, exact_exp)) = exact.filter(|(_, exact, _)| {
        let exact_len = exact.iter().rposition(|&c| c != b'0').map_or(1, |i| i + 1);
        exact_len == digits.len() + 1 && exact[exact_len - 1] == b'5'
    }) {
        let mut lower = exact[..digits.len()].to_vec();
        let even = lower[lower.len() - 1] % 2 == 0;
        // at a power of two the lower neighbour is nearer: a candidate below may not read back as v
        let reads_back = |d: &[u8]| {
            let text = format!("{}.{}e{}", d[0] as char, std::str::from_utf8(&d[1..]).unwrap_or(""), exact_exp);
            text.parse::<f64>().map(|x| x == v.abs()).unwrap_or(false)
        };
        if (even && reads_back(&lower)) || (!even && digits == lower && exp == exact_exp) {
            exp = exact_exp;
            if !even {
                // the upper candidate: lower plus one in its last place (9.5 -> 10)
                while lower.last() == Some(&b'9') {
                    lower.pop();
                }
                match lower.last_mut() {
                    Some(last) => *last += 1,
                    None => {
                        lower.push(b'1');
                        exp += 1;
                    }
                }
            }
            digits = lower;
        }
    }
    if neg {
        out.push(b'-');
    }
    if (-5..=15).contains(&exp) {
        if exp >= 0 {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(&digits);
                out.extend(std::iter::repeat(b'0').take(int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            out.extend(std::iter::repeat(b'0').take((-exp - 1) as usize));
            out.extend_from_slice(&digits);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let _ = write!(out, "e{}{}", if exp < 0 { "-" } else { "+" }, exp.abs());
    }
}

/// A number as orjson writes it; false for what is no number.
fn write_number(out: &mut Vec<u8>, v: &J) -> bool {
    match v {
        J::Int(i) => {
            let _ = write!(out, "{}", i);
        }
        J::UInt(u) => {
            let _ = write!(out, "{}", u);
        }
        J::Float(f) => write_f64(out, *f),
        _ => return false,
    }
    true
}

fn write_json(out: &mut Vec<u8>, v: &J) {
    match v {
        J::Null => out.extend_from_slice(b"null"),
        J::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        J::Int(_) | J::UInt(_) | J::Float(_) => {
            write_number(out, v);
        }
        J::Str(s) => write_str(out, s),
        J::Arr(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(out, x);
            }
            out.push(b']');
        }
        J::Obj(m) => write_map(out, m),
    }
}

fn write_map(out: &mut Vec<u8>, m: &Obj) {
    out.push(b'{');
    for (i, (k, x)) in m.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_json(out, x);
    }
    out.push(b'}');
}

// ---------------------------------------------------------------------------------------------
// schemas.contract, for JSON values
fn is_id(v: &J) -> bool {
    match v {
        J::Str(s) => !s.is_empty(),
        J::Int(_) | J::UInt(_) | J::Float(_) => true, // JSON numbers are finite; booleans are no numbers
        _ => false,
    }
}

fn id_text(out: &mut Vec<u8>, v: &J) {
    match v {
        J::Str(s) => out.extend_from_slice(s.as_bytes()),
        _ => {
            write_number(out, v);
        }
    }
}

/// contract.required_problem(event) is None: the event has what its call type requires.
pub(crate) fn required_ok(ev: &Obj) -> bool {
    let Some(kind) = json::get(ev, "type").and_then(J::as_str) else { return false };
    if !EVENT_TYPES.contains(&kind) {
        return false;
    }
    let id_ok = |k: &str| json::get(ev, k).map(is_id).unwrap_or(false);
    if !(id_ok("userId") || id_ok("anonymousId")) {
        return false;
    }
    match kind {
        "track" => matches!(json::get(ev, "event"), Some(J::Str(name)) if !name.is_empty()),
        "alias" => id_ok("previousId"),
        "group" => id_ok("groupId"),
        _ => true,
    }
}

/// Python's truth value of a JSON value (``a or b``)
pub(crate) fn truthy(v: Option<&J>) -> bool {
    match v {
        None | Some(J::Null) => false,
        Some(J::Bool(b)) => *b,
        Some(J::Int(i)) => *i != 0,
        Some(J::UInt(u)) => *u != 0,
        Some(J::Float(f)) => *f != 0.0,
        Some(J::Str(s)) => !s.is_empty(),
        Some(J::Arr(a)) => !a.is_empty(),
        Some(J::Obj(m)) => !m.is_empty(),
    }
}

struct Flags {
    items: Vec<&'static str>,
}

impl Flags {
    fn coerce(&mut self) {
        if !self.items.contains(&COERCED) {
            self.items.push(COERCED);
        }
    }
}

/// contract.text: a scalar as column text; an object or array is coerced to empty.
fn text(out: &mut Vec<u8>, v: Option<&J>, flags: &mut Flags) {
    match v {
        None | Some(J::Null) => {}
        Some(J::Str(s)) => out.extend_from_slice(s.as_bytes()),
        Some(J::Bool(b)) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Some(J::Arr(_)) | Some(J::Obj(_)) => flags.coerce(),
        Some(n) => {
            write_number(out, n);
        }
    }
}

fn empty_map<'b, 'a>() -> &'b Obj<'a> {
    &[]
}

/// contract.obj: an object where one belongs, else an empty one (null silently, others flagged).
fn obj<'b, 'a>(v: Option<&'b J<'a>>, flags: &mut Flags) -> &'b Obj<'a> {
    match v {
        Some(J::Obj(m)) => m,
        None | Some(J::Null) => empty_map(),
        Some(_) => {
            flags.coerce();
            empty_map()
        }
    }
}

fn string_or<'b>(v: Option<&'b J>, default: &'b str, flags: &mut Flags) -> &'b str {
    match v {
        Some(J::Str(s)) => s,
        None | Some(J::Null) => default,
        Some(_) => {
            flags.coerce();
            default
        }
    }
}

fn merge_context<'a>(envelope: &Obj<'a>, context: &Obj<'a>) -> Vec<(Cow<'a, str>, J<'a>)> {
    let mut merged = envelope.to_vec();
    for (key, value) in context {
        match merged.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => {
                slot.1 = match (&slot.1, value) {
                    (J::Obj(below), J::Obj(above)) => J::Obj(merge_context(below, above)),
                    _ => value.clone(),
                }
            }
            None => merged.push((key.clone(), value.clone())),
        }
    }
    merged
}

// ---------------------------------------------------------------------------------------------
// rows_reference.parse_ms for the ISO forms SDKs send; anything else is left to the reference
enum Ts {
    None,    // parse_ms is None: absent, not a string, empty, or valid but outside DateTime64
    Ms(i64), // epoch ms
    Defer,   // a form this parser does not judge: the reference does
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut n = 0i64;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + (c - b'0') as i64;
    }
    Some(n)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SS[.fff|.ffffff][Z|±HH:MM]`, as Python 3.11's datetime.fromisoformat reads it
/// (no zone: UTC), then `int(timestamp() * 1000)` with the same float steps.
fn parse_iso(s: &str) -> Ts {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Ts::Defer;
    }
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(se)) = (
        digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10]), digits(&b[11..13]), digits(&b[14..16]),
        digits(&b[17..19]),
    ) else {
        return Ts::Defer;
    };
    let mut rest = &b[19..];
    let mut us = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let Some(f) = digits(&rest[1..1 + n]) else { return Ts::Defer };
        us = match n {
            3 => f * 1000,
            6 => f,
            _ => return Ts::Defer,
        };
        rest = &rest[1 + n..];
    }
    let offset_s = match rest {
        b"" | b"Z" => 0,
        [sign @ (b'+' | b'-'), hh @ .., ] if hh.len() == 5 && hh[2] == b':' => {
            let (Some(oh), Some(om)) = (digits(&hh[0..2]), digits(&hh[3..5])) else { return Ts::Defer };
            if oh > 23 || om > 59 {
                return Ts::Defer;
            }
            (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return Ts::Defer,
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if y < 1 || !(1..=12).contains(&mo) || d < 1 || d > dim[(mo - 1) as usize] || h > 23 || mi > 59 || se > 59 {
        return Ts::Defer;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    let total_us = secs * 1_000_000 + us;
    if total_us.unsigned_abs() > (1u64 << 53) {
        return Ts::Defer; // Python divides exactly-rounded big integers: not replicated here
    }
    let ms = ((total_us as f64 / 1e6) * 1000.0) as i64;
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ts::Ms(ms)
    } else {
        Ts::None
    }
}

fn parse_ms(v: Option<&J>) -> Ts {
    match v {
        Some(J::Str(s)) if !s.is_empty() => parse_iso(s),
        _ => Ts::None,
    }
}

// ---------------------------------------------------------------------------------------------
// Arrow column buffers
#[derive(Default)]
struct Str {
    offsets: Vec<i32>,
    data: Vec<u8>,
}

impl Str {
    fn new() -> Self {
        Str { offsets: vec![0], data: Vec::new() }
    }
    fn end(&mut self) {
        self.offsets.push(self.data.len().min(i32::MAX as usize) as i32);
    }
    fn push(&mut self, s: &[u8]) {
        self.data.extend_from_slice(s);
        self.end();
    }
    fn truncate(&mut self, n: usize) {
        self.offsets.truncate(n + 1);
        self.data.truncate(self.offsets[n] as usize);
    }
    fn overflowed(&self) -> bool {
        self.data.len() > i32::MAX as usize
    }
}

// the string columns this engine fills, in EVENTS_SCHEMA order, then the two the reference fills in
// per distinct value (ip from the client address, the ua_* columns from the effective user agent)
const STR_COLUMNS: [&str; 30] = [
    "project", "type", "event", "message_id", "anonymous_id", "user_id", "platform", "app_name", "app_version",
    "app_build", "os_name", "os_version", "device_manufacturer", "device_model", "library_name",
    "library_version", "locale", "timezone", "page_path", "page_url", "page_referrer", "name", "properties",
    "traits", "context", "user_agent", "group_id", "previous_id", "client_ip", "effective_user_agent",
];

struct Columns {
    s: Vec<Str>,
    timestamp: Vec<i64>,
    client_ts: Vec<i64>,
    client_valid: Vec<bool>,
    sent_at: Vec<i64>,
    sent_valid: Vec<bool>,
    received: Vec<i64>,
    revenue: Vec<f64>,
    flag_offsets: Vec<i32>,
    flag_items: Str,
    partition: Vec<u16>,
    offset: Vec<u64>,
    ordinal: Vec<u32>,
    e_index: Vec<u32>,
}

impl Columns {
    fn new() -> Self {
        Columns {
            s: (0..STR_COLUMNS.len()).map(|_| Str::new()).collect(),
            timestamp: vec![], client_ts: vec![], client_valid: vec![], sent_at: vec![], sent_valid: vec![],
            received: vec![], revenue: vec![], flag_offsets: vec![0], flag_items: Str::new(), partition: vec![],
            offset: vec![], ordinal: vec![], e_index: vec![],
        }
    }
    fn rows(&self) -> usize {
        self.timestamp.len()
    }
    fn truncate(&mut self, n: usize) {
        for c in &mut self.s {
            c.truncate(n);
        }
        for v in [&mut self.timestamp, &mut self.client_ts, &mut self.sent_at, &mut self.received] {
            v.truncate(n);
        }
        self.client_valid.truncate(n);
        self.sent_valid.truncate(n);
        self.revenue.truncate(n);
        self.flag_offsets.truncate(n + 1);
        self.flag_items.truncate(*self.flag_offsets.last().unwrap() as usize);
        self.partition.truncate(n);
        self.offset.truncate(n);
        self.ordinal.truncate(n);
        self.e_index.truncate(n);
    }
}

// column indexes into Columns.s
const C_PROJECT: usize = 0;
const C_TYPE: usize = 1;
const C_EVENT: usize = 2;
const C_MID: usize = 3;
const C_ANON: usize = 4;
const C_USER: usize = 5;
const C_PLATFORM: usize = 6;
const C_PROPERTIES: usize = 22;
const C_TRAITS: usize = 23;
const C_CONTEXT: usize = 24;
const C_UA: usize = 25;
const C_GROUP: usize = 26;
const C_PREVIOUS: usize = 27;
const C_CLIENT_IP: usize = 28;
const C_EFFECTIVE_UA: usize = 29;

// ---------------------------------------------------------------------------------------------
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Warn,
    Enforce,
}

fn mode_of(s: &str) -> PyResult<Mode> {
    match s {
        "off" => Ok(Mode::Off),
        "warn" => Ok(Mode::Warn),
        "enforce" => Ok(Mode::Enforce),
        _ => Err(PyValueError::new_err(format!("unknown schema mode {s:?}"))),
    }
}

/// The rules of ``Rules`` that judge events, plus the registry compiled once.
#[pyclass(frozen)]
struct Engine {
    max_age_ms: i64,
    max_future_ms: i64,
    max_batch_bytes: i64,
    modes: HashMap<String, Mode>,
    default_mode: Mode,
    validators: HashMap<String, jsonschema::Validator>,
}

#[pymethods]
impl Engine {
    #[new]
    fn new(max_age_ms: i64, max_future_ms: i64, max_batch_bytes: i64, modes: HashMap<String, String>,
           registry: Vec<(String, String)>) -> PyResult<Self> {
        let mut parsed = HashMap::new();
        for (project, mode) in modes {
            parsed.insert(project, mode_of(&mode)?);
        }
        let default_mode = parsed.get("*").copied().unwrap_or(Mode::Warn);
        let mut validators = HashMap::new();
        for (name, schema) in registry {
            let schema: serde_json::Value = serde_json::from_str(&schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
            let v = jsonschema::validator_for(&schema).map_err(|e| PyValueError::new_err(e.to_string()))?;
            validators.insert(name, v);
        }
        Ok(Engine { max_age_ms, max_future_ms, max_batch_bytes, modes: parsed, default_mode, validators })
    }

    /// Columns for ``requests`` = [(ordinal, partition, offset, r_index, project, received_at_ms, ip,
    /// user_agent, body, overflow)], and the ordinals of the requests left to the reference.
    fn explode<'py>(&self, py: Python<'py>, requests: &Bound<'py, PyList>) -> PyResult<Bound<'py, PyTuple>> {
        // the bodies and strings are borrowed from the Python objects, which `items` keeps alive (and which
        // are immutable) while the GIL is released
        let items: Vec<Bound<'py, PyAny>> = requests.iter().collect();
        let mut reqs: Vec<Req> = Vec::with_capacity(items.len());
        let mut deferred: Vec<u32> = Vec::new();
        for item in &items {
            match Req::extract(item) {
                Ok(r) => reqs.push(r),
                Err(ordinal) => deferred.push(ordinal),
            }
        }
        let body_bytes: usize = reqs.iter().map(|r| r.body.len()).sum();
        let (cols, more) = py.detach(|| {
            let mut cols = Columns::new();
            // the JSON-text columns hold about what the bodies do: grown once, not by doubling
            for c in [C_PROPERTIES, C_CONTEXT] {
                cols.s[c].data.reserve(body_bytes / 2);
            }
            let mut more = Vec::new();
            for r in &reqs {
                let mark = cols.rows();
                if self.request(r, &mut cols).is_none() {
                    cols.truncate(mark);
                    more.push(r.ordinal);
                }
            }
            (cols, more)
        });
        deferred.extend(more);
        deferred.sort_unstable();
        if cols.s.iter().any(Str::overflowed) || cols.flag_items.overflowed() {
            return Err(PyOverflowError::new_err("a column of this batch exceeds 2 GiB"));
        }
        let n = cols.rows();
        let Columns { s: strings, timestamp, client_ts, client_valid, sent_at, sent_valid, received, revenue,
                      flag_offsets, flag_items, partition, offset, ordinal, e_index } = cols;
        fn buf<'py, T: Copy + Send + Sync + 'static>(py: Python<'py>, v: Vec<T>) -> PyResult<Bound<'py, PyAny>> {
            Ok(Bound::new(py, Buf::new(v))?.into_any())
        }
        let mut out: Vec<Bound<'py, PyAny>> = vec![n.into_pyobject(py)?.into_any()];
        for c in strings {
            out.push(PyTuple::new(py, [buf(py, c.offsets)?, buf(py, c.data)?])?.into_any());
        }
        out.push(buf(py, timestamp)?);
        out.push(buf(py, client_ts)?);
        out.push(buf(py, bitmap(&client_valid))?);
        out.push(buf(py, sent_at)?);
        out.push(buf(py, bitmap(&sent_valid))?);
        out.push(buf(py, received)?);
        out.push(buf(py, revenue)?);
        out.push(PyTuple::new(py, [buf(py, flag_offsets)?, buf(py, flag_items.offsets)?, buf(py, flag_items.data)?])?
            .into_any());
        out.push(buf(py, partition)?);
        out.push(buf(py, offset)?);
        out.push(buf(py, ordinal)?);
        out.push(buf(py, e_index)?);
        out.push(PyList::new(py, deferred)?.into_any());
        PyTuple::new(py, out)
    }
}

struct Req<'a> {
    ordinal: u32,
    partition: u16,
    offset: u64,
    r_index: u32,
    project: &'a str,
    received: i64,
    ip: &'a str,
    user_agent: &'a str,
    body: &'a [u8],
    overflow: bool, // the collector spread this hot key's request over partitions: flagged hot_key_overflow
}

impl<'a> Req<'a> {
    /// A request's fields, or its ordinal when one does not fit what Arrow stores (the reference judges it).
    fn extract(item: &'a Bound<'_, PyAny>) -> Result<Req<'a>, u32> {
        let t = item.cast::<PyTuple>().map_err(|_| u32::MAX)?;
        let ordinal: u32 = t.get_item(0).and_then(|x| x.extract()).map_err(|_| u32::MAX)?;
        let text = |i: usize| -> PyResult<&'a str> {
            // borrowed_item: the tuple holds the string, and `item` holds the tuple
            let s = t.get_borrowed_item(i)?;
            let s = s.cast::<PyString>()?;
            let s: &str = s.to_str()?;
            Ok(unsafe { std::mem::transmute::<&str, &'a str>(s) })
        };
        let get = || -> PyResult<Req<'a>> {
            if t.len() != 10 {
                return Err(PyValueError::new_err("a request is 10 fields"));
            }
            let body = t.get_borrowed_item(8)?;
            let body = body.cast::<PyBytes>()?;
            let body: &[u8] = body.as_bytes();
            Ok(Req {
                ordinal,
                partition: t.get_item(1)?.extract()?,
                offset: t.get_item(2)?.extract()?,
                r_index: t.get_item(3)?.extract()?,
                project: text(4)?,
                received: t.get_item(5)?.extract()?,
                ip: text(6)?,
                user_agent: text(7)?,
                body: unsafe { std::mem::transmute::<&[u8], &'a [u8]>(body) },
                overflow: t.get_item(9)?.extract()?,
            })
        };
        get().map_err(|_| ordinal)
    }
}

/// A column buffer handed to Python without a copy: pyarrow wraps it (``pa.py_buffer``) through the buffer
/// protocol and keeps it alive as long as an array uses it.
#[pyclass(frozen)]
struct Buf {
    _owner: Box<dyn Send + Sync>,
    ptr: usize,
    len: usize,
}

impl Buf {
    fn new<T: Copy + Send + Sync + 'static>(v: Vec<T>) -> Buf {
        let (ptr, len) = (v.as_ptr() as usize, std::mem::size_of_val(v.as_slice()));
        Buf { _owner: Box::new(v), ptr, len }
    }
}

#[pymethods]
impl Buf {
    unsafe fn __getbuffer__(slf: Bound<'_, Self>, view: *mut pyo3::ffi::Py_buffer, flags: std::os::raw::c_int)
                            -> PyResult<()> {
        let (ptr, len) = (slf.get().ptr, slf.get().len);
        if pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), ptr as *mut std::os::raw::c_void, len as isize, 1, flags)
            == -1
        {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }
}

fn as_bytes<T: Copy>(v: &[T]) -> &[u8] {
    // plain integers/floats, little-endian on every platform Arrow runs on here
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, std::mem::size_of_val(v)) }
}

fn bitmap(valid: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; valid.len().div_ceil(8)];
    for (i, &v) in valid.iter().enumerate() {
        if v {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    out
}

const EVENT_TYPES: [&str; 6] = ["track", "identify", "page", "screen", "group", "alias"];

fn call_name(kind: &str) -> &'static str {
    match kind {
        "identify" => "$identify",
        "page" => "$page",
        "screen" => "$screen",
        "group" => "$group",
        _ => "$alias",
    }
}

fn mobile(os_lower: &str) -> Option<&'static str> {
    match os_lower {
        "ios" | "ipados" | "iphone os" => Some("ios"),
        "android" => Some("android"),
        _ => None,
    }
}

impl Engine {
    /// All of one request's rows, or None when the reference must judge the request.
    fn request(&self, r: &Req, cols: &mut Columns) -> Option<()> {
        if !(MIN_MS..=MAX_MS).contains(&r.received) {
            return None;
        }
        let doc = json::parse(r.body)?;
        let J::Arr(batch) = doc.get("batch")? else { return None };
        let batch_sent = match parse_ms(doc.get("sentAt")) {
            Ts::Defer => return None,
            Ts::None => None,
            Ts::Ms(v) => Some(v),
        };
        let envelope = match doc.get("context") {
            None | Some(J::Null) => None,
            Some(e) => Some(e),
        };
        if let Some(J::Obj(m)) = envelope {
            if !m.is_empty() {
                let mut buf = Vec::new();
                write_map(&mut buf, m);
                if buf.len() as i64 * batch.len() as i64 > self.max_batch_bytes {
                    return None; // context_too_large: a reject
                }
            }
        }
        let mode = self.modes.get(r.project).copied().unwrap_or(self.default_mode);
        for (e_index, ev) in batch.iter().enumerate() {
            self.event(r, ev, e_index as u32, batch_sent, envelope, mode, cols)?;
        }
        Some(())
    }

    #[allow(clippy::too_many_arguments)]
    fn event(&self, r: &Req, ev: &J, e_index: u32, batch_sent: Option<i64>, envelope: Option<&J>,
             mode: Mode, cols: &mut Columns) -> Option<()> {
        let J::Obj(ev) = ev else { return None };
        // contract.required_problem and field_problem: any problem is a reject, judged by the reference
        if !required_ok(ev) {
            return None;
        }
        let kind = json::get(ev, "type")?.as_str()?;
        for name in ["messageId", "anonymousId", "userId"] {
            match json::get(ev, name) {
                None | Some(J::Null) => {}
                Some(v) if is_id(v) || v.as_str() == Some("") => {}
                _ => return None,
            }
        }
        for name in ["properties", "traits", "context"] {
            match json::get(ev, name) {
                None | Some(J::Null) | Some(J::Obj(_)) => {}
                _ => return None,
            }
        }
        let mut flags = Flags { items: Vec::with_capacity(2) };
        if r.overflow {
            flags.items.push("hot_key_overflow");
        }
        let mut generated = false;
        match json::get(ev, "messageId") {
            None | Some(J::Null) => generated = true,
            Some(J::Str(s)) if s.is_empty() => generated = true,
            _ => {}
        }
        if generated {
            flags.items.push("message_id_generated");
        }
        let own_context = match json::get(ev, "context") {
            Some(J::Obj(m)) => m,
            _ => empty_map(),
        };
        let merged;
        let mut context = own_context;
        if let Some(env) = envelope {
            match env {
                J::Obj(m) => {
                    if !m.is_empty() {
                        merged = merge_context(m, own_context);
                        context = &merged[..];
                    }
                }
                _ => flags.coerce(),
            }
        }
        let properties = match json::get(ev, "properties") {
            Some(J::Obj(m)) => m,
            _ => empty_map(),
        };
        let traits = match json::get(ev, "traits") {
            Some(J::Obj(m)) => m,
            _ => empty_map(),
        };

        let received = r.received;
        let sent = match parse_ms(json::get(ev, "sentAt")) {
            Ts::Defer => return None,
            Ts::None => batch_sent,
            Ts::Ms(v) => Some(v),
        };
        let raw_ts = match json::get(ev, "timestamp") {
            None | Some(J::Null) => json::get(ev, "originalTimestamp"),
            t => t,
        };
        let raw_ts = match raw_ts {
            Some(J::Null) => None,
            t => t,
        };
        let client = match parse_ms(raw_ts) {
            Ts::Defer => return None,
            Ts::None => None,
            Ts::Ms(v) => Some(v),
        };
        let mut corrected;
        match (client, sent) {
            (None, _) => {
                corrected = received;
                if raw_ts.is_some() {
                    flags.items.push("timestamp_invalid");
                }
            }
            (Some(c), None) => corrected = c,
            (Some(c), Some(s)) => {
                corrected = c + (received - s);
                if !(MIN_MS..=MAX_MS).contains(&corrected) {
                    corrected = received;
                    flags.items.push("timestamp_invalid");
                }
            }
        }
        if corrected < received - self.max_age_ms {
            return None; // too_old: a reject
        }
        if corrected > received + self.max_future_ms {
            flags.items.push("timestamp_in_future");
            corrected = received;
        }
        let name: &str = if kind == "track" { json::get(ev, "event")?.as_str()? } else { call_name(kind) };
        if mode != Mode::Off && kind == "track" {
            if let Some(v) = self.validators.get(name) {
                // the validator sees the same object the reference's does (`properties or {}`)
                let valid = v.is_valid(&json::obj_to_serde(properties));
                if !valid {
                    return None; // the reference words the violation (flag under warn, reject under enforce)
                }
            }
        }

        let app = obj(json::get(context, "app"), &mut flags);
        let os = obj(json::get(context, "os"), &mut flags);
        let device = obj(json::get(context, "device"), &mut flags);
        let library = obj(json::get(context, "library"), &mut flags);
        let page = obj(json::get(context, "page"), &mut flags);
        let mut os_name = Vec::new();
        text(&mut os_name, json::get(os, "name"), &mut flags);
        let mut library_name = Vec::new();
        text(&mut library_name, json::get(library, "name"), &mut flags);
        if !os_name.is_ascii() {
            return None; // str.lower() of non-ASCII text: the reference's
        }
        let client_ip = string_or(json::get(context, "ip"), r.ip, &mut flags);
        let user_agent = string_or(json::get(context, "userAgent"), r.user_agent, &mut flags);

        let s = &mut cols.s;
        s[C_PROJECT].push(r.project.as_bytes());
        s[C_TYPE].push(kind.as_bytes());
        s[C_EVENT].push(name.as_bytes());
        if generated {
            let _ = write!(s[C_MID].data, "gen-{}-{}-{}-{}", r.partition, r.offset, r.r_index, e_index);
        } else {
            id_text(&mut s[C_MID].data, json::get(ev, "messageId")?);
        }
        s[C_MID].end();
        for (col, key) in [(C_ANON, "anonymousId"), (C_USER, "userId")] {
            if let Some(v) = json::get(ev, key) {
                id_text(&mut s[col].data, v);
            }
            s[col].end();
        }
        // platform_of
        let os_lower = String::from_utf8(os_name.to_ascii_lowercase()).ok()?;
        let platform = match mobile(&os_lower) {
            Some(m) => m,
            None if kind == "page" || json::get(context, "page").is_some()
                || library_name.windows(12).any(|w| w == b"analytics.js") => "web",
            None if !os_lower.is_empty() => os_lower.as_str(),
            None => "unknown",
        };
        s[C_PLATFORM].push(platform.as_bytes());
        let texts: [Option<&J>; 15] = [
            json::get(app, "name"), json::get(app, "version"), json::get(app, "build"), None, json::get(os, "version"),
            json::get(device, "manufacturer"), json::get(device, "model"), None, json::get(library, "version"), json::get(context, "locale"),
            json::get(context, "timezone"),
            if truthy(json::get(page, "path")) { json::get(page, "path") } else { json::get(properties, "path") },
            if truthy(json::get(page, "url")) { json::get(page, "url") } else { json::get(properties, "url") },
            if truthy(json::get(page, "referrer")) { json::get(page, "referrer") } else { json::get(properties, "referrer") },
            json::get(ev, "name"),
        ];
        for (i, v) in texts.into_iter().enumerate() {
            let c = &mut s[C_PLATFORM + 1 + i];
            match i {
                3 => c.data.extend_from_slice(&os_name),
                7 => c.data.extend_from_slice(&library_name),
                _ => text(&mut c.data, v, &mut flags),
            }
            c.end();
        }
        write_map(&mut s[C_PROPERTIES].data, properties);
        s[C_PROPERTIES].end();
        write_map(&mut s[C_TRAITS].data, traits);
        s[C_TRAITS].end();
        write_map(&mut s[C_CONTEXT].data, context);
        s[C_CONTEXT].end();
        s[C_UA].push(r.user_agent.as_bytes());
        if kind == "group" {
            id_text(&mut s[C_GROUP].data, json::get(ev, "groupId")?);
        }
        s[C_GROUP].end();
        if kind == "alias" {
            id_text(&mut s[C_PREVIOUS].data, json::get(ev, "previousId")?);
        }
        s[C_PREVIOUS].end();
        s[C_CLIENT_IP].push(client_ip.as_bytes());
        s[C_EFFECTIVE_UA].push(user_agent.as_bytes());

        cols.timestamp.push(corrected);
        cols.client_ts.push(client.unwrap_or(0));
        cols.client_valid.push(client.is_some());
        cols.sent_at.push(sent.unwrap_or(0));
        cols.sent_valid.push(sent.is_some());
        cols.received.push(received);
        let rev = match json::get(properties, "revenue") {
            Some(v) => Some(v),
            None => json::get(properties, "value"),
        };
        let rev = match rev {
            Some(J::Int(i)) => *i as f64,
            Some(J::UInt(u)) => *u as f64,
            Some(J::Float(f)) => *f,
            _ => 0.0,
        };
        cols.revenue.push(if rev.abs() < MAX_REVENUE { rev } else { 0.0 });
        for f in &flags.items {
            cols.flag_items.push(f.as_bytes());
        }
        cols.flag_offsets.push((cols.flag_items.offsets.len() - 1) as i32);
        cols.partition.push(r.partition);
        cols.offset.push(r.offset);
        cols.ordinal.push(r.ordinal);
        cols.e_index.push(e_index);
        Some(())
    }
}

// ---------------------------------------------------------------------------------------------
// the writer's messageId lookup
pub(crate) fn buffer_slice<'a, T: pyo3::buffer::Element>(b: &'a PyBuffer<T>) -> &'a [T] {
    unsafe { std::slice::from_raw_parts(b.buf_ptr() as *const T, b.item_count()) }
}

/// The ``message_keys.key`` of every row: first 8 bytes of MD5(project \0 message_id), little-endian,
/// from two Arrow string arrays' offset and data buffers (``start``: each array's offset).
#[pyfunction]
fn message_keys<'py>(py: Python<'py>, n: usize, p_offsets: PyBuffer<u8>, p_start: usize, p_data: PyBuffer<u8>,
                     m_offsets: PyBuffer<u8>, m_start: usize, m_data: PyBuffer<u8>) -> PyResult<Bound<'py, PyBytes>> {
    let to_i32 = |b: &PyBuffer<u8>| -> Vec<i32> {
        buffer_slice(b).chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    let (po, mo) = (to_i32(&p_offsets), to_i32(&m_offsets));
    if po.len() < p_start + n + 1 || mo.len() < m_start + n + 1 {
        return Err(PyValueError::new_err("offset buffers shorter than the rows"));
    }
    let (pd, md) = (buffer_slice(&p_data), buffer_slice(&m_data));
    let mut keys: Vec<u64> = Vec::with_capacity(n);
    let mut h = Md5::new();
    for i in 0..n {
        let p = &pd[po[p_start + i] as usize..po[p_start + i + 1] as usize];
        let m = &md[mo[m_start + i] as usize..mo[m_start + i + 1] as usize];
        h.update(p);
        h.update([0u8]);
        h.update(m);
        let d = h.finalize_reset();
        keys.push(u64::from_le_bytes(d[..8].try_into().unwrap()));
    }
    Ok(PyBytes::new(py, as_bytes(&keys)))
}

/// Which rows to keep: a row goes when its (partition, key) is in ``seen`` or came earlier in the batch.
/// Returns (validity-style bitmap of the kept rows, rows dropped).
#[pyfunction]
fn keep_first<'py>(py: Python<'py>, partitions: PyBuffer<u16>, keys: PyBuffer<u64>, seen: Vec<(u16, u64)>)
                   -> PyResult<(Bound<'py, PyBytes>, usize)> {
    let (ps, ks) = (buffer_slice(&partitions), buffer_slice(&keys));
    if ps.len() != ks.len() {
        return Err(PyValueError::new_err("partitions and keys differ in length"));
    }
    let mut set: HashSet<(u16, u64)> = seen.into_iter().collect();
    let mut keep = Vec::with_capacity(ps.len());
    let mut dropped = 0;
    for (p, k) in ps.iter().zip(ks) {
        let fresh = set.insert((*p, *k));
        dropped += usize::from(!fresh);
        keep.push(fresh);
    }
    Ok((PyBytes::new(py, &bitmap(&keep)), dropped))
}

/// The smallest offset of each partition among the rows: [(partition, offset)], by partition.
#[pyfunction]
fn first_offsets(partitions: PyBuffer<u16>, offsets: PyBuffer<u64>) -> PyResult<Vec<(u16, u64)>> {
    let (ps, os) = (buffer_slice(&partitions), buffer_slice(&offsets));
    if ps.len() != os.len() {
        return Err(PyValueError::new_err("partitions and offsets differ in length"));
    }
    let mut first: HashMap<u16, u64> = HashMap::new();
    for (p, o) in ps.iter().zip(os) {
        let slot = first.entry(*p).or_insert(*o);
        *slot = (*slot).min(*o);
    }
    let mut out: Vec<(u16, u64)> = first.into_iter().collect();
    out.sort_unstable();
    Ok(out)
}

#[pymodule]
fn _explode(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    m.add_function(wrap_pyfunction!(message_keys, m)?)?;
    m.add_function(wrap_pyfunction!(keep_first, m)?)?;
    m.add_function(wrap_pyfunction!(first_offsets, m)?)?;
    m.add_class::<key_filter::KeyFilter>()?;
    m.add_function(wrap_pyfunction!(key_filter::pairs_literal, m)?)?;
    m.add_function(wrap_pyfunction!(batch_judge::settle_batch, m)?)?;
    Ok(())
}
