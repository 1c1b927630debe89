//! Legs built from whatever the newtype parsers accept → bridge data → parsed back to the same pieces.
//! The invariant lives in `trunkline::fuzzing::dialstring`, shared with the property tests.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trunkline::fuzzing::dialstring(data));
