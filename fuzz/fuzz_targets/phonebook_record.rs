#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tincan_phonebook::fuzzing::record_json(data));
