//! `${...}` references.
//!
//! Static references (`${stack}`, `${stage}`, `${vars.X}`, `${env:NAME}`) are
//! expanded in the YAML tree before typing, so `memory: ${vars.memory}` is a
//! number. Dynamic ones (`${queues.X.url}`, `${aws:account_id}`) stay in the
//! text as templates and are resolved by the planner; each is a graph edge.
//! `$${` writes a literal `${`.

use super::yaml::{Node, Value};
use crate::diag::{Diagnostic, Mark};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ref {
    Stack,
    Stage,
    Var(Vec<String>),
    Env(String),
    /// `aws:account_id` or `aws:region`.
    Aws(String),
    /// `section.name.attr`, e.g. `queues.orders.url`.
    Resource {
        section: String,
        name: String,
        attr: String,
    },
}

impl Ref {
    pub fn is_static(&self) -> bool {
        matches!(self, Ref::Stack | Ref::Stage | Ref::Var(_) | Ref::Env(_))
    }
}

impl fmt::Display for Ref {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ref::Stack => write!(f, "${{stack}}"),
            Ref::Stage => write!(f, "${{stage}}"),
            Ref::Var(p) => write!(f, "${{vars.{}}}", p.join(".")),
            Ref::Env(n) => write!(f, "${{env:{n}}}"),
            Ref::Aws(a) => write!(f, "${{aws:{a}}}"),
            Ref::Resource { section, name, attr } => write!(f, "${{{section}.{name}.{attr}}}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Ref(Ref),
}

pub const RESOURCE_SECTIONS: &[&str] = &["queues", "functions", "tables", "buses", "websockets"];

const REF_HINT: &str = "references look like ${vars.NAME}, ${env:NAME}, ${stage}, ${queues.NAME.url}, ${functions.NAME.arn} or ${aws:account_id}";

/// Splits text into literal parts and references. Errors are plain messages; callers add the position.
pub fn parse(text: &str) -> Result<Vec<Part>, (String, &'static str)> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        lit.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            lit.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or((
                "unterminated `${` reference".to_string(),
                "close it with `}`, or write `$${` for a literal `${`",
            ))?;
            let expr = &tail[..end];
            if expr.contains("${") {
                return Err(("references cannot be nested".to_string(), REF_HINT));
            }
            if !lit.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut lit)));
            }
            parts.push(Part::Ref(parse_ref(expr.trim())?));
            rest = &tail[end + 1..];
        } else {
            lit.push('$');
            rest = &after[1..];
        }
    }
    lit.push_str(rest);
    if !lit.is_empty() {
        parts.push(Part::Text(lit));
    }
    Ok(parts)
}

fn parse_ref(expr: &str) -> Result<Ref, (String, &'static str)> {
    let unknown = || (format!("unknown reference `${{{expr}}}`"), REF_HINT);
    if expr == "stack" {
        return Ok(Ref::Stack);
    }
    if expr == "stage" {
        return Ok(Ref::Stage);
    }
    if let Some(name) = expr.strip_prefix("env:") {
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                format!("`{name}` is not an environment variable name"),
                "use ${env:NAME} with letters, digits and `_`",
            ));
        }
        return Ok(Ref::Env(name.to_string()));
    }
    if let Some(attr) = expr.strip_prefix("aws:") {
        return match attr {
            "account_id" | "region" => Ok(Ref::Aws(attr.to_string())),
            _ => Err((
                format!("unknown reference `${{{expr}}}`"),
                "the aws: references are ${aws:account_id} and ${aws:region}",
            )),
        };
    }
    let segs: Vec<&str> = expr.split('.').collect();
    if segs.iter().any(|s| s.is_empty()) {
        return Err(unknown());
    }
    match segs[0] {
        "vars" if segs.len() >= 2 => Ok(Ref::Var(segs[1..].iter().map(|s| s.to_string()).collect())),
        s if RESOURCE_SECTIONS.contains(&s) && segs.len() == 3 => {
            Ok(Ref::Resource { section: s.to_string(), name: segs[1].to_string(), attr: segs[2].to_string() })
        }
        s if RESOURCE_SECTIONS.contains(&s) => Err((
            format!("`${{{expr}}}` must name a resource and an attribute"),
            "write ${SECTION.NAME.ATTRIBUTE}, e.g. ${queues.orders.url}",
        )),
        _ => Err(unknown()),
    }
}

/// Writes parts back as a template, escaping literal `${`.
pub fn render(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(&t.replace("${", "$${")),
            Part::Ref(r) => out.push_str(&r.to_string()),
        }
    }
    out
}

