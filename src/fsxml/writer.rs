//! The only way trunkline produces XML for FreeSWITCH.
//!
//! FreeSWITCH runs every mod_xml_curl response through its config pre-processor *before* the
//! XML parser sees it (FREESWITCH.md §0.2, switch_xml.c `preprocess`), and that pre-processor
//! works on raw text, line by line. XML escaping alone therefore does not make a value safe
//! (§6.3). This writer:
//!
//! - takes element and attribute *names* only as `&'static str` (code, never data);
//! - writes one element per line with 2-space indentation, double-quoted attributes, no prolog
//!   (a line containing `<?` is dropped by the pre-processor), no CDATA, DOCTYPE or comments;
//! - encodes `& < > " '` and also `$` (as `&#36;`, so `$${…}` can never form) and, in a value
//!   that contains `x-pre-process`, every `-` (as `&#45;`), so that substring can never appear;
//! - refuses, never encodes, C0 controls (including TAB, CR, LF), DEL and C1 controls: a numeric
//!   reference such as `&#13;&#10;` decodes to raw bytes that end up in SIP headers (§0.3);
//! - checks the finished text once more for every pre-processor trigger and for balance.
//!
//! It does no I/O and knows nothing about documents; `dialplan`, `sofia` and `acl` build on it.

use std::fmt::Write as _;

use crate::model::mentions_preprocessor;

/// Why a document could not be rendered. Messages never echo the refused value: it may be
/// hostile or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("attribute {attribute} of <{element}> contains a control character")]
    ControlCharacter {
        element: &'static str,
        attribute: &'static str,
    },
    #[error("element <{0}> was left open")]
    Unclosed(&'static str),
    #[error("close() called with no element open")]
    UnbalancedClose,
    #[error("a rendered line contains a FreeSWITCH pre-processor trigger")]
    PreprocessorTrigger,
    #[error("a bridge document needs at least one leg")]
    NoLegs,
    #[error("the failover step names leg {0}, which does not exist")]
    LegOutOfRange(usize),
    #[error("SIP response code {0} cannot be sent with respond (400-699 only)")]
    InvalidResponseCode(u16),
    #[error("{0} is not a FreeSWITCH hangup cause")]
    UnknownCause(&'static str),
}

/// A value refused by [`escape_value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value contains a control character")]
pub struct ControlCharacter;

/// Builds a document line by line. Errors are kept and reported by [`XmlWriter::finish`], so
/// calls chain without `?` at every step; after the first error nothing more is written.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
    stack: Vec<&'static str>,
    error: Option<RenderError>,
}

impl XmlWriter {
    pub fn new() -> Self {
        // A bridge document of a few legs is 1–2 KB: start there rather than grow in steps.
        Self {
            out: String::with_capacity(2048),
            // Documents nest five deep (document/section/context/extension/condition).
            stack: Vec::with_capacity(8),
            ..Self::default()
        }
    }

    /// Writes `<name a="v"…>` on its own line; [`close`](Self::close) ends it.
    pub fn open(&mut self, name: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        if self.start_tag(name, attrs, false) {
            self.stack.push(name);
        }
        self
    }

    /// Writes `<name a="v"…/>` on its own line.
    pub fn empty(&mut self, name: &'static str, attrs: &[(&'static str, &str)]) -> &mut Self {
        self.start_tag(name, attrs, true);
        self
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if self.error.is_some() {
            return self;
        }
        match self.stack.pop() {
            Some(name) => {
                self.indent();
                let _ = writeln!(self.out, "</{name}>");
            }
            None => self.error = Some(RenderError::UnbalancedClose),
        }
        self
    }

    /// The document, once every element is closed and no line carries a pre-processor trigger.
    pub fn finish(self) -> Result<String, RenderError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(name) = self.stack.last() {
            return Err(RenderError::Unclosed(name));
        }
        // No trigger contains a line break, so one scan of the whole text finds exactly what a
        // scan line by line would.
        if line_triggers_preprocessor(&self.out) {
            return Err(RenderError::PreprocessorTrigger);
        }
        Ok(self.out)
    }

    fn indent(&mut self) {
        for _ in 0..self.stack.len() {
            self.out.push_str("  ");
        }
    }

    /// Returns whether the tag was written.
    fn start_tag(
        &mut self,
        name: &'static str,
        attrs: &[(&'static str, &str)],
        empty: bool,
    ) -> bool {
        if self.error.is_some() {
            return false;
        }
        debug_assert!(is_static_name(name), "element name {name:?}");
        let mark = self.out.len();
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (attr, value) in attrs {
            debug_assert!(is_static_name(attr), "attribute name {attr:?}");
            self.out.push(' ');
            self.out.push_str(attr);
            self.out.push_str("=\"");
            if escape_into(value, &mut self.out).is_err() {
                self.out.truncate(mark);
                self.error = Some(RenderError::ControlCharacter {
                    element: name,
                    attribute: attr,
                });
                return false;
            }
            self.out.push('"');
        }
        self.out.push_str(if empty { "/>\n" } else { ">\n" });
        true
    }
}

/// Element and attribute names come from code; this only guards against a typo that would
/// make the output unparsable.
fn is_static_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// Whether a line would be touched by FreeSWITCH's pre-processor (FREESWITCH.md §0.2, §6.4.2):
/// `$${` substitution, `<!--#` commands, `<?` (line dropped) or `x-pre-process` in any case
/// (line dropped or command executed).
pub fn line_triggers_preprocessor(line: &str) -> bool {
    let bytes = line.as_bytes();
    memchr::memmem::find(bytes, b"$${").is_some()
        || memchr::memmem::find(bytes, b"<!--#").is_some()
        || memchr::memmem::find(bytes, b"<?").is_some()
        || mentions_preprocessor(line)
}

/// What one byte of an attribute value asks of [`escape_into`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum ByteClass {
    Plain,
    /// `& < > " ' $`, and `-` in a value containing the pre-processor word.
    Encode,
    Hyphen,
    /// C0 (which includes TAB, CR and LF) and DEL.
    Control,
    /// The first byte of U+0080–U+00BF: C1 controls (U+0080–U+009F) are `C2 80`–`C2 9F`.
    LeadC2,
}

