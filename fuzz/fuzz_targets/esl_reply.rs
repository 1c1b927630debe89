//! Any Event Socket api output → command checks, status parsers, reconcile plan and verification: no panic.
//! The invariant lives in `trunkline::fuzzing::esl_reply`, shared with the property tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trunkline::fuzzing::esl_reply(data));
