//! Syslog RFC 5424 and RFC 3164, through each header that reaches them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_fuzz::{Expect, check_parse};
use logpipe_schema::SourceType;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let expect = Expect {
        single: true,
        types: &[SourceType::Syslog5424, SourceType::Syslog3164],
    };
    for header in ["syslog", "syslog5424", "syslog3164"] {
        check_parse(value, Some(header), &expect);
    }
});