const BYTE_CLASSES: [ByteClass; 256] = {
    let mut classes = [ByteClass::Plain; 256];
    let mut b = 0;
    while b < 0x20 {
        classes[b] = ByteClass::Control;
        b += 1;
    }
    classes[0x7f] = ByteClass::Control;
    classes[0xc2] = ByteClass::LeadC2;
    classes[b'-' as usize] = ByteClass::Hyphen;
    let encoded = b"&<>\"'$";
    let mut i = 0;
    while i < encoded.len() {
        classes[encoded[i] as usize] = ByteClass::Encode;
        i += 1;
    }
    classes
};

/// XML-escapes one attribute value for FreeSWITCH (FREESWITCH.md §6.4.2).
pub fn escape_value(value: &str) -> Result<String, ControlCharacter> {
    let mut out = String::with_capacity(value.len() + 8);
    escape_into(value, &mut out)?;
    Ok(out)
}

/// Control characters are refused outright: C0 (which includes TAB, CR and LF), DEL and C1 —
/// exactly `char::is_control`. Raw TAB/CR/LF would become spaces in FreeSWITCH's parser, but
/// their numeric references decode to raw bytes (FREESWITCH.md §6.3); neither is ever what we
/// mean. On an error, part of the value may already be in `out`: the caller drops it.
fn escape_into(value: &str, out: &mut String) -> Result<(), ControlCharacter> {
    // Writing every hyphen of such a value as `&#45;` breaks each occurrence of the word; the
    // parser turns them back into `-` after the pre-processor has run (§6.3).
    let break_hyphens = mentions_preprocessor(value);
    let bytes = value.as_bytes();
    // One pass that both refuses controls and copies the runs between characters to encode;
    // every such character is ASCII, so each run ends on a char boundary.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let entity = match BYTE_CLASSES[usize::from(b)] {
            ByteClass::Plain => continue,
            ByteClass::Hyphen if !break_hyphens => continue,
            ByteClass::Hyphen => "&#45;",
            ByteClass::Control => return Err(ControlCharacter),
            ByteClass::LeadC2 if bytes.get(i + 1).is_some_and(|n| *n <= 0x9f) => {
                return Err(ControlCharacter);
            }
            ByteClass::LeadC2 => continue,
            ByteClass::Encode => match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&apos;",
                _ => "&#36;",
            },
        };
        out.push_str(&value[run..i]);
        out.push_str(entity);
        run = i + 1;
    }
    out.push_str(&value[run..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quick_xml::events::Event;

    /// Renders `<e a="value"/>` and reads the attribute back with quick-xml.
    fn round_trip(value: &str) -> Result<(String, String), RenderError> {
        let mut w = XmlWriter::new();
        w.empty("e", &[("a", value)]);
        let xml = w.finish()?;
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event().expect("writer output parses") {
                Event::Empty(e) => {
                    let attr = e
                        .attributes()
                        .next()
                        .expect("one attribute")
                        .expect("well-formed attribute");
                    let decoded = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("attribute decodes")
                        .into_owned();
                    return Ok((xml, decoded));
                }
                Event::Eof => panic!("no element in {xml:?}"),
                _ => {}
            }
        }
    }

    #[test]
    fn documents_are_one_element_per_line_with_two_space_indent() {
        let mut w = XmlWriter::new();
        w.open("document", &[("type", "freeswitch/xml")])
            .open("section", &[("name", "result")])
            .empty("result", &[("status", "not found")])
            .close()
            .close();
        assert_eq!(
            w.finish().unwrap(),
            "<document type=\"freeswitch/xml\">\n  <section name=\"result\">\n    <result status=\"not found\"/>\n  </section>\n</document>\n"
        );
    }

    #[test]
    fn markup_and_dollar_are_encoded() {
        assert_eq!(
            escape_value("a&b<c>d\"e'f$g").unwrap(),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f&#36;g"
        );
    }

    #[test]
    fn runtime_and_preprocessor_expansion_syntax_cannot_survive() {
        for hostile in ["${system id}", "$${x}", "$${hostname}", "\\${x}"] {
            let (xml, back) = round_trip(hostile).unwrap();
            assert!(!xml.contains("${"), "{xml}");
            assert!(!xml.lines().any(line_triggers_preprocessor), "{xml}");
            assert_eq!(back, hostile);
        }
    }

    #[test]
    fn numeric_references_in_data_are_encoded_not_passed_through() {
        let (xml, back) = round_trip("&#13;&#10;").unwrap();
        assert!(xml.contains("&amp;#13;&amp;#10;"), "{xml}");
        assert_eq!(back, "&#13;&#10;");
    }

    #[test]
    fn the_preprocess_word_is_broken_up_in_any_case() {
        for hostile in [
            "X-PRE-PROCESS",
            "<X-PRE-PROCESS cmd=\"exec\" data=\"id\"/>",
            "a x-pre-process b",
            "X-Pre-Process-Foo",
        ] {
            let (xml, back) = round_trip(hostile).unwrap();
            assert!(!mentions_preprocessor(&xml), "{xml}");
            assert!(xml.contains("&#45;"), "{xml}");
            assert_eq!(back, hostile);
        }
        assert_eq!(escape_value("X-Account").unwrap(), "X-Account");
    }

    #[test]
    fn processing_instructions_and_includes_in_data_are_plain_text() {
        for hostile in [
            "<?xml version=\"1.0\"?>",
            "<include>",
            "</include>",
            "<!--#exec",
        ] {
            let (xml, back) = round_trip(hostile).unwrap();
            assert!(!xml.contains('<') || xml.starts_with("<e "), "{xml}");
            assert!(!xml.lines().any(line_triggers_preprocessor), "{xml}");
            assert_eq!(back, hostile);
        }
    }

    #[test]
    fn control_characters_are_refused_never_encoded() {
        for hostile in [
            "a\rb", "a\nb", "a\tb", "\0", "a\x1bb", "a\x7fb", "a\u{85}b", "a\u{9f}b",
        ] {
            let mut w = XmlWriter::new();
            w.open("e", &[]).empty("p", &[("value", hostile)]).close();
            assert_eq!(
                w.finish(),
                Err(RenderError::ControlCharacter {
                    element: "p",
                    attribute: "value"
                }),
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn unbalanced_documents_are_refused() {
        let mut w = XmlWriter::new();
        w.open("a", &[]);
        assert_eq!(w.finish(), Err(RenderError::Unclosed("a")));
        let mut w = XmlWriter::new();
        w.close();
        assert_eq!(w.finish(), Err(RenderError::UnbalancedClose));
    }

    #[test]
    fn nothing_is_written_after_the_first_error() {
        let mut w = XmlWriter::new();
        w.open("a", &[])
            .empty("b", &[("v", "\n")])
            .close()
            .empty("c", &[]);
        assert!(w.out.is_empty() || !w.out.contains("<c"));
        assert!(w.finish().is_err());
    }

    #[test]
    fn trigger_detection_covers_every_form() {
        assert!(line_triggers_preprocessor("<?xml version=\"1.0\"?>"));
        assert!(line_triggers_preprocessor("a $${x} b"));
        assert!(line_triggers_preprocessor("<!--#include x-->"));
        assert!(line_triggers_preprocessor("x-PRE-process"));
        assert!(!line_triggers_preprocessor(
            "<param name=\"a\" value=\"&#36;&#36;{x}\"/>"
        ));
    }

    proptest! {
        /// The same check the `xml_writer` fuzz target runs.
        #[test]
        fn any_string_either_errors_or_round_trips_without_triggers(s in any::<String>()) {
            crate::fuzzing::xml_writer(&s);
        }

        #[test]
        fn hostile_alphabet_strings_round_trip_without_triggers(
            s in "([-$<>&\"'?!#{}xXpPrReEoOcCsS ]|X-PRE-PROCESS|x-pre-process|\\$\\$\\{|<\\?|<!--#|&#[0-9]{1,3};){0,12}"
        ) {
            let (xml, back) = round_trip(&s).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert!(!xml.lines().any(line_triggers_preprocessor), "{}", xml);
        }

        /// The byte-wise scan refuses exactly what `char::is_control` calls a control.
        #[test]
        fn the_control_check_is_exactly_char_is_control(
            s in "(\\PC|\\p{Cc}|[\u{80}-\u{a0}]|\u{c2}|\u{100}){0,16}"
        ) {
            prop_assert_eq!(escape_value(&s).is_err(), s.chars().any(char::is_control));
        }
    }
}
