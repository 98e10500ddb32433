//! SSRF protection for webhook URLs: which URLs are acceptable, and which addresses a
//! webhook may reach.
//!
//! A webhook URL is chosen by a project admin, and the server, not the admin, sends the
//! request — from inside the operator's network. Without a check, a webhook could probe or
//! call loopback services, the private network or the cloud provider's metadata endpoint
//! (which hands out credentials). So:
//!
//! - [`check_url`] accepts only absolute `http`/`https` URLs with a host, no user name or
//!   password, at most [`MAX_URL_LEN`] characters.
//! - [`classify`] puts an IP address in an [`AddressClass`]; [`AddressClass::is_allowed`]
//!   says whether a webhook may connect to it. Public addresses always may; loopback,
//!   private (including CGNAT and IPv6 unique-local) and link-local ones only when the
//!   operator allows private targets (`KEEL_WEBHOOK_ALLOW_PRIVATE`, for development and
//!   on-premises receivers). Cloud metadata endpoints, the unspecified address (which Linux
//!   connects to the local host), broadcast, multicast and reserved ranges are never allowed:
//!   no webhook receiver lives there.
//! - IPv6 addresses that embed an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`,
//!   IPv4-compatible `::a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, NAT64 `64:ff9b::/96`,
//!   6to4 `2002::/16`) are classified by the IPv4 address, so `[::ffff:127.0.0.1]` is
//!   loopback.
//! - [`resolve_checked`] resolves a URL's host and refuses it if any address is not allowed
//!   (used when a webhook is created or changed, for a clear 422). The delivery client does
//!   its own filtering at connection time (see `client`), since DNS answers can change.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// The longest webhook URL accepted, in bytes, before and after normalisation.
pub const MAX_URL_LEN: usize = 2048;

/// How long [`resolve_checked`] waits for the system resolver.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What kind of destination an IP address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressClass {
    /// Globally routable unicast.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, CGNAT `100.64/10`, IPv6 unique-local `fc00::/7`,
    /// deprecated site-local `fec0::/10`, local-use NAT64 `64:ff9b:1::/48`.
    Private,
    /// `169.254/16`, `fe80::/10`.
    LinkLocal,
    /// Cloud instance-metadata endpoints: `169.254.169.254` (AWS, GCP, Azure, OpenStack…),
    /// `169.254.170.2` (AWS ECS), `100.100.100.200` (Alibaba), `168.63.129.16` (Azure
    /// platform), `fd00:ec2::254` (AWS IPv6).
    Metadata,
    /// `0.0.0.0/8` ("this network"), `::`.
    Unspecified,
    /// `255.255.255.255`.
    Broadcast,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// Not routable on the Internet: `240/4`, `192.0.0/24`, benchmarking `198.18/15`,
    /// documentation nets, the 6to4 relay `192.88.99/24`, IPv6 documentation, discard-only,
    /// ORCHID, Teredo and unallocated space outside `2000::/3`.
    Reserved,
}

impl AddressClass {
    /// Whether a webhook may connect to an address of this class. `allow_private` opens
    /// loopback, private and link-local addresses; metadata, unspecified, broadcast,
    /// multicast and reserved addresses stay refused whatever it says.
    pub fn is_allowed(self, allow_private: bool) -> bool {
        match self {
            AddressClass::Public => true,
            AddressClass::Loopback | AddressClass::Private | AddressClass::LinkLocal => allow_private,
            AddressClass::Metadata
            | AddressClass::Unspecified
            | AddressClass::Broadcast
            | AddressClass::Multicast
            | AddressClass::Reserved => false,
        }
    }
}

impl fmt::Display for AddressClass {
    /// The class with its article, as it reads in a message: "a private address".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Public => "a public address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::Metadata => "a cloud metadata address",
            AddressClass::Unspecified => "the unspecified address",
            AddressClass::Broadcast => "a broadcast address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Reserved => "a reserved address",
        })
    }
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

