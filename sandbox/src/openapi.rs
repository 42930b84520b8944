//! A request validator against an OpenAPI 3.0 document (a subset: what the
//! Jira Cloud platform spec uses for requests). Test support only.
//!
//! Checked: the operation exists (templated paths, literal segments preferred),
//! required / unknown / mistyped query parameters, a required request body,
//! the body's media type, and JSON bodies against the schema (`$ref`, `type`,
//! `nullable`, `properties`, `required`, `additionalProperties`, `items`,
//! `enum`, `allOf`, `oneOf`, `anyOf`, `minLength`, `maxLength`, `minimum`,
//! `maximum`). `readOnly` properties are neither required nor rejected.
//! Recursion stops silently at depth 64.

use std::path::Path;
use std::sync::OnceLock;

use http::Method;
use serde_json::Value;

const MAX_DEPTH: usize = 64;

/// A parsed OpenAPI 3.0 document.
#[derive(Debug)]
pub struct OpenApi {
    doc: Value,
    /// (template, its segments) for every path, in document order.
    paths: Vec<(String, Vec<String>)>,
}

/// One operation of the document, matched against a concrete path.
#[derive(Debug, Clone)]
pub struct Operation<'a> {
    /// The method, lower case (`post`).
    pub method: String,
    /// The path template, e.g. `/rest/api/3/issue/{issueIdOrKey}`.
    pub template: &'a str,
    pub operation_id: Option<&'a str>,
    /// Path parameters taken from the concrete path (percent-decoded).
    pub path_params: Vec<(String, String)>,
    /// The operation object of the document.
    pub raw: &'a Value,
    /// The path item's own `parameters`, if any.
    path_level_params: Option<&'a Value>,
}

/// The Jira Cloud platform spec from the fixtures
/// (`specs/jira-cloud-platform-openapi.json`), parsed once per process;
/// `None` when the fixtures are absent (outside CI).
pub fn jira_spec() -> Option<&'static OpenApi> {
    static SPEC: OnceLock<Option<OpenApi>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let dir = crate::fixtures_dir()?;
        let path = dir.join("specs/jira-cloud-platform-openapi.json");
        Some(OpenApi::load(&path).unwrap_or_else(|e| panic!("{e}")))
    })
    .as_ref()
}

