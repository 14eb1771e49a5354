//! Handlebars rendering in strict mode: an undefined name is an error that names the template,
//! the line and the variable. Templates see `vars`, `secrets`, `env` and `run`.

use std::ops::Range;

use handlebars::{Handlebars, RenderErrorReason};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::diagnostic::{Problem, Source};
use crate::secrets::Secrets;

/// Who is running: the values of `{{run.*}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct RunIdentity {
    pub(crate) id: String,
    pub(crate) phase: String,
    pub(crate) started_at: String,
}

impl RunIdentity {
    /// Stand-ins used when planning, so that a plan does not depend on when it was made.
    pub(crate) fn planned(phase: &str) -> Self {
        RunIdentity {
            id: "<run.id>".into(),
            phase: phase.into(),
            started_at: "<run.started_at>".into(),
        }
    }

    /// A new run starting now; its id sorts by start time. Loading the playbook gives it the
    /// playbook's phase.
    pub(crate) fn start() -> Self {
        let started_at = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
        let id = started_at.replace(['-', ':'], "");
        RunIdentity {
            id,
            phase: String::new(),
            started_at,
        }
    }
}

/// Renders template files and templated playbook fields against one context.
pub(crate) struct Renderer {
    hb: Handlebars<'static>,
    context: handlebars::Context,
}

impl Renderer {
    pub(crate) fn new(
        vars: &serde_json::Map<String, Value>,
        secrets: &Secrets,
        run: &RunIdentity,
    ) -> Self {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        let env: serde_json::Map<String, Value> = std::env::vars()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let context = json!({ "vars": vars, "secrets": secrets.values(), "env": env, "run": run });
        Renderer {
            hb,
            context: handlebars::Context::from(context),
        }
    }

    /// Renders a template file; a problem points into that file.
    pub(crate) fn render_file(&self, source: &Source, name: &str) -> Result<String, Problem> {
        self.render(source.text(), name).map_err(|failure| {
            let at = source.offset(failure.line.max(1), failure.column.max(1));
            let end = (at + failure.width).min(source.text().len());
            source.problem(at..end, failure.message, failure.label)
        })
    }

    /// Renders a templated string field of the playbook; a problem points at the field.
    pub(crate) fn render_field(
        &self,
        source: &Source,
        span: Range<usize>,
        text: &str,
    ) -> Result<String, Problem> {
        if !text.contains("{{") {
            return Ok(text.to_string());
        }
        self.render(text, "this field")
            .map_err(|failure| source.problem(span, failure.message, failure.label))
    }

    fn render(&self, text: &str, name: &str) -> Result<String, Failure> {
        if let Some(message) = recursion(text, name) {
            return Err(Failure {
                message,
                label: "here".into(),
                line: 1,
                column: 1,
                width: 1,
            });
        }
        self.hb
            .render_template_with_context(text, &self.context)
            .map_err(|e| {
                let (line, column) = (e.line_no.unwrap_or(0), e.column_no.unwrap_or(0));
                match e.reason() {
                    RenderErrorReason::MissingVariable(Some(path)) => Failure {
                        message: format!("{name} uses `{{{{{path}}}}}`, which is not defined"),
                        label: "undefined".into(),
                        line,
                        column,
                        width: path.len() + 4,
                    },
                    RenderErrorReason::TemplateError(t) => {
                        let (line, column) = t.pos().unwrap_or((line, column));
                        Failure {
                            message: format!("{name} is not valid handlebars: {}", t.reason()),
                            label: "here".into(),
                            line,
                            column,
                            width: 1,
                        }
                    }
                    other => Failure {
                        message: format!("{name} failed to render: {other}"),
                        label: "here".into(),
                        line,
                        column,
                        width: 1,
                    },
                }
            })
    }
}

/// Why the template `name` could recurse, if it could: a chain of inline partials that includes
/// itself (`a → b → a`), or a partial named by an expression, which could name any partial,
/// itself included, once rendered. handlebars has no recursion limit: such a template would
/// overflow the stack. A name written out is all a template needs to include a partial.
fn recursion(text: &str, name: &str) -> Option<String> {
    use std::collections::BTreeMap;
    let template = handlebars::Template::compile(text).ok()?;
    // The partials each inline partial's body includes ("" is the template itself).
    let mut includes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dynamic = None;
    collect(&template, "", &mut includes, &mut dynamic);
    if let Some(helper) = dynamic {
        return Some(format!(
            "{name} names a partial by an expression (`{helper}`): write the partial's name out, \
             so that a partial that includes itself is found before it renders"
        ));
    }
    fn visit(
        at: &str,
        includes: &BTreeMap<String, Vec<String>>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        for next in includes.get(at).into_iter().flatten() {
            if let Some(start) = path.iter().position(|p| p == next) {
                let mut cycle = path[start..].to_vec();
                cycle.push(next.clone());
                return Some(cycle);
            }
            path.push(next.clone());
            if let Some(cycle) = visit(next, includes, path) {
                return Some(cycle);
            }
            path.pop();
        }
        None
    }
    let cycle = visit("", &includes, &mut Vec::new())?;
    Some(format!(
        "{name} includes partial `{}` in itself ({}): a partial cannot recurse",
        cycle[0],
        cycle.join(" → ")
    ))
}

