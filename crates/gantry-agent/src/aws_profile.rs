//! The AWS CLI's profile for a Gantry endpoint, as `gantry up` writes it: `[profile NAME]` in the
//! shared config file (`endpoint_url`, `region`) and `[NAME]` in the shared credentials file (the
//! key), so that `aws --profile NAME ecs list-clusters` reaches Gantry with nothing exported.
//!
//! The files are the user's: only the named profile's own keys change. Every other profile,
//! comment, blank line and key (the named profile's other keys included) stays as it was, in its
//! place. The files are found where the AWS CLI looks (`AWS_CONFIG_FILE`,
//! `AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/config` and `~/.aws/credentials`) and replaced
//! atomically (written beside, then renamed over, through a symlink to its target), keeping
//! their mode; new ones are created 0600 in a 0700 directory, as `aws configure` does.
//! [`set_section`] is the pure part; [`write`] does the file work.

use gantry_core::Secret;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A profile for one Gantry endpoint.
pub struct Profile<'a> {
    /// The profile's name (`gantry`).
    pub name: &'a str,
    /// `http://127.0.0.1:7360`.
    pub endpoint_url: &'a str,
    pub region: &'a str,
    pub access_key_id: &'a str,
    pub secret_access_key: &'a Secret,
}

/// Where the profile went.
#[derive(Debug)]
pub struct Written {
    pub config: PathBuf,
    pub credentials: PathBuf,
}

/// The shared config file the AWS CLI reads: `AWS_CONFIG_FILE`, else `~/.aws/config`.
pub fn config_path() -> Option<PathBuf> {
    aws_file("AWS_CONFIG_FILE", "config")
}

/// The shared credentials file the AWS CLI reads: `AWS_SHARED_CREDENTIALS_FILE`, else
/// `~/.aws/credentials`.
pub fn credentials_path() -> Option<PathBuf> {
    aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")
}

fn aws_file(var: &str, name: &str) -> Option<PathBuf> {
    let get = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    match get(var) {
        // The CLI expands `~` in these variables.
        Some(p) => Some(expand_home(&PathBuf::from(p), get("HOME").map(PathBuf::from))),
        None => get("HOME").map(|h| PathBuf::from(h).join(".aws").join(name)),
    }
}

fn expand_home(p: &Path, home: Option<PathBuf>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p.to_path_buf(),
    }
}

/// Writes `profile` into the AWS CLI's config and credentials files.
pub fn write(profile: &Profile<'_>) -> std::io::Result<Written> {
    let missing =
        || std::io::Error::new(std::io::ErrorKind::NotFound, "neither AWS_CONFIG_FILE nor HOME is set");
    let config = config_path().ok_or_else(missing)?;
    let credentials = credentials_path().ok_or_else(missing)?;
    update_file(&config, |text| {
        set_section(
            text,
            &format!("profile {}", profile.name),
            &[("endpoint_url", profile.endpoint_url), ("region", profile.region)],
            &[],
        )
    })?;
    update_file(&credentials, |text| {
        set_section(
            text,
            profile.name,
            &[
                ("aws_access_key_id", profile.access_key_id),
                ("aws_secret_access_key", profile.secret_access_key.expose()),
            ],
            // A session token left from another key would be sent with this one and refused.
            &["aws_session_token"],
        )
    })?;
    Ok(Written { config, credentials })
}