/// IPv4 ranges other than public, most specific first (the first match wins).
const V4_RANGES: &[(Ipv4Net, AddressClass)] = &[
    (v4(169, 254, 169, 254, 32), AddressClass::Metadata),
    (v4(169, 254, 170, 2, 32), AddressClass::Metadata),
    (v4(100, 100, 100, 200, 32), AddressClass::Metadata),
    (v4(168, 63, 129, 16, 32), AddressClass::Metadata),
    (v4(0, 0, 0, 0, 8), AddressClass::Unspecified),
    (v4(127, 0, 0, 0, 8), AddressClass::Loopback),
    (v4(10, 0, 0, 0, 8), AddressClass::Private),
    (v4(172, 16, 0, 0, 12), AddressClass::Private),
    (v4(192, 168, 0, 0, 16), AddressClass::Private),
    (v4(100, 64, 0, 0, 10), AddressClass::Private),
    (v4(169, 254, 0, 0, 16), AddressClass::LinkLocal),
    (v4(255, 255, 255, 255, 32), AddressClass::Broadcast),
    (v4(224, 0, 0, 0, 4), AddressClass::Multicast),
    (v4(240, 0, 0, 0, 4), AddressClass::Reserved),
    (v4(192, 0, 0, 0, 24), AddressClass::Reserved),
    (v4(192, 0, 2, 0, 24), AddressClass::Reserved),
    (v4(198, 51, 100, 0, 24), AddressClass::Reserved),
    (v4(203, 0, 113, 0, 24), AddressClass::Reserved),
    (v4(198, 18, 0, 0, 15), AddressClass::Reserved),
    (v4(192, 88, 99, 0, 24), AddressClass::Reserved),
];

const fn v6(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// IPv6 ranges, most specific first, after the embedded-IPv4 forms have been handled.
/// What is in none of them and in `2000::/3` is public; anything else is reserved.
const V6_RANGES: &[(Ipv6Net, AddressClass)] = &[
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        AddressClass::Metadata,
    ),
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), AddressClass::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), AddressClass::Loopback),
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48), AddressClass::Private),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), AddressClass::Private),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), AddressClass::Private),
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), AddressClass::LinkLocal),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), AddressClass::Multicast),
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), AddressClass::Reserved),
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), AddressClass::Reserved),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), AddressClass::Reserved),
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), AddressClass::Reserved),
    (v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28), AddressClass::Reserved),
    (v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28), AddressClass::Reserved),
];

const GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// Classifies an IPv4 address.
fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    V4_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map_or(AddressClass::Public, |(_, class)| *class)
}

/// The IPv4 address embedded in an IPv6 address by a translation or tunnelling scheme.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (deprecated), but not :: and ::1
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        // NAT64 well-known prefix 64:ff9b::/96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4 2002:aabb:ccdd::/48
        [0x2002, ..] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
    }
}

/// Classifies an IPv6 address (by its embedded IPv4 address where it has one).
fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    if let Some(inner) = embedded_v4(ip) {
        return classify_v4(inner);
    }
    if let Some((_, class)) = V6_RANGES.iter().find(|(net, _)| net.contains(&ip)) {
        return *class;
    }
    if GLOBAL_UNICAST.contains(&ip) {
        AddressClass::Public
    } else {
        AddressClass::Reserved
    }
}

/// Which kind of destination `ip` is; see [`AddressClass`] for the ranges.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(ip) => classify_v4(ip),
        IpAddr::V6(ip) => classify_v6(ip),
    }
}

/// Why a webhook URL was refused. The messages complete "url …" in a 422 field error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Longer than [`MAX_URL_LEN`].
    #[error("must be at most {max} characters long")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not a URL, or a relative one.
    #[error("must be an absolute URL ({0})")]
    Invalid(#[from] url::ParseError),
    /// A scheme other than `http` or `https`.
    #[error("must use http or https, not {0}")]
    Scheme(String),
    /// No host (only possible for non-special schemes, kept for completeness).
    #[error("must have a host")]
    MissingHost,
    /// `user:password@` in the URL: credentials would be stored and logged with it.
    #[error("must not contain a user name or password")]
    Credentials,
    /// The host is, or resolves to, an address of a class that is not allowed.
    #[error("must not resolve to {0}")]
    Refused(AddressClass),
    /// The host name could not be resolved.
    #[error("must have a host name that resolves ({0})")]
    Unresolvable(String),
}

