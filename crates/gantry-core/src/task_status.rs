//! A task's lifecycle, in ECS's order: the one definition of which `lastStatus` comes after
//! which. The wire keeps the strings (a stored task holds the enum, serialized as the string);
//! compare them through [`TaskStatus`].

/// A task's `lastStatus` (and, for RUNNING and STOPPED, its `desiredStatus`), ordered as the
/// lifecycle goes: a task only moves forward, so a later status never gives way to an earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Provisioning,
        TaskStatus::Pending,
        TaskStatus::Activating,
        TaskStatus::Running,
        TaskStatus::Deactivating,
        TaskStatus::Stopping,
        TaskStatus::Deprovisioning,
        TaskStatus::Stopped,
    ];

    /// ECS's name of the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    /// The status ECS names `s` (exactly, upper case), if any.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// DEACTIVATING, STOPPING or DEPROVISIONING: on its way out, not yet STOPPED.
    pub fn is_stopping(self) -> bool {
        (TaskStatus::Deactivating..TaskStatus::Stopped).contains(&self)
    }
}

/// Serialized as ECS's name (a stored record's `lastStatus`), and read back strictly: a name
/// ECS does not have is an error (a record that reads leniently says so with its own
/// `deserialize_with`).
impl serde::Serialize for TaskStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for TaskStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TaskStatus::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown task status '{s}'")))
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_names_and_parsing_agree() {
        let names: Vec<&str> = TaskStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "PROVISIONING",
                "PENDING",
                "ACTIVATING",
                "RUNNING",
                "DEACTIVATING",
                "STOPPING",
                "DEPROVISIONING",
                "STOPPED"
            ]
        );
        for w in TaskStatus::ALL.windows(2) {
            assert!(w[0] < w[1]);
        }
        for s in TaskStatus::ALL {
            assert_eq!(TaskStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskStatus::parse("running"), None);
        assert_eq!(TaskStatus::parse(""), None);
        let stopping: Vec<_> = TaskStatus::ALL.into_iter().filter(|s| s.is_stopping()).collect();
        assert_eq!(stopping, [TaskStatus::Deactivating, TaskStatus::Stopping, TaskStatus::Deprovisioning]);
    }
}
