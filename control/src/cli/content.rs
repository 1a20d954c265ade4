//! `heraldctl template …` and `heraldctl sequence …`.

use std::io;

use clap::Subcommand;
use serde_json::{Value, json};

use super::{AdminSession, CliError, json_line};
use crate::v1::{
    CancelSequenceRequest, ExperimentResultsRequest, GetSequenceRequest, GetTemplateRequest,
    ListTemplatesRequest, LocaleRendering, PreviewTemplateRequest, PromoteExperimentRequest,
    PublishTemplateRequest, PutTemplateRequest,
};

/// `heraldctl template …`
#[derive(Debug, Clone, Subcommand)]
pub enum TemplateVerb {
    /// A tenant's templates (its own and the built-in ones) and versions.
    List {
        /// The tenant.
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One version as TOML, with each locale rendered with sample values.
    Get {
        /// The tenant.
        tenant: String,
        /// `name` (the newest, draft or not) or `name@VERSION`.
        template: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a version from FILE (TOML: `category`, `vars`, `text.<locale>`)
    /// as a draft, or published with `--publish`. Checked like any policy
    /// change; prints each locale's final text and segments.
    Put {
        /// The tenant.
        tenant: String,
        /// The template name.
        name: String,
        /// The version's TOML; `-` reads stdin.
        file: std::path::PathBuf,
        /// Publish it at once instead of storing a draft.
        #[arg(long)]
        publish: bool,
        /// Check and preview; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Why (kept with the policy version and in the audit trail).
        #[arg(long, default_value = "")]
        comment: String,
        /// Refuse unless the policy is at this version (0: any).
        #[arg(long, default_value_t = 0)]
        expect: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Publish a draft: messages and enrolments without `@N` use it.
    Publish {
        /// The tenant.
        tenant: String,
        /// `name@VERSION`.
        template: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Render a version with variables (default: samples): the final text
    /// with the opt-out line the send path appends, encoding and segments.
    Preview {
        /// The tenant.
        tenant: String,
        /// `name` (the newest, draft or not) or `name@VERSION`.
        template: String,
        /// A JSON object, e.g. '{"name":"Ana","amount":"42.10"}'.
        #[arg(long)]
        vars: Option<String>,
        /// Only this locale (with the send path's fallback).
        #[arg(long)]
        locale: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `heraldctl experiment …`
#[derive(Debug, Clone, Subcommand)]
pub enum ExperimentVerb {
    /// Per variant: messages, people, replied, opted out, paid, with
    /// two-proportion p-values against the first variant.
    Results {
        /// The tenant.
        tenant: String,
        /// The experiment.
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End the experiment on a variant: everyone gets its template.
    Promote {
        /// The tenant.
        tenant: String,
        /// The experiment.
        name: String,
        /// The winning variant.
        variant: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
    },
}

/// `heraldctl sequence …`
#[derive(Debug, Clone, Subcommand)]
pub enum SequenceVerb {
    /// A sequence and the state of each step.
    Get {
        /// The tenant.
        tenant: String,
        /// The enrolment's id.
        id: String,
    },
    /// End a sequence (the loan was paid): every step not yet sent becomes
    /// `cancelled`.
    Cancel {
        /// The tenant.
        tenant: String,
        /// The enrolment's id.
        id: String,
        /// Why, e.g. `paid by ACH`.
        #[arg(long, default_value = "")]
        detail: String,
    },
}

fn name_version(s: &str) -> Result<(String, u32), CliError> {
    match s.split_once('@') {
        None => Ok((s.to_string(), 0)),
        Some((n, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|v| *v > 0)
            .map(|v| (n.to_string(), v))
            .ok_or_else(|| CliError::Usage(format!("`{s}`: write NAME or NAME@VERSION"))),
    }
}

fn renderings_json(r: &[LocaleRendering]) -> Value {
    r.iter()
        .map(|r| {
            json!({"locale": r.locale, "text": r.text, "encoding": r.encoding,
                "segments": r.segments, "chars": r.chars,
                "refused": (!r.refused.is_empty()).then_some(&r.refused)})
        })
        .collect()
}

fn renderings_text(r: &[LocaleRendering]) -> String {
    let mut out = String::new();
    for r in r {
        out.push_str(&format!(
            "[{}] {} segment(s), {}, {} chars{}\n  {}\n",
            r.locale,
            r.segments,
            r.encoding,
            r.chars,
            if r.refused.is_empty() {
                String::new()
            } else {
                format!(" — NOT SENDABLE: {}", r.refused)
            },
            r.text.replace('\n', "\n  ")
        ));
    }
    out
}

pub(super) async fn template_command(
    session: &mut AdminSession,
    verb: &TemplateVerb,
) -> Result<String, CliError> {
    Ok(match verb {
        TemplateVerb::List { tenant, json } => {
            let r = session.answer(
                "ListTemplates",
                session
                    .client
                    .clone()
                    .list_templates(ListTemplatesRequest {
                        tenant: tenant.clone(),
                    })
                    .await,
            )?;
            if *json {
                json_line(&json!({
                    "policy_version": r.policy_version,
                    "templates": r.templates.iter().map(|t| json!({
                        "name": t.name,
                        "versions": t.versions.iter().map(|v| json!({
                            "version": v.version, "category": v.category, "draft": v.draft,
                            "built_in": v.built_in, "locales": v.locales, "vars": v.vars,
                        })).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                }))
            } else {
                let mut out = format!(
                    "{:<28} {:>7}  {:<14} {:<10} {}\n",
                    "TEMPLATE", "VERSION", "CATEGORY", "STATE", "LOCALES"
                );
                for t in &r.templates {
                    for v in &t.versions {
                        let state = match (v.built_in, v.draft) {
                            (true, _) => "built-in",
                            (_, true) => "draft",
                            _ => "published",
                        };
                        out.push_str(&format!(
                            "{:<28} {:>7}  {:<14} {:<10} {}\n",
                            t.name,
                            v.version,
                            v.category,
                            state,
                            v.locales.join(",")
                        ));
                    }
                }
                out
            }
        }
        TemplateVerb::Get {
            tenant,
            template,
            json,
        } => {
            let (name, version) = name_version(template)?;
            let r = session.answer(
                "GetTemplate",
                session
                    .client
                    .clone()
                    .get_template(GetTemplateRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        version,
                    })
                    .await,
            )?;
            let v = r.info.unwrap_or_default();
            if *json {
                json_line(&json!({
                    "name": name, "version": v.version, "category": v.category,
                    "draft": v.draft, "built_in": v.built_in, "document": r.document,
                    "policy_version": r.policy_version,
                    "renderings": renderings_json(&r.renderings),
                }))
            } else {
                format!(
                    "# {name}@{} ({}{}) — policy v{}\n{}\n# rendered with sample values:\n{}",
                    v.version,
                    v.category,
                    if v.draft { ", draft" } else { "" },
                    r.policy_version,
                    r.document,
                    renderings_text(&r.renderings)
                )
            }
        }
        TemplateVerb::Put {
            tenant,
            name,
            file,
            publish,
            dry_run,
            comment,
            expect,
            json,
        } => {
            let document = if file.as_os_str() == "-" {
                io::read_to_string(io::stdin())
            } else {
                std::fs::read_to_string(file)
            }
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let r = session.answer(
                "PutTemplate",
                session
                    .client
                    .clone()
                    .put_template(PutTemplateRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        document,
                        comment: comment.clone(),
                        dry_run: *dry_run,
                        publish: *publish,
                        expected_version: *expect,
                    })
                    .await,
            )?;
            if *json {
                json_line(&json!({
                    "policy_version": r.policy_version, "template_version": r.template_version,
                    "dry_run": dry_run, "published": publish, "diff": r.diff,
                    "renderings": renderings_json(&r.renderings),
                }))
            } else {
                let what = match (*dry_run, *publish) {
                    (true, _) => "would be stored (dry run: nothing stored)".to_string(),
                    (false, true) => format!("published in policy v{}", r.policy_version),
                    (false, false) => format!(
                        "stored as a draft in policy v{} (publish it with `template publish {tenant} {name}@{}`)",
                        r.policy_version, r.template_version
                    ),
                };
                format!(
                    "{name}@{} {what}\n{}",
                    r.template_version,
                    renderings_text(&r.renderings)
                )
            }
        }
        TemplateVerb::Publish {
            tenant,
            template,
            comment,
        } => {
            let (name, version) = name_version(template)?;
            if version == 0 {
                return Err(CliError::Usage(
                    "publish: name the version, `NAME@VERSION`".into(),
                ));
            }
            let r = session.answer(
                "PublishTemplate",
                session
                    .client
                    .clone()
                    .publish_template(PublishTemplateRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        version,
                        comment: comment.clone(),
                    })
                    .await,
            )?;
            format!(
                "{name}@{version} published in policy v{}\n",
                r.policy_version
            )
        }
        TemplateVerb::Preview {
            tenant,
            template,
            vars,
            locale,
            json,
        } => {
            let (name, version) = name_version(template)?;
            let r = session.answer(
                "PreviewTemplate",
                session
                    .client
                    .clone()
                    .preview_template(PreviewTemplateRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        version,
                        vars_json: vars.clone().unwrap_or_default(),
                        locale: locale.clone().unwrap_or_default(),
                    })
                    .await,
            )?;
            if *json {
                json_line(&json!({
                    "name": name, "version": r.template_version, "category": r.category,
                    "renderings": renderings_json(&r.renderings),
                }))
            } else {
                format!(
                    "# {name}@{} ({})\n{}",
                    r.template_version,
                    r.category,
                    renderings_text(&r.renderings)
                )
            }
        }
    })
}

pub(super) async fn sequence_command(
    session: &mut AdminSession,
    verb: &SequenceVerb,
) -> Result<String, CliError> {
    Ok(match verb {
        SequenceVerb::Get { tenant, id } => {
            let r = session.answer(
                "GetSequence",
                session
                    .client
                    .clone()
                    .get_sequence(GetSequenceRequest {
                        tenant: tenant.clone(),
                        id: id.clone(),
                    })
                    .await,
            )?;
            let v: Value = serde_json::from_str(&r.json).unwrap_or(Value::String(r.json));
            json_line(&v)
        }
        SequenceVerb::Cancel { tenant, id, detail } => {
            let r = session.answer(
                "CancelSequence",
                session
                    .client
                    .clone()
                    .cancel_sequence(CancelSequenceRequest {
                        tenant: tenant.clone(),
                        id: id.clone(),
                        detail: detail.clone(),
                    })
                    .await,
            )?;
            match r.result.as_str() {
                "cancelled" => format!(
                    "{tenant}/{id}: cancelled; {} waiting step(s) become cancelled\n",
                    r.steps_released
                ),
                "already_ended" => format!("{tenant}/{id}: had ended already; nothing changed\n"),
                _ => format!(
                    "{tenant}/{id}: not enrolled; an enrolment with this id will be cancelled\n"
                ),
            }
        }
    })
}

pub(super) async fn experiment_command(
    session: &mut AdminSession,
    verb: &ExperimentVerb,
) -> Result<String, CliError> {
    Ok(match verb {
        ExperimentVerb::Results { tenant, name, json } => {
            let r = session.answer(
                "ExperimentResults",
                session
                    .client
                    .clone()
                    .experiment_results(ExperimentResultsRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                    })
                    .await,
            )?;
            if *json {
                json_line(&json!({
                    "name": r.name, "template": r.template,
                    "winner": (!r.winner.is_empty()).then_some(&r.winner),
                    "variants": r.variants.iter().map(|v| json!({
                        "variant": v.variant, "template": v.template, "weight": v.weight,
                        "messages": v.messages, "delivered": v.delivered, "people": v.people, "replied": v.replied,
                        "opted_out": v.opted_out, "paid": v.paid,
                        "p_replied": v.p_replied, "p_opted_out": v.p_opted_out, "p_paid": v.p_paid,
                        "p_delivered": v.p_delivered,
                    })).collect::<Vec<_>>(),
                }))
            } else {
                let rate = |n: u64, of: u64| {
                    if of == 0 {
                        "-".to_string()
                    } else {
                        format!("{n} ({:.1}%)", 100.0 * n as f64 / of as f64)
                    }
                };
                let p = |p: Option<f64>| p.map_or("-".to_string(), |p| format!("{p:.4}"));
                let mut out = format!(
                    "# experiment {} on `{}`{}\n{:<12} {:<28} {:>8} {:>14} {:>7} {:>14} {:>14} {:>14} {:>9} {:>9}\n",
                    r.name,
                    r.template,
                    if r.winner.is_empty() {
                        String::from(" (running)")
                    } else {
                        format!(" (ended: {})", r.winner)
                    },
                    "VARIANT",
                    "TEMPLATE",
                    "MESSAGES",
                    "DELIVERED",
                    "PEOPLE",
                    "REPLIED",
                    "OPTED OUT",
                    "PAID",
                    "P(REPLY)",
                    "P(PAID)"
                );
                for v in &r.variants {
                    out.push_str(&format!(
                        "{:<12} {:<28} {:>8} {:>14} {:>7} {:>14} {:>14} {:>14} {:>9} {:>9}\n",
                        v.variant,
                        v.template,
                        v.messages,
                        rate(v.delivered, v.messages),
                        v.people,
                        rate(v.replied, v.people),
                        rate(v.opted_out, v.people),
                        rate(v.paid, v.people),
                        p(v.p_replied),
                        p(v.p_paid)
                    ));
                }
                out.push_str("# p: two-proportion z-test against the first variant (two-sided)\n");
                out
            }
        }
        ExperimentVerb::Promote {
            tenant,
            name,
            variant,
            comment,
        } => {
            let r = session.answer(
                "PromoteExperiment",
                session
                    .client
                    .clone()
                    .promote_experiment(PromoteExperimentRequest {
                        tenant: tenant.clone(),
                        name: name.clone(),
                        variant: variant.clone(),
                        comment: comment.clone(),
                    })
                    .await,
            )?;
            format!(
                "experiment {name} ended on `{variant}` in policy v{}\n",
                r.policy_version
            )
        }
    })
}
