//! Target `config`: arbitrary text as a configuration file, through the TOML decoding and every
//! offline check (`config::parse`; nothing looks at the host).
//!
//! Asserts: no panic; a refusal names the file and a line and column inside the text; an
//! accepted configuration builds the engine's shared state (what validation promised).

use dhcp_core::engine::Shared;
use dhcp_user::config::parse;

const FILE: &str = "fuzz.toml";
/// Larger pools are valid but take time and memory to build; the harness skips building them.
const BUILD_AT_MOST: u64 = 1 << 16;

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse(text, FILE) {
        Err(e) => {
            assert_eq!(e.file, FILE);
            let lines = text.split('\n').count();
            assert!((1..=lines).contains(&e.line), "line {} of {lines}: {e}", e.line);
            assert!(e.column >= 1, "{e}");
            assert!(!e.reason.is_empty());
        }
        Ok((cfg, _)) => {
            let addresses: u64 = cfg.engine.subnets.iter().flat_map(|s| &s.pools).map(|p| p.len()).sum();
            if addresses <= BUILD_AT_MOST {
                if let Err(e) = Shared::new(&cfg.engine, 1) {
                    panic!("accepted but refused by the engine: {e:?}");
                }
            }
        }
    }
}
