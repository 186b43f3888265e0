//! A span-aware YAML tree: every node keeps its position so that errors found
//! long after parsing (a limit, a bad reference) can still point at `line:col`.
//!
//! Built from yaml-rust2's event stream. Aliases are expanded with a node
//! budget (no "billion laughs"), nesting depth is capped, duplicate keys and
//! tags are rejected, and `<<` merge keys are honoured.

use crate::diag::{Diagnostic, Mark};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Most nodes a document may expand to, aliases included.
pub const MAX_NODES: usize = 1_000_000;
/// Deepest nesting accepted; real specs stay under ten.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The position of the value at `path` (keys and sequence indexes); for a
    /// map entry, the position of its key, which is where editors put the cursor.
    pub fn locate(&self, path: &[&str]) -> Option<Mark> {
        let mut node = self;
        let mut mark = self.mark;
        for seg in path {
            match &node.value {
                Value::Map(entries) => {
                    let e = entries.iter().find(|e| e.key == *seg)?;
                    mark = e.key_mark;
                    node = &e.value;
                }
                Value::Seq(items) => {
                    node = items.get(seg.parse::<usize>().ok()?)?;
                    mark = node.mark;
                }
                _ => return None,
            }
        }
        Some(mark)
    }

    /// Like [`locate`](Self::locate) but points at the value rather than its key.
    pub fn locate_value(&self, path: &[&str]) -> Option<Mark> {
        let mut node = self;
        for seg in path {
            node = match &node.value {
                Value::Map(entries) => &entries.iter().find(|e| e.key == *seg)?.value,
                Value::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node.mark)
    }

    fn size(&self) -> usize {
        1 + match &self.value {
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|e| 1 + e.value.size()).sum(),
            _ => 0,
        }
    }
}

/// Parses one YAML document. An empty document is an empty mapping.
pub fn parse(text: &str) -> Result<Node, Diagnostic> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        // The parser's own limit trips before ours on flow collections.
        let hint = if e.info().contains("recursion limit") {
            format!("nesting deeper than {MAX_DEPTH} levels is not supported")
        } else {
            "check indentation and quoting near this position".to_string()
        };
        return Err(Diagnostic::new(format!("invalid YAML: {}", e.info())).hint(hint).at_mark(mark_of(m)));
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    match builder.documents.len() {
        0 => Ok(Node { mark: Mark { line: 1, col: 1 }, value: Value::Map(Vec::new()) }),
        1 => Ok(builder.documents.pop().unwrap()),
        _ => Err(Diagnostic::new("expected one YAML document, found several")
            .hint("remove the `---` separators; one file holds one stack")
            .at_mark(builder.second_document.unwrap_or_default())),
    }
}

impl Diagnostic {
    /// Sets only the position; the loader fills in the file name.
    pub(crate) fn at_mark(mut self, mark: Mark) -> Self {
        self.mark = Some(mark);
        self
    }
}

fn mark_of(m: &Marker) -> Mark {
    Mark { line: m.line(), col: m.col() + 1 }
}

enum Frame {
    Seq { mark: Mark, anchor: usize, items: Vec<Node> },
    Map { mark: Mark, anchor: usize, entries: Vec<Entry>, key: Option<(String, Mark)> },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    documents: Vec<Node>,
    second_document: Option<Mark>,
    nodes: usize,
    error: Option<Diagnostic>,
}

impl Builder {
    fn fail(&mut self, d: Diagnostic) {
        if self.error.is_none() {
            self.error = Some(d);
        }
    }

    fn budget(&mut self, n: usize, mark: Mark) -> bool {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            self.fail(
                Diagnostic::new(format!("the document expands to more than {MAX_NODES} nodes"))
                    .hint("YAML aliases (*name) are expanded; avoid nesting them")
                    .at_mark(mark),
            );
            return false;
        }
        true
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        match self.stack.last_mut() {
            None => {
                if !self.documents.is_empty() && self.second_document.is_none() {
                    self.second_document = Some(node.mark);
                }
                self.documents.push(node);
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => match node.value {
                    Value::Scalar { text, .. } => *key = Some((text, node.mark)),
                    Value::Null => *key = Some((String::new(), node.mark)),
                    _ => {
                        let d = Diagnostic::new("a mapping key must be a plain name")
                            .hint("complex keys (`? ...`) are not supported")
                            .at_mark(node.mark);
                        self.fail(d);
                    }
                },
                Some((k, key_mark)) => {
                    if k != "<<"
                        && let Some(first) = entries.iter().find(|e| e.key == k)
                    {
                        let d = Diagnostic::new(format!("duplicate key `{k}`"))
                            .hint(format!(
                                "it is first defined at line {}, column {}",
                                first.key_mark.line, first.key_mark.col
                            ))
                            .at_mark(key_mark);
                        self.fail(d);
                        return;
                    }
                    entries.push(Entry { key: k, key_mark, value: node });
                }
            },
        }
    }
}

