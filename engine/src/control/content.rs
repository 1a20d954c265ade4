//! The template and sequence RPCs. A template change is a policy change:
//! `PutTemplate` and `PublishTemplate` edit the current document's
//! `[templates]` section and store it through `put_version`, so it is
//! compiled, role-checked (compliance), audited and swapped on every
//! instance like any other change.

use herald_control::v1::{
    CancelSequenceRequest, CancelSequenceResponse, GetSequenceRequest, GetSequenceResponse,
    GetTemplateRequest, GetTemplateResponse, ListTemplatesRequest, ListTemplatesResponse,
    LocaleRendering, PreviewTemplateRequest, PreviewTemplateResponse, PublishTemplateRequest,
    PublishTemplateResponse, PutTemplateRequest, PutTemplateResponse, TemplateInfo,
    TemplateVersion,
};
use herald_control::v1::{
    ExperimentResultsRequest, ExperimentResultsResponse, PromoteExperimentRequest,
    PromoteExperimentResponse, VariantResult,
};
use serde_json::json;
use tonic::{Response, Status};

use super::{Caller, ControlService, tenant_arg, unavailable};
use crate::content::templates::{Template, TemplateSection};
use crate::model::Reason;
use crate::policy::Policy;
use crate::policy::schedules;

fn info(t: &Template) -> TemplateVersion {
    TemplateVersion {
        version: t.version,
        category: t.category.as_str().to_string(),
        draft: t.draft,
        built_in: schedules::built_in_template(&t.name, Some(t.version))
            .is_some_and(|b| std::ptr::eq(b, t)),
        locales: t.locales().map(str::to_string).collect(),
        vars: t
            .vars()
            .map(|(n, ty)| format!("{n}:{}", ty.as_str()))
            .collect(),
    }
}

/// Render `t` in `locales` (every locale when empty) with `vars`, then
/// prepare it as the send path would for `tenant`.
fn renderings(
    pol: &Policy,
    tenant: &str,
    t: &Template,
    vars: &serde_json::Map<String, serde_json::Value>,
    only: Option<&str>,
    max_chars: usize,
) -> Result<Vec<LocaleRendering>, Status> {
    let tp = pol.tenant(tenant);
    let locales: Vec<String> = match only {
        Some(l) => vec![l.to_string()],
        None => t.locales().map(str::to_string).collect(),
    };
    let mut out = Vec::with_capacity(locales.len());
    for l in locales {
        let mut body = String::new();
        let used = t
            .render(Some(&l), &tp.locale, vars, &mut body)
            .map_err(|e| Status::invalid_argument(format!("`{}@{}`: {e}", t.name, t.version)))?
            .locale
            .to_string();
        let (refused, seg) =
            match crate::content::prepare_body(&tp.content, t.category, &mut body, max_chars) {
                Ok(p) => (String::new(), Some(p.segments)),
                Err(r) => (r.detail(), None),
            };
        let seg = seg.unwrap_or_else(|| crate::content::segments(&body));
        out.push(LocaleRendering {
            locale: used,
            chars: u32::try_from(body.chars().count()).unwrap_or(u32::MAX),
            text: body,
            encoding: seg.encoding.as_str().to_string(),
            segments: seg.segments,
            refused,
        });
    }
    Ok(out)
}

fn vars_arg(json_text: &str) -> Result<Option<serde_json::Map<String, serde_json::Value>>, Status> {
    if json_text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(json_text)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("vars: not a JSON object: {e}")))
}

