//! Judging containers docker-compose made: adopted, replaced (and why), or runner's.

use bollard::models::{
    ContainerConfig, ContainerState, EndpointSettings, HostConfig, ImageConfig, NetworkSettings,
    PortBinding, RestartPolicy, RestartPolicyNameEnum,
};

use super::*;
use crate::steps::compose::model::{self, Selection};

const FILE: &str = "services:\n  cache:\n    image: redis:7-alpine\n    environment: { MODE: master }\n    ports: [\"127.0.0.1:6380:6379\"]\n    volumes: [\"data:/data\", \"./redis.conf:/etc/redis.conf:ro\"]\n    restart: unless-stopped\nvolumes:\n  data:\n";

fn project(text: &str) -> Project {
    let selection = Selection {
        profiles: &[],
        named: &[],
    };
    let workdir = std::path::Path::new("/srv");
    model::load(
        "stack/c.yml",
        text,
        &Default::default(),
        Some("p"),
        workdir,
        &selection,
    )
    .unwrap()
}

fn image() -> ImageInspect {
    ImageInspect {
        id: Some("sha256:aaa".into()),
        config: Some(ImageConfig {
            env: Some(vec!["PATH=/usr/bin".into()]),
            cmd: Some(vec!["redis-server".into()]),
            entrypoint: Some(vec!["docker-entrypoint.sh".into()]),
            working_dir: Some("/data".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container docker-compose 1.29 makes of FILE, as `docker inspect` shows it, after
/// a recreate (its `affinity:` hint, and an anonymous volume carried over).
fn made_by_compose() -> ContainerInspectResponse {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let labels = [
        ("com.docker.compose.project", "p"),
        ("com.docker.compose.service", "cache"),
        ("com.docker.compose.version", "1.29.2"),
        ("com.docker.compose.config-hash", "0b0cea51"),
    ];
    let anonymous = "f".repeat(64);
    ContainerInspectResponse {
        id: Some("c0ffee".into()),
        name: Some("/p_cache_1".into()),
        image: Some("sha256:aaa".into()),
        state: Some(ContainerState {
            running: Some(true),
            ..Default::default()
        }),
        config: Some(ContainerConfig {
            env: Some(strings(&[
                "MODE=master",
                "affinity:container==1234",
                "PATH=/usr/bin",
            ])),
            cmd: Some(strings(&["redis-server"])),
            entrypoint: Some(strings(&["docker-entrypoint.sh"])),
            working_dir: Some("/data".into()),
            user: Some(String::new()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        }),
        host_config: Some(HostConfig {
            binds: Some(vec![
                "/srv/stack/redis.conf:/etc/redis.conf:ro".into(),
                "p_data:/data:rw".into(),
                format!("{anonymous}:/extra:rw"),
            ]),
            port_bindings: Some(HashMap::from([(
                "6379/tcp".to_string(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some("6380".into()),
                }]),
            )])),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: Some(0),
            }),
            network_mode: Some("p_default".into()),
            ..Default::default()
        }),
        network_settings: Some(NetworkSettings {
            networks: Some(HashMap::from([(
                "p_default".to_string(),
                EndpointSettings {
                    aliases: Some(strings(&["c0ffee", "cache"])),
                    ..Default::default()
                },
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn verdict(text: &str, c: &ContainerInspectResponse, image: &ImageInspect) -> Verdict {
    let project = project(text);
    judge(&project, &project.services["cache"], Some(image), c, true)
}

#[test]
fn a_container_compose_made_with_the_config_runner_would_create_is_adopted() {
    assert_eq!(
        verdict(FILE, &made_by_compose(), &image()),
        Verdict::Adopted
    );
    let project = project(FILE);
    let live = Live {
        containers: vec![made_by_compose()],
        images: BTreeMap::from([("redis:7-alpine".to_string(), image())]),
    };
    assert_eq!(
        foresee(&live, &project, "cache").unwrap(),
        "cache: adopts `p_cache_1` (c0ffee), made by docker-compose 1.29.2: its config is what runner would create"
    );
}

#[test]
fn each_difference_is_named_and_the_environment_by_its_variables_only() {
    let changed = FILE
        .replace("MODE: master", "MODE: replica, EXTRA: secret-value")
        .replace(":/etc/redis.conf:ro", ":/etc/redis.conf")
        .replace("unless-stopped", "always");
    let Verdict::Replaced(why) = verdict(&changed, &made_by_compose(), &image()) else {
        panic!("replaced");
    };
    assert_eq!(why, ["environment (EXTRA, MODE)", "mounts", "restart"]);
    let mut newer = image();
    newer.id = Some("sha256:bbb".into());
    let mut stopped = made_by_compose();
    stopped.state = Some(ContainerState::default());
    let Verdict::Replaced(why) = verdict(FILE, &stopped, &newer) else {
        panic!("replaced");
    };
    assert_eq!(
        why,
        [
            "image (it runs aaa, `redis:7-alpine` is bbb)",
            "state (it is not running)"
        ]
    );
}

#[test]
fn a_container_runner_made_is_judged_by_runners_config_hash() {
    let project = project(FILE);
    let service = &project.services["cache"];
    let mut c = made_by_compose();
    let labels = c.config.as_mut().unwrap().labels.as_mut().unwrap();
    labels.insert(MADE_BY.into(), "runner".into());
    assert_eq!(
        judge(&project, service, Some(&image()), &c, true),
        Verdict::Replaced(vec!["config hash".into()]),
        "the same config, another hash: a key runner does not compare changed"
    );
    let labels = c.config.as_mut().unwrap().labels.as_mut().unwrap();
    labels.insert(
        CONFIG_HASH.into(),
        engine::config_hash(service, "sha256:aaa"),
    );
    assert_eq!(
        judge(&project, service, Some(&image()), &c, true),
        Verdict::Unchanged
    );
}
