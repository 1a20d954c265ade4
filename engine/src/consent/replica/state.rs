//! The consent state of one (tenant, number): one [`PurposeState`] per
//! purpose, packed into 9 bits so that a replica entry (number + state) fits
//! in one `u64`, and a compact text form for the Redis ledger hash.

use std::fmt;
use std::str::FromStr;

use crate::consent::ConsentKind;
use crate::model::Category;

/// Consent on file for one purpose of one number (docs/compliance.md).
///
/// The replica only records what is on file; what a state allows is the
/// policy's call (shipped defaults: `Unknown` allows transactional and
/// collections texts, suppresses marketing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PurposeState {
    /// Nothing on file.
    Unknown,
    /// Consent given, of this kind (47 USC 227(b)(1)(A)(iii);
    /// 47 CFR 64.1200(a)(2), (f)(9)).
    Granted(ConsentKind),
    /// Consent revoked by any reasonable means (47 CFR 64.1200(a)(10)),
    /// honoured at once, fleet-wide ((a)(11)).
    Revoked,
    /// An ambiguous reply, to be judged by a person: holds sends until it is
    /// resolved (64.1200(a)(10): other wording is judged by a reasonable
    /// person).
    Review,
}

/// The three purposes in the order of the text form and of the bit fields,
/// with their one-letter key in the text form.
const PURPOSES: [(Category, &str); 3] = [
    (Category::Transactional, "t"),
    (Category::Collections, "c"),
    (Category::Marketing, "m"),
];

impl PurposeState {
    /// Every purpose state.
    pub const ALL: [PurposeState; 5] = [
        PurposeState::Unknown,
        PurposeState::Granted(ConsentKind::Express),
        PurposeState::Granted(ConsentKind::ExpressWritten),
        PurposeState::Revoked,
        PurposeState::Review,
    ];

    /// Bits per purpose in [`NumberState`].
    const BITS: u32 = 3;
    const MASK: u16 = (1 << Self::BITS) - 1;

    /// The 3-bit code. `Unknown` must stay 0 so that the default state is
    /// the all-zero word.
    fn to_bits(self) -> u16 {
        match self {
            PurposeState::Unknown => 0,
            PurposeState::Granted(ConsentKind::Express) => 1,
            PurposeState::Granted(ConsentKind::ExpressWritten) => 2,
            PurposeState::Revoked => 3,
            PurposeState::Review => 4,
        }
    }

    fn from_bits(bits: u16) -> PurposeState {
        match bits & Self::MASK {
            0 => PurposeState::Unknown,
            1 => PurposeState::Granted(ConsentKind::Express),
            2 => PurposeState::Granted(ConsentKind::ExpressWritten),
            3 => PurposeState::Revoked,
            // 5–7 are never written (a NumberState is only built through
            // `with`); were one ever read, Review holds sends: fail closed.
            _ => PurposeState::Review,
        }
    }

    /// The one-letter code of the text form (see [`NumberState`]).
    pub fn code(self) -> char {
        match self {
            PurposeState::Unknown => 'u',
            PurposeState::Granted(ConsentKind::Express) => 'e',
            PurposeState::Granted(ConsentKind::ExpressWritten) => 'w',
            PurposeState::Revoked => 'r',
            // `h` as in "held": `r` is taken by revoked.
            PurposeState::Review => 'h',
        }
    }

    fn from_code(code: &str) -> Option<PurposeState> {
        Some(match code {
            "u" => PurposeState::Unknown,
            "e" => PurposeState::Granted(ConsentKind::Express),
            "w" => PurposeState::Granted(ConsentKind::ExpressWritten),
            "r" => PurposeState::Revoked,
            "h" => PurposeState::Review,
            _ => return None,
        })
    }
}

/// The bit offset of a purpose's field.
fn shift(purpose: Category) -> u32 {
    match purpose {
        Category::Transactional => 0,
        Category::Collections => PurposeState::BITS,
        Category::Marketing => 2 * PurposeState::BITS,
    }
}

