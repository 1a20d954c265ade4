//! Message templates: named, per tenant, in immutable numbered versions
//! (`payment_due@2`), each with one text per locale and typed variables.
//!
//! A template lives in the policy document (`[[templates.<tenant>.<name>]]`,
//! one table per version), so it is versioned, validated, audited and
//! swapped fleet-wide like the rest of the policy. It is checked when stored
//! ([`Template::compile`]: every placeholder declared, every declared variable
//! used in every locale, no blocked content) and rendered from memory
//! ([`Template::render`]: no Redis round trip). A missing or ill-typed
//! variable is an error naming it, never a text with a hole in it.
//!
//! ```toml
//! [[templates.acme.payment_due]]
//! version = 1
//! category = "collections"
//! vars = { name = "text", amount = "money", due_date = "date" }
//! text.en = "Hi {name}, your payment of {amount} is due {due_date}."
//! text.es = "Hola {name}, su pago de {amount} vence el {due_date}."
//! ```
//!
//! Placeholders are `{name}`; `{{` and `}}` stand for literal braces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BlockedContent, Segments, segments};
use crate::model::Category;

/// A variable's type, which decides what values it takes and how it is
/// written into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarType {
    /// Any string.
    Text,
    /// US dollars: a number or a decimal string (`42`, `"1234.5"`), written
    /// `$1,234.50`.
    Money,
    /// `YYYY-MM-DD`, written per locale (`December 1, 2026`, `1 de
    /// diciembre de 2026`).
    Date,
    /// An `http://` or `https://` URL, written as given.
    Url,
}

impl VarType {
    pub fn as_str(self) -> &'static str {
        match self {
            VarType::Text => "text",
            VarType::Money => "money",
            VarType::Date => "date",
            VarType::Url => "url",
        }
    }
}

/// One template version as written in the policy document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    pub version: u32,
    pub category: Category,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, VarType>,
    /// Locale (`en`, `es-US`) → text.
    pub text: BTreeMap<String, String>,
    /// Stored but not published: no message renders it (not even with
    /// `name@N`), it may still be edited or removed, and `template publish`
    /// makes it the newest published version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draft: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    /// Index into [`Template::vars`].
    Var(u16),
}

/// One locale's text, parsed.
#[derive(Debug, Clone)]
struct Text {
    locale: Box<str>,
    parts: Vec<Part>,
    /// Sum of the literal parts' lengths, to size the output once.
    literal_len: usize,
}

/// A compiled template version.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: Box<str>,
    pub version: u32,
    pub category: Category,
    /// A draft: previewed, never sent.
    pub draft: bool,
    vars: Vec<(Box<str>, VarType)>,
    texts: Vec<Text>,
}

/// Why a message cannot be rendered (`rejected` / `missing_variable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("variable `{0}` is missing")]
    Missing(String),
    #[error("variable `{name}` must be {expected}: {got}")]
    Invalid {
        name: String,
        expected: &'static str,
        got: String,
    },
}

impl RenderError {
    /// The variable it is about.
    pub fn variable(&self) -> &str {
        match self {
            RenderError::Missing(n) | RenderError::Invalid { name: n, .. } => n,
        }
    }
}

/// What a render produced besides the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rendered<'t> {
    /// The locale whose text was used, after the fallback.
    pub locale: &'t str,
}

fn valid_var_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !n.as_bytes()[0].is_ascii_digit()
}

/// Split a text into literal parts and placeholder names.
fn parse_text(text: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut lit = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "`{{` at byte {i} is not closed (write `{{{{` for a brace)"
                    ));
                };
                let name = &rest[..end];
                if !valid_var_name(name) {
                    return Err(format!(
                        "`{{{name}}}` is not a variable name (a-z, 0-9, `_`)"
                    ));
                }
                if !lit.is_empty() {
                    out.push((false, std::mem::take(&mut lit)));
                }
                out.push((true, name.to_string()));
                for _ in 0..=end {
                    chars.next();
                }
            }
            '}' => {
                return Err(format!(
                    "`}}` at byte {i} closes nothing (write `}}}}` for a brace)"
                ));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        out.push((false, lit));
    }
    Ok(out)
}

