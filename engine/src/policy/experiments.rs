//! A/B experiments on templates: `[experiments.<tenant>.<name>]` in the
//! policy document names a template and the variants that replace it, each
//! a published template version with a weight.
//!
//! ```toml
//! [experiments.acme.due_wording]
//! template = "payment_reminder_due"
//! variants = [
//!   { name = "control", template = "payment_reminder_due@1", weight = 50 },
//!   { name = "friendly", template = "due_friendly@1", weight = 50 },
//! ]
//! ```
//!
//! A message (or a sequence step, at enrolment) that names the template
//! without a version gets its variant from a stable hash of (experiment,
//! tenant, recipient): one person sees one variant, across a sequence and
//! on every instance. A running experiment's variants cannot be edited
//! (start a new experiment); `winner` ends it, and from then on everyone
//! gets the winner's template.

use serde::{Deserialize, Serialize};

/// A variant as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariantSection {
    pub name: String,
    /// `name@VERSION`: pinned, so the variant's text cannot move under it.
    pub template: String,
    pub weight: u32,
}

/// An experiment as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// The template whose messages take part.
    pub template: String,
    pub variants: Vec<VariantSection>,
    /// Set by `experiment promote`: the experiment has ended on this variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
}

/// A compiled variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub name: Box<str>,
    pub template: Box<str>,
    pub version: u32,
    pub weight: u32,
}

/// A compiled experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Experiment {
    pub name: Box<str>,
    pub template: Box<str>,
    pub variants: Vec<Variant>,
    /// Index of the winner, once promoted.
    pub winner: Option<usize>,
}

impl Experiment {
    /// The variant `number` of `tenant` gets: the winner once there is one,
    /// else a stable weighted pick (FNV-1a of experiment, tenant, number).
    pub fn assign(&self, tenant: &str, number: u64) -> &Variant {
        if let Some(w) = self.winner {
            return &self.variants[w];
        }
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        let digits = itoa::Buffer::new().format(number).to_owned();
        let h = crate::keys::fnv1a(&[
            self.name.as_bytes(),
            b"\0",
            tenant.as_bytes(),
            b"\0",
            digits.as_bytes(),
        ]);
        // FNV's low bits mix poorly for short inputs: fold the high half in.
        let mut at = ((h ^ (h >> 32)) % total.max(1)) as u32;
        for v in &self.variants {
            if at < v.weight {
                return v;
            }
            at -= v.weight;
        }
        &self.variants[0]
    }

