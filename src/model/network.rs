//! Who may connect: an allow-list of networks, as `xmlcurl_allow` sets it.

use std::net::IpAddr;

use super::Cidr;

/// The networks a listener or an endpoint admits; empty admits everyone. The one place the
/// rule "is this peer allowed" is written: the xml_curl listener applies it as it accepts a
/// connection, the endpoint applies it per request when it shares the main listener.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowList(Vec<Cidr>);

impl AllowList {
    pub fn new(networks: Vec<Cidr>) -> Self {
        AllowList(networks)
    }

    /// Whether the list restricts anything at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn networks(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether `peer` may connect: always when the list is empty, else when a network holds it.
    /// An IPv4 peer on a dual-stack listener arrives as `::ffff:a.b.c.d`: it is matched as the
    /// IPv4 address it is (networks are stored IPv4 for the mapped range, [`Cidr::parse`]).
    pub fn permits(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.0.is_empty() || self.0.iter().any(|n| n.net().contains(&peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_admits_everyone_and_a_list_only_its_networks() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(AllowList::default().permits(ip("198.51.100.7")));
        let list = AllowList::new(vec![Cidr::parse("10.0.0.0/24").unwrap()]);
        assert!(list.permits(ip("10.0.0.5")));
        assert!(!list.permits(ip("10.0.1.5")));
        assert!(!list.permits(ip("::1")));
    }

    #[test]
    fn an_ipv4_peer_on_a_dual_stack_listener_is_matched_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let list = AllowList::new(vec![Cidr::parse("10.0.0.0/24").unwrap()]);
        assert!(list.permits(ip("::ffff:10.0.0.5")));
        assert!(!list.permits(ip("::ffff:10.0.1.5")));
        // Written in its mapped form, an IPv4 network is the IPv4 network.
        let mapped = AllowList::new(vec![Cidr::parse("::ffff:10.0.0.0/120").unwrap()]);
        assert_eq!(mapped.networks()[0].to_string(), "10.0.0.0/24");
        assert!(mapped.permits(ip("10.0.0.9")) && mapped.permits(ip("::ffff:10.0.0.9")));
    }

    #[test]
    fn a_network_covering_the_ipv4_mapped_range_is_refused() {
        for wide in ["::ffff:0:0/96", "::/16", "::/64", "0:0:0:0:0:ffff::/80"] {
            assert!(Cidr::parse(wide).is_err(), "{wide}");
        }
        assert!(Cidr::parse("2001:db8::/32").is_ok());
    }
}
