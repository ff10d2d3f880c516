#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tincan_phonebook_client::fuzzing::record_json(data));
