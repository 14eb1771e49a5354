//! `docker_build`: build an image from a context directory through the engine's API (the
//! context is sent as a tar, `.dockerignore` honoured), stream the build log as progress, and
//! tag it. Before building, the image each tag points to is recorded; rollback points the
//! tags back (or removes a tag that did not exist).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, RemoveImageOptions, TagImageOptions};
use futures_util::StreamExt;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Intent, StepCx, StepError, Undo};
use crate::check::{Checker, Scalar};
use crate::docker::{self, describe, short};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {
    context: Spanned<String>,
    dockerfile: Option<Spanned<String>>,
    tags: Spanned<Vec<Spanned<String>>>,
    build_args: Option<BTreeMap<String, Spanned<Scalar>>>,
    target: Option<Spanned<String>>,
}

#[derive(Debug)]
pub(crate) struct DockerBuild {
    context: String,
    dockerfile: String,
    tags: Vec<String>,
    build_args: BTreeMap<String, String>,
    target: Option<String>,
}

/// The images the tags pointed to before the build (`None`: the tag did not exist).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Tags {
    before: Vec<(String, Option<String>)>,
}

impl DockerBuild {
    pub(crate) fn validate(raw: Raw, cx: &mut Checker<'_>) -> Option<Self> {
        let context = cx.text(&raw.context);
        let dockerfile = match &raw.dockerfile {
            Some(d) => cx.text(d),
            None => Some("Dockerfile".into()),
        };
        let tags: Option<Vec<String>> = raw
            .tags
            .get_ref()
            .iter()
            .map(|t| {
                let tag = cx.text(t)?;
                // A plan renders `{{run.id}}` as a placeholder; the real id is a valid tag.
                match check_reference(&tag.replace("<run.id>", "run-id")) {
                    Ok(()) => Some(tag),
                    Err(why) => {
                        cx.problem(t.span(), why, "this tag");
                        None
                    }
                }
            })
            .collect();
        if raw.tags.get_ref().is_empty() {
            cx.problem(raw.tags.span(), "a build needs at least one tag", "no tags");
        }
        let build_args: Option<BTreeMap<String, String>> = raw
            .build_args
            .iter()
            .flatten()
            .map(|(k, v)| Some((k.clone(), cx.scalar(v)?)))
            .collect();
        let target = match &raw.target {
            Some(t) => Some(cx.text(t)?),
            None => None,
        };
        let (context, dockerfile) = (context?, dockerfile?);
        let file = cx.workdir().join(&context).join(&dockerfile);
        if !file.is_file() {
            cx.problem(
                raw.context.span(),
                format!("there is no `{dockerfile}` in the build context `{context}`"),
                "this context",
            );
            return None;
        }
        Some(DockerBuild {
            context,
            dockerfile,
            tags: tags.filter(|t| !t.is_empty())?,
            build_args: build_args?,
            target,
        })
    }

    pub(crate) fn plan(&self) -> Intent {
        let target = self
            .target
            .as_ref()
            .map(|t| format!(" (stage `{t}`)"))
            .unwrap_or_default();
        Intent::new(
            format!(
                "build `{}/{}`{target} and tag it {}",
                self.context,
                self.dockerfile,
                self.tags
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            true,
        )
    }

    /// Records which image each tag names now.
    pub(crate) async fn prepare(&self, cx: &StepCx<'_>) -> Result<Undo, StepError> {
        let docker = cx.lent.docker().await?;
        Ok(Undo::Retag(Tags::now(&docker, &self.tags).await?))
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let docker = cx.lent.docker().await?;
        let recipe = Recipe {
            dir: cx.resolve(&self.context),
            context: &self.context,
            dockerfile: &self.dockerfile,
            tags: &self.tags,
            args: &self.build_args,
            target: self.target.as_deref(),
            labels: &BTreeMap::new(),
            platform: None,
        };
        let id = build(&docker, cx, &recipe).await?;
        Ok(format!("built {} as {}", short(&id), self.tags.join(", ")))
    }
}

/// An image to build: the context directory (`context` as the playbook names it), its
/// Dockerfile, the tags (at least one), build args, stage, labels and platform.
pub(crate) struct Recipe<'a> {
    pub(crate) dir: PathBuf,
    pub(crate) context: &'a str,
    pub(crate) dockerfile: &'a str,
    pub(crate) tags: &'a [String],
    pub(crate) args: &'a BTreeMap<String, String>,
    pub(crate) target: Option<&'a str>,
    pub(crate) labels: &'a BTreeMap<String, String>,
    pub(crate) platform: Option<&'a str>,
}

