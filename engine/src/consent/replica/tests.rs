use std::collections::HashMap as ModelMap;
use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;

use super::base::{NUMBER_LIMIT, TenantBase, pack};
use super::*;
use crate::consent::ConsentKind::{Express, ExpressWritten};
use crate::model::Category::{self, Collections, Marketing, Transactional};

const PURPOSES: [Category; 3] = [Transactional, Collections, Marketing];

fn state(t: PurposeState, c: PurposeState, m: PurposeState) -> NumberState {
    NumberState::DEFAULT
        .with(Transactional, t)
        .with(Collections, c)
        .with(Marketing, m)
}

/// Every one of the 5^3 states.
fn all_states() -> impl Iterator<Item = NumberState> {
    PurposeState::ALL.into_iter().flat_map(|t| {
        PurposeState::ALL
            .into_iter()
            .flat_map(move |c| PurposeState::ALL.into_iter().map(move |m| state(t, c, m)))
    })
}

fn revoked() -> NumberState {
    state(
        PurposeState::Revoked,
        PurposeState::Revoked,
        PurposeState::Revoked,
    )
}

use PurposeState::{Granted, Review, Revoked, Unknown};

fn rec(tenant: &str, number: u64, state: NumberState) -> (String, u64, NumberState) {
    (tenant.to_owned(), number, state)
}

// ---- NumberState and its text form ----

#[test]
fn text_form_of_ledger_states() {
    // (case, state, text) — each row a state the ledger records.
    let rows = [
        (
            "nothing on file (docs/compliance.md: unknown)",
            NumberState::DEFAULT,
            "t=u,c=u,m=u",
        ),
        (
            "number given for the account: prior express consent, 47 USC 227(b)(1)(A)(iii)",
            state(Granted(Express), Granted(Express), Unknown),
            "t=e,c=e,m=u",
        ),
        (
            "marketing opt-in: prior express written consent, 64.1200(a)(2), (f)(9)",
            state(Granted(Express), Granted(Express), Granted(ExpressWritten)),
            "t=e,c=e,m=w",
        ),
        (
            "STOP revokes every purpose, 64.1200(a)(10)",
            state(Revoked, Revoked, Revoked),
            "t=r,c=r,m=r",
        ),
        (
            "STOP scoped to marketing by tenant policy (docs/compliance.md)",
            state(Granted(Express), Granted(Express), Revoked),
            "t=e,c=e,m=r",
        ),
        (
            "ambiguous reply held for review, 64.1200(a)(10) reasonable person",
            state(Review, Review, Review),
            "t=h,c=h,m=h",
        ),
    ];
    for (case, state, text) in rows {
        assert_eq!(state.to_string(), text, "{case}");
        assert_eq!(text.parse::<NumberState>(), Ok(state), "{case}");
        assert_eq!(
            format!("{state:?}"),
            format!("NumberState({text})"),
            "{case}"
        );
    }
}

#[test]
fn every_state_round_trips_and_keeps_purposes_apart() {
    let mut seen = std::collections::HashSet::new();
    for s in all_states() {
        let text = s.to_string();
        assert_eq!(text.parse::<NumberState>(), Ok(s), "{text}");
        assert!(seen.insert(text.clone()), "{text} written for two states");
        assert_eq!(s.is_default(), text == "t=u,c=u,m=u", "{text}");
        // Setting one purpose leaves the others alone, for every value.
        for purpose in PURPOSES {
            for value in PurposeState::ALL {
                let changed = s.with(purpose, value);
                for other in PURPOSES {
                    let expected = if other == purpose {
                        value
                    } else {
                        s.get(other)
                    };
                    assert_eq!(changed.get(other), expected, "{text} with {purpose:?}");
                }
            }
        }
    }
    assert_eq!(seen.len(), 125);
}

#[test]
fn text_form_takes_purposes_in_any_order() {
    assert_eq!(
        "m=w,t=e,c=r".parse::<NumberState>(),
        Ok(state(Granted(Express), Revoked, Granted(ExpressWritten)))
    );
}

