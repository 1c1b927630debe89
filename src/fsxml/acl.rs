//! acl.conf served over mod_xml_curl (FREESWITCH.md §7): the `trunkline_carriers` list of
//! every active carrier's inbound IPs, plus the operator's own lists from
//! `templates/acl.conf.xml`.
//!
//! Every list is written with an explicit `default`: FreeSWITCH treats a list without one as
//! ALLOW (switch_core.c `switch_load_network_lists`). The template is parsed against an
//! allow-list and re-emitted by the [`XmlWriter`]; its values are checked so that a typo
//! fails at load time instead of silently changing what FreeSWITCH lets in.
//!
//! Pure: no I/O. The caller reads the template file and passes its text.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::model::Cidr;

use super::fragment::{self, FragmentError, Node, Rule};
use super::writer::{RenderError, XmlWriter};

/// The list trunkline owns; the sofia profile template points `apply-inbound-acl` at it.
pub const CARRIER_LIST: &str = "trunkline_carriers";

const ACL_RULES: &[Rule] = &[
    Rule {
        name: "list",
        parent: None,
        attrs: &["name", "default"],
    },
    Rule {
        name: "node",
        parent: Some("list"),
        attrs: &["type", "cidr", "host", "mask", "domain"],
    },
];

/// Why the acl template was refused. Operator-facing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclTemplateError {
    #[error("acl template: {0}")]
    Structure(#[from] FragmentError),
    #[error("acl template: {0}")]
    Refused(String),
}

/// The operator's network lists, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclTemplate {
    lists: Vec<Node>,
}

impl AclTemplate {
    /// No operator lists.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Parses the template: top-level `<list name default>` elements holding
    /// `<node type cidr host mask domain>`.
    pub fn load(text: &str) -> Result<Self, AclTemplateError> {
        let refused = |m: String| AclTemplateError::Refused(m);
        if text.contains("$${") {
            return Err(refused(
                "FreeSWITCH pre-processor variables ($${...}) are not available here".into(),
            ));
        }
        let mut names = BTreeSet::new();
        let mut lists = Vec::new();
        for mut list in fragment::parse(text, ACL_RULES)? {
            let name = list
                .attr("name")
                .ok_or_else(|| refused("<list> needs a name".into()))?
                .to_string();
            check_list_name(&name).map_err(refused)?;
            if !names.insert(name.to_ascii_lowercase()) {
                return Err(refused(format!("list {name} appears more than once")));
            }
            match list.attr("default") {
                None => list.attrs.push(("default", "deny".into())),
                Some(d) => check_allow_deny(d, "default").map_err(refused)?,
            }
            for node in &mut list.children {
                check_node(node).map_err(|m| refused(format!("list {name}: {m}")))?;
            }
            lists.push(list);
        }
        Ok(Self { lists })
    }

    /// The operator list names, in file order.
    pub fn list_names(&self) -> impl Iterator<Item = &str> {
        self.lists.iter().filter_map(|l| l.attr("name"))
    }
}

/// A name usable in `apply-inbound-acl`: not ours, not a built-in `*.auto` list, and without
/// `/` (FreeSWITCH reads a name with `/` as a literal CIDR) or `:` (the pass/fail-context
/// separator in `list[:pass_context[:fail_context]]`).
fn check_list_name(name: &str) -> Result<(), String> {
    if name.eq_ignore_ascii_case(CARRIER_LIST) {
        return Err(format!(
            "the list {CARRIER_LIST} is written by trunkline and cannot be defined here"
        ));
    }
    let ok = (1..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.to_ascii_lowercase().ends_with(".auto");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "list name {name:?} must match ^[A-Za-z0-9_.-]{{1,63}}$ and not end in .auto"
        ))
    }
}

/// FreeSWITCH reads anything `switch_true` does not accept as *deny*; we accept only the two
/// words so that a typo cannot flip a list.
fn check_allow_deny(value: &str, what: &str) -> Result<(), String> {
    if value == "allow" || value == "deny" {
        Ok(())
    } else {
        Err(format!("{what} must be \"allow\" or \"deny\""))
    }
}