/// The consent state of one (tenant, number): three [`PurposeState`]s of 3
/// bits each, indexed by [`Category`]. `Copy`, 2 bytes; the all-zero value is
/// the default (unknown everywhere), which the replica does not store.
///
/// Text form (the value of the Redis ledger hash, and `Display`/`FromStr`):
/// `t=<code>,c=<code>,m=<code>`, purposes `t` transactional, `c`
/// collections, `m` marketing; codes `u` unknown, `e` granted (express), `w`
/// granted (express written), `r` revoked, `h` review (held). Example: a
/// STOP after a marketing opt-in, `t=r,c=r,m=r`; express consent with
/// written consent for marketing, `t=e,c=e,m=w`. `Display` always writes the
/// three purposes in that order; `FromStr` takes them in any order, each
/// exactly once, and nothing else (no spaces): the value is written by
/// Herald, so anything else is corruption to report, not to guess at.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NumberState(u16);

impl NumberState {
    /// Unknown for every purpose.
    pub const DEFAULT: NumberState = NumberState(0);

    /// Bits used by a state; the replica packs a number above them.
    pub(super) const BITS: u32 = 3 * PurposeState::BITS;

    /// The state on file for `purpose`.
    #[inline]
    pub fn get(self, purpose: Category) -> PurposeState {
        PurposeState::from_bits(self.0 >> shift(purpose))
    }

    /// This state with `purpose` set to `state`, the others unchanged.
    #[must_use]
    pub fn with(self, purpose: Category, state: PurposeState) -> NumberState {
        let shift = shift(purpose);
        NumberState((self.0 & !(PurposeState::MASK << shift)) | (state.to_bits() << shift))
    }

    /// Unknown for every purpose: nothing on file.
    #[inline]
    pub fn is_default(self) -> bool {
        self.0 == 0
    }

    /// The packed bits, for the replica's entries.
    pub(super) fn bits(self) -> u64 {
        u64::from(self.0)
    }

    /// From bits written by [`NumberState::bits`].
    pub(super) fn from_bits(bits: u64) -> NumberState {
        // Masked, so the cast keeps every bit that `bits()` wrote.
        NumberState((bits & ((1 << Self::BITS) - 1)) as u16)
    }
}

impl fmt::Display for NumberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(purpose, key)) in PURPOSES.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{key}={}", self.get(purpose).code())?;
        }
        Ok(())
    }
}

impl fmt::Debug for NumberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NumberState({self})")
    }
}

/// A ledger value that is not in the text form of [`NumberState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("consent state `{input}`: {reason} (expected e.g. `t=e,c=e,m=w`)")]
pub struct ParseStateError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for NumberState {
    type Err = ParseStateError;

    fn from_str(s: &str) -> Result<NumberState, ParseStateError> {
        let fail = |reason| ParseStateError {
            input: s.to_owned(),
            reason,
        };
        let mut state = NumberState::DEFAULT;
        let mut seen = [false; PURPOSES.len()];
        for pair in s.split(',') {
            let (key, code) = pair
                .split_once('=')
                .ok_or_else(|| fail("each purpose is `key=code`"))?;
            let slot = PURPOSES
                .iter()
                .position(|&(_, k)| k == key)
                .ok_or_else(|| fail("purposes are `t`, `c` and `m`"))?;
            if seen[slot] {
                return Err(fail("a purpose is given twice"));
            }
            seen[slot] = true;
            let purpose_state = PurposeState::from_code(code)
                .ok_or_else(|| fail("codes are `u`, `e`, `w`, `r` and `h`"))?;
            state = state.with(PURPOSES[slot].0, purpose_state);
        }
        if seen.contains(&false) {
            return Err(fail("every purpose (`t`, `c`, `m`) must be given"));
        }
        Ok(state)
    }
}