impl Template {
    /// Check and compile one version. `key` is its path in the document
    /// (`templates.acme.payment_due[0]`); `default_locale` is the tenant's,
    /// which the template must have a text for (the end of every fallback).
    pub fn compile(
        key: &str,
        name: &str,
        s: &TemplateSection,
        default_locale: &str,
        blocked: &BlockedContent,
    ) -> Result<Template, (String, String)> {
        let err = |k: &str, why: String| (format!("{key}.{k}"), why);
        if !valid_var_name(name) {
            return Err((
                key.to_string(),
                format!("`{name}` is not a template name (a-z, 0-9, `_`)"),
            ));
        }
        if s.version == 0 {
            return Err(err("version", "versions start at 1".into()));
        }
        if s.text.is_empty() {
            return Err(err("text", "give at least one locale's text".into()));
        }
        let vars: Vec<(Box<str>, VarType)> = s
            .vars
            .iter()
            .map(|(n, t)| (Box::from(n.as_str()), *t))
            .collect();
        for (n, _) in &vars {
            if !valid_var_name(n) {
                return Err(err(
                    "vars",
                    format!("`{n}` is not a variable name (a-z, 0-9, `_`)"),
                ));
            }
        }
        let mut texts = Vec::with_capacity(s.text.len());
        for (locale, text) in &s.text {
            let here = format!("text.{locale}");
            if !crate::model::valid_locale(locale) {
                return Err(err(
                    &here,
                    format!("`{locale}` is not a locale (`en`, `es-US`)"),
                ));
            }
            if text.trim().is_empty() {
                return Err(err(&here, "must not be empty".into()));
            }
            let pieces = parse_text(text).map_err(|e| err(&here, e))?;
            let mut parts = Vec::with_capacity(pieces.len());
            let mut literal_len = 0;
            let mut used = vec![false; vars.len()];
            for (is_var, piece) in pieces {
                if is_var {
                    let Some(i) = vars.iter().position(|(n, _)| **n == *piece) else {
                        return Err(err(
                            &here,
                            format!("`{{{piece}}}` is not declared in `vars`"),
                        ));
                    };
                    used[i] = true;
                    parts.push(Part::Var(i as u16));
                } else {
                    literal_len += piece.len();
                    parts.push(Part::Literal(piece.into_boxed_str()));
                }
            }
            if let Some(i) = used.iter().position(|u| !u) {
                return Err(err(
                    &here,
                    format!(
                        "`{}` is declared in `vars` but this text does not use it",
                        vars[i].0
                    ),
                ));
            }
            if let Some(p) = blocked.check(text) {
                return Err(err(
                    &here,
                    format!("matches the tenant's blocked pattern `{p}`"),
                ));
            }
            texts.push(Text {
                locale: Box::from(locale.as_str()),
                parts,
                literal_len,
            });
        }
        let t = Template {
            name: Box::from(name),
            version: s.version,
            category: s.category,
            draft: s.draft,
            vars,
            texts,
        };
        if t.text_for(Some(default_locale))
            .is_none_or(|x| !same_language(&x.locale, default_locale))
        {
            return Err(err(
                "text",
                format!(
                    "no text for the tenant's locale `{default_locale}` (or its language), where every fallback ends"
                ),
            ));
        }
        Ok(t)
    }

    /// The locales this version has a text for.
    /// The declared variables and their types.
    pub fn vars(&self) -> impl Iterator<Item = (&str, VarType)> {
        self.vars.iter().map(|(n, t)| (&**n, *t))
    }

    /// Sample values for every variable (what `preview` uses when given
    /// none): `Alex`, `$123.45`, today, `https://example.com/pay`.
    pub fn sample_vars(&self) -> serde_json::Map<String, Value> {
        let today = jiff::Zoned::now().date().to_string();
        self.vars
            .iter()
            .map(|(n, t)| {
                let v = match t {
                    VarType::Text => Value::from("Alex"),
                    VarType::Money => Value::from("123.45"),
                    VarType::Date => Value::from(today.as_str()),
                    VarType::Url => Value::from("https://example.com/pay"),
                };
                (n.to_string(), v)
            })
            .collect()
    }

    pub fn locales(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(|t| &*t.locale)
    }

    /// The fallback: the exact locale, then its language (`es-US` → `es`),
    /// then the first text of the same language (`es` → `es-MX`).
    fn find(&self, locale: &str) -> Option<&Text> {
        let lang = locale.split('-').next().unwrap_or(locale);
        self.texts
            .iter()
            .find(|t| &*t.locale == locale)
            .or_else(|| self.texts.iter().find(|t| &*t.locale == lang))
            .or_else(|| self.texts.iter().find(|t| same_language(&t.locale, lang)))
    }

