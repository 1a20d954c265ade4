//! Segment counting (docs/compliance.md#carrier-rules; 3GPP TS 23.038 for the
//! GSM 7-bit alphabet, TS 23.040 for concatenation).
//!
//! A single SMS carries 140 octets: 160 GSM-7 septets or 70 UCS-2 code units.
//! A concatenated message spends 6 octets of each part on the user data header,
//! leaving 153 septets or 67 units per part. Two things make counting parts a
//! packing problem rather than a division:
//! - a GSM extension-table character (`^ { } \ [ ~ ] | €`, form feed) is an
//!   escape septet plus a code septet, and the pair must stay in one part;
//! - a character outside the Basic Multilingual Plane (most emoji) is a UTF-16
//!   surrogate pair, which must also stay in one part.
//!
//! So a character that does not fit in what is left of a part starts the next
//! one, leaving a septet (or unit) unused: 152 basic characters, then `€`, then
//! 152 more need three parts, not two.

/// The alphabet a body goes out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet (+ extension table), 7 bits per character.
    Gsm7,
    /// UCS-2 (in practice UTF-16), 16 bits per code unit.
    Ucs2,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }
}

/// How a body is encoded and how many segments it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    pub encoding: Encoding,
    /// Septets (GSM-7, extension characters count two) or UTF-16 code units
    /// (UCS-2, a surrogate pair counts two). Saturates at `u32::MAX`.
    pub units: u32,
    /// Billable segments. An empty body counts as one: a provider bills a
    /// message it sends at least one segment, and throttles must charge for it.
    pub segments: u32,
}

/// Septets in a single-segment GSM-7 message.
const GSM_SINGLE: usize = 160;
/// Septets per part of a concatenated GSM-7 message (7 go to the header).
const GSM_PART: usize = 153;
/// Code units in a single-segment UCS-2 message.
const UCS2_SINGLE: usize = 70;
/// Code units per part of a concatenated UCS-2 message (3 go to the header).
const UCS2_PART: usize = 67;

/// Septets each ASCII character takes in GSM-7: 1 for the basic table, 2 for
/// the extension table (escape + code), 0 when GSM-7 cannot encode it (the
/// backtick and the control characters other than LF, CR and form feed).
/// Lets the common all-ASCII body be checked with one load per byte.
const ASCII_SEPTETS: [u8; 128] = {
    let mut table = [0u8; 128];
    let basic: &[u8] = b"\n\r !\"#$%&'()*+,-./0123456789:;<=>?@\
        ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";
    let mut i = 0;
    while i < basic.len() {
        table[basic[i] as usize] = 1;
        i += 1;
    }
    let extension: &[u8] = b"\x0c^{}\\[~]|";
    let mut i = 0;
    while i < extension.len() {
        table[extension[i] as usize] = 2;
        i += 1;
    }
    table
};

/// Septets `c` takes in GSM-7 (1 basic table, 2 extension table), or 0 when
/// it has no GSM-7 encoding.
pub(super) fn gsm_septets(c: char) -> u8 {
    if c.is_ascii() {
        return ASCII_SEPTETS[c as usize];
    }
    match c {
        // The non-ASCII half of the basic table. Only the capital Ç is in it:
        // a lowercase ç forces UCS-2, as it does at the carriers.
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => 1,
        '€' => 2,
        _ => 0,
    }
}

/// Greedy packing of characters into the parts of a concatenated message:
/// a character (escape pair, surrogate pair) that does not fit in what is
/// left of the current part starts the next one.
#[derive(Debug, Clone, Copy)]
struct Packer {
    /// Capacity of one part (153 septets or 67 units).
    part: usize,
    /// All units pushed, for the single-segment check.
    units: usize,
    /// Parts already closed.
    closed: usize,
    /// Units in the part being filled.
    fill: usize,
}