impl ControlService {
    pub(super) async fn list_templates_impl(
        &self,
        req: ListTemplatesRequest,
    ) -> Result<Response<ListTemplatesResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let pol = self.d.policy.load_full();
        let templates = pol
            .templates_of(&req.tenant)
            .into_iter()
            .map(|(name, versions)| TemplateInfo {
                name: name.to_string(),
                versions: versions.into_iter().map(info).collect(),
            })
            .collect();
        Ok(Response::new(ListTemplatesResponse {
            policy_version: pol.version,
            templates,
        }))
    }

    pub(super) async fn get_template_impl(
        &self,
        req: GetTemplateRequest,
    ) -> Result<Response<GetTemplateResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let pol = self.d.policy.load_full();
        let version = (req.version != 0).then_some(req.version);
        let t = pol
            .template_or_draft(&req.tenant, &req.name, version)
            .ok_or_else(|| not_found(&req.tenant, &req.name, version))?;
        let (_, doc) = self.current_policy().await?;
        let section = doc
            .templates
            .get(&req.tenant)
            .and_then(|n| n.get(&req.name))
            .and_then(|v| v.iter().find(|s| s.version == t.version));
        let document = match section {
            Some(s) => toml::to_string_pretty(s).map_err(|e| Status::internal(e.to_string()))?,
            None => format!(
                "# built in (shipped with Herald); a tenant's own `{}` replaces it\n",
                t.name
            ),
        };
        let renderings = renderings(
            &pol,
            &req.tenant,
            t,
            &t.sample_vars(),
            None,
            self.d.limits.max_body_chars,
        )?;
        Ok(Response::new(GetTemplateResponse {
            policy_version: pol.version,
            document,
            info: Some(info(t)),
            renderings,
        }))
    }

    pub(super) async fn preview_template_impl(
        &self,
        req: PreviewTemplateRequest,
    ) -> Result<Response<PreviewTemplateResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let pol = self.d.policy.load_full();
        let version = (req.version != 0).then_some(req.version);
        let t = pol
            .template_or_draft(&req.tenant, &req.name, version)
            .ok_or_else(|| not_found(&req.tenant, &req.name, version))?;
        let vars = vars_arg(&req.vars_json)?.unwrap_or_else(|| t.sample_vars());
        let only = (!req.locale.is_empty()).then_some(req.locale.as_str());
        if let Some(l) = only
            && !crate::model::valid_locale(l)
        {
            return Err(Status::invalid_argument(format!("`{l}` is not a locale")));
        }
        let renderings = renderings(
            &pol,
            &req.tenant,
            t,
            &vars,
            only,
            self.d.limits.max_body_chars,
        )?;
        Ok(Response::new(PreviewTemplateResponse {
            template_version: t.version,
            category: t.category.as_str().to_string(),
            renderings,
        }))
    }

    pub(super) async fn put_template_impl(
        &self,
        caller: &Caller,
        req: PutTemplateRequest,
    ) -> Result<Response<PutTemplateResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let (base, base_doc) = self.current_policy().await?;
        if req.expected_version != 0 && req.expected_version != base.version {
            return Err(Status::aborted(format!(
                "the policy is at version {}, not {}: read it again and retry",
                base.version, req.expected_version
            )));
        }
        let mut table: toml::Table = toml::from_str(&req.document)
            .map_err(|e| Status::invalid_argument(format!("the template: {}", e.message())))?;
        let existing = base_doc
            .templates
            .get(&req.tenant)
            .and_then(|n| n.get(&req.name));
        let next_version = existing
            .and_then(|v| v.last())
            .map_or(0, |s| s.version)
            .max(schedules::built_in_max_version(&req.name))
            + 1;
        match table.get("version") {
            None => {
                table.insert("version".into(), toml::Value::Integer(next_version.into()));
            }
            Some(toml::Value::Integer(v)) if *v == i64::from(next_version) => {}
            Some(v) => {
                return Err(Status::invalid_argument(format!(
                    "version {v}: the next version of `{}` is {next_version} (leave it out)",
                    req.name
                )));
            }
        }
        table.insert("draft".into(), toml::Value::Boolean(!req.publish));
        let section: TemplateSection = table.try_into().map_err(|e: toml::de::Error| {
            Status::invalid_argument(format!("the template: {}", e.message()))
        })?;
        let mut next = base_doc.clone();
        next.templates
            .entry(req.tenant.clone())
            .or_default()
            .entry(req.name.clone())
            .or_default()
            .push(section);
        let (version, diff, _, compiled) = self
            .put_version(
                caller,
                &base,
                &base_doc,
                next,
                &req.comment,
                req.dry_run,
                Some("template.put"),
            )
            .await?;
        let t = compiled
            .template_or_draft(&req.tenant, &req.name, Some(next_version))
            .ok_or_else(|| Status::internal("the stored template is not in the compiled policy"))?;
        let renderings = renderings(
            &compiled,
            &req.tenant,
            t,
            &t.sample_vars(),
            None,
            self.d.limits.max_body_chars,
        )?;
        Ok(Response::new(PutTemplateResponse {
            policy_version: version,
            template_version: next_version,
            renderings,
            diff,
        }))
    }

    pub(super) async fn publish_template_impl(
        &self,
        caller: &Caller,
        req: PublishTemplateRequest,
    ) -> Result<Response<PublishTemplateResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let (base, base_doc) = self.current_policy().await?;
        let mut next = base_doc.clone();
        let s = next
            .templates
            .get_mut(&req.tenant)
            .and_then(|n| n.get_mut(&req.name))
            .and_then(|v| v.iter_mut().find(|s| s.version == req.version))
            .ok_or_else(|| not_found(&req.tenant, &req.name, Some(req.version)))?;
        if !s.draft {
            return Err(Status::failed_precondition(format!(
                "`{}@{}` is published already",
                req.name, req.version
            )));
        }
        s.draft = false;
        let (version, ..) = self
            .put_version(
                caller,
                &base,
                &base_doc,
                next,
                &req.comment,
                false,
                Some("template.publish"),
            )
            .await?;
        Ok(Response::new(PublishTemplateResponse {
            policy_version: version,
        }))
    }

    pub(super) async fn cancel_sequence_impl(
        &self,
        caller: &Caller,
        req: CancelSequenceRequest,
    ) -> Result<Response<CancelSequenceResponse>, Status> {
        tenant_arg(&req.tenant)?;
        if req.id.is_empty() || req.id.contains('/') {
            return Err(Status::invalid_argument(
                "`id` is the enrolment's id (no `/`)",
            ));
        }
        let detail = if req.detail.is_empty() {
            format!("cancelled by {} (control plane)", caller.who.name)
        } else {
            req.detail.chars().take(200).collect()
        };
        let mut conn = self.conn.clone();
        let c = crate::sequences::cancel(
            &mut conn,
            &req.tenant,
            &req.id,
            Reason::SequenceCancelled,
            &detail,
        )
        .await
        .map_err(unavailable)?;
        let released = match c {
            crate::sequences::Cancelled::Cancelled { released } => released,
            _ => 0,
        };
        self.audited(
            caller,
            "sequence.cancel",
            &format!("{}/{}", req.tenant, req.id),
            json!(null),
            json!({"result": c.as_str(), "steps_released": released, "detail": detail}),
        )
        .await?;
        Ok(Response::new(CancelSequenceResponse {
            result: c.as_str().to_string(),
            steps_released: released,
        }))
    }

    pub(super) async fn get_sequence_impl(
        &self,
        req: GetSequenceRequest,
    ) -> Result<Response<GetSequenceResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let mut conn = self.conn.clone();
        match crate::sequences::read(&mut conn, &req.tenant, &req.id)
            .await
            .map_err(unavailable)?
        {
            Some(v) => Ok(Response::new(GetSequenceResponse {
                json: v.to_string(),
            })),
            None => Err(Status::not_found(format!(
                "tenant `{}` has no sequence `{}` (or its record expired)",
                req.tenant, req.id
            ))),
        }
    }
}

