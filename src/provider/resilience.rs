//! How slx survives a busy or flaky AWS: the retry policy, a cap on calls in
//! flight per service, creates that are never applied twice, and final errors
//! that say retries ran out.
//!
//! The SDK retries throttling, 5xx and connection failures with jittered
//! exponential backoff. Its adaptive mode (a client-side rate limiter) is
//! opt-in: it sizes its rate from the traffic it has seen, and a CLI's short
//! bursts teach it a rate so low that a 9-resource deploy under 30 % throttling
//! takes minutes instead of seconds (BENCHMARKS.md). A blind retry is only wrong for a create AWS does not
//! deduplicate, after a failure that may have been applied (a lost response):
//! [`create_unique`] looks for the resource before trying again.

use anyhow::{Result, anyhow};
use aws_config::retry::RetryConfig;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Attempts per call unless `AWS_MAX_ATTEMPTS` says otherwise: enough to ride
/// out a burst of throttling (backoff grows to 20 s), few enough to fail within minutes.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

static MAX_ATTEMPTS: AtomicU32 = AtomicU32::new(DEFAULT_MAX_ATTEMPTS);

/// The retry policy: standard with [`DEFAULT_MAX_ATTEMPTS`], unless the
/// usual `AWS_RETRY_MODE` / `AWS_MAX_ATTEMPTS` variables choose otherwise.
pub fn retry_config() -> Result<RetryConfig> {
    let attempts = match std::env::var("AWS_MAX_ATTEMPTS") {
        Ok(v) => v.trim().parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            anyhow!("AWS_MAX_ATTEMPTS must be a whole number of at least 1, not {v:?}\nhint: e.g. AWS_MAX_ATTEMPTS=8")
        })?,
        Err(_) => DEFAULT_MAX_ATTEMPTS,
    };
    let config = match std::env::var("AWS_RETRY_MODE").as_deref().map(str::trim) {
        Err(_) | Ok("standard" | "legacy") => RetryConfig::standard(),
        Ok("adaptive") => RetryConfig::adaptive(),
        Ok(other) => {
            return Err(anyhow!("AWS_RETRY_MODE must be `standard` or `adaptive`, not {other:?}"));
        }
    };
    MAX_ATTEMPTS.store(attempts, Ordering::Relaxed);
    Ok(config.with_max_attempts(attempts))
}

/// Calls in flight at once per service. AWS throttles per account and
/// region, so one slx run should not eat the whole budget; IAM's is small.
pub fn concurrency(service: &str) -> usize {
    match service {
        "iam" => 8,
        "apigateway" => 8,
        _ => 32,
    }
}

/// The SDK's default HTTPS client (rustls on aws-lc, proxy settings from the
/// environment), built here because an `SdkConfig` leaves it to each service
/// client to create, and [`Limited`] needs one to wrap.
pub fn https_client() -> SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn =
            ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

/// An HTTP client that lets at most N calls through at once.
#[derive(Debug, Clone)]
pub struct Limited {
    inner: SharedHttpClient,
    slots: Arc<Semaphore>,
}

impl Limited {
    pub fn new(inner: SharedHttpClient, slots: usize) -> Limited {
        Limited { inner, slots: Arc::new(Semaphore::new(slots)) }
    }
}

impl HttpClient for Limited {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(LimitedConnector { inner, slots: self.slots.clone() })
    }
}

#[derive(Debug)]
struct LimitedConnector {
    inner: SharedHttpConnector,
    slots: Arc<Semaphore>,
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, slots) = (self.inner.clone(), self.slots.clone());
        HttpConnectorFuture::new(async move {
            let _slot = slots.acquire_owned().await.expect("the semaphore is never closed");
            inner.call(request).await
        })
    }
}

/// Error codes AWS uses for "slow down".
const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "RequestThrottled",
];

/// Why a failed call may succeed later, if it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// AWS refused the call to slow us down; it was not applied.
    Throttled,
    /// A 5xx or a broken connection: the call may or may not have been applied.
    Unknown,
}

pub fn transient<E: ProvideErrorMetadata, R: 'static>(e: &SdkError<E, R>) -> Option<Transient> {
    if e.code().is_some_and(|c| THROTTLING.contains(&c)) {
        return Some(Transient::Throttled);
    }
    match e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            Some(Transient::Unknown)
        }
        SdkError::ServiceError(s) if status(s.raw()) >= 500 => Some(Transient::Unknown),
        _ => None,
    }
}

fn status<R: 'static>(raw: &R) -> u16 {
    // Every SDK client's raw response is an HttpResponse; others have no status.
    (raw as &dyn std::any::Any)
        .downcast_ref::<aws_smithy_runtime_api::client::orchestrator::HttpResponse>()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// What to add to an error once the SDK has stopped retrying it.
pub fn gave_up<E: ProvideErrorMetadata, R: 'static>(e: &SdkError<E, R>) -> Option<String> {
    let attempts = MAX_ATTEMPTS.load(Ordering::Relaxed);
    match transient(e)? {
        Transient::Throttled => Some(format!(
            "AWS kept throttling (slx retried, up to {attempts} attempts a call)\nhint: another deployment or tool may be using this account's API rate; retry later, lower --parallelism, or raise AWS_MAX_ATTEMPTS"
        )),
        Transient::Unknown => Some(format!(
            "still failing after retries (up to {attempts} attempts a call)\nhint: AWS or the network is having trouble; re-running the same command is safe and picks up where this one stopped"
        )),
    }
}

/// Sends a create AWS does not deduplicate (an event source mapping, an API,
/// a route) once per attempt, without the SDK's own retries. After a failure
/// that may have been applied, `find` looks for what the attempt would have
/// made; only if it is not there does the next attempt go out. Throttled
/// attempts were not applied and are simply retried after a backoff.
pub async fn create_unique<T, E, R, S, SF, F, FF>(op: &str, send: S, find: F) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
    S: Fn() -> SF,
    SF: Future<Output = Result<T, SdkError<E, R>>>,
    F: Fn() -> FF,
    FF: Future<Output = Result<Option<T>>>,
{
    let attempts = MAX_ATTEMPTS.load(Ordering::Relaxed);
    let mut attempt = 1;
    loop {
        let e = match send().await {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        let Some(kind) = transient(&e) else { return Err(super::aws_error(op, &e)) };
        if kind == Transient::Unknown
            && let Some(found) = find().await?
        {
            return Ok(found);
        }
        if attempt >= attempts {
            return Err(super::aws_error(op, &e));
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// Full jitter over an exponential ceiling: 100 ms, 200 ms, … up to 20 s.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = 100u64.saturating_mul(1 << attempt.min(8)).min(20_000);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let seed = (nanos as u64) ^ ((attempt as u64) << 32) ^ std::process::id() as u64;
    let jitter = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    Duration::from_millis(jitter % ceiling.max(1))
}

/// A create found its resource already there. After a retried attempt whose
/// first response was lost, that resource is our own; apply checks its tags
/// and converges it instead of failing.
#[derive(Debug)]
pub struct AlreadyExists(pub String);

impl std::fmt::Display for AlreadyExists {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AlreadyExists {}

/// The result of a create, where `exists` is the service's "already exists" code.
pub fn created<T, E, R>(result: Result<T, SdkError<E, R>>, exists: &str, op: &str) -> Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(v) => Ok(v),
        Err(e) if e.code() == Some(exists) => Err(anyhow!(AlreadyExists(super::aws_error(op, &e).to_string()))),
        Err(e) => Err(super::aws_error(op, &e)),
    }
}
