//! Reading operator-written XML fragments (sofia profile templates, the acl template) against
//! an allow-list of elements and attributes, so that what we later serve is re-emitted by
//! [`XmlWriter`] from a small tree, never passed through as text.
//!
//! Allowed: the listed elements under their listed parents, the listed attributes, whitespace
//! between elements, and XML comments (dropped). Refused: any other element or attribute,
//! text, CDATA, processing instructions, DOCTYPE, unknown entities, control characters in
//! values. Element and attribute names in the tree are the allow-list's `&'static str`s.

use quick_xml::events::{BytesStart, Event};

use super::writer::XmlWriter;

/// Why a fragment was refused. Operator-facing: it names the offending element or attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct FragmentError {
    pub line: usize,
    pub message: String,
}

/// One allowed element: its name, the element it must sit in (`None` = top level), and its
/// allowed attributes.
pub(crate) struct Rule {
    pub name: &'static str,
    pub parent: Option<&'static str>,
    pub attrs: &'static [&'static str],
}

/// An allowed element with its decoded attribute values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    pub name: &'static str,
    pub attrs: Vec<(&'static str, String)>,
    pub children: Vec<Node>,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Writes this node and its children.
    pub fn emit(&self, w: &mut XmlWriter) {
        let attrs: Vec<(&'static str, &str)> =
            self.attrs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if self.children.is_empty() {
            w.empty(self.name, &attrs);
        } else {
            w.open(self.name, &attrs);
            for child in &self.children {
                child.emit(w);
            }
            w.close();
        }
    }
}

/// Parses `text` into the top-level nodes, checking every element against `rules`.
pub(crate) fn parse(text: &str, rules: &[Rule]) -> Result<Vec<Node>, FragmentError> {
    let mut reader = quick_xml::Reader::from_str(text);
    let line_of = |pos: u64| {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
        text.as_bytes()[..pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    };
    let mut stack: Vec<Node> = Vec::new();
    let mut top: Vec<Node> = Vec::new();
    loop {
        let pos = reader.buffer_position();
        let err = |message: String| FragmentError {
            line: line_of(pos),
            message,
        };
        let event = reader
            .read_event()
            .map_err(|e| err(format!("not well-formed XML: {e}")))?;
        match event {
            Event::Start(e) => {
                let node = node(&e, stack.last().map(|n| n.name), rules).map_err(err)?;
                stack.push(node);
            }
            Event::Empty(e) => {
                let node = node(&e, stack.last().map(|n| n.name), rules).map_err(err)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => top.push(node),
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches the start tag.
                let done = stack
                    .pop()
                    .ok_or_else(|| err("closing tag without an opening tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => top.push(done),
                }
            }
            Event::Text(t) => {
                if !t.as_ref().bytes().all(|b| b.is_ascii_whitespace()) {
                    return Err(err("text is not allowed here, only elements".into()));
                }
            }
            Event::Comment(_) => {}
            Event::CData(_) => return Err(err("CDATA is not allowed".into())),
            Event::Decl(_) | Event::PI(_) => {
                return Err(err("processing instructions (<?…?>) are not allowed".into()));
            }
            Event::DocType(_) => return Err(err("DOCTYPE is not allowed".into())),
            Event::GeneralRef(_) => {
                return Err(err(
                    "entity references are not allowed between elements".into()
                ));
            }
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(FragmentError {
            line: line_of(reader.buffer_position()),
            message: format!("<{}> is never closed", open.name),
        });
    }
    Ok(top)
}

fn node(e: &BytesStart<'_>, parent: Option<&'static str>, rules: &[Rule]) -> Result<Node, String> {
    let raw_name = e.name();
    let name: &str = raw_name.as_ref();
    let rule = rules
        .iter()
        .find(|r| r.name == name && r.parent == parent)
        .ok_or_else(|| match parent {
            Some(p) => format!("element <{name}> is not allowed inside <{p}>"),
            None => format!("element <{name}> is not allowed at the top level"),
        })?;
    let mut attrs = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute in <{name}>: {e}"))?;
        let key: &str = attr.key.as_ref();
        let allowed = rule
            .attrs
            .iter()
            .find(|a| **a == key)
            .ok_or_else(|| format!("attribute {key} is not allowed on <{name}>"))?;
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("attribute {key} of <{name}> does not decode: {e}"))?;
        if value.chars().any(char::is_control) {
            return Err(format!(
                "attribute {key} of <{name}> contains a control character"
            ));
        }
        attrs.push((*allowed, value.into_owned()));
    }
    Ok(Node {
        name: rule.name,
        attrs,
        children: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &[Rule] = &[
        Rule {
            name: "settings",
            parent: None,
            attrs: &[],
        },
        Rule {
            name: "param",
            parent: Some("settings"),
            attrs: &["name", "value"],
        },
    ];

    #[test]
    fn allowed_elements_become_a_tree_and_comments_are_dropped() {
        let nodes = parse(
            "<!-- hi -->\n<settings>\n  <param name=\"a\" value=\"1 &amp; 2\"/>\n</settings>\n",
            RULES,
        )
        .unwrap();
        assert_eq!(
            nodes,
            vec![Node {
                name: "settings",
                attrs: vec![],
                children: vec![Node {
                    name: "param",
                    attrs: vec![("name", "a".into()), ("value", "1 & 2".into())],
                    children: vec![],
                }],
            }]
        );
    }

    #[test]
    fn everything_else_is_refused_with_a_line_number() {
        for (bad, line) in [
            ("<settings>\n<gateway name=\"x\"/>\n</settings>", 2),
            ("<param name=\"a\" value=\"b\"/>", 1),
            (
                "<settings><param name=\"a\" value=\"b\" onload=\"x\"/></settings>",
                1,
            ),
            ("<settings>\n\ntext</settings>", 1),
            ("<settings><![CDATA[x]]></settings>", 1),
            ("<?xml version=\"1.0\"?><settings/>", 1),
            ("<!DOCTYPE x [<!ENTITY e \"x\">]><settings/>", 1),
            (
                "<settings><param name=\"a\" value=\"&bogus;\"/></settings>",
                1,
            ),
            (
                "<settings><param name=\"a\" value=\"&#13;&#10;\"/></settings>",
                1,
            ),
            (
                "<settings><X-PRE-PROCESS cmd=\"exec\" data=\"id\"/></settings>",
                1,
            ),
            ("<settings><include/></settings>", 1),
            ("<settings>", 1),
            ("<settings></param>", 1),
            ("<settings><param name=\"a\" name=\"b\"/></settings>", 1),
        ] {
            let e = parse(bad, RULES).expect_err(bad);
            assert_eq!(e.line, line, "{bad}: {e}");
        }
    }

    #[test]
    fn emitted_nodes_are_escaped_by_the_writer() {
        let nodes = parse(
            "<settings><param name=\"a\" value=\"&#36;&#36;{x} &lt;?\"/></settings>",
            RULES,
        )
        .unwrap();
        let mut w = XmlWriter::new();
        nodes[0].emit(&mut w);
        assert_eq!(
            w.finish().unwrap(),
            "<settings>\n  <param name=\"a\" value=\"&#36;&#36;{x} &lt;?\"/>\n</settings>\n"
        );
    }
}
