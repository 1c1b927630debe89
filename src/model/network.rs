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
    pub fn permits(&self, peer: IpAddr) -> bool {
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
}
