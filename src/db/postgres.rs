//! PostgreSQL connections: a libpq-style URL (`sslmode` disable, prefer, require, verify-ca or
//! verify-full; `sslrootcert`, `sslcert`, `sslkey`; `connect_timeout`), password authentication
//! (scram-sha-256 included), and retries while the server starts.

use std::time::Duration;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use postgres_openssl::MakeTlsConnector;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{Failure, retry};

/// A parsed PostgreSQL URL.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    config: tokio_postgres::Config,
    tls: Tls,
    /// `user@host:port/db`, for messages (never the password).
    pub(crate) display: String,
    /// The URL's digest: the same URL, the same connection.
    key: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Verify {
    None,
    Ca,
    Full,
}

#[derive(Clone, Debug)]
struct Tls {
    verify: Verify,
    root_cert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target, String> {
        let mut parsed = url::Url::parse(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "a PostgreSQL URL starts with postgres://, not {}://",
                parsed.scheme()
            ));
        }
        let mut tls = Tls {
            verify: Verify::None,
            root_cert: None,
            cert: None,
            key: None,
        };
        let mut mode = "prefer".to_string();
        let mut kept = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "sslmode" => mode = v.into_owned(),
                "sslrootcert" => tls.root_cert = Some(v.into_owned()),
                "sslcert" => tls.cert = Some(v.into_owned()),
                "sslkey" => tls.key = Some(v.into_owned()),
                _ => kept.push((k.into_owned(), v.into_owned())),
            }
        }
        let libpq_mode = match mode.as_str() {
            "disable" | "prefer" | "require" => mode.as_str(),
            "allow" => "prefer",
            "verify-ca" => {
                tls.verify = Verify::Ca;
                "require"
            }
            "verify-full" => {
                tls.verify = Verify::Full;
                "require"
            }
            other => {
                return Err(format!(
                    "sslmode `{other}` is not known (disable, prefer, require, verify-ca, verify-full)"
                ));
            }
        };
        if tls.verify != Verify::None && tls.root_cert.is_none() {
            return Err(format!(
                "sslmode={mode} needs sslrootcert (the CA certificate file)"
            ));
        }
        kept.push(("sslmode".into(), libpq_mode.into()));
        parsed.query_pairs_mut().clear().extend_pairs(kept);
        let mut config: tokio_postgres::Config = parsed
            .as_str()
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let display = format!(
            "{}@{}:{}/{}",
            config.get_user().unwrap_or("?"),
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432),
            config
                .get_dbname()
                .unwrap_or_else(|| config.get_user().unwrap_or("?")),
        );
        Ok(Target {
            config,
            tls,
            display,
            key: crate::fingerprint::sha256(url.as_bytes()),
        })
    }

    /// Which lent connection is this URL's.
    pub(crate) fn key(&self) -> String {
        self.key.clone()
    }

    fn connector(&self) -> Result<MakeTlsConnector, String> {
        let mut builder = SslConnector::builder(SslMethod::tls())
            .map_err(|e| format!("TLS setup failed: {e}"))?;
        match self.tls.verify {
            Verify::None => builder.set_verify(SslVerifyMode::NONE),
            Verify::Ca | Verify::Full => builder.set_verify(SslVerifyMode::PEER),
        }
        if let Some(ca) = &self.tls.root_cert {
            builder
                .set_ca_file(ca)
                .map_err(|e| format!("cannot load sslrootcert `{ca}`: {e}"))?;
        }
        if let Some(cert) = &self.tls.cert {
            builder
                .set_certificate_chain_file(cert)
                .map_err(|e| format!("cannot load sslcert `{cert}`: {e}"))?;
        }
        if let Some(key) = &self.tls.key {
            builder
                .set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
                .map_err(|e| format!("cannot load sslkey `{key}`: {e}"))?;
        }
        let mut connector = MakeTlsConnector::new(builder.build());
        if self.tls.verify != Verify::Full {
            connector.set_callback(|config, _| {
                config.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }

    /// Connects, retrying for `window` while the server is not reachable yet.
    pub(crate) async fn connect(&self, window: Duration) -> Result<Client, String> {
        let connector = self.connector()?;
        retry(window, || async {
            match self.config.connect(connector.clone()).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    Ok(client)
                }
                Err(e) => Err(classify(&e)),
            }
        })
        .await
        .map_err(|why| format!("cannot connect to PostgreSQL at {}: {why}", self.display))
    }

    /// Checks a database runner will write to: it must store text as UTF-8. A `SQL_ASCII`
    /// database (what initdb makes without a locale) accepts any bytes without checking them,
    /// so non-ASCII values would reach clients that cannot decode them.
    pub(crate) async fn check_utf8(&self, client: &Client) -> Result<(), String> {
        let row = client
            .query_one(
                "SELECT current_database(), current_setting('server_encoding')",
                &[],
            )
            .await
            .map_err(|e| {
                format!(
                    "cannot read the encoding of {}: {}",
                    self.display,
                    describe(&e)
                )
            })?;
        let (database, encoding): (String, String) = (row.get(0), row.get(1));
        if encoding != "UTF8" {
            return Err(format!(
                "database `{database}` at {} has encoding {encoding}, not UTF8: runner writes only to UTF8 databases, since any other encoding stores or garbles non-ASCII text that the app cannot read back; create it with `ENCODING 'UTF8'` (initdb --encoding=UTF8 or a UTF-8 locale, as the official postgres image does)",
                self.display
            ));
        }
        Ok(())
    }
}

fn classify(e: &tokio_postgres::Error) -> Failure {
    let why = describe(e);
    match e.code() {
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_CATALOG_NAME =>
        {
            Failure::Final(why)
        }
        Some(code) if *code == SqlState::CANNOT_CONNECT_NOW => Failure::Transient(why),
        Some(_) => Failure::Final(why),
        None if why.contains("TLS") || why.contains("certificate") || why.contains("ssl") => {
            Failure::Final(why)
        }
        None => Failure::Transient(why),
    }
}

/// An error in words: the server's message, or the client's with its cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    out
}
