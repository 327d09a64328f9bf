//! Batch envelopes (`log-format: batch`): every element is sniffed on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_fuzz::{Expect, check_parse};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let expect = Expect {
        single: false,
        types: &[],
    };
    check_parse(value, Some("batch"), &expect);
});
