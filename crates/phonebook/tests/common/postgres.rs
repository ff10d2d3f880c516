//! A real PostgreSQL server for one test: the distribution's binaries, a throwaway data
//! directory, 127.0.0.1 on a free port. Where PostgreSQL is not installed, [`Postgres::start`]
//! says why and the test skips loudly.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// Who runs the server: `postgres` refuses to run as root, so as root it runs as this
    /// user (the distribution's `postgres`, or `nobody`).
    user: Option<String>,
    _dir: tempfile::TempDir,
    next_db: std::sync::atomic::AtomicU32,
}

/// Where the server binaries are: `$TINCAN_TEST_PG_BIN`, else the newest
/// `/usr/lib/postgresql/N/bin` (Debian's layout), else `initdb` on the PATH.
fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TINCAN_TEST_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").exists() && dir.join("postgres").exists())
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

impl Postgres {
    /// Starts a fresh server, or says why it cannot.
    pub fn start() -> Result<Postgres, String> {
        Postgres::start_with(None)
    }

    /// Starts a fresh server that also takes TLS, with this certificate chain and key (PEM).
    pub fn start_tls(cert: &str, key: &str) -> Result<Postgres, String> {
        Postgres::start_with(Some((cert, key)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Postgres, String> {
        let bin = bin_dir().ok_or("PostgreSQL is not installed (no initdb and postgres)")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        let user = if is_root() {
            let user = ["postgres", "nobody"]
                .into_iter()
                .find(|u| Command::new("id").arg(u).output().is_ok_and(|o| o.status.success()))
                .ok_or("running as root, with no postgres or nobody user to run PostgreSQL as")?;
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !status.success() {
                return Err("cannot hand the data directory to the postgres user".into());
            }
            Some(user.to_owned())
        } else {
            None
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let mut pg =
            Postgres { child: None, bin, data, port, user, _dir: dir, next_db: Default::default() };
        let initdb = pg
            .command("initdb")
            .args(["-U", "tincan", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&pg.data)
            .stdout(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&initdb.stderr)));
        }
        if let Some((cert, key)) = tls {
            let conf = pg.data.join("postgresql.conf");
            let mut settings = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
            for (file, pem, mode) in [("server.crt", cert, 0o644), ("server.key", key, 0o600)] {
                let path = pg.data.join(file);
                std::fs::write(&path, pem).map_err(|e| e.to_string())?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| e.to_string())?;
                if let Some(user) = &pg.user {
                    Command::new("chown").arg(format!("{user}:")).arg(&path).status().unwrap();
                }
            }
            settings.push_str(
                "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            );
            std::fs::write(&conf, settings).map_err(|e| e.to_string())?;
        }
        pg.run()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    /// Starts the server on its data directory and waits until it takes connections.
    fn run(&mut self) -> Result<(), String> {
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            .args(["-c", "unix_socket_directories="])
            .args(["-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "tincan"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("postgres exited at start: {status}"));
            }
            if Instant::now() > deadline {
                return Err("postgres did not take connections within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let n = self.next_db.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("pb{n}");
        let status = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "tincan", &name])
            .status()
            .unwrap();
        assert!(status.success(), "createdb {name}");
        self.url(&name)
    }

    /// Runs `sql` with psql on the database at `url`; what it prints.
    pub fn sql(&self, url: &str, sql: &str) -> String {
        let out = self.command("psql").args(["-At", "-d", url, "-c", sql]).output().unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://tincan@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    /// Stops the server (fast shutdown: connections are cut, nothing committed is lost).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // As root the child is runuser; the server is its child. pg_ctl finds it by the
            // data directory either way.
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "fast", "-w", "-D"])
                .arg(&self.data)
                .stdout(Stdio::null())
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.run().unwrap();
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(&self.data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