    fn text_for(&self, locale: Option<&str>) -> Option<&Text> {
        locale.and_then(|l| self.find(l))
    }

    /// Render into `out` (cleared first): the message's `locale`, falling
    /// back to `es-US → es → the tenant's default locale`.
    pub fn render<'t>(
        &'t self,
        locale: Option<&str>,
        default_locale: &str,
        vars: &serde_json::Map<String, Value>,
        out: &mut String,
    ) -> Result<Rendered<'t>, RenderError> {
        let text = self
            .text_for(locale)
            .or_else(|| self.find(default_locale))
            .unwrap_or(&self.texts[0]);
        out.clear();
        out.reserve(text.literal_len + 16 * self.vars.len());
        for part in &text.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(i) => {
                    let (name, ty) = &self.vars[usize::from(*i)];
                    let v = vars
                        .get(&**name)
                        .filter(|v| !v.is_null())
                        .ok_or_else(|| RenderError::Missing(name.to_string()))?;
                    write_value(out, name, *ty, v, &text.locale)?;
                }
            }
        }
        Ok(Rendered {
            locale: &text.locale,
        })
    }

    /// Segments of a rendering with `sample` values (what `preview` shows).
    pub fn segments_with(
        &self,
        locale: &str,
        sample: &serde_json::Map<String, Value>,
    ) -> Result<(String, Segments), RenderError> {
        let mut out = String::new();
        self.render(Some(locale), locale, sample, &mut out)?;
        let seg = segments(&out);
        Ok((out, seg))
    }
}

fn same_language(locale: &str, lang: &str) -> bool {
    let a = locale.split('-').next().unwrap_or(locale);
    let b = lang.split('-').next().unwrap_or(lang);
    a == b
}

fn invalid(name: &str, expected: &'static str, got: &Value) -> RenderError {
    let mut got = got.to_string();
    if got.len() > 40 {
        let cut = (0..=40)
            .rev()
            .find(|&i| got.is_char_boundary(i))
            .unwrap_or(0);
        got.truncate(cut);
        got.push('…');
    }
    RenderError::Invalid {
        name: name.to_string(),
        expected,
        got,
    }
}

fn write_value(
    out: &mut String,
    name: &str,
    ty: VarType,
    v: &Value,
    locale: &str,
) -> Result<(), RenderError> {
    match ty {
        VarType::Text => match v {
            Value::String(s) if !s.trim().is_empty() => out.push_str(s),
            _ => return Err(invalid(name, "a non-empty string", v)),
        },
        VarType::Url => match v {
            Value::String(s)
                if (s.starts_with("https://") || s.starts_with("http://"))
                    && s.len() > 8
                    && !s.contains(char::is_whitespace) =>
            {
                out.push_str(s)
            }
            _ => return Err(invalid(name, "an http(s) URL", v)),
        },
        VarType::Money => {
            let cents = match v {
                Value::Number(n) => n.as_f64().and_then(cents_of_f64),
                Value::String(s) => cents_of_str(s),
                _ => None,
            }
            .ok_or_else(|| invalid(name, "an amount (a number or \"1234.50\")", v))?;
            write_money(out, cents);
        }
        VarType::Date => {
            let d = match v {
                Value::String(s) => s.parse::<jiff::civil::Date>().ok(),
                _ => None,
            }
            .ok_or_else(|| invalid(name, "a date (YYYY-MM-DD)", v))?;
            write_date(out, d, locale);
        }
    }
    Ok(())
}

/// At most ten billion dollars, to the cent.
const MAX_CENTS: i64 = 1_000_000_000_000;

fn cents_of_f64(f: f64) -> Option<i64> {
    let c = (f * 100.0).round();
    (c.is_finite() && c.abs() <= MAX_CENTS as f64).then_some(c as i64)
}

fn cents_of_str(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 12
    {
        return None;
    }
    let w: i64 = whole.parse().ok()?;
    let f: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let c = w.checked_mul(100)?.checked_add(f)?;
    (c <= MAX_CENTS).then_some(if neg { -c } else { c })
}

