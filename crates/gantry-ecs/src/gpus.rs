//! GPUs, as ECS has them. A container instance registers a `GPU` resource of type STRINGSET
//! that lists its device IDs; a container definition asks for a number of them
//! (`resourceRequirements: [{"type": "GPU", "value": "2"}]`); placement counts them
//! (`reservation::resource_gpus`). When a task is placed, it reserves concrete IDs from what its
//! instance has left, and each of its containers gets its share (the `gpuIds` of ECS's
//! `Container`), which the agent hands to the engine. The IDs go back when the task stops.
//!
//! Unlike `PORTS` (which lists the ports taken), the `GPU` set of the remaining resources lists
//! the IDs still free.

use crate::ops::task_record::StoredContainer;
use gantry_model::{Resource, TaskDefinition};

/// The resource name, and the `resourceRequirements` type.
pub(crate) const GPU: &str = "GPU";

/// How many GPUs each container definition asks for, in definition order.
pub(crate) fn per_container(def: &TaskDefinition) -> Vec<(Option<String>, usize)> {
    def.container_definitions
        .iter()
        .flatten()
        .map(|c| {
            let n = c
                .resource_requirements
                .iter()
                .flatten()
                .filter(|r| r.r#type == GPU)
                .filter_map(|r| r.value.as_deref().and_then(|v| v.trim().parse::<i64>().ok()))
                .map(|n| n.max(0) as usize)
                .sum();
            (c.name.clone(), n)
        })
        .collect()
}

/// The GPU IDs an instance has left, sorted.
pub(crate) fn free(remaining: &[Resource]) -> Vec<String> {
    let mut ids: Vec<String> = remaining
        .iter()
        .find(|r| r.name.as_deref() == Some(GPU))
        .and_then(|r| r.string_set_value.clone())
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids
}

/// Gives each of a task's containers its share of the task's GPU IDs (`gpuIds`), in the order of
/// the container definitions.
pub(crate) fn hand_out(containers: &mut [StoredContainer], ids: &[String], def: &TaskDefinition) {
    let mut rest = ids;
    for (name, n) in per_container(def) {
        if n == 0 {
            continue;
        }
        let (mine, more) = rest.split_at(n.min(rest.len()));
        rest = more;
        if let Some(c) = containers.iter_mut().find(|c| Some(&c.name) == name.as_ref()) {
            c.gpu_ids = Some(mine.to_vec());
        }
    }
}

/// Takes (`sign` -1) or gives back (`sign` 1) `ids` in an instance's set of free GPU IDs.
pub(crate) fn apply(free: &mut Vec<String>, ids: &[String], sign: i64) {
    if sign < 0 {
        free.retain(|x| !ids.contains(x));
    } else {
        for id in ids {
            if !free.contains(id) {
                free.push(id.clone());
            }
        }
        free.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reservation::{Reservation, registered_only, reserve_gpus as reserve};
    use serde_json::json;

    fn gpus(ids: &[&str]) -> Vec<Resource> {
        vec![Resource {
            name: Some(GPU.into()),
            r#type: Some("STRINGSET".into()),
            string_set_value: Some(ids.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }]
    }

    fn td() -> TaskDefinition {
        serde_json::from_value(json!({"containerDefinitions": [
            {"name": "a", "resourceRequirements": [{"type": "GPU", "value": "2"}]},
            {"name": "side"},
            {"name": "b", "resourceRequirements": [{"type": "GPU", "value": "1"}, {"type": "InferenceAccelerator", "value": "x"}]}
        ]}))
        .unwrap()
    }

    #[test]
    fn reserves_the_lowest_free_ids_and_shares_them_in_definition_order() {
        let def = td();
        assert_eq!(
            per_container(&def),
            vec![(Some("a".into()), 2), (Some("side".into()), 0), (Some("b".into()), 1)]
        );
        let r = reserve(&gpus(&["GPU-d", "GPU-b", "GPU-a", "GPU-c"]), &Reservation::default(), &def);
        assert_eq!(r.gpus, vec!["GPU-a", "GPU-b", "GPU-c"]);
        let c = |name: &str| json!({"containerArn": format!("c/{name}"), "taskArn": "t", "name": name});
        let mut containers: Vec<StoredContainer> =
            serde_json::from_value(json!([c("a"), c("side"), c("b")])).unwrap();
        hand_out(&mut containers, &r.gpus, &def);
        let ids: Vec<_> = containers.into_iter().map(|c| c.gpu_ids).collect();
        assert_eq!(ids, vec![Some(vec!["GPU-a".into(), "GPU-b".into()]), None, Some(vec!["GPU-c".into()])]);
    }

    #[test]
    fn taking_and_giving_back() {
        let mut set: Vec<String> = ["g0", "g1", "g2"].map(String::from).to_vec();
        apply(&mut set, &["g0".into(), "g2".into()], -1);
        assert_eq!(set, vec!["g1"]);
        apply(&mut set, &["g2".into(), "g0".into()], 1);
        assert_eq!(set, vec!["g0", "g1", "g2"]);
        // Giving back twice does not duplicate.
        apply(&mut set, &["g0".into()], 1);
        assert_eq!(set, vec!["g0", "g1", "g2"]);
        let r = Reservation { gpus: vec!["g0".into(), "gone".into()], ..Default::default() };
        assert_eq!(registered_only(&r, &gpus(&["g0", "g1"])).gpus, vec!["g0"]);
    }
}
