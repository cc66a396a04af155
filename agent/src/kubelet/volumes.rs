//! A pod's volumes as runtime volume sources: emptyDir, hostPath, claims, and the files of
//! ConfigMaps, Secrets, the downward API and projections of them. Pure apart from the
//! lookups passed in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_runtime::volumes::{HostPathType, KeyToPath, Projection, StorageMedium, VolumeSource};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath as K8sKeyToPath, Pod, Volume};
use serde_json::Value;

use super::env::{EnvError, Lookup, PodFacts, field_value, resource_value, secret_bytes};
use crate::objects::quantity;

/// Why a volume cannot be set up yet (a FailedMount event; the pod waits and retries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountProblem {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error(transparent)]
    Claim(#[from] crate::claims::ClaimProblem),
    #[error("{0}")]
    Field(String),
    #[error("volume type of {0:?} is not supported")]
    Unsupported(String),
}

impl From<EnvError> for MountProblem {
    fn from(e: EnvError) -> MountProblem {
        MountProblem::Field(e.to_string())
    }
}

/// Looks up a claim's volume source (see [`crate::claims::volume_source`]).
pub type ClaimLookup<'a> = &'a dyn Fn(&str) -> Result<VolumeSource, crate::claims::ClaimProblem>;

/// The runtime volume source of one pod volume; `None` for a volume that is optional and
/// whose source is absent (it is then an empty directory, as kubelet does).
pub fn volume_source(
    pod: &Pod,
    volume: &Volume,
    facts: &PodFacts,
    lookup: Lookup<'_>,
    claim: ClaimLookup<'_>,
) -> Result<VolumeSource, MountProblem> {
    if let Some(e) = &volume.empty_dir {
        let medium = if e.medium.as_deref() == Some("Memory") {
            StorageMedium::Memory
        } else {
            StorageMedium::Disk
        };
        let size_limit = e
            .size_limit
            .as_ref()
            .and_then(|q| quantity::bytes(&q.0).ok())
            .map(|b| b.clamp(0, u64::MAX as i128) as u64);
        return Ok(VolumeSource::EmptyDir { medium, size_limit });
    }
    if let Some(h) = &volume.host_path {
        let kind = match h.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            _ => HostPathType::Unset,
        };
        return Ok(VolumeSource::HostPath {
            path: PathBuf::from(&h.path),
            kind,
        });
    }
    if let Some(c) = &volume.persistent_volume_claim {
        return Ok(claim(&c.claim_name)?);
    }
    if let Some(cm) = &volume.config_map {
        let data = match lookup("ConfigMap", &cm.name) {
            Some(obj) => config_map_bytes(&obj),
            None if cm.optional == Some(true) => BTreeMap::new(),
            None => return Err(MountProblem::ConfigMapNotFound(cm.name.clone())),
        };
        return Ok(VolumeSource::ConfigMap(Projection {
            data,
            items: items(cm.items.as_deref(), cm.optional == Some(true)),
            default_mode: cm.default_mode.map(|m| m as u32),
        }));
    }
    if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let data = match lookup("Secret", &name) {
            Some(obj) => secret_bytes(&obj),
            None if s.optional == Some(true) => BTreeMap::new(),
            None => return Err(MountProblem::SecretNotFound(name)),
        };
        return Ok(VolumeSource::Secret(Projection {
            data,
            items: items(s.items.as_deref(), s.optional == Some(true)),
            default_mode: s.default_mode.map(|m| m as u32),
        }));
    }
    if let Some(d) = &volume.downward_api {
        let mut files = Files::default();
        downward_files(pod, facts, d.items.as_deref().unwrap_or(&[]), &mut files)?;
        return Ok(VolumeSource::ConfigMap(
            files.into_projection(d.default_mode),
        ));
    }
    if let Some(p) = &volume.projected {
        // Every source's files in one volume. Secrets among them make the whole volume a
        // Secret volume (tmpfs, stricter default mode).
        let mut files = Files::default();
        let mut secret = false;
        for source in p.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                match lookup("ConfigMap", &cm.name) {
                    Some(obj) => {
                        files.add_map(config_map_bytes(&obj), cm.items.as_deref(), &cm.name)?
                    }
                    None if cm.optional == Some(true) => {}
                    None => return Err(MountProblem::ConfigMapNotFound(cm.name.clone())),
                }
            }
            if let Some(s) = &source.secret {
                secret = true;
                match lookup("Secret", &s.name) {
                    Some(obj) => files.add_map(secret_bytes(&obj), s.items.as_deref(), &s.name)?,
                    None if s.optional == Some(true) => {}
                    None => return Err(MountProblem::SecretNotFound(s.name.clone())),
                }
            }
            if let Some(d) = &source.downward_api {
                downward_files(pod, facts, d.items.as_deref().unwrap_or(&[]), &mut files)?;
            }
            if source.service_account_token.is_some() || source.cluster_trust_bundle.is_some() {
                return Err(MountProblem::Unsupported(volume.name.clone()));
            }
        }
        let projection = files.into_projection(p.default_mode);
        return Ok(if secret {
            VolumeSource::Secret(projection)
        } else {
            VolumeSource::ConfigMap(projection)
        });
    }
    Err(MountProblem::Unsupported(volume.name.clone()))
}

