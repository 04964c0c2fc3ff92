#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| virq_fuzz::text::run_judge(data));
