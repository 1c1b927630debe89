//! FreeSWITCH XML: parsing the form mod_xml_curl posts ([`request`]) and rendering the
//! documents we answer with ([`dialplan`], [`sofia`], [`acl`]), all through one writer
//! ([`writer`]) that knows FreeSWITCH's pre-processor (FREESWITCH.md §0.2, §6.3).
//!
//! Pure: no I/O. Operator templates arrive as strings (the caller reads the files); documents
//! leave as strings. Nothing here takes an element or attribute *name* from data, and nothing
//! echoes a posted value into a document: documents embed validated newtypes only.

pub mod acl;
pub mod dialplan;
mod fragment;
pub mod request;
pub mod sofia;
pub mod writer;

pub use fragment::FragmentError;
pub use writer::{RenderError, XmlWriter};

/// The exact "not found" document (FREESWITCH.md §1.4). FreeSWITCH then tries the next binding
/// and finally its static XML on disk, so it is only for sections and contexts trunkline does
/// not own, never for refusing a call.
pub const NOT_FOUND: &str = "<document type=\"freeswitch/xml\">\n  <section name=\"result\">\n    <result status=\"not found\"/>\n  </section>\n</document>\n";

/// Shared fixtures and checks for tests, integration tests and benchmarks. Not API.
#[doc(hidden)]
pub mod testdata {
    use quick_xml::events::Event;

    use super::writer::line_triggers_preprocessor;
    use crate::dialstring::parse_bridge_data;

    /// A realistic dialplan POST body as FreeSWITCH 1.10 sends it (FREESWITCH.md §1.2): 162
    /// fields; the first five raw, the rest `name=urlencode(value)` with names not encoded.
    /// A first attempt for `+15551234567` in context `trunkline`, tenant
    /// `7d6f1c2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f`, attestation `A`, no forced carrier.
    pub const SAMPLE_DIALPLAN_FETCH: &str = include_str!("testdata/dialplan_fetch.form");

    /// Asserts what every document we serve must satisfy: it parses as XML, no line carries
    /// a pre-processor trigger, no attribute decodes to a control character, no dialplan
    /// `data`/`expression`/`field` decodes to a `${`, and
    /// every `bridge` action's data is exactly the dial-string grammar we generate. Returns
    /// the `(application, data)` of every action, in order.
    pub fn assert_document_is_safe(xml: &str) -> Vec<(String, String)> {
        for line in xml.lines() {
            assert!(
                !line_triggers_preprocessor(line),
                "pre-processor trigger in line {line:?}"
            );
        }
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut actions = Vec::new();
        let mut depth = 0usize;
        let mut roots = 0usize;
        loop {
            let event = reader
                .read_event()
                .unwrap_or_else(|e| panic!("document does not parse: {e}\n{xml}"));
            let (element, opened) = match &event {
                Event::Start(e) => (e, true),
                Event::Empty(e) => (e, false),
                Event::End(_) => {
                    depth -= 1;
                    continue;
                }
                Event::Text(t) => {
                    assert!(
                        t.as_ref().bytes().all(|b| b.is_ascii_whitespace()),
                        "unexpected text node in\n{xml}"
                    );
                    continue;
                }
                Event::Eof => break,
                other => panic!("unexpected {other:?} in\n{xml}"),
            };
            if depth == 0 {
                roots += 1;
            }
            if opened {
                depth += 1;
            }
            let mut application = None;
            let mut data = None;
            for attr in element.attributes() {
                let attr = attr.expect("well-formed attribute");
                let value = attr
                    .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .expect("attribute decodes")
                    .into_owned();
                assert!(
                    !value.chars().any(char::is_control),
                    "control character in an attribute of\n{xml}"
                );
                let key: &str = attr.key.as_ref();
                // Dialplan `data`, `expression` and `field` are expanded at runtime (§6.1).
                if matches!(key, "data" | "expression" | "field") {
                    assert!(!value.contains("${"), "${{ in {key} of\n{xml}");
                }
                match key {
                    "application" => application = Some(value),
                    "data" => data = Some(value),
                    _ => {}
                }
            }
            if element.name().as_ref() == "action" {
                let application = application.expect("action has an application");
                let data = data.unwrap_or_default();
                if application == "bridge" {
                    assert!(
                        parse_bridge_data(&data).is_some(),
                        "bridge data outside the grammar: {data:?}"
                    );
                }
                actions.push((application, data));
            }
        }
        assert_eq!(depth, 0, "unbalanced document");
        assert_eq!(roots, 1, "exactly one root element");
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_the_document_freeswitch_recognises() {
        let mut w = XmlWriter::new();
        w.open("document", &[("type", "freeswitch/xml")])
            .open("section", &[("name", "result")])
            .empty("result", &[("status", "not found")])
            .close()
            .close();
        assert_eq!(w.finish().unwrap(), NOT_FOUND);
        testdata::assert_document_is_safe(NOT_FOUND);
    }

    #[test]
    fn not_found_snapshot() {
        insta::assert_snapshot!(NOT_FOUND);
    }
}
