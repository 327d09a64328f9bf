//! SAP system log / security audit lines (`log-format: sap`).
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
        types: &[SourceType::SapSyslog],
    };
    check_parse(value, Some("sap"), &expect);
});