fn config_map_bytes(obj: &Value) -> BTreeMap<String, Vec<u8>> {
    use base64::Engine;
    let mut data: BTreeMap<String, Vec<u8>> = obj
        .get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(binary) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in binary {
            if let Some(bytes) = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            {
                data.insert(k.clone(), bytes);
            }
        }
    }
    data
}

/// `items` of a ConfigMap/Secret volume. With `optional`, missing keys are skipped, which
/// the runtime does when items name keys that are not in the data... so only keep items whose
/// key may be present; the runtime reports a missing key of a non-optional source.
fn items(items: Option<&[K8sKeyToPath]>, _optional: bool) -> Option<Vec<KeyToPath>> {
    items.map(|list| {
        list.iter()
            .map(|i| KeyToPath {
                key: i.key.clone(),
                path: i.path.clone(),
                mode: i.mode.map(|m| m as u32),
            })
            .collect()
    })
}

/// Files gathered from several sources, each under a unique key.
#[derive(Default)]
struct Files {
    data: BTreeMap<String, Vec<u8>>,
    items: Vec<KeyToPath>,
}

impl Files {
    fn add(&mut self, path: &str, content: Vec<u8>, mode: Option<u32>) {
        let key = format!("f{}", self.items.len());
        self.data.insert(key.clone(), content);
        self.items.push(KeyToPath {
            key,
            path: path.to_string(),
            mode,
        });
    }

    fn add_map(
        &mut self,
        data: BTreeMap<String, Vec<u8>>,
        items: Option<&[K8sKeyToPath]>,
        source: &str,
    ) -> Result<(), MountProblem> {
        match items {
            None => {
                for (k, v) in data {
                    self.add(&k, v, None);
                }
            }
            Some(items) => {
                for i in items {
                    let content = data.get(&i.key).cloned().ok_or_else(|| {
                        MountProblem::Field(format!("key {:?} is not in {source:?}", i.key))
                    })?;
                    self.add(&i.path, content, i.mode.map(|m| m as u32));
                }
            }
        }
        Ok(())
    }

    fn into_projection(self, default_mode: Option<i32>) -> Projection {
        Projection {
            data: self.data,
            items: Some(self.items),
            default_mode: default_mode.map(|m| m as u32),
        }
    }
}

