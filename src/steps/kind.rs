//! The step kinds by name: a playbook's `kind` is parsed into one once, and plans, events and
//! messages name it back.

/// What kind of step a step is; `Action` holds the kind's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    pub(crate) const ALL: [Kind; 19] = [
        Kind::Backup,
        Kind::Template,
        Kind::Env,
        Kind::Exec,
        Kind::Sql,
        Kind::PgWait,
        Kind::PgBackup,
        Kind::RedisBackup,
        Kind::Preflight,
        Kind::DockerBuild,
        Kind::ComposeUp,
        Kind::ComposeDown,
        Kind::LbSwitch,
        Kind::DockerPrune,
        Kind::HttpCheck,
        Kind::Notify,
        Kind::Monitor,
        Kind::Verify,
        Kind::Migrate,
    ];

    /// The name a playbook gives the kind.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Template => "template",
            Kind::Env => "env",
            Kind::Exec => "exec",
            Kind::Sql => "sql",
            Kind::PgWait => "pg_wait",
            Kind::PgBackup => "pg_backup",
            Kind::RedisBackup => "redis_backup",
            Kind::Preflight => "preflight",
            Kind::DockerBuild => "docker_build",
            Kind::ComposeUp => "compose_up",
            Kind::ComposeDown => "compose_down",
            Kind::LbSwitch => "lb_switch",
            Kind::DockerPrune => "docker_prune",
            Kind::HttpCheck => "http_check",
            Kind::Notify => "notify",
            Kind::Monitor => "monitor",
            Kind::Verify => "verify",
            Kind::Migrate => "migrate",
        }
    }

    /// The kind a playbook names, if there is one by that name.
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn every_kind_is_listed_once_and_parses_back_from_its_name() {
        for (i, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(Kind::ALL.iter().position(|k| *k == kind), Some(i));
            assert_eq!(Kind::parse(kind.name()), Some(kind));
        }
        assert_eq!(Kind::parse("compose"), None);
    }
}
