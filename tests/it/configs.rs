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
    // The template is secure as shipped: it needs its root key (from the environment), and
    // turns on authentication and TLS.
    let text = std::fs::read_to_string(root.join("template.toml")).unwrap();
    let refused = NodeConfig::load(&text, &BTreeMap::new()).unwrap_err().to_string();
    assert!(refused.contains("auth.root_access_key_id"), "{refused}");
    let env = BTreeMap::from([
        (
            "ECSD_AUTH_ROOT_ACCESS_KEY_ID".to_string(),
            "AKIAEXAMPLEROOTKEY01".to_string(),
        ),
        ("ECSD_AUTH_ROOT_SECRET_ACCESS_KEY".to_string(), "s".repeat(40)),
    ]);
    let template = NodeConfig::load(&text, &env).unwrap();
    assert!(template.auth.enabled && template.tls.enabled() && !template.insecure);
    assert_eq!(template.advertised_raft_addr(), "10.0.0.11:8201");
    // The template documents every default it sets.
    assert_eq!(template.services, ecsd::config::ServiceTuning::default());
    assert_eq!(template.agent, ecsd::config::AgentTuning::default());
}

#[test]
fn a_node_beyond_loopback_needs_authentication_and_tls_or_says_insecure() {
    let base = "node_id = 1\ndata_dir = \"/tmp/x\"\napi_addr = \"0.0.0.0:8101\"\nraft_addr = \"0.0.0.0:8201\"\n";
    let refused = NodeConfig::load(base, &BTreeMap::new()).unwrap_err().to_string();
    assert!(
        refused.contains("api_addr")
            && refused.contains("authentication and TLS are off")
            && refused.contains("insecure = true"),
        "{refused}"
    );
    let auth_only = format!(
        "{base}[auth]\nenabled = true\nroot_access_key_id = \"AKIAEXAMPLEROOTKEY01\"\nroot_secret_access_key = \"{}\"\n",
        "s".repeat(40)
    );
    let refused = NodeConfig::load(&auth_only, &BTreeMap::new()).unwrap_err().to_string();
    assert!(refused.contains("TLS is off"), "{refused}");
    assert!(NodeConfig::load(&format!("insecure = true\n{base}"), &BTreeMap::new()).is_ok());
    // A short secret, or half of the TLS files, is named.
    let short = format!("{base}insecure = true\n[auth]\nroot_access_key_id = \"AKIAEXAMPLEROOTKEY01\"\nroot_secret_access_key = \"short\"\n");
    let refused = NodeConfig::load(&short, &BTreeMap::new()).unwrap_err().to_string();
    assert!(refused.contains("auth.root_secret_access_key"), "{refused}");
    let half = format!("{base}insecure = true\n[tls]\nca_file = \"/x/ca.pem\"\n");
    let refused = NodeConfig::load(&half, &BTreeMap::new()).unwrap_err().to_string();
    assert!(refused.contains("tls.cert_file"), "{refused}");
}
