//! Every shipped config file loads and validates.

use std::collections::BTreeMap;
use std::path::Path;

use ecsd::config::NodeConfig;

fn load(path: &Path) -> NodeConfig {
    let text = std::fs::read_to_string(path).unwrap();
    NodeConfig::load(&text, &BTreeMap::new()).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn shipped_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster-config");
    for i in 1..=3 {
        let c = load(&root.join(format!("local/node-{i}.toml")));
        assert_eq!(c.node_id, i);
        assert_eq!(c.api_addr.port(), 8100 + i as u16);
        assert_eq!(c.raft_addr.port(), 8200 + i as u16);
        assert_eq!(c.initial_members.len(), 3);
    }
    for i in 1..=5 {
        assert_eq!(
            load(&root.join(format!("five-node/node-{i}.toml")))
                .initial_members
                .len(),
            5
        );
    }
    let template = load(&root.join("template.toml"));
    assert_eq!(template.advertised_raft_addr(), "10.0.0.11:8201");
    // The template documents every default it sets.
    assert_eq!(template.services, ecsd::config::ServiceTuning::default());
    assert_eq!(template.agent, ecsd::config::AgentTuning::default());
}
