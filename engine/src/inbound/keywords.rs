//! Classifying an inbound reply (docs/compliance.md#inbound-keywords).
//!
//! The law: 47 CFR 64.1200(a)(10), as amended effective 2025-04-11 (FCC
//! 24-24), lets a called party revoke consent "by any reasonable means"; a
//! reply of "stop", "quit", "end", "revoke", "opt out", "cancel" or
//! "unsubscribe" is a revocation per se, and other wording is judged by
//! whether a reasonable person would understand it as one. CTIA's Messaging
//! Principles add the carrier keywords (STOP, STOPALL, UNSUBSCRIBE, CANCEL,
//! END, QUIT; START, UNSTOP, YES to opt back in; HELP, INFO for help).
//!
//! What a wrong answer costs decides every rule below:
//! - a missed revocation means texting someone who said stop: $500–$1,500 per
//!   text in statutory damages;
//! - an `Ambiguous` reply goes to `review`, which holds sends until a person
//!   resolves it: a delay, not a violation;
//! - a false opt-in (re-consent) is as bad as a missed revocation.
//!
//! So opt-outs are read generously, opt-ins strictly, and a reply that carries
//! an opt-out word without being clearly a revocation is `Ambiguous` rather
//! than `Other`.
//!
//! The steps, in order ([`classify`]):
//! 1. **Normalise**: Unicode lowercase; fullwidth forms to ASCII; apostrophes
//!    (straight or curly) dropped inside words ("don’t" → "dont"); every other
//!    non-alphanumeric character (punctuation, emoji, whitespace) separates
//!    words; runs of single letters are joined ("S.T.O.P", "S T O P" → "stop");
//!    `#` reads as "number" ("wrong #"). Sentence ends (`. ! ?` followed by a
//!    space or the end, newlines) are kept, and whether a sentence was a
//!    question.
//! 2. **The whole reply is a keyword**, possibly with polite filler ("stop
//!    please", "STOP!!", "stop it", "ok stop"): opt-out per se (a question —
//!    "stop?" — is `Ambiguous`); help. Opt-in only when the keyword is the
//!    whole reply and not a question ("YES", "Start."; not "Yes I paid").
//! 3. **A revocation phrase** anywhere ("stop texting me", "do not text me",
//!    "leave me alone", "wrong number"…, table [`PHRASES`]) → opt-out;
//!    after a negation ("please don't stop texting me") → `Ambiguous`.
//! 4. **One sentence is an opt-out keyword** ("STOP. I already paid.") →
//!    opt-out.
//! 5. **Ambiguous**: a sentence that is an opt-out keyword asked as a
//!    question; a phrase that suggests unwanted texts ("why do you keep
//!    texting"); a strong opt-out word (STOP, UNSUBSCRIBE, REVOKE, OPTOUT,
//!    OPT OUT, STOPALL) anywhere, unless in a collocation that is clearly
//!    about something else ("stop by", "stop in"); a weak one (END, QUIT,
//!    CANCEL: everyday words) in a short reply of at most
//!    [`SHORT_REPLY_WORDS`] words ("cancel my payment", "can you end this").
//! 6. Everything else is `Other` — including "I'll stop by the branch
//!    tomorrow to pay", which uses "stop" as a verb of motion: `Other`
//!    rather than `Ambiguous` because holding that consumer's texts for
//!    review would help nobody.
//!
//! Runs on the inbound webhook path (replies, a small fraction of outbound
//! traffic): it allocates one buffer and two small vectors per reply.

use std::ops::Range;

/// What an inbound reply asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reply {
    /// Revoke consent (47 CFR 64.1200(a)(10)). `all`: STOPALL / STOP ALL,
    /// every purpose and program of the sender.
    OptOut { all: bool },
    /// Opt back in (CTIA: START, UNSTOP, YES).
    OptIn,
    /// Ask for help (CTIA: HELP, INFO).
    Help,
    /// May be a revocation; goes to `review`, which holds sends.
    Ambiguous,
    /// Not a keyword reply.
    Other,
}

impl Reply {
    pub fn as_str(self) -> &'static str {
        match self {
            Reply::OptOut { all: false } => "opt_out",
            Reply::OptOut { all: true } => "opt_out_all",
            Reply::OptIn => "opt_in",
            Reply::Help => "help",
            Reply::Ambiguous => "ambiguous",
            Reply::Other => "other",
        }
    }
}

/// The classification of a reply and the evidence for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub reply: Reply,
    /// The keyword ("STOP", "OPT OUT") or phrase rule ("phrase:stop-texting")
    /// that decided, for the audit record; `None` for `Other`.
    pub keyword: Option<&'static str>,
}