/// Records, under `owner`, the partials `template` includes, and each inline partial it defines
/// under its own name; in `dynamic`, the helper of the first partial named by an expression.
fn collect(
    template: &handlebars::Template,
    owner: &str,
    includes: &mut std::collections::BTreeMap<String, Vec<String>>,
    dynamic: &mut Option<String>,
) {
    use handlebars::template::{Parameter, TemplateElement};
    let name = |p: &Parameter| match p {
        Parameter::Literal(serde_json::Value::String(s)) => Some(s.clone()),
        p => p.as_name().map(str::to_string),
    };
    for element in &template.elements {
        match element {
            TemplateElement::DecoratorBlock(d) if d.name.as_name() == Some("inline") => {
                if let (Some(defined), Some(body)) = (d.params.first().and_then(name), &d.template)
                {
                    includes.entry(defined.clone()).or_default();
                    collect(body, &defined, includes, dynamic);
                }
            }
            TemplateElement::PartialExpression(d) | TemplateElement::PartialBlock(d) => {
                match &d.name {
                    Parameter::Subexpression(s) => {
                        let helper = match s.as_element() {
                            TemplateElement::Expression(h) => h.name.as_name(),
                            _ => None,
                        };
                        dynamic.get_or_insert_with(|| helper.unwrap_or("(…)").to_string());
                    }
                    other => {
                        if let Some(target) = name(other) {
                            includes.entry(owner.to_string()).or_default().push(target);
                        }
                    }
                }
                if let Some(body) = &d.template {
                    collect(body, owner, includes, dynamic);
                }
            }
            TemplateElement::HelperBlock(h) => {
                for body in [&h.template, &h.inverse].into_iter().flatten() {
                    collect(body, owner, includes, dynamic);
                }
            }
            TemplateElement::DecoratorBlock(d) => {
                if let Some(body) = &d.template {
                    collect(body, owner, includes, dynamic);
                }
            }
            _ => {}
        }
    }
}

/// Why a render failed, and where in the rendered text.
struct Failure {
    message: String,
    label: String,
    line: usize,
    column: usize,
    width: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        let mut vars = serde_json::Map::new();
        vars.insert("port".into(), json!(3000));
        let mut secrets = Secrets::default();
        secrets.insert("PW".into(), "s3cret".into());
        Renderer::new(&vars, &secrets, &RunIdentity::planned("hybrid"))
    }

    #[test]
    fn renders_without_html_escaping() {
        let src = Source::new("t.hbs", "a=<{{vars.port}}>&{{secrets.PW}} {{run.phase}}");
        assert_eq!(
            renderer().render_file(&src, "t.hbs").unwrap(),
            "a=<3000>&s3cret hybrid"
        );
    }

    #[test]
    fn a_partial_that_includes_itself_is_an_error_not_a_stack_overflow() {
        for (text, cycle) in [
            (r#"{{#*inline "p"}}{{> p}}{{/inline}}{{> p}}"#, "p → p"),
            (
                r#"{{#*inline "a"}}x{{> b}}{{/inline}}{{#*inline "b"}}{{#if vars.port}}{{> a}}{{/if}}{{/inline}}{{> a}}"#,
                "a → b → a",
            ),
        ] {
            let src = Source::new("t.hbs", text);
            let problem = renderer()
                .render_file(&src, "template `t.hbs`")
                .unwrap_err();
            assert!(problem.message().contains(cycle), "{}", problem.message());
        }
        // Partials that nest without a cycle still render.
        let src = Source::new(
            "t.hbs",
            r#"{{#*inline "a"}}[{{> b}}]{{/inline}}{{#*inline "b"}}{{vars.port}}{{/inline}}{{> a}}{{> b}}"#,
        );
        assert_eq!(renderer().render_file(&src, "t").unwrap(), "[3000]3000");
    }

    #[test]
    fn undefined_variable_names_template_line_and_variable() {
        let src = Source::new("t.hbs", "line one\nport={{vars.prot}}\n");
        let problem = renderer()
            .render_file(&src, "template `t.hbs`")
            .unwrap_err();
        assert_eq!(
            problem.message(),
            "template `t.hbs` uses `{{vars.prot}}`, which is not defined"
        );
    }
}