fn write_money(out: &mut String, cents: i64) {
    if cents < 0 {
        out.push('-');
    }
    let c = cents.unsigned_abs();
    let (dollars, rest) = (c / 100, c % 100);
    out.push('$');
    let digits = dollars.to_string();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    let _ = write!(out, ".{rest:02}");
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_ES: [&str; 12] = [
    "enero",
    "febrero",
    "marzo",
    "abril",
    "mayo",
    "junio",
    "julio",
    "agosto",
    "septiembre",
    "octubre",
    "noviembre",
    "diciembre",
];

fn write_date(out: &mut String, d: jiff::civil::Date, locale: &str) {
    let m = usize::from(d.month().unsigned_abs())
        .saturating_sub(1)
        .min(11);
    let _ = match locale.split('-').next().unwrap_or(locale) {
        "en" => write!(out, "{} {}, {}", MONTHS_EN[m], d.day(), d.year()),
        "es" => write!(out, "{} de {} de {}", d.day(), MONTHS_ES[m], d.year()),
        // Other languages get the unambiguous ISO date until they have a
        // format here.
        _ => write!(out, "{d}"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(text: &[(&str, &str)], vars: &[(&str, VarType)]) -> TemplateSection {
        TemplateSection {
            version: 1,
            category: Category::Collections,
            vars: vars.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            text: text
                .iter()
                .map(|(l, t)| (l.to_string(), t.to_string()))
                .collect(),
            draft: false,
        }
    }

    fn payment_due() -> Template {
        let s = section(
            &[
                (
                    "en",
                    "Hi {name}, your payment of {amount} is due {due_date}. {{ref}}",
                ),
                (
                    "es",
                    "Hola {name}, su pago de {amount} vence el {due_date}.",
                ),
            ],
            &[
                ("name", VarType::Text),
                ("amount", VarType::Money),
                ("due_date", VarType::Date),
            ],
        );
        Template::compile(
            "templates.acme.payment_due[0]",
            "payment_due",
            &s,
            "en-US",
            &BlockedContent::default(),
        )
        .expect("valid")
    }

    fn vars(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn renders_each_locale_with_typed_values_and_falls_back() {
        let t = payment_due();
        let v = vars(json!({"name": "Ana", "amount": 1234.5, "due_date": "2026-12-01"}));
        let mut out = String::new();
        let r = t
            .render(Some("es-US"), "en-US", &v, &mut out)
            .expect("renders");
        assert_eq!(r.locale, "es");
        assert_eq!(
            out,
            "Hola Ana, su pago de $1,234.50 vence el 1 de diciembre de 2026."
        );
        let r = t
            .render(Some("fr"), "en-US", &v, &mut out)
            .expect("renders");
        assert_eq!(r.locale, "en", "unknown locale → the tenant's default");
        assert_eq!(
            out,
            "Hi Ana, your payment of $1,234.50 is due December 1, 2026. {ref}"
        );
        let r = t.render(None, "en-US", &v, &mut out).expect("renders");
        assert_eq!(r.locale, "en");
    }

    #[test]
    fn a_missing_or_ill_typed_variable_is_named() {
        let t = payment_due();
        let mut out = String::new();
        let cases = [
            (json!({"name": "Ana", "amount": 5}), "due_date", "missing"),
            (
                json!({"name": "Ana", "amount": 5, "due_date": null}),
                "due_date",
                "missing",
            ),
            (
                json!({"name": "", "amount": 5, "due_date": "2026-12-01"}),
                "name",
                "non-empty",
            ),
            (
                json!({"name": "Ana", "amount": "5,00", "due_date": "2026-12-01"}),
                "amount",
                "amount",
            ),
            (
                json!({"name": "Ana", "amount": true, "due_date": "2026-12-01"}),
                "amount",
                "amount",
            ),
            (
                json!({"name": "Ana", "amount": 5, "due_date": "12/01/2026"}),
                "due_date",
                "YYYY-MM-DD",
            ),
            (
                json!({"name": "Ana", "amount": 5, "due_date": "2026-02-30"}),
                "due_date",
                "YYYY-MM-DD",
            ),
        ];
        for (v, name, why) in cases {
            let e = t
                .render(Some("en"), "en", &vars(v.clone()), &mut out)
                .expect_err(&v.to_string());
            assert_eq!(e.variable(), name, "{v}");
            assert!(e.to_string().contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn money_is_dollars_to_the_cent() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "$0.00"),
            (json!(5), "$5.00"),
            (json!(42.1), "$42.10"),
            (json!(1234567.891), "$1,234,567.89"),
            (json!(-12.5), "-$12.50"),
            (json!("1000"), "$1,000.00"),
            (json!("0.5"), "$0.50"),
            (json!("999999.99"), "$999,999.99"),
        ];
        for (v, want) in cases {
            let mut out = String::new();
            write_value(&mut out, "a", VarType::Money, v, "en").expect("money");
            assert_eq!(out, *want, "{v}");
        }
        for bad in [
            json!("1.234"),
            json!("1e3"),
            json!(""),
            json!("."),
            json!(1e15),
            json!("12,50"),
        ] {
            let mut out = String::new();
            assert!(
                write_value(&mut out, "a", VarType::Money, &bad, "en").is_err(),
                "{bad}"
            );
        }
    }

    /// What is checked when a version is stored, each with its path.
    #[test]
    fn compile_refuses_holes_unused_variables_and_blocked_text() {
        use VarType as T;
        let blocked = BlockedContent::new(&["(?i)guaranteed approval".to_string()]).expect("re");
        type Case<'a> = (
            &'a [(&'a str, &'a str)],
            &'a [(&'a str, VarType)],
            &'a str,
            &'a str,
        );
        let cases: &[Case<'_>] = &[
            (
                &[("en", "Hi {nme}")],
                &[("name", T::Text)],
                "text.en",
                "`{nme}` is not declared",
            ),
            (
                &[("en", "Hi {name}")],
                &[("name", T::Text), ("amount", T::Money)],
                "text.en",
                "`amount` is declared",
            ),
            (
                &[("en", "Hi {name}"), ("es", "Hola")],
                &[("name", T::Text)],
                "text.es",
                "`name` is declared",
            ),
            (
                &[("en", "Hi {name")],
                &[("name", T::Text)],
                "text.en",
                "not closed",
            ),
            (&[("en", "Hi name}")], &[], "text.en", "closes nothing"),
            (
                &[("en", "Hi {Name}")],
                &[],
                "text.en",
                "not a variable name",
            ),
            (&[("en", "  ")], &[], "text.en", "must not be empty"),
            (&[("english", "Hi")], &[], "text.english", "not a locale"),
            (
                &[("es", "Hola")],
                &[],
                "text",
                "no text for the tenant's locale `en-US`",
            ),
            (
                &[("en", "Guaranteed approval!")],
                &[],
                "text.en",
                "blocked pattern",
            ),
            (&[], &[], "text", "at least one"),
        ];
        for (text, vars, path, why) in cases {
            let s = section(text, vars);
            let (p, reason) = Template::compile("t[0]", "t", &s, "en-US", &blocked).expect_err(why);
            assert_eq!(p, format!("t[0].{path}"), "{why}");
            assert!(reason.contains(why), "{why}: {reason}");
        }
        let mut s = section(&[("en", "Hi")], &[]);
        s.version = 0;
        assert!(Template::compile("t[0]", "t", &s, "en", &blocked).is_err());
    }

    /// Property: rendering with every variable given a plain word yields
    /// the text with each `{var}` replaced and no brace left unless the
    /// template escaped one — checked against a naive replace.
    #[test]
    fn rendering_matches_a_naive_substitution() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let names = ["a", "bb", "c_1"];
        for _ in 0..2000 {
            let mut text = String::new();
            let mut used = [false; 3];
            for _ in 0..rng.random_range(1..8) {
                match rng.random_range(0..4) {
                    0 => {
                        let i = rng.random_range(0..3);
                        used[i] = true;
                        text.push('{');
                        text.push_str(names[i]);
                        text.push('}');
                    }
                    1 => text.push_str(" x "),
                    2 => text.push_str("ñé"),
                    _ => text.push('.'),
                }
            }
            if text.trim().is_empty() {
                continue;
            }
            let declared: Vec<(&str, VarType)> = names
                .iter()
                .zip(used)
                .filter(|(_, u)| *u)
                .map(|(n, _)| (*n, VarType::Text))
                .collect();
            let s = section(&[("en", &text)], &declared);
            let t = Template::compile("t", "t", &s, "en", &BlockedContent::default()).expect(&text);
            let v: serde_json::Map<String, Value> = names
                .iter()
                .map(|n| (n.to_string(), Value::String(format!("<{n}>"))))
                .collect();
            let mut out = String::new();
            t.render(Some("en"), "en", &v, &mut out).expect("renders");
            let mut naive = text.clone();
            for n in names {
                naive = naive.replace(&format!("{{{n}}}"), &format!("<{n}>"));
            }
            assert_eq!(out, naive, "{text}");
        }
    }
}
