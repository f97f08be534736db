//! Test support: a fresh database per test, a live server, and an HTTP client with helpers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use copains_api::{ApiConfig, AppState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Admin URL of the PostgreSQL that hosts the per-test databases.
pub fn admin_url() -> String {
    std::env::var("COPAINS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database made for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "copains_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let admin = admin_url();
        let pool = copains_api::db::connect(&admin, 1)
            .await
            .expect("connect to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create test db");
        pool.close().await;
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin.clone());
        TestDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Dropping needs async; do it on a side thread with its own runtime.
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

/// A live api server on its own database.
pub struct TestServer {
    pub base: String,
    pub state: AppState,
    pub http: reqwest::Client,
    _db: TestDb,
    _task: tokio::task::JoinHandle<()>,
}

/// Generous limits so tests are not throttled unless they mean to be.
pub fn test_config() -> ApiConfig {
    ApiConfig {
        auth_rate_burst: 1000,
        auth_rate_period: Duration::from_millis(1),
        ..ApiConfig::default()
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with_config(test_config()).await
    }

    pub async fn with_config(config: ApiConfig) -> Self {
        let db = TestDb::new().await;
        let pool = copains_api::db::connect(&db.url, 10).await.unwrap();
        copains_api::db::migrate(&pool).await.unwrap();
        let signer = copains_wire::TokenSigner::from_pem(
            &copains_wire::TokenSigner::generate_pem().unwrap(),
        )
        .unwrap();
        // A presence store as `copains serve` has (tests set entries in it directly).
        let state = AppState::new(pool, signer, config, 1)
            .unwrap()
            .with_presence(std::sync::Arc::new(copains_signaling::MemoryPresence::new()));
        state.ip_rules.reload(&state.db).await.unwrap();
        let app =
            copains_api::routes::router(state.clone()).fallback(copains_api::routes::no_route);
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
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _db: db,
            _task: task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a JSON request; returns status and parsed body (Null when empty).
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert!(
            status.as_u16() < 500,
            "server error {status} on {path}: {v}"
        );
        (status, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.req(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.req(Method::POST, path, token, Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.req(Method::PATCH, path, Some(token), Some(body)).await
    }
    pub async fn put(&self, path: &str, token: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.req(Method::PUT, path, Some(token), body).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.req(Method::DELETE, path, Some(token), None).await
    }

    /// Registers `username` (email `username@example.org`, password `password-<username>`).
    /// Makes `a` and `b` friends straight in the database (so they may open DMs whatever
    /// their DM policy).
    pub async fn befriend(&self, a: &TestUser, b: &TestUser) {
        let (a, b): (i64, i64) = (a.id.parse().unwrap(), b.id.parse().unwrap());
        sqlx::query(
            "INSERT INTO relationships (user_id, other_id, kind) VALUES ($1, $2, 'friend'), ($2, $1, 'friend')
             ON CONFLICT (user_id, other_id) DO UPDATE SET kind = 'friend'",
        )
        .bind(a)
        .bind(b)
        .execute(&self.state.db)
        .await
        .unwrap();
    }

    pub async fn register(&self, username: &str) -> TestUser {
        let (s, v) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"username": username, "email": format!("{username}@example.org"), "password": format!("password-{username}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "register {username}: {v}");
        TestUser {
            id: v["user"]["id"].as_str().unwrap().to_owned(),
            username: username.to_owned(),
            token: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Writes `author`'s messages straight into the server's first text channel, each
    /// `(message id, age)` back-dated by a PostgreSQL interval ("1 hour", "2 days"), for tests of
    /// windows such as a ban's "delete recent messages".
    pub async fn seed_aged_messages(&self, server: &str, author: &str, messages: &[(i64, &str)]) {
        let server: i64 = server.parse().unwrap();
        let (general,): (i64,) = sqlx::query_as(
            "SELECT id FROM channels WHERE server_id = $1 AND kind = 'text' LIMIT 1",
        )
        .bind(server)
        .fetch_one(&self.state.db)
        .await
        .unwrap();
        for (id, age) in messages {
            sqlx::query(
                "INSERT INTO messages (id, channel_id, server_id, author_id, content, created_at)
                 VALUES ($1, $2, $3, $4, 'hi', now() - $5::interval)",
            )
            .bind(id)
            .bind(general)
            .bind(server)
            .bind(author.parse::<i64>().unwrap())
            .bind(*age)
            .execute(&self.state.db)
            .await
            .unwrap();
        }
    }
}

/// A registered user and their tokens.
#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub token: String,
    pub refresh: String,
}

impl TestUser {
    pub fn password(&self) -> String {
        format!("password-{}", self.username)
    }
}