/// Checks the form of a URL that has already been parsed: http or https, a host, no
/// credentials, not too long.
pub fn check_parsed(url: &Url) -> Result<(), UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().chars().take(32).collect()));
    }
    if url.host().is_none() {
        return Err(UrlError::MissingHost);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.as_str().len() > MAX_URL_LEN {
        return Err(UrlError::TooLong { max: MAX_URL_LEN });
    }
    Ok(())
}

/// Parses a webhook URL: absolute, `http` or `https`, with a host, without user name or
/// password, at most [`MAX_URL_LEN`] characters as given and once normalised. Does not
/// resolve the host (see [`resolve_checked`]).
pub fn check_url(raw: &str) -> Result<Url, UrlError> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong { max: MAX_URL_LEN });
    }
    let url = Url::parse(raw)?;
    check_parsed(&url)?;
    Ok(url)
}

/// The socket addresses `url` designates, refused unless every one of them is allowed.
///
/// An IP-literal host is classified as it is; a name is resolved by the system resolver
/// (at most 5 s) and refused if ANY address it resolves to is not allowed — a name that
/// resolves to a public and a private address is a rebinding attempt or a mistake.
pub async fn resolve_checked(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
    check_parsed(url)?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        Some(Host::Domain(name)) => {
            match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(addrs)) => addrs.collect(),
                Ok(Err(error)) => return Err(UrlError::Unresolvable(one_line(&error.to_string()))),
                Err(_) => return Err(UrlError::Unresolvable("timed out".to_owned())),
            }
        }
        None => return Err(UrlError::MissingHost),
    };
    if addrs.is_empty() {
        return Err(UrlError::Unresolvable("no address".to_owned()));
    }
    if let Some(refused) = addrs
        .iter()
        .map(|addr| classify(addr.ip()))
        .find(|class| !class.is_allowed(allow_private))
    {
        return Err(UrlError::Refused(refused));
    }
    Ok(addrs)
}

