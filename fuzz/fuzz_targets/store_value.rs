#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tincan_store::fuzzing::sealed_value(data));
