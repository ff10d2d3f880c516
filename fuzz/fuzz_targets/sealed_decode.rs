#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tincan_seal::fuzzing::sealed_decode(data));
