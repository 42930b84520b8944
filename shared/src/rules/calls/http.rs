//! The calls a rule makes into any JSON-over-HTTP tool.

use crate::rules::context::Context;
use crate::rules::model::Rule;
use crate::rules::path::as_text;
use crate::rules::plan::{Body, Step};
use crate::support::url::encode_segment;
use serde_json::Value;

use super::common::*;

pub(crate) fn http_steps(
    rule: &Rule,
    ctx: &Context<'_>,
    fields: Vec<(String, Value)>,
) -> Result<Vec<Step>, Stop> {
    let req = rule.request.as_ref().ok_or("http rules need `request`")?;
    let raw = req.path.render(ctx)?;
    let raw = as_text(&raw);
    let path: String = raw
        .split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/");
    let mut s = step("request", req.method, path);
    if !fields.is_empty() {
        s.body = Body::Json {
            json: nested(fields),
        };
    }
    Ok(vec![s])
}
