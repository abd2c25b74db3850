//! Any bytes as a capture file: the reader returns packets or an error with an
//! offset, never panics, and never loops.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_capture::CaptureFile;

fuzz_target!(|data: &[u8]| {
    let Ok(mut cap) = CaptureFile::from_reader("fuzz", Box::new(std::io::Cursor::new(data.to_vec()))) else {
        return;
    };
    let mut n = 0usize;
    while let Ok(Some(p)) = cap.next_packet() {
        assert!(p.data.len() <= tunnelwatch_capture::MAX_RECORD);
        n += 1;
        assert!(n <= data.len(), "more packets than input bytes: the reader is looping");
    }
});