/// Rewrites the file at `path` (or creates it) with `edit` applied to its text.
fn update_file(path: &Path, edit: impl Fn(&str) -> String) -> std::io::Result<()> {
    // Through a symlink (dotfiles kept elsewhere) to the file it names.
    let target = match std::fs::canonicalize(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => return Err(e),
    };
    let (text, mode) = match std::fs::read_to_string(&target) {
        Ok(t) => (t, std::fs::metadata(&target)?.permissions().mode() & 0o7777),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), 0o600),
        Err(e) => return Err(e),
    };
    let new = edit(&text);
    if new == text && !text.is_empty() {
        return Ok(());
    }
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.gantry-{}", std::process::id()));
    let result = (|| {
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        // The mode given to open is masked by the umask; an existing file's is kept exactly.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(new.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A section header's name with its inner spaces normalized (`[ profile  x ]` is `profile x`),
/// or None for a line that is not a header.
fn header(line: &str) -> Option<String> {
    let inner = line.trim().strip_prefix('[')?.strip_suffix(']')?;
    Some(inner.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The key of a `key = value` line at the start of a line (indented lines are a nested
/// setting's, as in `s3 =\n  addressing_style = path`; comments are not keys).
fn key_of(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t', '#', ';']) {
        return None;
    }
    let (k, _) = line.split_once('=')?;
    Some(k.trim())
}

/// The text of an INI file (the AWS CLI's config or credentials) with `values` set in
/// `section` and the keys in `drop` removed from it; the section is appended if absent. Every
/// other line stays as it was.
pub fn set_section(text: &str, section: &str, values: &[(&str, &str)], drop: &[&str]) -> String {
    let want = header(&format!("[{section}]")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| header(l).as_deref() == Some(want.as_str()));
    let render = |k: &str, v: &str| format!("{k} = {v}");
    let Some(start) = start else {
        let mut out = text.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        if !out.trim().is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&format!("[{section}]\n"));
        for (k, v) in values {
            out.push_str(&render(k, v));
            out.push('\n');
        }
        return out;
    };
    let end =
        lines[start + 1..].iter().position(|l| header(l).is_some()).map_or(lines.len(), |i| start + 1 + i);
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    let mut set = vec![false; values.len()];
    let mut body: Vec<String> = Vec::new();
    let mut skipping_nested = false;
    for line in &lines[start + 1..end] {
        // The indented lines under a dropped or replaced key belong to it.
        if skipping_nested {
            if line.starts_with([' ', '\t']) && !line.trim().is_empty() {
                continue;
            }
            skipping_nested = false;
        }
        match key_of(line) {
            Some(k) if drop.contains(&k) => skipping_nested = true,
            Some(k) => match values.iter().position(|(vk, _)| *vk == k) {
                Some(i) if set[i] => skipping_nested = true,
                Some(i) => {
                    set[i] = true;
                    body.push(render(values[i].0, values[i].1));
                    skipping_nested = true;
                }
                None => body.push(line.to_string()),
            },
            None => body.push(line.to_string()),
        }
    }
    // New keys go after the section's last line that is not blank.
    let at = body.iter().rposition(|l| !l.trim().is_empty()).map_or(0, |i| i + 1);
    let added: Vec<String> =
        values.iter().zip(&set).filter(|(_, done)| !**done).map(|((k, v), _)| render(k, v)).collect();
    body.splice(at..at, added);
    out.extend(body);
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    let mut s = out.join("\n");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# my settings
[default]
region = eu-west-1
output = json

[profile gantry]
# keep this comment
region = us-west-2
s3 =
  addressing_style = path
endpoint_url = http://old:1

[profile work]
region = ap-south-1
";

    #[test]
    fn a_present_section_changes_only_its_own_keys() {
        let out = set_section(
            CONFIG,
            "profile gantry",
            &[("endpoint_url", "http://127.0.0.1:7360"), ("region", "us-east-1")],
            &[],
        );
        assert_eq!(
            out,
            "\
# my settings
[default]
region = eu-west-1
output = json

[profile gantry]
# keep this comment
region = us-east-1
s3 =
  addressing_style = path
endpoint_url = http://127.0.0.1:7360

[profile work]
region = ap-south-1
"
        );
        // Writing it again changes nothing.
        let again = set_section(
            &out,
            "profile gantry",
            &[("endpoint_url", "http://127.0.0.1:7360"), ("region", "us-east-1")],
            &[],
        );
        assert_eq!(again, out);
    }

    #[test]
    fn a_missing_section_is_appended_and_missing_keys_added_at_its_end() {
        let creds = "[default]\naws_access_key_id = AKIAUSER\naws_secret_access_key = s\n";
        let out = set_section(
            creds,
            "gantry",
            &[("aws_access_key_id", "test"), ("aws_secret_access_key", "test")],
            &[],
        );
        assert_eq!(
            out,
            "[default]\naws_access_key_id = AKIAUSER\naws_secret_access_key = s\n\n[gantry]\naws_access_key_id = test\naws_secret_access_key = test\n"
        );
        assert_eq!(set_section("", "gantry", &[("a", "1")], &[]), "[gantry]\na = 1\n");
        // Without a final newline, and with a section that lacks a key.
        let partial = "[gantry]\naws_access_key_id = old\naws_session_token = tok\n\n[other]\nx = 1";
        let out = set_section(
            partial,
            "gantry",
            &[("aws_access_key_id", "new"), ("aws_secret_access_key", "sec")],
            &["aws_session_token"],
        );
        assert_eq!(out, "[gantry]\naws_access_key_id = new\naws_secret_access_key = sec\n\n[other]\nx = 1\n");
    }

    #[test]
    fn headers_match_with_spaces_normalized_and_duplicates_collapse() {
        let text = "[ profile   gantry ]\nregion = a\nregion = b\n";
        let out = set_section(text, "profile gantry", &[("region", "c")], &[]);
        assert_eq!(out, "[ profile   gantry ]\nregion = c\n");
        // `[gantry]` in a config file is not the profile `gantry`.
        let out = set_section("[gantry]\nregion = a\n", "profile gantry", &[("region", "c")], &[]);
        assert_eq!(out, "[gantry]\nregion = a\n\n[profile gantry]\nregion = c\n");
    }

    #[test]
    fn home_is_expanded() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(expand_home(Path::new("~/x/config"), home.clone()), PathBuf::from("/home/u/x/config"));
        assert_eq!(expand_home(Path::new("/etc/config"), home), PathBuf::from("/etc/config"));
    }
}
