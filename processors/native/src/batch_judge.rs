//! The collector's one-pass check of a /v1/batch body (eventpipe.ingest.batch.fast_batch).
//!
//! It reads the body once with the processors' own JSON reader (src/json.rs: orjson's rules, so
//! the collector accepts only bodies the processors can read) and judges it by the same contract
//! check (`required_ok`), building only the top levels: the document, its `batch` and the
//! events' own fields; everything deeper (properties, traits, context) is read and checked as JSON
//! but never built. It never refuses: whatever it cannot settle exactly as the long way would
//! (`decode` + `judge_batch`) it hands back as None, so every rejection keeps its code and message.

use crate::json::{self, J};
use crate::{required_ok, truthy};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

/// The document, `batch` and the events are built; their fields' objects and arrays are not.
const BUILT_LEVELS: usize = 3;

/// An identifier as Python reads it; None (the long way) for anything `partition_key` would have to
/// turn into text from something other than a string or a number.
fn id_object<'py>(py: Python<'py>, v: Option<&J>) -> Option<Bound<'py, PyAny>> {
    Some(match v {
        None | Some(J::Null) => py.None().into_bound(py),
        Some(J::Str(s)) => PyString::new(py, s).into_any(),
        Some(J::Int(i)) => i.into_pyobject(py).ok()?.into_any(),
        Some(J::UInt(u)) => u.into_pyobject(py).ok()?.into_any(),
        Some(J::Float(f)) => f.into_pyobject(py).ok()?.into_any(),
        Some(_) => return None,
    })
}

/// ``(events, id, writeKey)``: the first event's ``anonymousId or userId`` (what `partition_key` turns
/// into the key) and the writeKey, as the long way would route the body; None when the long way must
/// judge it. Every event must fit ``max_event_bytes`` as orjson re-encodes it, and a batch context,
/// merged into each event downstream, ``max_batch_bytes`` in all its copies (contract.envelope_problem),
/// by bounds from their text (the long way measures them exactly; nesting is bounded by the reader).
#[pyfunction]
pub fn settle_batch<'py>(py: Python<'py>, body: &[u8], max_events: usize, max_event_bytes: usize,
                         max_batch_bytes: usize) -> Option<Bound<'py, PyTuple>> {
    let (doc, sizes) = json::parse_sized(body, BUILT_LEVELS)?;
    let J::Obj(top) = &doc else { return None };
    let Some(J::Arr(batch)) = json::get(top, "batch") else { return None };
    if batch.is_empty() || batch.len() > max_events {
        return None;
    }
    // one size per event: any other top-level array with items, or a repeated "batch", adds to them
    if sizes.items.len() != batch.len() || sizes.items.iter().any(|&n| n > max_event_bytes) {
        return None;
    }
    if let Some(J::Obj(context)) = json::get(top, "context") {
        // the value kept is the last one read (a Python dict); anything but a non-empty object merges as nothing
        let size = sizes.members.iter().rev().find(|(key, _)| key == "context").map(|(_, n)| *n)?;
        if !context.is_empty() && size * batch.len() > max_batch_bytes {
            return None;
        }
    }
    for event in batch {
        let J::Obj(event) = event else { return None };
        if !required_ok(event) {
            return None;
        }
    }
    let J::Obj(first) = &batch[0] else { return None };
    // batch.write_key_in: the top level's writeKey unless it is absent or null, else the first event's
    let key = match json::get(top, "writeKey") {
        None | Some(J::Null) => json::get(first, "writeKey"),
        key => key,
    };
    let key = match key {
        Some(J::Str(s)) if !s.is_empty() => PyString::new(py, s).into_any(),
        _ => py.None().into_bound(py),
    };
    let anonymous = json::get(first, "anonymousId");
    if matches!(anonymous, Some(J::Arr(_) | J::Obj(_))) {
        return None; // read but not built: whether it is empty, which `or` asks, is not known here
    }
    let by = id_object(py, if truthy(anonymous) { anonymous } else { json::get(first, "userId") })?;
    let events = batch.len().into_pyobject(py).ok()?.into_any();
    PyTuple::new(py, [events, by, key]).ok()
}
