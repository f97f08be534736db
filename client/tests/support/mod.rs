//! A live api server on a fresh PostgreSQL database (127.0.0.1:5432, or
//! `COPAINS_TEST_DATABASE_URL`), dropped after the test.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use copains_api::{ApiConfig, AppState};
use copains_client::ApiClient;
use reqwest::Method;
use serde_json::{Value, json};

pub fn admin_url() -> String {
    std::env::var("COPAINS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub db_name: String,
    pub db_url: String,
    _task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "copains_client_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let admin = admin_url();
        let pool = copains_api::db::connect(&admin, 1).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let base_url = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        let db_url = format!("{base_url}/{name}");
        let pool = copains_api::db::connect(&db_url, 10).await.unwrap();
        copains_api::db::migrate(&pool).await.unwrap();
        let signer = copains_wire::TokenSigner::from_pem(
            &copains_wire::TokenSigner::generate_pem().unwrap(),
        )
        .unwrap();
        let config = ApiConfig {
            auth_rate_burst: 1000,
            auth_rate_period: Duration::from_millis(1),
            ..ApiConfig::default()
        };
        let state = AppState::new(pool, signer, config, 1).unwrap();
        state.ip_rules.reload(&state.db).await.unwrap();
        let app = copains_api::routes::router(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            state,
            db_name: name,
            db_url,
            _task: task,
        }
    }

    pub async fn register(&self, name: &str) -> ApiClient {
        ApiClient::register(
            &self.base,
            name,
            &format!("{name}@example.org"),
            &format!("password-{name}"),
        )
        .await
        .unwrap()
    }

    pub async fn login(&self, name: &str) -> ApiClient {
        ApiClient::login(&self.base, name, &format!("password-{name}"))
            .await
            .unwrap()
    }

    /// Everything the database holds, as text: every row of every table (`row::text`, which
    /// covers every text, bytea and json column), plus `pg_dump` output when available.
    pub async fn dump(&self) -> String {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT quote_ident(table_name) FROM information_schema.tables
              WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&self.state.db)
        .await
        .unwrap();
        assert!(
            tables.len() > 5,
            "expected the whole schema, got {tables:?}"
        );
        let mut out = String::new();
        for t in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT x::text FROM {t} x"))
                .fetch_all(&self.state.db)
                .await
                .unwrap();
            out.push_str(&format!("-- {t}\n"));
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
        for bin in ["/usr/lib/postgresql/15/bin/pg_dump", "pg_dump"] {
            let dumped = std::process::Command::new(bin)
                .arg("--data-only")
                .arg(&self.db_url)
                .output();
            if let Some(o) = dumped.ok().filter(|o| o.status.success()) {
                out.push_str(&String::from_utf8_lossy(&o.stdout));
                break;
            }
        }
        out
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let name = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = copains_api::db::connect(&admin_url(), 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// Makes two users friends (both send a request; the second accepts).
pub async fn befriend(a: &ApiClient, b: &ApiClient) {
    let _: Value = a
        .request(
            Method::POST,
            "/users/@me/relationships",
            None,
            Some(&json!({"user_id": b.user_id()})),
        )
        .await
        .unwrap();
    let _: Value = b
        .request(
            Method::POST,
            "/users/@me/relationships",
            None,
            Some(&json!({"user_id": a.user_id()})),
        )
        .await
        .unwrap();
}