impl OpenApi {
    /// Reads and parses a JSON OpenAPI document.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        Ok(Self::from_value(doc))
    }

    /// Wraps an already parsed document.
    pub fn from_value(doc: Value) -> Self {
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .map(|p| {
                p.keys()
                    .map(|t| (t.clone(), split(t).map(str::to_string).collect()))
                    .collect()
            })
            .unwrap_or_default();
        OpenApi { doc, paths }
    }

    /// The operation for `method` on the concrete `path` (no query string).
    /// When several templates match, the one with a literal segment at the
    /// first differing position wins (`/issue/createmeta` over
    /// `/issue/{issueIdOrKey}`).
    pub fn operation(&self, method: &Method, path: &str) -> Option<Operation<'_>> {
        let m = method.as_str().to_ascii_lowercase();
        let segs: Vec<&str> = split(path).collect();
        let mut best: Option<Candidate<'_>> = None;
        for (template, tsegs) in &self.paths {
            if tsegs.len() != segs.len() {
                continue;
            }
            let Some(op) = self.doc["paths"][template.as_str()].get(m.as_str()) else {
                continue;
            };
            if !op.is_object() {
                continue;
            }
            let mut score = Vec::with_capacity(segs.len());
            let mut params = Vec::new();
            let mut ok = true;
            for (t, s) in tsegs.iter().zip(&segs) {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    if s.is_empty() {
                        ok = false;
                        break;
                    }
                    score.push(false);
                    params.push((name.to_string(), crate::faults::percent_decode(s)));
                } else if t == s {
                    score.push(true);
                } else {
                    ok = false;
                    break;
                }
            }
            if ok && best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, template.as_str(), params));
            }
        }
        let (_, template, path_params) = best?;
        let item = &self.doc["paths"][template];
        Some(Operation {
            raw: &item[m.as_str()],
            operation_id: item[m.as_str()]["operationId"].as_str(),
            method: m,
            template,
            path_params,
            path_level_params: item.get("parameters"),
        })
    }

    /// Validates one request. `body` is the parsed JSON body (pass `None` for
    /// an absent or non-JSON body; a non-JSON body counts as present when its
    /// `content_type` is given).
    pub fn validate(
        &self,
        method: &Method,
        path: &str,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let Some(op) = self.operation(method, path) else {
            return Err(vec![format!("no operation {method} {path} in the spec")]);
        };
        let mut errs = Vec::new();
        self.check_params(&op, query, &mut errs);
        self.check_body(&op, content_type, body, &mut errs);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    fn params<'a>(&'a self, op: &Operation<'a>) -> Vec<&'a Value> {
        let mut out = Vec::new();
        for list in [op.path_level_params, op.raw.get("parameters")]
            .into_iter()
            .flatten()
        {
            if let Some(list) = list.as_array() {
                out.extend(list.iter().map(|p| self.resolve(p)));
            }
        }
        out
    }

    fn check_params(&self, op: &Operation<'_>, query: &[(String, String)], errs: &mut Vec<String>) {
        let params: Vec<&Value> = self
            .params(op)
            .into_iter()
            .filter(|p| p["in"] == "query")
            .collect();
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            if p["required"] == true && !query.iter().any(|(k, _)| k == name) {
                errs.push(format!("query.{name}: required parameter missing"));
            }
        }
        for (k, v) in query {
            let Some(p) = params.iter().find(|p| p["name"] == k.as_str()) else {
                errs.push(format!("query.{k}: unknown query parameter"));
                continue;
            };
            let schema = self.resolve(&p["schema"]);
            if schema["type"] == "array" {
                let items = self.resolve(&schema["items"]);
                for part in v.split(',') {
                    self.check_scalar_param(k, part.trim(), items, errs);
                }
            } else {
                self.check_scalar_param(k, v, schema, errs);
            }
        }
    }

    fn check_scalar_param(&self, name: &str, v: &str, schema: &Value, errs: &mut Vec<String>) {
        let ok = match schema["type"].as_str() {
            Some("integer") => v.parse::<i64>().is_ok(),
            Some("number") => v.parse::<f64>().is_ok(),
            Some("boolean") => v == "true" || v == "false",
            _ => true,
        };
        if !ok {
            errs.push(format!(
                "query.{name}: {v:?} is not a valid {}",
                schema["type"].as_str().unwrap_or("value")
            ));
            return;
        }
        if let Some(values) = schema["enum"].as_array() {
            if !values.iter().any(|e| e.as_str() == Some(v)) {
                errs.push(format!("query.{name}: {v:?} is not one of {values:?}"));
            }
        }
    }

    fn check_body(
        &self,
        op: &Operation<'_>,
        content_type: Option<&str>,
        body: Option<&Value>,
        errs: &mut Vec<String>,
    ) {
        let Some(rb) = op.raw.get("requestBody").map(|b| self.resolve(b)) else {
            return;
        };
        let media = content_type
            .map(|c| {
                c.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|c| !c.is_empty());
        let is_json = |m: &str| m == "application/json" || m.ends_with("+json");
        let present = body.is_some() || media.as_deref().is_some_and(|m| !is_json(m));
        if !present {
            if rb["required"] == true {
                errs.push("body: request body is required".into());
            }
            return;
        }
        let content = rb["content"].as_object();
        let media = media.unwrap_or_else(|| "application/json".into());
        let entry = content.and_then(|c| {
            c.get(&media).or_else(|| {
                c.iter()
                    .find(|(k, _)| {
                        k.as_str() == "*/*"
                            || k.ends_with("/*") && media.starts_with(k.trim_end_matches('*'))
                    })
                    .map(|(_, v)| v)
            })
        });
        let Some(entry) = entry else {
            if let Some(c) = content {
                let known: Vec<&str> = c.keys().map(String::as_str).collect();
                errs.push(format!(
                    "body: media type {media} not accepted (spec: {})",
                    known.join(", ")
                ));
            }
            return;
        };
        if let (true, Some(body), Some(schema)) = (is_json(&media), body, entry.get("schema")) {
            self.check_schema(schema, body, "body", 0, errs);
        }
    }

    /// Follows a local `$ref` (`#/components/...`), repeatedly.
    fn resolve<'a>(&'a self, mut v: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match v.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let Some(ptr) = r.strip_prefix('#') else {
                        return v;
                    };
                    match self.doc.pointer(ptr) {
                        Some(t) => v = t,
                        None => return v,
                    }
                }
                None => return v,
            }
        }
        v
    }

    /// Validates `v` against `schema`, pushing `path: message` errors.
    pub fn check_schema(
        &self,
        schema: &Value,
        v: &Value,
        path: &str,
        depth: usize,
        errs: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        let schema = self.resolve(schema);
        let Some(s) = schema.as_object() else {
            return;
        };
        if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check_schema(sub, v, path, depth + 1, errs);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                let any_ok = branches.iter().any(|b| {
                    let mut e = Vec::new();
                    self.check_schema(b, v, path, depth + 1, &mut e);
                    e.is_empty()
                });
                if !any_ok && !branches.is_empty() {
                    errs.push(format!("{path}: matches none of the {key} branches"));
                }
            }
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "boolean" => v.is_boolean(),
                "number" => v.is_number(),
                "integer" => {
                    v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
                }
                _ => true,
            };
            if !ok {
                errs.push(format!("{path}: expected {t}, got {}", kind(v)));
                return;
            }
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            if !values.contains(v) {
                errs.push(format!(
                    "{path}: {v} is not one of {}",
                    Value::from(values.clone())
                ));
            }
        }
        match v {
            Value::String(text) => {
                let n = text.chars().count() as u64;
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    if n > max {
                        errs.push(format!("{path}: longer than {max} characters"));
                    }
                }
                if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                    if n < min {
                        errs.push(format!("{path}: shorter than {min} characters"));
                    }
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(0.0);
                if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                    if x > max {
                        errs.push(format!("{path}: {x} is above the maximum {max}"));
                    }
                }
                if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                    if x < min {
                        errs.push(format!("{path}: {x} is below the minimum {min}"));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check_schema(
                            item_schema,
                            item,
                            &format!("{path}[{i}]"),
                            depth + 1,
                            errs,
                        );
                    }
                }
            }
            Value::Object(map) => {
                let props = s.get("properties").and_then(Value::as_object);
                if let Some(required) = s.get("required").and_then(Value::as_array) {
                    for r in required.iter().filter_map(Value::as_str) {
                        let read_only = props
                            .and_then(|p| p.get(r))
                            .map(|p| self.resolve(p)["readOnly"] == true)
                            .unwrap_or(false);
                        if !read_only && !map.contains_key(r) {
                            errs.push(format!("{path}.{r}: required property missing"));
                        }
                    }
                }
                for (k, val) in map {
                    let sub = format!("{path}.{k}");
                    if let Some(p) = props.and_then(|p| p.get(k)) {
                        self.check_schema(p, val, &sub, depth + 1, errs);
                        continue;
                    }
                    match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => {
                            errs.push(format!("{sub}: unknown property"));
                        }
                        Some(extra @ Value::Object(_)) => {
                            self.check_schema(extra, val, &sub, depth + 1, errs);
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// (literal-segment score, template, path parameters).
type Candidate<'a> = (Vec<bool>, &'a str, Vec<(String, String)>);

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.trim_start_matches('/').split('/')
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn tiny() -> OpenApi {
        OpenApi::from_value(json!({
            "openapi": "3.0.1",
            "paths": {
                "/a/{id}": {"get": {"operationId": "getA", "parameters": [
                    {"in": "path", "name": "id", "required": true, "schema": {"type": "string"}},
                    {"in": "query", "name": "n", "schema": {"type": "integer"}},
                    {"in": "query", "name": "mode", "required": true,
                     "schema": {"type": "string", "enum": ["x", "y"]}}
                ]}},
                "/a/special": {"get": {"operationId": "special"}},
                "/b": {"post": {"requestBody": {"required": true, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/B"}}}}}}
            },
            "components": {"schemas": {
                "B": {"type": "object", "additionalProperties": false, "required": ["name"],
                      "properties": {
                        "name": {"type": "string", "maxLength": 5},
                        "n": {"type": "integer", "nullable": true, "minimum": 1},
                        "kids": {"type": "array", "items": {"$ref": "#/components/schemas/B"}},
                        "either": {"oneOf": [{"type": "string"}, {"type": "boolean"}]},
                        "id": {"type": "string", "readOnly": true}
                      }}
            }}
        }))
    }

    #[test]
    fn templates_prefer_literals() {
        let api = tiny();
        let op = api.operation(&Method::GET, "/a/special").unwrap();
        assert_eq!(op.operation_id, Some("special"));
        let op = api.operation(&Method::GET, "/a/X%201").unwrap();
        assert_eq!(op.operation_id, Some("getA"));
        assert_eq!(op.path_params, vec![("id".into(), "X 1".into())]);
        assert!(api.operation(&Method::POST, "/a/x").is_none());
    }

    #[test]
    fn query_checks() {
        let api = tiny();
        assert!(api
            .validate(
                &Method::GET,
                "/a/1",
                &q(&[("mode", "x"), ("n", "3")]),
                None,
                None
            )
            .is_ok());
        let e = api
            .validate(
                &Method::GET,
                "/a/1",
                &q(&[("n", "z"), ("bogus", "1")]),
                None,
                None,
            )
            .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        let e = api
            .validate(&Method::GET, "/a/1", &q(&[("mode", "w")]), None, None)
            .unwrap_err();
        assert!(e[0].contains("query.mode"), "{e:?}");
    }

    #[test]
    fn body_checks() {
        let api = tiny();
        let ct = Some("application/json");
        let ok =
            json!({"name": "a", "n": null, "kids": [{"name": "b"}], "either": true, "id": "r"});
        assert!(api
            .validate(&Method::POST, "/b", &[], ct, Some(&ok))
            .is_ok());
        let bad = json!({"name": 5, "n": 0, "kids": [{"nom": "b"}], "either": 1});
        let e = api
            .validate(&Method::POST, "/b", &[], ct, Some(&bad))
            .unwrap_err();
        assert!(
            e.contains(&"body.name: expected string, got number".to_string()),
            "{e:?}"
        );
        assert!(e.iter().any(|x| x.starts_with("body.n: ")), "{e:?}");
        assert!(
            e.contains(&"body.kids[0].name: required property missing".to_string()),
            "{e:?}"
        );
        assert!(
            e.contains(&"body.kids[0].nom: unknown property".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter().any(|x| x.starts_with("body.either: matches none")),
            "{e:?}"
        );
        let e = api
            .validate(&Method::POST, "/b", &[], ct, None)
            .unwrap_err();
        assert_eq!(e, vec!["body: request body is required".to_string()]);
        let e = api
            .validate(&Method::POST, "/b", &[], Some("text/plain"), None)
            .unwrap_err();
        assert!(e[0].contains("media type"), "{e:?}");
    }

    #[test]
    fn jira_spec_checks() {
        let Some(api) = jira_spec() else { return };
        let ct = Some("application/json");
        let create = json!({"fields": {
            "project": {"key": "OPS"},
            "issuetype": {"name": "Task"},
            "summary": "Printer on fire",
            "description": {"type": "doc", "version": 1, "content": []},
            "labels": ["servicenow"],
            "customfield_10050": "INC0010001"
        }});
        api.validate(&Method::POST, "/rest/api/3/issue", &[], ct, Some(&create))
            .unwrap();
        let e = api
            .validate(
                &Method::POST,
                "/rest/api/3/issue",
                &[],
                ct,
                Some(&json!({"fields": "x"})),
            )
            .unwrap_err();
        assert_eq!(
            e,
            vec!["body.fields: expected object, got string".to_string()]
        );
        let e = api
            .validate(
                &Method::PUT,
                "/rest/api/3/issue/OPS-1",
                &[],
                ct,
                Some(&json!({"update": {"labels": [{"append": "x"}]}})),
            )
            .unwrap_err();
        assert_eq!(
            e,
            vec!["body.update.labels[0].append: unknown property".to_string()]
        );
        let e = api
            .validate(
                &Method::GET,
                "/rest/api/3/search/jql",
                &q(&[("jql", "project = OPS"), ("maxResult", "5")]),
                None,
                None,
            )
            .unwrap_err();
        assert_eq!(
            e,
            vec!["query.maxResult: unknown query parameter".to_string()]
        );
        api.validate(
            &Method::GET,
            "/rest/api/3/search/jql",
            &q(&[
                ("jql", "project = OPS"),
                ("maxResults", "5"),
                ("fields", "summary,labels"),
            ]),
            None,
            None,
        )
        .unwrap();
        let e = api
            .validate(&Method::GET, "/rest/api/3/nope/here", &[], None, None)
            .unwrap_err();
        assert!(e[0].starts_with("no operation"), "{e:?}");
        let op = api
            .operation(&Method::GET, "/rest/api/3/issue/createmeta")
            .unwrap();
        assert_eq!(op.template, "/rest/api/3/issue/createmeta");
        let op = api
            .operation(&Method::GET, "/rest/api/3/issue/OPS-1")
            .unwrap();
        assert_eq!(op.operation_id, Some("getIssue"));
    }
}