const OTHER: Classified = Classified {
    reply: Reply::Other,
    keyword: None,
};

/// A keyword reply, as normalised words.
struct Keyword {
    words: &'static [&'static str],
    reply: Reply,
    name: &'static str,
}

const OPT_OUT: Reply = Reply::OptOut { all: false };
const OPT_OUT_ALL: Reply = Reply::OptOut { all: true };

/// Keyword replies (CTIA; 47 CFR 64.1200(a)(10) for the revocation words).
const KEYWORDS: &[Keyword] = &[
    Keyword {
        words: &["stop"],
        reply: OPT_OUT,
        name: "STOP",
    },
    Keyword {
        words: &["stopall"],
        reply: OPT_OUT_ALL,
        name: "STOPALL",
    },
    Keyword {
        words: &["stop", "all"],
        reply: OPT_OUT_ALL,
        name: "STOP ALL",
    },
    Keyword {
        words: &["unsubscribe"],
        reply: OPT_OUT,
        name: "UNSUBSCRIBE",
    },
    // Not a CTIA keyword, but a reasonable person reads it as "unsubscribe".
    Keyword {
        words: &["unsub"],
        reply: OPT_OUT,
        name: "UNSUB",
    },
    Keyword {
        words: &["cancel"],
        reply: OPT_OUT,
        name: "CANCEL",
    },
    Keyword {
        words: &["end"],
        reply: OPT_OUT,
        name: "END",
    },
    Keyword {
        words: &["quit"],
        reply: OPT_OUT,
        name: "QUIT",
    },
    Keyword {
        words: &["revoke"],
        reply: OPT_OUT,
        name: "REVOKE",
    },
    Keyword {
        words: &["optout"],
        reply: OPT_OUT,
        name: "OPTOUT",
    },
    Keyword {
        words: &["opt", "out"],
        reply: OPT_OUT,
        name: "OPT OUT",
    },
    Keyword {
        words: &["start"],
        reply: Reply::OptIn,
        name: "START",
    },
    Keyword {
        words: &["unstop"],
        reply: Reply::OptIn,
        name: "UNSTOP",
    },
    Keyword {
        words: &["yes"],
        reply: Reply::OptIn,
        name: "YES",
    },
    Keyword {
        words: &["help"],
        reply: Reply::Help,
        name: "HELP",
    },
    Keyword {
        words: &["info"],
        reply: Reply::Help,
        name: "INFO",
    },
];

/// Words that add politeness or emphasis but no meaning next to an opt-out or
/// help keyword ("stop please", "please stop now", "ok stop", "stop it",
/// "help me"). Never next to an opt-in: re-consent must be unmistakable.
const FILLERS: &[&str] = &[
    "please",
    "pls",
    "plz",
    "now",
    "it",
    "thanks",
    "thank",
    "you",
    "thx",
    "ty",
    "asap",
    "immediately",
    "ok",
    "okay",
    "k",
    "just",
    "already",
    "sorry",
    "right",
    "away",
    "me",
    "yes",
    "again",
    "hey",
    "hi",
    "hello",
];

/// Opt-out words that are rarely anything else in a reply to a business text:
/// present anywhere, they make the reply at least `Ambiguous`.
const STRONG_WORDS: &[(&str, &str)] = &[
    ("stop", "STOP"),
    ("stopall", "STOPALL"),
    ("unsubscribe", "UNSUBSCRIBE"),
    ("unsub", "UNSUB"),
    ("revoke", "REVOKE"),
    ("optout", "OPTOUT"),
];

/// Opt-out words that are everyday words too ("end of the month", "I quit my
/// job", "cancel my appointment"): `Ambiguous` only in a short reply.
const WEAK_WORDS: &[(&str, &str)] = &[("end", "END"), ("quit", "QUIT"), ("cancel", "CANCEL")];

/// A reply of at most this many words that contains a weak opt-out word is
/// `Ambiguous`; a longer one is a sentence about something else.
pub const SHORT_REPLY_WORDS: usize = 4;

/// Words after "stop" that make it a verb of motion, not a request to stop
/// texting ("I'll stop by", "stop in at the branch").
const STOP_MOTION: &[&str] = &["by", "in", "into", "over", "off", "through"];

/// Words that turn a following revocation phrase around ("please don't stop
/// texting me", "I never said stop texting").
const NEGATIONS: &[&str] = &[
    "dont", "not", "never", "didnt", "doesnt", "wont", "cant", "cannot", "shouldnt", "wouldnt",
    "isnt", "said",
];

/// What a phrase means when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meaning {
    /// A reasonable person reads it as a revocation (64.1200(a)(10)).
    Revocation,
    /// May be one: hold sends for review.
    Suspicious,
}

