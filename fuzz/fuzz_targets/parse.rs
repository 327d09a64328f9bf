//! The entry point without a header: cleaning, format sniffing and every
//! parser the sniffer falls through to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logpipe_fuzz::{Expect, check_parse};
use logpipe_schema::Format;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    // A sniffed `{"data":[...]}` is a batch, so neither one record nor a
    // fixed source type can be expected.
    let expect = Expect {
        single: false,
        types: &[],
    };
    check_parse(value, None, &expect);
    // The same bytes as a `log-format` header value.
    if let Some(f) = Format::from_header(value) {
        assert_eq!(Format::from_header(f.as_str()), Some(f));
    }
});