#[test]
fn text_form_rejects_anything_else() {
    // (input, why it is refused) — the value is written by Herald, so a
    // wrong one is corruption to report, never a state to guess.
    let rows = [
        ("", "empty"),
        (
            "t=u,c=u",
            "marketing missing: silently unknown would allow nothing wrong but hides corruption",
        ),
        ("t=u,c=u,m=u,m=r", "purpose twice: which one holds?"),
        ("t=u,c=u,m=x", "unknown code"),
        ("t=u,c=u,m=", "empty code"),
        ("t=u,c=u,m=rr", "two-letter code"),
        ("t=u,c=u,x=r", "unknown purpose"),
        ("t=u,c=u,marketing=r", "long purpose name"),
        ("t=u, c=u,m=u", "space"),
        ("t=u,c=u,m=u,", "trailing comma"),
        ("t=u;c=u;m=u", "wrong separator"),
        ("tu,c=u,m=u", "no `=`"),
        ("T=U,C=U,M=U", "upper case"),
    ];
    for (input, why) in rows {
        let err = input.parse::<NumberState>().expect_err(why);
        assert_eq!(err.input, input, "{why}");
        assert!(err.to_string().contains("t=e,c=e,m=w"), "{why}: {err}");
    }
}

// ---- The tenant base ----

#[test]
fn base_index_finds_every_entry_and_nothing_else() {
    // (case, numbers): shapes that stress the radix index.
    let rows: [(&str, Vec<u64>); 7] = [
        ("one entry", vec![14155550123]),
        ("two adjacent", vec![14155550123, 14155550124]),
        ("dense run", (14155550000..14155551000).collect()),
        (
            "sparse US numbers",
            (0..5000).map(|i| 12015550000 + i * 1_600_037).collect(),
        ),
        (
            "US and UK: one huge span, clustered ends",
            (0..3000)
                .map(|i| 14155550000 + i)
                .chain((0..3000).map(|i| 447700900000 + i * 7))
                .collect(),
        ),
        (
            "the full E.164 range",
            vec![10_000_000, 123_456_789_012, NUMBER_LIMIT - 1],
        ),
        ("zero", vec![0, 1, 2]),
    ];
    for (case, numbers) in rows {
        let st = revoked();
        let base = TenantBase::from_unsorted(numbers.iter().map(|&n| pack(n, st)).collect());
        assert_eq!(base.len(), numbers.len(), "{case}");
        assert!(
            base.buckets() <= numbers.len().max(8),
            "{case}: {}",
            base.buckets()
        );
        for &n in &numbers {
            assert_eq!(base.get(n), st, "{case}: {n}");
            if !numbers.contains(&(n + 1)) {
                assert!(base.get(n + 1).is_default(), "{case}: {}", n + 1);
            }
            if n > 0 && !numbers.contains(&(n - 1)) {
                assert!(base.get(n - 1).is_default(), "{case}: {}", n - 1);
            }
        }
        for miss in [0, 1, NUMBER_LIMIT, u64::MAX] {
            if !numbers.contains(&miss) {
                assert!(base.get(miss).is_default(), "{case}: {miss}");
            }
        }
    }
    for miss in [0, 14155550123, u64::MAX] {
        assert!(TenantBase::empty().get(miss).is_default(), "{miss}");
    }
}

#[test]
fn base_merge_inserts_replaces_and_removes() {
    let e = state(Granted(Express), Unknown, Unknown);
    let r = revoked();
    let base = TenantBase::from_unsorted(vec![pack(10, e), pack(20, e), pack(30, e)]);
    let merged = base.merged(&[
        (5, r),                     // before the first
        (20, NumberState::DEFAULT), // removed
        (25, r),                    // between
        (30, r),                    // replaced
        (40, NumberState::DEFAULT), // removing an absent number: nothing
        (50, r),                    // after the last
    ]);
    let got: Vec<(u64, NumberState)> = (0..=60)
        .map(|n| (n, merged.get(n)))
        .filter(|(_, s)| !s.is_default())
        .collect();
    assert_eq!(got, vec![(5, r), (10, e), (25, r), (30, r), (50, r)]);
    assert_eq!(merged.len(), 5);
}

