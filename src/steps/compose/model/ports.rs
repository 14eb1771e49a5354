//! `ports` and `expose`, short form (`"127.0.0.1:8080-8081:80-81/udp"`, `3000`) and long.

use std::collections::BTreeSet;

use serde::Serialize;

use super::spec::{PortSpec, Scalar};

/// A published port: container port with protocol ("3000/tcp"), host address and port.
#[derive(Debug, Serialize, Clone, PartialEq)]
pub(crate) struct Port {
    pub(crate) container: String,
    pub(crate) host_ip: String,
    pub(crate) host_port: String,
}

/// The exposed container ports and the published ones.
pub(crate) fn resolve(
    ports: &[PortSpec],
    expose: &[Scalar],
) -> Result<(BTreeSet<String>, Vec<Port>), String> {
    let mut exposed = BTreeSet::new();
    for Scalar(e) in expose {
        let (range, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        for p in span(range).ok_or_else(|| format!("cannot read the port `{e}`"))? {
            exposed.insert(format!("{p}/{proto}"));
        }
    }
    let mut out = Vec::new();
    for spec in ports {
        let (container, host_ip, host_port, proto) = match spec {
            PortSpec::Short(Scalar(text)) => short(text)?,
            PortSpec::Long {
                target,
                published,
                host_ip,
                protocol,
                mode,
            } => {
                if mode
                    .as_deref()
                    .is_some_and(|m| m != "host" && m != "ingress")
                {
                    return Err(format!(
                        "port mode `{}` is not host or ingress",
                        mode.as_deref().unwrap_or_default()
                    ));
                }
                (
                    target.0.to_string(),
                    host_ip.clone().unwrap_or_default(),
                    published.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
                    protocol.clone().unwrap_or_else(|| "tcp".into()),
                )
            }
        };
        let bad = || format!("cannot read the port range of `{container}`");
        let targets = span(&container).ok_or_else(bad)?;
        let hosts = if host_port.is_empty() {
            None
        } else {
            Some(span(&host_port).ok_or_else(bad)?)
        };
        for (i, target) in targets.iter().enumerate() {
            let container = format!("{target}/{proto}");
            exposed.insert(container.clone());
            let host_port = match &hosts {
                None => String::new(),
                // As many host ports as container ports: one to one.
                Some(h) if h.len() == targets.len() => h[i].to_string(),
                // One container port, a host range: the engine picks a free one in it.
                Some(_) if targets.len() == 1 => host_port.clone(),
                Some(_) => {
                    return Err(format!(
                        "the port ranges `{host_port}` and the container's `{}` differ in length",
                        targets.len()
                    ));
                }
            };
            if !host_port.is_empty() || !host_ip.is_empty() {
                out.push(Port {
                    container,
                    host_ip: host_ip.clone(),
                    host_port,
                });
            }
        }
    }
    Ok((exposed, out))
}

/// `[ip:][host[-host]:]container[-container][/proto]`.
fn short(text: &str) -> Result<(String, String, String, String), String> {
    let (spec, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let (container, host, ip) = match parts.as_slice() {
        [c] => (*c, "", ""),
        [c, h] => (*c, *h, ""),
        [c, h, ip] => (*c, *h, ip.trim_start_matches('[').trim_end_matches(']')),
        _ => return Err(format!("cannot read the port `{text}`")),
    };
    Ok((container.into(), ip.into(), host.into(), proto.into()))
}

/// `8080` or `8080-8082` as the ports it spans.
fn span(text: &str) -> Option<Vec<u16>> {
    let (from, to) = text.split_once('-').unwrap_or((text, text));
    let (from, to): (u16, u16) = (from.trim().parse().ok()?, to.trim().parse().ok()?);
    (from <= to).then(|| (from..=to).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(yaml: &str) -> Result<(BTreeSet<String>, Vec<Port>), String> {
        let ports: Vec<PortSpec> = serde_yaml::from_str(yaml).unwrap();
        resolve(&ports, &[Scalar("9000-9001".into())])
    }

    fn port(c: &str, ip: &str, h: &str) -> Port {
        Port {
            container: c.into(),
            host_ip: ip.into(),
            host_port: h.into(),
        }
    }

    #[test]
    fn ports_read_like_compose() {
        let (exposed, ports) = read(
            r#"[3000, "127.0.0.1:8080:80", "5000-5001:6000-6001/udp", "[::1]:7000:7000",
                "8000-8010:8000", {target: 443, published: "8443", host_ip: 0.0.0.0}]"#,
        )
        .unwrap();
        assert_eq!(
            ports,
            [
                port("80/tcp", "127.0.0.1", "8080"),
                port("6000/udp", "", "5000"),
                port("6001/udp", "", "5001"),
                port("7000/tcp", "::1", "7000"),
                port("8000/tcp", "", "8000-8010"),
                port("443/tcp", "0.0.0.0", "8443"),
            ]
        );
        for p in ["3000/tcp", "9000/tcp", "9001/tcp", "6001/udp", "443/tcp"] {
            assert!(exposed.contains(p), "{p} in {exposed:?}");
        }
        assert!(
            read(r#"["1-3:1-2"]"#)
                .unwrap_err()
                .contains("differ in length")
        );
        assert!(read(r#"["80:x"]"#).is_err());
        assert!(read(r#"["9-1"]"#).is_err());
        assert!(read(r#"["99999"]"#).is_err());
    }
}
