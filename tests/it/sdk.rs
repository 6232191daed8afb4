//! The AWS SDK for Rust drives the cluster API against a follower, unchanged but for the endpoint.

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::ClusterField;

use crate::harness::TestCluster;

fn client(url: &str) -> aws_sdk_ecs::Client {
    let config = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .endpoint_url(url)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    aws_sdk_ecs::Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_sdk_for_rust_works_against_a_follower() {
    let cluster = TestCluster::start(3, |_| {}).await;
    let leader = cluster.leader().await;
    let ecs = client(&cluster.url(cluster.other_than(leader)));

    let created = ecs
        .create_cluster()
        .cluster_name("sdk")
        .tags(aws_sdk_ecs::types::Tag::builder().key("env").value("test").build())
        .send()
        .await
        .unwrap();
    let c = created.cluster().unwrap();
    assert_eq!(c.cluster_name(), Some("sdk"));
    assert_eq!(c.status(), Some("ACTIVE"));
    assert_eq!(c.cluster_arn(), Some("arn:aws:ecs:us-east-1:000000000000:cluster/sdk"));

    for i in 0..4 {
        ecs.create_cluster()
            .cluster_name(format!("page-{i}"))
            .send()
            .await
            .unwrap();
    }
    let pages: Vec<_> = ecs
        .list_clusters()
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let arns: Vec<String> = pages
        .into_iter()
        .flat_map(|p| p.unwrap().cluster_arns.unwrap_or_default())
        .collect();
    assert_eq!(arns.len(), 5);
    assert_eq!(pages_of(&arns), vec!["page-0", "page-1", "page-2", "page-3", "sdk"]);

    let described = ecs
        .describe_clusters()
        .clusters("sdk")
        .clusters("missing")
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters()[0].tags()[0].key(), Some("env"));
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));

    let container = aws_sdk_ecs::types::ContainerDefinition::builder()
        .name("app")
        .image("nginx:1.25")
        .memory(128)
        .port_mappings(aws_sdk_ecs::types::PortMapping::builder().container_port(80).build())
        .build();
    let registered = ecs
        .register_task_definition()
        .family("sdk-web")
        .container_definitions(container.clone())
        .cpu("256")
        .send()
        .await
        .unwrap();
    let td = registered.task_definition().unwrap();
    assert_eq!(td.revision(), 1);
    assert_eq!(td.container_definitions()[0].essential(), Some(true));
    assert!(td.registered_at().is_some());
    ecs.register_task_definition()
        .family("sdk-web")
        .container_definitions(container)
        .send()
        .await
        .unwrap();
    let described = ecs
        .describe_task_definition()
        .task_definition("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(described.task_definition().unwrap().revision(), 2);
    let listed = ecs
        .list_task_definitions()
        .family_prefix("sdk-web")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_definition_arns().len(), 2);
    let families = ecs.list_task_definition_families().send().await.unwrap();
    assert_eq!(families.families(), ["sdk-web"]);
    let gone = ecs
        .deregister_task_definition()
        .task_definition("sdk-web:1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.task_definition().unwrap().status().map(|s| s.as_str()),
        Some("INACTIVE")
    );

    let deleted = ecs.delete_cluster().cluster("sdk").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    let err = ecs.delete_cluster().cluster("sdk").send().await.unwrap_err();
    assert!(err.into_service_error().is_cluster_not_found_exception());
    cluster.shutdown().await;
}

fn pages_of(arns: &[String]) -> Vec<&str> {
    arns.iter().map(|a| a.rsplit('/').next().unwrap()).collect()
}