/// Applies `<<: *base` merge keys: explicit keys win over merged ones.
fn merge_keys(entries: Vec<Entry>) -> Result<Vec<Entry>, Diagnostic> {
    if !entries.iter().any(|e| e.key == "<<") {
        return Ok(entries);
    }
    let (merges, mut own): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.key == "<<");
    for m in merges {
        let sources = match m.value.value {
            Value::Map(_) => vec![m.value],
            Value::Seq(items) => items,
            _ => {
                return Err(Diagnostic::new("`<<` must merge a mapping or a list of mappings").at_mark(m.key_mark));
            }
        };
        for src in sources {
            let Value::Map(src_entries) = src.value else {
                return Err(Diagnostic::new("`<<` must merge a mapping or a list of mappings").at_mark(src.mark));
            };
            for e in src_entries {
                if !own.iter().any(|o| o.key == e.key) {
                    own.push(e);
                }
            }
        }
    }
    Ok(own)
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = mark_of(&marker);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if !self.budget(1, mark) {
                    return;
                }
                let plain = matches!(style, TScalarStyle::Plain);
                let mut forced_string = false;
                if let Some(tag) = tag {
                    let full = format!("{}{}", tag.handle, tag.suffix);
                    if full == "tag:yaml.org,2002:str" || (tag.handle == "!!" && tag.suffix == "str") {
                        forced_string = true;
                    } else {
                        self.fail(
                            Diagnostic::new(format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix))
                                .hint("slx specs use plain values and ${...} references instead of tags")
                                .at_mark(mark),
                        );
                        return;
                    }
                }
                let value = if plain && !forced_string && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar { text, plain: plain && !forced_string }
                };
                self.complete(Node { mark, value }, anchor);
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) if tag.is_some() => {
                let _ = anchor;
                let tag = tag.unwrap();
                self.fail(
                    Diagnostic::new(format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix))
                        .hint("slx specs use plain values and ${...} references instead of tags")
                        .at_mark(mark),
                );
            }
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(Diagnostic::new(format!("nesting deeper than {MAX_DEPTH} levels")).at_mark(mark));
                    return;
                }
                if self.budget(1, mark) {
                    self.stack.push(Frame::Seq { mark, anchor, items: Vec::new() });
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(Diagnostic::new(format!("nesting deeper than {MAX_DEPTH} levels")).at_mark(mark));
                    return;
                }
                if self.budget(1, mark) {
                    self.stack.push(Frame::Map { mark, anchor, entries: Vec::new(), key: None });
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { mark, anchor, items }) = self.stack.pop() {
                    self.complete(Node { mark, value: Value::Seq(items) }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map { mut mark, anchor, entries, .. }) = self.stack.pop() {
                    // yaml-rust2 marks a block mapping where its first `:` is; a
                    // reader looks for it at its first key. (A flow mapping's `{`
                    // comes before its first key and keeps its own mark.)
                    if let Some(first) = entries.first()
                        && first.key_mark.line == mark.line
                        && first.key_mark.col < mark.col
                    {
                        mark = first.key_mark;
                    }
                    match merge_keys(entries) {
                        Ok(entries) => self.complete(Node { mark, value: Value::Map(entries) }, anchor),
                        Err(d) => self.fail(d),
                    }
                }
            }
            Event::Alias(id) => {
                let Some((node, size)) = self.anchors.get(&id).cloned() else {
                    self.fail(Diagnostic::new("alias to an unknown anchor").at_mark(mark));
                    return;
                };
                if self.budget(size, mark) {
                    self.complete(Node { mark, ..node }, 0);
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd | Event::Nothing => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_keys_and_values() {
        let n = parse("stack: orders\nfunctions:\n  api:\n    memory: 256\n").unwrap();
        assert_eq!(n.locate(&["functions", "api", "memory"]), Some(Mark { line: 4, col: 5 }));
        assert_eq!(n.locate_value(&["functions", "api", "memory"]), Some(Mark { line: 4, col: 13 }));
    }

    #[test]
    fn rejects_duplicate_keys_with_first_position() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.message, "duplicate key `a`");
        assert_eq!(e.mark, Some(Mark { line: 3, col: 1 }));
        assert_eq!(e.hint.as_deref(), Some("it is first defined at line 1, column 1"));
    }

    #[test]
    fn alias_bombs_hit_the_node_budget() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            doc.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = parse(&doc).unwrap_err();
        assert!(e.message.starts_with("the document expands to more than"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let flow = "[".repeat(10_000) + &"]".repeat(10_000);
        let e = parse(&flow).unwrap_err();
        assert_eq!(e.message, "invalid YAML: recursion limit exceeded");
        assert!(e.mark.is_some());
        let block: String =
            (0..100).map(|i| format!("{}a:\n", "  ".repeat(i))).collect::<String>() + &"  ".repeat(100) + "x: 1\n";
        let e = parse(&block).unwrap_err();
        assert_eq!(e.message, format!("nesting deeper than {MAX_DEPTH} levels"));
        assert_eq!(
            e.mark,
            Some(Mark { line: 65, col: 130 }),
            "the mark of the mapping too deep, before its keys are read"
        );
    }

    #[test]
    fn merge_keys_fill_in_missing_entries() {
        let n = parse("base: &b {memory: 256, timeout: 3}\nf:\n  <<: *b\n  timeout: 9\n").unwrap();
        let f = n.get("f").unwrap();
        assert_eq!(f.get("memory").and_then(Node::text), Some("256"));
        assert_eq!(f.get("timeout").and_then(Node::text), Some("9"));
    }

    #[test]
    fn quoted_scalars_are_not_plain_and_tags_are_rejected() {
        let n = parse("a: '12'\nb: 12\n").unwrap();
        assert_eq!(n.get("a").unwrap().value, Value::Scalar { text: "12".into(), plain: false });
        assert_eq!(n.get("b").unwrap().value, Value::Scalar { text: "12".into(), plain: true });
        let e = parse("a: !Ref x\n").unwrap_err();
        assert_eq!(e.message, "YAML tag `!Ref` is not supported");
    }
}
