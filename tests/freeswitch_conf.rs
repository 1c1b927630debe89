//! The drop-in FreeSWITCH files in `freeswitch-conf/` are well-formed XML and carry the settings
//! their README promises: section-limited xml_curl bindings with credentials and timeouts, a
//! loopback Event Socket with a non-default password, mod_xml_curl before mod_sofia, and static
//! fallbacks that refuse calls, start no profile and admit no carrier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quick_xml::Reader;
use quick_xml::events::Event;

/// One element: its name and attributes, in document order.
#[derive(Debug, Clone)]
struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
}

fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("freeswitch-conf")
}

/// Parses a file completely (a syntax error fails the test) and lists its elements.
fn elements(relative: &str) -> Vec<Element> {
    let path = conf_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = Reader::from_str(&text);
    reader.config_mut().check_end_names = true;
    let mut out = Vec::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.expect("well-formed attribute");
                        (
                            AsRef::<str>::as_ref(&a.key).to_string(),
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .expect("escaped value")
                                .into_owned(),
                        )
                    })
                    .collect();
                out.push(Element {
                    name: AsRef::<str>::as_ref(&e.name()).to_string(),
                    attrs,
                });
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("{relative} does not parse: {e}"),
        }
    }
    assert!(!out.is_empty(), "{relative} has no elements");
    out
}

fn params(elements: &[Element]) -> BTreeMap<String, String> {
    elements
        .iter()
        .filter(|e| e.name == "param")
        .map(|e| (e.attrs["name"].clone(), e.attrs["value"].clone()))
        .collect()
}

#[test]
fn every_file_in_freeswitch_conf_is_well_formed_xml() {
    let mut seen = 0;
    let mut dirs = vec![conf_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "xml") {
                let relative = path
                    .strip_prefix(conf_dir())
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_string();
                elements(&relative);
                seen += 1;
            }
        }
    }
    assert!(
        seen >= 8,
        "expected the whole drop-in set, found {seen} files"
    );
}

#[test]
fn xml_curl_bindings_are_limited_to_their_section_and_have_credentials_and_timeouts() {
    let all = elements("autoload_configs/xml_curl.conf.xml");
    let bindings: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, e)| e.name == "binding")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(bindings.len(), 2);
    let mut sections = Vec::new();
    for (n, start) in bindings.iter().enumerate() {
        let end = bindings.get(n + 1).copied().unwrap_or(all.len());
        let own = &all[*start..end];
        let url = own
            .iter()
            .find(|e| e.attrs.get("name").map(String::as_str) == Some("gateway-url"))
            .expect("gateway-url");
        assert!(url.attrs["value"].ends_with("/freeswitch/xml"));
        sections.push(url.attrs["bindings"].clone());
        let p = params(own);
        let timeout: u32 = p["timeout"].parse().unwrap();
        assert!((1..=10).contains(&timeout), "timeout {timeout}");
        assert!(p["gateway-credentials"].contains(':'));
        assert_eq!(p["auth-scheme"], "basic");
    }
    sections.sort();
    assert_eq!(sections, ["configuration", "dialplan"]);
}

#[test]
fn the_bindings_post_exactly_the_fields_trunkline_reads() {
    let posted: std::collections::BTreeSet<String> = elements("autoload_configs/xml_curl.conf.xml")
        .into_iter()
        .filter(|e| e.name == "param" && e.attrs["name"] == "enable-post-var")
        .map(|e| e.attrs["value"].clone())
        // mod_xml_curl sends these whatever the list says (mod_xml_curl.c xml_url_fetch).
        .chain(["section".to_string(), "key_value".to_string()])
        .collect();
    let read: std::collections::BTreeSet<String> = trunkline::fsxml::request::field_names()
        .map(String::from)
        .collect();
    assert_eq!(posted, read);
}

#[test]
fn event_socket_listens_on_loopback_with_a_non_default_password() {
    let p = params(&elements("autoload_configs/event_socket.conf.xml"));
    assert_eq!(p["listen-ip"], "127.0.0.1");
    assert_ne!(p["password"], "ClueCon");
    assert_eq!(p["apply-inbound-acl"], "loopback.auto");
}

#[test]
fn mod_xml_curl_loads_before_mod_sofia() {
    let modules: Vec<String> = elements("autoload_configs/modules.conf.xml")
        .into_iter()
        .filter(|e| e.name == "load")
        .map(|e| e.attrs["module"].clone())
        .collect();
    let at = |m: &str| {
        modules
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m}"))
    };
    assert!(at("mod_xml_curl") < at("mod_sofia"));
    assert!(at("mod_event_socket") < at("mod_sofia"));
}

#[test]
fn static_fallbacks_refuse_calls_start_no_profile_and_admit_no_carrier() {
    let dialplan = elements("dialplan/trunkline.xml");
    let context = dialplan.iter().find(|e| e.name == "context").unwrap();
    assert_eq!(context.attrs["name"], "trunkline");
    let actions: Vec<(&str, &str)> = dialplan
        .iter()
        .filter(|e| e.name == "action")
        .map(|e| (e.attrs["application"].as_str(), e.attrs["data"].as_str()))
        .collect();
    assert_eq!(
        actions.last(),
        Some(&("hangup", "NORMAL_TEMPORARY_FAILURE"))
    );
    assert!(
        !actions
            .iter()
            .any(|(app, _)| *app == "bridge" || *app == "transfer")
    );

    let sofia = elements("autoload_configs/sofia.conf.xml");
    assert!(!sofia.iter().any(|e| e.name == "profile"));

    let acl = elements("autoload_configs/acl.conf.xml");
    let list = acl.iter().find(|e| e.name == "list").unwrap();
    assert_eq!(list.attrs["name"], "trunkline_carriers");
    assert_eq!(list.attrs["default"], "deny");
    assert!(!acl.iter().any(|e| e.name == "node"));
}

/// The `data` of every `<X-PRE-PROCESS cmd="set">` line of a vars drop-in.
fn set_lines(file: &str) -> Vec<String> {
    elements(file)
        .into_iter()
        .filter(|e| e.name == "X-PRE-PROCESS" && e.attrs["cmd"] == "set")
        .map(|e| e.attrs["data"].clone())
        .collect()
}

#[test]
fn media_timeouts_are_the_variables_freeswitch_1_10_reads_in_milliseconds() {
    assert_eq!(
        set_lines("media.vars.xml"),
        ["media_timeout=300000", "media_hold_timeout=1800000"]
    );
    // The deprecated profile params are gone from every template trunkline ships.
    for (path, text) in trunkline::publish::BUILT_IN_TEMPLATES {
        assert!(
            !text.contains("name=\"rtp-timeout-sec\"")
                && !text.contains("name=\"rtp-hold-timeout-sec\""),
            "{path}"
        );
    }
}

#[test]
fn hardening_switches_are_the_ones_freeswitch_reads() {
    let vars = set_lines("hardening.vars.xml");
    assert_eq!(
        vars,
        [
            "disable_system_api_commands=true",
            "disable_system_app_commands=true"
        ]
    );
    assert_eq!(
        params(&elements("hardening.switch.xml"))["api-expansion"],
        "false"
    );
}
