//! The `Range` header: which bytes of a file a request asks for.

pub use file_store::ByteRange;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No range, or one we ignore (several ranges, bad syntax): send the whole file, 200.
    Full,
    /// One satisfiable range: 206.
    Partial(ByteRange),
    /// A well-formed single range outside the file: 416.
    Unsatisfiable,
}

/// Parses a `Range` header value against a file of `size` bytes. Only single `bytes=` ranges
/// are honoured; anything else is ignored, which RFC 9110 section 14.2 allows.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end) = match (number(first), number(last)) {
        // bytes=-N: the last N bytes.
        (None, Some(n)) if first.is_empty() => {
            if n == 0 || size == 0 {
                return RangeRequest::Unsatisfiable;
            }
            (size.saturating_sub(n), size)
        }
        // bytes=A-
        (Some(start), None) if last.is_empty() => (start, u64::MAX),
        // bytes=A-B; B < A is invalid syntax, ignored.
        (Some(start), Some(last)) if last >= start => (start, last.saturating_add(1)),
        _ => return RangeRequest::Full,
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial(ByteRange {
        start,
        end: end.min(size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(first: u64, last: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange {
            start: first,
            end: last + 1,
        })
    }

    #[test]
    fn single_ranges_are_honoured() {
        assert_eq!(parse_range(Some("bytes=0-9"), 100), partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), partial(0, 99));
        assert_eq!(parse_range(Some("bytes=50-5000"), 100), partial(50, 99));
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=-0"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=0-"), 0),
            RangeRequest::Unsatisfiable
        );
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=-",
            "bytes=1",
            "bytes=+1-2",
        ] {
            assert_eq!(
                parse_range(Some(ignored), 100),
                RangeRequest::Full,
                "{ignored}"
            );
        }
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        assert_eq!(
            parse_range(Some("bytes=99999999999999999999999-"), 100),
            RangeRequest::Full
        );
    }
}
