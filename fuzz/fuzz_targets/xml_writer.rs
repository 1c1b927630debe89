//! Any attribute text → the XML writer either refuses it (control character) or writes a
//! document that parses, has no pre-processor trigger and gives the text back.
//! The invariant lives in `trunkline::fuzzing::xml_writer`, shared with the property tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|value: &str| trunkline::fuzzing::xml_writer(value));