/// A phrase: consecutive slots, each a set of alternative words; a slot that
/// contains `""` may be skipped.
struct Phrase {
    name: &'static str,
    slots: &'static [&'static [&'static str]],
    meaning: Meaning,
}

const CONTACTING: &[&str] = &[
    "texting",
    "txting",
    "texing",
    "messaging",
    "msging",
    "contacting",
    "calling",
    "sending",
    "emailing",
    "bothering",
    "harassing",
    "spamming",
];
const MESSAGES: &[&str] = &[
    "texts",
    "text",
    "txts",
    "txt",
    "messages",
    "message",
    "msgs",
    "msg",
    "sms",
    "calls",
    "emails",
    "reminders",
    "notifications",
    "alerts",
];
const CONTACT: &[&str] = &[
    "text", "txt", "message", "msg", "contact", "call", "email", "sms", "bother",
];
const WHAT: &[&str] = &[
    "", "all", "these", "the", "your", "those", "this", "any", "more", "further",
];

/// Normal-language revocations and suspicious complaints (47 CFR
/// 64.1200(a)(10): revocation by "any reasonable means", wording judged by
/// what a reasonable person would understand). A `Revocation` phrase is one no
/// reasonable reader takes for anything else; a `Suspicious` one only hints.
const PHRASES: &[Phrase] = &[
    // "stop texting", "quit texting me", "stop messaging me", "stop contacting
    // me", "stop the texts", "stop sending these messages", "end all messages"
    Phrase {
        name: "phrase:stop-texting",
        slots: &[
            &["stop", "quit", "cease", "end", "stopall"],
            WHAT,
            CONTACTING,
        ],
        meaning: Meaning::Revocation,
    },
    Phrase {
        name: "phrase:stop-texting",
        slots: &[&["stop", "quit", "cease", "end", "stopall"], WHAT, MESSAGES],
        meaning: Meaning::Revocation,
    },
    // "do not text me", "don't text me anymore", "never contact me again",
    // "please do not call this number", "don't text me"
    Phrase {
        name: "phrase:do-not-text",
        slots: &[
            &["dont", "not", "never"],
            CONTACT,
            &[
                "me", "us", "this", "again", "anymore", "here", "list", "number", "ever",
            ],
        ],
        meaning: Meaning::Revocation,
    },
    // "no more texts", "no further messages"
    Phrase {
        name: "phrase:no-more-texts",
        slots: &[&["no"], &["more", "further"], MESSAGES],
        meaning: Meaning::Revocation,
    },
    Phrase {
        name: "phrase:leave-me-alone",
        slots: &[&["leave"], &["me", "us"], &["alone"]],
        meaning: Meaning::Revocation,
    },
    // "remove me (from your list)"
    Phrase {
        name: "phrase:remove-me",
        slots: &[&["remove", "delete", "erase"], &["me", "us"]],
        meaning: Meaning::Revocation,
    },
    // "remove my number", "delete this number", "lose my number"
    Phrase {
        name: "phrase:remove-my-number",
        slots: &[
            &["remove", "delete", "erase", "lose", "forget"],
            &["my", "this", "our"],
            &["number", "phone", "cell", "contact", "info"],
        ],
        meaning: Meaning::Revocation,
    },
    // "take me off your list", "get me off this list", "take me out of your system"
    Phrase {
        name: "phrase:take-me-off",
        slots: &[&["take", "get"], &["me", "us"], &["off", "out"]],
        meaning: Meaning::Revocation,
    },
    Phrase {
        name: "phrase:unsubscribe-me",
        slots: &[&["unsubscribe", "unsub"], &["me", "us", "this", "my"]],
        meaning: Meaning::Revocation,
    },
    // "opt me out"
    Phrase {
        name: "phrase:opt-me-out",
        slots: &[&["opt"], &["me", "us"], &["out"]],
        meaning: Meaning::Revocation,
    },
    // "I don't want these messages", "do not want any more texts", "don't
    // want to receive texts"
    Phrase {
        name: "phrase:dont-want-texts",
        slots: &[
            &["dont", "not"],
            &["want", "need"],
            WHAT,
            WHAT, // "any more"
            &["", "to"],
            &["", "receive", "get"],
            MESSAGES,
        ],
        meaning: Meaning::Revocation,
    },
    // The number's holder never consented: revoke (and let review see why).
    Phrase {
        name: "phrase:wrong-number",
        slots: &[&["wrong"], &["number", "num", "person", "no"]],
        meaning: Meaning::Revocation,
    },
    Phrase {
        name: "phrase:cease-and-desist",
        slots: &[&["cease"], &["", "and"], &["desist"]],
        meaning: Meaning::Revocation,
    },
    // "why do you keep texting", "you keep calling me"
    Phrase {
        name: "phrase:keep-texting",
        slots: &[&["keep", "still", "always"], CONTACTING],
        meaning: Meaning::Suspicious,
    },
    // "why are you texting me", "why do you text me"
    Phrase {
        name: "phrase:why-texting",
        slots: &[
            &["why"],
            &["are", "do", "is", "does"],
            &["you", "u", "this", "someone"],
            &[
                "texting",
                "txting",
                "messaging",
                "contacting",
                "calling",
                "text",
                "message",
                "contact",
                "call",
            ],
        ],
        meaning: Meaning::Suspicious,
    },
    // "how did you get my number"
    Phrase {
        name: "phrase:how-got-number",
        slots: &[
            &["how"],
            &["did", "do"],
            &["you", "u"],
            &["get", "have"],
            &["my", "this"],
            &["number"],
        ],
        meaning: Meaning::Suspicious,
    },
    Phrase {
        name: "phrase:not-interested",
        slots: &[&["not"], &["interested"]],
        meaning: Meaning::Suspicious,
    },
    Phrase {
        name: "phrase:too-many-texts",
        slots: &[&["too"], &["many", "much"], MESSAGES],
        meaning: Meaning::Suspicious,
    },
];

/// Classifies an inbound reply (see the module docs for the rules and why).
pub fn classify(text: &str) -> Classified {
    let normalised = Normalised::new(text);
    let words: Vec<&str> = normalised
        .words
        .iter()
        .map(|r| &normalised.buf[r.clone()])
        .collect();
    if words.is_empty() {
        return OTHER;
    }
    let question = normalised.sentences.iter().any(|s| s.question);

    // 2. The whole reply is a keyword.
    if let Some(k) = keyword(&words) {
        match k.reply {
            // "stop?" asks rather than tells: review (64.1200(a)(10): judged
            // by what a reasonable person understands).
            Reply::OptOut { .. } if question => return found(Reply::Ambiguous, k.name),
            // "yes?" is no consent.
            Reply::OptIn if question => {}
            reply => return found(reply, k.name),
        }
    }

    // 3. A revocation phrase anywhere.
    let mut suspicion: Option<&'static str> = None;
    for sentence in &normalised.sentences {
        let sentence = &words[sentence.words.clone()];
        for start in 0..sentence.len() {
            for phrase in PHRASES {
                if matches(phrase.slots, &sentence[start..]).is_none() {
                    continue;
                }
                let negated = start > 0 && NEGATIONS.contains(&sentence[start - 1]);
                if phrase.meaning == Meaning::Revocation && !negated {
                    return found(OPT_OUT, phrase.name);
                }
                suspicion.get_or_insert(phrase.name);
            }
        }
    }

    // 4. One sentence is an opt-out keyword ("STOP. I paid already").
    for sentence in &normalised.sentences {
        if let Some(k) = keyword(&words[sentence.words.clone()])
            && let Reply::OptOut { .. } = k.reply
        {
            if !sentence.question {
                return found(k.reply, k.name);
            }
            suspicion.get_or_insert(k.name);
        }
    }

    // 5. Ambiguous.
    if let Some(name) = suspicion.or_else(|| opt_out_word(&words)) {
        return found(Reply::Ambiguous, name);
    }
    OTHER
}

fn found(reply: Reply, name: &'static str) -> Classified {
    Classified {
        reply,
        keyword: Some(name),
    }
}

/// The keyword that `words` are, alone or with filler (never filler for an
/// opt-in), ignoring repeats ("stop stop").
fn keyword(words: &[&str]) -> Option<&'static Keyword> {
    if let Some(k) = KEYWORDS.iter().find(|k| k.words == words) {
        return Some(k);
    }
    // At most two words remain once the filler is gone ("stop all", "opt out").
    let mut core: [&str; 2] = [""; 2];
    let mut n = 0;
    for &w in words {
        if FILLERS.contains(&w) || (n > 0 && core[n - 1] == w) {
            continue;
        }
        if n == core.len() {
            return None;
        }
        core[n] = w;
        n += 1;
    }
    KEYWORDS
        .iter()
        .find(|k| k.words == &core[..n])
        .filter(|k| k.reply != Reply::OptIn)
}

