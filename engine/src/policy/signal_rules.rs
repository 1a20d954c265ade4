//! The rules of `signals` (the reader of `herald:signals`): which actions an
//! upstream event takes, built in or from a tenant's `[signals.<tenant>]`
//! in the policy document (checked by `document::compile`).

use std::collections::{BTreeMap, HashMap};

/// What a signal may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the sequences the signal names: its `sequence`, else those of
    /// its `debt_id`, else every sequence of the tenant to its `to`.
    CancelSequences,
    /// No collections text to `to` from now on (and its sequences end).
    SuppressCollections,
    /// Enrol `to` in this schedule (needs `anchor`; `vars` as given).
    StartSequence(String),
    /// Send this template to `to` (with `vars`).
    Send(String),
}

impl Action {
    /// Parse `cancel_sequences`, `suppress_collections`,
    /// `start_sequence:<schedule>`, `send:<template>`.
    pub fn parse(s: &str) -> Result<Action, String> {
        match s.split_once(':') {
            None if s == "cancel_sequences" => Ok(Action::CancelSequences),
            None if s == "suppress_collections" => Ok(Action::SuppressCollections),
            Some(("start_sequence", n)) if !n.is_empty() => Ok(Action::StartSequence(n.into())),
            Some(("send", n)) if !n.is_empty() => Ok(Action::Send(n.into())),
            _ => Err(format!(
                "`{s}` is not an action: cancel_sequences, suppress_collections, start_sequence:<schedule>, send:<template>"
            )),
        }
    }
}

/// The built-in rules, for a tenant whose policy does not name the event.
pub fn built_in(event: &str) -> &'static [Action] {
    const CANCEL: &[Action] = &[Action::CancelSequences];
    const CEASE: &[Action] = &[Action::SuppressCollections];
    match event {
        // "Paid" beats "send".
        "payment_received" => CANCEL,
        // 15 U.S.C. 1692c(c), 11 U.S.C. 362, 15 U.S.C. 1692g(b).
        "cease_communication" | "bankruptcy" | "dispute" => CEASE,
        _ => &[],
    }
}

/// The known event names (a tenant may define others in its rules).
pub const EVENTS: [&str; 6] = [
    "payment_received",
    "payment_failed",
    "promise_to_pay",
    "dispute",
    "cease_communication",
    "bankruptcy",
];

/// `[signals.<tenant>]` of the policy document: event → actions.
pub type RulesSection = BTreeMap<String, Vec<String>>;

pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Check the rules section of one tenant (`signals.<tenant>`).
pub fn check_rules(
    key: &str,
    rules: &RulesSection,
    has_schedule: impl Fn(&str) -> bool,
    has_template: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Vec<Action>>, (String, String)> {
    let mut out = HashMap::new();
    for (event, actions) in rules {
        let k = format!("{key}.{event}");
        if !valid_name(event) {
            return Err((
                k,
                "an event name is 1–64 lower-case letters, digits, `_`".into(),
            ));
        }
        let mut v = Vec::with_capacity(actions.len());
        for (i, a) in actions.iter().enumerate() {
            let a = Action::parse(a).map_err(|e| (format!("{k}[{i}]"), e))?;
            match &a {
                Action::StartSequence(s) if !has_schedule(s) => {
                    return Err((format!("{k}[{i}]"), format!("no schedule `{s}`")));
                }
                Action::Send(t) if !has_template(t) => {
                    return Err((format!("{k}[{i}]"), format!("no template `{t}`")));
                }
                _ => {}
            }
            v.push(a);
        }
        out.insert(event.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_or_say_why_not() {
        assert_eq!(
            Action::parse("cancel_sequences"),
            Ok(Action::CancelSequences)
        );
        assert_eq!(
            Action::parse("start_sequence:payment_reminder"),
            Ok(Action::StartSequence("payment_reminder".into()))
        );
        assert_eq!(Action::parse("send:late"), Ok(Action::Send("late".into())));
        for bad in ["", "cancel", "send:", "start_sequence", "delete_everything"] {
            assert!(Action::parse(bad).is_err(), "{bad}");
        }
    }

    /// The built-in rules, with the law each one follows.
    #[test]
    fn the_built_in_rules() {
        let cases: &[(&str, &[Action], &str)] = &[
            (
                "payment_received",
                &[Action::CancelSequences],
                "paid beats send",
            ),
            (
                "cease_communication",
                &[Action::SuppressCollections],
                "15 U.S.C. 1692c(c)",
            ),
            (
                "bankruptcy",
                &[Action::SuppressCollections],
                "11 U.S.C. 362",
            ),
            (
                "dispute",
                &[Action::SuppressCollections],
                "15 U.S.C. 1692g(b)",
            ),
            ("payment_failed", &[], "a tenant rule decides"),
            ("promise_to_pay", &[], "a tenant rule decides"),
        ];
        for (event, want, why) in cases {
            assert_eq!(built_in(event), *want, "{event}: {why}");
        }
        assert_eq!(cases.len(), EVENTS.len());
    }
}
