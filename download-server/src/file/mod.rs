//! Sending a stored file: the byte range a request asks for ([`range`]), the name it is saved
//! under ([`disposition`]); opening and streaming are the file store's ([`file_store`]: the
//! local directory with its no-wait fast path, or S3). Pure functions here ([`parse_range`],
//! [`content_disposition`]) are fuzzed.

mod disposition;
mod range;

pub use file_store::{FileStream, FileVersion, StoredFile};

pub use self::disposition::{content_disposition, content_disposition_value};
pub use self::range::{ByteRange, RangeRequest, parse_range};