// ---- The replica ----

#[test]
fn from_records_last_record_wins_and_default_removes() {
    let e = state(Granted(Express), Granted(Express), Unknown);
    let replica = Replica::from_records([
        rec("acme", 14155550001, e),
        rec("acme", 14155550002, e),
        rec("acme", 14155550001, revoked()),
        rec("acme", 14155550002, NumberState::DEFAULT),
        rec("globex", 14155550002, e),
        rec("acme", 14155550003, NumberState::DEFAULT),
    ]);
    assert_eq!(replica.lookup("acme", 14155550001), revoked());
    assert!(replica.lookup("acme", 14155550002).is_default());
    assert!(replica.lookup("acme", 14155550003).is_default());
    assert_eq!(replica.lookup("globex", 14155550002), e);
    // Tenants are separate ledgers: no leak across them.
    assert!(replica.lookup("globex", 14155550001).is_default());
    assert!(replica.lookup("initech", 14155550001).is_default());
    assert!(replica.lookup("", 14155550001).is_default());
    assert_eq!(replica.len(), 2);
    assert!(replica.heap_bytes() > 0);
}

#[test]
fn apply_is_visible_at_once_through_the_overlay() {
    let e = state(Granted(Express), Granted(Express), Unknown);
    let replica = Replica::from_records([rec("acme", 14155550001, e)]);
    let before = replica.snapshot();
    replica.apply(&[
        // A STOP taken by another instance (64.1200(a)(10), (a)(11)).
        rec("acme", 14155550001, revoked()),
        rec("acme", 14155550002, e),
        rec("newco", 14155550001, e),
    ]);
    assert_eq!(replica.lookup("acme", 14155550001), revoked());
    assert_eq!(replica.lookup("acme", 14155550002), e);
    assert_eq!(replica.lookup("newco", 14155550001), e);
    assert_eq!(replica.len(), 3);
    assert_eq!(replica.snapshot().overlay.len(), 3, "not merged yet");
    // A snapshot taken before is a consistent old state.
    assert_eq!(before.lookup("acme", 14155550001), e);
    assert!(before.lookup("newco", 14155550001).is_default());
    assert_eq!(before.len(), 1);
    // An empty batch changes nothing.
    replica.apply(&[]);
    assert_eq!(replica.len(), 3);
}

#[test]
fn change_to_default_overrides_the_base_and_is_dropped_at_merge() {
    let mut replica = Replica::from_records([
        rec("acme", 14155550001, revoked()),
        rec("acme", 14155550002, revoked()),
    ]);
    replica.merge_floor = 2;
    // A revocation withdrawn (START, 64.1200(a)(10) opt back in) leaves
    // nothing on file: the base's entry must not show through.
    replica.apply(&[rec("acme", 14155550001, NumberState::DEFAULT)]);
    assert!(replica.lookup("acme", 14155550001).is_default());
    assert_eq!(replica.lookup("acme", 14155550002), revoked());
    assert_eq!(replica.len(), 1);
    assert_eq!(
        replica.snapshot().overlay.len(),
        1,
        "the override is stored"
    );
    // A default for a number the base does not hold needs no override.
    replica.apply(&[rec("acme", 14155550009, NumberState::DEFAULT)]);
    assert_eq!(replica.snapshot().overlay.len(), 1);
    // Two more changes pass the floor of 2: merged.
    let e = state(Granted(Express), Unknown, Unknown);
    replica.apply(&[rec("acme", 14155550003, e), rec("acme", 14155550004, e)]);
    let view = replica.snapshot();
    assert!(view.overlay.is_empty(), "merged");
    assert_eq!(view.catalog.base_len, 3, "the default entry was dropped");
    assert!(replica.lookup("acme", 14155550001).is_default());
    assert_eq!(replica.lookup("acme", 14155550002), revoked());
    assert_eq!(replica.lookup("acme", 14155550003), e);
    assert_eq!(replica.len(), 3);
}

