//! A carrier lane's identity: an interned name with a small id. A leaf of
//! the throttle module: the carrier table (`config`) interns names, the
//! resolver (`carrier`) hands them out.

use std::sync::Mutex;

/// A carrier lane: a small id (an index into per-lane arrays) and its name.
///
/// Ids are interned process-wide, so a name keeps its id when the table is
/// reloaded and a `Carrier` resolved against an old table still names the
/// same lane in a new one. `Copy`, 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Carrier {
    id: u16,
    name: &'static str,
}

impl Carrier {
    /// Numbers no hint, cache entry or prefix matched. Always id 0.
    pub const UNKNOWN: Carrier = Carrier {
        id: 0,
        name: "unknown",
    };

    pub fn id(self) -> u16 {
        self.id
    }

    /// The lane's name, as configured (also a metric label).
    pub fn name(self) -> &'static str {
        self.name
    }
}

impl std::fmt::Display for Carrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Ids above this cannot be packed into a cache slot (14 bits, one value
/// reserved for "lookup pending").
const MAX_ID: u16 = 0x3FFE;

/// Interned names, by id. Locked only while a table is loaded, never on the
/// per-message path. Each distinct name is leaked once (a few bytes; the set
/// of carrier names is small and bounded by [`MAX_ID`]), which is what lets
/// a `Carrier` be `Copy` with a `&'static str` name for metric labels.
static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

/// The carrier called `name`, interning it on first sight.
pub(crate) fn intern(name: &str) -> Result<Carrier, String> {
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if names.is_empty() {
        names.push(Carrier::UNKNOWN.name);
    }
    if let Some(i) = names.iter().position(|n| *n == name) {
        // `names` never exceeds MAX_ID + 1 entries (checked below).
        return Ok(Carrier {
            id: i as u16,
            name: names[i],
        });
    }
    let id = u16::try_from(names.len())
        .ok()
        .filter(|&id| id <= MAX_ID)
        .ok_or_else(|| format!("more than {MAX_ID} carrier names in one process"))?;
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.push(name);
    Ok(Carrier { id, name })
}
