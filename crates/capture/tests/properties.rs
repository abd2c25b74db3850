//! Property tests of the capture reader: a file cut at any length yields exactly the
//! records before the cut and then an error naming the offset of the cut record (or a
//! clean end at a record boundary); arbitrary bytes never panic or loop.

use proptest::prelude::*;
use tunnelwatch_capture::{CaptureError, CaptureFile};

fn pcap(records: &[Vec<u8>], nanos: bool) -> (Vec<u8>, Vec<usize>) {
    let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
    let mut out = Vec::new();
    out.extend_from_slice(&magic.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut starts = Vec::new();
    for (i, r) in records.iter().enumerate() {
        starts.push(out.len());
        out.extend_from_slice(&(1_000 + i as u32).to_le_bytes());
        out.extend_from_slice(&(i as u32 * 10).to_le_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&(r.len() as u32 + 4).to_le_bytes());
        out.extend_from_slice(r);
    }
    (out, starts)
}

fn pcapng(records: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    // Section header block (28 bytes), little-endian.
    out.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
    out.extend_from_slice(&28u32.to_le_bytes());
    out.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&u64::MAX.to_le_bytes());
    out.extend_from_slice(&28u32.to_le_bytes());
    // Interface description block (20 bytes): Ethernet, snaplen 0.
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&20u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&20u32.to_le_bytes());
    let mut starts = Vec::new();
    for (i, r) in records.iter().enumerate() {
        starts.push(out.len());
        let padded = r.len().div_ceil(4) * 4;
        let len = (32 + padded) as u32;
        out.extend_from_slice(&6u32.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let ts = 1_000_000u64 * (1_000 + i as u64);
        out.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        out.extend_from_slice(&(ts as u32).to_le_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(&(r.len() as u32).to_le_bytes());
        out.extend_from_slice(r);
        out.extend(std::iter::repeat_n(0u8, padded - r.len()));
        out.extend_from_slice(&len.to_le_bytes());
    }
    (out, starts)
}

fn read_all(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Option<CaptureError>) {
    let mut cap = match CaptureFile::from_reader("mem", Box::new(std::io::Cursor::new(bytes))) {
        Ok(c) => c,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut got = Vec::new();
    loop {
        match cap.next_packet() {
            Ok(Some(p)) => got.push(p.data.to_vec()),
            Ok(None) => return (got, None),
            Err(e) => return (got, Some(e)),
        }
    }
}

fn records() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 1..6)
}

fn check_every_cut(
    file: &[u8],
    starts: &[usize],
    recs: &[Vec<u8>],
    header_len: usize,
) -> Result<(), TestCaseError> {
    for cut in header_len..=file.len() {
        let (got, err) = read_all(file[..cut].to_vec());
        // Records wholly before the cut are returned, in order.
        let complete = starts
            .iter()
            .enumerate()
            .filter(|(i, _)| starts.get(i + 1).copied().unwrap_or(file.len()) <= cut)
            .count();
        prop_assert_eq!(&got[..], &recs[..complete], "cut {}", cut);
        let at_boundary = cut == file.len() || starts.contains(&cut);
        match err {
            None => prop_assert!(at_boundary, "cut {} mid-record but no error", cut),
            Some(CaptureError::Truncated { offset, .. }) => {
                prop_assert!(!at_boundary, "cut {} at a boundary but an error", cut);
                prop_assert_eq!(offset as usize, starts[complete], "cut {}", cut);
            }
            Some(e) => prop_assert!(false, "cut {}: unexpected error {}", cut, e),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pcap_cut_anywhere_keeps_earlier_records(recs in records(), nanos in any::<bool>()) {
        let (file, starts) = pcap(&recs, nanos);
        check_every_cut(&file, &starts, &recs, 24)?;
    }

    #[test]
    fn pcapng_cut_anywhere_keeps_earlier_records(recs in records()) {
        let (file, starts) = pcapng(&recs);
        check_every_cut(&file, &starts, &recs, 48)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), prefix in 0usize..3) {
        // Start some inputs with a valid magic so the record parsers are reached.
        let mut b = match prefix {
            0 => vec![0xd4, 0xc3, 0xb2, 0xa1],
            1 => vec![0x0a, 0x0d, 0x0d, 0x0a],
            _ => Vec::new(),
        };
        b.extend(bytes);
        let total = b.len();
        let (got, _) = read_all(b);
        prop_assert!(got.len() <= total);
    }
}

#[test]
fn timestamps_follow_resolution() {
    let (file, _) = pcap(&[vec![1, 2, 3]], true);
    let mut cap = CaptureFile::from_reader("mem", Box::new(std::io::Cursor::new(file))).unwrap();
    let p = cap.next_packet().unwrap().unwrap();
    assert_eq!(p.ts.as_nanos(), 1_000 * 1_000_000_000);
    assert_eq!(
        p.orig_len, 7,
        "wire length from the record, not the captured length"
    );
}

#[test]
fn wrong_magic_names_the_bytes() {
    let err = CaptureFile::from_reader(
        "x.txt",
        Box::new(std::io::Cursor::new(b"hello world".to_vec())),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("not a pcap or pcapng") && msg.contains("68 65 6c 6c"),
        "{msg}"
    );
}

#[test]
fn empty_input_is_a_clear_error() {
    let err = CaptureFile::from_reader("empty.pcap", Box::new(std::io::Cursor::new(Vec::new())))
        .unwrap_err();
    assert!(err.to_string().contains("empty file"), "{err}");
}

#[test]
fn oversized_record_is_an_error_with_offset() {
    let (mut file, starts) = pcap(&[vec![0; 10], vec![0; 10]], false);
    let at = starts[1] + 8;
    file[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let (got, err) = read_all(file);
    assert_eq!(got.len(), 1);
    match err {
        Some(CaptureError::Oversized { offset, .. }) => assert_eq!(offset as usize, starts[1]),
        other => panic!("expected oversized error, got {other:?}"),
    }
}
