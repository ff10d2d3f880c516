#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tincan_identity::fuzzing::keyfile_parse(data));
