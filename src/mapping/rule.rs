//! One compiled rule: its origin (a field, a constant or a template), its transforms, its
//! default, and the static type check that ties them to the target.

use super::config::{Apply, RuleConfig};
use super::schema::{self, Target};
use super::template::Template;
use super::transform::Transform;
use super::value::{self, Kinds, check_field_name, field_kinds, from_config_json};
use crate::user::{CmsUser, FieldValue};

/// Where a rule's value comes from.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A CMS field or pseudo-field.
    Field(String),
    /// A fixed value.
    Constant(FieldValue),
    /// A template over fields.
    Template(Template),
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// The rule's position in the config, for messages.
    pub(crate) index: usize,
    pub(crate) target: Target,
    pub(crate) origin: Origin,
    pub(crate) transforms: Vec<Transform>,
    pub(crate) default: Option<FieldValue>,
    pub(crate) required: bool,
    pub(crate) apply: Apply,
}

impl Rule {
    /// Compiles the rule at `index`; the error names it.
    pub(crate) fn compile(
        index: usize,
        config: &RuleConfig,
        extensions: &[String],
    ) -> Result<Rule, String> {
        let label = |message: String| label(index, &config.target, &message);
        let target = schema::resolve(&config.target, extensions).map_err(label)?;
        let (origin, mut kinds) = origin(config).map_err(label)?;
        let mut transforms = Vec::with_capacity(config.transform.len());
        for (i, t) in config.transform.iter().enumerate() {
            let transform =
                Transform::compile(t).map_err(|e| label(format!("transform {i}: {e}")))?;
            kinds = transform
                .kinds(kinds)
                .map_err(|e| label(format!("transform {i}: {e}")))?;
            transforms.push(transform);
        }
        let accepts = target.ty.accepts();
        if !kinds.intersects(accepts) {
            return Err(label(format!(
                "type mismatch: the rule yields {} but `{}` takes {}",
                kinds.describe(),
                target.display(),
                accepts.describe()
            )));
        }
        let default = match &config.default {
            None => None,
            Some(json) => {
                let value = from_config_json(json)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        label(
                            "the default must be a non-empty string, number, boolean or \
                             array of strings"
                                .to_owned(),
                        )
                    })?;
                if !Kinds::of(&value).intersects(accepts) {
                    return Err(label(format!(
                        "type mismatch: the default is {} but `{}` takes {}",
                        Kinds::of(&value).describe(),
                        target.display(),
                        accepts.describe()
                    )));
                }
                Some(value)
            }
        };
        if target.is_user_name() && config.apply == Apply::Create {
            return Err(label(
                "the userName rule must apply always: every request carries userName".to_owned(),
            ));
        }
        Ok(Rule {
            index,
            required: config.required || target.is_user_name(),
            target,
            origin,
            transforms,
            default,
            apply: config.apply,
        })
    }

    /// The rule's value for a user, after transforms and default; the error says which
    /// transform failed and why.
    pub(crate) fn value(&self, user: &CmsUser) -> Result<FieldValue, String> {
        let mut value = match &self.origin {
            Origin::Field(name) => value::field(user, name),
            Origin::Constant(v) => v.clone(),
            Origin::Template(t) => t.render(user),
        };
        for t in &self.transforms {
            value = t
                .apply(value)
                .map_err(|e| format!("transform `{}`: {e}", t.name()))?;
        }
        if value.is_empty()
            && let Some(default) = &self.default
        {
            value = default.clone();
        }
        Ok(value)
    }

    /// `mapping[i] (target)`, for messages.
    pub(crate) fn label(&self) -> String {
        format!("mapping[{}] ({})", self.index, self.target.display())
    }
}

/// An error message naming the rule by index and target as written.
pub(crate) fn label(index: usize, target: &str, message: &str) -> String {
    format!("mapping[{index}] (target {target:?}): {message}")
}

fn origin(config: &RuleConfig) -> Result<(Origin, Kinds), String> {
    match (&config.source, &config.constant, &config.template) {
        (Some(source), None, None) => {
            let source = source.trim();
            check_field_name(source)?;
            Ok((Origin::Field(source.to_owned()), field_kinds(source)))
        }
        (None, Some(json), None) => {
            let value = from_config_json(json)
                .ok_or("the constant must be a string, number, boolean or array of strings")?;
            let kinds = Kinds::of(&value);
            Ok((Origin::Constant(value), kinds))
        }
        (None, None, Some(template)) => {
            Ok((Origin::Template(Template::parse(template)?), Kinds::TEXT))
        }
        _ => Err("a rule needs exactly one of `source`, `constant` and `template`".to_owned()),
    }
}
