//! The Object Lock requests opendal 0.57 has no API for, signed with the
//! store's reqsign chain and sent with its reqwest client (as
//! ListMultipartUploads is in the parent module): GetObjectLockConfiguration
//! (`GET /?object-lock`), PutObjectRetention (`PUT /KEY?retention`) and
//! GetObjectRetention (`GET /KEY?retention`).

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use jiff::Timestamp;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{S3Store, encode};
use crate::entry::hex;
use crate::remote::lock::{Lock, LockMode, Retention, rfc3339};

/// What the store answered: status, S3 error code (empty on success), body.
struct Answer {
    ok: bool,
    status: u16,
    code: String,
    body: String,
    headers: http::HeaderMap,
}

impl S3Store {
    /// Whether the bucket has Object Lock enabled.
    pub(crate) fn lock_enabled(&self) -> Result<bool> {
        let url = format!("{}/?object-lock", self.bucket_url);
        let a = self.rt.block_on(self.send_raw("GET", &url, &[]))?;
        if a.ok {
            let c: LockConfiguration = quick_xml::de::from_str(&a.body).with_context(|| {
                format!(
                    "the Object Lock configuration of s3://{} does not parse",
                    self.bucket
                )
            })?;
            return Ok(c.object_lock_enabled.as_deref() == Some("Enabled"));
        }
        if a.code == "ObjectLockConfigurationNotFoundError" {
            return Ok(false);
        }
        bail!(
            "cannot read the Object Lock configuration of s3://{}: HTTP {} {}",
            self.bucket,
            a.status,
            a.code
        )
    }

    /// PutObjectRetention on `name`.
    pub(crate) fn set_retention(&self, name: &str, lock: &Lock) -> Result<()> {
        let body = format!(
            "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            lock.mode.s3(),
            rfc3339(lock.until)
        );
        let url = format!("{}?retention", self.object_url(name));
        let a = self
            .rt
            .block_on(self.send_raw("PUT", &url, body.as_bytes()))?;
        if !a.ok {
            bail!(
                "cannot set Object Lock retention on {}: HTTP {} {}",
                self.url(name),
                a.status,
                a.code
            );
        }
        Ok(())
    }

    /// The retention of `name`: None when it has none. HEAD first (its
    /// `x-amz-object-lock-*` headers); when they show no lock, also
    /// GetObjectRetention, since a caller without s3:GetObjectRetention gets
    /// no headers — a refusal there is an error, never "not locked". A
    /// store that answers GetObjectRetention with something other than a
    /// retention (moto serves the object) is taken at its HEAD's word.
    pub(crate) fn retention(&self, name: &str) -> Result<Option<Retention>> {
        let url = self.object_url(name);
        let head = self.rt.block_on(self.send_raw("HEAD", &url, &[]))?;
        if !head.ok {
            bail!(
                "cannot look up {} (for its Object Lock retention): HTTP {}",
                self.url(name),
                head.status
            );
        }
        let header = |h: &str| head.headers.get(h).and_then(|v| v.to_str().ok());
        if let Some(date) = header("x-amz-object-lock-retain-until-date") {
            let mode = header("x-amz-object-lock-mode").and_then(LockMode::from_s3);
            return Ok(Some(Retention {
                mode,
                until: self.parse_until(name, date)?,
            }));
        }
        let a = self
            .rt
            .block_on(self.send_raw("GET", &format!("{url}?retention"), &[]))?;
        if !a.ok {
            if a.code == "NoSuchObjectLockConfiguration" {
                return Ok(None);
            }
            bail!(
                "cannot read the Object Lock retention of {}: HTTP {} {}",
                self.url(name),
                a.status,
                a.code
            );
        }
        let Ok(r) = quick_xml::de::from_str::<RetentionXml>(&a.body) else {
            return Ok(None);
        };
        match r.retain_until_date {
            None => Ok(None),
            Some(date) => Ok(Some(Retention {
                mode: r.mode.as_deref().and_then(LockMode::from_s3),
                until: self.parse_until(name, &date)?,
            })),
        }
    }

    fn parse_until(&self, name: &str, date: &str) -> Result<Timestamp> {
        date.parse().map_err(|e| {
            anyhow!(
                "the retention date {date:?} of {} is not a time: {e}",
                self.url(name)
            )
        })
    }

    fn object_url(&self, name: &str) -> String {
        let key = format!("{}{name}", self.key_prefix);
        let path: Vec<String> = key.split('/').map(encode).collect();
        format!("{}/{}", self.bucket_url, path.join("/"))
    }

    /// One signed request with `body` (its SHA-256 signed and sent as the
    /// checksum S3 requires on Object Lock requests).
    async fn send_raw(&self, method: &str, url: &str, body: &[u8]) -> Result<Answer> {
        let digest = Sha256::digest(body);
        let mut b = http::Request::builder()
            .method(method)
            .uri(url)
            .header("x-amz-content-sha256", hex(&digest));
        if !body.is_empty() {
            b = b
                .header(
                    "x-amz-checksum-sha256",
                    base64::engine::general_purpose::STANDARD.encode(digest),
                )
                .header("x-amz-sdk-checksum-algorithm", "SHA256")
                .header("content-type", "application/xml");
        }
        let (mut parts, ()) = b.body(()).context("bad request URL")?.into_parts();
        self.signer.sign(&mut parts, None).await.map_err(|e| {
            anyhow!(
                "no usable credentials ({e}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            )
        })?;
        let resp = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| anyhow!("the store did not answer: {e}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let code = if status.is_success() {
            String::new()
        } else {
            text.split_once("<Code>")
                .and_then(|(_, r)| r.split_once("</Code>"))
                .map_or("", |(c, _)| c)
                .to_string()
        };
        Ok(Answer {
            ok: status.is_success(),
            status: status.as_u16(),
            code,
            body: text,
            headers,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockConfiguration {
    object_lock_enabled: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionXml {
    mode: Option<String>,
    retain_until_date: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_answers_parse() {
        let c: LockConfiguration = quick_xml::de::from_str(
            r#"<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"#,
        )
        .unwrap();
        assert_eq!(c.object_lock_enabled.as_deref(), Some("Enabled"));
        let r: RetentionXml = quick_xml::de::from_str(
            r#"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2027-01-04T02:00:00.000Z</RetainUntilDate></Retention>"#,
        )
        .unwrap();
        assert_eq!(r.mode.as_deref(), Some("GOVERNANCE"));
        let t: Timestamp = r.retain_until_date.unwrap().parse().unwrap();
        assert_eq!(rfc3339(t), "2027-01-04T02:00:00Z");
    }
}
