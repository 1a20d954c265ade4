//! Opt-out instructions in outgoing texts.
//!
//! Reg F 12 CFR 1006.6(e): a debt collector's electronic communication must
//! include a clear and conspicuous statement of a reasonable and simple way to
//! opt out (the CFPB's example: "Reply STOP to stop texts to this telephone
//! number"). CTIA's Messaging Principles expect the same of marketing texts.
//! Herald appends the tenant's instruction when the body does not already
//! carry one.
//!
//! Deciding "already carries one" wrongly in the permissive direction is the
//! costly mistake (a collections text without an opt-out), while the other
//! direction only repeats an instruction; so a body counts as instructed only
//! when it names an opt-out keyword right after an instruction verb ("Reply
//! STOP", "text END", "reply with \"QUIT\"") or right before what it does
//! ("STOP to opt out", "STOP to end"). A body that merely uses the word
//! ("don't stop paying", "stop by our branch") does not count.

use std::borrow::Cow;

/// Verbs that introduce the keyword a reader should send.
const VERBS: &[&str] = &["reply", "respond", "text", "txt", "send", "sms"];

/// CTIA / carrier opt-out keywords (docs/compliance.md#carrier-rules), plus
/// REVOKE (47 CFR 64.1200(a)(10)).
const KEYWORDS: &[&str] = &[
    "stop",
    "stopall",
    "end",
    "quit",
    "cancel",
    "unsubscribe",
    "optout",
    "revoke",
];

/// What follows "KEYWORD to" in "STOP to opt out" / "STOP to end" / "STOP to
/// stop texts".
const PURPOSES: &[&str] = &[
    "opt",
    "optout",
    "end",
    "unsubscribe",
    "cancel",
    "quit",
    "stop",
];

/// Words that, right before "KEYWORD to …", make it a sentence rather than an
/// instruction ("don't stop to …": "don" "t" once the apostrophe splits it).
const NEGATIONS: &[&str] = &["t", "not", "never", "dont", "cant", "wont"];

fn is_in(word: &str, set: &[&str]) -> bool {
    set.iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// A word of the body and whether only "soft" characters (spaces, quotes,
/// hyphens, colons, asterisks) separate it from the word before: `Reply
/// "STOP"` links the two words, `We text. Stop by` does not.
#[derive(Debug, Clone, Copy, Default)]
struct Word<'a> {
    text: &'a str,
    linked: bool,
}

/// Words of a body: runs of ASCII letters and digits. Allocation-free.
struct Words<'a> {
    rest: &'a str,
}

fn is_soft_gap(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\''
                | '-'
                | ':'
                | '*'
                | '`'
                | '\u{2018}'
                | '\u{2019}'
                | '\u{201C}'
                | '\u{201D}'
                | '\u{00AB}'
                | '\u{00BB}'
        )
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        let start = self.rest.find(|c: char| c.is_ascii_alphanumeric())?;
        let (gap, rest) = self.rest.split_at(start);
        let len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (text, rest) = rest.split_at(len);
        self.rest = rest;
        Some(Word {
            text,
            linked: gap.chars().all(is_soft_gap),
        })
    }
}

