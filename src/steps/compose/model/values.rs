//! Values in compose's own notations: healthchecks, restart policies, durations, byte sizes.

use super::service::Health;
use super::spec::{self, Bool, Words};

pub(crate) fn health(
    h: spec::Healthcheck,
    warn: &mut dyn FnMut(String),
) -> Result<Option<Health>, String> {
    if let Some(d) = &h.start_interval {
        warn(format!(
            "healthcheck.start_interval `{d}` is not carried out: the engine's API 1.41 has no start interval (it came in 1.44)"
        ));
    }
    let test = if h.disable.is_some_and(|Bool(b)| b) {
        vec!["NONE".to_string()]
    } else {
        match h.test {
            Some(Words::Text(cmd)) => vec!["CMD-SHELL".into(), cmd],
            Some(Words::List(list)) => list.into_iter().map(|w| w.0).collect(),
            // Only timings: the image's own test, with these timings.
            None => Vec::new(),
        }
    };
    let ns = |d: &Option<String>| d.as_deref().map(duration_ns).transpose();
    Ok(Some(Health {
        test,
        interval: ns(&h.interval)?,
        timeout: ns(&h.timeout)?,
        retries: h.retries.map(|r| r.0).filter(|r| *r > 0),
        start_period: ns(&h.start_period)?,
    }))
}

pub(crate) fn restart(policy: &str) -> Result<(String, i64), String> {
    match policy.split_once(':') {
        Some(("on-failure", n)) => n
            .parse()
            .map(|n| ("on-failure".into(), n))
            .map_err(|_| format!("restart `{policy}`: not a count")),
        None if ["no", "always", "on-failure", "unless-stopped"].contains(&policy) => {
            Ok((policy.to_string(), 0))
        }
        _ => Err(format!(
            "restart policy `{policy}` is not one of no, always, on-failure[:n], unless-stopped"
        )),
    }
}

/// A compose duration ("1m30s", "500ms", "10s") in nanoseconds.
pub(crate) fn duration_ns(text: &str) -> Result<i64, String> {
    humantime::parse_duration(text)
        .map(|d| d.as_nanos() as i64)
        .map_err(|e| format!("`{text}` is not a duration: {e}"))
}

/// A compose byte size ("512m", "1g", "1.5gb", "1024") in bytes.
pub(crate) fn bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let scale: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("`{text}` is not a size (like 512m or 1g)")),
    };
    digits
        .parse::<f64>()
        .map(|n| (n * scale as f64) as i64)
        .map_err(|_| format!("`{text}` is not a size (like 512m or 1g)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_compose() {
        assert_eq!(bytes("512m"), Ok(512 << 20));
        assert_eq!(bytes("1G"), Ok(1 << 30));
        assert_eq!(bytes("1.5gb"), Ok(3 << 29));
        assert_eq!(bytes("1024"), Ok(1024));
        assert!(bytes("12 parsecs").is_err());
        assert!(bytes("m").is_err());
    }
}