/// Words consumed if `slots` match at the start of `words`.
fn matches(slots: &[&[&str]], words: &[&str]) -> Option<usize> {
    let Some((slot, rest)) = slots.split_first() else {
        return Some(0);
    };
    if let Some((first, tail)) = words.split_first()
        && slot.contains(first)
        && let Some(n) = matches(rest, tail)
    {
        return Some(n + 1);
    }
    if slot.contains(&"") {
        return matches(rest, words);
    }
    None
}

/// The first opt-out word that makes the reply `Ambiguous` (rule 5).
fn opt_out_word(words: &[&str]) -> Option<&'static str> {
    for (i, &w) in words.iter().enumerate() {
        if let Some(&(_, name)) = STRONG_WORDS.iter().find(|(s, _)| *s == w) {
            let motion = w == "stop" && words.get(i + 1).is_some_and(|n| STOP_MOTION.contains(n));
            if !motion {
                return Some(name);
            }
        }
        if w == "opt" && words.get(i + 1) == Some(&"out") {
            return Some("OPT OUT");
        }
        if words.len() <= SHORT_REPLY_WORDS
            && let Some(&(_, name)) = WEAK_WORDS.iter().find(|(s, _)| *s == w)
        {
            return Some(name);
        }
    }
    None
}

/// A sentence of the reply: a range of words, and whether it ended in `?`.
#[derive(Debug, Clone)]
struct Sentence {
    words: Range<usize>,
    question: bool,
}

