//! Any bytes as a frame of any link type (chosen by the first byte): the decoder never
//! panics, and every layer it reports lies inside the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};


fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = LinkType::SUPPORTED[usize::from(sel) % LinkType::SUPPORTED.len()];
    let mut d = Decoded::default();
    Decoder::default().decode(link, frame, &mut d);
    for l in &d.layers {
        assert!(l.frame_offset <= frame.len());
        assert!(l.payload.len() <= l.l4.len());
        let _ = tunnelwatch_decode::checksum::transport_ok(l);
    }
});