#[test]
fn merge_keeps_every_state_and_shares_unchanged_tenants() {
    let mut replica =
        Replica::from_records((0..1000).map(|i| rec("big", 12015550000 + i * 3, revoked())));
    replica.merge_floor = 100;
    replica.apply(&[rec("small", 1, revoked())]);
    let big_before = Arc::clone(&replica.snapshot().catalog.bases[0]);
    let e = state(Granted(Express), Unknown, Unknown);
    let changes: Vec<_> = (0..150).map(|i| rec("small", 100 + i, e)).collect();
    replica.apply(&changes);
    let view = replica.snapshot();
    assert!(view.overlay.is_empty(), "merged");
    assert!(
        Arc::ptr_eq(&view.catalog.bases[0], &big_before),
        "an unchanged tenant's base is shared, not copied"
    );
    for i in 0..1000 {
        assert_eq!(replica.lookup("big", 12015550000 + i * 3), revoked());
        assert!(replica.lookup("big", 12015550001 + i * 3).is_default());
    }
    for i in 0..150 {
        assert_eq!(replica.lookup("small", 100 + i), e);
    }
    assert_eq!(replica.lookup("small", 1), revoked());
    assert_eq!(replica.len(), 1151);
}

#[test]
fn many_tenants_stay_apart() {
    let mut replica = Replica::from_records((0..500u64).map(|t| {
        let s = NumberState::DEFAULT.with(Marketing, PurposeState::ALL[(t % 5) as usize]);
        (format!("tenant-{t}"), 14155550000 + t, s)
    }));
    replica.merge_floor = 64;
    let changes: Vec<_> = (500..1000u64)
        .map(|t| (format!("tenant-{t}"), 14155550000 + t, revoked()))
        .collect();
    for batch in changes.chunks(50) {
        replica.apply(batch);
    }
    for t in 0..1000u64 {
        let expected = if t < 500 {
            NumberState::DEFAULT.with(Marketing, PurposeState::ALL[(t % 5) as usize])
        } else {
            revoked()
        };
        let name = format!("tenant-{t}");
        assert_eq!(replica.lookup(&name, 14155550000 + t), expected, "{name}");
        assert!(
            replica.lookup(&name, 14155550000 + t + 1).is_default(),
            "{name}"
        );
    }
    assert_eq!(replica.len(), 400 + 500);
}

#[test]
fn numbers_too_large_for_a_base_are_kept_in_the_overlay() {
    let mut replica = Replica::from_records([
        rec("acme", u64::MAX, revoked()),
        rec("acme", NUMBER_LIMIT, revoked()),
        rec("acme", NUMBER_LIMIT - 1, revoked()),
    ]);
    replica.merge_floor = 1;
    assert_eq!(replica.snapshot().wide, 2);
    let e = state(Granted(Express), Unknown, Unknown);
    // Two narrow changes pass the floor of 1 even though the overlay held
    // two wide entries before: those do not count.
    replica.apply(&[rec("acme", 5, e), rec("acme", 6, e)]);
    let view = replica.snapshot();
    assert_eq!(view.overlay.len(), 2, "only the wide entries remain");
    assert_eq!(view.wide, 2);
    assert_eq!(replica.lookup("acme", u64::MAX), revoked());
    assert_eq!(replica.lookup("acme", NUMBER_LIMIT), revoked());
    assert_eq!(replica.lookup("acme", NUMBER_LIMIT - 1), revoked());
    replica.apply(&[rec("acme", u64::MAX, NumberState::DEFAULT)]);
    assert!(replica.lookup("acme", u64::MAX).is_default());
    assert_eq!(replica.snapshot().wide, 1);
    assert_eq!(replica.len(), 4);
}

#[test]
fn readers_see_an_untouched_number_throughout_merges() {
    let mut replica = Replica::from_records([rec("acme", 14155550001, revoked())]);
    replica.merge_floor = 8;
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) || reads == 0 {
                assert_eq!(replica.lookup("acme", 14155550001), revoked());
                reads += 1;
            }
            reads
        });
        let e = state(Granted(Express), Unknown, Unknown);
        for batch in 0..200u64 {
            let changes: Vec<_> = (0..10)
                .map(|i| rec("acme", 14155560000 + batch * 10 + i, e))
                .collect();
            replica.apply(&changes);
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().is_ok_and(|reads| reads > 0));
    });
    assert_eq!(replica.len(), 2001);
}

