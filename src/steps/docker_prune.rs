//! `docker_prune`: remove dangling images (untagged, used by no container), such as the ones
//! left behind when a build moves a tag. Images that kept containers use are never touched.

use std::collections::HashMap;

use bollard::query_parameters::PruneImagesOptions;
use serde::Deserialize;

use super::{Intent, StepCx, StepError};
use crate::check::Checker;
use crate::docker::describe;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Raw {}

#[derive(Debug)]
pub(crate) struct DockerPrune;

impl DockerPrune {
    pub(crate) fn validate(_: Raw, _: &mut Checker<'_>) -> Option<Self> {
        Some(DockerPrune)
    }

    pub(crate) fn plan(&self) -> Intent {
        Intent::new("remove dangling images (untagged and unused)".into(), true)
    }

    pub(crate) async fn apply(&self, cx: &StepCx<'_>) -> Result<String, StepError> {
        let docker = cx.lent.docker().await?;
        let options = PruneImagesOptions {
            filters: Some(HashMap::from([(
                "dangling".to_string(),
                vec!["true".to_string()],
            )])),
        };
        let pruned = docker
            .prune_images(Some(options))
            .await
            .map_err(|e| format!("cannot prune images: {}", describe(&e)))?;
        let removed = pruned
            .images_deleted
            .unwrap_or_default()
            .iter()
            .filter(|i| i.deleted.is_some())
            .count();
        let reclaimed = pruned.space_reclaimed.unwrap_or_default();
        Ok(format!(
            "removed {removed} image layer(s), reclaimed {:.1} MB",
            reclaimed as f64 / 1e6
        ))
    }
}
