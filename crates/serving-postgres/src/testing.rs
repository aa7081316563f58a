//! A throwaway PostgreSQL cluster with pgvector for tests (feature `testing`).
//!
//! [`PgCluster::start`] runs `initdb` in a temporary directory, starts the server listening
//! only on 127.0.0.1 at a free port (unix socket in the same directory), creates the `vector`
//! extension, and stops the server and removes the directory when dropped, also when a test
//! panics. As root (initdb refuses to run as root) the server runs as the `postgres` system
//! user through `runuser`.
//!
//! The PostgreSQL binaries are found through `STRATA_PG_BIN` (a folder holding initdb,
//! pg_ctl and psql) or `/usr/lib/postgresql/<newest>/bin`. When they or pgvector are missing,
//! `start` fails with a message saying to run `scripts/setup-postgres.sh`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SETUP_HINT: &str = "run scripts/setup-postgres.sh to install PostgreSQL and pgvector";

/// A running throwaway cluster; dropping it stops the server and deletes its files.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<String>,
    port: u16,
}

impl PgCluster {
    /// Creates and starts a cluster with the `vector` extension in database `postgres`.
    pub fn start() -> Result<PgCluster, String> {
        let bin = find_bin()?;
        check_pgvector(&bin)?;
        let run_as = if current_uid()? == 0 {
            Some("postgres".to_string())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("strata-pg-")
            .tempdir()
            .map_err(|e| format!("creating a temporary directory for the cluster: {e}"))?;
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .output()
                .map_err(|e| format!("running chown: {e}"))?;
            check(&out, "chown of the cluster directory")?;
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            run_as,
            port: 0,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
            ])
            .args(["--locale=C", "-D"])
            .arg(&data)
            .output()
            .map_err(|e| format!("running initdb: {e} ({SETUP_HINT})"))?;
        check(&out, "initdb")?;
        // A port found free may be taken before the server binds it: retry a few times.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50",
                cluster.port,
                cluster.dir.path().display()
            );
            let out = cluster
                .command("pg_ctl")
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(cluster.dir.path().join("server.log"))
                .args(["-o", &options])
                .output()
                .map_err(|e| format!("running pg_ctl: {e}"))?;
            if out.status.success() {
                last.clear();
                break;
            }
            last = format!(
                "pg_ctl start failed: {}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.dir.path().join("server.log")).unwrap_or_default()
            );
        }
        if !last.is_empty() {
            return Err(last);
        }
        cluster.psql("CREATE EXTENSION vector")?;
        Ok(cluster)
    }

    /// The connection URL (user `postgres`, database `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL through psql and returns its unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = self
            .command("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .output()
            .map_err(|e| format!("running psql: {e}"))?;
        check(&out, &format!("psql -c {sql:?}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(exe);
                c
            }
            None => Command::new(exe),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .command("pg_ctl")
                .args(["stop", "-m", "immediate", "-w", "-D"])
                .arg(self.data_dir())
                .output();
        }
        // The TempDir removes the files.
    }
}

fn check(out: &Output, what: &str) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn find_bin() -> Result<PathBuf, String> {
    let has_tools = |p: &Path| {
        ["initdb", "pg_ctl", "psql", "postgres"]
            .iter()
            .all(|t| p.join(t).is_file())
    };
    if let Some(dir) = std::env::var_os("STRATA_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if has_tools(&dir) {
            Ok(dir)
        } else {
            Err(format!(
                "STRATA_PG_BIN={} does not hold initdb, pg_ctl, psql and postgres; {SETUP_HINT}",
                dir.display()
            ))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).ok_or_else(|| {
        format!(
            "no PostgreSQL server found under /usr/lib/postgresql (or STRATA_PG_BIN); {SETUP_HINT}"
        )
    })
}

fn check_pgvector(bin: &Path) -> Result<(), String> {
    let out = Command::new(bin.join("pg_config"))
        .arg("--sharedir")
        .output()
        .map_err(|e| format!("running {}/pg_config: {e}; {SETUP_HINT}", bin.display()))?;
    check(&out, "pg_config --sharedir")?;
    let share = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let control = share.join("extension/vector.control");
    if control.is_file() {
        Ok(())
    } else {
        Err(format!(
            "pgvector is not installed for {} ({} is missing); {SETUP_HINT}",
            bin.display(),
            control.display()
        ))
    }
}

fn current_uid() -> Result<u32, String> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("running id -u: {e}"))?;
    check(&out, "id -u")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("parsing the output of id -u: {e}"))
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("finding a free port on 127.0.0.1: {e}"))
}