// ---- Against a plain HashMap model ----

type Model = ModelMap<(String, u64), NumberState>;

fn any_state() -> impl Strategy<Value = NumberState> {
    (0..5usize, 0..5usize, 0..5usize).prop_map(|(t, c, m)| {
        state(
            PurposeState::ALL[t],
            PurposeState::ALL[c],
            PurposeState::ALL[m],
        )
    })
}

/// Few tenants and clustered numbers so that keys repeat, plus the edges of
/// the packed range.
fn any_record() -> impl Strategy<Value = (String, u64, NumberState)> {
    let tenant = prop::sample::select(vec!["acme", "globex", "initech", "x"]);
    let number = prop_oneof![
        4 => 14155550000u64..14155550040,
        2 => 0u64..20,
        1 => 447700900000u64..447700900010,
        1 => NUMBER_LIMIT - 2..NUMBER_LIMIT + 2,
        1 => Just(u64::MAX),
    ];
    // Defaults often, to exercise removals.
    let st = prop_oneof![3 => any_state(), 1 => Just(NumberState::DEFAULT)];
    (tenant, number, st).prop_map(|(t, n, s)| (t.to_owned(), n, s))
}

fn apply_to_model(model: &mut Model, records: &[(String, u64, NumberState)]) {
    for (t, n, s) in records {
        if s.is_default() {
            model.remove(&(t.clone(), *n));
        } else {
            model.insert((t.clone(), *n), *s);
        }
    }
}

fn check(replica: &Replica, model: &Model, probes: &[(String, u64, NumberState)]) {
    for (t, n, _) in probes {
        // The number and its neighbour, which is often absent.
        for number in [*n, n.wrapping_add(1)] {
            let expected = model.get(&(t.clone(), number)).copied().unwrap_or_default();
            assert_eq!(replica.lookup(t, number), expected, "{t} {number}");
        }
    }
    assert_eq!(replica.len(), model.len());
}

proptest! {
    #[test]
    fn replica_matches_a_hashmap(
        initial in prop::collection::vec(any_record(), 0..60),
        batches in prop::collection::vec(prop::collection::vec(any_record(), 0..12), 0..12),
        merge_floor in 1usize..16,
        probes in prop::collection::vec(any_record(), 0..40),
    ) {
        let mut model = Model::new();
        apply_to_model(&mut model, &initial);
        let mut replica = Replica::from_records(initial.clone());
        replica.merge_floor = merge_floor;
        check(&replica, &model, &initial);
        check(&replica, &model, &probes);
        for batch in &batches {
            replica.apply(batch);
            apply_to_model(&mut model, batch);
            check(&replica, &model, batch);
            check(&replica, &model, &initial);
            check(&replica, &model, &probes);
        }
    }
}

/// `for_each` visits exactly the non-default states, base and overlay,
/// the overlay winning.
#[test]
fn for_each_visits_every_state_once_the_overlay_winning() {
    let r = Replica::from_records([
        rec("acme", 1, revoked()),
        rec("acme", 2, revoked()),
        rec("globex", 3, revoked()),
    ]);
    let granted = state(Granted(Express), Granted(Express), Unknown);
    r.apply(&[
        ("acme".into(), 2, NumberState::DEFAULT),
        ("acme".into(), 4, granted),
        ("globex".into(), 3, granted),
    ]);
    let mut seen = Vec::new();
    r.snapshot()
        .for_each(|t, n, s| seen.push((t.to_string(), n, s)));
    seen.sort_by_key(|(t, n, _)| (t.clone(), *n));
    assert_eq!(
        seen,
        vec![
            ("acme".to_string(), 1, revoked()),
            ("acme".to_string(), 4, granted),
            ("globex".to_string(), 3, granted),
        ]
    );
}
