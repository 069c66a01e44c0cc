//! S3-compatible stores through opendal (`services-s3`), driven by a private
//! tokio runtime: every call here blocks the caller until it is done, so the
//! rest of datamig stays synchronous.
//!
//! Configuration is the one every S3 tool reads: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE` with
//! `~/.aws/config` and `~/.aws/credentials` (opendal's reqsign chain),
//! `AWS_REGION` (or `AWS_DEFAULT_REGION`, else the profile's `region`), and
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (else the profile's
//! `endpoint_url`; see `aws_config`) for a non-AWS store (MinIO, Ceph RGW,
//! Garage, moto), which is then addressed path-style and may be plain
//! `http://`. The EC2 instance-metadata lookup is
//! off, so a machine without credentials fails at once with a clear message
//! instead of probing the network.
//!
//! opendal has no call for ListMultipartUploads, and its writer hides the
//! upload id, so cleaning up after a dead run signs those two requests with
//! the same reqsign chain and sends them with reqwest (both already under
//! opendal): no hand-written SigV4.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, WriteOptions};
use opendal::{ErrorKind, Operator};
use serde::Deserialize;

use super::{Location, Object, PutError, Tuning, is_datamig_name};

#[path = "s3_lock.rs"]
mod lock;

/// Bytes read from the file per write call into the part buffer.
const READ_PIECE: usize = 1 << 20;

pub(super) struct S3Store {
    rt: tokio::runtime::Runtime,
    op: Operator,
    bucket: String,
    /// `PREFIX/`, or empty.
    key_prefix: String,
    /// Where the bucket is addressed: `{endpoint}/{bucket}` (path-style) or
    /// `https://{bucket}.s3.{region}.amazonaws.com`.
    bucket_url: String,
    signer: reqsign_core::Signer<reqsign_aws_v4::Credential>,
    http: reqwest::Client,
    tuning: Tuning,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl S3Store {
    pub(super) fn open(bucket: &str, prefix: &str, tuning: Tuning) -> Result<S3Store> {
        // reqwest is built without a default crypto provider (aws-lc-rs costs
        // a cmake build); ring is installed once, for every client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let profile = super::aws_config::load()?;
        let endpoint = env("AWS_ENDPOINT_URL_S3")
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .or(profile.endpoint_url)
            .map(|e| e.trim_end_matches('/').to_string());
        let region = match (
            env("AWS_REGION")
                .or_else(|| env("AWS_DEFAULT_REGION"))
                .or(profile.region),
            &endpoint,
        ) {
            (Some(r), _) => r,
            // A non-AWS store usually ignores the region; SigV4 still needs one.
            (None, Some(_)) => "us-east-1".to_string(),
            (None, None) => bail!(
                "s3://{bucket}: no region: set AWS_REGION (e.g. AWS_REGION=eu-west-1), or AWS_ENDPOINT_URL for a non-AWS store"
            ),
        };
        let root = if prefix.is_empty() {
            "/".to_string()
        } else {
            format!("/{prefix}/")
        };
        let mut b = opendal::services::S3::default()
            .bucket(bucket)
            .root(&root)
            .region(&region)
            .disable_ec2_metadata();
        let bucket_url = match &endpoint {
            Some(e) => {
                b = b.endpoint(e);
                format!("{e}/{bucket}")
            }
            None => {
                b = b.enable_virtual_host_style();
                format!("https://{bucket}.s3.{region}.amazonaws.com")
            }
        };
        let op = Operator::new(b)
            .with_context(|| format!("s3://{bucket}: cannot configure the S3 client"))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            // Transient errors (throttling, 5xx, a dropped connection) are
            // retried with jittered backoff, about half a minute at most.
            .layer(
                RetryLayer::new()
                    .with_jitter()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(8)),
            )
            .finish();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("datamig-s3")
            .enable_all()
            .build()
            .context("cannot start the S3 client's runtime")?;
        let ctx = reqsign_core::Context::new()
            .with_file_read(reqsign_file_read_tokio::TokioFileRead)
            .with_env(reqsign_core::OsEnv);
        let provider = reqsign_aws_v4::DefaultCredentialProvider::builder()
            .no_imds()
            .build();
        let signer = reqsign_core::Signer::new(
            ctx,
            provider,
            reqsign_aws_v4::RequestSigner::new("s3", &region),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(S3Store {
            rt,
            op,
            bucket: bucket.to_string(),
            key_prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            bucket_url,
            signer,
            http,
            tuning,
        })
    }

    fn url(&self, name: &str) -> String {
        format!("s3://{}/{}{name}", self.bucket, self.key_prefix)
    }

    /// One line naming the object, the store's error and what to do.
    fn explain(&self, name: &str, what: &str, e: opendal::Error) -> anyhow::Error {
        let text = e.to_string();
        let code = super::hints::code_in(&text);
        if let Some(advice) = code.and_then(super::hints::for_code) {
            return anyhow!(
                "{what} {}: {} {} ({}); {advice}",
                self.url(name),
                e.kind(),
                code.unwrap_or(""),
                e.message()
            );
        }
        let hint = match e.kind() {
            ErrorKind::PermissionDenied => {
                "; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and the bucket policy"
            }
            ErrorKind::NotFound => "; check that the bucket exists (and AWS_REGION)",
            ErrorKind::ConfigInvalid => {
                "; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            }
            ErrorKind::RateLimited => "; the store is throttling: try again later",
            ErrorKind::Unexpected if e.is_temporary() => {
                "; the store did not answer (still failing after retries): check AWS_ENDPOINT_URL and the network"
            }
            _ => "",
        };
        anyhow!(
            "{what} {}: {} ({}){hint}",
            self.url(name),
            e.kind(),
            e.message()
        )
    }

    pub(super) fn put_new(
        &self,
        name: &str,
        src: &mut dyn Read,
        size: u64,
        loc: &Location,
    ) -> Result<(), PutError> {
        let opts = WriteOptions {
            if_not_exists: true,
            concurrent: self.tuning.parallel,
            chunk: Some(self.tuning.part_size),
            ..Default::default()
        };
        // A signal mid-upload is handled here, where the writer (and so the
        // upload id) is: the send loop stops at the next part boundary, the
        // upload is aborted, then the run ends as any interrupted run does
        // (see `signals`). The writer's future is never dropped half-way:
        // opendal's retry layer cannot abort after that.
        let _busy = crate::signals::Busy::start();
        let result = self.rt.block_on(async {
            let mut w = self
                .op
                .writer_options(name, opts)
                .await
                .map_err(|e| self.explain(name, "cannot start the upload of", e))?;
            let result = self.send(&mut w, name, src, size, loc).await;
            if result.is_err() {
                // Nothing may stay behind: the parts already sent are dropped.
                let _ = w.abort().await;
            }
            result
        });
        if let Some(sig) = crate::signals::interrupted() {
            if result.is_ok() {
                // The signal came while the upload completed: the object is
                // the one this run just created (create-only), and goes.
                let _ = self.delete(name);
            }
            crate::signals::exit_interrupted(sig);
        }
        result
    }

    /// Stream `src` into the writer and complete the upload.
    async fn send(
        &self,
        w: &mut opendal::Writer,
        name: &str,
        src: &mut dyn Read,
        size: u64,
        loc: &Location,
    ) -> Result<(), PutError> {
        let taken = |e: &opendal::Error| {
            matches!(
                e.kind(),
                ErrorKind::ConditionNotMatch | ErrorKind::AlreadyExists
            )
        };
        let mut sent = 0u64;
        loop {
            if crate::signals::interrupted().is_some() {
                return Err(PutError::Interrupted);
            }
            let mut buf = vec![0u8; READ_PIECE];
            let n = read_full(src, &mut buf)
                .map_err(|e| anyhow!("cannot read the file being uploaded: {e}"))?;
            if n == 0 {
                break;
            }
            buf.truncate(n);
            sent += n as u64;
            w.write(buf)
                .await
                .map_err(|e| self.explain(name, "cannot upload", e))?;
        }
        if sent != size {
            return Err(anyhow!(
                "the file changed size while it was uploaded ({sent} bytes read, {size} expected)"
            )
            .into());
        }
        match w.close().await {
            Ok(_) => Ok(()),
            Err(e) if taken(&e) => Err(PutError::Exists(loc.url_of(name))),
            Err(e) => Err(self
                .explain(name, "cannot complete the upload of", e)
                .into()),
        }
    }

    pub(super) fn stat(&self, name: &str) -> Result<Option<u64>> {
        self.rt.block_on(async {
            match self.op.stat(name).await {
                Ok(m) => Ok(Some(m.content_length())),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.explain(name, "cannot look up", e)),
            }
        })
    }

    pub(super) fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        self.rt.block_on(async {
            let b = self
                .op
                .read_with(name)
                .range(offset..offset + len)
                .await
                .map_err(|e| self.explain(name, "cannot read", e))?;
            Ok(b.to_vec())
        })
    }

    /// The whole object in one streamed GET: some stores (moto among them)
    /// answer every ranged GET by reading the whole object, and one request
    /// is cheaper on any store than 8 MiB ranges.
    pub(super) fn read_stream(
        &self,
        name: &str,
        size: u64,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<u64> {
        use futures::TryStreamExt;
        self.rt.block_on(async {
            let mut stream = self
                .op
                .reader(name)
                .await
                .map_err(|e| self.explain(name, "cannot read", e))?
                .into_bytes_stream(0..size)
                .await
                .map_err(|e| self.explain(name, "cannot read", e))?;
            let mut read = 0;
            while let Some(b) = stream
                .try_next()
                .await
                .with_context(|| format!("cannot read {}", self.url(name)))?
            {
                sink(&b);
                read += b.len() as u64;
            }
            Ok(read)
        })
    }

    pub(super) fn list(&self) -> Result<Vec<Object>> {
        self.rt.block_on(async {
            let entries = self
                .op
                .list_options("", ListOptions::default())
                .await
                .map_err(|e| self.explain("", "cannot list", e))?;
            Ok(entries
                .into_iter()
                .filter(|e| e.metadata().is_file())
                .map(|e| Object {
                    name: e.name().to_string(),
                    size: e.metadata().content_length(),
                    modified: e.metadata().last_modified().map(|t| t.to_string()),
                })
                .collect())
        })
    }

    pub(super) fn delete(&self, name: &str) -> Result<()> {
        self.rt.block_on(async {
            self.op
                .delete(name)
                .await
                .map_err(|e| self.explain(name, "cannot delete", e))
        })
    }

    /// ListMultipartUploads under the prefix, then AbortMultipartUpload for
    /// each upload of a datamig name directly at the prefix.
    pub(super) fn abort_unfinished(&self, loc: &Location) -> Result<Vec<String>> {
        self.rt.block_on(async {
            let mut aborted = Vec::new();
            let mut marker: Option<(String, String)> = None;
            loop {
                let page = self.list_uploads(marker.as_ref()).await?;
                for u in &page.upload {
                    let Some(name) = u.key.strip_prefix(&self.key_prefix) else {
                        continue;
                    };
                    if name.contains('/') || !is_datamig_name(name) {
                        continue;
                    }
                    self.abort_upload(&u.key, &u.upload_id).await?;
                    aborted.push(loc.url_of(name));
                }
                match (
                    page.is_truncated,
                    page.next_key_marker,
                    page.next_upload_id_marker,
                ) {
                    (Some(true), Some(k), Some(u)) => marker = Some((k, u)),
                    _ => break,
                }
            }
            Ok(aborted)
        })
    }

    async fn list_uploads(&self, marker: Option<&(String, String)>) -> Result<ListUploads> {
        let mut url = format!(
            "{}/?uploads&prefix={}",
            self.bucket_url,
            encode(&self.key_prefix)
        );
        if let Some((k, u)) = marker {
            url.push_str(&format!(
                "&key-marker={}&upload-id-marker={}",
                encode(k),
                encode(u)
            ));
        }
        let body = self
            .signed("GET", &url)
            .await
            .with_context(|| format!("cannot list the unfinished uploads in {}", self.url("")))?;
        quick_xml::de::from_str(&body).with_context(|| {
            format!(
                "the store's list of unfinished uploads in {} does not parse",
                self.url("")
            )
        })
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let path: Vec<String> = key.split('/').map(encode).collect();
        let url = format!(
            "{}/{}?uploadId={}",
            self.bucket_url,
            path.join("/"),
            encode(upload_id)
        );
        self.signed("DELETE", &url).await.with_context(|| {
            format!(
                "cannot abort the unfinished upload of s3://{}/{key}",
                self.bucket
            )
        })?;
        Ok(())
    }

    /// Send one signed request with an empty body; the response body, or an
    /// error with the store's status and code.
    async fn signed(&self, method: &str, url: &str) -> Result<String> {
        let req = http::Request::builder()
            .method(method)
            .uri(url)
            .body(())
            .context("bad request URL")?;
        let (mut parts, ()) = req.into_parts();
        self.signer
            .sign(&mut parts, None)
            .await
            .map_err(|e| {
                anyhow!(
                    "no usable credentials ({e}): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
                )
            })?;
        let resp = self
            .http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "the store did not answer ({}): check AWS_ENDPOINT_URL (or the profile's endpoint_url) and the network",
                    without_url(&e)
                )
            })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let code = text
                .split_once("<Code>")
                .and_then(|(_, r)| r.split_once("</Code>"))
                .map_or("", |(c, _)| c);
            match super::hints::for_code(code) {
                Some(advice) => bail!("HTTP {status} {code}; {advice}"),
                None => bail!("HTTP {status} {code}"),
            }
        }
        Ok(text)
    }
}

/// reqwest's error without the URL it names (the URL is already in the
/// message, and a query string could carry a presigned credential).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// Read until `buf` is full or the end of `src`.
fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// S3's URI encoding: everything but the unreserved characters.
fn encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListUploads {
    #[serde(default)]
    upload: Vec<Upload>,
    is_truncated: Option<bool>,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Upload {
    key: String,
    upload_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_multipart_uploads_answer_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/a.tar.zst</NextKeyMarker><NextUploadIdMarker>xyz</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>
  <Upload><Key>p/a.tar.zst</Key><UploadId>xyz</UploadId><Initiated>2026-12-03T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/b.tar.zst</Key><UploadId>u2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let l: ListUploads = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(l.upload.len(), 2);
        assert_eq!(l.upload[0].key, "p/a.tar.zst");
        assert_eq!(l.upload[1].upload_id, "u2");
        assert_eq!(l.is_truncated, Some(false));
        let empty: ListUploads = quick_xml::de::from_str(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        )
        .unwrap();
        assert!(empty.upload.is_empty());
    }

    #[test]
    fn keys_are_encoded_as_s3_signs_them() {
        assert_eq!(encode("a b+c/d~e"), "a%20b%2Bc%2Fd~e");
    }
}
