#![no_main]
// What this target feeds and checks: fuzz/src (the function it calls) and docs/fuzzing.md.
use libfuzzer_sys::fuzz_target;
use logpost_shared::compression::Codec;

fuzz_target!(|data: &[u8]| logpost_fuzz::batch::codec_section(Codec::Gzip, data));
