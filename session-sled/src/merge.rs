//! `apply` on the stored bytes: the current record layout (`SREC` version 1) is read as slices
//! of the stored value, the change set is merged into them and the new record is written
//! straight from those slices. The result is byte for byte what [`Record::encode`](session_core::driver::record::Record::encode) writes for the
//! merged record (keys in byte order, values as `bin`), without decoding every key and value
//! into owned `String`s and `Value`s and dropping them again: on loadgen's write phase that
//! decode, the copies and the frees were a quarter of the driver's instructions per write
//! (callgrind).
//!
//! Anything else (an older layout, a body this reader does not accept) returns `None`, and the
//! caller takes the general path ([`Record::decode`](session_core::driver::record::Record::decode), which also produces the
//! [`Error::Corrupt`](session_core::driver::Error::Corrupt) of a malformed record).

use session_core::driver::record::{HEADER_LEN, MAGIC, VERSION};
use session_core::driver::{ChangeSet, Data};

/// A current-layout record, borrowed from its bytes.
pub(crate) struct View<'a> {
    pub(crate) deadline_ms: u64,
    pub(crate) owner: Option<&'a str>,
    /// The entries, sorted by key, no key twice.
    pub(crate) entries: Vec<(&'a str, &'a [u8])>,
}

impl<'a> View<'a> {
    /// Reads a current-layout record; `None` for any other bytes (an older layout, or a body
    /// that is not exactly `[owner: nil | str, data: map str -> bin]`).
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<View<'a>> {
        use rmp::decode::{read_array_len, read_bin_len, read_map_len, read_str_len};
        let rest = bytes.strip_prefix(&MAGIC)?.strip_prefix(&[VERSION])?;
        let (deadline, mut rd) = rest.split_first_chunk::<8>()?;
        let rd = &mut rd;
        if read_array_len(rd).ok()? != 2 {
            return None;
        }
        let owner = if rd.first() == Some(&0xc0) {
            *rd = &rd[1..];
            None
        } else {
            let len = read_str_len(rd).ok()?;
            Some(take_str(rd, len)?)
        };
        let keys = read_map_len(rd).ok()? as usize;
        // A corrupt length must not allocate much: at most one entry per 2 bytes left.
        let mut entries = Vec::with_capacity(keys.min(rd.len() / 2));
        for _ in 0..keys {
            let len = read_str_len(rd).ok()?;
            let key = take_str(rd, len)?;
            let len = read_bin_len(rd).ok()?;
            entries.push((key, take(rd, len)?));
        }
        if !rd.is_empty() {
            return None;
        }
        // Records are written sorted; sort anyway, and leave a duplicate key to the general
        // path (which reports it as corrupt).
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        Some(View {
            deadline_ms: u64::from_be_bytes(*deadline),
            owner,
            entries,
        })
    }

    /// An empty record (no owner, no keys, deadline 0), as `Record::default()`.
    pub(crate) fn empty() -> View<'a> {
        View {
            deadline_ms: 0,
            owner: None,
            entries: Vec::new(),
        }
    }

    /// Applies `clear`, then `remove`, then `set`, as the driver's `apply` does on a
    /// `Record`; returns whether anything was cleared, removed or set.
    pub(crate) fn change(&mut self, changes: &'a ChangeSet) -> bool {
        let mut changed = changes.clear || !changes.set.is_empty();
        if changes.clear {
            self.entries.clear();
        }
        for key in &changes.remove {
            if let Ok(at) = self.find(key) {
                self.entries.remove(at);
                changed = true;
            }
        }
        self.set(&changes.set);
        changed
    }

    fn set(&mut self, set: &'a Data) {
        for (key, value) in set {
            match self.find(key) {
                Ok(at) => self.entries[at].1 = value.as_bytes(),
                Err(at) => self.entries.insert(at, (key.as_str(), value.as_bytes())),
            }
        }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| (*k).cmp(key))
    }

    /// The record in the current layout: the bytes [`Record::encode`](session_core::driver::record::Record::encode) writes for it. `None`
    /// when a length does not fit the format (the general path reports that error).
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        use rmp::encode::{write_array_len, write_bin, write_map_len, write_nil, write_str};
        let values: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 10)
            .sum();
        let mut out =
            Vec::with_capacity(HEADER_LEN + 2 + self.owner.map_or(1, |o| o.len() + 5) + 5 + values);
        let fits = |n: usize| u32::try_from(n).is_ok();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.deadline_ms.to_be_bytes());
        write_array_len(&mut out, 2).ok()?;
        match self.owner {
            None => write_nil(&mut out).ok()?,
            Some(owner) if fits(owner.len()) => write_str(&mut out, owner).ok()?,
            Some(_) => return None,
        }
        if !fits(self.entries.len()) {
            return None;
        }
        write_map_len(&mut out, self.entries.len() as u32).ok()?;
        for (key, value) in &self.entries {
            if !fits(key.len()) || !fits(value.len()) {
                return None;
            }
            write_str(&mut out, key).ok()?;
            write_bin(&mut out, value).ok()?;
        }
        Some(out)
    }
}

