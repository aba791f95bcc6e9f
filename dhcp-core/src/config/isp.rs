//! Checks of the ISP features' configuration: client classes, pools and subnets kept for
//! classes, reservations by relay agent information, and leasequery. Only checks: nothing here
//! is compiled for the engine.

use super::{err, ClientClass, Config, ConfigError, MAX_CLASSES, MAX_LEASE_BOARD_ADDRESSES};

/// Codes the server sets itself: a class may not set them either.
fn server_set(code: u8) -> bool {
    matches!(code, 0 | 50..=59 | 61 | 80 | 82 | 91 | 92 | 255)
}

impl ClientClass {
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(err(at, "a class needs a name"));
        }
        let fields = [
            ("vendor_class", &self.vendor_class),
            ("user_class", &self.user_class),
            ("circuit_id", &self.circuit_id),
            ("remote_id", &self.remote_id),
            ("chaddr_prefix", &self.chaddr_prefix),
        ];
        if fields.iter().all(|(_, v)| v.is_none()) {
            return Err(err(
                at,
                "a class needs at least one of vendor_class, user_class, circuit_id, remote_id, chaddr_prefix",
            ));
        }
        for (name, v) in fields {
            if let Some(v) = v {
                if v.is_empty() || v.len() > 255 {
                    return Err(err(format!("{at}.{name}"), "must be 1 to 255 bytes"));
                }
            }
        }
        if self.chaddr_prefix.as_ref().is_some_and(|p| p.len() > 6) {
            return Err(err(format!("{at}.chaddr_prefix"), "an Ethernet address prefix is 1 to 6 bytes"));
        }
        for (k, (code, v)) in self.options.iter().enumerate() {
            let oat = format!("{at}.options[{k}]");
            if server_set(*code) {
                return Err(err(&oat, format!("option {code} is set by the server itself")));
            }
            if v.len() > 255 {
                return Err(err(&oat, "a class option's value is at most 255 bytes"));
            }
            if self.options[..k].iter().any(|(c, _)| c == code) {
                return Err(err(&oat, format!("option {code} is set twice in this class")));
            }
        }
        Ok(())
    }
}

impl Config {
    /// The ISP features' part of [`Config::validate`].
    pub(super) fn validate_isp(&self) -> Result<(), ConfigError> {
        if self.classes.len() > MAX_CLASSES {
            return Err(err("classes", format!("{} classes; at most {MAX_CLASSES}", self.classes.len())));
        }
        for (i, c) in self.classes.iter().enumerate() {
            let at = format!("classes[{i}]");
            c.validate(&at)?;
            if self.classes[..i].iter().any(|o| o.name == c.name) {
                return Err(err(&at, format!("class {:?} is defined twice", c.name)));
            }
        }
        let known =
            |at: String, names: &[String]| match names.iter().find(|n| !self.classes.iter().any(|c| c.name == **n)) {
                Some(n) => Err(err(at, format!("no class named {n:?}"))),
                None => Ok(()),
            };
        for (i, s) in self.subnets.iter().enumerate() {
            known(format!("subnets[{i}].classes"), &s.classes)?;
            for (k, (pool, names)) in s.pool_classes.iter().enumerate() {
                let at = format!("subnets[{i}].pool_classes[{k}]");
                if *pool >= s.pools.len() {
                    return Err(err(at, format!("no pool {pool} in this subnet")));
                }
                known(at, names)?;
            }
            let port = s.reservations.iter().position(|r| r.client.is_port());
            if let Some(k) = port.filter(|_| self.trusted_relays.is_empty() && s.trusted_relays.is_empty()) {
                return Err(err(
                    format!("subnets[{i}].reservations[{k}]"),
                    "a reservation by circuit_id or remote_id needs trusted_relays (else any relay could claim it)",
                ));
            }
        }
        self.validate_leasequery()
    }

    fn validate_leasequery(&self) -> Result<(), ConfigError> {
        if !self.leasequery {
            if !self.leasequery_from.is_empty() {
                return Err(err("leasequery_from", "set, but leasequery is off"));
            }
            return Ok(());
        }
        if self.leasequery_from.is_empty() && self.trusted_relays.is_empty() {
            return Err(err("leasequery", "no querier allowed: set leasequery_from or trusted_relays"));
        }
        let pools: u64 = self.subnets.iter().flat_map(|s| &s.pools).map(|p| p.len()).sum();
        let reserved = self.subnets.iter().map(|s| s.reservations.len() as u64).sum::<u64>();
        if pools + reserved > MAX_LEASE_BOARD_ADDRESSES {
            return Err(err(
                "leasequery",
                format!("{} addresses; the lease board covers at most {MAX_LEASE_BOARD_ADDRESSES}", pools + reserved),
            ));
        }
        Ok(())
    }
}
