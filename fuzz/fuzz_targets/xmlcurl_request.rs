//! Any mod_xml_curl form body → the answer from a small fixed snapshot: a safe document, no panic.
//! The invariant lives in `trunkline::fuzzing::xmlcurl_request`, shared with the property tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trunkline::fuzzing::xmlcurl_request(data));