/// Builds `recipe` through the engine, streaming its log, tags it; returns the image id.
pub(crate) async fn build(
    docker: &Docker,
    cx: &StepCx<'_>,
    recipe: &Recipe<'_>,
) -> Result<String, StepError> {
    let tar = tokio::task::spawn_blocking({
        let (dir, dockerfile) = (recipe.dir.clone(), recipe.dockerfile.to_string());
        move || archive(&dir, &dockerfile)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(StepError::io(format!(
        "cannot pack the build context `{}`",
        recipe.context
    )))?;
    cx.say(format!("sending a {} kB build context", tar.len() / 1024));
    let options = BuildImageOptions {
        dockerfile: recipe.dockerfile.to_string(),
        t: Some(recipe.tags[0].clone()),
        rm: true,
        forcerm: true,
        buildargs: Some(recipe.args.clone().into_iter().collect()),
        labels: Some(recipe.labels.clone().into_iter().collect()),
        target: recipe.target.unwrap_or_default().to_string(),
        platform: recipe.platform.unwrap_or_default().to_string(),
        ..Default::default()
    };
    let mut build = docker.build_image(options, None, Some(bollard::body_full(tar.into())));
    let mut step = String::from("the build");
    let mut id = None;
    while let Some(item) = build.next().await {
        let info = item.map_err(|e| format!("{step} failed: {}", describe(&e)))?;
        if let Some(error) = info.error_detail.and_then(|d| d.message).or(info.error) {
            return Err(format!("{step} failed: {}", error.trim()).into());
        }
        for line in info.stream.iter().flat_map(|s| s.lines()) {
            let line = line.trim_end();
            if let Some((done, total)) = build_step(line) {
                step = format!("`{line}`");
                cx.meter(done, total, line.to_string());
            } else if !line.is_empty() {
                cx.say(line.to_string());
            }
        }
        if let Some(aux) = info.aux.and_then(|a| a.id) {
            id = Some(aux);
        }
    }
    for tag in &recipe.tags[1..] {
        point(docker, id.as_deref().unwrap_or(&recipe.tags[0]), tag).await?;
    }
    match id {
        Some(id) => Ok(id),
        None => Ok(docker::image_id(docker, &recipe.tags[0])
            .await?
            .ok_or_else(|| "the engine reported no image".to_string())?),
    }
}

impl Tags {
    /// The image each of `tags` names now.
    pub(crate) async fn now(docker: &Docker, tags: &[String]) -> Result<Self, StepError> {
        let mut before = Vec::new();
        for tag in tags {
            before.push((tag.clone(), docker::image_id(docker, tag).await?));
        }
        Ok(Tags { before })
    }

    pub(crate) async fn restore(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let docker = cx.lent.docker().await?;
        for (tag, before) in &self.before {
            match before {
                Some(id) => point(&docker, id, tag).await?,
                None => {
                    let options = RemoveImageOptions {
                        force: true,
                        noprune: true,
                    };
                    match docker.remove_image(tag, Some(options), None).await {
                        Ok(_) => {}
                        Err(e) if docker::is_not_found(&e) => {}
                        Err(e) => {
                            return Err(
                                format!("cannot remove tag `{tag}`: {}", describe(&e)).into()
                            );
                        }
                    }
                }
            }
        }
        Ok(format!("pointed {} tag(s) back", self.before.len()))
    }
}

/// Points `tag` (repo[:tag]) at `image`.
async fn point(docker: &Docker, image: &str, tag: &str) -> Result<(), StepError> {
    let (repo, version) = split_reference(tag);
    let options = TagImageOptions {
        repo: Some(repo.to_string()),
        tag: Some(version.to_string()),
    };
    docker
        .tag_image(image, Some(options))
        .await
        .map_err(|e| format!("cannot tag {} as `{tag}`: {}", short(image), describe(&e)).into())
}

/// `repo[:tag]` split at the tag's colon (not a registry port's).
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

fn check_reference(reference: &str) -> Result<(), String> {
    let (repo, tag) = split_reference(reference);
    let repo_ok = !repo.is_empty()
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if repo_ok && tag_ok {
        Ok(())
    } else {
        Err(format!(
            "`{reference}` is not a valid image tag (lowercase repository, tag of letters, digits, `.`, `_`, `-`)"
        ))
    }
}

/// The build context as a tar, without what `.dockerignore` excludes (the Dockerfile and
/// `.dockerignore` are always sent, as the Docker CLI does).
fn archive(dir: &Path, dockerfile: &str) -> std::io::Result<Vec<u8>> {
    let ignore = ignore_rules(dir)?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let always = [Path::new(dockerfile), Path::new(".dockerignore")];
    let walk = walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name();
    let mut entries = walk.into_iter();
    while let Some(entry) = entries.next() {
        let entry = entry.map_err(std::io::Error::other)?;
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays inside");
        let is_dir = entry.file_type().is_dir();
        if !always.contains(&rel) && ignore.matched_path_or_any_parents(rel, is_dir).is_ignore() {
            if is_dir {
                entries.skip_current_dir();
            }
            continue;
        }
        tar.append_path_with_name(entry.path(), rel)?;
    }
    tar.into_inner()
}

fn ignore_rules(dir: &Path) -> std::io::Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(dir);
    let file = dir.join(".dockerignore");
    if file.is_file()
        && let Some(e) = builder.add(&file)
    {
        return Err(std::io::Error::other(e));
    }
    builder.build().map_err(std::io::Error::other)
}

/// The builder's `Step 3/7 : RUN ...` line: step 3 of 7.
fn build_step(line: &str) -> Option<(u64, u64)> {
    let (done, total) = line
        .strip_prefix("Step ")?
        .split_once(' ')?
        .0
        .split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(split_reference("app:1.2"), ("app", "1.2"));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/app:v2"),
            ("localhost:5000/app", "v2")
        );
        assert!(check_reference("relay:20261125T220000.123Z").is_ok());
        assert!(check_reference("Relay:x").is_err());
        assert!(check_reference("relay:-x").is_err());
    }

    #[test]
    fn the_context_leaves_out_what_dockerignore_says() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("node_modules/x")).unwrap();
        std::fs::create_dir_all(d.join("src")).unwrap();
        for f in [
            "Dockerfile",
            "src/app.js",
            "node_modules/x/big.js",
            "notes.log",
            "keep.log",
        ] {
            std::fs::write(d.join(f), f).unwrap();
        }
        std::fs::write(
            d.join(".dockerignore"),
            "node_modules\n*.log\n!keep.log\nDockerfile\n",
        )
        .unwrap();
        let tar = archive(d, "Dockerfile").unwrap();
        let mut names: Vec<String> = tar::Archive::new(tar.as_slice())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "keep.log",
                "src",
                "src/app.js"
            ]
        );
    }

    #[test]
    fn build_steps_are_read_from_the_builders_lines() {
        assert_eq!(
            super::build_step("Step 3/7 : RUN apt-get update"),
            Some((3, 7))
        );
        assert_eq!(super::build_step("Step x/7 : RUN"), None);
        assert_eq!(super::build_step(" ---> Running in 1f2e"), None);
    }
}
