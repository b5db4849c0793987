//! Any `Range` header against any size: a partial range is non-empty and inside the file.
#![no_main]

use download_server::file::{RangeRequest, parse_range};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, &str)| {
    let (size, header) = input;
    if let RangeRequest::Partial(r) = parse_range(Some(header), size) {
        assert!(r.start < r.end && r.end <= size, "{header:?} {size}: {r:?}");
        let _ = r.content_range(size);
    }
});
