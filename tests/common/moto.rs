//! A real S3 server for the tests: moto's server mode (`moto_server` from
//! `.ci/venv`, installed there by `.ci/run`), started on 127.0.0.1 with a
//! free port, one per test, and killed when the guard is dropped (or, should
//! the test process die, by PR_SET_PDEATHSIG).
//!
//! Requests the tests make themselves (to create a bucket, look for an object,
//! list unfinished uploads) are plain HTTP/1.1 over `TcpStream`: moto does not
//! check signatures.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto routes a request to its S3 backend by the credential scope of the
/// Authorization header (the signature itself is not checked).
const AUTH: &str = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

pub struct Moto {
    child: Child,
    pub port: u16,
    /// A bucket made for this test.
    pub bucket: String,
    /// An empty directory for HOME, so no real ~/.aws is read.
    home: tempfile::TempDir,
}

/// `.ci/venv/bin/moto_server`; a clear failure (never a skip) when absent.
fn moto_server() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/venv/bin/moto_server");
    assert!(
        p.exists(),
        "the S3 tests need moto's server in {}: run `python3 -m venv .ci/venv && .ci/venv/bin/pip install 'moto[server]'` (.ci/run does)",
        p.display()
    );
    p
}

impl Moto {
    /// Start a server and create `bucket` on it.
    pub fn start(bucket: &str) -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Command::new(moto_server());
        c.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl only sets a flag of the child process before exec.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c.spawn().expect("start moto_server");
        let m = Moto {
            child,
            port,
            bucket: bucket.to_string(),
            home: tempfile::tempdir().unwrap(),
        };
        let start = Instant::now();
        loop {
            if let Some((status, _)) = m.try_http("GET", "/") {
                assert!(status < 500, "moto answered {status}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let (status, body) = m.http("PUT", &format!("/{bucket}"));
        assert!(
            status < 300,
            "cannot create bucket {bucket}: {status} {body}"
        );
        m
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `s3://BUCKET/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Point a datamig command at this server, with dummy keys and nothing
    /// read from the real environment's AWS files.
    pub fn env<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("HOME", self.home.path())
            .env("AWS_CONFIG_FILE", self.home.path().join("config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.home.path().join("credentials"),
            )
    }

    /// One plain HTTP request; (status, body).
    pub fn http(&self, method: &str, path: &str) -> (u16, String) {
        self.try_http(method, path)
            .unwrap_or_else(|| panic!("moto on port {} did not answer {method} {path}", self.port))
    }

    fn try_http(&self, method: &str, path: &str) -> Option<(u16, String)> {
        self.try_send(method, path, b"")
    }

    /// Put `body` under `key`, unconditionally (as a hostile or careless
    /// writer would).
    pub fn put(&self, key: &str, body: &[u8]) {
        let (status, text) = self
            .try_send("PUT", &format!("/{}/{key}", self.bucket), body)
            .expect("moto answers");
        assert_eq!(status, 200, "PUT {key}: {text}");
    }

    fn try_send(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let (status, body) = self.try_send_raw(method, path, body)?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The bytes of the object `key`, exactly (binary-safe, unlike `object`).
    pub fn object_bytes(&self, key: &str) -> Vec<u8> {
        let (status, body) = self
            .try_send_raw("GET", &format!("/{}/{key}", self.bucket), b"")
            .expect("moto answers");
        assert_eq!(status, 200, "GET {key}: {}", String::from_utf8_lossy(&body));
        body
    }

    fn try_send_raw(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTH}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )
        .ok()?;
        s.write_all(body).ok()?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).ok()?;
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, raw[end + 4..].to_vec()))
    }

    /// Whether an object exists under `key` (HEAD-like, via GET).
    pub fn has_object(&self, key: &str) -> bool {
        let (status, _) = self.http("HEAD", &format!("/{}/{key}", self.bucket));
        status == 200
    }

    /// The bytes of the object `key`.
    pub fn object(&self, key: &str) -> Vec<u8> {
        let (status, body) = self.http("GET", &format!("/{}/{key}", self.bucket));
        assert_eq!(status, 200, "GET {key}: {body}");
        body.into_bytes()
    }

    /// Keys of the unfinished multipart uploads in the bucket.
    pub fn unfinished_uploads(&self) -> Vec<String> {
        let (status, body) = self.http("GET", &format!("/{}?uploads", self.bucket));
        assert_eq!(status, 200, "ListMultipartUploads: {body}");
        body.split("<Key>")
            .skip(1)
            .filter_map(|r| r.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect()
    }

    /// Stop the server (to cut an upload off), keeping the guard.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
