//! Any bytes as a frame of any link type (chosen by the first byte): the decoder never
//! panics, every layer it reports lies inside the frame, and the shard peek
//! (`Decoder::peek_pair`) names the addresses of the decoder's only layer or defers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tunnelwatch_decode::{Decoded, Decoder, LinkType};


fuzz_target!(|data: &[u8]| {
    let Some((&sel, frame)) = data.split_first() else { return };
    let link = LinkType::SUPPORTED[usize::from(sel) % LinkType::SUPPORTED.len()];
    let mut d = Decoded::default();
    let decoder = Decoder::default();
    decoder.decode(link, frame, &mut d);
    if let Some(pair) = decoder.peek_pair(link, frame) {
        assert!(d.layers.len() <= 1, "peeked, and {} layers", d.layers.len());
        if let Some(outer) = d.layers.first() {
            assert_eq!(pair, (outer.src, outer.dst));
        }
    }
    for l in &d.layers {
        assert!(l.frame_offset <= frame.len());
        assert!(l.payload.len() <= l.l4.len());
        let _ = tunnelwatch_decode::checksum::transport_ok(l);
    }
});
