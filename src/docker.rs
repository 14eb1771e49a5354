//! The Docker engine, through bollard: connecting (with the API version negotiated, so an
//! older engine works), errors in words, images (present, pulled with progress) and logs.

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error;
use bollard::query_parameters::{CreateImageOptions, LogsOptions};
use futures_util::StreamExt;

/// How long connecting may take before the engine counts as unreachable.
const CONNECT: Duration = Duration::from_secs(10);

/// A client for the engine at `DOCKER_HOST` (or the local socket), checked to answer.
pub(crate) async fn connect() -> Result<Docker, String> {
    let unreachable = |why: String| {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        format!("the Docker engine at {host} is unreachable: {why}")
    };
    let docker = Docker::connect_with_local_defaults().map_err(|e| unreachable(describe(&e)))?;
    tokio::time::timeout(CONNECT, docker.negotiate_version())
        .await
        .map_err(|_| unreachable(format!("no answer within {}s", CONNECT.as_secs())))?
        .map_err(|e| unreachable(describe(&e)))
}

/// An engine error in words: the engine's own message when it sent one.
pub(crate) fn describe(error: &Error) -> String {
    match error {
        Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        other => crate::error::chain(other),
    }
}

/// An image or container id as `docker` shows it: 12 hex digits, without `sha256:`.
pub(crate) fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Whether the engine said the object does not exist.
pub(crate) fn is_not_found(error: &Error) -> bool {
    matches!(
        error,
        Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The id of the image `reference` names, if it is present.
pub(crate) async fn image_id(docker: &Docker, reference: &str) -> Result<Option<String>, String> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(image.id),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(format!(
            "cannot inspect image `{reference}`: {}",
            describe(&e)
        )),
    }
}

/// The id of `reference`, pulled first if it is missing; the pull's progress goes to `say`.
pub(crate) async fn ensure_image(
    docker: &Docker,
    reference: &str,
    say: impl Fn(String),
) -> Result<String, String> {
    if let Some(id) = image_id(docker, reference).await? {
        return Ok(id);
    }
    say(format!("pulling {reference}"));
    let options = CreateImageOptions {
        from_image: Some(reference.to_string()),
        ..Default::default()
    };
    let mut pull = docker.create_image(Some(options), None, None);
    while let Some(item) = pull.next().await {
        let info = item.map_err(|e| {
            format!(
                "image `{reference}` is not present and could not be pulled: {}",
                describe(&e)
            )
        })?;
        if let Some(status) = info.status {
            let detail = info.progress.unwrap_or_default();
            say(format!("{reference}: {status} {detail}")
                .trim_end()
                .to_string());
        }
    }
    image_id(docker, reference)
        .await?
        .ok_or_else(|| format!("image `{reference}` is still missing after the pull"))
}

/// The last `lines` lines a container wrote (stdout and stderr), for error messages.
pub(crate) async fn tail_logs(docker: &Docker, container: &str, lines: usize) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        tail: lines.to_string(),
        ..Default::default()
    };
    let mut logs = docker.logs(container, Some(options));
    let mut text = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
    }
    text.trim_end().to_string()
}