/// Checks a node and rewrites its `cidr` in normalised form.
fn check_node(node: &mut Node) -> Result<(), String> {
    check_allow_deny(node.attr("type").ok_or("<node> needs a type")?, "type")?;
    let (cidr, host, mask, domain) = (
        node.attr("cidr").map(str::to_string),
        node.attr("host"),
        node.attr("mask"),
        node.attr("domain"),
    );
    let ip = |s: &str, what: &str| {
        s.parse::<IpAddr>()
            .map(|_| ())
            .map_err(|_| format!("{what} must be an IP address"))
    };
    match (&cidr, host, mask, domain) {
        (Some(list), None, None, None) => {
            let normalised = list
                .split(',')
                .map(|c| Cidr::parse(c.trim()).map(|c| c.to_string()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("cidr: {e}"))?;
            for (name, value) in &mut node.attrs {
                if *name == "cidr" {
                    *value = normalised.join(",");
                }
            }
            Ok(())
        }
        (None, Some(h), Some(m), None) => {
            ip(h, "host")?;
            ip(m, "mask")
        }
        (None, None, None, Some(d)) if !d.is_empty() => Ok(()),
        _ => Err("a <node> needs exactly one of cidr, host with mask, or domain".into()),
    }
}

/// acl.conf: `trunkline_carriers` (default deny, one allow node per CIDR, sorted and
/// de-duplicated) followed by the operator's lists.
pub fn acl_document(carrier_cidrs: &[Cidr], extra: &AclTemplate) -> Result<String, RenderError> {
    let cidrs: BTreeSet<Cidr> = carrier_cidrs.iter().copied().collect();
    let mut w = XmlWriter::new();
    w.open("document", &[("type", "freeswitch/xml")])
        .open("section", &[("name", "configuration")])
        .open("configuration", &[("name", "acl.conf")])
        .open("network-lists", &[]);
    let list_attrs = [("name", CARRIER_LIST), ("default", "deny")];
    if cidrs.is_empty() {
        w.empty("list", &list_attrs);
    } else {
        w.open("list", &list_attrs);
        for cidr in cidrs {
            w.empty("node", &[("type", "allow"), ("cidr", &cidr.to_string())]);
        }
        w.close();
    }
    for list in &extra.lists {
        list.emit(&mut w);
    }
    w.close().close().close().close();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsxml::testdata::assert_document_is_safe;

    const SHIPPED: &str = include_str!("../../templates/acl.conf.xml");

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    #[test]
    fn acl_conf_snapshot() {
        let extra = AclTemplate::load(SHIPPED).unwrap();
        let xml = acl_document(
            &cidrs(&[
                "203.0.113.10",
                "198.51.100.0/24",
                "2001:db8::/32",
                "203.0.113.10/32",
            ]),
            &extra,
        )
        .unwrap();
        assert_document_is_safe(&xml);
        assert_eq!(xml.matches("cidr=\"203.0.113.10/32\"").count(), 1);
        insta::assert_snapshot!(xml);
    }

    #[test]
    fn without_carriers_the_list_still_denies_by_default() {
        let xml = acl_document(&[], &AclTemplate::empty()).unwrap();
        assert_document_is_safe(&xml);
        assert!(xml.contains("<list name=\"trunkline_carriers\" default=\"deny\"/>"));
    }

    #[test]
    fn a_template_list_without_default_gets_deny() {
        let t = AclTemplate::load(
            "<list name=\"office\"><node type=\"allow\" cidr=\"192.0.2.7/24,10.1.0.0/16\"/></list>",
        )
        .unwrap();
        let xml = acl_document(&[], &t).unwrap();
        assert!(
            xml.contains("<list name=\"office\" default=\"deny\">"),
            "{xml}"
        );
        assert!(xml.contains("cidr=\"192.0.2.0/24,10.1.0.0/16\""), "{xml}");
        assert_eq!(t.list_names().collect::<Vec<_>>(), ["office"]);
    }

    #[test]
    fn host_mask_and_domain_nodes_are_kept() {
        let t = AclTemplate::load(
            "<list name=\"x\" default=\"allow\">\n<node type=\"deny\" host=\"192.0.2.0\" mask=\"255.255.255.0\"/>\n<node type=\"allow\" domain=\"example.com\"/>\n</list>",
        )
        .unwrap();
        let xml = acl_document(&[], &t).unwrap();
        assert_document_is_safe(&xml);
        assert!(xml.contains("<node type=\"deny\" host=\"192.0.2.0\" mask=\"255.255.255.0\"/>"));
        assert!(xml.contains("<node type=\"allow\" domain=\"example.com\"/>"));
    }

    #[test]
    fn hostile_or_mistaken_templates_are_refused() {
        for bad in [
            "<list name=\"trunkline_carriers\" default=\"allow\"/>",
            "<list name=\"TRUNKLINE_CARRIERS\"/>",
            "<list name=\"wan.auto\"/>",
            "<list name=\"10.0.0.0/8\"/>",
            "<list name=\"a:b\"/>",
            "<list/>",
            "<list name=\"a\"/><list name=\"a\"/>",
            "<list name=\"a\" default=\"yes\"/>",
            "<list name=\"a\"><node type=\"permit\" cidr=\"10.0.0.0/8\"/></list>",
            "<list name=\"a\"><node cidr=\"10.0.0.0/8\"/></list>",
            "<list name=\"a\"><node type=\"allow\" cidr=\"10.0.0.0/33\"/></list>",
            "<list name=\"a\"><node type=\"allow\"/></list>",
            "<list name=\"a\"><node type=\"allow\" cidr=\"10.0.0.0/8\" domain=\"x\"/></list>",
            "<list name=\"a\"><node type=\"allow\" host=\"h\" mask=\"255.0.0.0\"/></list>",
            "<list name=\"a\"><node type=\"allow\" port=\"5060\" cidr=\"10.0.0.0/8\"/></list>",
            "<list name=\"a\"><node type=\"allow\" domain=\"$${domain}\"/></list>",
            "<list name=\"a\"><X-PRE-PROCESS cmd=\"exec\" data=\"id\"/></list>",
            "<network-lists><list name=\"a\"/></network-lists>",
            "<?xml version=\"1.0\"?><list name=\"a\"/>",
            "<list name=\"a\">text</list>",
        ] {
            assert!(AclTemplate::load(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn template_values_are_re_escaped() {
        let t = AclTemplate::load(
            "<list name=\"a\"><node type=\"allow\" domain=\"&#36;&#36;{x}&lt;?x-pre-process\"/></list>",
        )
        .unwrap();
        let xml = acl_document(&[], &t).unwrap();
        assert_document_is_safe(&xml);
        assert!(
            xml.contains("&#36;&#36;{x}&lt;?x&#45;pre&#45;process"),
            "{xml}"
        );
    }
}
