//! The ISP features' part of the file: `[[class]]` tables, `classes` and `[[subnet.pool]]` of a
//! subnet, reservations by `circuit_id` / `remote_id`, and `leasequery`. Identifiers are text
//! (`circuit_id = "eth1/0/7"`) or hex bytes (`circuit_id_hex = "00:07"`), never both. Like
//! [`decode`](super::decode), this module only reads values and records their places: it must
//! never look at the host nor print.

use toml::Spanned;

use super::decode::{decode_option, value};
use super::schema::{RawClass, RawFile, RawReservation, RawSubnet};
use super::source::{FileError, Loc, SourceMap};
use super::value::{parse_hex, parse_pool, parse_relay};
use super::{ClientClass, ClientMatch, Config, Subnet};

/// One identifier given as text (`what`) or as hex bytes (`what_hex`), and where.
fn text_or_hex(
    map: &SourceMap,
    text: &Option<Spanned<String>>,
    hex: &Option<Spanned<String>>,
    what: &str,
) -> Result<Option<(Vec<u8>, Loc)>, FileError> {
    match (text, hex) {
        (Some(_), Some(h)) => Err(map.error(&Loc::of(h), format!("set `{what}` (text) or `{what}_hex`, not both"))),
        (Some(t), None) if t.get_ref().is_empty() => Err(map.error(&Loc::of(t), format!("`{what}` is empty"))),
        (Some(t), None) => Ok(Some((t.get_ref().as_bytes().to_vec(), Loc::of(t)))),
        (None, Some(h)) => Ok(Some((value(map, h, parse_hex)?, Loc::of(h)))),
        (None, None) => Ok(None),
    }
}

/// The top-level keys: `leasequery`, `leasequery_from`, `[[class]]`.
pub(super) fn decode_top(map: &mut SourceMap, raw: &RawFile, engine: &mut Config) -> Result<(), FileError> {
    if let Some(lq) = &raw.leasequery {
        engine.leasequery = *lq.get_ref();
        map.set("leasequery", Loc::of(lq));
    }
    for (i, r) in raw.leasequery_from.iter().enumerate() {
        engine.leasequery_from.push(value(map, r, parse_relay)?);
        if i == 0 {
            map.set("leasequery_from", Loc::of(r));
        }
    }
    for (i, c) in raw.class.iter().enumerate() {
        let class = decode_class(map, &format!("classes[{i}]"), c)?;
        if let Some(j) = engine.classes.iter().position(|o| o.name == class.name) {
            let first = map.describe(&map.loc(&format!("classes[{j}]")), &Loc::of(c)).unwrap_or_default();
            return Err(
                map.error(&Loc::of(&c.get_ref().name), format!("class {:?} is already defined ({first})", class.name))
            );
        }
        engine.classes.push(class);
    }
    Ok(())
}

fn decode_class(map: &mut SourceMap, at: &str, c: &Spanned<RawClass>) -> Result<ClientClass, FileError> {
    let r = c.get_ref();
    map.set(at, Loc::of(&r.name));
    let mut class = ClientClass { name: r.name.get_ref().clone(), ..ClientClass::default() };
    let fields = [
        ("vendor_class", &r.vendor_class, &r.vendor_class_hex, &mut class.vendor_class),
        ("user_class", &r.user_class, &r.user_class_hex, &mut class.user_class),
        ("circuit_id", &r.circuit_id, &r.circuit_id_hex, &mut class.circuit_id),
        ("remote_id", &r.remote_id, &r.remote_id_hex, &mut class.remote_id),
    ];
    for (what, text, hex, slot) in fields {
        if let Some((bytes, loc)) = text_or_hex(map, text, hex, what)? {
            map.set(format!("{at}.{what}"), loc);
            *slot = Some(bytes);
        }
    }
    if let Some(p) = &r.chaddr_prefix {
        class.chaddr_prefix = Some(value(map, p, |s| parse_hex(&s.replace('-', ":")))?);
        map.set(format!("{at}.chaddr_prefix"), Loc::of(p));
    }
    for (k, o) in r.option.iter().enumerate() {
        let opt = decode_option(map, o)?;
        map.set(format!("{at}.options[{k}]"), Loc::of(&o.get_ref().code));
        class.options.push(opt);
    }
    Ok(class)
}

