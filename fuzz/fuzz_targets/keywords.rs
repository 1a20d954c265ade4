//! The inbound keyword classifier (docs/compliance.md#inbound-keywords):
//! any text classifies without panicking, and what `keywords.rs` promises
//! holds for it.
#![no_main]

use herald_engine::inbound::keywords::{Reply, classify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let c = classify(&text);
    // Evidence is `None` exactly for `Other`.
    assert_eq!(
        c.keyword.is_none(),
        c.reply == Reply::Other,
        "{text:?}: {c:?}"
    );
    // Normalising lowercases first: letter case never changes the answer.
    assert_eq!(
        classify(&text.to_ascii_uppercase()),
        c,
        "{text:?} upper-cased"
    );
    assert_eq!(
        classify(&text.to_ascii_lowercase()),
        c,
        "{text:?} lower-cased"
    );
    // Whitespace only separates words: more of it at either end changes
    // nothing.
    assert_eq!(classify(&format!(" {text} ")), c, "{text:?} padded");
});