    /// Compile; `published(name, version)` says whether the tenant has that
    /// published template version.
    pub fn compile(
        key: &str,
        name: &str,
        s: &ExperimentSection,
        published: impl Fn(&str, u32) -> bool,
    ) -> Result<Experiment, (String, String)> {
        let valid = |n: &str| {
            !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        if !valid(name) {
            return Err((
                key.into(),
                "an experiment name is 1–64 of a-z, 0-9, `_`".into(),
            ));
        }
        if s.variants.len() < 2 {
            return Err((
                format!("{key}.variants"),
                "an experiment needs two variants or more".into(),
            ));
        }
        let mut variants = Vec::with_capacity(s.variants.len());
        for (i, v) in s.variants.iter().enumerate() {
            let k = format!("{key}.variants[{i}]");
            if !valid(&v.name) {
                return Err((
                    format!("{k}.name"),
                    "a variant name is 1–64 of a-z, 0-9, `_`".into(),
                ));
            }
            if variants.iter().any(|x: &Variant| *x.name == *v.name) {
                return Err((
                    format!("{k}.name"),
                    format!("two variants are named `{}`", v.name),
                ));
            }
            if v.weight == 0 || v.weight > 10_000 {
                return Err((format!("{k}.weight"), "a weight is 1–10000".into()));
            }
            let Some((t, ver)) = v
                .template
                .split_once('@')
                .and_then(|(t, n)| n.parse::<u32>().ok().map(|n| (t, n)))
            else {
                return Err((
                    format!("{k}.template"),
                    format!(
                        "`{}`: a variant pins its version, `name@VERSION`",
                        v.template
                    ),
                ));
            };
            if !published(t, ver) {
                return Err((
                    format!("{k}.template"),
                    format!("no published template `{}`", v.template),
                ));
            }
            variants.push(Variant {
                name: v.name.as_str().into(),
                template: t.into(),
                version: ver,
                weight: v.weight,
            });
        }
        let winner = match &s.winner {
            None => None,
            Some(w) => Some(
                variants
                    .iter()
                    .position(|v| *v.name == **w)
                    .ok_or_else(|| (format!("{key}.winner"), format!("no variant `{w}`")))?,
            ),
        };
        Ok(Experiment {
            name: name.into(),
            template: s.template.as_str().into(),
            variants,
            winner,
        })
    }
}

/// A change must not edit a running experiment's variants, nor move an
/// ended one's winner.
pub fn check_change(
    key: &str,
    old: &ExperimentSection,
    new: &ExperimentSection,
) -> Result<(), (String, String)> {
    if old.winner.is_some() && old != new {
        return Err((
            key.into(),
            "the experiment has ended: start a new one".into(),
        ));
    }
    if old.template != new.template || old.variants != new.variants {
        return Err((
            key.into(),
            "a running experiment's variants cannot be edited: promote a winner or start a new experiment".into(),
        ));
    }
    Ok(())
}

/// The two-proportion z-test: the p-value (two-sided) that `a / n_a` and
/// `b / n_b` differ only by chance. `None` when a sample is empty or the
/// pooled proportion is 0 or 1.
pub fn two_proportion_p(a: u64, n_a: u64, b: u64, n_b: u64) -> Option<f64> {
    if n_a == 0 || n_b == 0 {
        return None;
    }
    let (a, n_a, b, n_b) = (a as f64, n_a as f64, b as f64, n_b as f64);
    let pooled = (a + b) / (n_a + n_b);
    if pooled <= 0.0 || pooled >= 1.0 {
        return None;
    }
    let se = (pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    let z = ((a / n_a) - (b / n_b)).abs() / se;
    Some((2.0 * (1.0 - normal_cdf(z))).clamp(0.0, 1.0))
}

/// Φ(z) by the Abramowitz–Stegun 7.1.26 approximation of erf (error under
/// 1.5e-7): enough for a p-value.
fn normal_cdf(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-x * x).exp();
    let erf = if x < 0.0 { -erf } else { erf };
    0.5 * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp(weights: &[u32]) -> Experiment {
        let s = ExperimentSection {
            template: "t".into(),
            variants: weights
                .iter()
                .enumerate()
                .map(|(i, w)| VariantSection {
                    name: format!("v{i}"),
                    template: "t@1".into(),
                    weight: *w,
                })
                .collect(),
            winner: None,
        };
        Experiment::compile("k", "e", &s, |_, _| true).expect("valid")
    }

    /// Assignment is stable and near its weights over 100k recipients.
    #[test]
    fn assignment_is_stable_and_near_its_weights() {
        for weights in [[50u32, 50, 0], [20, 30, 50]] {
            let w: Vec<u32> = weights.iter().copied().filter(|w| *w > 0).collect();
            let e = exp(&w);
            let total: u32 = w.iter().sum();
            let mut counts = vec![0u32; w.len()];
            for i in 0..100_000u64 {
                let number = 14_155_000_000 + i;
                let v = e.assign("acme", number);
                assert_eq!(v, e.assign("acme", number), "stable");
                counts[v.name[1..].parse::<usize>().expect("index")] += 1;
            }
            for (c, w) in counts.iter().zip(&w) {
                let want = 100_000.0 * f64::from(*w) / f64::from(total);
                // 4 standard deviations of a binomial at 100k.
                let sd = (want * (1.0 - want / 100_000.0)).sqrt();
                assert!(
                    (f64::from(*c) - want).abs() < 4.0 * sd,
                    "{counts:?} for {w:?}"
                );
            }
        }
        // Another tenant is assigned independently, and a winner takes all.
        let mut e = exp(&[50, 50]);
        let differs = (0..1000u64)
            .filter(|i| e.assign("a", 14_155_000_000 + i) != e.assign("b", 14_155_000_000 + i))
            .count();
        assert!(differs > 300, "{differs}");
        e.winner = Some(1);
        assert!((0..1000u64).all(|i| &*e.assign("a", i).name == "v1"));
    }

    #[test]
    fn invalid_experiments_name_the_path_and_reason() {
        let v = |name: &str, template: &str, weight: u32| VariantSection {
            name: name.into(),
            template: template.into(),
            weight,
        };
        let cases: Vec<(Vec<VariantSection>, Option<&str>, &str)> = vec![
            (vec![v("a", "t@1", 1)], None, "k.variants"),
            (
                vec![v("a", "t@1", 1), v("a", "t@1", 1)],
                None,
                "k.variants[1].name",
            ),
            (
                vec![v("a", "t@1", 0), v("b", "t@1", 1)],
                None,
                "k.variants[0].weight",
            ),
            (
                vec![v("a", "t", 1), v("b", "t@1", 1)],
                None,
                "k.variants[0].template",
            ),
            (
                vec![v("a", "t@1", 1), v("b", "u@9", 1)],
                None,
                "k.variants[1].template",
            ),
            (
                vec![v("a", "t@1", 1), v("b", "t@1", 1)],
                Some("c"),
                "k.winner",
            ),
        ];
        for (variants, winner, path) in cases {
            let s = ExperimentSection {
                template: "t".into(),
                variants,
                winner: winner.map(Into::into),
            };
            let err = Experiment::compile("k", "e", &s, |t, n| t == "t" && n == 1).expect_err(path);
            assert_eq!(err.0, path, "{}", err.1);
        }
    }

    /// Known values: 120/1000 against 100/1000 is p ≈ 0.153 (exactly 0.15292); 200/1000
    /// against 100/1000 is p < 0.0001; equal rates are p = 1.
    #[test]
    fn the_two_proportion_test() {
        let p = two_proportion_p(120, 1000, 100, 1000).expect("p");
        assert!((p - 0.1529).abs() < 0.001, "{p}");
        assert!(two_proportion_p(200, 1000, 100, 1000).expect("p") < 1e-4);
        assert!((two_proportion_p(50, 500, 50, 500).expect("p") - 1.0).abs() < 1e-6);
        assert_eq!(two_proportion_p(0, 0, 1, 10), None);
        assert_eq!(two_proportion_p(0, 10, 0, 10), None);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
    }

    #[test]
    fn a_running_experiment_is_not_edited() {
        let s = ExperimentSection {
            template: "t".into(),
            variants: vec![
                VariantSection {
                    name: "a".into(),
                    template: "t@1".into(),
                    weight: 1,
                },
                VariantSection {
                    name: "b".into(),
                    template: "t@2".into(),
                    weight: 1,
                },
            ],
            winner: None,
        };
        let mut edited = s.clone();
        edited.variants[1].weight = 3;
        assert!(check_change("k", &s, &edited).is_err());
        let mut promoted = s.clone();
        promoted.winner = Some("b".into());
        assert!(check_change("k", &s, &promoted).is_ok());
        let mut moved = promoted.clone();
        moved.winner = Some("a".into());
        assert!(check_change("k", &promoted, &moved).is_err());
    }
}