impl Packer {
    /// The state after `n` one-unit characters: that is all a packer sees
    /// before the first character that is not plain ASCII.
    fn after_singles(part: usize, n: usize) -> Self {
        if n == 0 {
            return Packer {
                part,
                units: 0,
                closed: 0,
                fill: 0,
            };
        }
        let closed = (n - 1) / part;
        Packer {
            part,
            units: n,
            closed,
            fill: n - closed * part,
        }
    }

    fn push(&mut self, width: usize) {
        self.units += width;
        if self.fill + width > self.part {
            self.closed += 1;
            self.fill = width;
        } else {
            self.fill += width;
        }
    }

    fn finish(self, encoding: Encoding, single: usize) -> Segments {
        let segments = if self.units <= single {
            1
        } else {
            self.closed + 1
        };
        Segments {
            encoding,
            units: u32::try_from(self.units).unwrap_or(u32::MAX),
            segments: u32::try_from(segments).unwrap_or(u32::MAX),
        }
    }
}

/// Encoding, length and segment count of `body`, as carriers bill it.
///
/// One pass, no allocation. The leading run of plain ASCII (all of most
/// bodies) is checked a byte at a time against a table; the rest goes char by
/// char, and the first character outside GSM-7 switches the count to UCS-2
/// for the whole body (every GSM-7 character is one UTF-16 unit, so the
/// prefix already seen carries over as a count).
pub fn segments(body: &str) -> Segments {
    let bytes = body.as_bytes();
    let plain = bytes
        .iter()
        .take_while(|&&b| b.is_ascii() && ASCII_SEPTETS[usize::from(b)] == 1)
        .count();
    if plain == bytes.len() {
        return Packer::after_singles(GSM_PART, plain).finish(Encoding::Gsm7, GSM_SINGLE);
    }

    let mut gsm = Packer::after_singles(GSM_PART, plain);
    // `plain` is a char boundary: every byte before it is ASCII.
    let rest = &body[plain..];
    // `chars_before`: characters of the body before `c`.
    for (chars_before, (i, c)) in (plain..).zip(rest.char_indices()) {
        match gsm_septets(c) {
            0 => return ucs2(&rest[i..], chars_before),
            septets => gsm.push(usize::from(septets)),
        }
    }
    gsm.finish(Encoding::Gsm7, GSM_SINGLE)
}

