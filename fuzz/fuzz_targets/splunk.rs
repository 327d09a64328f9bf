//! Splunk HEC JSON and raw key=value, through each header that reaches them.
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
        types: &[SourceType::SplunkHec, SourceType::SplunkKv],
    };
    for header in ["splunk", "splunk-hec", "splunk-kv"] {
        check_parse(value, Some(header), &expect);
    }
});
