//! Test harness: the real `hookwire` binary on port 0, real TCP clients,
//! real ZeroMQ PULL sockets.
#![allow(dead_code)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hookwire");

/// A child process that is killed and reaped when the guard drops, so a
/// test that fails half-way leaves nothing running; [`Guard::take`] hands
/// the child back for a wait of the test's own.
pub struct Guard(Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Guard {
        Guard(Some(child))
    }

    pub fn take(mut self) -> Child {
        self.0.take().expect("a child")
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a child")
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A POST with a `Content-Length` body; `headers` are extra header lines,
/// each ending in CRLF.
pub fn post_request(target: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: test\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A POST whose body is already chunk-encoded (`wire`).
pub fn chunked_request(target: &str, headers: &str, wire: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: test\r\n{headers}Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(wire);
    raw
}

/// GET on the admin listener: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// `GET /stats` on the server's admin listener, which must answer 200.
pub fn stats(server: &Server) -> serde_json::Value {
    let (status, body) = admin_get(server.admin.unwrap(), "/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A running `hookwire serve`, killed (by its own PID) when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// `--listen-plain`'s address, when given.
    pub plain: Option<SocketAddr>,
    /// The admin listener (tests run it on an ephemeral port).
    pub admin: Option<SocketAddr>,
    /// Everything it printed to stderr up to `ready`.
    pub banner: Vec<String>,
    /// What it printed to stderr after `ready`, so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The spool directory this test server owns (removed on drop).
    pub spool_dir: Option<std::path::PathBuf>,
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hookwire-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts hookwire on `127.0.0.1:0` with `args` and waits for `ready`.
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::spawn(args, env, None)
    }

    /// Starts hookwire with its open-files limit (soft and hard) at
    /// `nofile`, as `ulimit -n` would leave it.
    pub fn start_with_nofile(args: &[&str], nofile: u64) -> Server {
        Self::spawn(args, &[], Some(nofile))
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], nofile: Option<u64>) -> Server {
        let mut cmd = Command::new(BIN);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe and only reads `limit`.
            unsafe {
                cmd.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        if !args.contains(&"--cores") {
            cmd.args(["--cores", "2"]);
        }
        if !args.contains(&"--admin") {
            cmd.args(["--admin", "127.0.0.1:0"]);
        }
        // Every test server gets its own spool, so none adopts another's.
        let spool_dir = (!args.contains(&"--spool-dir")).then(|| temp_dir("spool"));
        if let Some(dir) = &spool_dir {
            cmd.arg("--spool-dir").arg(dir);
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hookwire");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut banner = Vec::new();
        let mut addr = None;
        let mut plain = None;
        let mut admin = None;
        for line in lines.by_ref() {
            let line = line.expect("read hookwire stderr");
            let listen = line
                .strip_prefix("listen http://")
                .or_else(|| line.strip_prefix("listen https://"));
            if let Some(rest) = listen {
                addr = Some(rest.split_whitespace().next().unwrap().parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("listen-plain http://") {
                plain = Some(rest.trim().parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("admin http://") {
                admin = Some(rest.trim().parse().unwrap());
            }
            let done = line == "ready";
            banner.push(line);
            if done {
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("hookwire did not start: {banner:?}"));
        // Keep draining stderr so the child never blocks on a full pipe;
        // what it says shows with a failing test's output.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[hookwire] {line}");
                kept.lock().unwrap().push(line);
            }
        });
        Server {
            child,
            addr,
            plain,
            admin,
            banner,
            log,
            spool_dir,
        }
    }

    /// Whether it has printed a line containing `text` since `ready`.
    pub fn said(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads `n` responses.
    pub fn exchange(&self, raw: &[u8], n: usize) -> Vec<Response> {
        let mut s = self.connect();
        s.write_all(raw).unwrap();
        let mut reader = ResponseReader::new(s);
        (0..n).map(|_| reader.next().expect("response")).collect()
    }

    /// One request, one response, on a fresh connection.
    pub fn request(&self, raw: &[u8]) -> Response {
        self.exchange(raw, 1).remove(0)
    }

    pub fn get(&self, target: &str) -> Response {
        self.request(format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
    }

    pub fn post(&self, target: &str, content_type: Option<&str>, body: &[u8]) -> Response {
        let headers = content_type.map_or(String::new(), |ct| format!("Content-Type: {ct}\r\n"));
        self.request(&post_request(target, &headers, body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.spool_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// For an error: asserts the status and `error` code, returns the message.
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        let v = self.json();
        assert_eq!(v["error"], code, "{v}");
        let message = v["message"].as_str().expect("message").to_owned();
        assert!(
            message.len() > 20,
            "message should say what to fix: {message}"
        );
        message
    }

    /// For a 200: the `id` as a number, after checking the key.
    pub fn assert_accepted(&self, key: &str) -> u64 {
        assert_eq!(
            self.status,
            200,
            "{self:?} body={}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["key"], key);
        v["id"]
            .as_str()
            .expect("id string")
            .parse()
            .expect("decimal id")
    }
}

/// Reads responses one by one from a stream (Content-Length framed).
pub struct ResponseReader {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl ResponseReader {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The next response, or None at EOF.
    pub fn next(&mut self) -> Option<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(n) = resp.parse(&self.buf).expect("valid response") {
                let status = resp.code.unwrap();
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                if self.buf.len() >= n + len {
                    let body = self.buf[n..n + len].to_vec();
                    self.buf.drain(..n + len);
                    return Some(Response {
                        status,
                        headers,
                        body,
                    });
                }
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read response: {e}"),
            }
        }
    }

    /// Whether the server closed the connection (EOF) within the timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// A consumer: a PULL socket bound on an ephemeral loopback port.
pub struct Sink {
    pub socket: zmq::Socket,
    pub endpoint: String,
    _context: zmq::Context,
}

impl Sink {
    pub fn bind() -> Sink {
        Self::bind_at("tcp://127.0.0.1:*")
    }

    pub fn bind_at(endpoint: &str) -> Sink {
        let context = zmq::Context::new();
        let socket = context.socket(zmq::PULL).unwrap();
        socket.set_rcvhwm(0).unwrap();
        socket.set_linger(0).unwrap();
        socket.bind(endpoint).unwrap();
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        Sink {
            socket,
            endpoint,
            _context: context,
        }
    }

    /// The next message's frames, waiting at most `timeout`.
    pub fn recv_frames(&self, timeout: Duration) -> Option<Vec<Vec<u8>>> {
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, timeout.as_millis() as i64).unwrap();
        if !items[0].is_readable() {
            return None;
        }
        Some(self.socket.recv_multipart(0).unwrap())
    }

    /// The next envelope (single frame), parsed, waiting up to 10 s.
    pub fn recv(&self) -> serde_json::Value {
        let frames = self
            .recv_frames(Duration::from_secs(10))
            .expect("an envelope within 10 s");
        assert_eq!(frames.len(), 1, "one frame per envelope");
        serde_json::from_slice(&frames[0]).expect("envelope is JSON")
    }

    /// Asserts nothing arrives within `wait`.
    pub fn assert_quiet(&self, wait: Duration) {
        if let Some(frames) = self.recv_frames(wait) {
            panic!(
                "unexpected envelope: {}",
                String::from_utf8_lossy(&frames[0])
            );
        }
    }

    /// Receives `n` envelopes as raw bytes, failing if they stop coming.
    pub fn recv_raw(&self, n: usize, idle: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match self.recv_frames(idle) {
                Some(mut frames) => out.push(frames.pop().unwrap()),
                None => panic!("only {} of {n} envelopes arrived", out.len()),
            }
        }
        out
    }
}

/// Waits until `f` is true or panics after `limit`.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a server pushing everything to a fresh sink.
pub fn server_and_sink(extra: &[&str]) -> (Server, Sink) {
    let sink = Sink::bind();
    let mut args = vec!["--push", sink.endpoint.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    (server, sink)
}

/// The server's connection handler and core state in this process, with a
/// real ZeroMQ PULL consumer bound on loopback (a missing envelope fails
/// its `recv` after 20 s instead of hanging). The shard's queue is deep
/// enough that ZeroMQ takes every event directly.
pub struct InProcess {
    pub pull: zmq::Socket,
    pub settings: std::sync::Arc<hookwire::config::Settings>,
    pub shard: hookwire::shard::Shard,
    /// After the socket: it closes before the context terminates. Keep it
    /// bound (`context: _context`) while the socket is in use.
    pub context: zmq::Context,
}

pub fn in_process() -> InProcess {
    in_process_with(&["--sndhwm", "100000"])
}

/// [`in_process`] with `extra` options and every other setting the default.
pub fn in_process_with(extra: &[&str]) -> InProcess {
    let context = zmq::Context::new();
    let pull = context.socket(zmq::PULL).unwrap();
    pull.set_rcvhwm(0).unwrap();
    pull.set_rcvtimeo(20_000).unwrap();
    pull.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = pull.get_last_endpoint().unwrap().unwrap();
    let settings = std::sync::Arc::new(hookwire::testing::settings_with(&endpoint, extra));
    let shard = hookwire::testing::shard(settings.clone()).unwrap();
    InProcess {
        pull,
        settings,
        shard,
        context,
    }
}

/// A loopback TCP endpoint nothing listens on (yet).
pub fn free_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", l.local_addr().unwrap())
}

/// The `id` of an envelope.
pub fn id_of(raw: &[u8]) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(raw).expect("envelope is JSON");
    v["id"].as_str().unwrap().parse().unwrap()
}

/// A consumer bound at an endpoint in its own thread, collecting every id
/// it receives (in arrival order) until [`Collector::finish`].
pub struct Collector {
    ids: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

pub fn collector(endpoint: String) -> Collector {
    let ids = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (ids, stop) = (ids.clone(), stop.clone());
        std::thread::spawn(move || {
            let sink = Sink::bind_at(&endpoint);
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut frames) = sink.recv_frames(Duration::from_millis(100)) {
                    ids.lock().unwrap().push(id_of(&frames.pop().unwrap()));
                }
            }
        })
    };
    Collector { ids, stop, thread }
}

impl Collector {
    pub fn received(&self) -> usize {
        self.ids.lock().unwrap().len()
    }

    /// Waits (up to `limit`) until every id in `want` has arrived, or
    /// fails naming how many are missing.
    pub fn wait_for(&self, want: &HashSet<u64>, limit: Duration) {
        let start = Instant::now();
        loop {
            let got: HashSet<u64> = self.ids.lock().unwrap().iter().copied().collect();
            let missing = want.difference(&got).count();
            if missing == 0 {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "{missing} of {} expected ids never arrived at the consumer",
                want.len()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Keeps receiving until nothing has arrived for 300 ms (at most 10 s
    /// more), so repeats that would follow are counted too; then stops and
    /// returns every id received.
    pub fn finish(self) -> Vec<u64> {
        let start = Instant::now();
        let mut seen = self.received();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.received();
            if now == seen || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            seen = now;
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let ids = self.ids.lock().unwrap().clone();
        ids
    }
}

/// A server pushing to `endpoint` with its spool in `spool`.
pub fn spool_server(spool: &Path, endpoint: &str, extra: &[&str]) -> Server {
    let dir = spool.to_str().unwrap();
    let mut args = vec!["--push", endpoint, "--spool-dir", dir];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// The tests' Python interpreter: a venv with `tests/py/requirements.txt`
/// (the senders' own libraries, pyzmq, jsonschema), made by
/// `tests/py/setup.sh` on first use. Panics, with pip's output, when it
/// cannot be made: a missing client is a failing test, never a skipped one.
pub fn python() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/setup.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/py/setup.sh");
        assert!(
            out.status.success(),
            "tests/py/setup.sh failed: {}",
            out.status
        );
        let path = String::from_utf8(out.stdout).expect("utf-8 path");
        std::path::PathBuf::from(path.trim())
    })
    .clone()
}

/// A venv of its own with the base requirements and `tests/py/<file>`
/// (heavy packages only the tests that need them install).
pub fn python_with(file: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py");
    let out = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .arg(dir.join(file))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/py/setup.sh");
    assert!(
        out.status.success(),
        "tests/py/setup.sh {file} failed: {}",
        out.status
    );
    std::path::PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

/// Runs `code` with [`python`]; `args` become `sys.argv[1:]`. Returns its
/// stdout; panics with its stderr when it fails.
pub fn run_python(code: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