impl ControlService {
    pub(super) async fn experiment_results_impl(
        &self,
        req: ExperimentResultsRequest,
    ) -> Result<Response<ExperimentResultsResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let pol = self.d.policy.load_full();
        let e = pol.experiment(&req.tenant, &req.name).ok_or_else(|| {
            Status::not_found(format!(
                "tenant `{}` has no experiment `{}`",
                req.tenant, req.name
            ))
        })?;
        let mut conn = self.conn.clone();
        let rs = crate::experiments::results(&mut conn, &req.tenant, e)
            .await
            .map_err(unavailable)?;
        Ok(Response::new(ExperimentResultsResponse {
            name: e.name.to_string(),
            template: e.template.to_string(),
            winner: e
                .winner
                .map(|w| e.variants[w].name.to_string())
                .unwrap_or_default(),
            variants: rs
                .into_iter()
                .map(|r| VariantResult {
                    variant: r.variant,
                    template: r.template,
                    weight: r.weight,
                    messages: r.messages,
                    people: r.people,
                    replied: r.replied,
                    opted_out: r.opted_out,
                    paid: r.paid,
                    p_replied: r.p_replied,
                    p_opted_out: r.p_opted_out,
                    p_paid: r.p_paid,
                    delivered: r.delivered,
                    p_delivered: r.p_delivered,
                })
                .collect(),
        }))
    }

    pub(super) async fn promote_experiment_impl(
        &self,
        caller: &Caller,
        req: PromoteExperimentRequest,
    ) -> Result<Response<PromoteExperimentResponse>, Status> {
        tenant_arg(&req.tenant)?;
        let (base, base_doc) = self.current_policy().await?;
        let mut next = base_doc.clone();
        let e = next
            .experiments
            .get_mut(&req.tenant)
            .and_then(|n| n.get_mut(&req.name))
            .ok_or_else(|| {
                Status::not_found(format!(
                    "tenant `{}` has no experiment `{}`",
                    req.tenant, req.name
                ))
            })?;
        if let Some(w) = &e.winner {
            return Err(Status::failed_precondition(format!(
                "the experiment ended on `{w}` already"
            )));
        }
        if !e.variants.iter().any(|v| v.name == req.variant) {
            return Err(Status::invalid_argument(format!(
                "no variant `{}` (variants: {})",
                req.variant,
                e.variants
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        e.winner = Some(req.variant.clone());
        let (version, ..) = self
            .put_version(
                caller,
                &base,
                &base_doc,
                next,
                &req.comment,
                false,
                Some("experiment.promote"),
            )
            .await?;
        Ok(Response::new(PromoteExperimentResponse {
            policy_version: version,
        }))
    }
}

fn not_found(tenant: &str, name: &str, version: Option<u32>) -> Status {
    let which = version.map_or_else(|| name.to_string(), |v| format!("{name}@{v}"));
    Status::not_found(format!("tenant `{tenant}` has no template `{which}`"))
}
