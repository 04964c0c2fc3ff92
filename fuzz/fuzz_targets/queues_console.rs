#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| virq_fuzz::rings::run_console(data));
