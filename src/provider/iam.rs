//! IAM roles generated for functions: trust policy, one inline policy, tags.

use super::{Desired, Listed, aws_error, config_of, created, deleted, error_code, tag_changes};
use crate::resource::{Kind, Live, Outputs, ROLE_POLICY_NAME, RoleConfig, Tags};
use anyhow::{Context, Result};
use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use serde_json::Value;

pub(super) fn update_calls(changed: &[String]) -> Vec<&'static str> {
    let mut calls = Vec::new();
    for f in changed {
        match f.as_str() {
            "trust_policy" => calls.push("iam:UpdateAssumeRolePolicy"),
            "policy" => calls.push("iam:PutRolePolicy"),
            "tags" => calls.extend(["iam:TagRole", "iam:UntagRole"]),
            _ => {}
        }
    }
    calls
}

/// Roles live under `/slx/{stack}/{stage}/`, so listing by path finds exactly ours.
/// `prefix` is a name prefix; the path prefix `/slx/` narrows the listing.
pub(super) async fn list(c: &Client, prefix: &str) -> Result<Vec<Listed>> {
    let mut out = Vec::new();
    let mut marker = None;
    loop {
        let page = c
            .list_roles()
            .path_prefix("/slx/")
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| aws_error("iam:ListRoles", &e))?;
        for r in page.roles() {
            if r.role_name().starts_with(prefix) {
                out.push(Listed { name: r.role_name().to_string(), id: r.arn().to_string(), extra: Value::Null });
            }
        }
        marker = page.marker().map(String::from);
        if !page.is_truncated() || marker.is_none() {
            return Ok(out);
        }
    }
}

/// IAM returns policy documents URL-encoded.
pub(crate) fn decode_policy(doc: &str) -> Value {
    let text = if doc.trim_start().starts_with('{') { doc.to_string() } else { percent_decode(doc) };
    normalize(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// IAM may return a single resource as a string; slx always writes a list.
fn normalize(mut doc: Value) -> Value {
    if let Some(stmts) = doc.get_mut("Statement").and_then(Value::as_array_mut) {
        for s in stmts {
            if let Some(v) = s.get_mut("Resource").filter(|v| v.is_string()) {
                *v = Value::Array(vec![v.clone()]);
            }
        }
    }
    doc
}

pub(super) async fn read(c: &Client, name: &str) -> Result<Option<Live>> {
    let (role, policy) = tokio::join!(
        c.get_role().role_name(name).send(),
        c.get_role_policy().role_name(name).policy_name(ROLE_POLICY_NAME).send()
    );
    let role = match role {
        Ok(o) => o.role().cloned().context("iam:GetRole returned no role")?,
        Err(e) if error_code(&e) == Some("NoSuchEntity") => return Ok(None),
        Err(e) => return Err(aws_error("iam:GetRole", &e)),
    };
    let policy = match policy {
        Ok(p) => decode_policy(p.policy_document()),
        Err(e) if error_code(&e) == Some("NoSuchEntity") => Value::Null,
        Err(e) => return Err(aws_error("iam:GetRolePolicy", &e)),
    };
    let tags: Tags = role.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect();
    let config = RoleConfig {
        path: role.path().to_string(),
        trust_policy: role.assume_role_policy_document().map(decode_policy).unwrap_or(Value::Null),
        policy,
        tags,
    };
    Ok(Some(Live {
        kind: Kind::Role,
        name: name.to_string(),
        config: serde_json::to_value(config)?,
        outputs: Outputs::from([("arn".to_string(), role.arn().to_string())]),
        data: None,
        alias_async: Default::default(),
    }))
}

fn iam_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value set")).collect()
}

pub(super) async fn create(c: &Client, r: Desired<'_>) -> Result<Outputs> {
    let role: RoleConfig = config_of(&r)?;
    let out = c
        .create_role()
        .role_name(r.name)
        .path(&role.path)
        .assume_role_policy_document(role.trust_policy.to_string())
        .set_tags(Some(iam_tags(&role.tags)))
        .send()
        .await;
    let out = created(out, "EntityAlreadyExists", "iam:CreateRole")?;
    put_policy(c, r.name, &role.policy).await?;
    let arn = out.role().map(|r| r.arn().to_string()).unwrap_or_default();
    Ok(Outputs::from([("arn".to_string(), arn)]))
}

async fn put_policy(c: &Client, name: &str, policy: &Value) -> Result<()> {
    c.put_role_policy()
        .role_name(name)
        .policy_name(ROLE_POLICY_NAME)
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(|e| aws_error("iam:PutRolePolicy", &e))?;
    Ok(())
}

pub(super) async fn update(c: &Client, r: Desired<'_>, prior: &Live, changed: &[String]) -> Result<Outputs> {
    let role: RoleConfig = config_of(&r)?;
    for f in changed {
        match f.as_str() {
            "trust_policy" => {
                c.update_assume_role_policy()
                    .role_name(r.name)
                    .policy_document(role.trust_policy.to_string())
                    .send()
                    .await
                    .map_err(|e| aws_error("iam:UpdateAssumeRolePolicy", &e))?;
            }
            "policy" => put_policy(c, r.name, &role.policy).await?,
            "tags" => {
                let (add, remove) = tag_changes(&role.tags, &prior.tags());
                if !add.is_empty() {
                    c.tag_role()
                        .role_name(r.name)
                        .set_tags(Some(iam_tags(&add)))
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:TagRole", &e))?;
                }
                if !remove.is_empty() {
                    c.untag_role()
                        .role_name(r.name)
                        .set_tag_keys(Some(remove))
                        .send()
                        .await
                        .map_err(|e| aws_error("iam:UntagRole", &e))?;
                }
            }
            _ => {}
        }
    }
    Ok(prior.outputs.clone())
}

/// A role must be emptied of policies before IAM deletes it.
pub(super) async fn delete(c: &Client, prior: &Live) -> Result<()> {
    let name = &prior.name;
    let inline =
        c.list_role_policies().role_name(name).send().await.map_err(|e| aws_error("iam:ListRolePolicies", &e))?;
    for p in inline.policy_names() {
        c.delete_role_policy()
            .role_name(name)
            .policy_name(p)
            .send()
            .await
            .map_err(|e| aws_error("iam:DeleteRolePolicy", &e))?;
    }
    let attached = c
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .map_err(|e| aws_error("iam:ListAttachedRolePolicies", &e))?;
    for p in attached.attached_policies() {
        if let Some(arn) = p.policy_arn() {
            c.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| aws_error("iam:DetachRolePolicy", &e))?;
        }
    }
    deleted(c.delete_role().role_name(name).send().await, "NoSuchEntity", "iam:DeleteRole")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_url_encoded_policies() {
        let doc = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22arn%3Aaws%3As3%3A%3A%3Ab%2F%2A%22%7D%5D%7D";
        let v = decode_policy(doc);
        assert_eq!(v["Statement"][0]["Resource"], serde_json::json!(["arn:aws:s3:::b/*"]));
        assert_eq!(v["Statement"][0]["Action"], serde_json::json!("s3:GetObject"));
    }
}
