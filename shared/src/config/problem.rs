//! What is wrong with a configuration file, and where: the file's line and
//! column and the field's path, for every parse error and every check.

use serde_saphyr::Spanned;
use std::fmt;
use std::path::Path;

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// Path of the field, e.g. `endpoints[1].auth.token`.
    pub field: String,
    pub message: String,
    /// What would fix it, when we can say.
    pub fix: Option<String>,
}

/// `file:line:column: field: message (fix: …)`, one problem per line.
pub fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&file.display().to_string());
        if let Some(line) = p.line {
            out.push_str(&format!(":{line}"));
            if let Some(col) = p.column {
                out.push_str(&format!(":{col}"));
            }
        }
        out.push_str(": ");
        if !p.field.is_empty() {
            out.push_str(&p.field);
            out.push_str(": ");
        }
        out.push_str(&p.message);
        if let Some(fix) = &p.fix {
            out.push_str(" (fix: ");
            out.push_str(fix);
            out.push(')');
        }
    }
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_problems(
            Path::new("config"),
            std::slice::from_ref(self),
        ))
    }
}

pub(crate) fn parse_problem(text: &str, error: &serde_saphyr::Error) -> Problem {
    let (line, column) = match error.location() {
        Some(l) if l.line() > 0 => (Some(l.line()), Some(l.column())),
        _ => (None, None),
    };
    // The message without the snippet and without the position, which the
    // problem carries in its own fields (`unknown variant … at line 4, column 11`).
    let rendered = error.without_snippet().to_string();
    let mut message = rendered.lines().next().unwrap_or_default().trim();
    message = message.strip_prefix("error: ").unwrap_or(message);
    if let (Some(l), Some(c)) = (line, column) {
        message = message
            .strip_prefix(&format!("line {l} column {c}: "))
            .unwrap_or(message);
        message = message
            .strip_suffix(&format!(" at line {l}, column {c}"))
            .unwrap_or(message);
    }
    let message = message.to_owned();
    let field = match (line, column) {
        (Some(l), Some(c)) => path_at(text, l, c, message.starts_with("missing field")),
        _ => String::new(),
    };
    let fix = if message.contains("unknown field") {
        Some("remove or rename the field; `relay schema` lists the allowed ones".to_owned())
    } else if message.contains("missing field") {
        Some("add the field".to_owned())
    } else if message.contains("unknown variant") {
        Some("use one of the listed values".to_owned())
    } else {
        None
    };
    Problem {
        line,
        column,
        field,
        message,
        fix,
    }
}

/// The field path (`endpoints[1].kind`) of the innermost YAML node at `line`,
/// `column` (1-based, as serde-saphyr reports them) of `text`; empty when no
/// node is there. With `of_mapping`, a position on a mapping key names the
/// mapping (serde reports a missing field at the last key it read).
///
/// Parse errors are located by line and column only. Rather than track the path
/// while deserializing (a second, wrapped copy of every `Deserialize` impl of
/// the config: the largest single item in the Lambda binaries), the path is
/// recovered afterwards from the YAML events, on the error path alone.
pub(crate) fn path_at(text: &str, line: u64, column: u64, of_mapping: bool) -> String {
    use granit_parser::{Event, Marker, Parser};
    type Pos = (usize, usize);
    /// An open collection: its path, where it starts, and where its next child goes.
    struct Frame {
        path: String,
        start: Pos,
        next: Next,
    }
    enum Next {
        /// In a mapping: the key just read (its value comes next), or none.
        Map(Option<String>),
        /// In a sequence: the index of the next item.
        Seq(usize),
    }
    /// Where a node stands: its path, and for a mapping key the mapping's path.
    fn place(stack: &mut [Frame], key_text: Option<&str>) -> (String, Option<String>) {
        let Some(Frame { path, next, .. }) = stack.last_mut() else {
            return (String::new(), None);
        };
        let join = |key: &str| {
            if path.is_empty() {
                key.to_owned()
            } else {
                format!("{path}.{key}")
            }
        };
        match next {
            Next::Seq(i) => {
                *i += 1;
                (format!("{path}[{}]", *i - 1), None)
            }
            Next::Map(key) => match key.take() {
                Some(k) => (join(&k), None),
                None => {
                    let k = key_text.unwrap_or("?");
                    *key = Some(k.to_owned());
                    (join(k), Some(path.clone()))
                }
            },
        }
    }
    let pos: Pos = (line as usize, column as usize);
    // granit-parser counts lines from 1 and columns from 0.
    let at = |m: Marker| (m.line(), m.col() + 1);
    // The innermost node containing `pos` so far: depth, path, mapping of a key.
    let mut best: Option<(usize, String, Option<String>)> = None;
    let mut consider =
        |start: Pos, end: Pos, depth: usize, path: String, key_of: Option<String>| {
            if start <= pos && pos <= end && best.as_ref().is_none_or(|(d, ..)| depth >= *d) {
                best = Some((depth, path, key_of));
            }
        };
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else { break };
        let depth = stack.len();
        match event {
            Event::Scalar(value, ..) => {
                let (path, key_of) = place(&mut stack, Some(&value));
                consider(at(span.start), at(span.end), depth, path, key_of);
            }
            Event::Alias(..) => {
                let (path, key_of) = place(&mut stack, None);
                consider(at(span.start), at(span.end), depth, path, key_of);
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let (path, _) = place(&mut stack, None);
                let next = match event {
                    Event::MappingStart(..) => Next::Map(None),
                    _ => Next::Seq(0),
                };
                stack.push(Frame {
                    path,
                    start: at(span.start),
                    next,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = stack.pop() else { break };
                consider(frame.start, at(span.end), stack.len(), frame.path, None);
            }
            _ => {}
        }
    }
    // Collections a syntax error left open reach to the end of the text.
    while let Some(frame) = stack.pop() {
        consider(
            frame.start,
            (usize::MAX, usize::MAX),
            stack.len(),
            frame.path,
            None,
        );
    }
    match best {
        Some((_, _, Some(mapping))) if of_mapping => mapping,
        Some((_, path, _)) => path,
        None => String::new(),
    }
}

pub(crate) fn at<T>(s: &Spanned<T>) -> (Option<u64>, Option<u64>) {
    let line = s.referenced.line();
    if line == 0 {
        (None, None)
    } else {
        (Some(line), Some(s.referenced.column()))
    }
}

pub(crate) fn problem<T>(
    span: &Spanned<T>,
    field: impl Into<String>,
    message: impl Into<String>,
    fix: &str,
) -> Problem {
    let (line, column) = at(span);
    Problem {
        line,
        column,
        field: field.into(),
        message: message.into(),
        fix: (!fix.is_empty()).then(|| fix.to_owned()),
    }
}
