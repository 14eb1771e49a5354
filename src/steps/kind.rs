//! The step kinds by name: a playbook's `kind` is parsed into one once, and plans, events and
//! messages name it back.

/// What kind of step a step is; `Action` holds the kind's fields. Adding a variant is all
/// its name takes: strum derives the list of kinds and the names (snake_case) from it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
pub(crate) enum Kind {
    Backup,
    Template,
    Env,
    Exec,
    Sql,
    PgWait,
    PgBackup,
    RedisBackup,
    Preflight,
    DockerBuild,
    ComposeUp,
    ComposeDown,
    LbSwitch,
    DockerPrune,
    HttpCheck,
    Notify,
    Monitor,
    Verify,
    Migrate,
}

impl Kind {
    /// Every kind, in the order an unknown kind's diagnostic lists them.
    pub(crate) fn all() -> impl Iterator<Item = Kind> {
        <Kind as strum::IntoEnumIterator>::iter()
    }

    /// The name a playbook gives the kind.
    pub(crate) fn name(self) -> &'static str {
        self.into()
    }

    /// The kind a playbook names, if there is one by that name.
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        name.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn every_kind_parses_back_from_its_name() {
        let names: Vec<&str> = Kind::all().map(Kind::name).collect();
        assert_eq!(names.len(), 19);
        assert!(names.contains(&"pg_wait") && names.contains(&"http_check"));
        for kind in Kind::all() {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
        }
        assert_eq!(Kind::parse("compose"), None);
        assert_eq!(Kind::parse("Backup"), None);
    }
}