/// UCS-2 count of a body whose first `before` characters were GSM-7 (one
/// UTF-16 unit each: the GSM alphabet lies in the BMP) and whose remainder is
/// `rest`.
fn ucs2(rest: &str, before: usize) -> Segments {
    let mut packer = Packer::after_singles(UCS2_PART, before);
    for c in rest.chars() {
        packer.push(c.len_utf16());
    }
    packer.finish(Encoding::Ucs2, UCS2_SINGLE)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rep(s: &str, n: usize) -> String {
        s.repeat(n)
    }

    #[test]
    fn encoding_names() {
        assert_eq!(Encoding::Gsm7.as_str(), "gsm7");
        assert_eq!(Encoding::Ucs2.as_str(), "ucs2");
    }

    /// (body, encoding, units, segments, why). Limits: docs/compliance.md#carrier-rules
    /// rules" (160/153 septets, 70/67 units; escape and surrogate pairs are
    /// never split).
    #[test]
    fn segment_table() {
        use Encoding::{Gsm7, Ucs2};
        let a = |n| rep("a", n);
        let rows: Vec<(String, Encoding, u32, u32, &str)> = vec![
            (
                String::new(),
                Gsm7,
                0,
                1,
                "empty body still bills one segment",
            ),
            ("hello".into(), Gsm7, 5, 1, "plain ASCII"),
            (a(160), Gsm7, 160, 1, "GSM single message holds 160 septets"),
            (
                a(161),
                Gsm7,
                161,
                2,
                "161 septets → concatenated, 153 per part",
            ),
            (a(306), Gsm7, 306, 2, "2 × 153"),
            (a(307), Gsm7, 307, 3, "one past 2 × 153"),
            (
                rep("€", 80),
                Gsm7,
                160,
                1,
                "€ is an extension char: 2 septets",
            ),
            (rep("€", 81), Gsm7, 162, 2, "81 × 2 septets > 160"),
            (
                format!("{}{{", a(158)),
                Gsm7,
                160,
                1,
                "extension char exactly filling a single message",
            ),
            (
                format!("{}{{", a(159)),
                Gsm7,
                161,
                2,
                "extension char overflowing a single message",
            ),
            (
                format!("{}€{}", a(151), a(10)),
                Gsm7,
                163,
                2,
                "€ ends exactly at 153 in part 1",
            ),
            (
                format!("{}€{}", a(152), a(152)),
                Gsm7,
                306,
                3,
                "escape pair never split: € moves to part 2, which then overflows",
            ),
            (
                format!("{}{}", a(152), rep("^", 77)),
                Gsm7,
                306,
                3,
                "no room for ^ at 152: part 2 takes 76 pairs, part 3 one",
            ),
            (
                rep("[", 153),
                Gsm7,
                306,
                3,
                "76 pairs per part (152 septets), not 76.5",
            ),
            (
                format!("{}\x0c", a(159)),
                Gsm7,
                161,
                2,
                "form feed is an extension char",
            ),
            (
                "£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑ\u{DC}\u{A7}¿äöñüà".into(),
                Gsm7,
                39,
                1,
                "non-ASCII basic table: one septet each",
            ),
            (
                "@$_\n\r".into(),
                Gsm7,
                5,
                1,
                "@ $ _ LF CR are in the basic table",
            ),
            (
                format!("{}`", a(100)),
                Ucs2,
                101,
                2,
                "backtick is not GSM-7",
            ),
            (
                "ç".into(),
                Ucs2,
                1,
                1,
                "lowercase ç is not GSM-7 (only Ç is)",
            ),
            (format!("{}\t", a(10)), Ucs2, 11, 1, "tab is not GSM-7"),
            (
                format!("{}✓", a(69)),
                Ucs2,
                70,
                1,
                "one non-GSM char makes the whole body UCS-2: 70 units fit",
            ),
            (
                format!("{}✓", a(70)),
                Ucs2,
                71,
                2,
                "71 UCS-2 units → 67 per part",
            ),
            (rep("✓", 134), Ucs2, 134, 2, "2 × 67"),
            (rep("✓", 135), Ucs2, 135, 3, "one past 2 × 67"),
            (
                rep("😀", 35),
                Ucs2,
                70,
                1,
                "emoji are surrogate pairs: 2 units",
            ),
            (rep("😀", 36), Ucs2, 72, 2, "72 units"),
            (
                rep("😀", 67),
                Ucs2,
                134,
                3,
                "33 pairs per part (66 units), never 33.5",
            ),
            (
                format!("{}😀{}", rep("✓", 65), rep("✓", 10)),
                Ucs2,
                77,
                2,
                "pair ends exactly at 67 in part 1",
            ),
            (
                format!("{}😀{}", rep("✓", 66), rep("✓", 66)),
                Ucs2,
                134,
                3,
                "surrogate pair never split: moves to part 2 at the 67 boundary",
            ),
            (
                format!("{}😀", a(66)),
                Ucs2,
                68,
                1,
                "GSM prefix counts one unit per char once UCS-2",
            ),
            (
                format!("{}€😀", a(65)),
                Ucs2,
                68,
                1,
                "€ is one UTF-16 unit once the body is UCS-2",
            ),
            (
                format!("{}{}✓", a(200), rep("€", 3)),
                Ucs2,
                204,
                4,
                "mixed: switch to UCS-2 after 203 GSM chars",
            ),
        ];
        for (body, encoding, units, segs, why) in rows {
            let got = segments(&body);
            assert_eq!(
                got,
                Segments {
                    encoding,
                    units,
                    segments: segs
                },
                "{why}: {body:?}"
            );
        }
    }

    /// The GSM 03.38 basic table in code order (0x00–0x7F), written out
    /// independently of the production table; `\u{1b}` (0x1B) is the escape
    /// to the extension table, not a character of its own.
    const REF_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
        ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑ\u{DC}\u{A7}¿abcdefghijklmnopqrstuvwxyzäöñüà";
    /// The extension table characters used in the US (escape + code).
    const REF_EXTENSION: &str = "\x0c^{}\\[~]|€";

    fn ref_septets(c: char) -> Option<usize> {
        if c == '\u{1b}' {
            None
        } else if REF_BASIC.contains(c) {
            Some(1)
        } else if REF_EXTENSION.contains(c) {
            Some(2)
        } else {
            None
        }
    }

    /// Obviously-correct reference: pick the encoding, then build the actual
    /// parts character by character, starting a new part whenever the next
    /// character does not fit whole.
    fn reference(body: &str) -> Segments {
        let gsm = body.chars().all(|c| ref_septets(c).is_some());
        let width = |c: char| {
            if gsm {
                ref_septets(c).unwrap_or(0)
            } else {
                c.len_utf16()
            }
        };
        let (single, part) = if gsm { (160, 153) } else { (70, 67) };
        let units: usize = body.chars().map(width).sum();
        let mut parts: Vec<String> = vec![String::new()];
        for c in body.chars() {
            let used: usize = parts.last().map_or(0, |p| p.chars().map(width).sum());
            if used + width(c) > part {
                parts.push(String::new());
            }
            if let Some(p) = parts.last_mut() {
                p.push(c);
            }
        }
        assert_eq!(parts.concat(), body, "the parts are the body");
        for p in &parts {
            assert!(p.chars().map(width).sum::<usize>() <= part);
        }
        Segments {
            encoding: if gsm { Encoding::Gsm7 } else { Encoding::Ucs2 },
            units: units as u32,
            segments: if units <= single {
                1
            } else {
                parts.len() as u32
            },
        }
    }

    #[test]
    fn reference_tables_are_complete() {
        // 128 code points minus the escape.
        assert_eq!(REF_BASIC.chars().count(), 128);
        for c in REF_BASIC.chars().chain(REF_EXTENSION.chars()) {
            assert_eq!(
                usize::from(gsm_septets(c)),
                ref_septets(c).unwrap_or(0),
                "{c:?}"
            );
        }
    }

    const GSM_ALPHABET: &[char] = &[
        'a', 'Z', '7', ' ', '\n', '@', 'é', 'Δ', '€', '^', '{', '\\', '|', '\x0c',
    ];
    const MIXED_ALPHABET: &[char] = &[
        'a', 'Z', '7', ' ', '\n', '@', 'é', 'Δ', '€', '^', '{', '\\', '|', '\x0c', '`', 'ç', '✓',
        '’', '😀', '𝄞',
    ];

    const NON_GSM: &[char] = &['`', 'ç', '✓', '😀'];

    fn body_over(alphabet: &'static [char], max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(alphabet), 0..max)
            .prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #[test]
        fn gsm_bodies_match_reference(body in body_over(GSM_ALPHABET, 480)) {
            prop_assert_eq!(segments(&body), reference(&body));
        }

        #[test]
        fn mixed_bodies_match_reference(body in body_over(MIXED_ALPHABET, 240)) {
            prop_assert_eq!(segments(&body), reference(&body));
        }

        /// Mostly-GSM bodies with at most one non-GSM character, anywhere:
        /// exercises the switch to UCS-2 after a long GSM prefix.
        #[test]
        fn late_switch_matches_reference(
            prefix in body_over(GSM_ALPHABET, 300),
            odd in proptest::sample::select(NON_GSM),
            suffix in body_over(GSM_ALPHABET, 100),
        ) {
            let body = format!("{prefix}{odd}{suffix}");
            prop_assert_eq!(segments(&body), reference(&body));
        }
    }
}
