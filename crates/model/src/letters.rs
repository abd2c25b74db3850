//! Short texts held in place: the TCP flag letters of a record (`APS`, a first packet's
//! `>S` or `<RA`). A TCP record carries up to seventeen of them (each direction's flag
//! union and first four packets' flags, the connection's first four packets); as
//! `String`s each was an allocation on the writer thread and a free of a cold block
//! after detection had read the record.

use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Up to [`Letters::CAPACITY`] bytes of text, in place (16 bytes, `Copy`). Flag texts
/// are at most 11 bytes: a direction mark, eight flags, `N` and `r`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Letters {
    len: u8,
    bytes: [u8; Letters::CAPACITY],
}

impl Letters {
    /// The most bytes held.
    pub const CAPACITY: usize = 15;

    /// `s`, if it fits.
    pub fn new(s: &str) -> Option<Letters> {
        let mut l = Letters::default();
        l.push_str(s).then_some(l)
    }

    /// Appends `s` if it fits; whether it did (nothing is appended otherwise).
    pub fn push_str(&mut self, s: &str) -> bool {
        let at = usize::from(self.len);
        let Some(dst) = self.bytes.get_mut(at..at + s.len()) else {
            return false;
        };
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len() as u8;
        true
    }

    /// Appends `c` if it fits; whether it did.
    pub fn push(&mut self, c: char) -> bool {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole `str`s are ever appended.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes, without the UTF-8 check `as_str` makes (for the JSON writer
    /// and the TCP filter, which read these on every TCP record).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Deref for Letters {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Letters {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Letters {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// For literals and texts built elsewhere: what does not fit is left out, at a
/// character boundary (no flag text comes near [`Letters::CAPACITY`];
/// deserialising refuses a longer text instead).
impl From<&str> for Letters {
    fn from(s: &str) -> Letters {
        let mut end = s.len().min(Letters::CAPACITY);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut l = Letters::default();
        l.push_str(&s[..end]);
        l
    }
}

impl PartialEq<str> for Letters {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for Letters {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl fmt::Display for Letters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Letters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Letters {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Letters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Letters, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Letters;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a string of at most {} bytes", Letters::CAPACITY)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Letters, E> {
                Letters::new(s).ok_or_else(|| {
                    E::custom(format_args!(
                        "{s:?} is {} bytes, more than the {} of TCP flag letters",
                        s.len(),
                        Letters::CAPACITY
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_fits_and_refuses_the_rest() {
        let mut l = Letters::new(">AP").unwrap();
        assert_eq!(l, ">AP");
        assert!(l.push('N') && l.push_str("r"));
        assert_eq!(l.as_str(), ">APNr");
        assert!(!l.push_str("0123456789A"), "16 bytes do not fit");
        assert_eq!(l.as_str(), ">APNr", "a refused text leaves nothing behind");
        assert!(l.push_str("0123456789"));
        assert_eq!(l.len(), Letters::CAPACITY);
        assert!(!l.push('x'));
        assert_eq!(Letters::new(""), Some(Letters::default()));
        assert_eq!(Letters::new("0123456789ABCDEF"), None);
        // Conversion keeps whole characters only.
        assert_eq!(Letters::from("0123456789ABCDé"), "0123456789ABCD");
        assert_eq!(Letters::from("0123456789ABCDEF"), "0123456789ABCDE");
    }

    #[test]
    fn reads_and_writes_as_a_json_string() {
        let l = Letters::from("<RA");
        assert_eq!(serde_json::to_string(&l).unwrap(), r#""<RA""#);
        assert_eq!(serde_json::from_str::<Letters>(r#""<RA""#).unwrap(), l);
        let long = serde_json::from_str::<Letters>(r#""SSSSSSSSSSSSSSSS""#).unwrap_err();
        assert!(long.to_string().contains("16 bytes"), "{long}");
        assert_eq!(format!("{l} {l:?}"), r#"<RA "<RA""#);
    }
}