/// A reservation by `circuit_id` or `remote_id` (text or hex), if it names one.
pub(super) fn decode_port_client(map: &SourceMap, r: &RawReservation) -> Result<Option<(ClientMatch, Loc)>, FileError> {
    let circuit = text_or_hex(map, &r.circuit_id, &r.circuit_id_hex, "circuit_id")?;
    let remote = text_or_hex(map, &r.remote_id, &r.remote_id_hex, "remote_id")?;
    for (id, loc) in circuit.iter().chain(&remote) {
        if id.len() > 255 {
            return Err(map.error(loc, "an option 82 sub-option is at most 255 bytes"));
        }
    }
    match (circuit, remote) {
        (Some(_), Some((_, loc))) => {
            Err(map.error(&loc, "a reservation matches `circuit_id` or `remote_id`, not both"))
        }
        (Some((id, loc)), None) => Ok(Some((ClientMatch::CircuitId(id), loc))),
        (None, Some((id, loc))) => Ok(Some((ClientMatch::RemoteId(id), loc))),
        (None, None) => Ok(None),
    }
}

/// Class names, each one that exists.
fn class_names(map: &SourceMap, list: &[Spanned<String>], classes: &[ClientClass]) -> Result<Vec<String>, FileError> {
    list.iter()
        .map(|n| match classes.iter().any(|c| c.name == *n.get_ref()) {
            true => Ok(n.get_ref().clone()),
            false => {
                Err(map.error(&Loc::of(n), format!("no class named {:?} (define it with [[class]])", n.get_ref())))
            }
        })
        .collect()
}