/// The next `len` bytes of `rd`.
fn take<'a>(rd: &mut &'a [u8], len: u32) -> Option<&'a [u8]> {
    let len = len as usize;
    if len > rd.len() {
        return None;
    }
    let (taken, rest) = rd.split_at(len);
    *rd = rest;
    Some(taken)
}

/// The next `len` bytes of `rd`, as UTF-8 text.
fn take_str<'a>(rd: &mut &'a [u8], len: u32) -> Option<&'a str> {
    std::str::from_utf8(take(rd, len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_core::Value;
    use session_core::driver::record::Record;

    fn data(pairs: &[(&str, &str)]) -> Data {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from_bytes(v.as_bytes().to_vec())))
            .collect()
    }

    fn record(owner: Option<&str>, pairs: &[(&str, &str)]) -> Record {
        Record {
            deadline_ms: 1_700_000_000_123,
            owner: owner.map(str::to_owned),
            data: data(pairs),
        }
    }

    /// The merged bytes are exactly `Record::encode` of the record merged the general way.
    #[test]
    fn merging_on_the_bytes_writes_what_the_codec_writes() {
        let long = "v".repeat(70_000);
        let records = [
            record(None, &[]),
            record(Some("ada"), &[]),
            record(
                Some("ada"),
                &[("a", "1"), ("b", "2"), ("zz", "3"), ("é", "4")],
            ),
            record(None, &[("user", "x"), ("cart", &long), ("", "empty key")]),
        ];
        let changes = [
            ChangeSet::default(),
            ChangeSet {
                set: data(&[("b", "new"), ("c", "3"), ("0", "first")]),
                ..ChangeSet::default()
            },
            ChangeSet {
                remove: vec!["a".into(), "absent".into(), "user".into()],
                set: data(&[("a", "back")]),
                ..ChangeSet::default()
            },
            ChangeSet {
                clear: true,
                remove: vec!["b".into()],
                set: data(&[("k", &long)]),
                ..ChangeSet::default()
            },
        ];
        for rec in &records {
            let bytes = rec.encode().expect("encode");
            let view = View::parse(&bytes).expect("current layout");
            assert_eq!(view.encode().expect("fits"), bytes, "round trip of {rec:?}");
            for cs in &changes {
                let mut view = View::parse(&bytes).expect("current layout");
                let changed = view.change(cs);
                let mut want = rec.clone();
                if cs.clear {
                    want.data.clear();
                }
                let mut want_changed = cs.clear || !cs.set.is_empty();
                for k in &cs.remove {
                    want_changed |= want.data.remove(k).is_some();
                }
                want.data
                    .extend(cs.set.iter().map(|(k, v)| (k.clone(), v.clone())));
                assert_eq!(changed, want_changed);
                let got = view.encode().expect("fits");
                assert_eq!(got, want.encode().expect("encode"), "{rec:?} with {cs:?}");
                assert_eq!(Record::decode(&got, "t").expect("decode"), want);
            }
        }
    }

    #[test]
    fn anything_but_a_well_formed_current_record_takes_the_general_path() {
        let bytes = record(Some("o"), &[("a", "1"), ("b", "2")])
            .encode()
            .expect("encode");
        for cut in 0..bytes.len() {
            assert!(View::parse(&bytes[..cut]).is_none(), "truncated at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(View::parse(&trailing).is_none());
        let mut version = bytes.clone();
        version[4] = 2;
        assert!(View::parse(&version).is_none());
        // The older sled layout: 0x01, deadline, MessagePack map.
        let mut legacy = vec![0x01];
        legacy.extend_from_slice(&1u64.to_be_bytes());
        legacy.push(0x80);
        assert!(View::parse(&legacy).is_none());
        // A key twice (hand-made: the codec never writes one).
        let mut twice = bytes[..HEADER_LEN].to_vec();
        twice.extend_from_slice(&[0x92, 0xc0, 0x82, 0xa1, b'a', 0xc4, 1, b'1']);
        twice.extend_from_slice(&[0xa1, b'a', 0xc4, 1, b'2']);
        assert!(View::parse(&twice).is_none());
        assert!(Record::decode(&twice, "t").is_err());
        // Not UTF-8.
        let mut bad = bytes[..HEADER_LEN].to_vec();
        bad.extend_from_slice(&[0x92, 0xc0, 0x81, 0xa1, 0xff, 0xc4, 1, b'1']);
        assert!(View::parse(&bad).is_none());
    }
}
