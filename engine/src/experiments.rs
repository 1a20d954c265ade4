//! A/B experiments' outcomes in Redis: who got which variant (written by
//! the outcome writer when a message of an experiment is sent), what they
//! did after (a reply, an opt-out, a payment: [`attribute`]), and the
//! results per variant with a significance test ([`results`]). The
//! experiments themselves are policy (`policy::experiments`).

use serde::Serialize;

use crate::conn::Conn;
use crate::keys;
use crate::policy::experiments::{Experiment, two_proportion_p};

/// Count `what` (`replied`, `opted_out`, `paid`) for every experiment of
/// `tenants` the number got a variant of. People are counted once (sets).
pub async fn attribute(
    conn: &mut Conn,
    number: u64,
    tenants: &[&str],
    what: &str,
) -> redis::RedisResult<usize> {
    let seen: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(keys::experiments_of(number))
        .query_async(conn)
        .await?;
    let mut pipe = redis::pipe();
    let mut n = 0;
    for (field, variant) in &seen {
        let Some((tenant, exp)) = field.split_once(':') else {
            continue;
        };
        if !tenants.contains(&tenant) {
            continue;
        }
        pipe.cmd("SADD")
            .arg(keys::experiment_people(tenant, exp, variant, what))
            .arg(number)
            .ignore();
        n += 1;
    }
    if n > 0 {
        pipe.query_async::<()>(conn).await?;
    }
    Ok(n)
}

/// One variant's results. Rates are per person sent a message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VariantResult {
    pub variant: String,
    pub template: String,
    pub weight: u32,
    pub messages: u64,
    /// Messages with a `delivered` receipt (of `messages`).
    pub delivered: u64,
    pub people: u64,
    pub replied: u64,
    pub opted_out: u64,
    pub paid: u64,
    /// Two-sided p-values of the difference from the first variant (the
    /// control) in the reply, opt-out and payment rates; `None` for the
    /// control itself or an empty sample.
    pub p_replied: Option<f64>,
    pub p_opted_out: Option<f64>,
    pub p_paid: Option<f64>,
    /// Of the delivery rates (delivered of messages).
    pub p_delivered: Option<f64>,
}

/// The results of an experiment, per variant.
pub async fn results(
    conn: &mut Conn,
    tenant: &str,
    e: &Experiment,
) -> redis::RedisResult<Vec<VariantResult>> {
    let mut pipe = redis::pipe();
    for v in &e.variants {
        pipe.cmd("HGET")
            .arg(keys::experiment(tenant, &e.name))
            .arg(format!("{}:messages", v.name));
        pipe.cmd("HGET")
            .arg(keys::experiment(tenant, &e.name))
            .arg(format!("{}:delivered", v.name));
        for what in ["sent", "replied", "opted_out", "paid"] {
            pipe.cmd("SCARD")
                .arg(keys::experiment_people(tenant, &e.name, &v.name, what));
        }
    }
    let raw: Vec<Option<u64>> = pipe.query_async(conn).await?;
    let mut out: Vec<VariantResult> = Vec::with_capacity(e.variants.len());
    for (v, c) in e.variants.iter().zip(raw.chunks(6)) {
        let get = |i: usize| c.get(i).copied().flatten().unwrap_or(0);
        out.push(VariantResult {
            variant: v.name.to_string(),
            template: format!("{}@{}", v.template, v.version),
            weight: v.weight,
            messages: get(0),
            delivered: get(1),
            people: get(2),
            replied: get(3),
            opted_out: get(4),
            paid: get(5),
            p_replied: None,
            p_opted_out: None,
            p_paid: None,
            p_delivered: None,
        });
    }
    if let Some(control) = out.first().cloned() {
        for r in out.iter_mut().skip(1) {
            r.p_replied = two_proportion_p(r.replied, r.people, control.replied, control.people);
            r.p_opted_out =
                two_proportion_p(r.opted_out, r.people, control.opted_out, control.people);
            r.p_paid = two_proportion_p(r.paid, r.people, control.paid, control.people);
            r.p_delivered =
                two_proportion_p(r.delivered, r.messages, control.delivered, control.messages);
        }
    }
    Ok(out)
}