/// A subnet's `classes` and `[[subnet.pool]]`s (after its `pools`).
pub(super) fn decode_subnet_classes(
    map: &mut SourceMap,
    at: &str,
    rs: &RawSubnet,
    s: &mut Subnet,
    classes: &[ClientClass],
) -> Result<(), FileError> {
    s.classes = class_names(map, &rs.classes, classes)?;
    if let Some(first) = rs.classes.first() {
        map.set(format!("{at}.classes"), Loc::of(first));
    }
    for (k, p) in rs.pool.iter().enumerate() {
        let p = p.get_ref();
        let j = s.pools.len();
        s.pools.push(value(map, &p.range, parse_pool)?);
        map.set(format!("{at}.pools[{j}]"), Loc::of(&p.range));
        if p.classes.is_empty() {
            return Err(map.error(&Loc::of(&p.range), "a [[subnet.pool]] needs `classes` (else list it in `pools`)"));
        }
        s.pool_classes.push((j, class_names(map, &p.classes, classes)?));
        map.set(format!("{at}.pool_classes[{k}]"), Loc::of(&p.range));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::super::testing::{fails, line_of, MINIMAL};
    use super::*;

    const RELAYED: &str = "server_id = \"100.64.0.1\"\n\
        trusted_relays = [\"100.64.9.1\"]\n\
        [[subnet]]\n\
        subnet = \"100.64.0.0/24\"\n\
        interface = \"eth0\"\n\
        pools = [\"100.64.0.10-100.64.0.99\"]\n";

    /// The error of `text`: its line is that of `needle`, and its reason contains `why`.
    fn fails_at(text: &str, needle: &str, why: &str) {
        let e = fails(text);
        assert_eq!(e.line, line_of(text, needle), "{e}");
        assert!(e.reason.contains(why), "{e}");
        assert!(e.to_string().starts_with(&format!("t.toml:{}:", e.line)), "{e}");
    }

    #[test]
    fn port_reservations_take_text_or_hex() {
        let text = format!(
            "{RELAYED}[[subnet.reservation]]\ncircuit_id = \"eth1/0/7\"\nip = \"100.64.0.5\"\n\
             [[subnet.reservation]]\nremote_id_hex = \"00:1a\"\nip = \"100.64.0.6\"\n"
        );
        let (cfg, _) = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let clients: Vec<_> = cfg.engine.subnets[0].reservations.iter().map(|r| r.client.clone()).collect();
        assert_eq!(clients, vec![ClientMatch::CircuitId(b"eth1/0/7".to_vec()), ClientMatch::RemoteId(vec![0, 0x1a])]);
    }

    #[test]
    fn bad_port_reservations_point_at_their_key() {
        let res = |body: &str| format!("{RELAYED}[[subnet.reservation]]\n{body}\nip = \"100.64.0.5\"\n");
        fails_at(&res("circuit_id_hex = \"0g:01\""), "circuit_id_hex", "not hex bytes");
        fails_at(&res("circuit_id = \"a\"\ncircuit_id_hex = \"01\""), "circuit_id_hex", "not both");
        fails_at(&res("circuit_id = \"a\"\nremote_id = \"b\""), "remote_id", "not both");
        fails_at(&res("mac = \"02:00:00:00:00:01\"\nremote_id = \"b\""), "remote_id", "one of `mac`");
        fails_at(&res("circuit_id = \"\""), "circuit_id", "is empty");
        // Without trusted relays anyone could claim a port's address.
        let text = format!("{MINIMAL}[[subnet.reservation]]\ncircuit_id = \"p1\"\nip = \"100.64.0.5\"\n");
        fails_at(&text, "ip = \"100.64.0.5\"", "needs trusted_relays");
    }

    #[test]
    fn classes_decode_and_bad_ones_point_at_their_key() {
        let class = |body: &str| format!("{RELAYED}classes = [\"cpe\"]\n[[class]]\nname = \"cpe\"\n{body}\n");
        let (cfg, _) = parse(&class("vendor_class_hex = \"61:63\"\nchaddr_prefix = \"00-11-22\""), "t.toml").unwrap();
        let c = &cfg.engine.classes[0];
        assert_eq!(
            (c.vendor_class.as_deref(), c.chaddr_prefix.as_deref()),
            (Some(&b"ac"[..]), Some(&[0, 0x11, 0x22][..]))
        );
        assert_eq!(cfg.engine.subnets[0].classes, vec!["cpe".to_string()]);
        fails_at(&class("user_class_hex = \"zz\""), "user_class_hex", "not hex bytes");
        fails_at(&class(""), "name = \"cpe\"", "needs at least one of");
        fails_at(
            &class("remote_id = \"r\"\n[[class.option]]\ncode = 82\nhex = \"01\""),
            "code = 82",
            "set by the server",
        );
        fails_at(&class("chaddr_prefix = \"00:11:22:33:44:55:66\""), "chaddr_prefix", "1 to 6 bytes");
        let text = format!("{RELAYED}classes = [\"cpe\", \"nope\"]\n[[class]]\nname = \"cpe\"\nuser_class = \"x\"\n");
        let e = fails(&text);
        assert_eq!((e.line, e.column), (line_of(&text, "nope"), 19), "{e}");
        assert!(e.reason.contains("no class named \"nope\""), "{e}");
        let twice = format!("{}[[class]]\nname = \"cpe\"\nuser_class = \"y\"\n", class("user_class = \"x\""));
        let e = fails(&twice);
        assert_eq!(
            e.line,
            twice.lines().collect::<Vec<_>>().iter().rposition(|l| l.contains("name = \"cpe\"")).unwrap() + 1,
            "{e}"
        );
    }

    #[test]
    fn class_pools_and_leasequery_keys() {
        let text = format!(
            "leasequery = true\nleasequery_from = [\"198.18.4.0/24\"]\n{RELAYED}\
             [[subnet.pool]]\nrange = \"100.64.0.200-100.64.0.210\"\nclasses = [\"cpe\"]\n\
             [[class]]\nname = \"cpe\"\nvendor_class = \"acme\"\n"
        );
        let (cfg, _) = parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"));
        let s = &cfg.engine.subnets[0];
        assert_eq!((s.pools.len(), s.pool_classes.clone()), (2, vec![(1, vec!["cpe".to_string()])]));
        assert!(cfg.engine.leasequery);
        let overlap = text.replace("100.64.0.200-100.64.0.210", "100.64.0.90-100.64.0.110");
        fails_at(&overlap, "100.64.0.90", "overlaps");
        fails_at(&text.replace("classes = [\"cpe\"]", "classes = [\"cpf\"]"), "cpf", "no class named");
        fails_at(&text.replace("leasequery = true", "leasequery = false"), "leasequery_from", "leasequery is off");
        let lonely = format!("leasequery = true\n{MINIMAL}");
        fails_at(&lonely, "leasequery", "no querier allowed");
    }
}
