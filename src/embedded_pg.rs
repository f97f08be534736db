//! A private PostgreSQL cluster for `copains serve` when `DATABASE_URL` is unset:
//! created under the data folder (as the `postgres` user when running as root, since
//! initdb refuses root), started on a free loopback port, stopped on exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A running embedded cluster; stopping happens on drop.
#[derive(Debug)]
pub struct EmbeddedPg {
    bin: PathBuf,
    data: PathBuf,
    as_postgres: bool,
    /// Whether this process started the server (and so stops it on drop).
    owned: bool,
    /// `postgres://…` URL of the `copains` database.
    pub url: String,
}

fn is_root() -> bool {
    // The effective uid from /proc avoids an unsafe libc call.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn find_bin(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = configured {
        return Ok(p.to_owned());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (no /usr/lib/postgresql): install it (apt-get install postgresql) or set DATABASE_URL")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .context("no PostgreSQL server programs found under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl EmbeddedPg {
    fn cmd(&self, prog: &str) -> Command {
        let exe = self.bin.join(prog);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// Creates (first time) and starts the cluster for `data_dir`, and makes the `copains` database.
    pub async fn start(data_dir: &Path, bin: Option<&Path>) -> anyhow::Result<Self> {
        let bin = find_bin(bin)?;
        let as_postgres = is_root();
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let abs = std::fs::canonicalize(data_dir)?;
        let mut data = abs.join("postgres");
        if as_postgres && !postgres_can_reach(&abs) {
            // e.g. a checkout under /root (mode 700): keep the cluster where `postgres` can reach it.
            let tag = abs
                .to_string_lossy()
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            data = PathBuf::from(format!("/var/lib/copains/postgres-{tag:016x}"));
            tracing::info!(path = %data.display(), "data folder not reachable by the postgres user; using this cluster folder");
        }
        let mut pg = EmbeddedPg {
            bin,
            data,
            as_postgres,
            owned: false,
            url: String::new(),
        };
        if !pg.data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&pg.data)?;
            if as_postgres {
                run(
                    Command::new("chown")
                        .args(["-R", "postgres:postgres"])
                        .arg(&pg.data),
                    "chown",
                )?;
            }
            tracing::info!(path = %pg.data.display(), "creating the embedded PostgreSQL cluster");
            run(
                pg.cmd("initdb").arg("-D").arg(&pg.data).args([
                    "--auth=trust",
                    "--username=copains",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]),
                "initdb",
            )?;
        }
        // A cluster already running for this folder (`copains serve` is up and this is
        // `copains admin …`) is shared, not restarted.
        let running = pg
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("status")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        let port = match running.then(|| running_port(&pg.data)).flatten() {
            Some(port) => port,
            None => {
                if running {
                    let _ = pg
                        .cmd("pg_ctl")
                        .arg("-D")
                        .arg(&pg.data)
                        .args(["stop", "-m", "fast"])
                        .output();
                }
                let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
                let log = pg.data.join("server.log");
                run(
                    pg.cmd("pg_ctl")
                        .arg("-D")
                        .arg(&pg.data)
                        .arg("-l")
                        .arg(&log)
                        .args(["-w", "-t", "60", "start", "-o"])
                        .arg(format!(
                            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
                        )),
                    "pg_ctl start",
                )?;
                pg.owned = true;
                port
            }
        };
        let url = format!("postgres://copains@127.0.0.1:{port}/copains");
        let admin_url = format!("postgres://copains@127.0.0.1:{port}/postgres");
        let pool = copains_api::db::connect(&admin_url, 1).await?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = 'copains'")
                .fetch_optional(&pool)
                .await?;
        if exists.is_none() {
            sqlx::query("CREATE DATABASE copains")
                .execute(&pool)
                .await?;
        }
        pool.close().await;
        if pg.owned {
            tracing::info!(port, "embedded PostgreSQL started");
        } else {
            tracing::info!(
                port,
                "using the embedded PostgreSQL already running for this data folder"
            );
        }
        pg.url = url;
        Ok(pg)
    }
}

/// The port of a running cluster, from line 4 of its `postmaster.pid`.
fn running_port(data: &Path) -> Option<u16> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .nth(3)?
        .trim()
        .parse()
        .ok()
}

fn postgres_can_reach(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl Drop for EmbeddedPg {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        let r = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["stop", "-m", "fast", "-w"])
            .output();
        match r {
            Ok(o) if o.status.success() => tracing::info!("embedded PostgreSQL stopped"),
            Ok(o) => {
                tracing::warn!(stderr = %String::from_utf8_lossy(&o.stderr), "stopping embedded PostgreSQL")
            }
            Err(e) => tracing::warn!(error = %e, "stopping embedded PostgreSQL"),
        }
    }
}
