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
        let m = Moto {
            child: spawn_server(port),
            port,
            bucket: bucket.to_string(),
            home: tempfile::tempdir().unwrap(),
        };
        m.wait_ready();
        m.recreate_bucket();
        m
    }

    /// The empty HOME that [`Moto::env`] gives datamig.
    pub fn home(&self) -> &Path {
        self.home.path()
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
        self.try_send_as(AUTH, method, path, body)
    }

    /// Create another bucket; with `object_lock`, as
    /// `create-bucket --object-lock-enabled-for-bucket` does (which also
    /// turns on versioning).
    pub fn create_bucket(&self, bucket: &str, object_lock: bool) {
        let headers = if object_lock {
            "x-amz-bucket-object-lock-enabled: true\r\n"
        } else {
            ""
        };
        let (status, body) = self
            .try_send_with("PUT", &format!("/{bucket}"), headers, b"")
            .expect("moto answers");
        assert!(
            status < 300,
            "cannot create bucket {bucket}: {status} {body}"
        );
    }

    /// The response headers of HEAD `/BUCKET/KEY`, lowercased names.
    pub fn head(&self, bucket: &str, key: &str) -> (u16, Vec<(String, String)>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "HEAD /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTH}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let headers = text
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers)
    }

    /// Put `body` under `key` of `bucket`, unconditionally.
    pub fn put_in(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, text) = self
            .try_send_with("PUT", &format!("/{bucket}/{key}"), "", body)
            .expect("moto answers");
        assert_eq!(status, 200, "PUT {bucket}/{key}: {text}");
    }

    /// Keys of the current objects of `bucket` (ListObjectsV2, one page).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.http("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(status, 200, "ListObjectsV2 {bucket}: {body}");
        let mut keys: Vec<String> = body
            .split("<Key>")
            .skip(1)
            .filter_map(|r| r.split_once("</Key>").map(|(k, _)| k.to_string()))
            .collect();
        keys.sort();
        keys
    }

    /// [`Moto::try_send_as`] with the test credentials and `extra` header
    /// lines (each ending in CRLF).
    fn try_send_with(
        &self,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> Option<(u16, String)> {
        let headers = format!("{AUTH}\r\n{extra}");
        self.try_send_as(headers.trim_end_matches("\r\n"), method, path, body)
    }

    /// One request with the given header lines (an Authorization header
    /// whose credential scope routes it to a moto service, a Content-Type).
    fn try_send_as(
        &self,
        headers: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<(u16, String)> {
        let (status, body) = self.try_send_raw(headers, method, path, body)?;
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The bytes of the object `key`, exactly (binary-safe, unlike `object`).
    pub fn object_bytes(&self, key: &str) -> Vec<u8> {
        let (status, body) = self
            .try_send_raw(AUTH, "GET", &format!("/{}/{key}", self.bucket), b"")
            .expect("moto answers");
        assert_eq!(status, 200, "GET {key}: {}", String::from_utf8_lossy(&body));
        body
    }

    fn try_send_raw(
        &self,
        headers: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<(u16, Vec<u8>)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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

    /// Put the file at `path` under `key` in one PUT, streamed from disk (a
    /// test's upload of a big archive without datamig's read-back).
    pub fn put_file(&self, key: &str, path: &Path) {
        let mut f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        write!(
            s,
            "PUT /{}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{AUTH}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .unwrap();
        std::io::copy(&mut f, &mut s).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 200"), "PUT {key}: {text}");
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

    /// Kill the server and start a fresh one on the same port: like a real
    /// store restarted without its disk, it has forgotten every bucket,
    /// object and unfinished upload. Returns once it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_server(self.port);
        self.wait_ready();
    }

    /// Create the test's bucket again (after [`Moto::restart`]).
    pub fn recreate_bucket(&self) {
        let (status, body) = self.http("PUT", &format!("/{}", self.bucket));
        assert!(
            status < 300,
            "cannot create bucket {}: {status} {body}",
            self.bucket
        );
    }

    /// One IAM Query API call (form-encoded, unsigned: moto checks no
    /// signature until [`Moto::enforce_auth`]); the response body.
    pub fn iam(&self, params: &[(&str, &str)]) -> String {
        let mut form = String::from("Version=2010-05-08");
        for (k, v) in params {
            form.push('&');
            form.push_str(k);
            form.push('=');
            form.push_str(&form_encode(v));
        }
        let (status, body) = self
            .try_send_as(IAM_HEADERS, "POST", "/", form.as_bytes())
            .expect("moto answers an IAM call");
        assert_eq!(status, 200, "IAM {params:?}: {body}");
        body
    }

    /// A new IAM user with an access key: (access key id, secret). With
    /// `policy`, the user gets it as an inline policy document.
    pub fn iam_user(&self, name: &str, policy: Option<&str>) -> (String, String) {
        self.iam(&[("Action", "CreateUser"), ("UserName", name)]);
        if let Some(doc) = policy {
            self.iam(&[
                ("Action", "PutUserPolicy"),
                ("UserName", name),
                ("PolicyName", "p"),
                ("PolicyDocument", doc),
            ]);
        }
        let body = self.iam(&[("Action", "CreateAccessKey"), ("UserName", name)]);
        let field = |tag: &str| {
            body.split_once(&format!("<{tag}>"))
                .and_then(|(_, r)| r.split_once(&format!("</{tag}>")))
                .map(|(v, _)| v.to_string())
                .unwrap_or_else(|| panic!("no {tag} in {body}"))
        };
        (field("AccessKeyId"), field("SecretAccessKey"))
    }

    /// From now on moto checks every request's signature against the IAM
    /// access keys it holds, and the user's policies (moto's auth mode, set
    /// through its `/moto-api/reset-auth` call). The test's own plain
    /// requests no longer work after this.
    pub fn enforce_auth(&self) {
        let (status, body) = self
            .try_send_as(
                "Content-Type: text/plain",
                "POST",
                "/moto-api/reset-auth",
                b"0",
            )
            .expect("moto answers");
        assert_eq!(status, 200, "reset-auth: {body}");
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if let Some((status, _)) = self.try_http("GET", "/") {
                assert!(status < 500, "moto answered {status}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not answer on port {} within 60 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Routes a request to moto's IAM backend (the signature is not checked
/// until auth is enforced).
const IAM_HEADERS: &str = "Authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded";

fn form_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `moto_server -H 127.0.0.1 -p PORT`, killed with the test process.
fn spawn_server(port: u16) -> Child {
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
    c.spawn().expect("start moto_server")
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
