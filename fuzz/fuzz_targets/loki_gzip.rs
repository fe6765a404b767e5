#![no_main]
// What this target feeds and checks: fuzz/src (the function it calls) and docs/fuzzing.md.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logpost_fuzz::loki::gzip_body(data));