/// The dynamic references in a template (after static expansion).
pub fn references(text: &str) -> Vec<Ref> {
    parse(text)
        .map(|parts| {
            parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Ref(r) => Some(r),
                    Part::Text(_) => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Ctx<'a> {
    stack: String,
    stage: &'a str,
    vars: Node,
    env: &'a dyn Fn(&str) -> Option<String>,
}

/// Expands static references everywhere except inside `vars` and `stages`,
/// whose values are expanded when used. Collects every error.
pub fn expand_static(
    root: &mut Node,
    stage: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Vec<Diagnostic>> {
    let stack = root.get("stack").and_then(Node::text).unwrap_or_default().to_string();
    let mut vars = root.get("vars").cloned().unwrap_or(Node { mark: root.mark, value: Value::Map(Vec::new()) });
    if let Some(stage_vars) = root.get("stages").and_then(|s| s.get(stage)).and_then(|s| s.get("vars"))
        && let (Value::Map(base), Value::Map(over)) = (&mut vars.value, &stage_vars.value)
    {
        for e in over {
            base.retain(|b| b.key != e.key);
            base.push(e.clone());
        }
    }
    let ctx = Ctx { stack, stage, vars, env };
    let mut errors = Vec::new();
    if let Value::Map(entries) = &mut root.value {
        for e in entries.iter_mut().filter(|e| e.key != "vars" && e.key != "stages") {
            walk(&mut e.value, &ctx, &mut errors);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn walk(node: &mut Node, ctx: &Ctx, errors: &mut Vec<Diagnostic>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| walk(n, ctx, errors)),
        Value::Map(entries) => entries.iter_mut().for_each(|e| walk(&mut e.value, ctx, errors)),
        Value::Scalar { text, .. } if text.contains('$') => match expand_scalar(text, node.mark, ctx, 0) {
            Ok(Some(v)) => node.value = v,
            Ok(None) => {}
            Err(d) => errors.push(d),
        },
        _ => {}
    }
}

/// The new value of a scalar, or None when it holds no static reference.
fn expand_scalar(text: &str, mark: Mark, ctx: &Ctx, depth: usize) -> Result<Option<Value>, Diagnostic> {
    let parts = parse(text).map_err(|(m, h)| Diagnostic::new(m).hint(h).at_mark(mark))?;
    if !parts.iter().any(|p| matches!(p, Part::Ref(r) if r.is_static())) {
        return Ok(None);
    }
    if let [Part::Ref(r)] = parts.as_slice() {
        let v = lookup(r, mark, ctx, depth)?;
        return Ok(Some(match v {
            Value::Scalar { text, plain } => Value::Scalar { text: text.replace("${", "$${"), plain },
            other => other,
        }));
    }
    let mut out = Vec::new();
    for p in parts {
        match p {
            Part::Ref(r) if r.is_static() => match lookup(&r, mark, ctx, depth)? {
                Value::Scalar { text, .. } => out.push(Part::Text(text)),
                Value::Null => {}
                _ => {
                    return Err(Diagnostic::new(format!("{r} is a list or mapping and cannot be part of a text"))
                        .hint("use it as the whole value, or reference a scalar inside it")
                        .at_mark(mark));
                }
            },
            other => out.push(other),
        }
    }
    Ok(Some(Value::Scalar { text: render(&out), plain: false }))
}

fn lookup(r: &Ref, mark: Mark, ctx: &Ctx, depth: usize) -> Result<Value, Diagnostic> {
    let scalar = |t: &str| Value::Scalar { text: t.replace("${", "$${"), plain: false };
    match r {
        Ref::Stack => Ok(scalar(&ctx.stack)),
        Ref::Stage => Ok(scalar(ctx.stage)),
        Ref::Env(name) => {
            (ctx.env)(name).map(|v| Value::Scalar { text: v.replace("${", "$${"), plain: true }).ok_or_else(|| {
                Diagnostic::new(format!("environment variable `{name}` is not set"))
                    .hint(format!("export {name}=..., or move the value into `vars`"))
                    .at_mark(mark)
            })
        }
        Ref::Var(path) => {
            if depth > 16 {
                return Err(Diagnostic::new(format!("{r} refers to itself through other vars"))
                    .hint("break the loop between these vars")
                    .at_mark(mark));
            }
            let mut node = &ctx.vars;
            for (i, seg) in path.iter().enumerate() {
                node = node.get(seg).ok_or_else(|| {
                    let known: Vec<&str> = match &node.value {
                        Value::Map(es) => es.iter().map(|e| e.key.as_str()).collect(),
                        _ => Vec::new(),
                    };
                    let hint = match crate::diag::did_you_mean(seg, known.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{}`?",
                            path[..i].iter().map(String::as_str).chain([s]).collect::<Vec<_>>().join(".")
                        ),
                        None => "define it under `vars:` (or `stages.STAGE.vars:`)".to_string(),
                    };
                    Diagnostic::new(format!("{r} is not defined")).hint(hint).at_mark(mark)
                })?;
            }
            let mut value = node.clone();
            expand_var(&mut value, ctx, depth + 1)?;
            Ok(value.value)
        }
        Ref::Aws(_) | Ref::Resource { .. } => unreachable!("dynamic references are not looked up statically"),
    }
}

fn expand_var(node: &mut Node, ctx: &Ctx, depth: usize) -> Result<(), Diagnostic> {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().try_for_each(|n| expand_var(n, ctx, depth)),
        Value::Map(entries) => entries.iter_mut().try_for_each(|e| expand_var(&mut e.value, ctx, depth)),
        Value::Scalar { text, .. } if text.contains('$') => {
            if let Some(v) = expand_scalar(text, node.mark, ctx, depth)? {
                node.value = v;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_refs_and_escapes() {
        let parts = parse("a-${stage}-$${x}-${queues.q.url}").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Text("a-".into()),
                Part::Ref(Ref::Stage),
                Part::Text("-${x}-".into()),
                Part::Ref(Ref::Resource { section: "queues".into(), name: "q".into(), attr: "url".into() }),
            ]
        );
        assert_eq!(render(&parts), "a-${stage}-$${x}-${queues.q.url}");
    }

    #[test]
    fn rejects_malformed_references() {
        assert_eq!(parse("${stage").unwrap_err().0, "unterminated `${` reference");
        assert_eq!(parse("${foo.bar}").unwrap_err().0, "unknown reference `${foo.bar}`");
        assert_eq!(parse("${aws:acount}").unwrap_err().0, "unknown reference `${aws:acount}`");
        assert_eq!(
            parse("${queues.orders}").unwrap_err().0,
            "`${queues.orders}` must name a resource and an attribute"
        );
    }
}