/// The reply as lowercase words (ranges into one buffer) grouped in sentences.
#[derive(Debug, Default)]
struct Normalised {
    buf: String,
    words: Vec<Range<usize>>,
    sentences: Vec<Sentence>,
}

/// Folds a character before normalisation: fullwidth ASCII to ASCII (phones
/// with CJK keyboards send "ＳＴＯＰ"), every apostrophe to `'`.
fn fold(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{2018}' | '\u{2019}' | '\u{02BC}' | '\u{2032}' | '`' | '\u{00B4}' => '\'',
        '\u{3002}' | '\u{FF61}' => '.',
        _ => c,
    }
}

impl Normalised {
    fn new(text: &str) -> Self {
        let mut n = Normalised {
            buf: String::with_capacity(text.len()),
            ..Default::default()
        };
        let mut word_start: Option<usize> = None;
        // Where the current sentence's words begin.
        let mut sentence_start = 0;
        let mut question = false;
        let mut sentence_ended = false;
        // The last word of the sentence is a run of single letters ("s t o").
        let mut letter_run = false;
        // The last token read was one letter (so a '.' after it is an
        // abbreviation dot, "S.T.O.P", not a full stop).
        let mut last_single = false;
        let mut chars = text.chars().map(fold).peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                continue; // "don't" → "dont"
            }
            if c == '#' {
                // "wrong #": the sign reads as the word.
                if let Some(start) = word_start.take() {
                    n.push_word(start, &mut letter_run);
                }
                if sentence_ended {
                    n.close_sentence(&mut sentence_start, &mut question);
                    sentence_ended = false;
                    letter_run = false;
                }
                let start = n.buf.len();
                n.buf.push_str("number");
                last_single = n.push_word(start, &mut letter_run);
                continue;
            }
            if c.is_alphanumeric() {
                if word_start.is_none() {
                    if sentence_ended {
                        n.close_sentence(&mut sentence_start, &mut question);
                        sentence_ended = false;
                        letter_run = false;
                    }
                    word_start = Some(n.buf.len());
                }
                n.buf.extend(c.to_lowercase());
                continue;
            }
            if let Some(start) = word_start.take() {
                last_single = n.push_word(start, &mut letter_run);
            }
            match c {
                '?' => {
                    question = true;
                    sentence_ended = true;
                }
                '!' | '\n' | '\r' | '\u{2026}' => sentence_ended = true,
                '.' if !last_single && !chars.peek().is_some_and(|c| c.is_alphanumeric()) => {
                    sentence_ended = true;
                }
                _ => {}
            }
        }
        if let Some(start) = word_start {
            n.push_word(start, &mut letter_run);
        }
        n.close_sentence(&mut sentence_start, &mut question);
        n
    }

    /// Ends the word that began at `start`; joins it to a run of single
    /// letters ("s" "t" "o" "p" → "stop"). Returns whether it was one letter.
    fn push_word(&mut self, start: usize, letter_run: &mut bool) -> bool {
        let word = &self.buf[start..];
        let mut chars = word.chars();
        let single = matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic());
        match self.words.last_mut() {
            // Words sit back to back in `buf`, so joining is moving the end.
            Some(last) if single && *letter_run && last.end == start => last.end = self.buf.len(),
            _ => {
                self.words.push(start..self.buf.len());
                *letter_run = single;
            }
        }
        single
    }

    fn close_sentence(&mut self, start: &mut usize, question: &mut bool) {
        if self.words.len() > *start {
            self.sentences.push(Sentence {
                words: *start..self.words.len(),
                question: *question,
            });
        }
        *start = self.words.len();
        *question = false;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const OUT: Reply = Reply::OptOut { all: false };
    const OUT_ALL: Reply = Reply::OptOut { all: true };
    use Reply::{Ambiguous, Help, OptIn, Other};

    /// (text, expected reply, expected keyword, why). Citations:
    /// - 64.1200(a)(10): 47 CFR 64.1200(a)(10) as amended effective 2025-04-11
    ///   (revocation by any reasonable means; "stop", "quit", "end", "revoke",
    ///   "opt out", "cancel", "unsubscribe" per se);
    /// - CTIA: CTIA Messaging Principles and Best Practices (STOP, STOPALL,
    ///   UNSUBSCRIBE, CANCEL, END, QUIT; START, UNSTOP, YES; HELP, INFO).
    #[rustfmt::skip]
    const ROWS: &[(&str, Reply, Option<&str>, &str)] = &[
        // Keywords per se, with case, punctuation and emoji.
        ("STOP", OUT, Some("STOP"), "64.1200(a)(10) per se; CTIA"),
        ("stop", OUT, Some("STOP"), "case-insensitive (CTIA)"),
        ("Stop!!!", OUT, Some("STOP"), "punctuation stripped"),
        (" stop. ", OUT, Some("STOP"), "whitespace and full stop"),
        ("S.T.O.P", OUT, Some("STOP"), "dotted letters joined"),
        ("S. T. O. P.", OUT, Some("STOP"), "spaced dotted letters joined"),
        ("s t o p", OUT, Some("STOP"), "spaced letters joined"),
        ("STOP \u{1F64F}", OUT, Some("STOP"), "emoji ignored"),
        ("\u{1F6D1}STOP\u{1F6D1}", OUT, Some("STOP"), "emoji around the word"),
        ("Stop, please", OUT, Some("STOP"), "polite filler: still per se (64.1200(a)(10))"),
        ("stop please", OUT, Some("STOP"), "polite filler"),
        ("please stop", OUT, Some("STOP"), "polite filler before"),
        ("STOP!!", OUT, Some("STOP"), "emphasis"),
        ("stop it", OUT, Some("STOP"), "filler 'it'"),
        ("stop now", OUT, Some("STOP"), "filler 'now'"),
        ("Ok stop. Thanks", OUT, Some("STOP"), "filler across sentences"),
        ("stop stop stop", OUT, Some("STOP"), "repeats"),
        ("\u{FF33}\u{FF34}\u{FF2F}\u{FF30}", OUT, Some("STOP"), "fullwidth letters (CJK keyboards)"),
        ("\u{0053}\u{0054}\u{004F}\u{0050}\u{FF01}", OUT, Some("STOP"), "fullwidth exclamation"),
        ("STOPALL", OUT_ALL, Some("STOPALL"), "CTIA STOPALL"),
        ("STOP ALL", OUT_ALL, Some("STOP ALL"), "STOP ALL as two words"),
        ("stop all please", OUT_ALL, Some("STOP ALL"), "STOP ALL with filler"),
        ("Unsubscribe", OUT, Some("UNSUBSCRIBE"), "64.1200(a)(10) per se; CTIA"),
        ("unsub", OUT, Some("UNSUB"), "reasonable means: common abbreviation"),
        ("CANCEL", OUT, Some("CANCEL"), "64.1200(a)(10) per se; CTIA"),
        ("End", OUT, Some("END"), "64.1200(a)(10) per se; CTIA"),
        ("quit", OUT, Some("QUIT"), "64.1200(a)(10) per se; CTIA"),
        ("Revoke", OUT, Some("REVOKE"), "64.1200(a)(10) per se"),
        ("OPTOUT", OUT, Some("OPTOUT"), "carrier keyword"),
        ("opt out", OUT, Some("OPT OUT"), "64.1200(a)(10) per se"),
        ("Opt-Out", OUT, Some("OPT OUT"), "hyphenated"),
        ("OPT-OUT.", OUT, Some("OPT OUT"), "hyphenated with full stop"),
        // Normal-language revocations (64.1200(a)(10): any reasonable means).
        ("stop texting", OUT, Some("phrase:stop-texting"), "64.1200(a)(10) reasonable means"),
        ("Stop messaging me", OUT, Some("phrase:stop-texting"), "64.1200(a)(10) reasonable means"),
        ("stop contacting me", OUT, Some("phrase:stop-texting"), "64.1200(a)(10) reasonable means"),
        ("Quit texting me!", OUT, Some("phrase:stop-texting"), "64.1200(a)(10) reasonable means"),
        ("please stop sending these messages", OUT, Some("phrase:stop-texting"), "64.1200(a)(10)"),
        ("Stop the texts", OUT, Some("phrase:stop-texting"), "64.1200(a)(10)"),
        ("Can you stop texting me?", OUT, Some("phrase:stop-texting"), "a request, even as a question"),
        ("Stop texting me, I already paid", OUT, Some("phrase:stop-texting"), "revocation plus other content"),
        ("Do not text me", OUT, Some("phrase:do-not-text"), "64.1200(a)(10) reasonable means"),
        ("don\u{2019}t text me anymore", OUT, Some("phrase:do-not-text"), "curly apostrophe"),
        ("Dont contact me again", OUT, Some("phrase:do-not-text"), "no apostrophe"),
        ("Never text this number again", OUT, Some("phrase:do-not-text"), "64.1200(a)(10)"),
        ("No more texts", OUT, Some("phrase:no-more-texts"), "64.1200(a)(10) reasonable means"),
        ("no more messages pls", OUT, Some("phrase:no-more-texts"), "64.1200(a)(10)"),
        ("Leave me alone", OUT, Some("phrase:leave-me-alone"), "64.1200(a)(10) reasonable means"),
        ("Remove me from your list", OUT, Some("phrase:remove-me"), "64.1200(a)(10)"),
        ("please delete my number", OUT, Some("phrase:remove-my-number"), "64.1200(a)(10)"),
        ("Take me off your list", OUT, Some("phrase:take-me-off"), "64.1200(a)(10)"),
        ("unsubscribe me", OUT, Some("UNSUBSCRIBE"), "keyword with filler 'me'"),
        ("Please unsubscribe me from this", OUT, Some("phrase:unsubscribe-me"), "64.1200(a)(10)"),
        ("opt me out", OUT, Some("OPT OUT"), "OPT OUT with filler 'me'"),
        ("Can you opt me out of these", OUT, Some("phrase:opt-me-out"), "64.1200(a)(10)"),
        ("I don't want these messages", OUT, Some("phrase:dont-want-texts"), "64.1200(a)(10) reasonable means"),
        ("I do not want any more texts", OUT, Some("phrase:dont-want-texts"), "64.1200(a)(10) reasonable means"),
        ("i dont want to receive texts", OUT, Some("phrase:dont-want-texts"), "64.1200(a)(10)"),
        ("Wrong number", OUT, Some("phrase:wrong-number"), "the holder never consented"),
        ("You have the wrong #", OUT, Some("phrase:wrong-number"), "# reads as number"),
        ("This is a cease and desist", OUT, Some("phrase:cease-and-desist"), "64.1200(a)(10)"),
        // A sentence that is a keyword.
        ("STOP. I already paid.", OUT, Some("STOP"), "per se keyword as its own sentence"),
        ("I paid yesterday. Cancel!", OUT, Some("CANCEL"), "per se keyword as its own sentence"),
        ("Who is this?\nSTOP", OUT, Some("STOP"), "keyword on its own line"),
        // Ambiguous: review, which holds sends.
        ("stop?", Ambiguous, Some("STOP"), "a question, not a request (reasonable-person test)"),
        ("STOP?!", Ambiguous, Some("STOP"), "question with emphasis"),
        ("can you stop", Ambiguous, Some("STOP"), "opt-out word, unclear object"),
        ("STOP what", Ambiguous, Some("STOP"), "opt-out word, unclear"),
        ("Stop? I paid.", Ambiguous, Some("STOP"), "keyword sentence asked as a question"),
        ("why do you keep texting", Ambiguous, Some("phrase:keep-texting"), "complaint without an opt-out word"),
        ("Why are you texting me?", Ambiguous, Some("phrase:why-texting"), "complaint"),
        ("how did you get my number", Ambiguous, Some("phrase:how-got-number"), "suggests no consent"),
        ("Not interested", Ambiguous, Some("phrase:not-interested"), "may be a revocation"),
        ("please don't stop texting me", Ambiguous, Some("phrase:stop-texting"), "negated revocation phrase"),
        ("I want this to stop, I have told you many times", Ambiguous, Some("STOP"), "strong word in a long reply"),
        ("I am going to unsubscribe from everything you send", Ambiguous, Some("UNSUBSCRIBE"), "strong word"),
        ("cancel my payment", Ambiguous, Some("CANCEL"), "weak word in a short reply"),
        ("can I quit?", Ambiguous, Some("QUIT"), "weak word in a short reply"),
        ("opt out?", Ambiguous, Some("OPT OUT"), "question"),
        // Other.
        ("I'll stop by the branch tomorrow to pay", Other, None, "stop as a verb of motion"),
        ("Can I stop in on Monday?", Other, None, "stop as a verb of motion"),
        ("I quit my job so I can only pay at the end of the month", Other, None, "weak words in a long sentence"),
        ("Ok thanks", Other, None, "acknowledgement"),
        ("Yes I paid", Other, None, "YES only as the whole reply"),
        ("yes?", Other, None, "a question is no consent"),
        ("start please", Other, None, "opt-in takes no filler: re-consent must be unmistakable"),
        ("Who is this?", Other, None, "question, no opt-out word"),
        ("", Other, None, "empty"),
        ("   ", Other, None, "whitespace only"),
        ("\u{1F44D}", Other, None, "emoji only"),
        ("?!.", Other, None, "punctuation only"),
        ("nonstop", Other, None, "not the word stop"),
        ("stopping by later", Other, None, "not the word stop"),
        // Opt-in (CTIA) and help (CTIA).
        ("START", OptIn, Some("START"), "CTIA opt-in"),
        ("Start.", OptIn, Some("START"), "CTIA opt-in with full stop"),
        ("unstop", OptIn, Some("UNSTOP"), "CTIA opt-in"),
        ("YES", OptIn, Some("YES"), "CTIA opt-in, exactly"),
        ("yes!", OptIn, Some("YES"), "exclamation is not doubt"),
        ("HELP", Help, Some("HELP"), "CTIA help"),
        ("help?", Help, Some("HELP"), "a question for help is still help"),
        ("Info", Help, Some("INFO"), "CTIA help"),
        ("help me please", Help, Some("HELP"), "filler"),
    ];

    #[test]
    fn classification_table() {
        let mut failures = Vec::new();
        for &(text, reply, keyword, why) in ROWS {
            let got = classify(text);
            let want = Classified { reply, keyword };
            if got != want {
                failures.push(format!("{text:?} ({why}): got {got:?}, want {want:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} rows failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn normalisation() {
        let words = |t: &str| {
            let n = Normalised::new(t);
            n.words
                .iter()
                .map(|r| n.buf[r.clone()].to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words("Don\u{2019}t STOP-ALL!! \u{1F64F}"),
            ["dont", "stop", "all"]
        );
        assert_eq!(words("S.T.O.P now"), ["stop", "now"]);
        assert_eq!(words("\u{FF33}\u{FF54}\u{FF4F}\u{FF50}"), ["stop"]);
        assert_eq!(words("$3.50 due"), ["3", "50", "due"]);
        assert_eq!(words("I am"), ["i", "am"]);
        let sentences = |t: &str| {
            Normalised::new(t)
                .sentences
                .iter()
                .map(|s| (s.words.clone(), s.question))
                .collect::<Vec<_>>()
        };
        assert_eq!(sentences("Stop. I paid?"), [(0..1, false), (1..3, true)]);
        assert_eq!(sentences("S.T.O.P"), [(0..1, false)]);
        assert_eq!(sentences("?? stop"), [(0..1, false)]);
    }

    const DECORATION: &[char] = &[
        ' ',
        '.',
        '!',
        ',',
        '*',
        '"',
        '\n',
        '\u{1F64F}',
        '\u{1F6D1}',
        '\u{2019}',
        '-',
    ];

    proptest! {
        /// STOP in any letter case, wrapped in any punctuation, emoji or
        /// whitespace that does not make it a question, is a revocation per se
        /// (64.1200(a)(10); CTIA).
        #[test]
        fn decorated_stop_is_opt_out(
            upper in proptest::collection::vec(any::<bool>(), 4),
            fullwidth in any::<bool>(),
            before in proptest::collection::vec(proptest::sample::select(DECORATION), 0..6),
            after in proptest::collection::vec(proptest::sample::select(DECORATION), 0..6),
        ) {
            let word: String = "stop"
                .chars()
                .zip(&upper)
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                .map(|c| if fullwidth { char::from_u32(c as u32 + 0xFEE0).unwrap() } else { c })
                .collect();
            let text: String = before.iter().chain(word.chars().collect::<Vec<_>>().iter()).chain(&after).collect();
            prop_assert_eq!(classify(&text), Classified { reply: OUT, keyword: Some("STOP") }, "{:?}", text);
        }

        /// Any text classifies without panicking, and only keyword-free
        /// classifications come without evidence.
        #[test]
        fn any_text_classifies(text in any::<String>()) {
            let c = classify(&text);
            prop_assert_eq!(c.keyword.is_none(), c.reply == Other);
        }
    }

    #[test]
    fn reply_names() {
        assert_eq!(Reply::OptOut { all: true }.as_str(), "opt_out_all");
        assert_eq!(Reply::Ambiguous.as_str(), "ambiguous");
    }
}