/// `text` on one line, at most 200 characters: safe to put in a message or a column.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 200;
    let mut line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if text.chars().count() > MAX {
        line.push('…');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use AddressClass::*;

    #[test]
    fn ipv4_table() {
        let table: &[(&str, AddressClass)] = &[
            ("8.8.8.8", Public),
            ("1.1.1.1", Public),
            ("93.184.216.34", Public),
            ("9.255.255.255", Public),
            ("11.0.0.0", Public),
            ("172.15.255.255", Public),
            ("172.32.0.0", Public),
            ("192.167.255.255", Public),
            ("192.169.0.0", Public),
            ("100.63.255.255", Public),
            ("100.128.0.0", Public),
            ("169.253.255.255", Public),
            ("198.17.255.255", Public),
            ("198.20.0.0", Public),
            ("223.255.255.255", Public),
            ("168.63.129.15", Public),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("127.1.2.3", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.0.1", Private),
            ("192.168.255.255", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.253", LinkLocal),
            ("169.254.255.255", LinkLocal),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("100.100.100.200", Metadata),
            ("168.63.129.16", Metadata),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("255.255.255.255", Broadcast),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("192.0.0.8", Reserved),
            ("192.0.0.170", Reserved),
            ("192.0.2.1", Reserved),
            ("198.51.100.7", Reserved),
            ("203.0.113.9", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("192.88.99.1", Reserved),
        ];
        for (ip, class) in table {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(parsed), *class, "{ip}");
        }
    }

    #[test]
    fn ipv6_table() {
        let table: &[(&str, AddressClass)] = &[
            ("2606:4700:4700::1111", Public),
            ("2a00:1450:4001:82a::200e", Public),
            ("2001:4860:4860::8888", Public),
            ("::1", Loopback),
            ("::", Unspecified),
            ("fc00::1", Private),
            ("fd12:3456:789a::1", Private),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Private),
            ("fec0::1", Private),
            ("64:ff9b:1::1", Private),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fd00:ec2::254", Metadata),
            ("fd00:ec2::253", Private),
            ("ff02::1", Multicast),
            ("ff05::1:3", Multicast),
            ("2001:db8::1", Reserved),
            ("3fff::1", Reserved),
            ("100::1", Reserved),
            ("2001::1", Reserved),
            ("2001:10::1", Reserved),
            ("2001:20::1", Reserved),
            ("4000::1", Reserved),
            ("::2:0:0:1", Reserved),
            // Embedded IPv4, classified by the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:8.8.8.8", Public),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:0:192.168.1.1", Private),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("::8.8.8.8", Public),
            ("::0.0.0.2", Unspecified),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::169.254.169.254", Metadata),
            ("64:ff9b::1.1.1.1", Public),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", Metadata),
            ("2002:0808:0808::1", Public),
        ];
        for (ip, class) in table {
            let parsed: IpAddr = ip.parse().unwrap();
            assert_eq!(classify(parsed), *class, "{ip}");
        }
    }

    #[test]
    fn allowed_classes() {
        let always = [Public];
        let with_allow_private = [Loopback, Private, LinkLocal];
        let never = [Metadata, Unspecified, Broadcast, Multicast, Reserved];
        for class in always {
            assert!(class.is_allowed(false) && class.is_allowed(true), "{class:?}");
        }
        for class in with_allow_private {
            assert!(!class.is_allowed(false) && class.is_allowed(true), "{class:?}");
        }
        for class in never {
            assert!(!class.is_allowed(false) && !class.is_allowed(true), "{class:?}");
        }
    }

    #[test]
    fn messages_name_the_class() {
        assert_eq!(
            UrlError::Refused(Private).to_string(),
            "must not resolve to a private address"
        );
        assert_eq!(
            UrlError::Refused(Metadata).to_string(),
            "must not resolve to a cloud metadata address"
        );
    }

    #[test]
    fn good_urls_are_accepted_and_normalised() {
        for (raw, normalised) in [
            ("https://example.com/hooks", "https://example.com/hooks"),
            ("http://example.com", "http://example.com/"),
            ("HTTPS://Example.COM:8443/a?b=c", "https://example.com:8443/a?b=c"),
            ("https://[2606:4700::1]/x", "https://[2606:4700::1]/x"),
            ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ] {
            assert_eq!(
                check_url(raw).map(|u| u.to_string()),
                Ok(normalised.to_owned()),
                "{raw}"
            );
        }
        let at_limit = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert_eq!(at_limit.len(), MAX_URL_LEN);
        assert!(check_url(&at_limit).is_ok());
    }

    #[test]
    fn bad_urls_are_refused_with_the_right_error() {
        let too_long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        // Short as typed, over the limit once percent-encoded.
        let grows = format!("https://example.com/{}", "é".repeat(400));
        let cases: Vec<(String, UrlError)> = vec![
            (too_long, UrlError::TooLong { max: MAX_URL_LEN }),
            (grows, UrlError::TooLong { max: MAX_URL_LEN }),
            (
                "".into(),
                UrlError::Invalid(url::ParseError::RelativeUrlWithoutBase),
            ),
            (
                "/hooks".into(),
                UrlError::Invalid(url::ParseError::RelativeUrlWithoutBase),
            ),
            (
                "example.com/hooks".into(),
                UrlError::Invalid(url::ParseError::RelativeUrlWithoutBase),
            ),
            ("https://".into(), UrlError::Invalid(url::ParseError::EmptyHost)),
            (
                "https://exa mple.com/".into(),
                UrlError::Invalid(url::ParseError::IdnaError),
            ),
            (
                "https://example.com:99999/".into(),
                UrlError::Invalid(url::ParseError::InvalidPort),
            ),
            ("ftp://example.com/".into(), UrlError::Scheme("ftp".into())),
            ("file:///etc/passwd".into(), UrlError::Scheme("file".into())),
            (
                "javascript:alert(1)".into(),
                UrlError::Scheme("javascript".into()),
            ),
            (
                "gopher://127.0.0.1:6379/_INFO".into(),
                UrlError::Scheme("gopher".into()),
            ),
            ("https://user:pass@example.com/".into(), UrlError::Credentials),
            ("https://user@example.com/".into(), UrlError::Credentials),
            ("https://:pass@example.com/".into(), UrlError::Credentials),
        ];
        for (raw, expected) in cases {
            assert_eq!(check_url(&raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn error_messages_read_as_field_errors() {
        assert_eq!(
            check_url("ftp://x/").unwrap_err().to_string(),
            "must use http or https, not ftp"
        );
        assert_eq!(
            check_url("nope").unwrap_err().to_string(),
            "must be an absolute URL (relative URL without a base)"
        );
        assert_eq!(
            check_url("https://a:b@x/").unwrap_err().to_string(),
            "must not contain a user name or password"
        );
    }

    async fn resolve(raw: &str, allow_private: bool) -> Result<Vec<SocketAddr>, UrlError> {
        resolve_checked(&check_url(raw).unwrap(), allow_private).await
    }

    #[tokio::test]
    async fn ip_literals_are_classified_without_resolving() {
        assert_eq!(
            resolve("https://93.184.216.34/h", false).await,
            Ok(vec!["93.184.216.34:443".parse().unwrap()])
        );
        assert_eq!(
            resolve("http://[2606:4700::1]:8080/h", false).await,
            Ok(vec!["[2606:4700::1]:8080".parse().unwrap()])
        );
        assert_eq!(
            resolve("http://127.0.0.1:9/", false).await,
            Err(UrlError::Refused(Loopback))
        );
        assert_eq!(
            resolve("http://127.0.0.1:9/", true).await,
            Ok(vec!["127.0.0.1:9".parse().unwrap()])
        );
        assert_eq!(
            resolve("http://10.0.0.1/", false).await,
            Err(UrlError::Refused(Private))
        );
        assert_eq!(
            resolve("http://[::ffff:10.0.0.1]/", false).await,
            Err(UrlError::Refused(Private))
        );
        assert_eq!(
            resolve("http://[::1]/", false).await,
            Err(UrlError::Refused(Loopback))
        );
        // The URL parser's IPv4 shorthands are literals too.
        assert_eq!(
            resolve("http://2130706433/", false).await,
            Err(UrlError::Refused(Loopback))
        );
        assert_eq!(
            resolve("http://0x7f.1/", false).await,
            Err(UrlError::Refused(Loopback))
        );
        // Never allowed, even with allow_private.
        assert_eq!(
            resolve("http://169.254.169.254/", true).await,
            Err(UrlError::Refused(Metadata))
        );
        assert_eq!(
            resolve("http://0.0.0.0/", true).await,
            Err(UrlError::Refused(Unspecified))
        );
        assert_eq!(
            resolve("http://[ff02::1]/", true).await,
            Err(UrlError::Refused(Multicast))
        );
    }

    #[tokio::test]
    async fn names_are_resolved_and_refused_by_class() {
        assert_eq!(
            resolve("http://localhost:8080/", false).await,
            Err(UrlError::Refused(Loopback))
        );
        let allowed = resolve("http://localhost:8080/", true).await.unwrap();
        assert!(!allowed.is_empty());
        for addr in allowed {
            assert!(addr.ip().is_loopback(), "{addr}");
            assert_eq!(addr.port(), 8080);
        }
    }

    #[test]
    fn one_line_strips_control_characters_and_truncates() {
        assert_eq!(one_line("a\nb\r\tc"), "a b  c");
        let long = one_line(&"x".repeat(500));
        assert_eq!(long.chars().count(), 201);
        assert!(long.ends_with('…'));
    }
}
