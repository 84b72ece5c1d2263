//! The network policy for webhook targets (SSRF protection), enforced twice: when an endpoint
//! is registered ([`SsrfGuard`], the domain's `TargetGuard`), and at every send, after name
//! resolution, by the resolver the HTTP client uses ([`PolicyResolver`]), so that a name that
//! later resolves to a private address (DNS rebinding) is still refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use mandate_domain::ports::{TargetGuard, TargetRefused};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// How long a name lookup may take before the target counts as unresolvable.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Which webhook targets this server may call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// Accept `http://` targets as well as `https://` (for development).
    pub allow_http: bool,
    /// Accept any address except unspecified (`0.0.0.0`, `::`), multicast and broadcast ones:
    /// loopback, private networks, link-local… (for development and private deployments).
    pub allow_private_targets: bool,
    /// Networks accepted even though they are not public (say, a receiver inside the VPC).
    pub allowed_cidrs: Vec<IpNet>,
}

/// An entry of an allow-list that is neither a CIDR nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR (e.g. 10.20.0.0/16 or fd00::/8) nor an IP address")]
pub struct InvalidCidr(pub String);

/// Reads an allow-list of networks separated by commas or spaces: CIDRs (`10.20.0.0/16`,
/// `fd00:1::/32`) or single addresses (`10.0.0.7`). An empty text is an empty list.
pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, InvalidCidr> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| InvalidCidr(entry.to_owned()))
        })
        .collect()
}

impl NetworkPolicy {
    /// Whether this server may connect to `ip`.
    ///
    /// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as the IPv4 address it carries,
    /// as are the IPv4 addresses inside NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`) ones.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = ip.to_canonical();
        if self
            .allowed_cidrs
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&canonical))
        {
            return true;
        }
        if self.allow_private_targets {
            return !never_a_target(canonical);
        }
        is_public(canonical)
    }

    /// The checks that need no name resolution: the URL parses, its scheme is `https` (or
    /// `http` when allowed), it has a host and no credentials, and a literal IP host is
    /// permitted. Returns the parsed URL.
    pub fn check_url(&self, url: &str) -> Result<Url, TargetRefused> {
        let parsed = Url::parse(url).map_err(|_| refused("the URL is not a valid absolute URL"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ if self.allow_http => return Err(refused("the URL must be http:// or https://")),
            _ => return Err(refused("the URL must be https://")),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused("the URL must not carry credentials"));
        }
        match parsed.host() {
            None => Err(refused("the URL has no host")),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| parsed),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| parsed),
            Some(Host::Domain(_)) => Ok(parsed),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), TargetRefused> {
        if self.permits(ip) {
            Ok(())
        } else {
            Err(refused(format!(
                "{ip} is not a public address (loopback, private, link-local, multicast, \
                 reserved…) and is not allowed for webhooks"
            )))
        }
    }

    /// Resolves `host` and returns the addresses that are permitted, or why none is.
    async fn resolve_permitted(&self, host: &str) -> Result<Vec<SocketAddr>, TargetRefused> {
        let addrs = lookup(host).await?;
        let permitted: Vec<SocketAddr> = addrs
            .iter()
            .copied()
            .filter(|addr| self.permits(addr.ip()))
            .collect();
        if permitted.is_empty() {
            Err(refused(format!(
                "{host} resolves only to addresses that are not allowed for webhooks \
                 (loopback, private, link-local, multicast, reserved…)"
            )))
        } else {
            Ok(permitted)
        }
    }
}

fn refused(reason: impl Into<String>) -> TargetRefused {
    TargetRefused(reason.into())
}

async fn lookup(host: &str) -> Result<Vec<SocketAddr>, TargetRefused> {
    let unresolvable = || refused(format!("{host} cannot be resolved"));
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(unresolvable())
            } else {
                Ok(addrs)
            }
        }
        Ok(Err(_)) | Err(_) => Err(unresolvable()),
    }
}

/// Addresses no webhook is ever sent to, even when private targets are allowed.
fn never_a_target(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// IPv4 networks that are not public unicast: this network, RFC 1918, CGNAT, loopback,
/// link-local, IETF assignments, documentation, 6to4 relays, benchmarking, multicast, and the
/// reserved block (with broadcast).
const NOT_PUBLIC_V4: [(Ipv4Addr, u8); 15] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks that are not public unicast: unspecified, loopback and IPv4-compatible
/// (`::/96`), discard-only, local-use NAT64, IETF assignments (Teredo, ORCHID…),
/// documentation, unique local (`fc00::/7`), link-local, site-local and multicast.
const NOT_PUBLIC_V6: [(Ipv6Addr, u8); 10] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),
];

