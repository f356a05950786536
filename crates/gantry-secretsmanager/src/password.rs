//! GetRandomPassword: characters drawn from the OS CSPRNG by rejection sampling (no modulo bias).

use crate::invalid_parameter;
use gantry_core::{SecretGen, ServiceError};
use gantry_model::secretsmanager::{GetRandomPasswordRequest, GetRandomPasswordResponse};

const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &str = "0123456789";
const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// A uniform index below `n` from `secrets`.
fn below(secrets: &dyn SecretGen, n: usize) -> usize {
    let zone = u32::MAX - (u32::MAX % n as u32);
    loop {
        let mut b = [0u8; 4];
        secrets.fill(&mut b);
        let x = u32::from_le_bytes(b);
        if x < zone {
            return (x % n as u32) as usize;
        }
    }
}

/// `require_each` is RequireEachIncludedType as the request gave it (AWS's default is true,
/// which the generated shape's plain `bool` cannot tell from an absent member).
pub fn generate(
    secrets: &dyn SecretGen,
    req: GetRandomPasswordRequest,
    require_each: bool,
) -> Result<GetRandomPasswordResponse, ServiceError> {
    let length = req.password_length.unwrap_or(32);
    if !(1..=4096).contains(&length) {
        return Err(invalid_parameter(format!(
            "PasswordLength must be between 1 and 4096, but was {length}."
        )));
    }
    let length = length as usize;
    let exclude = req.exclude_characters.unwrap_or_default();
    let mut classes: Vec<Vec<char>> = Vec::new();
    for (set, skip) in [
        (LOWER, req.exclude_lowercase == Some(true)),
        (UPPER, req.exclude_uppercase == Some(true)),
        (DIGITS, req.exclude_numbers == Some(true)),
        (PUNCTUATION, req.exclude_punctuation == Some(true)),
        (" ", req.include_space != Some(true)),
    ] {
        if skip {
            continue;
        }
        let chars: Vec<char> = set.chars().filter(|c| !exclude.contains(*c)).collect();
        if !chars.is_empty() {
            classes.push(chars);
        }
    }
    let all: Vec<char> = classes.iter().flatten().copied().collect();
    if all.is_empty() {
        return Err(invalid_parameter("The password cannot be generated: every character type is excluded."));
    }
    if require_each && length < classes.len() {
        return Err(invalid_parameter(format!(
            "PasswordLength {length} is too short to include each of the {} included character types.",
            classes.len()
        )));
    }
    loop {
        let pw: Vec<char> = (0..length).map(|_| all[below(secrets, all.len())]).collect();
        if !require_each || classes.iter().all(|c| pw.iter().any(|x| c.contains(x))) {
            return Ok(GetRandomPasswordResponse { random_password: Some(pw.into_iter().collect()) });
        }
    }
}