/// True when `body` already tells the reader how to opt out (Reg F
/// 1006.6(e); CTIA): "Reply STOP", "Text STOP to 12345", "txt STOP to end",
/// "reply with 'QUIT'", "STOP to opt out", "Reply END to cancel"…;
/// case-insensitive; no allocation.
pub fn has_opt_out_instruction(body: &str) -> bool {
    // The last four words, newest last.
    let mut w: [Word<'_>; 4] = [Word::default(); 4];
    for word in (Words { rest: body }) {
        w = [w[1], w[2], w[3], word];
        let [w0, w1, w2, w3] = w;
        // "Reply STOP", "text 'END'"
        if is_in(w2.text, VERBS) && w3.linked && is_in(w3.text, KEYWORDS) {
            return true;
        }
        // "Reply with STOP", "Reply OPT OUT"
        if is_in(w1.text, VERBS)
            && w2.linked
            && w3.linked
            && ((w2.text.eq_ignore_ascii_case("with") && is_in(w3.text, KEYWORDS))
                || (w2.text.eq_ignore_ascii_case("opt") && w3.text.eq_ignore_ascii_case("out")))
        {
            return true;
        }
        // "STOP to opt out", "STOP to end", unless "don't stop to …"
        if is_in(w1.text, KEYWORDS)
            && w2.linked
            && w2.text.eq_ignore_ascii_case("to")
            && w3.linked
            && is_in(w3.text, PURPOSES)
            && !(w1.linked && is_in(w0.text, NEGATIONS))
        {
            return true;
        }
    }
    false
}

/// `body` with `instruction` appended (Reg F 1006.6(e)) unless it already
/// has one. The instruction follows after one space, or directly when the
/// body already ends in whitespace (a newline keeps the instruction on its
/// own line); an empty body becomes the instruction alone.
pub fn with_opt_out<'a>(body: &'a str, instruction: &str) -> Cow<'a, str> {
    if instruction.is_empty() || has_opt_out_instruction(body) {
        return Cow::Borrowed(body);
    }
    let mut out = String::with_capacity(body.len() + 1 + instruction.len());
    out.push_str(body);
    if body.chars().next_back().is_some_and(|c| !c.is_whitespace()) {
        out.push(' ');
    }
    out.push_str(instruction);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REG_F: &str = "Reply STOP to stop texts to this telephone number.";

    /// (body, expected, why). Reg F 1006.6(e) requires a clear opt-out
    /// instruction in collections texts; CTIA in marketing texts.
    #[test]
    fn detection_rows() {
        let rows: &[(&str, bool, &str)] = &[
            (REG_F, true, "the CFPB's own model wording (1006.6(e))"),
            ("Payment due 5/1. reply stop to opt out", true, "lowercase"),
            ("Reply \"STOP\" to unsubscribe", true, "quoted keyword"),
            (
                "Reply \u{201C}STOP\u{201D} to end",
                true,
                "curly-quoted keyword",
            ),
            ("Text STOP to 55555 to opt out.", true, "text STOP"),
            ("Txt STOP to end", true, "txt STOP"),
            ("Send STOP to cancel", true, "send STOP"),
            ("Respond STOP to quit", true, "respond STOP"),
            ("Reply with STOP to opt out", true, "reply with STOP"),
            (
                "Reply END to stop these messages",
                true,
                "END is a CTIA keyword",
            ),
            ("Reply QUIT to stop", true, "QUIT"),
            ("Reply CANCEL anytime", true, "CANCEL"),
            ("Reply UNSUBSCRIBE to stop", true, "UNSUBSCRIBE"),
            ("Reply STOPALL to stop all", true, "STOPALL"),
            ("Reply OPT OUT to stop", true, "OPT OUT as two words"),
            ("Reply: STOP", true, "colon after the verb"),
            (
                "Msg&data rates may apply. STOP to opt out.",
                true,
                "STOP to opt out",
            ),
            (
                "Msg&data rates may apply. STOP to opt-out",
                true,
                "STOP to opt-out",
            ),
            ("HELP for help, STOP to end", true, "STOP to end"),
            (
                "Your balance is $20. QUIT to unsubscribe",
                true,
                "QUIT to unsubscribe",
            ),
            (
                "Hi Ana, we will text. Stop by our branch",
                false,
                "sentence break between verb and keyword",
            ),
            (
                "Please don't stop paying your loan",
                false,
                "merely uses the word",
            ),
            (
                "Please stop by the branch to end your plan",
                false,
                "stop by, not an instruction",
            ),
            (
                "Don't stop to cancel your card",
                false,
                "negated 'stop to cancel'",
            ),
            (
                "Reply to this text to stop reminders",
                false,
                "names no keyword",
            ),
            (
                "Reply with your payment date",
                false,
                "reply with something else",
            ),
            ("Call us to stop payments", false, "no keyword after a verb"),
            ("Your payment is due.", false, "no instruction at all"),
            ("", false, "empty body"),
            ("Replystop", false, "one word, not an instruction"),
            ("Reply STOPPED", false, "not a keyword"),
        ];
        for &(body, want, why) in rows {
            assert_eq!(has_opt_out_instruction(body), want, "{why}: {body:?}");
        }
    }

    /// (body, expected result, why).
    #[test]
    fn append_rows() {
        let rows: &[(&str, &str, &str)] = &[
            (
                "Your payment is due 5/1.",
                "Your payment is due 5/1. Reply STOP to stop texts to this telephone number.",
                "one space",
            ),
            (
                "Your payment is due.\n",
                "Your payment is due.\nReply STOP to stop texts to this telephone number.",
                "the newline separates",
            ),
            (
                "Your payment is due. ",
                "Your payment is due. Reply STOP to stop texts to this telephone number.",
                "no double space",
            ),
            ("", REG_F, "empty body gets the instruction alone"),
            (
                "Due 5/1. Reply STOP to opt out",
                "Due 5/1. Reply STOP to opt out",
                "already instructed: unchanged",
            ),
        ];
        for &(body, want, why) in rows {
            assert_eq!(with_opt_out(body, REG_F), want, "{why}");
        }
        assert!(matches!(
            with_opt_out("Reply STOP to end", REG_F),
            Cow::Borrowed(_)
        ));
        assert!(matches!(with_opt_out("Due 5/1.", ""), Cow::Borrowed(_)));
        // What Herald appends is itself detected: appending is idempotent.
        let once = with_opt_out("Due 5/1.", REG_F).into_owned();
        assert_eq!(with_opt_out(&once, REG_F), once);
    }
}