fn downward_files(
    pod: &Pod,
    facts: &PodFacts,
    items: &[DownwardAPIVolumeFile],
    files: &mut Files,
) -> Result<(), MountProblem> {
    for item in items {
        let content = if let Some(f) = &item.field_ref {
            field_value(pod, facts, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| {
                    s.containers
                        .iter()
                        .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                })
                .ok_or_else(|| {
                    MountProblem::Field(format!(
                        "resourceFieldRef of {:?}: container not found",
                        item.path
                    ))
                })?;
            resource_value(
                container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
            )?
        } else {
            String::new()
        };
        files.add(
            &item.path,
            content.into_bytes(),
            item.mode.map(|m| m as u32),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn lookup(kind: &str, name: &str) -> Option<Arc<Value>> {
        match (kind, name) {
            ("ConfigMap", "site") => Some(Arc::new(
                json!({"data": {"index.html": "<h1>hi</h1>"}, "binaryData": {"logo": "AAEC"}}),
            )),
            ("Secret", "tls") => Some(Arc::new(json!({"data": {"tls.key": "a2V5"}}))),
            _ => None,
        }
    }

    fn no_claims(name: &str) -> Result<VolumeSource, crate::claims::ClaimProblem> {
        Err(crate::claims::ClaimProblem::NotFound(name.into()))
    }

    fn source(volume: Value) -> Result<VolumeSource, MountProblem> {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "x"}], "volumes": [volume]}}),
        )
        .unwrap();
        let v = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0].clone();
        volume_source(&pod, &v, &PodFacts::default(), &lookup, &no_claims)
    }

    #[test]
    fn volumes_map_to_runtime_sources() {
        assert_eq!(
            source(
                json!({"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}})
            )
            .unwrap(),
            VolumeSource::EmptyDir {
                medium: StorageMedium::Memory,
                size_limit: Some(64 << 20)
            }
        );
        assert_eq!(
            source(json!({"name": "h", "hostPath": {"path": "/srv", "type": "DirectoryOrCreate"}}))
                .unwrap(),
            VolumeSource::HostPath {
                path: "/srv".into(),
                kind: HostPathType::DirectoryOrCreate
            }
        );
        match source(json!({"name": "site", "configMap": {"name": "site"}})).unwrap() {
            VolumeSource::ConfigMap(p) => {
                assert_eq!(p.data["index.html"], b"<h1>hi</h1>".to_vec());
                assert_eq!(p.data["logo"], vec![0, 1, 2]);
            }
            other => panic!("{other:?}"),
        }
        match source(json!({"name": "tls", "secret": {"secretName": "tls", "defaultMode": 0o440}}))
            .unwrap()
        {
            VolumeSource::Secret(p) => {
                assert_eq!(p.data["tls.key"], b"key".to_vec());
                assert_eq!(p.default_mode, Some(0o440));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_sources_are_mount_problems_unless_optional() {
        assert_eq!(
            source(json!({"name": "x", "configMap": {"name": "nope"}}))
                .unwrap_err()
                .to_string(),
            "configmap \"nope\" not found"
        );
        assert_eq!(
            source(json!({"name": "x", "secret": {"secretName": "nope"}}))
                .unwrap_err()
                .to_string(),
            "secret \"nope\" not found"
        );
        assert!(
            matches!(source(json!({"name": "x", "configMap": {"name": "nope", "optional": true}})).unwrap(), VolumeSource::ConfigMap(p) if p.data.is_empty())
        );
        assert_eq!(
            source(json!({"name": "d", "persistentVolumeClaim": {"claimName": "data-web-0"}}))
                .unwrap_err()
                .to_string(),
            "persistentvolumeclaim \"data-web-0\" not found"
        );
    }

    #[test]
    fn projected_volumes_merge_their_sources() {
        let v = source(json!({"name": "all", "projected": {"sources": [
            {"configMap": {"name": "site", "items": [{"key": "index.html", "path": "web/index.html"}]}},
            {"secret": {"name": "tls"}},
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ]}}))
        .unwrap();
        let VolumeSource::Secret(p) = v else {
            panic!("a projection with a secret is a secret volume")
        };
        let paths: Vec<&str> = p
            .items
            .as_ref()
            .unwrap()
            .iter()
            .map(|i| i.path.as_str())
            .collect();
        assert_eq!(paths, vec!["web/index.html", "tls.key", "labels"]);
        let labels_key = &p.items.as_ref().unwrap()[2].key;
        assert_eq!(p.data[labels_key], b"a=\"b\"".to_vec());
    }
}