fn in_v4(ip: Ipv4Addr, (network, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn in_v6(ip: Ipv6Addr, (network, prefix): (Ipv6Addr, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

/// Whether `ip` is a public unicast address: the only kind a webhook goes to by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !NOT_PUBLIC_V4.iter().any(|net| in_v4(v4, *net)),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let bits = u128::from(v6);
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
            if in_v6(v6, (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)) {
                return is_public(IpAddr::V4(Ipv4Addr::from((bits & 0xffff_ffff) as u32)));
            }
            if in_v6(v6, (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16)) {
                let embedded = ((bits >> 80) & 0xffff_ffff) as u32;
                return is_public(IpAddr::V4(Ipv4Addr::from(embedded)));
            }
            !NOT_PUBLIC_V6.iter().any(|net| in_v6(v6, *net))
        }
    }
}

/// The registration-time check: the domain's `TargetGuard` over a [`NetworkPolicy`]. A name
/// is refused when it cannot be resolved or when *any* of its addresses is not permitted.
#[derive(Debug, Clone)]
pub struct SsrfGuard {
    policy: Arc<NetworkPolicy>,
}

impl SsrfGuard {
    /// A guard enforcing `policy`.
    pub fn new(policy: NetworkPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// The policy it enforces.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }
}

#[async_trait]
impl TargetGuard for SsrfGuard {
    async fn check(&self, url: &str) -> Result<(), TargetRefused> {
        let parsed = self.policy.check_url(url)?;
        let Some(Host::Domain(host)) = parsed.host() else {
            // A literal address was judged by `check_url`.
            return Ok(());
        };
        for addr in lookup(host).await? {
            if !self.policy.permits(addr.ip()) {
                return Err(refused(format!(
                    "{host} resolves to {}, which is not allowed for webhooks",
                    addr.ip()
                )));
            }
        }
        Ok(())
    }
}

/// The HTTP client's resolver: resolves names itself and hands the client only permitted
/// addresses, failing the request when none remains. (Literal IP hosts never reach a
/// resolver; the sender checks them with [`NetworkPolicy::check_url`].)
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<NetworkPolicy>,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Arc<NetworkPolicy>) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let permitted = policy.resolve_permitted(name.as_str()).await?;
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> NetworkPolicy {
        NetworkPolicy::default()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for private in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(ip(private)), "{private} counted as public");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.0.1.1",
            "192.169.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
        ] {
            assert!(is_public(ip(public)), "{public} counted as not public");
        }
    }

    #[test]
    fn allow_lists_are_read_from_text() {
        assert_eq!(parse_cidrs(""), Ok(Vec::new()));
        assert_eq!(parse_cidrs(" , "), Ok(Vec::new()));
        let nets = parse_cidrs("10.20.0.0/16, fd00:1::/32 10.0.0.7,::1").unwrap();
        let expected: Vec<IpNet> = ["10.20.0.0/16", "fd00:1::/32", "10.0.0.7/32", "::1/128"]
            .into_iter()
            .map(|net| net.parse().unwrap())
            .collect();
        assert_eq!(nets, expected);
        // Host bits are dropped: 10.20.3.4/16 means 10.20.0.0/16.
        assert_eq!(
            parse_cidrs("10.20.3.4/16").unwrap(),
            vec!["10.20.0.0/16".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            parse_cidrs("10.0.0.0/33"),
            Err(InvalidCidr("10.0.0.0/33".into()))
        );
        assert_eq!(
            parse_cidrs("10.0.0.0/8,intranet"),
            Err(InvalidCidr("intranet".into()))
        );
    }

    #[test]
    fn the_strict_policy_permits_public_addresses_only() {
        let policy = strict();
        assert!(policy.permits(ip("93.184.216.34")));
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(!policy.permits(ip("::ffff:192.168.0.1")));
    }

    #[test]
    fn allowing_private_targets_still_refuses_what_is_never_a_target() {
        let policy = NetworkPolicy {
            allow_private_targets: true,
            ..strict()
        };
        for allowed in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "fd00::1",
            "169.254.1.1",
            "8.8.8.8",
        ] {
            assert!(policy.permits(ip(allowed)), "{allowed}");
        }
        for never in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:0.0.0.0",
        ] {
            assert!(!policy.permits(ip(never)), "{never}");
        }
    }

    #[test]
    fn allowed_cidrs_open_exactly_their_networks() {
        let policy = NetworkPolicy {
            allowed_cidrs: vec![
                "10.1.0.0/16".parse().unwrap(),
                "fd00:1::/32".parse().unwrap(),
            ],
            ..strict()
        };
        assert!(policy.permits(ip("10.1.2.3")));
        assert!(policy.permits(ip("::ffff:10.1.2.3")));
        assert!(policy.permits(ip("fd00:1::5")));
        assert!(!policy.permits(ip("10.2.0.1")));
        assert!(!policy.permits(ip("fd00:2::5")));
        assert!(!policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("8.8.8.8")));
    }

    async fn check(policy: &NetworkPolicy, url: &str) -> Result<(), TargetRefused> {
        SsrfGuard::new(policy.clone()).check(url).await
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused() {
        for url in [
            "https://127.0.0.1/hook",
            "https://127.0.0.1:8443/hook",
            "https://10.0.0.1/",
            "https://172.16.5.4/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::ffff:a9fe:a9fe]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[ff02::1]/",
            // Other spellings of 127.0.0.1 that URL parsers accept.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://127.1/",
        ] {
            let refusal = check(&strict(), url).await.expect_err(url);
            assert!(
                refusal.0.contains("not a public address"),
                "{url}: {refusal}"
            );
        }
    }

    #[tokio::test]
    async fn localhost_is_refused_after_resolution() {
        let refusal = check(&strict(), "https://localhost/hook")
            .await
            .unwrap_err();
        assert!(refusal.0.contains("localhost"), "{refusal}");
        let refusal = check(&strict(), "https://LOCALHOST:9000/")
            .await
            .unwrap_err();
        assert!(refusal.0.contains("localhost"), "{refusal}");
    }

    #[tokio::test]
    async fn public_literal_addresses_pass_without_resolution() {
        check(&strict(), "https://93.184.216.34/hook")
            .await
            .unwrap();
        check(&strict(), "https://[2606:4700:4700::1111]/hook")
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn private_targets_pass_when_allowed() {
        let policy = NetworkPolicy {
            allow_private_targets: true,
            ..strict()
        };
        check(&policy, "https://127.0.0.1/hook").await.unwrap();
        check(&policy, "https://[::1]/hook").await.unwrap();
        check(&policy, "https://localhost/hook").await.unwrap();
        check(&policy, "https://10.0.0.1/hook").await.unwrap();
        assert!(check(&policy, "https://0.0.0.0/hook").await.is_err());
    }

    #[tokio::test]
    async fn an_allowed_cidr_admits_its_addresses_only() {
        let policy = NetworkPolicy {
            allowed_cidrs: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.0/8".parse().unwrap(),
            ],
            ..strict()
        };
        check(&policy, "https://10.20.30.40/hook").await.unwrap();
        check(&policy, "https://localhost/hook").await.unwrap();
        assert!(check(&policy, "https://192.168.0.1/hook").await.is_err());
        assert!(check(&policy, "https://[::1]/hook").await.is_err());
    }

    #[tokio::test]
    async fn http_is_refused_unless_allowed() {
        let refusal = check(&strict(), "http://93.184.216.34/hook")
            .await
            .unwrap_err();
        assert_eq!(refusal.0, "the URL must be https://");
        let policy = NetworkPolicy {
            allow_http: true,
            ..strict()
        };
        check(&policy, "http://93.184.216.34/hook").await.unwrap();
        // Allowing http does not allow private addresses.
        assert!(check(&policy, "http://127.0.0.1/hook").await.is_err());
    }

    #[tokio::test]
    async fn malformed_urls_and_other_schemes_are_refused() {
        let permissive = NetworkPolicy {
            allow_http: true,
            allow_private_targets: true,
            allowed_cidrs: Vec::new(),
        };
        for url in [
            "",
            "not a url",
            "/relative",
            "ftp://93.184.216.34/",
            "file:///etc/passwd",
            "gopher://127.0.0.1/",
            "https://user:pass@93.184.216.34/",
            "https://user@93.184.216.34/",
        ] {
            assert!(check(&permissive, url).await.is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn unresolvable_names_are_refused() {
        let refusal = check(&strict(), "https://no-such-host.invalid/hook")
            .await
            .unwrap_err();
        assert!(refusal.0.contains("cannot be resolved"), "{refusal}");
    }

    #[tokio::test]
    async fn the_resolver_keeps_permitted_addresses_only() {
        let resolver = PolicyResolver::new(Arc::new(strict()));
        let name: Name = "localhost".parse().unwrap();
        assert!(resolver.resolve(name).await.is_err());

        let resolver = PolicyResolver::new(Arc::new(NetworkPolicy {
            allowed_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
            ..strict()
        }));
        let addrs: Vec<SocketAddr> = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|addr| addr.ip().is_loopback() && addr.is_ipv4())
        );
    }
}
